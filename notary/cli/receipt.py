"""``qkd-notary receipt ...``: fetch a receipt and check it against the chain, not the notary.

The receipt comes from the notary (or a file); every claim in it is then checked against a
chain node by :func:`notary.receipts.verify_receipt` and printed field by field: verified
on-chain, verified locally, or not verifiable. Only the node is trusted. A notary on its
embedded chain is that chain's only node: while it runs, its ``/rpc`` endpoint serves the
chain (``--rpc-url http://notary:8080/rpc``); once stopped, ``--data-dir`` opens the chain
files themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import click
import httpx
from web3 import Web3

from notary.chain.deployment import load_deployment
from notary.chain.embedded import EmbeddedChain
from notary.chain.settings import ChainSettings
from notary.errors import (
    ChainUnavailable,
    EmbeddedChainLocked,
    ReceiptInvalid,
    ReceiptNotFinal,
)
from notary.receipts import VerificationReport, verify_receipt

__all__ = ["embedded_web3", "receipt"]


#: Exit codes of ``receipt verify`` (documented in docs/receipts.md).
EXIT_VALID = 0
EXIT_FORGED = 1
EXIT_USAGE = 2
EXIT_NODE_UNREACHABLE = 3
EXIT_NOT_FINAL = 4
EXIT_PARTLY_VERIFIED = 5


class _Refused(click.ClickException):
    """A request that cannot be served as given (no such record, a refused token, a chain
    that cannot be opened here): a usage error, not a verdict on the receipt."""

    exit_code = EXIT_USAGE


@contextmanager
def embedded_web3(data_dir: Path) -> Iterator[Web3]:
    """A ``Web3`` on the embedded chain of a (stopped) notary's data directory."""
    deployment = load_deployment(data_dir)
    chain_dir = data_dir / "chain"
    if deployment is None or not EmbeddedChain.exists(chain_dir):
        raise _Refused(f"{data_dir} holds no embedded chain; give --rpc-url of a node of the chain")
    defaults = ChainSettings(data_dir=data_dir)
    alloc = {}
    if deployment.deployer:
        alloc[bytes.fromhex(deployment.deployer[2:])] = defaults.embedded_genesis_balance_wei
    try:
        chain = EmbeddedChain(
            chain_dir,
            chain_id=deployment.chain_id,
            genesis_alloc=alloc,  # type: ignore[arg-type]
            gas_limit=defaults.embedded_gas_limit,
        )
    except EmbeddedChainLocked:
        raise _Refused(
            f"the notary of {data_dir} is running; verify through its JSON-RPC endpoint: "
            "--rpc-url http://<notary>/rpc"
        ) from None
    try:
        yield Web3(chain.provider)
    finally:
        chain.close()


@click.group()
def receipt() -> None:
    """Fetch and independently verify notary receipts."""


