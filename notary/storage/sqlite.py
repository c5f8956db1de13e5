"""SQLite (WAL) implementation of :class:`~notary.storage.base.Store`.

Durability: WAL journal with ``synchronous=FULL``, so a committed transaction survives a
``kill -9`` and a power cut. To keep that affordable under load, all writes go through one
writer thread that *group-commits*: it takes every write waiting in its queue, runs each
inside its own SAVEPOINT (one refused envelope never aborts its neighbours) and commits them
with a single fsync. Callers await their own result, which is only delivered after the
commit, so "202 Accepted" always follows a durable write.

Reads use short-lived per-thread connections from a small pool; WAL lets them run while
the writer commits. Sequence numbers are unsigned 64-bit and stored as 16-digit hex text,
which SQLite's signed INTEGER could not hold.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from notary.attestation import approve
from notary.config import AnchorMode
from notary.errors import (
    DeviceExists,
    DeviceInactive,
    DeviceNotFound,
    InvalidTransition,
    NotaryError,
    StorageUnavailable,
    TokenNotFound,
)
from notary.storage.admission import admit
from notary.storage.base import (
    HASH_PREFIX_SQL,
    AcceptOutcome,
    AccessRole,
    AccessTokenRow,
    BatchRow,
    BatchStatus,
    ConsumedKey,
    DeviceEvent,
    DeviceEventKind,
    DeviceRow,
    HashKind,
    IntakeLookup,
    NewRecord,
    RecordRow,
    RecordStatus,
    hex_prefix_bounds,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    sae_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    approved_digest TEXT,
    current_digest TEXT,
    trusted INTEGER NOT NULL,
    active INTEGER NOT NULL,
    last_sequence TEXT,
    registered_at REAL NOT NULL,
    attestation_count INTEGER NOT NULL DEFAULT 0,
    last_change_at REAL
);
CREATE TABLE IF NOT EXISTS device_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices(device_id),
    kind TEXT NOT NULL,
    digest TEXT,
    at REAL NOT NULL,
    record_id TEXT,
    chain_tx_hash TEXT
);
CREATE INDEX IF NOT EXISTS device_events_by_device ON device_events(device_id, event_id);
CREATE INDEX IF NOT EXISTS device_events_unmirrored ON device_events(event_id)
    WHERE chain_tx_hash IS NULL;
CREATE TABLE IF NOT EXISTS records (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL REFERENCES devices(device_id),
    sequence TEXT NOT NULL,
    key_ids TEXT NOT NULL,
    mode TEXT NOT NULL,
    payload BLOB NOT NULL,
    payload_hash TEXT NOT NULL,
    salt BLOB NOT NULL,
    firmware_digest TEXT NOT NULL,
    envelope_digest TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    accepted_at REAL NOT NULL,
    device_trusted INTEGER NOT NULL,
    status TEXT NOT NULL,
    batch_id INTEGER REFERENCES batches(batch_id),
    leaf_index INTEGER,
    key_path INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_by_status ON records(status, position);
CREATE INDEX IF NOT EXISTS records_by_envelope ON records(envelope_digest);
CREATE INDEX IF NOT EXISTS records_by_batch ON records(batch_id, leaf_index);
CREATE INDEX IF NOT EXISTS records_by_device ON records(device_id, position);
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
    mode TEXT NOT NULL,
    root TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    tx_hash TEXT,
    block_number INTEGER,
    block_hash TEXT,
    block_timestamp INTEGER,
    anchored_at REAL
);
CREATE TABLE IF NOT EXISTS consumed_keys (
    key_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    record_id TEXT,
    consumed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS access_tokens (
    token_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    device_id TEXT,
    label TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""

#: Changes from one schema version to the next, for databases created by older builds
#: (``_SCHEMA`` already creates the newest tables for new ones).
_UPGRADES: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (
        (
            "records",
            "key_path",
            "ALTER TABLE records ADD COLUMN key_path INTEGER NOT NULL DEFAULT 0",
        ),
    ),
}
_BATCH_ORDER = "ORDER BY block_number, batch_id"

_DEVICE_COLUMNS = (
    "device_id, sae_id, owner, approved_digest, current_digest, trusted, active,"
    " last_sequence, registered_at, attestation_count, last_change_at"
)
_RECORD_COLUMNS = (
    "record_id, device_id, sequence, key_ids, mode, payload, payload_hash, salt,"
    " firmware_digest, envelope_digest, sent_at_ms, accepted_at, device_trusted, status,"
    " batch_id, leaf_index, key_path"
)
_TOKEN_COLUMNS = "token_id, token_hash, role, device_id, label, created_at, revoked_at"
_BATCH_COLUMNS = (
    "batch_id, mode, root, status, created_at, tx_hash, block_number, block_hash,"
    " block_timestamp, anchored_at"
)
_EVENT_COLUMNS = "event_id, device_id, kind, digest, at, record_id, chain_tx_hash"

_Job = tuple[Callable[[sqlite3.Connection], Any], concurrent.futures.Future[Any]]


def _consumed(conn: sqlite3.Connection, ids: list[str]) -> dict[str, ConsumedKey]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT key_id, device_id, record_id FROM consumed_keys WHERE key_id IN ({marks})", ids
    )
    return {row[0]: ConsumedKey(row[0], row[1], row[2]) for row in rows}


def _seq_text(sequence: int) -> str:
    return f"{sequence:016x}"


class SQLiteStore:
    """Notary state in one SQLite database file (WAL mode)."""

    def __init__(self, path: Path, *, max_group: int = 512, read_threads: int = 2) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._max_group = max_group
        self._writer_conn = self._connect()
        _migrate(self._writer_conn)
        self._writes: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        #: Transactions committed by the writer (each one fsync); fewer than writes under
        #: load, which is what group commit is for and what tests can observe.
        self.commits = 0
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=read_threads, thread_name_prefix="sqlite-reader"
        )
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    # -- plumbing --------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _write_loop(self) -> None:
        conn = self._writer_conn
        while True:
            first = self._writes.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < self._max_group:
                try:
                    nxt = self._writes.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            self._run_group(conn, jobs)
            if stop:
                return

    def _run_group(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Run ``jobs`` in one transaction; hand out results after COMMIT (and after
        counting it, so a caller that sees its answer also sees the commit counted). If
        the transaction fails, every job gets ``StorageUnavailable``."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _ in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, fn(conn)))
                    conn.execute("RELEASE job")
                except Exception as exc:  # handed to the awaiting caller
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StorageUnavailable("the outbox could not be written")
            failure.__cause__ = exc
            for _, fut in jobs:
                fut.set_exception(failure)
            return
        for (_, fut), (ok, value) in zip(jobs, outcomes, strict=True):
            if ok:
                fut.set_result(value)
            elif isinstance(value, NotaryError):
                fut.set_exception(value)
            else:
                failure = StorageUnavailable("storage operation failed")
                failure.__cause__ = value
                fut.set_exception(failure)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StorageUnavailable("store is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._writes.put((fn, fut))
        return await asyncio.wrap_future(fut)

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StorageUnavailable("store is closed")

        def run() -> T:
            try:
                return fn(self._reader_conn())
            except sqlite3.Error as exc:
                raise StorageUnavailable("storage read failed") from exc

        return await asyncio.wrap_future(self._readers.submit(run))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writes.put(None)
        await asyncio.to_thread(self._writer.join)
        self._readers.shutdown(wait=True)
        with self._read_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()
        self._writer_conn.close()

    async def ping(self) -> None:
        def probe(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_ping', datetime('now'))"
            )

        await self._write(probe)

    async def hold_anchoring_lead(self) -> bool:
        """Always: one SQLite file serves one notary instance, which anchors its outbox."""
        return True

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
        def job(conn: sqlite3.Connection) -> DeviceRow:
            if _fetch_device(conn, device_id) is not None:
                raise DeviceExists(f"device {device_id!r} is already registered")
            conn.execute(
                f"INSERT INTO devices({_DEVICE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (device_id, sae_id, owner, expected_digest, None, 0, 1, None, now, 0, None),
            )
            _insert_event(conn, device_id, DeviceEventKind.REGISTERED, expected_digest, now, None)
            return _require_device(conn, device_id)

        return await self._write(job)

    async def get_device(self, device_id: str) -> DeviceRow | None:
        return await self._read(lambda conn: _fetch_device(conn, device_id))

    async def list_devices(self) -> list[DeviceRow]:
        def query(conn: sqlite3.Connection) -> list[DeviceRow]:
            rows = conn.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id")
            return [_device(row) for row in rows]

        return await self._read(query)

    async def approve_digest(self, device_id: str, digest: str, *, now: float) -> DeviceRow:
        def job(conn: sqlite3.Connection) -> DeviceRow:
            device = _require_device(conn, device_id)
            if not device.active:
                raise DeviceInactive(f"device {device_id!r} is deactivated")
            trusted = approve(current_digest=device.current_digest, digest=digest)
            conn.execute(
                "UPDATE devices SET approved_digest = ?, trusted = ?, last_change_at = ?"
                " WHERE device_id = ?",
                (digest, int(trusted), now, device_id),
            )
            _insert_event(conn, device_id, DeviceEventKind.APPROVED, digest, now, None)
            return _require_device(conn, device_id)

        return await self._write(job)

    async def deactivate_device(self, device_id: str, *, now: float) -> DeviceRow:
        def job(conn: sqlite3.Connection) -> DeviceRow:
            device = _require_device(conn, device_id)
            if device.active:
                conn.execute("UPDATE devices SET active = 0 WHERE device_id = ?", (device_id,))
                _insert_event(conn, device_id, DeviceEventKind.DEACTIVATED, None, now, None)
            return _require_device(conn, device_id)

        return await self._write(job)

    async def device_events(self, device_id: str) -> list[DeviceEvent]:
        def query(conn: sqlite3.Connection) -> list[DeviceEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM device_events WHERE device_id = ? ORDER BY event_id",
                (device_id,),
            )
            return [_event(row) for row in rows]

        return await self._read(query)

    async def pending_device_events(self, limit: int) -> list[DeviceEvent]:
        def query(conn: sqlite3.Connection) -> list[DeviceEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM device_events WHERE chain_tx_hash IS NULL"
                " ORDER BY event_id LIMIT ?",
                (limit,),
            )
            return [_event(row) for row in rows]

        return await self._read(query)

    async def mark_event_mirrored(self, event_id: int, tx_hash: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE device_events SET chain_tx_hash = ? WHERE event_id = ?",
                (tx_hash, event_id),
            )

        await self._write(job)

    # -- intake ----------------------------------------------------------------------
    async def consumed_keys(self, key_ids: Sequence[str]) -> Mapping[str, ConsumedKey]:
        ids = list(key_ids)
        if not ids:
            return {}
        return await self._read(lambda conn: _consumed(conn, ids))

    async def intake_lookup(self, envelope_digest: str, key_ids: Sequence[str]) -> IntakeLookup:
        ids = list(key_ids)

        def query(conn: sqlite3.Connection) -> IntakeLookup:
            # One hop to a reader thread for both questions: under load the hop (executor,
            # wake-up of the event loop) costs more than the two indexed lookups.
            row = conn.execute(
                "SELECT record_id FROM records WHERE envelope_digest = ? LIMIT 1",
                (envelope_digest,),
            ).fetchone()
            return IntakeLookup(
                replay_of=None if row is None else str(row[0]),
                consumed=_consumed(conn, ids) if ids else {},
            )

        return await self._read(query)

    async def record_consumed_keys(
        self, device_id: str, key_ids: Sequence[str], *, now: float
    ) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO consumed_keys(key_id, device_id, record_id, consumed_at)"
                " VALUES (?, ?, NULL, ?)",
                [(key_id, device_id, now) for key_id in key_ids],
            )

        await self._write(job)

    async def accept(self, record: NewRecord) -> AcceptOutcome:
        def job(conn: sqlite3.Connection) -> AcceptOutcome:
            device = _fetch_device(conn, record.device_id)
            recorded = conn.execute(
                "SELECT 1 FROM records WHERE record_id = ?", (record.record_id,)
            ).fetchone()
            result = admit(device, record, already_recorded=recorded is not None)
            changed = result.event is not None
            conn.execute(
                "UPDATE devices SET last_sequence = ?, approved_digest = ?, current_digest = ?,"
                " trusted = ?, attestation_count = attestation_count + ?,"
                " last_change_at = CASE WHEN ? THEN ? ELSE last_change_at END"
                " WHERE device_id = ?",
                (
                    _seq_text(record.sequence),
                    result.approved_digest,
                    result.current_digest,
                    int(result.trusted),
                    int(changed),
                    int(changed),
                    record.accepted_at,
                    record.device_id,
                ),
            )
            event = None
            if result.event is not None:
                event = _insert_event(
                    conn,
                    record.device_id,
                    result.event,
                    record.firmware_digest,
                    record.accepted_at,
                    record.record_id,
                )
            conn.execute(
                f"INSERT INTO records({_RECORD_COLUMNS}) VALUES ({','.join('?' * 17)})",
                (
                    record.record_id,
                    record.device_id,
                    _seq_text(record.sequence),
                    json.dumps(list(record.key_ids)),
                    record.mode,
                    record.payload,
                    record.payload_hash,
                    record.salt,
                    record.firmware_digest,
                    record.envelope_digest,
                    record.sent_at_ms,
                    record.accepted_at,
                    int(result.trusted),
                    RecordStatus.ACCEPTED.value,
                    None,
                    None,
                    record.key_path,
                ),
            )
            conn.executemany(
                "INSERT INTO consumed_keys(key_id, device_id, record_id, consumed_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(key_id) DO NOTHING",
                [
                    (key_id, record.device_id, record.record_id, record.accepted_at)
                    for key_id in record.key_ids
                ],
            )
            return AcceptOutcome(
                record=_require_record(conn, record.record_id),
                device=_require_device(conn, record.device_id),
                event=event,
            )

        return await self._write(job)

    # -- outbox and anchoring --------------------------------------------------------
    async def get_record(self, record_id: str) -> RecordRow | None:
        return await self._read(lambda conn: _fetch_record(conn, record_id))

    async def outbox_depth(self) -> int:
        def query(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COUNT(*) FROM records WHERE status IN (?, ?)",
                (RecordStatus.ACCEPTED.value, RecordStatus.SUBMITTED.value),
            ).fetchone()
            return int(row[0])

        return await self._read(query)

    async def pending_records(self, limit: int) -> list[RecordRow]:
        def query(conn: sqlite3.Connection) -> list[RecordRow]:
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE status = ? ORDER BY position LIMIT ?",
                (RecordStatus.ACCEPTED.value, limit),
            )
            return [_record(row) for row in rows]

        return await self._read(query)

    async def unanchored_before(self, device_id: str, at: float) -> bool:
        def query(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM records WHERE device_id = ? AND status IN (?, ?)"
                " AND accepted_at <= ? LIMIT 1",
                (device_id, RecordStatus.ACCEPTED.value, RecordStatus.SUBMITTED.value, at),
            ).fetchone()
            return row is not None

        return await self._read(query)

    async def recent_records(self, limit: int, *, device_id: str | None = None) -> list[RecordRow]:
        def query(conn: sqlite3.Connection) -> list[RecordRow]:
            if device_id is None:
                sql = f"SELECT {_RECORD_COLUMNS} FROM records ORDER BY position DESC LIMIT ?"
                return [_record(row) for row in conn.execute(sql, (limit,))]
            sql = (
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE device_id = ?"
                " ORDER BY position DESC LIMIT ?"
            )
            return [_record(row) for row in conn.execute(sql, (device_id, limit))]

        return await self._read(query)

    async def accepted_times(self, since: float, limit: int) -> list[float]:
        def query(conn: sqlite3.Connection) -> list[float]:
            # Walk back from the newest row (rowid order, no index needed) at most `limit`.
            rows = conn.execute(
                "SELECT accepted_at FROM (SELECT accepted_at FROM records"
                " ORDER BY position DESC LIMIT ?) WHERE accepted_at >= ?",
                (limit, since),
            )
            return [float(row[0]) for row in rows]

        return await self._read(query)

    async def hashes_with_prefix(self, prefix: str, limit: int) -> list[tuple[HashKind, str]]:
        low, high = hex_prefix_bounds(prefix)

        def query(conn: sqlite3.Connection) -> list[tuple[HashKind, str]]:
            rows = conn.execute(HASH_PREFIX_SQL.replace("%s", "?"), (low, high) * 4 + (limit,))
            return [(row[0], row[1]) for row in rows]

        return await self._read(query)

    async def create_batch(
        self, mode: AnchorMode, record_ids: Sequence[str], root: str | None, *, now: float
    ) -> BatchRow:
        ids = list(record_ids)

        def job(conn: sqlite3.Connection) -> BatchRow:
            cursor = conn.execute(
                "INSERT INTO batches(mode, root, status, created_at) VALUES (?, ?, ?, ?)",
                (mode.value, root, BatchStatus.PENDING.value, now),
            )
            batch_id = int(cursor.lastrowid or 0)
            for index, record_id in enumerate(ids):
                updated = conn.execute(
                    "UPDATE records SET status = ?, batch_id = ?, leaf_index = ?"
                    " WHERE record_id = ? AND status = ?",
                    (
                        RecordStatus.SUBMITTED.value,
                        batch_id,
                        index,
                        record_id,
                        RecordStatus.ACCEPTED.value,
                    ),
                ).rowcount
                if updated != 1:
                    raise InvalidTransition(f"record {record_id} is not waiting for a batch")
            return _require_batch(conn, batch_id)

        return await self._write(job)

    async def set_batch_sent(self, batch_id: int, tx_hash: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE batches SET status = ?, tx_hash = ? WHERE batch_id = ? AND status != ?",
                (BatchStatus.SENT.value, tx_hash, batch_id, BatchStatus.ANCHORED.value),
            ).rowcount
            if updated != 1:
                raise InvalidTransition(f"batch {batch_id} cannot be marked sent")

        await self._write(job)

    async def shrink_batch(self, batch_id: int, keep: int) -> BatchRow:
        def job(conn: sqlite3.Connection) -> BatchRow:
            batch = _require_batch(conn, batch_id)
            if batch.status is not BatchStatus.PENDING or batch.root is not None:
                raise InvalidTransition(f"batch {batch_id} can no longer change its members")
            if not 1 <= keep < len(batch.record_ids):
                raise InvalidTransition(f"cannot keep {keep} of {len(batch.record_ids)} records")
            conn.execute(
                "UPDATE records SET status = ?, batch_id = NULL, leaf_index = NULL"
                " WHERE batch_id = ? AND leaf_index >= ?",
                (RecordStatus.ACCEPTED.value, batch_id, keep),
            )
            return _require_batch(conn, batch_id)

        return await self._write(job)

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
        def job(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE batches SET status = ?, tx_hash = ?, block_number = ?, block_hash = ?,"
                " block_timestamp = ?, anchored_at = ? WHERE batch_id = ? AND status != ?",
                (
                    BatchStatus.ANCHORED.value,
                    tx_hash,
                    block_number,
                    block_hash,
                    block_timestamp,
                    now,
                    batch_id,
                    BatchStatus.ANCHORED.value,
                ),
            ).rowcount
            if updated != 1:
                raise InvalidTransition(f"batch {batch_id} is unknown or already anchored")
            conn.execute(
                "UPDATE records SET status = ? WHERE batch_id = ?",
                (RecordStatus.ANCHORED.value, batch_id),
            )
            conn.executemany(
                "UPDATE records SET status = ? WHERE batch_id = ? AND record_id = ?",
                [(status.value, batch_id, rid) for rid, status in (unrecorded or {}).items()],
            )

        await self._write(job)

    async def anchored_batches(self, *, from_block: int = 0) -> list[BatchRow]:
        def query(conn: sqlite3.Connection) -> list[BatchRow]:
            rows = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE status = ? AND block_number >= ?"
                f" {_BATCH_ORDER}",
                (BatchStatus.ANCHORED.value, from_block),
            ).fetchall()
            return [_batch(conn, row) for row in rows]

        return await self._read(query)

    async def latest_anchored_batch(self) -> BatchRow | None:
        def query(conn: sqlite3.Connection) -> BatchRow | None:
            row = conn.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE status = ?"
                " ORDER BY block_number DESC, batch_id DESC LIMIT 1",
                (BatchStatus.ANCHORED.value,),
            ).fetchone()
            return None if row is None else _batch(conn, row)

        return await self._read(query)

    async def requeue_batches(
        self, batch_ids: Sequence[int], *, roots: Mapping[int, str] | None = None
    ) -> int:
        ids = list(batch_ids)
        new_roots = dict(roots or {})

        def job(conn: sqlite3.Connection) -> int:
            touched = 0
            for batch_id in ids:
                _require_batch(conn, batch_id)
                conn.execute(
                    "UPDATE batches SET status = ?, tx_hash = NULL, block_number = NULL,"
                    " block_hash = NULL, block_timestamp = NULL, anchored_at = NULL,"
                    " root = COALESCE(?, root) WHERE batch_id = ?",
                    (BatchStatus.PENDING.value, new_roots.get(batch_id), batch_id),
                )
                touched += conn.execute(
                    "UPDATE records SET status = ? WHERE batch_id = ?",
                    (RecordStatus.SUBMITTED.value, batch_id),
                ).rowcount
            return touched

        return await self._write(job)

    async def mirrored_device_events(self) -> list[DeviceEvent]:
        def query(conn: sqlite3.Connection) -> list[DeviceEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM device_events WHERE chain_tx_hash IS NOT NULL"
                " ORDER BY event_id"
            )
            return [_event(row) for row in rows]

        return await self._read(query)

    async def requeue_device_events(self, from_event_id: int) -> int:
        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE device_events SET chain_tx_hash = NULL"
                " WHERE event_id >= ? AND chain_tx_hash IS NOT NULL",
                (from_event_id,),
            ).rowcount

        return await self._write(job)

    # -- access tokens ---------------------------------------------------------------
    async def create_access_token(
        self,
        token_hash: str,
        *,
        role: AccessRole,
        device_id: str | None,
        label: str,
        now: float,
    ) -> AccessTokenRow:
        def job(conn: sqlite3.Connection) -> AccessTokenRow:
            if device_id is not None:
                _require_device(conn, device_id)
            conn.execute(
                f"INSERT INTO access_tokens({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,NULL)",
                (token_hash[:12], token_hash, role.value, device_id, label, now),
            )
            return _require_token(conn, token_hash[:12])

        return await self._write(job)

    async def find_access_token(self, token_hash: str) -> AccessTokenRow | None:
        def query(conn: sqlite3.Connection) -> AccessTokenRow | None:
            row = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM access_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            return None if row is None else AccessTokenRow.from_row(row)

        return await self._read(query)

    async def list_access_tokens(self) -> list[AccessTokenRow]:
        def query(conn: sqlite3.Connection) -> list[AccessTokenRow]:
            rows = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM access_tokens ORDER BY created_at, token_id"
            )
            return [AccessTokenRow.from_row(row) for row in rows]

        return await self._read(query)

    async def revoke_access_token(self, token_id: str, *, now: float) -> AccessTokenRow:
        def job(conn: sqlite3.Connection) -> AccessTokenRow:
            _require_token(conn, token_id)
            conn.execute(
                "UPDATE access_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE token_id = ?",
                (now, token_id),
            )
            return _require_token(conn, token_id)

        return await self._write(job)

    async def unfinished_batches(self) -> list[BatchRow]:
        def query(conn: sqlite3.Connection) -> list[BatchRow]:
            rows = conn.execute(
                "SELECT batch_id FROM batches WHERE status != ? ORDER BY batch_id",
                (BatchStatus.ANCHORED.value,),
            ).fetchall()
            return [_require_batch(conn, int(row[0])) for row in rows]

        return await self._read(query)

    async def get_batch(self, batch_id: int) -> BatchRow | None:
        return await self._read(lambda conn: _fetch_batch(conn, batch_id))

    async def batch_records(self, batch_id: int) -> list[RecordRow]:
        def query(conn: sqlite3.Connection) -> list[RecordRow]:
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE batch_id = ? ORDER BY leaf_index",
                (batch_id,),
            )
            return [_record(row) for row in rows]

        return await self._read(query)


# -- schema ------------------------------------------------------------------------------
def _migrate(conn: sqlite3.Connection) -> None:
    """Create the newest schema, or bring an older database up to it.

    Each upgrade step is idempotent (it checks before it alters), so a crash between a
    step and the version bump is finished by the next start.
    """
    row = None
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    current = SCHEMA_VERSION if row is None else int(row[0])
    if current > SCHEMA_VERSION:
        raise StorageUnavailable(
            f"the database schema is version {current}; this build knows up to"
            f" {SCHEMA_VERSION}: upgrade the notary before pointing it here"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for table, column, statement in _UPGRADES[version]:
            columns = {info[1] for info in conn.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                conn.execute(statement)
    conn.executescript(_SCHEMA)
    conn.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )


# -- row helpers (run inside the reader or writer thread) --------------------------------
def _require_token(conn: sqlite3.Connection, token_id: str) -> AccessTokenRow:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM access_tokens WHERE token_id = ?", (token_id,)
    ).fetchone()
    if row is None:
        raise TokenNotFound(f"no access token {token_id!r}")
    return AccessTokenRow.from_row(row)


def _device(row: Sequence[Any]) -> DeviceRow:
    return DeviceRow(
        device_id=row[0],
        sae_id=row[1],
        owner=row[2],
        approved_digest=row[3],
        current_digest=row[4],
        trusted=bool(row[5]),
        active=bool(row[6]),
        last_sequence=None if row[7] is None else int(row[7], 16),
        registered_at=float(row[8]),
        attestation_count=int(row[9]),
        last_change_at=None if row[10] is None else float(row[10]),
    )


def _fetch_device(conn: sqlite3.Connection, device_id: str) -> DeviceRow | None:
    row = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", (device_id,)
    ).fetchone()
    return None if row is None else _device(row)


def _require_device(conn: sqlite3.Connection, device_id: str) -> DeviceRow:
    device = _fetch_device(conn, device_id)
    if device is None:
        raise DeviceNotFound(f"no device {device_id!r}")
    return device


def _event(row: Sequence[Any]) -> DeviceEvent:
    return DeviceEvent(
        event_id=int(row[0]),
        device_id=row[1],
        kind=DeviceEventKind(row[2]),
        digest=row[3],
        at=float(row[4]),
        record_id=row[5],
        chain_tx_hash=row[6],
    )


def _insert_event(
    conn: sqlite3.Connection,
    device_id: str,
    kind: DeviceEventKind,
    digest: str | None,
    at: float,
    record_id: str | None,
) -> DeviceEvent:
    cursor = conn.execute(
        "INSERT INTO device_events(device_id, kind, digest, at, record_id) VALUES (?,?,?,?,?)",
        (device_id, kind.value, digest, at, record_id),
    )
    return DeviceEvent(int(cursor.lastrowid or 0), device_id, kind, digest, at, record_id, None)


def _record(row: Sequence[Any]) -> RecordRow:
    return RecordRow(
        record_id=row[0],
        device_id=row[1],
        sequence=int(row[2], 16),
        key_ids=tuple(json.loads(row[3])),
        mode=row[4],
        payload=bytes(row[5]),
        payload_hash=row[6],
        salt=bytes(row[7]),
        firmware_digest=row[8],
        envelope_digest=row[9],
        sent_at_ms=int(row[10]),
        accepted_at=float(row[11]),
        device_trusted=bool(row[12]),
        status=RecordStatus(row[13]),
        batch_id=row[14],
        leaf_index=row[15],
        key_path=int(row[16]),
    )


def _fetch_record(conn: sqlite3.Connection, record_id: str) -> RecordRow | None:
    row = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM records WHERE record_id = ?", (record_id,)
    ).fetchone()
    return None if row is None else _record(row)


def _require_record(conn: sqlite3.Connection, record_id: str) -> RecordRow:
    record = _fetch_record(conn, record_id)
    if record is None:
        raise InvalidTransition(f"record {record_id} vanished inside its own transaction")
    return record


def _batch(conn: sqlite3.Connection, row: Sequence[Any]) -> BatchRow:
    ids = conn.execute(
        "SELECT record_id FROM records WHERE batch_id = ? ORDER BY leaf_index", (row[0],)
    ).fetchall()
    return BatchRow(
        batch_id=int(row[0]),
        mode=AnchorMode(row[1]),
        record_ids=tuple(str(r[0]) for r in ids),
        root=row[2],
        status=BatchStatus(row[3]),
        created_at=float(row[4]),
        tx_hash=row[5],
        block_number=row[6],
        block_hash=row[7],
        block_timestamp=row[8],
        anchored_at=row[9],
    )


def _fetch_batch(conn: sqlite3.Connection, batch_id: int) -> BatchRow | None:
    row = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)
    ).fetchone()
    return None if row is None else _batch(conn, row)


def _require_batch(conn: sqlite3.Connection, batch_id: int) -> BatchRow:
    batch = _fetch_batch(conn, batch_id)
    if batch is None:
        raise InvalidTransition(f"batch {batch_id} does not exist")
    return batch
