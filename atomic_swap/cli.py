# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``qswap``: hashlock/timelock atomic swaps between Algorand networks with QKD-sealed terms.

Progress and results go to stderr; stdout carries only what composes with pipes: a sealed
envelope (when no ``--out`` file is given), the secret (``extract-secret``), an address
(``account new``), or, with ``--json`` (every verb has it), one JSON object — the full swap
ID, hashlock and secret included. Exit codes: 3 envelope refused, 4 unsafe terms / failed
audit, 5 node or contract refused, 6 account file problem, 7 swap state does not allow the
step. A failure after a swap was saved names its full ID and the command that resumes it.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
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
from qkd_channel.clikit import CONTEXT, apply_env_rule, run, version_option

__all__ = ["entry", "main", "parse_duration"]

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


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _fail_cleanly(func: F) -> F:
    """Turn ``SwapError`` into one clear line on stderr (and JSON) and a specific exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SwapError as exc:
            code = next(code for kind, code in _EXIT_CODES if isinstance(exc, kind))
            console.print(f"[bold red]refused:[/] {escape(str(exc))}", highlight=False)
            for note in getattr(exc, "__notes__", []):
                console.print(escape(note), highlight=False)
            if kwargs.get("json_out"):
                _print_json(
                    {
                        "ok": False,
                        "error": str(exc),
                        "exit_code": code,
                        "swap_id": getattr(exc, "swap_id", None),
                        "resume": getattr(exc, "resume", None),
                    }
                )
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: str) -> int:
    """Seconds in ``90``, ``90s``, ``30m``, ``48h``, ``2d``, ``2h30m``, ``1d12h``, ``1h 30m``."""
    text = value.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+", text):
        return int(text)
    if not text or not re.fullmatch(r"(\d+[dhms])+", text):
        raise ValueError(f"{value!r} is not a duration like 90s, 30m, 48h, 2d or 2h30m")
    parts = re.findall(r"(\d+)([dhms])", text)
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units) or units != sorted(units, key=lambda u: -_UNITS[u]):
        raise ValueError(f"{value!r}: give each unit once, largest first (like 1d2h30m)")
    return sum(int(n) * _UNITS[unit] for n, unit in parts)


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def json_option(func: F) -> F:
    return click.option(
        "--json", "json_out", is_flag=True,
        help="Print one JSON object on stdout (progress stays on stderr).",
    )(func)  # fmt: skip


def algod_options(func: F) -> F:
    func = click.option(
        "--algod-token", default="a" * 64,
        help="API token of the node (the devnet keeps it in DATA_DIR/algod.token).",
    )(func)  # fmt: skip
    return click.option(
        "--algod-url", default="http://localhost:4001",
        show_default=True, help="algod of the network this command acts on.",
    )(func)  # fmt: skip


def account_option(func: F) -> F:
    return click.option(
        "--account", "account_file", required=True,
        type=click.Path(dir_okay=False, path_type=Path), help="Account file (mnemonic, mode 0600).",
    )(func)  # fmt: skip


def home_option(func: F) -> F:
    return click.option(
        "--home", default=Path.home() / ".qswap",
        type=click.Path(file_okay=False, path_type=Path), help="Local swap records.",
    )(func)  # fmt: skip


_KME_SPECS = [
    ("--peer-sae-id", "The counterparty's SAE ID."),
    ("--sae-id", "Our SAE ID (as in our certificate)."),
    ("--kme-ca", "CA certificate of the KMEs."),
    ("--sae-key", "Our SAE's TLS private key."),
    ("--sae-cert", "Our SAE's TLS client certificate."),
    ("--kme-url", "Our KME (ETSI GS QKD 014, https://...)."),
]


def kme_options(required: bool) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = click.option(
            "--peer-kem-key", type=click.Path(dir_okay=False, path_type=Path),
            help="The counterparty's ML-KEM-768 public key (PEM; compare its fingerprint "
            "first): seal our terms hybrid, QKD key + ML-KEM, instead of otp.",
        )(func)  # fmt: skip
        for flag, text in _KME_SPECS:
            func = click.option(flag, required=required, help=text)(func)
        return func

    return decorate


def asset_roles_option(func: F) -> F:
    return click.option(
        "--allow-asset-roles", is_flag=True,
        help="Accept an ASA whose freeze or clawback role is held by someone (they could "
        "freeze or take back the escrowed asset).",
    )(func)  # fmt: skip


def _client(url: str, token: str) -> Any:
    from algosdk.v2client.algod import AlgodClient

    return AlgodClient(token, url)


class _NoKME:
    """Key source for commands run without KME settings: only kept terms can be opened."""

    def enc_keys(self, slave_sae_id: str, *, number: int = 1, size: int = 256) -> Any:
        from qkd_channel.errors import KMEError

        raise KMEError("no KME configured (give --kme-url, --sae-cert, ... or QSWAP_KME_*)")

    def dec_keys(self, master_sae_id: str, key_ids: Any) -> Any:
        return self.enc_keys(master_sae_id)


def _kem_keys(home: Path, peer_kem_key: Path | None) -> dict[str, Any]:
    """Our ML-KEM key (if the home has one) and the peer's pinned one (if given): the
    ``TermsChannel`` arguments that make our envelopes hybrid and open the peer's."""
    from atomic_swap.sealing import KEM_KEY_FILE
    from qkd_channel.envelope import Mode
    from qkd_channel.errors import KEMKeyError
    from qkd_channel.hybrid import KEMPrivateKey, KEMPublicKey

    try:
        own = KEMPrivateKey.load(home / KEM_KEY_FILE) if (home / KEM_KEY_FILE).exists() else None
        peer = KEMPublicKey.load(peer_kem_key) if peer_kem_key is not None else None
    except KEMKeyError as exc:
        raise click.UsageError(str(exc)) from None
    mode = Mode.OTP if peer is None else Mode.HYBRID
    return {"kem_key": own, "peer_kem_key": peer, "mode": mode}


