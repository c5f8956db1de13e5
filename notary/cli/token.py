"""``qkd-notary token ...``: access tokens for the owners' and auditors' view of receipts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from notary.cli.common import AdminAPI, admin_connection, user_errors

__all__ = ["token"]


@click.group()
def token() -> None:
    """Issue, list and revoke tokens that unlock plaintexts and salts (admin API)."""


@token.command("issue")
@click.option("--role", type=click.Choice(["owner", "auditor"]), required=True)
@click.option("--device", "device_id", help="The device an owner token covers.")
@click.option("--label", required=True, help="Whom the token is for (shown in lists and logs).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the token to this file (mode 0600) instead of printing it.",
)
@admin_connection
@user_errors
def issue(
    role: str,
    device_id: str | None,
    label: str,
    out: Path | None,
    url: str,
    data_dir: Path,
    token_file: Path | None,
    as_json: bool,
) -> None:
    """Issue a token; it is shown (or written) this once and stored only as a hash."""
    if (role == "owner") != (device_id is not None):
        raise click.UsageError("--device is required for --role owner and refused otherwise")
    body: dict[str, Any] = {"role": role, "label": label}
    if device_id is not None:
        body["device_id"] = device_id
    answer = AdminAPI.from_data_dir(url, data_dir, token_file).call(
        "POST", "/v1/admin/tokens", body
    )
    secret = answer.pop("token")
    if out is not None:
        out.touch(mode=0o600, exist_ok=False)
        out.write_text(secret + "\n", "ascii")
    if as_json:
        click.echo(json.dumps(answer if out else {**answer, "token": secret}, indent=2))
        return
    scope = f"device {device_id}" if device_id else "every device"
    click.echo(f"issued {role} token {answer['token_id']} for {scope} ({label})", err=True)
    if out is None:
        click.echo(secret)


@token.command("list")
@admin_connection
@user_errors
def list_tokens(url: str, data_dir: Path, token_file: Path | None, as_json: bool) -> None:
    """Every token issued: handle, role, scope, label, revoked or not."""
    rows = AdminAPI.from_data_dir(url, data_dir, token_file).call("GET", "/v1/admin/tokens")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("token", "role", "device", "label", "revoked")
    for row in rows:
        table.add_row(
            row["token_id"],
            row["role"],
            row["device_id"] or "(all)",
            row["label"],
            "yes" if row["revoked_at"] is not None else "no",
        )
    Console().print(table)


@token.command("revoke")
@click.argument("token_id")
@admin_connection
@user_errors
def revoke(token_id: str, url: str, data_dir: Path, token_file: Path | None, as_json: bool) -> None:
    """Revoke TOKEN_ID (the handle `token list` shows) at once."""
    answer = AdminAPI.from_data_dir(url, data_dir, token_file).call(
        "POST", f"/v1/admin/tokens/{token_id}/revoke"
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        click.echo(f"revoked {answer['token_id']} ({answer['label']})")
