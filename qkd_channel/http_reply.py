"""An HTTP answer as the code reading it needs it, whichever client fetched it.

The blocking clients use httpx and the asyncio ones aiohttp (about a sixth of httpx's CPU
a request, see docs/notary-performance.md); both hand their answer readers this one shape,
so each reader is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

__all__ = ["HTTPReply"]


@dataclass(frozen=True)
class HTTPReply:
    """Status, headers and body of an HTTP answer."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @classmethod
    def of(cls, response: httpx.Response) -> HTTPReply:
        return cls(response.status_code, response.headers, response.content)
