"""``qkd-notary serve``: HTTP API, optional MQTT intake and the anchoring worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from notary.cli.common import (
    open_chain,
    password_file_option,
    settings_from,
    settings_options,
    user_errors,
)
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

    Every flag can also be set as QKD_NOTARY_<FLAG> (e.g. QKD_NOTARY_ANCHOR_MODE=batch).
    """
    settings = settings_from(flags)
    configure_logging(settings.log_level)
    keys = kme_key_source(settings)  # refuse an incomplete KME set-up before decrypting
    with open_chain(settings, password_file, deploy=False) as chain:
        service = NotaryService.open(settings, keys=keys, chain=chain)
        server = NotaryServer(service, host=settings.host, port=settings.port)
        click.echo(
            f"qkd-notary serving http://{settings.host}:{settings.port} "
            f"(chain {chain.chain_id}, {settings.anchor_mode} anchoring"
            + (f", MQTT {settings.mqtt_host}:{settings.mqtt_port})" if settings.mqtt_host else ")"),
            err=True,
        )
        asyncio.run(server.serve_forever())
