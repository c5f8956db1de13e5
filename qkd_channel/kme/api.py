"""The KME's HTTP face: ETSI GS QKD 014 v1.1.1 for SAEs, plus the KME-to-KME sync route.

Every error leaves as the standard body ``{"message": ..., "details": [...]}`` — including
FastAPI's own validation errors (as 400) and unknown routes — from the handlers registered
in :func:`create_app`; routes only call :class:`~qkd_channel.kme.service.KeyManager`.
The caller's identity is taken from the TLS client certificate (see
:mod:`qkd_channel.kme.tls`), never from the request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qkd_channel.errors import (
    KeyStoreError,
    KMERequestRejected,
    KMEUnauthorized,
    KMEUnavailable,
)
from qkd_channel.keys import QKDKey
from qkd_channel.kme.config import KMEConfig
from qkd_channel.kme.identity import Identity
from qkd_channel.kme.peer import ALLOCATIONS_PATH, PeerLink
from qkd_channel.kme.schemas import (
    AllocationRequest,
    ErrorBody,
    KeyContainer,
    KeyIDs,
    KeyItem,
    KeyRequest,
    Status,
)
from qkd_channel.kme.service import KeyManager
from qkd_channel.kme.source import KeySource, feed_store, reported_key_path
from qkd_channel.kme.store import KeyStore
from qkd_channel.kme.tls import client_ssl_context, peer_identity

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request format"},
    401: {"model": ErrorBody, "description": "Unauthorized"},
    503: {"model": ErrorBody, "description": "Error on server side (e.g. not enough key)"},
}


# Both dependencies are ``async`` only so that FastAPI calls them on the event loop: a plain
# ``def`` dependency is sent to the thread pool, two thread hops per request for a lookup.
async def _caller(request: Request) -> Identity | None:
    return peer_identity(request.scope)


async def _manager(request: Request) -> KeyManager:
    manager: KeyManager = request.app.state.manager
    return manager


Caller = Annotated[Identity | None, Depends(_caller)]
Manager = Annotated[KeyManager, Depends(_manager)]


def _container(keys: Sequence[QKDKey]) -> KeyContainer:
    return KeyContainer(
        keys=[
            KeyItem(key_ID=k.key_id, key=base64.b64encode(k.material).decode("ascii")) for k in keys
        ]
    )


def _error(status: int, message: str, details: Sequence[dict[str, Any]] = ()) -> JSONResponse:
    body = ErrorBody(message=message, details=list(details)).model_dump()
    return JSONResponse(body, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KMERequestRejected)
    async def _bad_request(_: Request, exc: KMERequestRejected) -> JSONResponse:
        return _error(400, exc.message, exc.details)

    @app.exception_handler(KMEUnauthorized)
    async def _unauthorized(_: Request, exc: KMEUnauthorized) -> JSONResponse:
        return _error(401, exc.message, exc.details)

    @app.exception_handler(KMEUnavailable)
    async def _unavailable(_: Request, exc: KMEUnavailable) -> JSONResponse:
        response = _error(503, exc.message, exc.details)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response

    @app.exception_handler(KeyStoreError)
    async def _conflict(_: Request, exc: KeyStoreError) -> JSONResponse:
        return _error(409, str(exc), [{"reason": exc.reason, **exc.details}])

    @app.exception_handler(RequestValidationError)
    async def _malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Only location and reason: echoing the input back is never needed to fix a request.
        details = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg", "")}
            for e in exc.errors()
        ]
        return _error(400, "malformed request", details)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # ETSI GS QKD 014 has one server-side error status; the SAE retries or gives up.
        log.error("internal error: %s", type(exc).__name__)
        return _error(503, "KME internal error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))


def _install_routes(app: FastAPI) -> None:
    prefix = "/api/v1/keys"

    @app.get(
        prefix + "/{slave_SAE_ID}/status",
        response_model=Status,
        response_model_exclude_none=True,  # no status_extension: the field is left out
        responses=_ERRORS,
        operation_id="get_status",
    )
    async def get_status(slave_SAE_ID: str, caller: Caller, manager: Manager) -> Status:  # noqa: N803
        """Get status: key stock and limits of this KME for a master/slave SAE pair."""
        return await manager.status(caller, slave_SAE_ID)

    @app.get(
        prefix + "/{slave_SAE_ID}/enc_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        operation_id="get_key",
    )
    async def get_key(
        slave_SAE_ID: str,  # noqa: N803
        caller: Caller,
        manager: Manager,
        number: Annotated[int | None, Query()] = None,
        size: Annotated[int | None, Query()] = None,
    ) -> KeyContainer:
        """Get key (master SAE): new keys shared with the slave SAE."""
        return _container(await manager.enc_keys(caller, slave_SAE_ID, number=number, size=size))

    @app.post(
        prefix + "/{slave_SAE_ID}/enc_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        operation_id="post_key",
    )
    async def post_key(
        slave_SAE_ID: str,  # noqa: N803
        request: KeyRequest,
        caller: Caller,
        manager: Manager,
    ) -> KeyContainer:
        """Get key (master SAE), with a Key request body."""
        keys = await manager.enc_keys(
            caller,
            slave_SAE_ID,
            number=request.number,
            size=request.size,
            additional_slave_sae_ids=request.additional_slave_SAE_IDs or (),
            extension_mandatory=request.extension_mandatory or (),
        )
        return _container(keys)

    @app.get(
        prefix + "/{master_SAE_ID}/dec_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        operation_id="get_key_with_key_i_ds",
    )
    async def get_key_with_key_ids(
        master_SAE_ID: str,  # noqa: N803
        key_ID: Annotated[str, Query()],  # noqa: N803
        caller: Caller,
        manager: Manager,
    ) -> KeyContainer:
        """Get key with key IDs (slave SAE): the key the master SAE obtained."""
        return _container(await manager.dec_keys(caller, master_SAE_ID, [key_ID]))

    @app.post(
        prefix + "/{master_SAE_ID}/dec_keys",
        response_model=KeyContainer,
        responses=_ERRORS,
        operation_id="post_key_with_key_i_ds",
    )
    async def post_key_with_key_ids(
        master_SAE_ID: str,  # noqa: N803
        request: KeyIDs,
        caller: Caller,
        manager: Manager,
    ) -> KeyContainer:
        """Get key with key IDs (slave SAE), with a Key IDs body."""
        key_ids = [item.key_ID for item in request.key_IDs]
        return _container(await manager.dec_keys(caller, master_SAE_ID, key_ids))

    @app.post(ALLOCATIONS_PATH, include_in_schema=False, operation_id="record_key_allocations")
    async def record_key_allocations(
        request: AllocationRequest, caller: Caller, manager: Manager
    ) -> dict[str, int]:
        """KME-to-KME: record keys the peer carved from its half of the shared pool."""
        await manager.accept_allocations(caller, request)
        return {"recorded": len(request.keys)}


def _report_feeder_end(task: asyncio.Task[None]) -> None:
    """A dead key source must be visible: the KME keeps serving its stock, but no more."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("key source failed, no new key will arrive: %s: %s", type(exc).__name__, exc)


def create_app(config: KMEConfig, *, source: KeySource | None = None) -> FastAPI:
    """The KME application. Opens the key buffer and the peer link for the app's lifetime and,
    given a ``source``, keeps feeding the buffer from it in the background."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tls = config.tls
        store = KeyStore(config.data_dir, kme_id=config.kme_id, end=config.end)
        peer = PeerLink(
            config.peer_url,
            kme_id=config.kme_id,
            end=config.end,
            ssl_context=client_ssl_context(tls.client_cert, tls.client_key, tls.ca),
            timeout=config.peer_timeout,
        )
        app.state.manager = KeyManager(config, store, peer, key_path=reported_key_path(source))
        feeder = None
        if source is None:
            log.warning("KME %s has no key source: it serves the stored key only", config.kme_id)
        else:
            feeder = asyncio.create_task(
                feed_store(source, store, capacity_bits=config.limits.buffer_bits)
            )
            feeder.add_done_callback(_report_feeder_end)
        try:
            yield
        finally:
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            await peer.aclose()
            store.close()

    app = FastAPI(
        title=f"KME {config.kme_id} (ETSI GS QKD 014 v1.1.1)",
        version="1.1.1",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _install_routes(app)
    return app
