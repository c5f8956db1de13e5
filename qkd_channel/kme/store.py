"""The key buffer of one KME: a persistent pool of secret key blocks and the keys carved from it.

How the two KMEs of a link keep their buffers consistent
--------------------------------------------------------
Post-processing hands both KMEs the same block of secret key material under the same block
ID (:meth:`KeyStore.add_block`). Each block is split in two fixed halves: link end A may
carve keys only from bytes ``[0, n // 2)``, end B only from ``[n // 2, n)`` (see
:class:`~qkd_channel.kme.config.LinkEnd`). Within its half an end carves strictly forwards.

When a master SAE asks its KME for keys, that KME (the *owner*):

1. :meth:`KeyStore.reserve`\\ s the bits in its own half: they leave the pool at once and are
   durably recorded as gone before anything else happens;
2. tells the peer KME which byte ranges (segments) became which key ID, for which master
   and slave SAEs; the peer :meth:`KeyStore.apply_peer_allocations` — copies those bytes into
   a key record and drops them (and any bytes the owner skipped) from its copy of the pool;
3. answers the master only once the peer has confirmed. If the peer definitely did not
   commit (it refused, or could not be reached at all), the owner puts the bits back with
   :meth:`KeyStore.release`; if the outcome is unknown the bits stay burned, because reusing
   bits the peer may have bound to a key ID would break one-time use.

A key therefore exists at the owner only inside the ``enc_keys`` answer, and at the peer
until its slave SAE(s) fetch it with :meth:`KeyStore.take_keys`, which deletes it. Block IDs
are remembered forever, so a replayed block can never put used bits back into the pool.

Storage: SQLite in WAL mode with ``synchronous=FULL`` (an allocation must survive power
loss before the key is handed out) and ``secure_delete`` (freed pages are zeroed). The file
is created with mode 0600. This is a simulation-grade protection of key material at rest; a
production KME keeps it in an HSM.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qkd_channel.errors import KeyStoreError
from qkd_channel.keys import QKDKey
from qkd_channel.kme.config import LinkEnd

__all__ = [
    "DATABASE_NAME",
    "KeyAllocation",
    "KeyOrder",
    "KeyStore",
    "Reservation",
    "Segment",
]

DATABASE_NAME = "kme.sqlite3"
_CHECKPOINT_INTERVAL = 1.0  # seconds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every block ID ever received, so a replayed block is refused even after it was used up.
CREATE TABLE IF NOT EXISTS blocks (
    block_id TEXT PRIMARY KEY,
    length INTEGER NOT NULL,
    added_at REAL NOT NULL
);
-- Unallocated material: one row per (block, half); material[0] is byte `start` of the block.
CREATE TABLE IF NOT EXISTS pool (
    seq INTEGER PRIMARY KEY,
    block_id TEXT NOT NULL REFERENCES blocks (block_id),
    half TEXT NOT NULL CHECK (half IN ('A', 'B')),
    start INTEGER NOT NULL,
    material BLOB NOT NULL,
    UNIQUE (block_id, half)
);
-- Keys allocated by the peer KME for one of our SAEs, waiting for dec_keys.
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    master_sae_id TEXT NOT NULL,
    material BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS key_slaves (
    key_id TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    sae_id TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, sae_id)
);
"""


@dataclass(frozen=True)
class Segment:
    """``length`` bytes of block ``block_id`` starting at absolute byte ``offset``."""

    block_id: str
    offset: int
    length: int


@dataclass(frozen=True)
class KeyOrder:
    """One ``enc_keys`` request: keys of ``sizes_bits`` for a master and its slave SAEs."""

    master_sae_id: str
    slave_sae_ids: tuple[str, ...]
    sizes_bits: tuple[int, ...]


@dataclass(frozen=True)
class KeyAllocation:
    """What the owner KME tells its peer about one key: its ID, who may have it, its bits."""

    key_id: str
    master_sae_id: str
    slave_sae_ids: tuple[str, ...]
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class _PoolRow:
    seq: int
    block_id: str
    half: str
    start: int
    material: bytes = field(repr=False)


@dataclass(frozen=True)
class Reservation:
    """Keys carved from this end's half of the pool, not yet confirmed by the peer."""

    allocations: tuple[KeyAllocation, ...]
    keys: tuple[QKDKey, ...]
    _before: tuple[_PoolRow, ...] = field(repr=False)


