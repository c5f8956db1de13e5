"""The FastAPI application factory.

``create_app(service)`` serves an existing :class:`~notary.service.NotaryService` (the
caller starts and closes it); ``create_app(settings=...)`` opens one from the settings and
owns its lifecycle (started and closed by the app's lifespan), which is what
``qkd-notary serve`` and ``uvicorn --factory`` use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from notary.api.docs import install_docs
from notary.api.problems import install_problem_handlers
from notary.api.routes import admin, devices, health, records, rpc, telemetry
from notary.config import NotarySettings
from notary.explorer import install_explorer
from notary.service import NotaryService

__all__ = ["MAX_REQUEST_BODY_BYTES", "create_app"]

#: A backstop above every route's own limit (envelopes 64 KiB, /rpc 1 MiB, the explorer's
#: form 256 KiB), which answer first in their own formats.
MAX_REQUEST_BODY_BYTES = 2 << 20


def create_app(
    service: NotaryService | None = None, *, settings: NotarySettings | None = None
) -> FastAPI:
    """Build the HTTP API around ``service`` (or a service opened from ``settings``)."""
    if service is None and settings is None:
        settings = NotarySettings()
    owned = service is None
    limits = service.settings if service is not None else settings
    assert limits is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            assert settings is not None
            app.state.service = NotaryService.open(settings)
            await app.state.service.start()
        try:
            yield
        finally:
            if owned:
                await app.state.service.aclose()

    app = FastAPI(
        title="qkd-notary",
        version="1",
        summary="Blockchain notary for QKD-authenticated IoT telemetry",
        lifespan=lifespan,
        docs_url=None,  # served from the package by install_docs (no CDN)
        redoc_url=None,
        # Stops anyone making the notary buffer an unbounded body on any route.
        max_body_size=max(MAX_REQUEST_BODY_BYTES, limits.max_envelope_bytes),
    )
    if service is not None:
        app.state.service = service
    install_problem_handlers(app)
    for module in (telemetry, records, devices, admin, health, rpc):
        app.include_router(module.router)
    install_explorer(app)
    install_docs(app)
    return app
