"""``qkd-notary``: the notary service, its administration and the end-to-end demo.

Each command group lives in its own module of this package and is imported only when it
runs (``qkd_channel.clikit.LazyGroup``), so ``qkd-notary --help`` does not load web3,
py-evm and FastAPI. Options follow the project's CLI conventions (``QKD_NOTARY_<NAME>``
variables, defaults in help, ``--version``, Ctrl-C exits 130).
"""

from __future__ import annotations

import click

from qkd_channel.clikit import CONTEXT, LazyGroup, run, version_option

__all__ = ["entry", "main"]

_COMMANDS = {
    "init": ("notary.cli.init:init", "Create a data directory: keys, admin token, contracts."),
    "serve": ("notary.cli.serve:serve", "Serve the notary until SIGINT/SIGTERM."),
    "device": ("notary.cli.device:device", "Register, list, inspect, approve, deactivate."),
    "token": ("notary.cli.token:token", "Access tokens for owners and auditors."),
    "receipt": ("notary.cli.receipt:receipt", "Fetch and independently verify receipts."),
    "plan": ("notary.cli.plan:plan", "A fleet's key consumption against a link's supply."),
    "demo": ("notary.cli.demo:demo", "The whole product on one machine."),
    "keystore": ("notary.cli.keystore:keystore", "Create or inspect signing keystores."),
    "kem-key": ("notary.cli.kem_key:kem_key", "The ML-KEM public key devices pin (hybrid)."),
    "chain": ("notary.cli.chain:chain", "Contracts, roles and redeployment."),
}


@click.group(
    cls=LazyGroup,
    lazy=_COMMANDS,
    env_prefix="QKD_NOTARY",
    context_settings=CONTEXT,
)
@version_option()
def main() -> None:
    """Permissioned blockchain notary for QKD-authenticated IoT telemetry."""


def entry() -> None:
    """The ``qkd-notary`` console script."""
    run(main, "qkd-notary")
