# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``qswap``: hashlock/timelock atomic swaps between Algorand networks with QKD-sealed terms.

Progress and results go to stderr; the only thing written to stdout is a sealed envelope
(when no ``--out`` file is given) or the secret (``extract-secret``), so commands compose
with pipes. Exit codes: 3 envelope refused, 4 unsafe terms / failed audit, 5 node or
contract refused, 6 account file problem, 7 swap state does not allow the step.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from atomic_swap.errors import (
    AccountFileError,
    AuditFailed,
    ChainError,
    EnvelopeRefused,
    SwapError,
    SwapStateError,
    UnsafeTerms,
)

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
console = Console(stderr=True, soft_wrap=True)  # one line per message, for grep and logs
_EXIT_CODES: list[tuple[type[SwapError], int]] = [
    (EnvelopeRefused, 3),
    (UnsafeTerms, 4),
    (AuditFailed, 4),
    (ChainError, 5),
    (AccountFileError, 6),
    (SwapStateError, 7),
    (SwapError, 1),
]


def _fail_cleanly(func: F) -> F:
    """Turn ``SwapError`` into one clear line on stderr and a specific exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SwapError as exc:
            code = next(code for kind, code in _EXIT_CODES if isinstance(exc, kind))
            console.print(f"[bold red]refused:[/] {exc}", highlight=False)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def _duration(value: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 90s, 30m, 48h, 2d")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else _duration(value)


def algod_options(func: F) -> F:
    func = click.option(
        "--algod-token", envvar="ALGOD_TOKEN", default="a" * 64, show_envvar=True,
        help="API token of the node (the devnet keeps it in DATA_DIR/algod.token).",
    )(func)  # fmt: skip
    return click.option(
        "--algod-url", envvar="ALGOD_URL", default="http://localhost:4001", show_envvar=True,
        show_default=True, help="algod of the network this command acts on.",
    )(func)  # fmt: skip


def account_option(func: F) -> F:
    return click.option(
        "--account", "account_file", envvar="QSWAP_ACCOUNT", show_envvar=True, required=True,
        type=click.Path(dir_okay=False, path_type=Path), help="Account file (mnemonic, mode 0600).",
    )(func)  # fmt: skip


def home_option(func: F) -> F:
    return click.option(
        "--home", envvar="QSWAP_HOME", show_envvar=True, default=Path.home() / ".qswap",
        type=click.Path(file_okay=False, path_type=Path), help="Local swap records.",
    )(func)  # fmt: skip


def kme_options(func: F) -> F:
    specs = [
        ("--peer-sae-id", "QSWAP_PEER_SAE_ID", "The counterparty's SAE ID."),
        ("--sae-id", "QSWAP_SAE_ID", "Our SAE ID (as in our certificate)."),
        ("--kme-ca", "QSWAP_KME_CA", "CA certificate of the KMEs."),
        ("--sae-key", "QSWAP_SAE_KEY", "Our SAE's TLS private key."),
        ("--sae-cert", "QSWAP_SAE_CERT", "Our SAE's TLS client certificate."),
        ("--kme-url", "QSWAP_KME_URL", "Our KME (ETSI GS QKD 014, https://...)."),
    ]
    for flag, env, text in specs:
        func = click.option(flag, envvar=env, show_envvar=True, required=True, help=text)(func)
    return func


def _client(url: str, token: str) -> Any:
    from algosdk.v2client.algod import AlgodClient

    return AlgodClient(token, url)


def _channel(home: Path, kme: dict[str, str]) -> Any:
    from atomic_swap.sealing import TermsChannel
    from atomic_swap.store import SwapStore
    from qkd_channel.kme.client import KMEClient

    client = KMEClient(kme["kme_url"], cert=kme["sae_cert"], key=kme["sae_key"], ca=kme["kme_ca"])
    return TermsChannel(
        client, SwapStore(home), sae_id=kme["sae_id"], peer_sae_id=kme["peer_sae_id"]
    )


def _kme(kwargs: dict[str, Any]) -> dict[str, str]:
    keys = ("kme_url", "sae_cert", "sae_key", "kme_ca", "sae_id", "peer_sae_id")
    return {k: kwargs.pop(k) for k in keys}


class _RichReporter:
    """Spinner while waiting for confirmation; one line per confirmed state change."""

    def waiting(self, what: str) -> AbstractContextManager[None]:
        return self._spin(what)

    @contextmanager
    def _spin(self, what: str) -> Iterator[None]:
        with console.status(f"{what}: waiting for confirmation…"):
            yield

    def done(self, what: str, result: Any) -> None:
        app = f" app {result.app_id}" if result.app_id else ""
        console.print(
            f"[green]✓[/] {what}{app} in round {result.round} "
            f"(fees {result.fees} µALGO) tx {', '.join(result.txids)}",
            highlight=False,
        )


def _party(account_file: Path, url: str, token: str, home: Path) -> Any:
    from atomic_swap.accounts import load_account
    from atomic_swap.store import SwapStore
    from atomic_swap.swap import Party

    return Party(load_account(account_file), _client(url, token), SwapStore(home), _RichReporter())


def _emit(envelope: str, out: Path | None, what: str) -> None:
    if out is None:
        click.echo(envelope)
    else:
        out.write_text(envelope + "\n")
        console.print(f"sealed {what} written to {out}", highlight=False)


@click.group()
def main() -> None:
    """Cross-chain atomic swaps on Algorand, terms exchanged in QKD-sealed envelopes."""


# -- swap verbs ------------------------------------------------------------------------


@main.command()
@algod_options
@account_option
@home_option
@kme_options
@click.option("--participant", help="Counterparty's address on this network.")
@click.option("--amount", type=int, help="Amount we lock (base units).")
@click.option("--asset", type=int, default=0, show_default=True, help="0 = ALGO, else ASA ID.")
@click.option("--want-amount", type=int, help="Amount we want in return.")
@click.option("--want-asset", type=int, default=0, show_default=True)
@click.option("--receive-address", help="Our address on the other network [default: ours].")
@click.option("--lock", callback=_duration_option, default="48h", show_default=True)
@click.option("--resume", "resume_id", help="Fund an unfunded HTLC of this swap ID and reseal.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@_fail_cleanly
def initiate(
    algod_url: str, algod_token: str, account_file: Path, home: Path, participant: str | None,
    amount: int | None, asset: int, want_amount: int | None, want_asset: int,
    receive_address: str | None, lock: int, resume_id: str | None, out: Path | None, **kwargs: Any,
) -> None:  # fmt: skip
    """Create a secret, lock our funds in an HTLC and write the sealed offer."""
    from atomic_swap import swap

    party = _party(account_file, algod_url, algod_token, home)
    channel = _channel(home, _kme(kwargs))
    if resume_id:
        record, envelope = swap.resume_initiate(party, channel, resume_id)
    elif participant is None or amount is None or want_amount is None:
        raise click.UsageError("give --participant, --amount and --want-amount (or --resume)")
    else:
        record, envelope = swap.initiate(
            party, channel, participant=participant, amount=amount, asset_id=asset,
            want_amount=want_amount, want_asset_id=want_asset,
            receive_address=receive_address or party.account.address, lock_seconds=lock,
        )  # fmt: skip
    console.print(
        f"swap {record.swap_id}: HTLC {record.own_app_id}, hashlock {record.hashlock}",
        highlight=False,
    )
    _emit(envelope, out, "offer")


@main.command()
@click.argument("offer", type=click.File("r"), required=False)
@algod_options
@account_option
@home_option
@kme_options
@click.option(
    "--initiator-algod-url",
    envvar="INITIATOR_ALGOD_URL",
    required=True,
    show_envvar=True,
    help="algod of the initiator's network (to audit its HTLC).",
)
@click.option(
    "--initiator-algod-token", envvar="INITIATOR_ALGOD_TOKEN", default="a" * 64, show_envvar=True
)
@click.option("--pay-amount", type=int, help="What we agreed to lock (base units).")
@click.option("--pay-asset", type=int, default=0, show_default=True)
@click.option("--receive-amount", type=int, help="What we agreed to receive.")
@click.option("--receive-asset", type=int, default=0, show_default=True)
@click.option(
    "--lock", callback=_duration_option, help="Our lock [default: half the initiator's remaining]."
)
@click.option(
    "--min-margin",
    callback=_duration_option,
    default="1h",
    show_default=True,
    help="Our deadline must be at least this long before the initiator's.",
)
@click.option("--min-lock", callback=_duration_option, default="1h", show_default=True)
@click.option("--resume", "resume_id", help="Fund our unfunded HTLC of this swap ID and reseal.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@_fail_cleanly
def participate(
    offer: Any, algod_url: str, algod_token: str, account_file: Path, home: Path,
    initiator_algod_url: str, initiator_algod_token: str, pay_amount: int | None,
    pay_asset: int, receive_amount: int | None, receive_asset: int, lock: int | None,
    min_margin: int, min_lock: int, resume_id: str | None, out: Path | None, **kwargs: Any,
) -> None:  # fmt: skip
    """Open and audit an OFFER, then lock our side with the same hashlock."""
    from atomic_swap import swap

    party = _party(account_file, algod_url, algod_token, home)
    channel = _channel(home, _kme(kwargs))
    initiator = _client(initiator_algod_url, initiator_algod_token)
    if resume_id:
        record, envelope = swap.resume_participate(party, initiator, channel, resume_id)
        _emit(envelope, out, "acceptance")
        return
    if offer is None or pay_amount is None or receive_amount is None:
        raise click.UsageError("give the sealed OFFER, --pay-amount and --receive-amount")
    record, envelope = swap.participate(
        party, initiator, channel, offer.read(),
        pay_amount=pay_amount, pay_asset_id=pay_asset, receive_amount=receive_amount,
        receive_asset_id=receive_asset, lock_seconds=lock,
        policy=swap.SafetyPolicy(min_margin=min_margin, min_lock=min_lock),
    )  # fmt: skip
    console.print(
        f"swap {record.swap_id}: audited HTLC {record.counter_app_id} on the initiator's "
        f"network; our HTLC {record.own_app_id} is funded",
        highlight=False,
    )
    _emit(envelope, out, "acceptance")


@main.command()
@click.argument("acceptance", type=click.File("r"), required=False)
@algod_options
@account_option
@home_option
@click.option("--app-id", type=int, help="HTLC to claim (participant, with --secret).")
@click.option("--secret", help="Hex secret (from extract-secret).")
@click.option(
    "--min-time-left", callback=_duration_option, default="10m", show_default=True,
    help="Refuse to reveal the secret to a contract expiring sooner than this.",
)  # fmt: skip
@click.option("--kme-url", envvar="QSWAP_KME_URL")
@click.option("--sae-cert", envvar="QSWAP_SAE_CERT")
@click.option("--sae-key", envvar="QSWAP_SAE_KEY")
@click.option("--kme-ca", envvar="QSWAP_KME_CA")
@click.option("--sae-id", envvar="QSWAP_SAE_ID")
@click.option("--peer-sae-id", envvar="QSWAP_PEER_SAE_ID")
@_fail_cleanly
def redeem(
    acceptance: Any, algod_url: str, algod_token: str, account_file: Path, home: Path,
    app_id: int | None, secret: str | None, min_time_left: int, **kwargs: Any,
) -> None:  # fmt: skip
    """Claim the counterparty's HTLC.

    Initiator: pass the sealed ACCEPTANCE; it is opened, the participant's contract audited,
    and claimed with our stored secret. Participant: pass --app-id and --secret.
    """
    from atomic_swap import swap

    party = _party(account_file, algod_url, algod_token, home)
    if acceptance is not None:
        kme = _kme(kwargs)
        missing = [k for k, v in kme.items() if not v]
        if missing:
            raise click.UsageError(f"opening an acceptance needs --{missing[0].replace('_', '-')}")
        swap.redeem_acceptance(
            party, _channel(home, kme), acceptance.read(), min_time_left=min_time_left
        )
    elif app_id is not None and secret is not None:
        try:
            raw = bytes.fromhex(secret)
        except ValueError:
            raise click.BadParameter("the secret must be hex") from None
        swap.redeem(party, app_id, raw)
    else:
        raise click.UsageError("give a sealed ACCEPTANCE, or --app-id and --secret")


@main.command("extract-secret")
@algod_options
@click.option("--app-id", type=int, required=True, help="The HTLC the counterparty claimed.")
@_fail_cleanly
def extract_secret(algod_url: str, algod_token: str, app_id: int) -> None:
    """Print the secret revealed by the counterparty's claim (hex, on stdout)."""
    from atomic_swap import swap

    click.echo(swap.extract_secret(_client(algod_url, algod_token), app_id).hex())