class KeyStore:
    """The persistent key buffer of the KME at link end ``end``.

    Thread-safe: one SQLite connection guarded by a lock. Several processes may open the same
    data directory (SQLite serialises writers).
    """

    def __init__(self, data_dir: Path, *, kme_id: str, end: LinkEnd) -> None:
        self.end = end
        self.kme_id = kme_id
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = data_dir / DATABASE_NAME
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)  # idempotent: every statement is IF NOT EXISTS
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._last_checkpoint = time.monotonic()
        with self._lock, self._transaction():
            self._bind_identity()

    # -- plumbing ---------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _bind_identity(self) -> None:
        """Refuse to open a buffer written by another KME or for the other link end.

        Opening end A's buffer as end B would let this KME carve bits the peer already carved.
        """
        for name, value in (("kme_id", self.kme_id), ("end", self.end.value)):
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (name, value) VALUES (?, ?)", (name, value))
            elif row[0] != value:
                raise KeyStoreError(
                    f"this key buffer belongs to {name}={row[0]!r}, not {value!r}",
                    reason="identity_mismatch",
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- filling ----------------------------------------------------------------------------

    def add_block(self, block_id: str, material: bytes) -> None:
        """Add a block of secret key material, identical at both ends, to the pool.

        Raises ``KeyStoreError(reason="duplicate_block")`` for a block ID seen before.
        """
        if not block_id or len(material) < 2:
            raise KeyStoreError("a block needs an ID and at least 2 bytes", reason="bad_block")
        half = len(material) // 2
        with self._lock, self._transaction():
            try:
                self._db.execute(
                    "INSERT INTO blocks (block_id, length, added_at) VALUES (?, ?, ?)",
                    (block_id, len(material), time.time()),
                )
            except sqlite3.IntegrityError:
                raise KeyStoreError(
                    "block ID already received; refusing to reuse key material",
                    reason="duplicate_block",
                ) from None
            for end, start, part in (
                (LinkEnd.A, 0, material[:half]),
                (LinkEnd.B, half, material[half:]),
            ):
                self._db.execute(
                    "INSERT INTO pool (block_id, half, start, material) VALUES (?, ?, ?, ?)",
                    (block_id, end.value, start, part),
                )

    # -- accounting -------------------------------------------------------------------------

    def available_bits(self, end: LinkEnd | None = None) -> int:
        """Unallocated bits in the pool: those ``end`` may carve, or all of them."""
        with self._lock:
            if end is None:
                row = self._db.execute("SELECT COALESCE(SUM(length(material)), 0) FROM pool")
            else:
                row = self._db.execute(
                    "SELECT COALESCE(SUM(length(material)), 0) FROM pool WHERE half = ?",
                    (end.value,),
                )
            return 8 * int(row.fetchone()[0])

    def held_key_ids(self) -> list[str]:
        """IDs of keys waiting here for their slave SAE(s), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT key_id FROM keys ORDER BY created_at, key_id")
            return [r[0] for r in rows]

    # -- owner side: enc_keys ---------------------------------------------------------------

    def reserve(
        self, master_sae_id: str, slave_sae_ids: Sequence[str], sizes_bits: Sequence[int]
    ) -> Reservation:
        """Carve one key per entry of ``sizes_bits`` from this end's half, durably.

        Raises ``KeyStoreError(reason="insufficient")`` (nothing carved) if the half holds
        fewer bits than asked.
        """
        return self.reserve_orders(
            [KeyOrder(master_sae_id, tuple(slave_sae_ids), tuple(sizes_bits))]
        )

    def reserve_orders(self, orders: Sequence[KeyOrder]) -> Reservation:
        """Carve the keys of several orders in one transaction (one fsync), in order: the
        reservation's keys are those of ``orders[0]``, then ``orders[1]``, and so on.

        All or nothing: raises ``KeyStoreError(reason="insufficient")`` (nothing carved) if
        the half holds fewer bits than all the orders together.
        """
        sizes = [size for order in orders for size in order.sizes_bits]
        if not sizes or any(size <= 0 or size % 8 for size in sizes):
            raise ValueError("key sizes must be positive multiples of 8 bits")
        wanted = sum(sizes) // 8
        with self._lock, self._transaction():
            rows = self._own_rows_covering(wanted)
            if sum(len(r.material) for r in rows) < wanted:
                raise KeyStoreError("not enough key material in the pool", reason="insufficient")
            allocations: list[KeyAllocation] = []
            keys: list[QKDKey] = []
            cursor = 0  # index into rows
            used = 0  # bytes already taken from rows[cursor]
            for order in orders:
                for size in order.sizes_bits:
                    need = size // 8
                    segments: list[Segment] = []
                    parts: list[bytes] = []
                    while need:
                        row = rows[cursor]
                        take = min(need, len(row.material) - used)
                        segments.append(Segment(row.block_id, row.start + used, take))
                        parts.append(row.material[used : used + take])
                        used += take
                        need -= take
                        if used == len(row.material):
                            cursor, used = cursor + 1, 0
                    key_id = str(uuid.uuid4())
                    allocations.append(
                        KeyAllocation(
                            key_id, order.master_sae_id, order.slave_sae_ids, tuple(segments)
                        )
                    )
                    keys.append(QKDKey(key_id, b"".join(parts)))
            for index, row in enumerate(rows):
                if index < cursor:
                    self._db.execute("DELETE FROM pool WHERE seq = ?", (row.seq,))
                elif index == cursor and used:
                    self._db.execute(
                        "UPDATE pool SET start = ?, material = ? WHERE seq = ?",
                        (row.start + used, row.material[used:], row.seq),
                    )
        self._checkpoint()
        return Reservation(tuple(allocations), tuple(keys), tuple(rows))

    def _own_rows_covering(self, wanted: int) -> list[_PoolRow]:
        rows: list[_PoolRow] = []
        total = 0
        query = "SELECT seq, block_id, half, start, material FROM pool WHERE half = ? ORDER BY seq"
        for seq, block_id, half, start, material in self._db.execute(query, (self.end.value,)):
            if total >= wanted:
                break
            rows.append(_PoolRow(seq, block_id, half, start, bytes(material)))
            total += len(material)
        return rows

    def release(self, reservation: Reservation) -> None:
        """Put back the bits of a reservation the peer definitely did not commit.

        Only sound while no later reservation from this end exists, which the KME service
        guarantees by allocating one batch of requests at a time.
        """
        with self._lock, self._transaction():
            for row in reservation._before:
                self._db.execute(
                    "INSERT OR REPLACE INTO pool (seq, block_id, half, start, material) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (row.seq, row.block_id, row.half, row.start, row.material),
                )

    def drop_block_lost_by_peer(self, block_id: str, peer_newest_block: str) -> int:
        """Drop what is left of ``block_id`` here if the peer can never hold it; return
        the bits dropped (0: keep waiting for it).

        Both ends add the link's blocks in the same order, so a peer that holds a block
        this end added *after* ``block_id`` but not ``block_id`` itself lost it for good
        (its KME stopped between the block's end and its storage, or the block's final
        authentication reached only this end). Allocations from the block would be refused
        forever, so its remaining bits, which nobody has used, are deleted at this end.
        """
        with self._lock, self._transaction():
            order = dict(
                self._db.execute(
                    "SELECT block_id, rowid FROM blocks WHERE block_id IN (?, ?)",
                    (block_id, peer_newest_block),
                ).fetchall()
            )
            if len(order) != 2 or order[peer_newest_block] <= order[block_id]:
                return 0
            (left,) = self._db.execute(
                "SELECT COALESCE(SUM(length(material)), 0) FROM pool WHERE block_id = ?",
                (block_id,),
            ).fetchone()
            self._db.execute("DELETE FROM pool WHERE block_id = ?", (block_id,))
        return 8 * int(left)

    # -- peer side: allocations made by the other end -------------------------------------

    def apply_peer_allocations(self, allocations: Sequence[KeyAllocation]) -> None:
        """Record keys the peer carved from its half; all or nothing.

        Raises ``KeyStoreError`` with reason ``unknown_block`` (the block has not reached this
        end yet), ``conflict`` (bits already used or out of the peer's half) or
        ``duplicate_key``; in every case nothing was recorded.
        """
        peer_half = self.end.other.value
        now = time.time()
        with self._lock, self._transaction():
            for allocation in allocations:
                parts: list[bytes] = []
                for segment in allocation.segments:
                    parts.append(self._cut_peer_segment(peer_half, segment))
                try:
                    self._db.execute(
                        "INSERT INTO keys (key_id, master_sae_id, material, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (allocation.key_id, allocation.master_sae_id, b"".join(parts), now),
                    )
                except sqlite3.IntegrityError:
                    raise KeyStoreError(
                        "key ID already allocated", reason="duplicate_key"
                    ) from None
                self._db.executemany(
                    "INSERT INTO key_slaves (key_id, sae_id) VALUES (?, ?)",
                    [(allocation.key_id, sae) for sae in dict.fromkeys(allocation.slave_sae_ids)],
                )

    def _cut_peer_segment(self, peer_half: str, segment: Segment) -> bytes:
        row = self._db.execute(
            "SELECT seq, start, material FROM pool WHERE block_id = ? AND half = ?",
            (segment.block_id, peer_half),
        ).fetchone()
        if row is None:
            known = self._db.execute(
                "SELECT 1 FROM blocks WHERE block_id = ?", (segment.block_id,)
            ).fetchone()
            if known is None:
                newest = self._db.execute(
                    "SELECT block_id FROM blocks ORDER BY rowid DESC LIMIT 1"
                ).fetchone()
                details = {"block_id": segment.block_id}
                if newest is not None:
                    details["newest_block"] = newest[0]
                raise KeyStoreError(
                    "block not received yet", reason="unknown_block", details=details
                )
            raise KeyStoreError("block half already used up", reason="conflict")
        seq, start, material = row
        skip = segment.offset - start
        end = skip + segment.length
        if segment.length <= 0 or skip < 0 or end > len(material):
            raise KeyStoreError("segment outside the peer's unused bits", reason="conflict")
        # Bytes before the segment were burned by the owner (an allocation whose outcome it
        # could not learn); they are dropped here too so that nobody ever uses them.
        if end == len(material):
            self._db.execute("DELETE FROM pool WHERE seq = ?", (seq,))
        else:
            self._db.execute(
                "UPDATE pool SET start = ?, material = ? WHERE seq = ?",
                (start + end, material[end:], seq),
            )
        return bytes(material[skip:end])

    # -- peer side: dec_keys ----------------------------------------------------------------

    def take_keys(
        self, caller_sae_id: str, master_sae_id: str, key_ids: Sequence[str]
    ) -> list[QKDKey]:
        """Hand keys to the slave SAE ``caller_sae_id``, once; all or nothing.

        Raises ``KeyStoreError`` with reason ``unknown_key`` (no such key here: never
        allocated, or already delivered) or ``not_entitled`` (the caller is not a slave of
        that key, or ``master_sae_id`` is not its master); a refused request delivers and
        deletes nothing.
        """
        (outcome,) = self.take_keys_batch([(caller_sae_id, master_sae_id, tuple(key_ids))])
        if isinstance(outcome, KeyStoreError):
            raise outcome
        return outcome

    def take_keys_batch(
        self, requests: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[list[QKDKey] | KeyStoreError]:
        """Several :meth:`take_keys` requests ``(caller, master, key_ids)`` in one transaction
        (one fsync). Each is all or nothing on its own (a savepoint): a refused one gets its
        ``KeyStoreError`` in the result list and does not disturb the others."""
        outcomes: list[list[QKDKey] | KeyStoreError] = []
        with self._lock, self._transaction():
            for caller_sae_id, master_sae_id, key_ids in requests:
                self._db.execute("SAVEPOINT take")
                try:
                    outcomes.append(self._take(caller_sae_id, master_sae_id, key_ids))
                except KeyStoreError as exc:
                    self._db.execute("ROLLBACK TO take")
                    outcomes.append(exc)
                self._db.execute("RELEASE take")
        self._checkpoint()
        return outcomes

    def _take(self, caller_sae_id: str, master_sae_id: str, key_ids: Sequence[str]) -> list[QKDKey]:
        taken: list[QKDKey] = []
        for key_id in key_ids:
            row = self._db.execute(
                "SELECT master_sae_id, material FROM keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if row is None:
                raise KeyStoreError("unknown key ID", reason="unknown_key")
            slave = self._db.execute(
                "SELECT delivered FROM key_slaves WHERE key_id = ? AND sae_id = ?",
                (key_id, caller_sae_id),
            ).fetchone()
            if slave is None or row[0] != master_sae_id:
                raise KeyStoreError("caller not entitled to this key", reason="not_entitled")
            if slave[0]:
                raise KeyStoreError("key already delivered to this SAE", reason="unknown_key")
            self._db.execute(
                "UPDATE key_slaves SET delivered = 1 WHERE key_id = ? AND sae_id = ?",
                (key_id, caller_sae_id),
            )
            pending = self._db.execute(
                "SELECT COUNT(*) FROM key_slaves WHERE key_id = ? AND delivered = 0", (key_id,)
            ).fetchone()[0]
            if pending == 0:  # every slave has it: the key is gone from this end too
                self._db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
            taken.append(QKDKey(key_id, bytes(row[1])))
        return taken

    def _checkpoint(self) -> None:
        """Fold the WAL back into the database so freed key pages do not linger in it.

        A truncating checkpoint costs two fsyncs, more than the transaction itself, so it
        runs at most every ``_CHECKPOINT_INTERVAL`` seconds: delivered key stays in the WAL
        for about that long at most (while the KME runs; a restart checkpoints on open).
        """
        now = time.monotonic()
        if now - self._last_checkpoint < _CHECKPOINT_INTERVAL:
            return
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._last_checkpoint = now


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``/``ROLLBACK``: take the write lock up front."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
