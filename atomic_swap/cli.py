"""``qswap``: hashlock/timelock atomic swaps between Algorand networks with QKD-sealed terms."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["main"]


@click.group()
def main() -> None:
    """Cross-chain atomic swaps on Algorand, terms exchanged in QKD-sealed envelopes."""


@main.command()
@click.option("--port", type=int, default=4001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
    help="Chain state, API token (algod.token) and dispenser mnemonic live here.",
)  # fmt: skip
@click.option("--network-name", default="devnet", show_default=True)
def devnet(port: int, host: str, data_dir: Path, network_name: str) -> None:
    """Serve a one-node Algorand dev network (algod v2 API subset, go-algorand evaluator)."""
    import uvicorn

    from atomic_swap.devnet import (
        DISPENSER_FILE,
        TOKEN_FILE,
        DevChain,
        create_app,
        load_or_create_token,
    )

    chain = DevChain(data_dir, network_name=network_name)
    token = load_or_create_token(data_dir)
    click.echo(
        f"devnet {network_name!r}: http://{host}:{port}  round {chain.round}\n"
        f"  API token file: {data_dir / TOKEN_FILE}\n"
        f"  dispenser: {chain.dispenser} (mnemonic in {data_dir / DISPENSER_FILE})",
        err=True,
    )
    uvicorn.run(create_app(chain, token), host=host, port=port, log_level="warning")
