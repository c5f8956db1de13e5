"""Keep "anchored" true: re-check anchored batches against the chain, re-anchor what it lost.

A chain can go backwards. A development node restarted from an older state dump, a reorg
on a chain without instant finality, or a node reset to an empty chain takes blocks away,
and with them the transactions that anchored batches the notary already called anchored.
The :class:`Reconciler` runs inside the anchoring worker (so it never races a send) and:

* checks the chain's identity at start and every ``interval_s``: same genesis block, and
  our contracts' code still at their addresses. If not, the chain was **reset**: anchoring
  stops, ``/readyz`` turns red, one error line says what to run
  (``qkd-notary chain redeploy --re-anchor``), and the state holds until that is done;
* watches the head: a lower head, or another block at the height it last saw, means a
  **rollback**, and triggers a full check;
* otherwise asks one question per interval: is the block of the newest anchored batch
  still the one we recorded? A block hash commits to every block before it, so if it is,
  every earlier batch is intact too;
* a full check (at start, after a rollback, or when the quick one fails) finds the oldest
  batch whose block is gone by binary search over the anchored batches (same argument),
  and sends it and every later batch back to PENDING; their records go back to
  ``submitted``. The worker sends them again; if a lost transaction was re-included
  elsewhere, the contracts' idempotent calls say so and the receipts point at its new
  block. Device history mirrored in the lost blocks (registrations, attestations) is
  mirrored again first, as the contracts need registered devices.

Every loss is counted (``notary_records_lost_by_chain``, ``notary_records_reanchored``)
and logged once per check with how many batches and records it took.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from notary.errors import ChainReset
from notary.logging import log_event
from notary.metrics import NotaryMetrics
from notary.storage.base import BatchRow, DeviceEvent, Store

__all__ = ["ReconcileReport", "Reconciler", "WatchedChain"]

log = logging.getLogger("notary.reconciler")


class WatchedChain(Protocol):
    """What the reconciler asks the chain (blocking calls, run in a thread)."""

    def block_number(self) -> int: ...

    def block_hash(self, number: int) -> str | None: ...

    def check_identity(self) -> None:
        """Raise ``ChainReset`` unless the node has our genesis block and contracts."""

    def transaction_exists(self, tx_hash: str) -> bool: ...

    def resync(self) -> None:
        """Forget the cached nonce (the node's transaction count may have gone back)."""


@dataclass(frozen=True)
class ReconcileReport:
    """What one check found."""

    full: bool
    lost_batches: int = 0
    lost_records: int = 0
    requeued_events: int = 0


@dataclass(frozen=True)
class _Head:
    number: int
    hash: str | None


class Reconciler:
    """Re-checks what was anchored; see the module docstring."""

    def __init__(
        self,
        store: Store,
        chain: WatchedChain,
        *,
        metrics: NotaryMetrics,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._chain = chain
        self._metrics = metrics
        self._interval = interval_s
        self._clock = clock
        self._last_run = float("-inf")
        self._head: _Head | None = None
        self._checked_once = False
        #: Why the chain is considered reset (``None`` while it is not).
        self.reset_reason: str | None = None
        #: Batches sent back to PENDING and not yet anchored again.
        self.requeued: set[int] = set()

    async def maybe_check(self) -> ReconcileReport | None:
        """Run a check if ``interval_s`` has passed since the last one (or none ran)."""
        if self._clock() - self._last_run < self._interval:
            return None
        return await self.check()

    async def check(self, *, full: bool = False) -> ReconcileReport:
        """One pass (see the module docstring). Raises ``ChainReset`` while the chain is
        reset, ``ChainUnavailable`` if the node cannot be asked."""
        self._last_run = self._clock()
        await self._check_identity()
        went_back = await self._head_went_back()
        full = full or went_back or not self._checked_once
        if not full and await self._newest_batch_intact():
            return ReconcileReport(full=False)
        report = await self._full_check()
        if went_back or report.lost_batches or report.requeued_events:
            # Transactions the chain lost took their nonces with them.
            self._chain.resync()
        self._checked_once = True
        return report

    async def _check_identity(self) -> None:
        try:
            await asyncio.to_thread(self._chain.check_identity)
        except ChainReset as exc:
            if self.reset_reason is None:
                log_event(log, logging.ERROR, "chain reset: anchoring stopped", error=str(exc))
            self.reset_reason = str(exc)
            self._metrics.chain_reset.set(1)
            raise
        if self.reset_reason is not None:
            log_event(log, logging.INFO, "chain identity restored: anchoring resumes")
        self.reset_reason = None
        self._metrics.chain_reset.set(0)

    async def _head_went_back(self) -> bool:
        number = await asyncio.to_thread(self._chain.block_number)
        previous = self._head
        went_back = False
        if previous is not None:
            if number < previous.number:
                went_back = True
            else:
                seen_again = await asyncio.to_thread(self._chain.block_hash, previous.number)
                went_back = seen_again != previous.hash
        self._head = _Head(number, await asyncio.to_thread(self._chain.block_hash, number))
        if went_back and previous is not None:
            log_event(
                log,
                logging.WARNING,
                "chain head went backwards: re-checking anchored batches",
                seen_block=previous.number,
                head_block=number,
            )
        return went_back

    async def _newest_batch_intact(self) -> bool:
        newest = await self._store.latest_anchored_batch()
        return newest is None or await self._intact(newest)

    async def _intact(self, batch: BatchRow) -> bool:
        assert batch.block_number is not None
        found = await asyncio.to_thread(self._chain.block_hash, batch.block_number)
        return found is not None and found == batch.block_hash

    async def _full_check(self) -> ReconcileReport:
        batches = await self._store.anchored_batches()
        # Intact batches form a prefix (a block hash commits to all its ancestors):
        # binary search for the first batch whose block the chain no longer has.
        low, high = 0, len(batches)
        while low < high:
            middle = (low + high) // 2
            if await self._intact(batches[middle]):
                low = middle + 1
            else:
                high = middle
        lost = batches[low:]
        requeued_events = await self._requeue_lost_events()
        if not lost:
            return ReconcileReport(full=True, requeued_events=requeued_events)
        ids = [batch.batch_id for batch in lost]
        records = await self._store.requeue_batches(ids)
        self.requeued.update(ids)
        self._metrics.records_lost.inc(records)
        log_event(
            log,
            logging.WARNING,
            "the chain lost anchored batches: anchoring them again",
            batches=len(ids),
            records=records,
            first_batch=ids[0],
            device_events=requeued_events,
        )
        return ReconcileReport(
            full=True,
            lost_batches=len(ids),
            lost_records=records,
            requeued_events=requeued_events,
        )

    async def _requeue_lost_events(self) -> int:
        """Mark unmirrored the device events whose transactions the chain lost.

        They were mirrored in order, so the lost ones are the newest: walk back from the
        newest until one whose transaction is still there. Events mirrored without a
        transaction (nothing had to be sent) decide nothing and go with their neighbours.
        """
        mirrored = await self._store.mirrored_device_events()
        first_lost: DeviceEvent | None = None
        for event in reversed(mirrored):
            tx_hash = event.chain_tx_hash or ""
            if not tx_hash.startswith("0x"):
                continue
            if await asyncio.to_thread(self._chain.transaction_exists, tx_hash):
                break
            first_lost = event
        if first_lost is None:
            return 0
        return await self._store.requeue_device_events(first_lost.event_id)

    def reanchored(self, batch_id: int, records: int) -> None:
        """The worker anchored a requeued batch again."""
        if batch_id in self.requeued:
            self.requeued.discard(batch_id)
            self._metrics.records_reanchored.inc(records)
            log_event(log, logging.INFO, "lost batch anchored again", batch_id=batch_id)
