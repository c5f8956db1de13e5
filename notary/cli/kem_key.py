"""``qkd-notary kem-key``: the ML-KEM-768 public key devices pin for ``hybrid`` envelopes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from notary.cli.common import settings_from, user_errors
from notary.config import load_kem_key

__all__ = ["kem_key"]


@click.group("kem-key")
def kem_key() -> None:
    """The notary's ML-KEM-768 key (created by qkd-notary init)."""


@kem_key.command("show")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--kem-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--pem", is_flag=True, help="Print the public key as PEM, for a device to pin.")
@user_errors
def show(pem: bool, **flags: Any) -> None:
    """Print the public key's fingerprint (compare it out of band before pinning)."""
    settings = settings_from(flags)
    key = load_kem_key(settings)
    if key is None:
        raise click.ClickException(
            f"no ML-KEM key at {settings.kem_key_path}; qkd-notary init creates one"
        )
    if pem:
        click.echo(key.public_key.to_pem().decode("ascii"), nl=False)
        return
    click.echo(f"fingerprint  {key.public_key.fingerprint}")
    click.echo(f"key ID       {key.public_key.key_id.hex()}")
    click.echo(f"public key   {settings.kem_public_key_path}")
