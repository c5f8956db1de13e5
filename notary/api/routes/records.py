"""``GET /v1/records/{record_id}``: the versioned receipt of a record."""

from __future__ import annotations

from fastapi import APIRouter

from notary.api.bounded import BoundedJSONRoute
from notary.api.deps import ServiceDep
from notary.api.schemas import Problem
from notary.receipts import Receipt

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["records"], route_class=BoundedJSONRoute)


@router.get(
    "/records/{record_id}",
    operation_id="read_record",
    name="read_record",
    response_model=Receipt,
    responses={404: {"model": Problem, "content": {"application/problem+json": {}}}},
)
async def read_record(record_id: str, service: ServiceDep) -> Receipt:
    """The receipt of a record: accepted, or anchored with its on-chain proof."""
    return await service.receipt(record_id)
