"""The KME's side of the KME-to-KME sync: telling the peer which bits became which keys.

The answer is classified by what it proves about the peer's state, because that decides
whether the owner may put the bits back (see :mod:`qkd_channel.kme.store`).
"""

from __future__ import annotations

import enum
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.schemas import (
    AllocationRequest,
    AllocationSegment,
    ErrorBody,
    KeyAllocationModel,
)
from qkd_channel.kme.store import KeyAllocation

__all__ = ["ALLOCATIONS_PATH", "PeerLink", "SyncOutcome", "SyncResult"]

ALLOCATIONS_PATH = "/internal/v1/key_allocations"

log = logging.getLogger(__name__)


class SyncOutcome(enum.Enum):
    COMMITTED = "committed"  # the peer recorded every key
    REFUSED = "refused"  # the peer answered 4xx: it recorded nothing (one transaction)
    NOT_SENT = "not_sent"  # no connection was made: the peer cannot have seen the request
    UNKNOWN = "unknown"  # sent, but no usable answer: the peer may or may not have recorded


@dataclass(frozen=True)
class SyncResult:
    outcome: SyncOutcome
    status_code: int | None = None
    error: ErrorBody | None = None


def allocation_request(
    kme_id: str, end: LinkEnd, allocations: Sequence[KeyAllocation]
) -> AllocationRequest:
    return AllocationRequest(
        source_KME_ID=kme_id,
        source_end=end.value,
        keys=[
            KeyAllocationModel(
                key_ID=a.key_id,
                master_SAE_ID=a.master_sae_id,
                slave_SAE_IDs=list(a.slave_sae_ids),
                segments=[
                    AllocationSegment(block_ID=s.block_id, offset=s.offset, length=s.length)
                    for s in a.segments
                ],
            )
            for a in allocations
        ],
    )


class PeerLink:
    """An mTLS HTTP client towards the peer KME's internal API."""

    def __init__(
        self,
        base_url: str,
        *,
        kme_id: str,
        end: LinkEnd,
        ssl_context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        self._kme_id = kme_id
        self._end = end
        self._http = httpx.AsyncClient(base_url=base_url, verify=ssl_context, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send_allocations(self, allocations: Sequence[KeyAllocation]) -> SyncResult:
        body = allocation_request(self._kme_id, self._end, allocations)
        try:
            response = await self._http.post(ALLOCATIONS_PATH, json=body.model_dump())
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            log.warning("peer KME unreachable: %s", type(exc).__name__)
            return SyncResult(SyncOutcome.NOT_SENT)
        except httpx.HTTPError as exc:
            log.warning("peer KME sync outcome unknown: %s", type(exc).__name__)
            return SyncResult(SyncOutcome.UNKNOWN)
        if response.status_code == 200:
            return SyncResult(SyncOutcome.COMMITTED, 200)
        if 400 <= response.status_code < 500:
            try:
                error = ErrorBody.model_validate_json(response.content)
            except ValueError:
                error = ErrorBody(message="peer KME refused the allocation")
            return SyncResult(SyncOutcome.REFUSED, response.status_code, error)
        return SyncResult(SyncOutcome.UNKNOWN, response.status_code)
