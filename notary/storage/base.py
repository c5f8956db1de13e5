"""The storage interface of the notary and the rows it stores.

The pipeline, the anchoring worker and the API talk to storage only through :class:`Store`,
so a PostgreSQL implementation (several notary instances sharing work) can be added next to
the SQLite one without touching them. Rows are frozen dataclasses: internal forms that the
API converts into its own public schemas, never serialises directly.

Outbox lifecycle (:class:`RecordStatus`): ``ACCEPTED`` → ``SUBMITTED`` → ``ANCHORED``. A
record enters the outbox in the same transaction that advances its device's sequence and
records its attestation, so a ``202 Accepted`` is only ever answered for a durable row.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from notary.config import AnchorMode

__all__ = [
    "AcceptOutcome",
    "BatchRow",
    "BatchStatus",
    "ConsumedKey",
    "DeviceEvent",
    "DeviceEventKind",
    "DeviceRow",
    "IntakeLookup",
    "NewRecord",
    "RecordBrowser",
    "RecordRow",
    "RecordStatus",
    "Store",
]


class RecordStatus(enum.StrEnum):
    """Where an outbox entry is on its way to the chain."""

    ACCEPTED = "accepted"  #: durable in the outbox, answered 202, not yet in a batch
    SUBMITTED = "submitted"  #: assigned to a batch whose transaction is (being) sent
    ANCHORED = "anchored"  #: the batch transaction is confirmed on-chain


class BatchStatus(enum.StrEnum):
    """Lifecycle of one anchoring transaction."""

    PENDING = "pending"  #: members and root fixed, transaction not yet known to be sent
    SENT = "sent"  #: transaction hash known, waiting for confirmations
    ANCHORED = "anchored"  #: confirmed; receipts carry its block


class DeviceEventKind(enum.StrEnum):
    """Device history entries; each is mirrored to the chain's DeviceRegistry."""

    REGISTERED = "registered"  #: admin registered the device (SAE ID, owner)
    FIRST_DIGEST = "first-digest"  #: first firmware digest the device reported
    DIGEST_CHANGED = "digest-changed"  #: the device reported a different digest
    APPROVED = "approved"  #: an operator approved a digest (device trusted again)
    DEACTIVATED = "deactivated"  #: admin deactivated the device; its envelopes are refused


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    sae_id: str
    owner: str
    approved_digest: str | None
    current_digest: str | None
    trusted: bool
    active: bool
    last_sequence: int | None
    registered_at: float
    attestation_count: int
    last_change_at: float | None


@dataclass(frozen=True)
class DeviceEvent:
    event_id: int
    device_id: str
    kind: DeviceEventKind
    digest: str | None
    at: float
    record_id: str | None
    chain_tx_hash: str | None


@dataclass(frozen=True)
class ConsumedKey:
    """A key ID whose material the notary already obtained (it can never be used again)."""

    key_id: str
    device_id: str
    record_id: str | None


@dataclass(frozen=True)
class IntakeLookup:
    """What the intake must know before it fetches an envelope's keys, read at once."""

    #: Record ID of an accepted byte-identical envelope (the envelope is a replay).
    replay_of: str | None
    #: Those of the envelope's key IDs whose material the notary already obtained.
    consumed: Mapping[str, ConsumedKey]


@dataclass(frozen=True)
class NewRecord:
    """A verified, decrypted envelope ready for the outbox."""

    record_id: str
    device_id: str
    sequence: int
    key_ids: tuple[str, ...]
    mode: str
    payload: bytes = field(repr=False)
    payload_hash: str
    salt: bytes = field(repr=False)
    firmware_digest: str
    envelope_digest: str
    sent_at_ms: int
    accepted_at: float


@dataclass(frozen=True)
class RecordRow:
    record_id: str
    device_id: str
    sequence: int
    key_ids: tuple[str, ...]
    mode: str
    payload: bytes = field(repr=False)
    payload_hash: str
    salt: bytes = field(repr=False)
    firmware_digest: str
    envelope_digest: str
    sent_at_ms: int
    accepted_at: float
    device_trusted: bool
    status: RecordStatus
    batch_id: int | None
    leaf_index: int | None


@dataclass(frozen=True)
class BatchRow:
    batch_id: int
    mode: AnchorMode
    record_ids: tuple[str, ...]
    root: str | None
    status: BatchStatus
    created_at: float
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    block_timestamp: int | None
    anchored_at: float | None


@dataclass(frozen=True)
class AcceptOutcome:
    record: RecordRow
    device: DeviceRow
    event: DeviceEvent | None