@receipt.command("verify")
@click.argument("record_id")
@click.option(
    "--notary",
    "url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Where to fetch the receipt.",
)
@click.option(
    "--file",
    "receipt_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the receipt from this JSON file instead of asking the notary; it must be "
    "RECORD_ID's receipt.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="An owner or auditor token: the notary then includes the salt and the plaintext, "
    "and the payload hash is checked too.",
)
@click.option(
    "--rpc-url",
    help="Any JSON-RPC node of the chain (the only party trusted); for a running notary "
    "on its embedded chain: http://<notary>/rpc.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Without --rpc-url: open the embedded chain of this (stopped) notary's data dir.",
)
@click.option(
    "--payload-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The plaintext the device sealed; checked against the salted payload hash.",
)
@click.option("--salt", help="The record's salt (0x + 64 hex), as the device derives it.")
@click.option("--contract", help="Require this TelemetryNotary address.")
@click.option("--min-confirmations", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    record_id: str,
    url: str,
    receipt_file: Path | None,
    token_file: Path | None,
    rpc_url: str | None,
    data_dir: Path | None,
    payload_file: Path | None,
    salt: str | None,
    contract: str | None,
    min_confirmations: int,
    as_json: bool,
) -> None:
    """Verify the receipt of RECORD_ID against the chain, field by field.

    Exit status: 0 every claimed field verified; 1 forged (a claim the chain contradicts,
    or a receipt of another record); 2 usage; 3 chain node or notary unreachable; 4 not
    final yet (not anchored, or too few confirmations); 5 nothing contradicted, but some
    claims are not bound (a v1 receipt) or could not be checked.
    """
    if rpc_url is None and data_dir is None:
        raise click.UsageError(
            "give --rpc-url (a node of the chain, or a running notary's /rpc) or --data-dir "
            "(a stopped notary's embedded chain)"
        )
    salt_bytes = _salt(salt)
    try:
        document = _load(record_id, url, receipt_file, token_file)
        payload = payload_file.read_bytes() if payload_file else None
        options: dict[str, Any] = {
            "payload": payload,
            "salt": salt_bytes,
            "expected_record_id": record_id,
            "expected_contract": contract,
            "min_confirmations": min_confirmations,
        }
        if rpc_url is not None:
            w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
            report = verify_receipt(document, w3, **options)
        else:
            assert data_dir is not None
            with embedded_web3(data_dir.resolve()) as w3:
                report = verify_receipt(document, w3, **options)
    except ReceiptNotFinal as exc:
        _finish(exc.report, "not-final", str(exc), EXIT_NOT_FINAL, as_json)
    except ReceiptInvalid as exc:
        _finish(exc.report, "forged", f"({exc.reason}) {exc}", EXIT_FORGED, as_json)
    except (ChainUnavailable, httpx.HTTPError) as exc:
        _finish(None, "unreachable", str(exc), EXIT_NODE_UNREACHABLE, as_json)
    if report.verified:
        _finish(report, "valid", "every claimed field is verified", EXIT_VALID, as_json)
    _finish(
        report,
        "partly-verified",
        "nothing is contradicted, but not bound or not checked: " + ", ".join(report.unverifiable),
        EXIT_PARTLY_VERIFIED,
        as_json,
    )


def _salt(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise click.BadParameter("a salt is 0x + 64 hex digits", param_hint="--salt")
    return raw


def _finish(report: object, verdict: str, message: str, code: int, as_json: bool) -> NoReturn:
    """Print the report and the verdict, then exit with ``code``."""
    full = report if isinstance(report, VerificationReport) else None
    if as_json:
        document: dict[str, Any] = {"result": verdict, "message": message}
        if full is not None:
            document.update(full.to_dict())
        click.echo(json.dumps(document, indent=2))
        raise SystemExit(code)
    if full is not None:
        click.echo(
            f"record {full.record_id} ({full.receipt_version})"
            + (
                f": {full.method.value} anchoring in block {full.block_number} of chain "
                f"{full.chain_id}, contract {full.contract}, {full.confirmations} "
                "confirmation(s)"
                if full.method is not None
                else ""
            )
        )
        for check in full.fields:
            click.echo(f"  {check.outcome.value:<18} {check.field:<24} {check.detail}")
    labels = {
        "valid": "receipt valid",
        "forged": "receipt FORGED",
        "not-final": "receipt NOT FINAL",
        "unreachable": "cannot verify",
        "partly-verified": "receipt PARTLY VERIFIED",
    }
    click.echo(f"{labels[verdict]}: {message}", err=code != EXIT_VALID)
    raise SystemExit(code)


def _load(record_id: str, url: str, receipt_file: Path | None, token_file: Path | None) -> Any:
    """The receipt document, parsed only as JSON: the verifier judges the rest."""
    if receipt_file is not None:
        try:
            return json.loads(receipt_file.read_bytes())
        except ValueError:
            raise ReceiptInvalid(f"{receipt_file} is not JSON", reason="format") from None
    headers = {}
    if token_file is not None:
        headers["Authorization"] = "Bearer " + token_file.read_text("utf-8").strip()
    response = httpx.get(
        f"{url.rstrip('/')}/v1/records/{quote(record_id, safe='')}", headers=headers, timeout=10
    )
    if response.status_code == 404:
        raise _Refused(f"the notary has no record {record_id}")
    if response.status_code == 401:
        raise _Refused("the notary refused the access token (unknown or revoked)")
    if response.status_code != 200:
        raise ChainUnavailable(f"the notary answered {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise ReceiptInvalid("the notary's answer is not JSON", reason="format") from None
