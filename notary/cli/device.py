"""``qkd-notary device ...``: the admin API's device operations, from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from notary.cli.common import AdminAPI, admin_connection, user_errors

__all__ = ["device"]


def _api(url: str, data_dir: Path, token_file: Path | None) -> AdminAPI:
    return AdminAPI.from_data_dir(url, data_dir, token_file)


def _show(devices: list[dict[str, Any]], as_json: bool, single: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(devices[0] if single else devices, indent=2))
        return
    table = Table("device", "SAE", "active", "trusted", "firmware", "last seq", "attestations")
    for d in devices:
        digest = d.get("current_firmware_digest") or "-"
        table.add_row(
            d["device_id"],
            d["sae_id"],
            "yes" if d["active"] else "no",
            "[green]yes[/]" if d["trusted"] else "[red]NO[/]",
            digest[:16] + ("…" if len(digest) > 16 else ""),
            str(d["last_sequence"] if d["last_sequence"] is not None else "-"),
            str(d["attestation_count"]),
        )
    Console().print(table)
    if single:
        for event in devices[0].get("history", []):
            click.echo(
                f"  {event['kind']:<16} {event.get('firmware_digest') or '':<64} "
                f"{event.get('record_id') or ''}"
            )


@click.group()
def device() -> None:
    """Register, list, inspect, approve and deactivate devices (admin API)."""


@device.command("register")
@click.argument("device_id")
@click.option("--sae", "sae_id", required=True, help="The device's SAE ID at its KME.")
@click.option("--owner", default="", help="Free-form owner label.")
@click.option("--expected-digest", default=None, help="Firmware digest it must report (hex).")
@admin_connection
@user_errors
def register(
    device_id: str,
    sae_id: str,
    owner: str,
    expected_digest: str | None,
    url: str,
    data_dir: Path,
    token_file: Path | None,
    as_json: bool,
) -> None:
    """Register DEVICE_ID, bound to the SAE whose keys authenticate it."""
    body = {"device_id": device_id, "sae_id": sae_id, "owner": owner}
    if expected_digest:
        body["expected_firmware_digest"] = expected_digest
    _show([_api(url, data_dir, token_file).call("POST", "/v1/admin/devices", body)], as_json, True)


@device.command("list")
@admin_connection
@user_errors
def list_devices(url: str, data_dir: Path, token_file: Path | None, as_json: bool) -> None:
    """All registered devices with trust status."""
    _show(_api(url, data_dir, token_file).call("GET", "/v1/devices"), as_json)


@device.command("show")
@click.argument("device_id")
@admin_connection
@user_errors
def show(device_id: str, url: str, data_dir: Path, token_file: Path | None, as_json: bool) -> None:
    """One device and its attestation history."""
    _show([_api(url, data_dir, token_file).call("GET", f"/v1/devices/{device_id}")], as_json, True)


@device.command("approve")
@click.argument("device_id")
@click.argument("digest")
@admin_connection
@user_errors
def approve(
    device_id: str, digest: str, url: str, data_dir: Path, token_file: Path | None, as_json: bool
) -> None:
    """Approve firmware DIGEST for DEVICE_ID (trusted again once it runs it)."""
    answer = _api(url, data_dir, token_file).call(
        "POST", f"/v1/admin/devices/{device_id}/approve", {"firmware_digest": digest}
    )
    _show([answer], as_json, True)


@device.command("deactivate")
@click.argument("device_id")
@admin_connection
@user_errors
def deactivate(
    device_id: str, url: str, data_dir: Path, token_file: Path | None, as_json: bool
) -> None:
    """Deactivate DEVICE_ID: its envelopes are refused from now on."""
    answer = _api(url, data_dir, token_file).call(
        "POST", f"/v1/admin/devices/{device_id}/deactivate"
    )
    _show([answer], as_json, True)
