"""``POST /rpc``: Ethereum JSON-RPC 2.0 for the embedded chain, read-only (see docs/json-rpc.md).

This module is the JSON-RPC framing over HTTP — body limit, parsing, single and batch
requests, notifications, error objects; the methods themselves are answered by
:class:`~notary.chain.rpc_gateway.EmbeddedRPCGateway` in a worker thread (the chain is
synchronous and locked), at most :data:`CONCURRENT_CALLS` requests or batches at a time.

A notary anchoring on an external node (anvil, Besu) answers ``404`` with a JSON-RPC error
telling the caller to query that node: the notary has no chain of its own to serve, and it
does not relay (nor reveal) its node's URL.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from notary.api.bounded import BoundedJSONRoute
from notary.api.deps import ServiceDep
from notary.chain.client import ChainClient
from notary.chain.embedded import SerializedTesterProvider
from notary.chain.rpc_codec import INVALID_PARAMS
from notary.chain.rpc_gateway import LIMIT_EXCEEDED, NOT_SUPPORTED, EmbeddedRPCGateway
from notary.errors import JSONRPCError
from notary.logging import log_event
from notary.service import NotaryService
from qkd_channel import boundedjson

__all__ = ["CONCURRENT_CALLS", "router"]

log = logging.getLogger("notary.api.rpc")

router = APIRouter(tags=["chain"], route_class=BoundedJSONRoute)

#: Requests (or whole batches) executed at once; more wait, off the event loop.
CONCURRENT_CALLS = 2

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603

_NO_EMBEDDED_CHAIN = (
    "this notary anchors on an external Ethereum node and has no embedded chain to serve; "
    "send JSON-RPC requests to that node directly"
)


@dataclass(frozen=True)
class _Call:
    """One valid request of a (possibly one-element) batch."""

    id: Any
    method: str
    params: list[Any]


@dataclass(frozen=True)
class _Endpoint:
    """Per app: the gateway and the worker-thread budget of ``/rpc``."""

    gateway: EmbeddedRPCGateway | None
    limiter: anyio.CapacityLimiter


def _endpoint(request: Request, service: NotaryService) -> _Endpoint:
    """The app's gateway (``None`` without an embedded chain), built on first use."""
    endpoint: _Endpoint | None = getattr(request.app.state, "rpc_endpoint", None)
    if endpoint is None:
        gateway = None
        chain = service.chain
        if isinstance(chain, ChainClient):
            provider = chain.w3.provider
            if isinstance(provider, SerializedTesterProvider):
                gateway = EmbeddedRPCGateway(provider, chain_id=chain.chain_id)
        endpoint = _Endpoint(gateway, anyio.CapacityLimiter(CONCURRENT_CALLS))
        request.app.state.rpc_endpoint = endpoint
    return endpoint


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _answer(body: Any, status_code: int = 200) -> Response:
    return JSONResponse(body, status_code=status_code)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` once it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _valid_id(request_id: Any) -> bool:
    """A string, null, or a number that serializes back as sent (JSON-RPC ``id``)."""
    if request_id is None or isinstance(request_id, str):
        return True
    if isinstance(request_id, bool):
        return False
    if isinstance(request_id, int):
        return abs(request_id) < 2**63
    return isinstance(request_id, float) and math.isfinite(request_id)


def _parse(entry: Any) -> _Call | dict[str, Any] | None:
    """A valid call, an error answer for an invalid one, or ``None`` for a notification.

    Notifications get no answer and are not executed: every served method is read-only,
    so running one could change nothing a caller might observe.
    """
    if not isinstance(entry, dict):
        return _error(None, INVALID_REQUEST, "invalid request: expected a JSON object")
    request_id = entry.get("id")
    if not _valid_id(request_id):
        return _error(None, INVALID_REQUEST, "invalid request: id must be a string or number")
    if entry.get("jsonrpc") != "2.0":
        return _error(request_id, INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"')
    method = entry.get("method")
    if not isinstance(method, str):
        return _error(request_id, INVALID_REQUEST, "invalid request: method must be a string")
    params = entry.get("params")
    if isinstance(params, dict):
        return _error(request_id, INVALID_PARAMS, "parameters by name are not supported")
    if params is not None and not isinstance(params, list):
        return _error(request_id, INVALID_REQUEST, "invalid request: params must be an array")
    if "id" not in entry:
        return None
    return _Call(request_id, method, params or [])


def _execute(gateway: EmbeddedRPCGateway, calls: list[_Call]) -> list[dict[str, Any]]:
    """Answer ``calls`` in order (in a worker thread: each takes the chain lock)."""
    answers = []
    for call in calls:
        try:
            result = gateway.call(call.method, call.params)
        except JSONRPCError as exc:
            answers.append(_error(call.id, exc.code, str(exc), exc.data))
        except Exception as exc:  # one failing request must not fail its batch
            log_event(log, logging.ERROR, "rpc internal error", method=call.method, error=repr(exc))
            answers.append(_error(call.id, INTERNAL_ERROR, "internal error"))
        else:
            answers.append({"jsonrpc": "2.0", "id": call.id, "result": result})
    return answers


_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["jsonrpc", "method"],
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"type": ["string", "integer", "null"]},
        "method": {"type": "string", "example": "eth_blockNumber"},
        "params": {"type": "array"},
    },
}


@router.post(
    "/rpc",
    operation_id="call_json_rpc",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [_REQUEST_SCHEMA, {"type": "array", "items": _REQUEST_SCHEMA}]
                    }
                }
            },
        }
    },
    responses={
        200: {"description": "JSON-RPC response (or batch of responses)"},
        204: {"description": "Only notifications were sent"},
        404: {"description": "No embedded chain: query the external node directly"},
        413: {"description": "Request body too large"},
    },
)
async def call_json_rpc(request: Request, service: ServiceDep) -> Response:
    """Ethereum JSON-RPC 2.0 (read-only) on the embedded chain, for cast, web3 and explorers."""
    endpoint = _endpoint(request, service)
    gateway = endpoint.gateway
    if gateway is None:
        return _answer(_error(None, NOT_SUPPORTED, _NO_EMBEDDED_CHAIN), 404)
    limits = gateway.limits
    body = await _read_body(request, limits.max_body_bytes)
    if body is None:
        message = f"request body exceeds {limits.max_body_bytes} bytes"
        return _answer(_error(None, LIMIT_EXCEEDED, message), 413)
    try:
        document = boundedjson.loads(body)
    except ValueError:
        return _answer(_error(None, PARSE_ERROR, "parse error"))
    batch = isinstance(document, list)
    entries = document if batch else [document]
    if batch and not entries:
        return _answer(_error(None, INVALID_REQUEST, "invalid request: empty batch"))
    if len(entries) > limits.max_batch:
        message = f"batch of {len(entries)} requests exceeds the limit of {limits.max_batch}"
        return _answer(_error(None, LIMIT_EXCEEDED, message))
    parsed = [_parse(entry) for entry in entries]
    calls = [p for p in parsed if isinstance(p, _Call)]
    executed = iter(
        await anyio.to_thread.run_sync(_execute, gateway, calls, limiter=endpoint.limiter)
        if calls
        else []
    )
    answers = [next(executed) if isinstance(p, _Call) else p for p in parsed if p is not None]
    if not answers:
        return Response(status_code=204)
    return _answer(answers if batch else answers[0])
