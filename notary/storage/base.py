"""The storage interface of the notary and the rows it stores.

The pipeline, the anchoring worker and the API talk to storage only through :class:`Store`,
so a PostgreSQL implementation (several notary instances sharing work) can be added next to
the SQLite one without touching them. Rows are frozen dataclasses: internal forms that the
API converts into its own public schemas, never serialises directly.

Outbox lifecycle (:class:`RecordStatus`): ``ACCEPTED`` → ``SUBMITTED`` → ``ANCHORED``. A
record enters the outbox in the same transaction that advances its device's sequence and
records its attestation, so a ``202 Accepted`` is only ever answered for a durable row. A
chain that loses the block holding a batch (a rollback, a reset) sends the batch back:
``ANCHORED`` → ``SUBMITTED`` → ``ANCHORED`` again, in a block that holds it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from notary.config import AnchorMode

__all__ = [
    "HASH_PREFIX_SQL",
    "AcceptOutcome",
    "AccessRole",
    "AccessTokenRow",
    "BatchRow",
    "BatchStatus",
    "ConsumedKey",
    "DeviceEvent",
    "DeviceEventKind",
    "DeviceRow",
    "HashKind",
    "IntakeLookup",
    "NewRecord",
    "RecordBrowser",
    "RecordRow",
    "RecordStatus",
    "Store",
    "hex_prefix_bounds",
]


class RecordStatus(enum.StrEnum):
    """Where an outbox entry is on its way to the chain."""

    ACCEPTED = "accepted"  #: durable in the outbox, answered 202, not yet in a batch
    SUBMITTED = "submitted"  #: assigned to a batch whose transaction is (being) sent
    ANCHORED = "anchored"  #: the batch transaction is final on-chain
    #: refused by the contract: the device was not active in the DeviceRegistry (terminal)
    REFUSED = "refused"
    #: the contract already holds this record ID with other content (terminal, alarming)
    CONFLICT = "conflict"

    @property
    def in_outbox(self) -> bool:
        """Still on its way to the chain."""
        return self in (RecordStatus.ACCEPTED, RecordStatus.SUBMITTED)


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


class AccessRole(enum.StrEnum):
    """Who may read a record's plaintext and salt besides the notary (docs/receipts.md)."""

    AUDITOR = "auditor"  #: every device's records
    OWNER = "owner"  #: the records of one device


