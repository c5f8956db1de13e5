"""``qswap``: hashlock/timelock atomic swaps between Algorand networks with QKD-sealed terms."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group()
def main() -> None:
    """Cross-chain atomic swaps on Algorand, terms exchanged in QKD-sealed envelopes."""
