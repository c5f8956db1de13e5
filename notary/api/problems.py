"""RFC 9457 problem responses: the one place where exceptions become HTTP answers.

Routes and the service layer raise ``NotaryError`` subclasses; the handlers registered by
:func:`install_problem_handlers` turn them (and FastAPI's own validation and routing errors)
into ``application/problem+json`` bodies with a stable ``type`` URI and a machine-readable
``reason``. ``503`` answers carry ``Retry-After``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from notary.api.schemas import Problem
from notary.errors import NotaryError, ReplayDetected, ServiceUnavailable
from notary.logging import log_event

__all__ = ["PROBLEM_CONTENT_TYPE", "install_problem_handlers", "problem_response", "problem_type"]

PROBLEM_CONTENT_TYPE = "application/problem+json"

log = logging.getLogger("notary.api")


def problem_type(reason: str) -> str:
    """The ``type`` URI of a problem with this reason (listed in docs/notary-api.md)."""
    return f"urn:qkd-notary:problem:{reason}"


def _response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def problem_response(exc: NotaryError, *, default_retry_after_s: int = 2) -> JSONResponse:
    """Render a domain error; only its public ``reason`` and message are disclosed."""
    headers = None
    retry_after = None
    if isinstance(exc, ServiceUnavailable):
        retry_after = exc.retry_after_s or default_retry_after_s
        headers = {"Retry-After": str(retry_after)}
    problem = Problem(
        type=problem_type(exc.reason),
        title=exc.title,
        status=exc.status,
        detail=exc.detail,
        reason=exc.reason,
        record_id=exc.record_id if isinstance(exc, ReplayDetected) else None,
        retry_after=retry_after,
    )
    return _response(problem, headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(NotaryError)
    async def _notary_error(request: Request, exc: NotaryError) -> JSONResponse:
        if exc.status >= 500:
            log_event(log, logging.WARNING, "request failed", reason=exc.reason)
        service = getattr(request.app.state, "service", None)
        default = service.settings.retry_after_s if service is not None else 2
        return problem_response(exc, default_retry_after_s=default)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
        return _response(
            Problem(
                type=problem_type("validation"),
                title="Request validation failed",
                status=422,
                detail=f"invalid fields: {', '.join(fields)}",
                reason="validation",
            )
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return _response(
            Problem(
                type=problem_type(reason),
                title=str(exc.detail),
                status=exc.status_code,
                detail=str(exc.detail),
                reason=reason,
            ),
            headers=getattr(exc, "headers", None),
        )
