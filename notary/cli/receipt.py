"""``qkd-notary receipt ...``: fetch a receipt and check it against the chain, not the notary.

The receipt comes from the notary (or a file); every claim in it is then checked against a
chain node by :func:`notary.receipts.verify_receipt`: record ID, payload hash (when the
plaintext is given), Merkle leaf and proof, chain ID, contract code, transaction, block,
event and contract state. Only the node is trusted. A notary on its embedded chain is that
chain's only node: while it runs, its ``/rpc`` endpoint serves the chain (``--rpc-url
http://notary:8080/rpc``); once stopped, ``--data-dir`` opens the chain files themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import httpx
from web3 import Web3

from notary.chain.deployment import load_deployment
from notary.chain.embedded import EmbeddedChain
from notary.chain.settings import ChainSettings
from notary.cli.common import user_errors
from notary.errors import EmbeddedChainLocked, ReceiptInvalid
from notary.receipts import Receipt, verify_receipt

__all__ = ["embedded_web3", "receipt"]


@contextmanager
def embedded_web3(data_dir: Path) -> Iterator[Web3]:
    """A ``Web3`` on the embedded chain of a (stopped) notary's data directory."""
    deployment = load_deployment(data_dir)
    chain_dir = data_dir / "chain"
    if deployment is None or not EmbeddedChain.exists(chain_dir):
        raise click.ClickException(
            f"{data_dir} holds no embedded chain; give --rpc-url of a node of the chain"
        )
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
        raise click.ClickException(
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
    envvar="QKD_NOTARY_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Where to fetch the receipt [env QKD_NOTARY_URL].",
)
@click.option(
    "--file",
    "receipt_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the receipt from this JSON file instead of asking the notary.",
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
@click.option("--contract", help="Require this TelemetryNotary address.")
@click.option("--min-confirmations", type=int, default=1, show_default=True)
@user_errors
def verify(
    record_id: str,
    url: str,
    receipt_file: Path | None,
    rpc_url: str | None,
    data_dir: Path | None,
    payload_file: Path | None,
    contract: str | None,
    min_confirmations: int,
) -> None:
    """Verify the receipt of RECORD_ID against the chain; exit 1 if any check fails."""
    document = _load(record_id, url, receipt_file)
    payload = payload_file.read_bytes() if payload_file else None
    if rpc_url is None and data_dir is None:
        raise click.UsageError(
            "give --rpc-url (a node of the chain, or a running notary's /rpc) or --data-dir "
            "(a stopped notary's embedded chain)"
        )
    try:
        if rpc_url is not None:
            result = verify_receipt(
                document,
                Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 10})),
                payload=payload,
                expected_contract=contract,
                min_confirmations=min_confirmations,
            )
        else:
            assert data_dir is not None
            with embedded_web3(data_dir.resolve()) as w3:
                result = verify_receipt(
                    document,
                    w3,
                    payload=payload,
                    expected_contract=contract,
                    min_confirmations=min_confirmations,
                )
    except ReceiptInvalid as exc:
        raise click.ClickException(f"receipt INVALID ({exc.reason}): {exc}") from None
    click.echo(
        f"receipt valid: record {result.record_id} anchored by {result.method} in block "
        f"{result.block_number} of chain {result.chain_id} (contract {result.contract}, "
        f"{result.confirmations} confirmation(s)"
        + (", payload hash checked)" if result.payload_checked else ")")
    )


def _load(record_id: str, url: str, receipt_file: Path | None) -> Receipt:
    if receipt_file is not None:
        try:
            return Receipt.model_validate_json(receipt_file.read_bytes())
        except ValueError:
            raise click.ClickException(f"{receipt_file} is not a qkd-notary receipt") from None
    response = httpx.get(f"{url.rstrip('/')}/v1/records/{record_id}", timeout=10)
    if response.status_code == 404:
        raise click.ClickException(f"the notary has no record {record_id}")
    if response.status_code != 200:
        raise click.ClickException(f"the notary answered {response.status_code}")
    receipt = Receipt.model_validate_json(response.content)
    if receipt.record_id.lower() != record_id.lower():
        raise click.ClickException("the notary returned a receipt for another record")
    return receipt