@main.command()
@algod_options
@account_option
@home_option
@click.option("--app-id", type=int, required=True)
@_fail_cleanly
def refund(algod_url: str, algod_token: str, account_file: Path, home: Path, app_id: int) -> None:
    """Take our HTLC back after its deadline."""
    from atomic_swap import swap

    swap.refund(_party(account_file, algod_url, algod_token, home), app_id)


@main.command()
@algod_options
@account_option
@home_option
@click.option("--app-id", type=int, required=True)
@_fail_cleanly
def reclaim(algod_url: str, algod_token: str, account_file: Path, home: Path, app_id: int) -> None:
    """Delete our empty HTLC (never funded, or settled) to free its minimum balance."""
    from atomic_swap import swap

    swap.reclaim(_party(account_file, algod_url, algod_token, home), app_id)


@main.command()
@algod_options
@click.option("--app-id", type=int, required=True)
@_fail_cleanly
def audit(algod_url: str, algod_token: str, app_id: int) -> None:
    """Show an HTLC as the chain reports it (program check, terms, funding, state)."""
    from atomic_swap.audit import latest_timestamp, read_htlc

    client = _client(algod_url, algod_token)
    onchain = read_htlc(client, app_id)
    now = latest_timestamp(client)
    table = Table(title=f"HTLC application {app_id}", show_header=False)
    t = onchain.terms
    rows = [
        ("program", "committed htlc.teal" if onchain.known_program else "[red]UNKNOWN[/]"),
        ("creator", onchain.creator),
        ("state", onchain.state.name.lower()),
        ("hashlock", t.hashlock.hex()),
        ("receiver", t.receiver),
        ("refund to", t.refund_to),
        ("asset", "ALGO" if t.asset_id == 0 else f"ASA {t.asset_id}"),
        ("amount", str(t.amount)),
        ("escrow holds", str(onchain.escrow_balance)),
        ("funded", "yes" if onchain.funded else "no"),
        ("deadline", f"{t.deadline} ({t.deadline - now:+d} s from the latest block)"),
    ]
    if onchain.preimage is not None:
        rows.append(("secret", onchain.preimage.hex()))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if not onchain.known_program:
        raise AuditFailed(f"application {app_id} does not run the committed HTLC program")


