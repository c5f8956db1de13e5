"""``qkd-notary init``: a data directory ready to serve (token, keystore, contracts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from web3 import Web3

from notary.chain.keystore import create_keystore, read_password
from notary.cli.common import (
    KEYSTORE_FILE,
    open_chain,
    password_file_option,
    settings_from,
    user_errors,
)
from notary.config import create_kem_key, load_or_create_admin_token

__all__ = ["init"]


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--chain-rpc-url", default=None, help="JSON-RPC node (default: embedded chain).")
@click.option("--confirmations", type=int, default=None)
@password_file_option
@click.option(
    "--fund-from-node-account",
    type=float,
    default=None,
    metavar="ETH",
    help="Development nodes (anvil): send ETH from the node's first unlocked account to the "
    "new signer before deploying.",
)
@user_errors
def init(password_file: Path | None, fund_from_node_account: float | None, **flags: Any) -> None:
    """Create the admin token, signer keystore and ML-KEM key, then deploy or attach the
    contracts.

    Idempotent: an existing token, keystore, ML-KEM key or recorded deployment is reused.
    """
    settings = settings_from(flags)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    load_or_create_admin_token(settings.data_dir)
    kem, created = create_kem_key(settings)
    click.echo(f"ml-kem key    {settings.kem_key_path} ({'new' if created else 'existing'})")
    click.echo(f"ml-kem public {settings.kem_public_key_path} ({kem.fingerprint})")
    keystore = settings.data_dir / KEYSTORE_FILE
    if keystore.exists():
        click.echo(f"keystore      {keystore} (existing)")
    else:
        address = create_keystore(keystore, read_password(password_file=password_file))
        click.echo(f"keystore      {keystore} (new signer {address})")
    if fund_from_node_account is not None:
        _fund(settings.chain_rpc_url, keystore, fund_from_node_account)
    with open_chain(settings, password_file, deploy=True) as chain:
        click.echo(f"admin token   {settings.admin_token_path}")
        click.echo(f"chain         {settings.chain_rpc_url or 'embedded'} (ID {chain.chain_id})")
        click.echo(f"signer        {chain.address}")
        click.echo(f"registry      {chain.registry_address}")
        click.echo(f"notary        {chain.notary_address}")


def _fund(rpc_url: str | None, keystore: Path, eth: float) -> None:
    if rpc_url is None:
        raise click.UsageError("--fund-from-node-account needs --chain-rpc-url")
    import json

    address = Web3.to_checksum_address("0x" + json.loads(keystore.read_text())["address"])
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    accounts = w3.eth.accounts
    if not accounts:
        raise click.ClickException("the node has no unlocked account to fund from")
    value = Web3.to_wei(eth, "ether")
    if w3.eth.get_balance(address) >= value:
        return
    tx = w3.eth.send_transaction({"from": accounts[0], "to": address, "value": value})
    w3.eth.wait_for_transaction_receipt(tx, timeout=60)
    click.echo(f"funded        {address} with {eth:g} ETH")
