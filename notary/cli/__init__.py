"""``qkd-notary``: the notary service, its administration and the end-to-end demo.

Each command group lives in its own module of this package and is registered here.
"""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group()
def main() -> None:
    """Permissioned blockchain notary for QKD-authenticated IoT telemetry."""