class Store(Protocol):
    """Durable state of one notary (or of several sharing a database)."""

    async def aclose(self) -> None: ...

    async def ping(self) -> None:
        """Prove the database is reachable and writable; raise ``StorageUnavailable``."""

    async def hold_anchoring_lead(self) -> bool:
        """Whether this instance may anchor now: take the lead if nobody holds it, keep it
        while held. Only the leader forms and sends batches, so several instances sharing
        a database never send from one signer at once. A store that serves a single
        instance always leads."""

    # -- devices ---------------------------------------------------------------------
    async def create_device(
        self,
        device_id: str,
        *,
        sae_id: str,
        owner: str,
        expected_digest: str | None,
        now: float,
    ) -> DeviceRow:
        """Register a device (raises ``DeviceExists``); logs a REGISTERED event."""

    async def get_device(self, device_id: str) -> DeviceRow | None: ...

    async def list_devices(self) -> list[DeviceRow]: ...

    async def approve_digest(self, device_id: str, digest: str, *, now: float) -> DeviceRow:
        """Make ``digest`` the approved firmware; trusted again if it is the current one."""

    async def deactivate_device(self, device_id: str, *, now: float) -> DeviceRow: ...

    async def device_events(self, device_id: str) -> list[DeviceEvent]: ...

    async def pending_device_events(self, limit: int) -> list[DeviceEvent]:
        """Events not yet mirrored to the chain, oldest first."""

    async def mark_event_mirrored(self, event_id: int, tx_hash: str) -> None: ...

    # -- intake ----------------------------------------------------------------------
    async def consumed_keys(self, key_ids: Sequence[str]) -> Mapping[str, ConsumedKey]: ...

    async def intake_lookup(self, envelope_digest: str, key_ids: Sequence[str]) -> IntakeLookup:
        """In one read: the accepted envelope with this digest (a byte-identical resend),
        and which of ``key_ids`` are consumed. The intake asks both for every envelope,
        before any key is fetched."""

    async def record_consumed_keys(
        self, device_id: str, key_ids: Sequence[str], *, now: float
    ) -> None:
        """Remember keys obtained for an envelope that was then refused."""

    async def accept(self, record: NewRecord) -> AcceptOutcome:
        """Atomically: check the device is active and ``sequence`` is above its last one,
        apply the firmware attestation, write the outbox entry, mark its keys consumed.

        Raises ``ReplayDetected`` (stale sequence or known record ID) or
        ``AuthenticationFailed`` (device unknown or inactive); writes nothing then.
        """

    # -- outbox and anchoring --------------------------------------------------------
    async def get_record(self, record_id: str) -> RecordRow | None: ...

    async def outbox_depth(self) -> int:
        """Records accepted but not yet anchored."""

    async def pending_records(self, limit: int) -> list[RecordRow]:
        """ACCEPTED records not in any batch, in acceptance order."""

    async def create_batch(
        self, mode: AnchorMode, record_ids: Sequence[str], root: str | None, *, now: float
    ) -> BatchRow:
        """Fix a batch's members (leaf index = position) and move them to SUBMITTED."""

    async def set_batch_sent(self, batch_id: int, tx_hash: str) -> None: ...

    async def shrink_batch(self, batch_id: int, keep: int) -> BatchRow:
        """Return the members after the first ``keep`` of a PENDING, root-less (batch
        mode) batch to the outbox; used when its transaction would not fit in a block."""

    async def mark_batch_anchored(
        self,
        batch_id: int,
        *,
        tx_hash: str,
        block_number: int,
        block_hash: str,
        block_timestamp: int,
        now: float,
    ) -> None:
        """Move the batch and its records to ANCHORED."""

    async def unfinished_batches(self) -> list[BatchRow]:
        """PENDING or SENT batches, oldest first (resumed after a crash)."""

    async def get_batch(self, batch_id: int) -> BatchRow | None: ...

    async def batch_records(self, batch_id: int) -> list[RecordRow]:
        """Members of a batch ordered by leaf index."""


@runtime_checkable
class RecordBrowser(Protocol):
    """Read-only record listings for the explorer (optional: not every store has them).

    Kept apart from :class:`Store` so that a backend without them still serves intake and
    anchoring; the explorer says so instead of listing records.
    """

    async def recent_records(self, limit: int, *, device_id: str | None = None) -> list[RecordRow]:
        """The newest records (of one device, if given), newest first."""

    async def accepted_times(self, since: float, limit: int) -> list[float]:
        """``accepted_at`` of the records accepted at or after ``since`` among the newest
        ``limit`` records, in no particular order (a full ``limit`` means "at least")."""
