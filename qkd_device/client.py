"""``DeviceClient`` / ``AsyncDeviceClient``: what device firmware (or its edge hub) calls.

One ``send`` does, in order:

1. build and validate the telemetry document (before any key is spent), with the device
   hop of its key path (``key_delivery``: ``local`` when the KME client connects to a
   loopback address, ``tls`` otherwise);
2. obtain fresh keys from the device's KME with ``enc_keys`` (the notary's SAE is the
   slave), as many keys as the KME's maximum key size requires; with ``key_stock=N > 1``
   take one from a small in-memory stock refilled ``N`` keys per request
   (:mod:`qkd_device.keystock`); in ``aead`` and ``hybrid`` mode reuse the current session
   key until it is due for rotation (``hybrid``: a new session also encapsulates a fresh
   ML-KEM-768 secret to the notary's pinned public key);
3. durably take the next sequence number, seal, and write the envelope to the on-disk
   queue (:class:`~qkd_device.queue.SendQueue`);
4. deliver every queued envelope oldest first (the notary needs rising sequence numbers),
   retrying transient failures with jittered exponential backoff that honours
   ``Retry-After``, always with the *same* bytes.

The two classes are twins (``close``/``aclose``); all decisions are in :mod:`qkd_device.core`.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from qkd_channel.envelope import AEAD_KEY_BYTES, AEADSession, Mode, keys_needed
from qkd_channel.errors import KMEError, KMEUnavailable
from qkd_channel.hybrid import HybridKey, KEMPublicKey
from qkd_channel.keys import QKDKey
from qkd_channel.kme.client import AsyncKMEClient, KMEClient
from qkd_channel.security_levels import delivery_hop_of
from qkd_device.core import (
    Answer,
    DeliveryReceipt,
    KeyPlan,
    RetryPolicy,
    Verdict,
    judge,
    seal_item,
)
from qkd_device.errors import (
    AnchorTimeout,
    DeliveryPending,
    DeliveryRejected,
    KeysUnobtainable,
)
from qkd_device.keystock import KeyStock
from qkd_device.queue import QueuedEnvelope, SendQueue
from qkd_device.receipt import Receipt
from qkd_device.records import build_document
from qkd_device.transport import (
    AsyncHTTPTransport,
    AsyncTransport,
    HTTPTransport,
    Transport,
)

__all__ = ["AsyncDeviceClient", "ClientStats", "DeviceClient"]

log = logging.getLogger("qkd_device")

T = TypeVar("T")


@dataclass
class ClientStats:
    """Counters a fleet operator (or the demo and benchmark) reads."""

    delivered: int = 0  #: envelopes the notary holds a record for
    resent: int = 0  #: of which recognised as resends after a lost answer
    resealed: int = 0  #: readings sealed again because a crashed notary lost their keys
    rejected: int = 0  #: final refusals (moved to ``rejected/``)
    retries: int = 0  #: transient failures waited out (notary or KME)
    key_bytes: int = 0  #: QKD key material obtained from the KME
    key_bytes_dropped: int = 0  #: of which stocked, then dropped unused (too old, or at close)


class _ClientBase:
    """Configuration, queue and answer bookkeeping shared by both clients."""

    def __init__(
        self,
        device_id: str,
        *,
        firmware_digest: str,
        queue_dir: Path | str,
        mode: Mode | str,
        notary_id: str,
        notary_sae_id: str,
        retry: RetryPolicy,
        aead_max_messages: int,
        aead_max_age_s: float,
        first_sequence: int,
        key_stock: int,
        key_stock_max_age_s: float,
        rng: random.Random | None,
        clock: Callable[[], float],
        kme_url: str | None,
        notary_kem_key: KEMPublicKey | None,
    ) -> None:
        build_document(firmware_digest, {})  # validates the digest up front
        self.device_id = device_id
        #: Digest of the firmware now running; change it after an update.
        self.firmware_digest = firmware_digest
        self.mode = Mode(mode)
        if self.mode is Mode.HYBRID and notary_kem_key is None:
            raise ValueError(
                "hybrid mode needs the notary's ML-KEM public key (notary_kem_key=, pinned "
                "after checking its fingerprint: qkd-notary kem-key show)"
            )
        self._notary_kem = notary_kem_key
        #: How this device's keys reach it, sealed into every document: ``local`` when its
        #: KME client connects to a loopback address, else ``tls``; ``None`` (a KME client
        #: that does not say where it connects) claims nothing.
        self.key_delivery = None if kme_url is None else delivery_hop_of(kme_url).value
        self.notary_id = notary_id
        self.notary_sae_id = notary_sae_id
        self.retry = retry
        self.stats = ClientStats()
        self._aead_limits = (aead_max_messages, aead_max_age_s)
        self._rng = rng or random.Random()
        self._clock = clock
        self._plan: KeyPlan | None = None
        self._stock = KeyStock(key_stock, max_age_s=key_stock_max_age_s)
        self._session: AEADSession | None = None
        self._queue = SendQueue(Path(queue_dir), device_id=device_id, first_sequence=first_sequence)
        # Envelopes that may have reached the notary without us learning the outcome: all
        # those found queued at start-up (a previous run may have sent them) and those that
        # got no answer or a 5xx. Only for these is a 401 read as "keys lost in a crash".
        self._uncertain = {item.record_id for item in self._queue.pending()}

    @property
    def queue(self) -> SendQueue:
        return self._queue

    def _stocked(self, plan: KeyPlan, need: int) -> list[QKDKey] | None:
        """Keys for ``need`` bytes from the in-memory stock, if it holds a fitting one."""
        keys = self._stock.take(need, plan, self._clock())
        self.stats.key_bytes_dropped = self._stock.dropped_bytes
        return keys

    def _obtained(self, plan: KeyPlan, need: int, fetched: list[QKDKey]) -> list[QKDKey]:
        """Account for keys fresh from the KME; those for this message (the rest stocked)."""
        self.stats.key_bytes += sum(len(k.material) for k in fetched)
        return self._stock.keep(fetched, need, plan, self._clock())

    def _drop_stock(self) -> None:
        self._stock.clear()
        self.stats.key_bytes_dropped = self._stock.dropped_bytes

    def _needs_session(self) -> bool:
        return self._session is None or self._session.expired()

    def _new_session(self, key: QKDKey) -> AEADSession:
        max_messages, max_age_s = self._aead_limits
        if self.mode is Mode.HYBRID:
            assert self._notary_kem is not None  # checked at construction
            key = HybridKey.for_sender(key, self._notary_kem)
        self._session = AEADSession(key, max_messages=max_messages, max_age_s=max_age_s)
        return self._session

    def document(self, telemetry: dict[str, Any]) -> bytes:
        """The exact plaintext ``send`` seals for ``telemetry`` (firmware digest, key
        delivery): what a receipt's payload hash commits to."""
        return build_document(self.firmware_digest, telemetry, key_delivery=self.key_delivery)

    def _seal(
        self, plaintext: bytes, keys: list[QKDKey] | None, origin: str | None = None
    ) -> QueuedEnvelope:
        item = seal_item(
            plaintext,
            device_id=self.device_id,
            notary_id=self.notary_id,
            sequence=self._queue.reserve_sequence(),
            mode=self.mode,
            keys=keys,
            session=self._session,
            origin=origin,
        )
        self._queue.put(item)
        return item

    def _replace(self, item: QueuedEnvelope, keys: list[QKDKey] | None) -> None:
        """Seal ``item``'s reading again (new keys, next sequence) at the queue's tail."""
        self._seal(item.plaintext, keys, origin=item.record_id)
        self._queue.done(item)
        self.stats.resealed += 1
        log.warning("sequence %d re-sealed: the notary lost its keys in a crash", item.sequence)

    def _settle(
        self, item: QueuedEnvelope, answer: Answer
    ) -> tuple[Verdict, DeliveryReceipt | None]:
        """Record the outcome of one attempt (raises ``DeliveryRejected`` for a refusal)."""
        verdict, receipt = judge(item, answer, uncertain=item.record_id in self._uncertain)
        if verdict is Verdict.DELIVERED:
            assert receipt is not None
            self._queue.done(item)
            self.stats.delivered += 1
            self.stats.resent += receipt.resent
            self._uncertain.discard(item.record_id)
            return verdict, receipt
        if verdict is Verdict.REJECTED:
            self._queue.dead_letter(item, {"status": answer.status, **answer.body})
            self.stats.rejected += 1
            reason = str(answer.body.get("reason", "rejected"))
            raise DeliveryRejected(
                f"the notary refused sequence {item.sequence}: HTTP {answer.status} {reason}",
                status=answer.status,
                reason=reason,
                sequence=item.sequence,
                record_id=item.record_id,
            )
        if verdict is Verdict.RETRY:
            self.stats.retries += 1
            self._uncertain.add(item.record_id)
        return verdict, None

    def _backoff(self, attempt: int, retry_after: float | None, deadline: float) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` if past the deadline."""
        wait = self.retry.delay(attempt, retry_after, self._rng)
        return None if self._clock() + wait > deadline else wait

    def _pending_error(self, item: QueuedEnvelope) -> DeliveryPending:
        count = len(self._queue.pending())
        return DeliveryPending(
            f"sequence {item.sequence} not delivered yet; {count} envelope(s) stay queued",
            pending=count,
        )


def _anchored(receipt: Receipt | None, delivery: DeliveryReceipt | str) -> Receipt | None:
    """``receipt`` if it is anchored (and, for a delivery whose payload hash the device
    computed, commits to it: ``ReceiptMismatch`` otherwise); ``None`` while it is not."""
    if receipt is None or not receipt.anchored:
        return None
    if isinstance(delivery, DeliveryReceipt) and delivery.payload_hash is not None:
        receipt.check(delivery.record_id, delivery.payload_hash)
    return receipt


def _record_id(receipt: DeliveryReceipt | str) -> str:
    return receipt.record_id if isinstance(receipt, DeliveryReceipt) else receipt


def _kme_failure(what: str, exc: KMEError) -> KeysUnobtainable:
    return KeysUnobtainable(f"{what}: the KME refused ({type(exc).__name__}: {exc})")


class DeviceClient(_ClientBase):
    """Blocking device SDK client (one per device; not for concurrent use by threads)."""

    def __init__(
        self,
        device_id: str,
        *,
        kme: KMEClient,
        notary: str | Transport,
        firmware_digest: str,
        queue_dir: Path | str,
        mode: Mode | str = Mode.OTP,
        notary_id: str = "notary",
        notary_sae_id: str = "notary",
        notary_kem_key: KEMPublicKey | None = None,
        retry: RetryPolicy | None = None,
        aead_max_messages: int = 10_000,
        aead_max_age_s: float = 600.0,
        first_sequence: int = 1,
        key_stock: int = 1,
        key_stock_max_age_s: float = 300.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            device_id,
            firmware_digest=firmware_digest,
            queue_dir=queue_dir,
            mode=mode,
            notary_id=notary_id,
            notary_sae_id=notary_sae_id,
            retry=retry or RetryPolicy(),
            aead_max_messages=aead_max_messages,
            aead_max_age_s=aead_max_age_s,
            first_sequence=first_sequence,
            key_stock=key_stock,
            key_stock_max_age_s=key_stock_max_age_s,
            rng=rng,
            clock=clock,
            kme_url=getattr(kme, "base_url", None),
            notary_kem_key=notary_kem_key,
        )
        self._kme = kme
        self._transport: Transport = HTTPTransport(notary) if isinstance(notary, str) else notary
        self._sleep = sleep
        self._lock = threading.Lock()

    def send(self, telemetry: dict[str, Any]) -> DeliveryReceipt:
        """Seal ``telemetry``, queue it durably, deliver it (after anything older)."""
        plaintext = self.document(telemetry)
        with self._lock:
            deadline = self._clock() + self.retry.deadline_s
            item = self._seal(plaintext, self._keys_for(len(plaintext), deadline))
            delivered = self._drain(deadline, until=item)
            return delivered[item.reading_id]

    def flush(self) -> list[DeliveryReceipt]:
        """Deliver every queued envelope (e.g. after a restart); oldest first."""
        with self._lock:
            return list(self._drain(self._clock() + self.retry.deadline_s).values())

    def wait_anchored(
        self, receipt: DeliveryReceipt | str, *, timeout: float = 60.0, poll_s: float = 0.5
    ) -> Receipt:
        """Poll the notary until the record is anchored; return its receipt.

        Given the ``DeliveryReceipt`` of ``send``, the receipt must commit to the payload
        hash the device computed itself (``ReceiptMismatch`` otherwise).
        """
        record_id = _record_id(receipt)
        deadline = self._clock() + timeout
        while True:
            anchored = _anchored(self._transport.fetch_receipt(record_id), receipt)
            if anchored is not None:
                return anchored
            if self._clock() + poll_s > deadline:
                raise AnchorTimeout(f"record {record_id} not anchored within {timeout:g} s")
            self._sleep(poll_s)

    def _drain(
        self, deadline: float, *, until: QueuedEnvelope | None = None
    ) -> dict[str, DeliveryReceipt]:
        """Deliver the queue head until the queue is empty; results by reading ID."""
        out: dict[str, DeliveryReceipt] = {}
        while pending := self._queue.pending():
            item = pending[0]
            try:
                receipt = self._deliver(item, deadline)
            except DeliveryRejected:
                if until is None or item.reading_id == until.reading_id:
                    raise
                log.warning("older queued envelope %d refused by the notary", item.sequence)
                continue
            if receipt is not None:
                out[item.reading_id] = receipt
        return out

    def _deliver(self, item: QueuedEnvelope, deadline: float) -> DeliveryReceipt | None:
        """Deliver one envelope; ``None`` when its reading was re-sealed at the tail."""
        attempt = 0
        while True:
            answer = self._transport.submit(item)
            verdict, receipt = self._settle(item, answer)
            if receipt is not None:
                return receipt
            if verdict is Verdict.RESEAL:
                self._replace(item, self._keys_for(len(item.plaintext), deadline))
                return None
            wait = self._backoff(attempt, answer.retry_after, deadline)
            if wait is None:
                raise self._pending_error(item)
            self._sleep(wait)
            attempt += 1

    def _keys_for(self, plaintext_len: int, deadline: float) -> list[QKDKey] | None:
        if self.mode.uses_sessions:
            if self._needs_session():
                key = self._kme_call(
                    lambda: self._kme.enc_keys(self.notary_sae_id, size=8 * AEAD_KEY_BYTES),
                    deadline,
                )[0]
                self.stats.key_bytes += len(key.material)
                self._new_session(key)
            return None
        if self._plan is None:
            status = self._kme_call(lambda: self._kme.status(self.notary_sae_id), deadline)
            self._plan = KeyPlan.from_status(status)
        need = keys_needed(self.mode, plaintext_len)
        keys = self._stocked(self._plan, need)
        if keys is not None:
            return keys
        fetched: list[QKDKey] = []
        for number, size in self._stock.requests(need, self._plan):
            call = functools.partial(
                self._kme.enc_keys, self.notary_sae_id, number=number, size=size
            )
            fetched += self._kme_call(call, deadline)
        return self._obtained(self._plan, need, fetched)

    def _kme_call(self, call: Callable[[], T], deadline: float) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except KMEUnavailable as exc:
                wait = self._backoff(attempt, exc.retry_after, deadline)
                if wait is None:
                    raise KeysUnobtainable("the device's KME stayed unavailable") from exc
                self.stats.retries += 1
                self._sleep(wait)
                attempt += 1
            except KMEError as exc:
                raise _kme_failure("cannot obtain keys", exc) from exc

    def close(self) -> None:
        """Release the queue directory and the transport (queued envelopes stay on disk)."""
        self._drop_stock()
        self._transport.close()
        self._queue.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDeviceClient(_ClientBase):
    """The asyncio twin of :class:`DeviceClient`; concurrent ``send`` calls are serialised."""

    def __init__(
        self,
        device_id: str,
        *,
        kme: AsyncKMEClient,
        notary: str | AsyncTransport,
        firmware_digest: str,
        queue_dir: Path | str,
        mode: Mode | str = Mode.OTP,
        notary_id: str = "notary",
        notary_sae_id: str = "notary",
        notary_kem_key: KEMPublicKey | None = None,
        retry: RetryPolicy | None = None,
        aead_max_messages: int = 10_000,
        aead_max_age_s: float = 600.0,
        first_sequence: int = 1,
        key_stock: int = 1,
        key_stock_max_age_s: float = 300.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        import asyncio  # here, not at the top: a blocking device never loads asyncio

        super().__init__(
            device_id,
            firmware_digest=firmware_digest,
            queue_dir=queue_dir,
            mode=mode,
            notary_id=notary_id,
            notary_sae_id=notary_sae_id,
            retry=retry or RetryPolicy(),
            aead_max_messages=aead_max_messages,
            aead_max_age_s=aead_max_age_s,
            first_sequence=first_sequence,
            key_stock=key_stock,
            key_stock_max_age_s=key_stock_max_age_s,
            rng=rng,
            clock=clock,
            kme_url=getattr(kme, "base_url", None),
            notary_kem_key=notary_kem_key,
        )
        self._kme = kme
        self._transport: AsyncTransport = (
            AsyncHTTPTransport(notary) if isinstance(notary, str) else notary
        )
        self._sleep = sleep or asyncio.sleep
        self._lock = asyncio.Lock()

    async def send(self, telemetry: dict[str, Any]) -> DeliveryReceipt:
        """Seal ``telemetry``, queue it durably, deliver it (after anything older)."""
        plaintext = self.document(telemetry)
        async with self._lock:
            deadline = self._clock() + self.retry.deadline_s
            item = self._seal(plaintext, await self._keys_for(len(plaintext), deadline))
            delivered = await self._drain(deadline, until=item)
            return delivered[item.reading_id]

    async def flush(self) -> list[DeliveryReceipt]:
        """Deliver every queued envelope (e.g. after a restart); oldest first."""
        async with self._lock:
            return list((await self._drain(self._clock() + self.retry.deadline_s)).values())

    async def wait_anchored(
        self, receipt: DeliveryReceipt | str, *, timeout: float = 60.0, poll_s: float = 0.5
    ) -> Receipt:
        """Poll the notary until the record is anchored; return its receipt.

        Given the ``DeliveryReceipt`` of ``send``, the receipt must commit to the payload
        hash the device computed itself (``ReceiptMismatch`` otherwise).
        """
        record_id = _record_id(receipt)
        deadline = self._clock() + timeout
        while True:
            anchored = _anchored(await self._transport.fetch_receipt(record_id), receipt)
            if anchored is not None:
                return anchored
            if self._clock() + poll_s > deadline:
                raise AnchorTimeout(f"record {record_id} not anchored within {timeout:g} s")
            await self._sleep(poll_s)

    async def _drain(
        self, deadline: float, *, until: QueuedEnvelope | None = None
    ) -> dict[str, DeliveryReceipt]:
        """Deliver the queue head until the queue is empty; results by reading ID."""
        out: dict[str, DeliveryReceipt] = {}
        while pending := self._queue.pending():
            item = pending[0]
            try:
                receipt = await self._deliver(item, deadline)
            except DeliveryRejected:
                if until is None or item.reading_id == until.reading_id:
                    raise
                log.warning("older queued envelope %d refused by the notary", item.sequence)
                continue
            if receipt is not None:
                out[item.reading_id] = receipt
        return out

    async def _deliver(self, item: QueuedEnvelope, deadline: float) -> DeliveryReceipt | None:
        """Deliver one envelope; ``None`` when its reading was re-sealed at the tail."""
        attempt = 0
        while True:
            answer = await self._transport.submit(item)
            verdict, receipt = self._settle(item, answer)
            if receipt is not None:
                return receipt
            if verdict is Verdict.RESEAL:
                self._replace(item, await self._keys_for(len(item.plaintext), deadline))
                return None
            wait = self._backoff(attempt, answer.retry_after, deadline)
            if wait is None:
                raise self._pending_error(item)
            await self._sleep(wait)
            attempt += 1

    async def _keys_for(self, plaintext_len: int, deadline: float) -> list[QKDKey] | None:
        if self.mode.uses_sessions:
            if self._needs_session():
                keys = await self._kme_call(
                    lambda: self._kme.enc_keys(self.notary_sae_id, size=8 * AEAD_KEY_BYTES),
                    deadline,
                )
                self.stats.key_bytes += len(keys[0].material)
                self._new_session(keys[0])
            return None
        if self._plan is None:
            status = await self._kme_call(lambda: self._kme.status(self.notary_sae_id), deadline)
            self._plan = KeyPlan.from_status(status)
        need = keys_needed(self.mode, plaintext_len)
        stocked = self._stocked(self._plan, need)
        if stocked is not None:
            return stocked
        fetched: list[QKDKey] = []
        for number, size in self._stock.requests(need, self._plan):
            call = functools.partial(
                self._kme.enc_keys, self.notary_sae_id, number=number, size=size
            )
            fetched += await self._kme_call(call, deadline)
        return self._obtained(self._plan, need, fetched)

    async def _kme_call(self, call: Callable[[], Awaitable[T]], deadline: float) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except KMEUnavailable as exc:
                wait = self._backoff(attempt, exc.retry_after, deadline)
                if wait is None:
                    raise KeysUnobtainable("the device's KME stayed unavailable") from exc
                self.stats.retries += 1
                await self._sleep(wait)
                attempt += 1
            except KMEError as exc:
                raise _kme_failure("cannot obtain keys", exc) from exc

    async def aclose(self) -> None:
        """Release the queue directory and the transport (queued envelopes stay on disk)."""
        self._drop_stock()
        await self._transport.aclose()
        self._queue.close()

    async def __aenter__(self) -> AsyncDeviceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
