"""``qkd-notary chain``: the deployment this data directory uses, its roles, redeployment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import httpx

from notary.chain.models import Role
from notary.chain_source import ChainSource
from notary.cli.common import (
    AdminAPI,
    chain_settings,
    load_service_signer,
    open_chain,
    password_file_option,
    settings_from,
    user_errors,
)
from notary.config import NotarySettings
from notary.redeploy import ReanchorPlan, requeue_everything
from notary.storage import open_store

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


@chain.command("redeploy")
@click.option(
    "--re-anchor",
    "re_anchor",
    is_flag=True,
    required=True,
    help="Required: anchor every record and device event again in the new contracts.",
)
@click.option(
    "--notary",
    "url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="A running notary does the redeployment itself; if none answers here, this "
    "command does it on the data directory.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Admin token (default: <data-dir>/admin.token).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@_common
@user_errors
def redeploy(
    re_anchor: bool,
    url: str,
    token_file: Path | None,
    as_json: bool,
    password_file: Path | None,
    **flags: Any,
) -> None:
    """Deploy new contracts and anchor everything again in them.

    For a chain that lost the notary's contracts (reset, or rolled back to before their
    deployment) and to migrate a data directory from a superseded contract build. Receipts
    of the old contracts stay verifiable wherever those contracts still exist.
    """
    settings = settings_from(flags)
    api = AdminAPI.from_data_dir(url, settings.data_dir, token_file)
    try:
        outcome = api.call("POST", "/v1/admin/chain/redeploy")
        where = f"by the notary at {url}"
    except httpx.ConnectError:
        outcome = _redeploy_offline(settings, password_file)
        where = f"on {settings.data_dir} (no notary answered at {url})"
    finally:
        api.close()
    if as_json:
        click.echo(json.dumps({**outcome, "done": where}, indent=2))
        return
    click.echo(
        f"redeployed {where}: DeviceRegistry {outcome['registry']}, TelemetryNotary "
        f"{outcome['notary']} on chain {outcome['chain_id']}; anchoring again "
        f"{outcome['records']} record(s) in {outcome['batches']} batch(es) and "
        f"{outcome['device_events']} device event(s)"
    )


def _redeploy_offline(settings: NotarySettings, password_file: Path | None) -> dict[str, Any]:
    """The redeployment of a stopped notary: new contracts, then its store requeued."""
    signer = load_service_signer(settings, password_file)
    client = ChainSource(chain_settings(settings, deploy=True), signer).redeploy()
    try:
        plan = asyncio.run(_requeue(settings))
    finally:
        client.close()
    return {
        "chain_id": client.chain_id,
        "registry": client.registry_address,
        "notary": client.notary_address,
        "batches": plan.batches,
        "records": plan.records,
        "device_events": plan.device_events,
    }


async def _requeue(settings: NotarySettings) -> ReanchorPlan:
    store = open_store(settings)
    try:
        return await requeue_everything(store)
    finally:
        await store.aclose()
