"""``qkd-notary keystore``: create and inspect the signer's encrypted keystore."""

from __future__ import annotations

import json
from pathlib import Path

import click
from web3 import Web3

from notary.chain.keystore import create_keystore, load_signer, read_password
from notary.cli.common import KEYSTORE_FILE, password_file_option, user_errors

__all__ = ["keystore"]

_keystore_option = click.option(
    "--keystore",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Keystore file (default <data-dir>/{KEYSTORE_FILE}).",
)
_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("notary-data"),
    show_default=True,
)


def _path(path: Path | None, data_dir: Path) -> Path:
    return path if path is not None else data_dir / KEYSTORE_FILE


@click.group()
def keystore() -> None:
    """The notary's signing key (Web3 Secret Storage, scrypt-encrypted)."""


@keystore.command("new")
@_keystore_option
@_data_dir_option
@password_file_option
@user_errors
def new(path: Path | None, data_dir: Path, password_file: Path | None) -> None:
    """Generate a signing key and write it encrypted (never overwrites); print its address."""
    target = _path(path, data_dir)
    address = create_keystore(target, read_password(password_file=password_file))
    click.echo(f"{address} {target}")


@keystore.command("address")
@_keystore_option
@_data_dir_option
@click.option("--check-password", is_flag=True, help="Also decrypt it to prove the password.")
@password_file_option
@user_errors
def address(
    path: Path | None, data_dir: Path, check_password: bool, password_file: Path | None
) -> None:
    """Print the keystore's address (public, readable without the password)."""
    target = _path(path, data_dir)
    if check_password:
        click.echo(load_signer(target, read_password(password_file=password_file)).address)
        return
    try:
        document = json.loads(target.read_text("utf-8"))
        click.echo(Web3.to_checksum_address("0x" + document["address"]))
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"{target} is not a readable keystore") from exc
