"""Where the notary gets QKD keys: one small protocol, a KME adapter, a coalescer.

The pipeline only knows :class:`KeySource`. Its error contract is the notary's, not the
KME client's: ``KeysRejected`` when the keys cannot be delivered to us for that master SAE
(unknown, already delivered, bound to another device's SAE — an authentication failure of
the envelope) and ``KeysUnavailable`` when the KME is down or out of stock (retry later).

* :class:`KMEKeySource` talks ETSI GS QKD 014 to a real KME via ``AsyncKMEClient``, and
  learns from the KME's Status what link feeds the keys of each device SAE.
* :class:`InMemoryKeySource` is an in-process key buffer with the same delivery rule as a
  KME (each key handed out once, only for its master SAE, all or nothing); tests and
  single-process set-ups deposit keys into it.
* :class:`CoalescingKeySource` merges the ``dec_keys`` calls of concurrent envelopes from
  the same master SAE (an edge hub fronting many devices) into one KME round trip.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from notary.errors import KeysRejected, KeysUnavailable
from notary.logging import log_event
from qkd_channel.errors import (
    KMEError,
    KMERequestRejected,
    KMEUnauthorized,
    KMEUnavailable,
)
from qkd_channel.keys import QKDKey
from qkd_channel.kme.client import AsyncKMEClient
from qkd_channel.security_levels import Hop, link_hop_of_status

__all__ = [
    "CoalescingKeySource",
    "InMemoryKeySource",
    "KMEKeySource",
    "KeySource",
]

log = logging.getLogger("notary.keysource")


class KeySource(Protocol):
    """Slave-SAE access to QKD keys by key ID, and how those keys travel.

    :meth:`link_hop` and ``delivery_hop`` are the notary's side of a record's key path
    (:mod:`qkd_channel.security_levels`): how the keys a master SAE shares with us crossed
    between the KMEs, as the KME reports it (``unreported`` unless it does), and how they
    reach the notary.
    """

    @property
    def delivery_hop(self) -> Hop: ...

    async def link_hop(self, master_sae_id: str) -> Hop:
        """How keys shared with ``master_sae_id`` crossed between the KMEs. Never raises:
        whatever cannot be learnt is ``unreported``."""

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[str]) -> list[QKDKey]:
        """The keys named by ``key_ids`` that ``master_sae_id`` obtained, each exactly once.

        All or nothing: raises ``KeysRejected`` (nothing delivered) or ``KeysUnavailable``.
        """

    async def stock(self, master_sae_id: str) -> int | None:
        """Keys still available for ``master_sae_id`` (``None`` if the source cannot say).

        Raises ``KeysUnavailable`` when the source cannot be reached (used by ``/readyz``).
        """

    async def aclose(self) -> None: ...


class KMEKeySource:
    """Keys from the notary's own KME over ETSI GS QKD 014 with mutual TLS.

    At most ``max_in_flight`` requests are on the wire at once (each on a kept-alive mutual
    TLS connection); the rest wait here. The KME runs the ``dec_keys`` requests it has
    received as one batch (one store transaction, one fsync), so the cap sets how many
    envelopes share a batch: at 8 the notary's intake stalled at 8 envelopes per KME batch
    (~150 envelopes/s on the benchmark machine, whatever the idle CPU); 32 lets a fleet of
    dozens of concurrent devices share one.
    """

    #: How long a KME's report of a pair's link is believed before it is asked again.
    LINK_REPORT_TTL_S = 60.0
    #: After a failed Status request, how long the pair stays ``unreported`` unasked.
    LINK_RETRY_S = 5.0

    def __init__(
        self,
        client: AsyncKMEClient,
        *,
        notary_sae_id: str | None = None,
        max_in_flight: int = 32,
        delivery_hop: Hop = Hop.TLS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``delivery_hop``: how keys reach the notary
        (:func:`~qkd_channel.security_levels.delivery_hop_of` of the KME's URL)."""
        self._client = client
        self.delivery_hop = delivery_hop
        self._clock = clock
        #: Per master SAE: (believed until, hop), and the Status request in flight if any.
        self._links: dict[str, tuple[float, Hop]] = {}
        self._link_queries: dict[str, asyncio.Task[Hop]] = {}
        self._notary_sae_id = notary_sae_id
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight = 0
        #: Most requests ever on the wire at once (observable, like the coalescer's counts).
        self.peak_in_flight = 0

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[str]) -> list[QKDKey]:
        try:
            async with self._slots:
                self._in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
                try:
                    return await self._client.dec_keys(master_sae_id, key_ids)
                finally:
                    self._in_flight -= 1
        except (KMERequestRejected, KMEUnauthorized) as exc:
            # 400 = unknown or already delivered, 401 = bound to another master/slave pair:
            # both mean the envelope names keys its claimed device cannot have used.
            raise KeysRejected("the KME refused to deliver these keys") from exc
        except KMEUnavailable as exc:
            retry = max(1, round(exc.retry_after)) if exc.retry_after else None
            raise KeysUnavailable("the KME cannot deliver keys now", retry_after_s=retry) from exc
        except KMEError as exc:
            raise KeysUnavailable("the KME answered outside the protocol") from exc

    async def link_hop(self, master_sae_id: str) -> Hop:
        """What the KME's Status for this SAE pair reports about the link (its
        ``status_extension``), cached for :attr:`LINK_REPORT_TTL_S`. A KME that reports
        nothing, or cannot be asked, yields ``unreported``: never a stronger guess."""
        cached = self._links.get(master_sae_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        query = self._link_queries.get(master_sae_id)
        if query is None:  # concurrent envelopes of one device share one Status request
            query = asyncio.ensure_future(self._ask_link(master_sae_id))
            self._link_queries[master_sae_id] = query
            query.add_done_callback(lambda _: self._link_queries.pop(master_sae_id, None))
        return await asyncio.shield(query)

    async def _ask_link(self, master_sae_id: str) -> Hop:
        try:
            async with self._slots:
                status = await self._client.status(master_sae_id)
        except KMEError as exc:
            log_event(
                log,
                logging.WARNING,
                "link not learnt from the KME; records say unreported",
                sae_id=master_sae_id,
                error=type(exc).__name__,
            )
            self._links[master_sae_id] = (self._clock() + self.LINK_RETRY_S, Hop.UNREPORTED)
            return Hop.UNREPORTED
        hop = link_hop_of_status(status.status_extension)
        self._links[master_sae_id] = (self._clock() + self.LINK_REPORT_TTL_S, hop)
        return hop

    async def stock(self, master_sae_id: str) -> int | None:
        # ETSI 014 reports stock per (caller, peer SAE) pair: the notary asks about the link
        # to a device SAE from its own side, as the master of that status query.
        try:
            async with self._slots:
                status = await self._client.status(master_sae_id)
        except KMEUnauthorized:
            return None
        except KMEError as exc:
            raise KeysUnavailable("the KME cannot be reached") from exc
        return status.stored_key_count

    async def aclose(self) -> None:
        for query in list(self._link_queries.values()):
            query.cancel()
        await self._client.aclose()


class InMemoryKeySource:
    """An in-process key buffer that hands out each key once, to its master SAE only.

    Its keys never cross a network on the notary's side (``delivery_hop`` is ``local``);
    where they came from is whatever the depositor says (``link_hop``, unreported unless
    given).
    """

    def __init__(self, *, link_hop: Hop = Hop.UNREPORTED) -> None:
        self._link = link_hop
        self.delivery_hop = Hop.LOCAL
        self._keys: dict[str, tuple[str, QKDKey]] = {}
        self._lock = threading.Lock()
        self.available = True  #: set False to simulate the KME being unreachable
        self.calls = 0  #: number of dec_keys round trips served (coalescing is observable)

    def deposit(self, master_sae_id: str, keys: Iterable[QKDKey]) -> None:
        """Make ``keys`` retrievable once by the notary for ``master_sae_id``."""
        with self._lock:
            for key in keys:
                self._keys[key.key_id] = (master_sae_id, key)

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[str]) -> list[QKDKey]:
        if not self.available:
            raise KeysUnavailable("key source offline")
        with self._lock:
            self.calls += 1
            if len(set(key_ids)) != len(key_ids):
                raise KeysRejected("duplicate key ID")
            found = [self._keys.get(key_id) for key_id in key_ids]
            if any(entry is None or entry[0] != master_sae_id for entry in found):
                raise KeysRejected("unknown key ID or wrong master SAE")
            for key_id in key_ids:
                del self._keys[key_id]
        return [entry[1] for entry in found if entry is not None]

    async def link_hop(self, master_sae_id: str) -> Hop:
        return self._link

    async def stock(self, master_sae_id: str) -> int | None:
        if not self.available:
            raise KeysUnavailable("key source offline")
        with self._lock:
            return sum(1 for master, _ in self._keys.values() if master == master_sae_id)

    async def aclose(self) -> None:
        return None


