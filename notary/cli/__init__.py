"""``qkd-notary``: the notary service, its administration and the end-to-end demo.

Each command group lives in its own module of this package and is registered here.
"""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group()
def main() -> None:
    """Permissioned blockchain notary for QKD-authenticated IoT telemetry."""


def _register() -> None:
    from notary.cli.chain import chain
    from notary.cli.demo import demo
    from notary.cli.device import device
    from notary.cli.init import init
    from notary.cli.kem_key import kem_key
    from notary.cli.keystore import keystore
    from notary.cli.receipt import receipt
    from notary.cli.serve import serve
    from notary.cli.token import token

    for command in (init, serve, device, token, receipt, demo, keystore, kem_key, chain):
        main.add_command(command)


_register()
