"""``GET /v1/records/{record_id}``: the versioned receipt of a record.

Everyone gets the public view (hashes, proofs, chain coordinates). A bearer token of the
device's owner, of an auditor, or the admin token adds the ``disclosure`` section (salt
and plaintext); any other token is refused with 401 rather than silently downgraded, so
a client cannot mistake a revoked token for a working one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from notary.api.bounded import BoundedJSONRoute
from notary.api.deps import ServiceDep
from notary.api.schemas import Problem
from notary.receipts import Receipt

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["records"], route_class=BoundedJSONRoute)

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
_viewer_token = HTTPBearer(
    auto_error=False,
    scheme_name="AccessToken",
    description="Optional: an owner or auditor token (qkd-notary token issue) for the "
    "disclosure section",
)


@router.get(
    "/records/{record_id}",
    operation_id="read_record",
    name="read_record",
    response_model=Receipt,
    response_model_exclude_none=False,
    responses={401: _PROBLEM, 404: _PROBLEM},
)
async def read_record(
    record_id: str,
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_viewer_token)],
) -> Receipt:
    """The receipt of a record: accepted, or anchored with its on-chain proof."""
    viewer = await service.viewer(None if credentials is None else credentials.credentials)
    return await service.receipt(record_id, viewer=viewer)