@dataclass
class _Waiter:
    key_ids: tuple[str, ...]
    future: asyncio.Future[list[QKDKey]] = field(repr=False)


class CoalescingKeySource:
    """Merge concurrent ``dec_keys`` calls per master SAE into one round trip.

    The first call for a master SAE opens a window of ``window_s``; every call arriving in
    it joins the same request (up to ``max_keys`` key IDs per KME call). Because a KME
    refuses a whole request if one key in it is bad, a refused merged request is retried
    call by call, so one forged envelope cannot make its neighbours fail; this is safe
    only because a refused request delivers (and deletes) nothing. A key ID named by two
    waiters in one window is given to the first only: a pad is never handed out twice.
    """

    def __init__(self, inner: KeySource, *, window_s: float = 0.002, max_keys: int = 128):
        self._inner = inner
        self._window_s = window_s
        self._max_keys = max_keys
        self._pending: dict[str, list[_Waiter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: KME round trips made and envelopes served, so the merging is observable.
        self.round_trips = 0
        self.requests = 0

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[str]) -> list[QKDKey]:
        self.requests += 1
        if self._window_s <= 0 or len(key_ids) >= self._max_keys:
            self.round_trips += 1
            return await self._inner.dec_keys(master_sae_id, key_ids)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(tuple(key_ids), loop.create_future())
        queue = self._pending.get(master_sae_id)
        if queue is None:
            self._pending[master_sae_id] = [waiter]
            task = loop.create_task(self._flush_later(master_sae_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            queue.append(waiter)
        return await waiter.future

    async def _flush_later(self, master_sae_id: str) -> None:
        await asyncio.sleep(self._window_s)
        waiters = self._pending.pop(master_sae_id, [])
        chunks: list[list[_Waiter]] = []
        claimed: set[str] = set()
        size = 0
        for waiter in waiters:
            if claimed.intersection(waiter.key_ids):
                waiter.future.set_exception(KeysRejected("key ID requested twice"))
                continue
            claimed.update(waiter.key_ids)
            if not chunks or size + len(waiter.key_ids) > self._max_keys:
                chunks.append([])
                size = 0
            chunks[-1].append(waiter)
            size += len(waiter.key_ids)
        await asyncio.gather(*(self._serve(master_sae_id, chunk) for chunk in chunks))

    async def _serve(self, master_sae_id: str, chunk: list[_Waiter]) -> None:
        if len(chunk) == 1:
            await self._serve_one(master_sae_id, chunk[0])
            return
        merged = [key_id for waiter in chunk for key_id in waiter.key_ids]
        self.round_trips += 1
        try:
            keys = await self._inner.dec_keys(master_sae_id, merged)
        except KeysRejected:
            await asyncio.gather(*(self._serve_one(master_sae_id, w) for w in chunk))
            return
        except Exception as exc:  # every waiter learns the same failure
            for waiter in chunk:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            return
        by_id = {key.key_id: key for key in keys}
        for waiter in chunk:
            if not waiter.future.done():
                waiter.future.set_result([by_id[key_id] for key_id in waiter.key_ids])

    async def _serve_one(self, master_sae_id: str, waiter: _Waiter) -> None:
        self.round_trips += 1
        try:
            keys = await self._inner.dec_keys(master_sae_id, waiter.key_ids)
        except Exception as exc:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
            return
        if not waiter.future.done():
            waiter.future.set_result(keys)

    async def link_hop(self, master_sae_id: str) -> Hop:
        return await self._inner.link_hop(master_sae_id)

    @property
    def delivery_hop(self) -> Hop:
        return self._inner.delivery_hop

    async def stock(self, master_sae_id: str) -> int | None:
        return await self._inner.stock(master_sae_id)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._inner.aclose()