@main.command()
@home_option
@algod_options
@_fail_cleanly
def status(home: Path, algod_url: str, algod_token: str) -> None:
    """Table of our swaps, with the live state of the HTLCs on this node's network."""
    from atomic_swap.audit import read_htlc
    from atomic_swap.store import SwapStore
    from atomic_swap.swap import network_of

    client = _client(algod_url, algod_token)
    try:
        here = network_of(client)
    except Exception:  # the table is still useful offline
        here = None
    table = Table(title=f"swaps in {home}")
    for col in ("swap", "role", "state", "our HTLC", "their HTLC", "deadline"):
        table.add_column(col)
    for record in SwapStore(home).all():
        cells = []
        pairs = ((record.own_app_id, _own_msg(record)), (record.counter_app_id, _their_msg(record)))
        for app_id, msg in pairs:
            text = str(app_id or "-")
            on_this_node = (
                here is not None and msg is not None and msg["network"] == here.model_dump()
            )
            if app_id and on_this_node:
                try:
                    text += f" ({read_htlc(client, app_id).state.name.lower()})"
                except SwapError:
                    text += " (unreadable)"
            cells.append(text)
        own = _own_msg(record) or {}
        deadline = own.get("deadline")
        when = (
            datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if isinstance(deadline, int)
            else "-"
        )
        table.add_row(record.swap_id[:8], record.role, str(record.state), *cells, when)
    console.print(table)


