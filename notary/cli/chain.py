"""``qkd-notary chain``: the deployment this data directory uses, and its roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from notary.chain.models import Role
from notary.cli.common import open_chain, password_file_option, settings_from, user_errors

__all__ = ["chain"]

_ROLES = {role.name.lower(): role for role in Role}


def _common(func: Any) -> Any:
    for option in (
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path)),
        click.option("--chain-rpc-url", default=None, help="JSON-RPC node (default: embedded)."),
        password_file_option,
    ):
        func = option(func)
    return func


@click.group()
def chain() -> None:
    """Inspect the notary's contracts and manage who may write to them."""


@chain.command("info")
@_common
@user_errors
def info(password_file: Path | None, **flags: Any) -> None:
    """Chain ID, head block, contract addresses and the signer's roles."""
    settings = settings_from(flags)
    with open_chain(settings, password_file, deploy=False) as client:
        roles = [name for name, role in _ROLES.items() if client.has_role(role, client.address)]
        click.echo(f"chain        {settings.chain_rpc_url or 'embedded'} (ID {client.chain_id})")
        click.echo(f"head block   {client.block_number()}")
        click.echo(f"gas limit    {client.block_gas_limit}")
        click.echo(f"registry     {client.registry_address}")
        click.echo(f"notary       {client.notary_address}")
        click.echo(f"signer       {client.address} ({', '.join(roles) or 'no role'})")


@chain.command("grant-role")
@click.argument("role", type=click.Choice(sorted(_ROLES)))
@click.argument("account")
@_common
@user_errors
def grant_role(role: str, account: str, password_file: Path | None, **flags: Any) -> None:
    """Grant ROLE (admin, operator, notary) to ACCOUNT on every contract that has it."""
    with open_chain(settings_from(flags), password_file, deploy=False) as client:
        for tx in client.grant_role(_ROLES[role], account):
            click.echo(f"granted {role} to {account} in {tx.tx_hash} (block {tx.block_number})")


@chain.command("revoke-role")
@click.argument("role", type=click.Choice(sorted(_ROLES)))
@click.argument("account")
@_common
@user_errors
def revoke_role(role: str, account: str, password_file: Path | None, **flags: Any) -> None:
    """Revoke ROLE from ACCOUNT on every contract that has it."""
    with open_chain(settings_from(flags), password_file, deploy=False) as client:
        for tx in client.revoke_role(_ROLES[role], account):
            click.echo(f"revoked {role} from {account} in {tx.tx_hash} (block {tx.block_number})")