def _channel(home: Path, kme: dict[str, Any], envelope: str | None = None) -> Any:
    from atomic_swap.sealing import TermsChannel
    from atomic_swap.store import SwapStore
    from qkd_channel.envelope import Envelope
    from qkd_channel.errors import QKDError
    from qkd_channel.kme.client import KMEClient

    store = SwapStore(home)
    kem = _kem_keys(home, kme.pop("peer_kem_key", None))
    missing = [k for k, v in kme.items() if not v]
    if not missing:
        client: Any = KMEClient(
            str(kme["kme_url"]),
            cert=str(kme["sae_cert"]),
            key=str(kme["sae_key"]),
            ca=str(kme["kme_ca"]),
        )
        return TermsChannel(
            client, store, sae_id=str(kme["sae_id"]), peer_sae_id=str(kme["peer_sae_id"]), **kem
        )
    if envelope is None:
        raise click.UsageError(f"this needs our KME: give --{missing[0].replace('_', '-')}")
    try:  # opening terms we kept needs no KME: take the SAE IDs from the header
        header = Envelope.from_json(envelope)
    except (QKDError, ValueError) as exc:
        raise EnvelopeRefused("not a well-formed sealed envelope") from exc
    return TermsChannel(
        _NoKME(),
        store,
        sae_id=str(kme["sae_id"] or header.recipient),
        peer_sae_id=str(kme["peer_sae_id"] or header.sender),
        **kem,
    )