def _own_msg(record: Any) -> dict[str, Any] | None:
    return record.offer if record.role == "initiator" else record.acceptance  # type: ignore[no-any-return]


def _their_msg(record: Any) -> dict[str, Any] | None:
    return record.acceptance if record.role == "initiator" else record.offer  # type: ignore[no-any-return]


# -- accounts --------------------------------------------------------------------------


@main.group()
def account() -> None:
    """Account files for development use (mnemonic in a mode-0600 file)."""


@account.command("new")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_fail_cleanly
def account_new(path: Path) -> None:
    """Create a new account file and print its address."""
    from atomic_swap.accounts import create_account_file

    click.echo(create_account_file(path).address)


@account.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@algod_options
@_fail_cleanly
def account_show(path: Path, algod_url: str, algod_token: str) -> None:
    """Print the address and balance of an account file."""
    from algosdk.error import AlgodHTTPError

    from atomic_swap.accounts import load_account

    acct = load_account(path)
    click.echo(acct.address)
    try:
        info = _client(algod_url, algod_token).account_info(acct.address)
    except (AlgodHTTPError, OSError) as exc:
        raise ChainError(f"node unavailable: {exc}") from exc
    assets = ", ".join(f"{a['amount']} of ASA {a['asset-id']}" for a in info.get("assets", []))
    console.print(
        f"{info['amount']} µALGO (min balance {info.get('min-balance', 0)})"
        + (f"; {assets}" if assets else ""),
        highlight=False,
    )


