"""``qkd-notary demo``: the whole product on one machine, ending in verified receipts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click
from rich.console import Console

from notary.cli.common import user_errors
from notary.config import AnchorMode
from qkd_channel.envelope import Mode
from qkd_channel.extras import exit_unless_installed

__all__ = ["demo"]


@click.command()
@click.option("--devices", type=click.IntRange(1, 99), default=20, show_default=True)
@click.option("--messages", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option(
    "--mode", type=click.Choice([m.value for m in Mode]), default="otp", show_default=True
)
@click.option(
    "--anchor-mode",
    type=click.Choice([m.value for m in AnchorMode]),
    default="merkle",
    show_default=True,
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep everything (PKI, KME buffers, chain, notary DB, queues) here.",
)
@user_errors
def demo(devices: int, messages: int, mode: str, anchor_mode: str, workdir: Path | None) -> None:
    """Two KMEs, the embedded chain, the notary and a fleet of devices; attacks refused,
    a firmware change flagged, every receipt verified on-chain. Exit 0 if all checks hold."""
    exit_unless_installed("qkd-notary demo", "sim")  # its KMEs run the simulated link
    from notary.demo import DemoConfig, run_demo  # the demo package imports CLI helpers

    logging.basicConfig(level=logging.ERROR)
    config = DemoConfig(
        devices=devices,
        messages=messages,
        mode=Mode(mode),
        anchor_mode=AnchorMode(anchor_mode),
        workdir=workdir,
    )
    outcome = asyncio.run(run_demo(config, Console()))
    if not outcome.ok:
        raise SystemExit(1)