@dataclass(frozen=True)
class AccessTokenRow:
    """A bearer token for the full view of receipts; only its SHA-256 is stored."""

    token_id: str  #: public handle (first 12 hex digits of the hash), for listing/revoking
    token_hash: str = field(repr=False)
    role: AccessRole
    device_id: str | None  #: the device an OWNER token covers
    label: str
    created_at: float
    revoked_at: float | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> AccessTokenRow:
        """From ``token_id, token_hash, role, device_id, label, created_at, revoked_at``."""
        return cls(
            token_id=row[0],
            token_hash=row[1],
            role=AccessRole(row[2]),
            device_id=row[3],
            label=row[4],
            created_at=float(row[5]),
            revoked_at=None if row[6] is None else float(row[6]),
        )

    def covers(self, device_id: str) -> bool:
        """Whether this token may see ``device_id``'s plaintext and salts."""
        if self.revoked_at is not None:
            return False
        return self.role is AccessRole.AUDITOR or self.device_id == device_id


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
    key_path: int  #: :meth:`qkd_channel.security_levels.KeyPath.code`


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
    key_path: int  #: :meth:`qkd_channel.security_levels.KeyPath.code` (0: unreported)

    @property
    def accepted_at_ms(self) -> int:
        """The notary's acceptance time as committed on-chain (Unix milliseconds)."""
        return int(self.accepted_at * 1000)


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

    async def unanchored_before(self, device_id: str, at: float) -> bool:
        """Whether records of ``device_id`` accepted at or before ``at`` still wait for
        the chain (accepted or submitted)."""

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
        unrecorded: Mapping[str, RecordStatus] | None = None,
    ) -> None:
        """Move the batch and its records to ANCHORED, except the members ``unrecorded``
        names, which get the (terminal) status given there."""

    async def anchored_batches(self, *, from_block: int = 0) -> list[BatchRow]:
        """ANCHORED batches at or above ``from_block``, by block then batch number."""

    async def latest_anchored_batch(self) -> BatchRow | None:
        """The ANCHORED batch in the highest block (the reconciler's cheap probe)."""

    async def requeue_batches(
        self, batch_ids: Sequence[int], *, roots: Mapping[int, str] | None = None
    ) -> int:
        """Send batches the chain lost back to PENDING (their members to SUBMITTED, their
        chain coordinates cleared), replacing the roots ``roots`` names; returns how many
        records that touched."""

    async def mirrored_device_events(self) -> list[DeviceEvent]:
        """Events already sent to the chain, oldest first (the reconciler re-checks them)."""

    async def requeue_device_events(self, from_event_id: int) -> int:
        """Mark ``from_event_id`` and every later event unmirrored; returns how many."""

    # -- access tokens ---------------------------------------------------------------
    async def create_access_token(
        self,
        token_hash: str,
        *,
        role: AccessRole,
        device_id: str | None,
        label: str,
        now: float,
    ) -> AccessTokenRow: ...

    async def find_access_token(self, token_hash: str) -> AccessTokenRow | None: ...

    async def list_access_tokens(self) -> list[AccessTokenRow]: ...

    async def revoke_access_token(self, token_id: str, *, now: float) -> AccessTokenRow:
        """Revoke by public ID (raises ``TokenNotFound``); revoking twice is harmless."""

    async def unfinished_batches(self) -> list[BatchRow]:
        """PENDING or SENT batches, oldest first (resumed after a crash)."""

    async def get_batch(self, batch_id: int) -> BatchRow | None: ...

    async def batch_records(self, batch_id: int) -> list[RecordRow]:
        """Members of a batch ordered by leaf index."""


#: What a stored 32-byte hash identifies, for the explorer's search.
HashKind = Literal["record", "transaction", "block"]


def hex_prefix_bounds(prefix: str) -> tuple[str, str]:
    """``(low, high)`` with ``low <= h < high`` exactly for the lowercase ``0x``-hex strings
    ``h`` that start with ``prefix``: a range an index on the column can answer (``LIKE``
    cannot use a Postgres index under a non-C collation)."""
    digits = prefix[2:].rstrip("f")
    if not digits:
        return prefix, "0y"  # every digit after "0x" is f: nothing above but "0y"
    return prefix, "0x" + digits[:-1] + "0123456789abcdef"[int(digits[-1], 16) + 1]


#: The stored hashes in one ``[low, high)`` range (four times the two bounds, then the
#: limit; ``%s`` placeholders). Record IDs are the primary key, so that part is an index
#: range; batches and device events are few beside records.
HASH_PREFIX_SQL = """
SELECT 'record', record_id FROM records WHERE record_id >= %s AND record_id < %s
UNION ALL
SELECT 'transaction', tx_hash FROM batches WHERE tx_hash >= %s AND tx_hash < %s
UNION ALL
SELECT 'block', block_hash FROM batches WHERE block_hash >= %s AND block_hash < %s
UNION ALL
SELECT 'transaction', chain_tx_hash FROM device_events
    WHERE chain_tx_hash >= %s AND chain_tx_hash < %s
LIMIT %s
"""


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

    async def hashes_with_prefix(self, prefix: str, limit: int) -> list[tuple[HashKind, str]]:
        """Up to ``limit`` stored 32-byte hashes starting with ``prefix`` (lowercase
        ``0x``-hex): record IDs, the transactions that anchored batches or mirrored device
        events, and the blocks that hold batches, each with its kind."""
