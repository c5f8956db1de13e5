"""Group execution of concurrent requests, the way databases group-commit.

A KME answers every ``enc_keys`` and ``dec_keys`` request only after a durable store
transaction (``synchronous=FULL``: one fsync each) and, for ``enc_keys``, a round trip to
the peer KME. Done one request at a time, those waits cap the KME at a few hundred requests
per second however idle its CPU. A :class:`Batcher` queues requests; whoever holds its lock
runs everything queued so far as one batch (one transaction, one peer sync), so the cost is
paid per batch. Each request still waits for the outcome of its own batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Batcher", "Pending"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Pending(Generic[T, R]):
    """One queued request and the future its caller waits on."""

    item: T
    future: asyncio.Future[R] = field(repr=False)

    def settle(self, result: R | None = None, *, error: BaseException | None = None) -> None:
        """Answer the caller, unless it is answered already or gone (cancelled)."""
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)  # type: ignore[arg-type]


class Batcher(Generic[T, R]):
    """Runs queued requests in batches of at most ``max_weight`` (``weight`` per request).

    ``run`` must settle every request of the batch it is given; whatever it leaves unsettled
    (it raised, or its caller was cancelled half-way) is answered with ``interrupted()``.
    Batches run one at a time, oldest requests first.
    """

    def __init__(
        self,
        run: Callable[[list[Pending[T, R]]], Awaitable[None]],
        *,
        interrupted: Callable[[], BaseException],
        max_weight: int,
        weight: Callable[[T], int] = lambda _: 1,
    ) -> None:
        self._run = run
        self._interrupted = interrupted
        self._max_weight = max_weight
        self._weight = weight
        self._queue: list[Pending[T, R]] = []
        self._lock = asyncio.Lock()

    async def submit(self, item: T) -> R:
        pending: Pending[T, R] = Pending(item, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        try:
            async with self._lock:
                # The lock holder runs everything queued so far, neighbours included; a
                # request an earlier holder already ran skips straight to its answer.
                while not pending.future.done():
                    await self.run_batch(self._next_batch())
        except asyncio.CancelledError:
            pending.future.cancel()  # if still queued, no batch will run it now
            raise
        return await pending.future

    async def run_batch(self, batch: list[Pending[T, R]]) -> None:
        """Run ``batch`` and make sure every member is answered (for ``run``'s fallbacks:
        call it again on smaller batches while holding the turn)."""
        try:
            await self._run(batch)
        finally:
            for pending in batch:
                pending.settle(error=self._interrupted())

    def _next_batch(self) -> list[Pending[T, R]]:
        batch: list[Pending[T, R]] = []
        weight = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled while queued
                self._queue.pop(0)
                continue
            if batch and weight + self._weight(head.item) > self._max_weight:
                break
            batch.append(self._queue.pop(0))
            weight += self._weight(head.item)
        return batch
