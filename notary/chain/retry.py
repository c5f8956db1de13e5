"""Bounded retries with exponential backoff for calls to a chain node.

Only failures that say nothing about the request itself are retried: the node could not
be reached, timed out, or answered 429/5xx. Everything else (a revert, a rejected
transaction) is returned to the caller at once. When the attempts run out the caller gets
:class:`~notary.errors.ChainUnavailable`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from web3.exceptions import ProviderConnectionError, RequestTimedOut, TooManyRequests

from notary.errors import ChainUnavailable

__all__ = ["TRANSIENT_ERRORS", "RetryPolicy"]

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    ProviderConnectionError,
    RequestTimedOut,
    TooManyRequests,
)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status == 429 or status >= 500
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry a node call."""

    attempts: int = 5
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    sleep: Callable[[float], None] = time.sleep

    def run(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call``; retry transient node failures, then raise ChainUnavailable."""
        delay = self.initial_backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                if attempt == self.attempts:
                    raise ChainUnavailable(
                        f"chain node unreachable: {what} failed {self.attempts} times "
                        f"({type(exc).__name__})"
                    ) from exc
                log.warning(
                    "chain node call %s failed (%s), retry %d/%d in %.2fs",
                    what,
                    type(exc).__name__,
                    attempt,
                    self.attempts - 1,
                    delay,
                )
                self.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")  # pragma: no cover