@account.command("fund")
@click.argument("target")
@click.option("--algos", type=float, required=True, help="ALGO to send.")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Account file paying (e.g. the devnet's DATA_DIR/dispenser.mnemonic).",
)
@algod_options
@_fail_cleanly
def account_fund(target: str, algos: float, source: Path, algod_url: str, algod_token: str) -> None:
    """Send ALGO to an address or to the address of an account file."""
    from algosdk import encoding, transaction

    from atomic_swap import htlc
    from atomic_swap.accounts import load_account

    address = target if encoding.is_valid_address(target) else load_account(Path(target)).address
    payer = load_account(source)
    client = _client(algod_url, algod_token)
    pay = transaction.PaymentTxn(
        payer.address, client.suggested_params(), address, round(algos * 1_000_000)
    )
    reporter = _RichReporter()
    with reporter.waiting("fund"):
        result = htlc.send_group(client, [pay], payer.private_key)
    reporter.done(f"paid {algos} ALGO to {address}", result)


# -- devnet ----------------------------------------------------------------------------


@main.command()
@click.option("--port", type=int, default=4001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
    help="Chain state, API token (algod.token) and dispenser mnemonic live here.",
)  # fmt: skip
@click.option("--network-name", default="devnet", show_default=True)
def devnet(port: int, host: str, data_dir: Path, network_name: str) -> None:
    """Serve a one-node Algorand dev network (algod v2 API subset, go-algorand evaluator)."""
    import uvicorn

    from atomic_swap.devnet import (
        DISPENSER_FILE,
        TOKEN_FILE,
        DevChain,
        create_app,
        load_or_create_token,
    )

    chain = DevChain(data_dir, network_name=network_name)
    token = load_or_create_token(data_dir)
    console.print(
        f"devnet {network_name!r}: http://{host}:{port}  round {chain.round}\n"
        f"  API token file: {data_dir / TOKEN_FILE}\n"
        f"  dispenser: {chain.dispenser} (mnemonic in {data_dir / DISPENSER_FILE})",
        highlight=False,
    )
    uvicorn.run(create_app(chain, token), host=host, port=port, log_level="warning")
