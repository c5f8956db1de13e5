"""The anchoring worker: outbox entries to on-chain evidence, exactly once.

Loop (one asyncio task next to the API, or standalone):

1. Mirror device history to the DeviceRegistry, oldest event first (registration,
   first/changed firmware digest, approvals, deactivation). A deactivation waits until
   the records the device sent before it are anchored: the contract refuses records of
   inactive devices, and those were accepted while the device was active.
2. Resume batches a crash left unfinished, then form a new batch when ``batch_size``
   records wait or the oldest has waited ``max_latency_s``: its members (and, in Merkle
   mode, its root) are fixed in storage *before* anything is sent.
3. Send it: ``recordBatch`` (every record stored in the contract) or ``anchorRoot``
   (only the Merkle root; receipts carry inclusion proofs). The chain client waits for
   the configured confirmations.
4. Mark the batch and its records ANCHORED with the block coordinates; a record the
   contract refused (device not active) or found stored with other content (a conflict)
   gets that status instead, with a log line and a metric.

Exactly once: record IDs are deterministic and both contract calls are idempotent
(``recordBatch`` skips stored IDs, ``anchorRoot`` skips a known root), so resending a
batch whose transaction may have landed before a crash cannot duplicate anything; when
the resend finds everything already there, the worker looks up the transaction that did
land and records *that* one, so receipts always point at the block holding the evidence.
While the chain is unreachable, intake keeps filling the outbox; the worker backs off and
drains it when the node is back.

Several instances sharing one database each run a worker, but only the one holding the
store's anchoring lead (:meth:`~notary.storage.base.Store.hold_anchoring_lead`) works; the
others wait and take over when the leader's lock session ends. So one signer never sends
from two processes at once (no nonce races), and batches are still disjoint if two ever
overlap briefly (the store claims members atomically).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from eth_utils.address import is_address

from notary.chain.merkle import MerkleTree, record_leaf
from notary.chain.models import (
    AnchorOutcome,
    AttestationOutcome,
    BatchOutcome,
    DeviceInfo,
    RecordInput,
    SecurityMode,
    TxInfo,
)
from notary.config import AnchorMode
from notary.errors import (
    BatchTooLarge,
    ChainError,
    ChainReset,
    ChainUnavailable,
    InvalidTransition,
    NotaryError,
    TransactionNotConfirmed,
)
from notary.logging import log_event
from notary.metrics import NotaryMetrics
from notary.reconciler import Reconciler, WatchedChain
from notary.storage.base import (
    BatchRow,
    DeviceEvent,
    DeviceEventKind,
    DeviceRow,
    RecordRow,
    RecordStatus,
    Store,
)

__all__ = ["AnchorChain", "AnchoringWorker", "record_input"]

log = logging.getLogger("notary.anchoring")


class AnchorChain(WatchedChain, Protocol):
    """What the worker needs from :class:`notary.chain.ChainClient` (blocking calls)."""

    chain_id: int

    @property
    def address(self) -> str: ...

    @property
    def notary_address(self) -> str: ...

    @property
    def registry_address(self) -> str: ...

    def register_device(
        self, device_id: str, *, sae_id: str, owner: str, expected_firmware: bytes | None = None
    ) -> TxInfo: ...

    def attest_firmware(
        self, device_id: str, digest: bytes, sequence: int
    ) -> AttestationOutcome: ...

    def approve_firmware(self, device_id: str, digest: bytes) -> TxInfo: ...

    def deactivate_device(self, device_id: str) -> TxInfo: ...

    def get_device(self, device_id: str) -> DeviceInfo | None: ...

    def record_batch(self, records: Sequence[RecordInput]) -> BatchOutcome: ...

    def anchor_root(
        self, root: bytes, *, count: int, first_record_id: bytes, last_record_id: bytes
    ) -> AnchorOutcome: ...

    def find_record_transaction(self, record_id: bytes) -> TxInfo | None: ...

    def find_anchor_transaction(self, root: bytes) -> TxInfo | None: ...


def record_input(record: RecordRow, *, with_payload: bool = False) -> RecordInput:
    """The chain form of a stored record (also the Merkle leaf's preimage)."""
    return RecordInput(
        record_id=bytes.fromhex(record.record_id[2:]),
        device_id=record.device_id,
        sequence=record.sequence,
        payload_hash=bytes.fromhex(record.payload_hash[2:]),
        mode=SecurityMode.from_label(record.mode),
        key_path=record.key_path,
        firmware_digest=bytes.fromhex(record.firmware_digest),
        device_trusted=record.device_trusted,
        sent_at_ms=record.sent_at_ms,
        accepted_at_ms=record.accepted_at_ms,
        payload=record.payload if with_payload else b"",
    )


class AnchoringWorker:
    """Moves accepted records from the outbox onto the chain."""

    def __init__(
        self,
        store: Store,
        chain: AnchorChain,
        *,
        mode: AnchorMode = AnchorMode.MERKLE,
        batch_size: int = 64,
        max_latency_s: float = 1.0,
        publish_payloads: bool = False,
        metrics: NotaryMetrics | None = None,
        poll_interval_s: float = 0.05,
        max_backoff_s: float = 10.0,
        reconcile_interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if publish_payloads and mode is AnchorMode.MERKLE:
            raise ValueError("payloads can only be published in batch mode")
        self._store = store
        self._chain = chain
        self._mode = mode
        self._batch_size = batch_size
        self._max_latency = max_latency_s
        self._publish = publish_payloads
        self._metrics = metrics or NotaryMetrics()
        self._poll = poll_interval_s
        self._max_backoff = max_backoff_s
        self._clock = clock
        self._wake = asyncio.Event()
        self._halt = asyncio.Event()
        self._leading = False
        #: Re-checks anchored batches against the chain (runs inside this worker's loop,
        #: so it never races a send).
        self.reconciler = Reconciler(
            store, chain, metrics=self._metrics, interval_s=reconcile_interval_s
        )

    @property
    def mode(self) -> AnchorMode:
        return self._mode

    def notify(self) -> None:
        """Hint that records arrived (the worker also polls)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop :meth:`run` after its current step (the service replaces its chain)."""
        self._halt.set()
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (or :meth:`stop`); chain outages only slow it down."""
        backoff = self._poll
        while not (stop.is_set() or self._halt.is_set()):
            try:
                worked = await self.run_once()
                backoff = self._poll
            except (ChainUnavailable, TransactionNotConfirmed) as exc:
                log_event(log, logging.WARNING, "chain unavailable, will retry", error=str(exc))
                worked = False
                backoff = min(self._max_backoff, max(backoff * 2, 0.2))
            except ChainReset:
                # The reconciler said so once; nothing is sent until the contracts are
                # redeployed, but the chain is asked again every interval.
                worked = False
                backoff = self._max_backoff
            except NotaryError as exc:
                log_event(log, logging.ERROR, "anchoring failed", error=str(exc))
                worked = False
                backoff = min(self._max_backoff, max(backoff * 2, 0.5))
            if worked:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=backoff, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def run_once(self, *, force: bool = False) -> bool:
        """One step: mirror device events, finish or form and send one batch.

        ``force`` sends a batch even if it is smaller than ``batch_size`` and younger
        than ``max_latency_s``. Returns whether anything was done; an instance that does
        not hold the anchoring lead does nothing.
        """
        if not await self._hold_lead():
            return False
        await self.reconciler.maybe_check()
        # The batch is fixed first, then the device history is mirrored: a record is only
        # accepted after its device's registration is committed, so every device of the
        # batch is registered on-chain by the time the batch is sent.
        unfinished = await self._store.unfinished_batches()
        batch = unfinished[0] if unfinished else await self._form_batch(force=force)
        worked = await self.mirror_device_events()
        if batch is None:
            return worked
        await self._send(batch)
        return True

    async def drain(self, *, timeout_s: float = 60.0) -> None:
        """Anchor everything in the outbox now (tests, shutdown, the demo); on an instance
        without the anchoring lead, wait until the leader has."""
        deadline = time.monotonic() + timeout_s
        while await self._store.outbox_depth() or await self._store.pending_device_events(1):
            if time.monotonic() > deadline:
                raise TimeoutError("the outbox did not drain in time")
            if not await self.run_once(force=True):
                await asyncio.sleep(self._poll)

    async def _hold_lead(self) -> bool:
        leading = await self._store.hold_anchoring_lead()
        if leading != self._leading:
            self._leading = leading
            log_event(
                log,
                logging.INFO,
                "anchoring lead taken" if leading else "anchoring lead lost, standing by",
            )
        return leading

    # -- device history --------------------------------------------------------------
    async def mirror_device_events(self, limit: int = 32) -> bool:
        """Send pending device events to the DeviceRegistry, in order per device; stop at
        a failure. A deactivation (and anything after it for that device) waits while
        records the device sent before it are still on their way to the chain."""
        events = await self._store.pending_device_events(limit)
        deferred: set[str] = set()
        mirrored = 0
        for event in events:
            if event.device_id in deferred:
                continue
            if event.kind is DeviceEventKind.DEACTIVATED and await self._store.unanchored_before(
                event.device_id, event.at
            ):
                deferred.add(event.device_id)
                continue
            device = await self._store.get_device(event.device_id)
            if device is None:
                raise InvalidTransition(f"event {event.event_id} names an unknown device")
            sequence = await self._sequence_of(event)
            tx_hash = await asyncio.to_thread(self._mirror, event, device, sequence)
            await self._store.mark_event_mirrored(event.event_id, tx_hash)
            mirrored += 1
        return mirrored > 0

    async def _sequence_of(self, event: DeviceEvent) -> int:
        """The sequence number of the message whose digest an attestation event records."""
        if event.record_id is None:
            return 0
        record = await self._store.get_record(event.record_id)
        if record is None:
            raise InvalidTransition(f"event {event.event_id} names an unknown record")
        return record.sequence

    def _mirror(self, event: DeviceEvent, device: DeviceRow, sequence: int) -> str:
        """Apply one event on-chain (blocking).

        Registration and deactivation are checked against the registry first, so a
        resend after a crash is harmless; a repeated attestation of the same digest adds
        a history entry but cannot change trust (the contract compares digests).
        Returns the transaction hash, or a marker when nothing had to be sent.
        """
        chain = self._chain
        digest = None if event.digest is None else bytes.fromhex(event.digest)
        if event.kind is DeviceEventKind.REGISTERED:
            if chain.get_device(event.device_id) is not None:
                return "already-registered"
            owner = device.owner if is_address(device.owner) else chain.address
            return chain.register_device(
                event.device_id, sae_id=device.sae_id, owner=owner, expected_firmware=digest
            ).tx_hash
        if event.kind in (DeviceEventKind.FIRST_DIGEST, DeviceEventKind.DIGEST_CHANGED):
            assert digest is not None
            on_chain = chain.get_device(event.device_id)
            if on_chain is not None and not on_chain.active:
                return "device-inactive"
            return chain.attest_firmware(event.device_id, digest, sequence).tx.tx_hash
        if event.kind is DeviceEventKind.APPROVED:
            assert digest is not None
            return chain.approve_firmware(event.device_id, digest).tx_hash
        on_chain = chain.get_device(event.device_id)
        if on_chain is None or not on_chain.active:
            return "already-inactive"
        return chain.deactivate_device(event.device_id).tx_hash

    # -- batches ---------------------------------------------------------------------
    async def _form_batch(self, *, force: bool) -> BatchRow | None:
        records = await self._store.pending_records(self._batch_size)
        if not records:
            return None
        oldest = records[0].accepted_at
        due = self._clock() - oldest >= self._max_latency
        if not (force or due or len(records) >= self._batch_size):
            return None
        root = None
        if self._mode is AnchorMode.MERKLE:
            root = "0x" + MerkleTree.of_records([record_input(r) for r in records]).root.hex()
        return await self._store.create_batch(
            self._mode, [r.record_id for r in records], root, now=self._clock()
        )

    async def _send(self, batch: BatchRow) -> None:
        records = await self._store.batch_records(batch.batch_id)
        inputs = [record_input(r, with_payload=self._publish) for r in records]
        unrecorded: dict[str, RecordStatus] = {}
        if batch.mode is AnchorMode.MERKLE:
            tx = await asyncio.to_thread(self._anchor_root, batch, inputs)
        else:
            try:
                tx, unrecorded = await asyncio.to_thread(self._record_batch, inputs)
            except BatchTooLarge:
                # Refused at gas estimation, so nothing was sent: halve the batch (the
                # rest goes back to the outbox) and let the next step send it.
                if len(records) == 1:
                    raise
                await self._store.shrink_batch(batch.batch_id, len(records) // 2)
                log_event(log, logging.WARNING, "batch too large, halved", batch_id=batch.batch_id)
                return
        await self._store.mark_batch_anchored(
            batch.batch_id,
            tx_hash=tx.tx_hash,
            block_number=tx.block_number,
            block_hash=tx.block_hash,
            block_timestamp=tx.block_timestamp,
            now=self._clock(),
            unrecorded=unrecorded,
        )
        self.reconciler.reanchored(batch.batch_id, len(records) - len(unrecorded))
        now = self._clock()
        mode = batch.mode.value
        self._metrics.batches.labels(mode).inc()
        self._metrics.anchored.labels(mode).inc(len(records) - len(unrecorded))
        for record in records:
            if record.record_id in unrecorded:
                self._report_unrecorded(record, unrecorded[record.record_id], tx)
                continue
            self._metrics.time_to_anchor.labels(mode).observe(max(0.0, now - record.accepted_at))
        log_event(
            log,
            logging.INFO,
            "batch anchored",
            batch_id=batch.batch_id,
            mode=mode,
            records=len(records),
            tx_hash=tx.tx_hash,
            block_number=tx.block_number,
        )

    def _anchor_root(self, batch: BatchRow, inputs: list[RecordInput]) -> TxInfo:
        assert batch.root is not None
        root = bytes.fromhex(batch.root[2:])
        if MerkleTree([record_leaf(i) for i in inputs]).root != root:
            raise InvalidTransition(f"batch {batch.batch_id} no longer matches its root")
        outcome = self._chain.anchor_root(
            root,
            count=len(inputs),
            first_record_id=inputs[0].record_id,
            last_record_id=inputs[-1].record_id,
        )
        if outcome.anchored:
            return outcome.tx
        # Anchored by a transaction sent before a crash: point receipts at that one.
        earlier = self._chain.find_anchor_transaction(root)
        if earlier is None:
            raise ChainError(f"root of batch {batch.batch_id} reported anchored but not found")
        return earlier

    def _report_unrecorded(self, record: RecordRow, status: RecordStatus, tx: TxInfo) -> None:
        self._metrics.records_unrecorded.labels(status.value).inc()
        if status is RecordStatus.CONFLICT:
            message = "record ID already on-chain with other content: not anchored"
            level = logging.ERROR
        else:
            message = "record refused on-chain: the device is not active in the registry"
            level = logging.WARNING
        log_event(
            log,
            level,
            message,
            record_id=record.record_id,
            device_id=record.device_id,
            tx_hash=tx.tx_hash,
        )

    def _record_batch(self, inputs: list[RecordInput]) -> tuple[TxInfo, dict[str, RecordStatus]]:
        """Send the batch; the transaction holding its evidence and the members the
        contract did not store (refused, or in conflict with a stored record)."""
        outcome = self._chain.record_batch(inputs)
        unrecorded = {"0x" + rid.hex(): RecordStatus.REFUSED for rid in outcome.refused}
        for rid, stored_device in outcome.conflicts:
            unrecorded["0x" + rid.hex()] = RecordStatus.CONFLICT
            log_event(
                log,
                logging.ERROR,
                "conflicting record on-chain",
                record_id="0x" + rid.hex(),
                stored_device_id=stored_device,
            )
        if not outcome.skipped:
            return outcome.tx, unrecorded
        if outcome.recorded:
            # A batch's members are fixed before its first send and a transaction is
            # atomic, so "some new, some old" means two batches shared records.
            raise InvalidTransition("a batch was partly recorded by another transaction")
        # Stored by a transaction sent before a crash: point receipts at that one.
        earlier = self._chain.find_record_transaction(outcome.skipped[0])
        if earlier is None:
            raise ChainError("batch reported as recorded but its transaction was not found")
        return earlier, unrecorded
