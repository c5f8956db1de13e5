"""``qkd-notary serve``: HTTP API, optional MQTT intake and the anchoring worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from notary.chain.client import ChainClient
from notary.chain_source import ChainSource
from notary.cli.common import (
    chain_settings,
    load_service_signer,
    password_file_option,
    settings_from,
    settings_options,
    user_errors,
)
from notary.errors import ChainReset, ChainUnavailable
from notary.logging import configure_logging
from notary.server import NotaryServer
from notary.service import NotaryService, kme_key_source

__all__ = ["serve"]


@click.command()
@settings_options()
@password_file_option
@user_errors
def serve(password_file: Path | None, **flags: Any) -> None:
    """Serve the notary until SIGINT/SIGTERM (then finish requests in flight and stop).

    A chain node that is down, or a chain that lost the contracts, does not stop the
    notary: intake, receipts and the explorer work, /readyz says what is wrong, and
    anchoring starts once the node answers (or the contracts are redeployed). A chain
    that is the wrong one (chain ID, foreign contracts, a superseded build) is refused.

    Every flag can also be set as QKD_NOTARY_<FLAG> (e.g. QKD_NOTARY_ANCHOR_MODE=batch).
    """
    settings = settings_from(flags)
    configure_logging(settings.log_level)
    keys = kme_key_source(settings)  # refuse an incomplete KME set-up before decrypting
    source = ChainSource(
        chain_settings(settings, deploy=False), load_service_signer(settings, password_file)
    )
    chain: ChainClient | None
    try:
        chain = source.open()
        state = f"chain {chain.chain_id}"
    except (ChainUnavailable, ChainReset) as exc:
        chain = None
        state = f"chain not attached yet: {exc}"
    service = NotaryService.open(settings, keys=keys, chain=chain, chain_source=source)
    server = NotaryServer(service, host=settings.host, port=settings.port)
    kem = service.kem_public_key
    hybrid = f"hybrid to ML-KEM {kem.fingerprint}" if kem else "no ML-KEM key: hybrid refused"
    click.echo(
        f"qkd-notary serving http://{settings.host}:{settings.port} "
        f"({state}; {settings.anchor_mode} anchoring; {hybrid}"
        + (f"; MQTT {settings.mqtt_host}:{settings.mqtt_port})" if settings.mqtt_host else ")"),
        err=True,
    )
    asyncio.run(server.serve_forever())
