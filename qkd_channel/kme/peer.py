"""The KME's side of the KME-to-KME sync: telling the peer which bits became which keys.

The answer is classified by what it proves about the peer's state, because that decides
whether the owner may put the bits back (see :mod:`qkd_channel.kme.store`). The client is
aiohttp on kept-alive connections: every ``enc_keys`` waits for this round trip while
holding the allocation lock, so its cost bounds the KME's allocation rate.
"""

from __future__ import annotations

import enum
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from qkd_channel.kme.client import IDLE_CLOSE_S
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
        self._url = base_url.rstrip("/") + ALLOCATIONS_PATH
        self._ssl = ssl_context
        # Connect and read timeouts apart: only a failed *connect* proves nothing was sent.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_allocations(self, allocations: Sequence[KeyAllocation]) -> SyncResult:
        body = allocation_request(self._kme_id, self._end, allocations)
        if self._session is None:  # opened inside the event loop that uses it
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, keepalive_timeout=IDLE_CLOSE_S),
                timeout=self._timeout,
            )
        try:
            async with self._session.post(self._url, json=body.model_dump()) as response:
                status, content = response.status, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection was established (refused, TLS failure, connect timeout).
            log.warning("peer KME unreachable: %s", type(exc).__name__)
            return SyncResult(SyncOutcome.NOT_SENT)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Anything later (a kept-alive connection closed under us, a read timeout) may
            # have happened after the peer committed.
            log.warning("peer KME sync outcome unknown: %s", type(exc).__name__)
            return SyncResult(SyncOutcome.UNKNOWN)
        if status == 200:
            return SyncResult(SyncOutcome.COMMITTED, 200)
        if 400 <= status < 500:
            try:
                error = ErrorBody.model_validate_json(content)
            except ValueError:
                error = ErrorBody(message="peer KME refused the allocation")
            return SyncResult(SyncOutcome.REFUSED, status, error)
        return SyncResult(SyncOutcome.UNKNOWN, status)