def _kme(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("kme_url", "sae_cert", "sae_key", "kme_ca", "sae_id", "peer_sae_id", "peer_kem_key")
    return {k: kwargs.pop(k) for k in keys}


class _RichReporter:
    """Spinner while waiting for confirmation; one line per confirmed state change."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def waiting(self, what: str) -> AbstractContextManager[None]:
        return self._spin(what)

    @contextmanager
    def _spin(self, what: str) -> Iterator[None]:
        with console.status(f"{what}: waiting for confirmation…"):
            yield

    def done(self, what: str, result: Any) -> None:
        app = f" app {result.app_id}" if result.app_id else ""
        self.steps.append(
            {"step": what, "app_id": result.app_id, "round": result.round,
             "fees": result.fees, "txids": list(result.txids)}
        )  # fmt: skip
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


def _emit(envelope: str, out: Path | None, what: str, json_out: bool) -> None:
    if out is not None:
        out.write_text(envelope + "\n")
        console.print(f"sealed {what} written to {out}", highlight=False)
    elif not json_out:
        click.echo(envelope)


def _record_json(record: Any) -> dict[str, Any]:
    own = _own_msg(record) or {}
    return {
        "swap_id": record.swap_id,
        "role": record.role,
        "state": str(record.state),
        "hashlock": record.hashlock,
        "secret": record.secret,
        "own_app_id": record.own_app_id,
        "own_network": record.own_network,
        "counter_app_id": record.counter_app_id,
        "counter_network": record.counter_network,
        "deadline": own.get("deadline"),
        "offer": record.offer,
        "acceptance": record.acceptance,
    }


def _secret_hex(record: Any) -> str | None:
    return record.secret if record.secret else None


@click.group(context_settings=CONTEXT)
@version_option()
def main() -> None:
    """Cross-chain atomic swaps on Algorand, terms exchanged in QKD-sealed envelopes."""


def entry() -> None:
    """The ``qswap`` console script."""
    run(main, "qswap")


# -- swap verbs ------------------------------------------------------------------------


@main.command()
@algod_options
@account_option
@home_option
@kme_options(required=True)
@click.option("--participant", help="Counterparty's address on this network.")
@click.option("--amount", type=int, help="Amount we lock (base units).")
@click.option("--asset", type=int, default=0, show_default=True, help="0 = ALGO, else ASA ID.")
@click.option("--want-amount", type=int, help="Amount we want in return.")
@click.option("--want-asset", type=int, default=0, show_default=True)
@click.option("--receive-address", help="Our address on the other network [default: ours].")
@click.option(
    "--lock", callback=_duration_option, default="48h", show_default=True,
    help="How long our HTLC stays claimable (90s, 30m, 48h, 2d, 2h30m...).",
)  # fmt: skip
@click.option(
    "--resume", "resume_id",
    help="Finish swap ID (or a unique prefix): create/fund our HTLC as needed, reseal the offer.",
)  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@_fail_cleanly
def initiate(
    algod_url: str, algod_token: str, account_file: Path, home: Path, participant: str | None,
    amount: int | None, asset: int, want_amount: int | None, want_asset: int,
    receive_address: str | None, lock: int, resume_id: str | None, out: Path | None,
    json_out: bool, **kwargs: Any,
) -> None:  # fmt: skip
    """Get QKD keys, create a secret, lock our funds in an HTLC and write the sealed offer."""
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
    _emit(envelope, out, "offer", json_out)
    if json_out:
        _print_json(
            {"ok": True, **_record_json(record), "app_id": record.own_app_id,
             "offer_envelope": envelope, "out": str(out) if out else None,
             "transactions": party.reporter.steps}
        )  # fmt: skip


@main.command()
@click.argument("offer", type=click.File("r"), required=False)
@algod_options
@account_option
@home_option
@kme_options(required=True)
@click.option(
    "--initiator-algod-url", required=True,
    help="algod of the initiator's network (to audit its HTLC).",
)  # fmt: skip
@click.option(
    "--initiator-algod-token", default="a" * 64,
    help="API token of the initiator's network's node.",
)  # fmt: skip
@click.option("--pay-amount", type=int, help="What we agreed to lock (base units).")
@click.option("--pay-asset", type=int, default=0, show_default=True)
@click.option("--receive-amount", type=int, help="What we agreed to receive.")
@click.option("--receive-asset", type=int, default=0, show_default=True)
@click.option(
    "--lock", callback=_duration_option,
    help="Our lock [default: half the time the initiator's HTLC has left, at most --max-lock].",
)  # fmt: skip
@click.option(
    "--min-margin", callback=_duration_option, default="12h", show_default=True,
    help="Our HTLC must expire at least this long before the initiator's (real time).",
)  # fmt: skip
@click.option(
    "--min-lock", callback=_duration_option, default="12h", show_default=True,
    help="Our HTLC must stay claimable at least this long.",
)  # fmt: skip
@click.option(
    "--max-lock", callback=_duration_option, default="48h", show_default=True,
    help="Never lock our funds longer than this.",
)  # fmt: skip
@click.option(
    "--max-clock-skew", callback=_duration_option, default="5m", show_default=True,
    help="Refuse if either chain's latest block time is further than this from our clock.",
)  # fmt: skip
@asset_roles_option
@click.option(
    "--resume", "resume_id",
    help="Swap ID (or unique prefix): create/fund our HTLC as needed, reseal the acceptance.",
)  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@_fail_cleanly
def participate(
    offer: Any, algod_url: str, algod_token: str, account_file: Path, home: Path,
    initiator_algod_url: str, initiator_algod_token: str, pay_amount: int | None,
    pay_asset: int, receive_amount: int | None, receive_asset: int, lock: int | None,
    min_margin: int, min_lock: int, max_lock: int, max_clock_skew: int,
    allow_asset_roles: bool, resume_id: str | None, out: Path | None, json_out: bool,
    **kwargs: Any,
) -> None:  # fmt: skip
    """Open and audit an OFFER, then lock our side with the same hashlock.

    Answering the same swap again (a replayed or resealed offer) returns the HTLC and
    acceptance already made: one HTLC per swap.
    """
    from atomic_swap import swap

    party = _party(account_file, algod_url, algod_token, home)
    channel = _channel(home, _kme(kwargs))
    initiator = _client(initiator_algod_url, initiator_algod_token)
    policy = swap.SafetyPolicy(
        min_margin=min_margin, min_lock=min_lock, max_lock=max_lock,
        max_clock_skew=max_clock_skew, allow_asset_roles=allow_asset_roles,
    )  # fmt: skip
    if resume_id:
        record, envelope = swap.resume_participate(
            party, initiator, channel, resume_id, policy=policy
        )
    elif offer is None or pay_amount is None or receive_amount is None:
        raise click.UsageError("give the sealed OFFER, --pay-amount and --receive-amount")
    else:
        record, envelope = swap.participate(
            party, initiator, channel, offer.read(),
            pay_amount=pay_amount, pay_asset_id=pay_asset, receive_amount=receive_amount,
            receive_asset_id=receive_asset, lock_seconds=lock, policy=policy,
        )  # fmt: skip
    console.print(
        f"swap {record.swap_id}: audited HTLC {record.counter_app_id} on the initiator's "
        f"network; our HTLC {record.own_app_id} is funded",
        highlight=False,
    )
    _emit(envelope, out, "acceptance", json_out)
    if json_out:
        _print_json(
            {"ok": True, **_record_json(record), "app_id": record.own_app_id,
             "acceptance_envelope": envelope, "out": str(out) if out else None,
             "transactions": party.reporter.steps}
        )  # fmt: skip


@main.command()
@click.argument("acceptance", type=click.File("r"), required=False)
@algod_options
@account_option
@home_option
@click.option("--app-id", type=int, help="The counterparty's HTLC to claim (one of our swaps).")
@click.option("--secret", help="Hex secret (participant: from extract-secret).")
@click.option(
    "--min-time-left", callback=_duration_option, default="10m", show_default=True,
    help="Initiator: refuse to reveal the secret to a contract expiring sooner than this.",
)  # fmt: skip
@asset_roles_option
@kme_options(required=False)
@json_option
@_fail_cleanly
def redeem(
    acceptance: Any, algod_url: str, algod_token: str, account_file: Path, home: Path,
    app_id: int | None, secret: str | None, min_time_left: int, allow_asset_roles: bool,
    json_out: bool, **kwargs: Any,
) -> None:  # fmt: skip
    """Claim the counterparty's HTLC after auditing it against the agreed terms.

    Initiator: pass the sealed ACCEPTANCE (opened once, kept: a retry needs no KME), or
    --app-id of the participant's HTLC (our stored secret is used). Participant: --app-id
    of the initiator's HTLC and --secret. Either way the contract must match the swap's
    recorded terms (amount, asset, receiver, deadline, hashlock) and still be open.
    """
    from atomic_swap import swap

    party = _party(account_file, algod_url, algod_token, home)
    raw: bytes | None = None
    if secret is not None:
        try:
            raw = bytes.fromhex(secret)
        except ValueError:
            raise click.BadParameter("the secret must be hex", param_hint="--secret") from None
    if acceptance is not None:
        text = acceptance.read()
        result = swap.redeem_acceptance(
            party, _channel(home, _kme(kwargs), text), text, min_time_left=min_time_left,
            allow_asset_roles=allow_asset_roles,
        )  # fmt: skip
    elif app_id is not None:
        result = swap.redeem(
            party, app_id, raw, min_time_left=min_time_left, allow_asset_roles=allow_asset_roles
        )
    else:
        raise click.UsageError("give a sealed ACCEPTANCE, or --app-id (and --secret)")
    if json_out:
        _print_json(_settled_json(party, result, "redeemed"))


def _settled_json(party: Any, result: Any, state: str) -> dict[str, Any]:
    from atomic_swap.node import network_of

    network = network_of(party.client)
    app_id = result.app_id
    found = party.store.find_by_app(network.genesis_hash, app_id) if app_id else None
    record = found[0] if found else None
    return {
        "ok": True,
        "state": state,
        "app_id": app_id,
        "round": result.round,
        "fees": result.fees,
        "txids": list(result.txids),
        "swap_id": record.swap_id if record else None,
        "hashlock": record.hashlock if record else None,
        "secret": _secret_hex(record) if record else None,
    }


@main.command("extract-secret")
@algod_options
@click.option("--app-id", type=int, required=True, help="The HTLC the counterparty claimed.")
@json_option
@_fail_cleanly
def extract_secret(algod_url: str, algod_token: str, app_id: int, json_out: bool) -> None:
    """Print the secret revealed by the counterparty's claim (hex, on stdout)."""
    import hashlib

    from atomic_swap import swap

    secret = swap.extract_secret(_client(algod_url, algod_token), app_id)
    if json_out:
        _print_json(
            {"ok": True, "app_id": app_id, "secret": secret.hex(),
             "hashlock": hashlib.sha256(secret).hexdigest()}
        )  # fmt: skip
    else:
        click.echo(secret.hex())


@main.command()
@algod_options
@account_option
@home_option
@click.option("--app-id", type=int, required=True)
@json_option
@_fail_cleanly
def refund(
    algod_url: str, algod_token: str, account_file: Path, home: Path, app_id: int, json_out: bool
) -> None:
    """Take our HTLC back after its deadline."""
    from atomic_swap import swap

    party = _party(account_file, algod_url, algod_token, home)
    result = swap.refund(party, app_id)
    if json_out:
        _print_json(_settled_json(party, result, "refunded"))


@main.command()
@algod_options
@account_option
@home_option
@click.option("--app-id", type=int, required=True)
@json_option
@_fail_cleanly
def reclaim(
    algod_url: str, algod_token: str, account_file: Path, home: Path, app_id: int, json_out: bool
) -> None:
    """Delete our empty HTLC (never funded, or settled) to free its minimum balance."""
    from atomic_swap import swap

    party = _party(account_file, algod_url, algod_token, home)
    result = swap.reclaim(party, app_id)
    if json_out:
        _print_json(_settled_json(party, result, "deleted"))


@main.command()
@algod_options
@home_option
@click.option("--app-id", type=int, required=True)
@asset_roles_option
@json_option
@_fail_cleanly
def audit(
    algod_url: str, algod_token: str, home: Path, app_id: int, allow_asset_roles: bool,
    json_out: bool,
) -> None:  # fmt: skip
    """Audit an HTLC: programs, schema, pages, escrow, asset roles, terms, funding, deadline.

    The same audit ``participate`` and ``redeem`` run. If the application belongs to one of
    our swaps (on this network), it is also compared with that swap's agreed terms. Exit
    code 4 if anything is wrong.
    """
    from atomic_swap import swap as swap_mod
    from atomic_swap.audit import audit as run_audit
    from atomic_swap.node import network_of
    from atomic_swap.store import SwapStore

    client = _client(algod_url, algod_token)
    network = network_of(client)
    expected, creator, swap_id = None, None, None
    if home.exists():
        found = SwapStore(home).find_by_app(network.genesis_hash, app_id)
        if found is not None:
            expected, creator = _agreed_terms(swap_mod, *found)
            swap_id = found[0].swap_id
    report = run_audit(
        client, app_id, expected, creator=creator, allow_asset_roles=allow_asset_roles,
        require_open=False,
    )  # fmt: skip
    title = f"HTLC application {app_id} on {network.genesis_id}"
    if swap_id:
        title += f" (swap {swap_id})"
    if json_out:
        _print_json(
            {"ok": not report.problems, "network": network.model_dump(), "swap_id": swap_id,
             **report.to_json()}
        )  # fmt: skip
    else:
        console.print(title, highlight=False)
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            mark = "[green]ok[/] " if check.ok else "[bold red]BAD[/]"
            line = f"  {mark} {check.name:<{width}}  {escape(check.value)}"
            if check.problem:
                line += f"  [red]— {escape(check.problem)}[/]"
            console.print(line, highlight=False)
        console.print(
            f"  funded: {'yes' if report.onchain.funded else 'no'}; "
            f"time left: {report.time_left} s by the chain's latest block",
            highlight=False,
        )
    if report.problems:
        if json_out:  # the report above is the JSON answer; one object on stdout
            console.print(f"[bold red]refused:[/] {len(report.problems)} problem(s)")
            sys.exit(4)
        raise AuditFailed(f"application {app_id}: " + "; ".join(report.problems))


def _agreed_terms(swap_mod: Any, record: Any, side: str) -> tuple[Any, str | None]:
    from atomic_swap.terms import Acceptance, Offer

    offer = Offer.model_validate(record.offer) if record.offer else None
    acc = Acceptance.model_validate(record.acceptance) if record.acceptance else None
    initiator_side = (record.role == "initiator") == (side == "own")
    if initiator_side and offer is not None:
        return swap_mod._offer_terms(offer), offer.initiator
    if not initiator_side and acc is not None:
        return swap_mod._acceptance_terms(acc), acc.participant
    return None, None


@main.command()
@home_option
@algod_options
@json_option
@_fail_cleanly
def status(home: Path, algod_url: str, algod_token: str, json_out: bool) -> None:
    """Our swaps (full IDs), with the live state of the HTLCs on this node's network."""
    from atomic_swap.audit import read_htlc
    from atomic_swap.node import network_of
    from atomic_swap.store import SwapStore

    client = _client(algod_url, algod_token)
    try:
        here = network_of(client)
    except SwapError:  # the table is still useful offline
        here = None
    table = Table(title=f"swaps in {home}")
    for col in ("swap", "role", "state", "our HTLC", "their HTLC", "deadline"):
        table.add_column(col, no_wrap=True, overflow="ignore")
    rows = []
    for record in SwapStore(home).all():
        cells = []
        live: dict[str, str | None] = {}
        pairs = (
            ("own", record.own_app_id, record.own_network),
            ("counter", record.counter_app_id, record.counter_network),
        )
        for side, app_id, network in pairs:
            text = str(app_id or "-")
            live[side] = None
            on_this_node = (
                here is not None
                and network is not None
                and network.get("genesis_hash") == here.genesis_hash
            )
            if app_id and on_this_node:
                try:
                    live[side] = read_htlc(client, app_id).state.name.lower()
                except SwapError:
                    live[side] = "unreadable"
                text += f" ({live[side]})"
            if network:
                text += f" on {network.get('genesis_id')}"
            cells.append(text)
        own = _own_msg(record) or {}
        deadline = own.get("deadline")
        when = (
            datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if isinstance(deadline, int) and deadline < 2**63
            else "-"
        )
        table.add_row(record.swap_id, record.role, str(record.state), *cells, when)
        rows.append({**_record_json(record), "own_htlc_state": live["own"],
                     "counter_htlc_state": live["counter"]})  # fmt: skip
    if json_out:
        _print_json({"ok": True, "home": str(home), "swaps": rows})
    elif console.is_terminal:
        console.print(table)
    else:  # piped or logged: never squeeze the table into 80 columns and cut IDs
        Console(stderr=True, width=1000).print(table)


def _own_msg(record: Any) -> dict[str, Any] | None:
    return record.offer if record.role == "initiator" else record.acceptance  # type: ignore[no-any-return]


# -- ML-KEM key -------------------------------------------------------------------------


@main.group("kem-key")
def kem_key() -> None:
    """Our ML-KEM-768 key: the counterparty seals hybrid terms to its public half."""


@kem_key.command("new")
@home_option
@json_option
@_fail_cleanly
def kem_key_new(home: Path, json_out: bool) -> None:
    """Create our key in the swap home (kept if it exists) and print its fingerprint."""
    from atomic_swap.sealing import KEM_KEY_FILE
    from atomic_swap.store import SwapStore
    from qkd_channel.errors import KEMKeyError
    from qkd_channel.hybrid import ensure_key_pair, public_key_path

    SwapStore(home)  # the home, mode 0700
    try:
        public, created = ensure_key_pair(home / KEM_KEY_FILE)
    except KEMKeyError as exc:
        raise click.ClickException(str(exc)) from None
    published = public_key_path(home / KEM_KEY_FILE)
    if json_out:
        _print_json(
            {"ok": True, "created": created, "fingerprint": public.fingerprint,
             "public_key": str(published)}
        )  # fmt: skip
    else:
        state = "new" if created else "existing"
        click.echo(f"{public.fingerprint} {published} ({state})")


@kem_key.command("show")
@home_option
@click.option("--pem", is_flag=True, help="Print the public key as PEM, for the counterparty.")
@json_option
def kem_key_show(home: Path, pem: bool, json_out: bool) -> None:
    """Print our public key's fingerprint (or the key itself, with --pem)."""
    from atomic_swap.sealing import KEM_KEY_FILE
    from qkd_channel.errors import KEMKeyError
    from qkd_channel.hybrid import KEMPrivateKey

    try:
        public = KEMPrivateKey.load(home / KEM_KEY_FILE).public_key
    except KEMKeyError as exc:
        raise click.ClickException(f"{exc} (qswap kem-key new creates one)") from None
    pem_text = public.to_pem().decode("ascii")
    if json_out:
        _print_json({"ok": True, "fingerprint": public.fingerprint, "public_key_pem": pem_text})
    else:
        click.echo(pem_text if pem else public.fingerprint, nl=not pem)


# -- accounts --------------------------------------------------------------------------


@main.group()
def account() -> None:
    """Account files for development use (mnemonic in a mode-0600 file)."""


@account.command("new")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@_fail_cleanly
def account_new(path: Path, json_out: bool) -> None:
    """Create a new account file and print its address."""
    from atomic_swap.accounts import create_account_file

    address = create_account_file(path).address
    if json_out:
        _print_json({"ok": True, "address": address, "file": str(path)})
    else:
        click.echo(address)


@account.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@algod_options
@json_option
@_fail_cleanly
def account_show(path: Path, algod_url: str, algod_token: str, json_out: bool) -> None:
    """Print the address and balance of an account file."""
    from atomic_swap.accounts import load_account
    from atomic_swap.node import get_json

    acct = load_account(path)
    info = get_json(
        "reading the account", lambda: _client(algod_url, algod_token).account_info(acct.address)
    )
    if json_out:
        _print_json(
            {"ok": True, "address": acct.address, "amount": info["amount"],
             "min_balance": info.get("min-balance", 0), "assets": info.get("assets", [])}
        )  # fmt: skip
        return
    click.echo(acct.address)
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
    "--from", "source", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Account file paying (e.g. the devnet's DATA_DIR/dispenser.mnemonic).",
)  # fmt: skip
@algod_options
@json_option
@_fail_cleanly
def account_fund(
    target: str, algos: float, source: Path, algod_url: str, algod_token: str, json_out: bool
) -> None:
    """Send ALGO to an address or to the address of an account file."""
    from algosdk import encoding, transaction

    from atomic_swap import htlc
    from atomic_swap.accounts import load_account

    address = target if encoding.is_valid_address(target) else load_account(Path(target)).address
    payer = load_account(source)
    client = _client(algod_url, algod_token)
    pay = transaction.PaymentTxn(
        payer.address, htlc._params(client), address, round(algos * 1_000_000)
    )
    reporter = _RichReporter()
    with reporter.waiting("fund"):
        result = htlc.send_group(client, [pay], payer.private_key)
    reporter.done(f"paid {algos} ALGO to {address}", result)
    if json_out:
        _print_json(
            {"ok": True, "address": address, "amount": round(algos * 1_000_000),
             "txids": list(result.txids), "round": result.round, "fees": result.fees}
        )  # fmt: skip


# -- devnet ----------------------------------------------------------------------------


@main.command()
@click.option("--port", type=int, default=4001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
    help="Chain state, API token (algod.token) and dispenser mnemonic live here.",
)  # fmt: skip
@click.option(
    "--network-name", default="devnet", show_default=True,
    help="Names the network; its genesis ID is NAME-v1 and its genesis hash is its own.",
)  # fmt: skip
@json_option
def devnet(port: int, host: str, data_dir: Path, network_name: str, json_out: bool) -> None:
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
    if json_out:
        _print_json(
            {"url": f"http://{host}:{port}", "network_name": network_name,
             "genesis_id": chain.genesis_id, "genesis_hash": chain.genesis_hash_b64,
             "round": chain.round, "token_file": str(data_dir / TOKEN_FILE),
             "dispenser": chain.dispenser, "dispenser_file": str(data_dir / DISPENSER_FILE)}
        )  # fmt: skip
        sys.stdout.flush()
    console.print(
        f"devnet {network_name!r} ({chain.genesis_id}, genesis hash {chain.genesis_hash_b64}): "
        f"http://{host}:{port}  round {chain.round}\n"
        f"  API token file: {data_dir / TOKEN_FILE}\n"
        f"  dispenser: {chain.dispenser} (mnemonic in {data_dir / DISPENSER_FILE})",
        highlight=False,
    )
    uvicorn.run(create_app(chain, token), host=host, port=port, log_level="warning")


apply_env_rule(main, "QSWAP")  # every command is defined: give each option its variable
