"""``qkd-kme``: run a key management entity of a simulated QKD link."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group()
def main() -> None:
    """Key management entity (ETSI GS QKD 014) for one end of a simulated QKD link."""
