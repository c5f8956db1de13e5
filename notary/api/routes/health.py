"""``/healthz`` (process alive), ``/readyz`` (dependencies usable), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from notary.api.bounded import BoundedJSONRoute
from notary.api.deps import ServiceDep
from notary.api.schemas import Health, Readiness, ReadinessCheck
from notary.metrics import CONTENT_TYPE_LATEST

__all__ = ["router"]

router = APIRouter(tags=["operations"], route_class=BoundedJSONRoute)


@router.get("/healthz", operation_id="read_health", response_model=Health)
async def read_health() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get(
    "/readyz",
    operation_id="read_readiness",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
)
async def read_readiness(service: ServiceDep) -> JSONResponse:
    """Readiness: outbox writable and KME reachable (503 otherwise); chain reported."""
    checks = await service.readiness()
    body = Readiness(
        ready=all(c.ok for c in checks.values() if c.required),
        checks={
            name: ReadinessCheck(ok=c.ok, detail=c.detail, required=c.required)
            for name, c in checks.items()
        },
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/metrics",
    operation_id="read_metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def read_metrics(service: ServiceDep) -> Response:
    """Prometheus text exposition."""
    await service.refresh_gauges()
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
