"""PostgreSQL implementation of :class:`~notary.storage.base.Store`, shared by instances.

Several notary instances can point at one database: every instance takes envelopes, and
exactly one of them anchors. Why each guarantee holds:

* **Replay across instances.** ``accept`` runs in one transaction that first locks the
  device row (``SELECT ... FOR UPDATE``). Two instances accepting for the same device are
  serialised on that lock, and the second re-reads the row *after* the first committed
  (READ COMMITTED re-evaluates locked rows), so it sees the advanced sequence and refuses.
  Sequence check, attestation, outbox row and consumed keys commit together or not at all.
* **No record in two batches.** ``create_batch`` claims its members with
  ``FOR UPDATE SKIP LOCKED`` and only while they are still ``accepted``; a claim that does
  not get every member rolls back. Even two workers racing could only form disjoint batches.
* **One sender.** The anchoring worker asks :meth:`PostgresStore.hold_anchoring_lead`
  before each step: a session-level advisory lock held on a dedicated connection. Only
  its holder forms and sends batches, so one signing key never has two instances picking
  nonces at once. When the holder dies its session ends, PostgreSQL releases the lock, and
  another instance takes it within ``lead_retry_s``. A leader cut off from the database
  cannot know at once that it lost the lock; what it may still send in that window is a
  batch whose members are already fixed, which the contracts treat idempotently (see
  :mod:`notary.anchoring`).

Connections: a small async pool (psycopg 3) for the operations, opened lazily in the
running event loop, plus the one lock connection. The schema is created and migrated on
open under a transaction-scoped advisory lock, so instances starting together do not race.
Sequence numbers are unsigned 64-bit and stored as ``NUMERIC(20)``.

The database URL may carry a password; it is never logged or put in an exception message
(:func:`redact_url` gives the loggable form). Prefer ``PGPASSFILE``/``PGPASSWORD`` so the
password does not show up in a process list either.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from notary.attestation import approve
from notary.config import AnchorMode
from notary.errors import (
    DeviceExists,
    DeviceInactive,
    DeviceNotFound,
    InvalidTransition,
    StorageUnavailable,
    TokenNotFound,
)
from notary.logging import log_event
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

__all__ = ["SCHEMA_VERSION", "PostgresStore", "redact_url"]

log = logging.getLogger("notary.storage")

T = TypeVar("T")
Row = tuple[Any, ...]
Conn = psycopg.AsyncConnection[Row]


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


#: Session-level lock whose holder is the one instance that anchors.
LEAD_LOCK = _lock_key("qkd-notary/anchoring-lead")
#: Transaction-level lock taken while the schema is created or migrated.
MIGRATION_LOCK = _lock_key("qkd-notary/schema-migration")

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            sae_id TEXT NOT NULL,
            owner TEXT NOT NULL,
            approved_digest TEXT,
            current_digest TEXT,
            trusted BOOLEAN NOT NULL,
            active BOOLEAN NOT NULL,
            last_sequence NUMERIC(20, 0) CHECK (last_sequence BETWEEN 0 AND 18446744073709551615),
            registered_at DOUBLE PRECISION NOT NULL,
            attestation_count INTEGER NOT NULL DEFAULT 0,
            last_change_at DOUBLE PRECISION
        )""",
        """CREATE TABLE device_events (
            event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            device_id TEXT NOT NULL REFERENCES devices(device_id),
            kind TEXT NOT NULL,
            digest TEXT,
            at DOUBLE PRECISION NOT NULL,
            record_id TEXT,
            chain_tx_hash TEXT
        )""",
        "CREATE INDEX device_events_by_device ON device_events(device_id, event_id)",
        "CREATE INDEX device_events_unmirrored ON device_events(event_id)"
        " WHERE chain_tx_hash IS NULL",
        """CREATE TABLE batches (
            batch_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            mode TEXT NOT NULL,
            root TEXT,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            tx_hash TEXT,
            block_number BIGINT,
            block_hash TEXT,
            block_timestamp BIGINT,
            anchored_at DOUBLE PRECISION
        )""",
        "CREATE INDEX batches_unfinished ON batches(batch_id) WHERE status <> 'anchored'",
        """CREATE TABLE records (
            position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            record_id TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL REFERENCES devices(device_id),
            sequence NUMERIC(20, 0) NOT NULL CHECK (sequence BETWEEN 0 AND 18446744073709551615),
            key_ids TEXT[] NOT NULL,
            mode TEXT NOT NULL,
            payload BYTEA NOT NULL,
            payload_hash TEXT NOT NULL,
            salt BYTEA NOT NULL,
            firmware_digest TEXT NOT NULL,
            envelope_digest TEXT NOT NULL,
            sent_at_ms BIGINT NOT NULL,
            accepted_at DOUBLE PRECISION NOT NULL,
            device_trusted BOOLEAN NOT NULL,
            status TEXT NOT NULL,
            batch_id BIGINT REFERENCES batches(batch_id),
            leaf_index INTEGER
        )""",
        "CREATE INDEX records_pending ON records(position) WHERE status = 'accepted'",
        "CREATE INDEX records_unanchored ON records(position) WHERE status <> 'anchored'",
        "CREATE INDEX records_by_envelope ON records(envelope_digest)",
        "CREATE INDEX records_by_batch ON records(batch_id, leaf_index)",
        "CREATE INDEX records_by_device ON records(device_id, position)",
        """CREATE TABLE consumed_keys (
            key_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            record_id TEXT,
            consumed_at DOUBLE PRECISION NOT NULL
        )""",
    ),
    2: (
        "ALTER TABLE records ADD COLUMN key_path INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX batches_anchored ON batches(block_number, batch_id)"
        " WHERE status = 'anchored'",
        """CREATE TABLE access_tokens (
            token_id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            device_id TEXT REFERENCES devices(device_id),
            label TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION
        )""",
    ),
}
#: The schema version this build writes; a database at a newer version is refused.
SCHEMA_VERSION = max(_MIGRATIONS)

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
_BATCH_SELECT = (
    "SELECT b.batch_id, b.mode, b.root, b.status, b.created_at, b.tx_hash, b.block_number,"
    " b.block_hash, b.block_timestamp, b.anchored_at,"
    " ARRAY(SELECT r.record_id FROM records r WHERE r.batch_id = b.batch_id"
    " ORDER BY r.leaf_index) FROM batches b"
)
_EVENT_COLUMNS = "event_id, device_id, kind, digest, at, record_id, chain_tx_hash"

#: Attempts for a transaction that lost a serialisation or deadlock race.
_MAX_ATTEMPTS = 5


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (the form that may be logged)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _instance_name() -> str:
    """``application_name`` of our sessions: operators see which instance holds what."""
    return f"qkd-notary {socket.gethostname()}:{os.getpid()}"[:63]


class PostgresStore:
    """Notary state in PostgreSQL; several instances may share one database."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        acquire_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        lead_retry_s: float = 1.0,
    ) -> None:
        """Connect once to create or migrate the schema, then prepare the pool.

        Raises ``StorageUnavailable`` if the database cannot be reached or carries a
        schema newer than this build. The pool itself opens on first use, in the event
        loop that uses it.
        """
        self._conninfo = make_conninfo(
            url, connect_timeout=max(1, round(connect_timeout_s)), application_name=_instance_name()
        )
        self._display = redact_url(url)
        self._pool_size = pool_size
        self._acquire_timeout = acquire_timeout_s
        self._lead_retry = lead_retry_s
        _migrate(self._conninfo)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._pool_lock = asyncio.Lock()
        self._lead_lock = asyncio.Lock()
        self._lead_conn: Conn | None = None
        self._leading = False
        self._last_lead_try = float("-inf")
        self._closed = False

    @property
    def display_url(self) -> str:
        """The database URL without its password."""
        return self._display

    # -- plumbing --------------------------------------------------------------------
    async def _open_pool(self) -> AsyncConnectionPool[Conn]:
        """The pool, opened in the running loop on first use (again after a failed open:
        a pool that could not fill is closed for good)."""
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs={"autocommit": True},
                    # One round trip per checkout buys no 503s after a database restart
                    # or failover: a dead pooled connection is replaced, not handed out.
                    check=AsyncConnectionPool.check_connection,
                    open=False,
                    name="qkd-notary",
                )
                try:
                    await pool.open(wait=True, timeout=self._acquire_timeout)
                except PoolTimeout as exc:
                    raise StorageUnavailable("the database could not be reached") from exc
                self._pool = pool
            return self._pool

    async def _run(
        self, fn: Callable[[Conn], Awaitable[T]], *, write: bool, pipeline: bool = False
    ) -> T:
        """Run ``fn`` on a pooled connection (in one transaction if ``write``; with
        ``pipeline``, statements are queued until a result is fetched or the commit).

        A transaction that loses a deadlock or serialisation race is retried from the
        start; driver errors become ``StorageUnavailable``; ``NotaryError`` passes.
        """
        if self._closed:
            raise StorageUnavailable("store is closed")
        pool = await self._open_pool()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with pool.connection(timeout=self._acquire_timeout) as conn:
                    if not write:
                        return await fn(conn)
                    if pipeline:
                        async with conn.pipeline(), conn.transaction():
                            return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
            except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as exc:
                if attempt >= _MAX_ATTEMPTS:
                    raise StorageUnavailable("storage contention persisted") from exc
                await asyncio.sleep(random.uniform(0, 0.005 * attempt))
            except PoolTimeout as exc:
                raise StorageUnavailable("no database connection became free in time") from exc
            except psycopg.Error as exc:
                raise StorageUnavailable("storage operation failed") from exc

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self._run(fn, write=False)

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self._run(fn, write=True)

    async def _select(self, sql: str, params: Sequence[Any], row: Callable[[Row], T]) -> list[T]:
        """Every row of one read-only query, each turned into ``row(...)``."""

        async def query(conn: Conn) -> list[T]:
            cursor = await conn.execute(sql, params)
            return [row(r) for r in await cursor.fetchall()]

        return await self._read(query)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lead_lock:
            await self._drop_lead_connection()
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> None:
        async def probe(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO meta(key, value) VALUES ('last_ping', now()::text)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            )

        await self._write(probe)

    # -- anchoring lead ----------------------------------------------------------------
    async def hold_anchoring_lead(self) -> bool:
        """Whether this instance leads anchoring now (takes the lead when it is free).

        The leader proves on every call that its lock session is still alive (a lost
        session means a lost lock); other instances try to take the lock at most once
        per ``lead_retry_s``, on their own long-lived connection.
        """
        if self._closed:
            return False
        async with self._lead_lock:
            if self._leading and self._lead_conn is not None:
                try:
                    await self._lead_conn.execute("SELECT 1")
                    return True
                except psycopg.Error:
                    log_event(log, logging.WARNING, "anchoring lead lost: lock session ended")
                    await self._drop_lead_connection()
            now = time.monotonic()
            if now - self._last_lead_try < self._lead_retry:
                return False
            self._last_lead_try = now
            try:
                if self._lead_conn is None:
                    self._lead_conn = await _lock_session(self._conninfo)
                cursor = await self._lead_conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (LEAD_LOCK,)
                )
                row = await cursor.fetchone()
            except psycopg.Error:
                await self._drop_lead_connection()
                raise StorageUnavailable("the anchoring lead could not be checked") from None
            self._leading = bool(row and row[0])
            return self._leading

    async def lead_holder(self) -> str | None:
        """``application_name`` of the session holding the anchoring lead, if any."""

        async def query(conn: Conn) -> str | None:
            cursor = await conn.execute(
                "SELECT a.application_name FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                # A bigint key shows as its high (classid) and low (objid) 32 bits.
                " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                (LEAD_LOCK,),
            )
            row = await cursor.fetchone()
            return None if row is None else str(row[0])

        return await self._read(query)

    async def _drop_lead_connection(self) -> None:
        conn, self._lead_conn, self._leading = self._lead_conn, None, False
        if conn is not None:
            try:
                await conn.close()
            except psycopg.Error:
                log_event(log, logging.DEBUG, "lock session was already gone")

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
        async def job(conn: Conn) -> DeviceRow:
            cursor = await conn.execute(
                f"INSERT INTO devices({_DEVICE_COLUMNS})"
                " VALUES (%s, %s, %s, %s, NULL, false, true, NULL, %s, 0, NULL)"
                f" ON CONFLICT (device_id) DO NOTHING RETURNING {_DEVICE_COLUMNS}",
                (device_id, sae_id, owner, expected_digest, now),
            )
            row = await cursor.fetchone()
            if row is None:
                raise DeviceExists(f"device {device_id!r} is already registered")
            await _insert_event(
                conn, device_id, DeviceEventKind.REGISTERED, expected_digest, now, None
            )
            return _device(row)

        return await self._write(job)

    async def get_device(self, device_id: str) -> DeviceRow | None:
        return await self._read(lambda conn: _fetch_device(conn, device_id))

    async def list_devices(self) -> list[DeviceRow]:
        return await self._select(
            f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id", (), _device
        )

    async def approve_digest(self, device_id: str, digest: str, *, now: float) -> DeviceRow:
        async def job(conn: Conn) -> DeviceRow:
            device = await _lock_device(conn, device_id)
            if device is None:
                raise DeviceNotFound(f"no device {device_id!r}")
            if not device.active:
                raise DeviceInactive(f"device {device_id!r} is deactivated")
            trusted = approve(current_digest=device.current_digest, digest=digest)
            cursor = await conn.execute(
                "UPDATE devices SET approved_digest = %s, trusted = %s, last_change_at = %s"
                f" WHERE device_id = %s RETURNING {_DEVICE_COLUMNS}",
                (digest, trusted, now, device_id),
            )
            await _insert_event(conn, device_id, DeviceEventKind.APPROVED, digest, now, None)
            return _device(await _one(cursor))

        return await self._write(job)

    async def deactivate_device(self, device_id: str, *, now: float) -> DeviceRow:
        async def job(conn: Conn) -> DeviceRow:
            device = await _lock_device(conn, device_id)
            if device is None:
                raise DeviceNotFound(f"no device {device_id!r}")
            if not device.active:
                return device
            cursor = await conn.execute(
                "UPDATE devices SET active = false WHERE device_id = %s"
                f" RETURNING {_DEVICE_COLUMNS}",
                (device_id,),
            )
            await _insert_event(conn, device_id, DeviceEventKind.DEACTIVATED, None, now, None)
            return _device(await _one(cursor))

        return await self._write(job)

    async def device_events(self, device_id: str) -> list[DeviceEvent]:
        return await self._select(
            f"SELECT {_EVENT_COLUMNS} FROM device_events WHERE device_id = %s ORDER BY event_id",
            (device_id,),
            _event,
        )

    async def pending_device_events(self, limit: int) -> list[DeviceEvent]:
        return await self._select(
            f"SELECT {_EVENT_COLUMNS} FROM device_events WHERE chain_tx_hash IS NULL"
            " ORDER BY event_id LIMIT %s",
            (limit,),
            _event,
        )

    async def mark_event_mirrored(self, event_id: int, tx_hash: str) -> None:
        async def job(conn: Conn) -> None:
            await conn.execute(
                "UPDATE device_events SET chain_tx_hash = %s WHERE event_id = %s",
                (tx_hash, event_id),
            )

        await self._write(job)

    # -- intake ----------------------------------------------------------------------
    async def consumed_keys(self, key_ids: Sequence[str]) -> Mapping[str, ConsumedKey]:
        ids = list(key_ids)
        if not ids:
            return {}

        async def query(conn: Conn) -> dict[str, ConsumedKey]:
            cursor = await conn.execute(
                "SELECT key_id, device_id, record_id FROM consumed_keys WHERE key_id = ANY(%s)",
                (ids,),
            )
            return {row[0]: ConsumedKey(row[0], row[1], row[2]) for row in await cursor.fetchall()}

        return await self._read(query)

    async def intake_lookup(self, envelope_digest: str, key_ids: Sequence[str]) -> IntakeLookup:
        ids = list(key_ids)

        async def query(conn: Conn) -> IntakeLookup:
            # Both questions in one statement, so one round trip to the server.
            cursor = await conn.execute(
                "SELECT 'replay', record_id, NULL, NULL FROM"
                " (SELECT record_id FROM records WHERE envelope_digest = %s LIMIT 1) AS earlier"
                " UNION ALL"
                " SELECT 'key', key_id, device_id, record_id FROM consumed_keys"
                " WHERE key_id = ANY(%s)",
                (envelope_digest, ids),
            )
            replay_of = None
            consumed = {}
            for kind, first, device_id, record_id in await cursor.fetchall():
                if kind == "replay":
                    replay_of = str(first)
                else:
                    consumed[first] = ConsumedKey(first, device_id, record_id)
            return IntakeLookup(replay_of=replay_of, consumed=consumed)

        return await self._read(query)

    async def record_consumed_keys(
        self, device_id: str, key_ids: Sequence[str], *, now: float
    ) -> None:
        async def job(conn: Conn) -> None:
            await _insert_consumed(conn, device_id, key_ids, None, now)

        await self._write(job)

    async def accept(self, record: NewRecord) -> AcceptOutcome:
        async def job(conn: Conn) -> AcceptOutcome:
            # Pipelined: BEGIN and this lock go out together. The row lock serialises
            # every accept of this device, on every instance.
            cursor = await conn.execute(
                f"SELECT {_DEVICE_COLUMNS},"
                " EXISTS (SELECT 1 FROM records WHERE record_id = %s)"
                " FROM devices WHERE device_id = %s FOR UPDATE",
                (record.record_id, record.device_id),
            )
            row = await cursor.fetchone()
            device = None if row is None else _device(row)
            result = admit(device, record, already_recorded=row is not None and bool(row[-1]))
            changed = result.event is not None
            # Every write is queued first; the first fetch sends them in one round trip.
            device_cursor = await conn.execute(
                "UPDATE devices SET last_sequence = %s, approved_digest = %s,"
                " current_digest = %s, trusted = %s,"
                " attestation_count = attestation_count + %s,"
                " last_change_at = CASE WHEN %s THEN %s ELSE last_change_at END"
                f" WHERE device_id = %s RETURNING {_DEVICE_COLUMNS}",
                (
                    record.sequence,
                    result.approved_digest,
                    result.current_digest,
                    result.trusted,
                    int(changed),
                    changed,
                    record.accepted_at,
                    record.device_id,
                ),
            )
            event_cursor = None
            if result.event is not None:
                event_cursor = await _queue_event(
                    conn,
                    record.device_id,
                    result.event,
                    record.firmware_digest,
                    record.accepted_at,
                    record.record_id,
                )
            record_cursor = await conn.execute(
                f"INSERT INTO records({_RECORD_COLUMNS}) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s)"
                f" RETURNING {_RECORD_COLUMNS}",
                (
                    record.record_id,
                    record.device_id,
                    record.sequence,
                    list(record.key_ids),
                    record.mode,
                    record.payload,
                    record.payload_hash,
                    record.salt,
                    record.firmware_digest,
                    record.envelope_digest,
                    record.sent_at_ms,
                    record.accepted_at,
                    result.trusted,
                    RecordStatus.ACCEPTED.value,
                    record.key_path,
                ),
            )
            await _insert_consumed(
                conn, record.device_id, record.key_ids, record.record_id, record.accepted_at
            )
            return AcceptOutcome(
                record=_record(await _one(record_cursor)),
                device=_device(await _one(device_cursor)),
                event=None if event_cursor is None else _event(await _one(event_cursor)),
            )

        return await self._run(job, write=True, pipeline=True)

    # -- outbox and anchoring --------------------------------------------------------
    async def get_record(self, record_id: str) -> RecordRow | None:
        async def query(conn: Conn) -> RecordRow | None:
            cursor = await conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE record_id = %s", (record_id,)
            )
            row = await cursor.fetchone()
            return None if row is None else _record(row)

        return await self._read(query)

    async def outbox_depth(self) -> int:
        async def query(conn: Conn) -> int:
            cursor = await conn.execute(
                "SELECT count(*) FROM records WHERE status IN ('accepted', 'submitted')"
            )
            return int((await _one(cursor))[0])

        return await self._read(query)

    async def pending_records(self, limit: int) -> list[RecordRow]:
        return await self._select(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE status = 'accepted'"
            " ORDER BY position LIMIT %s",
            (limit,),
            _record,
        )

    async def unanchored_before(self, device_id: str, at: float) -> bool:
        found = await self._select(
            "SELECT 1 FROM records WHERE device_id = %s"
            " AND status IN ('accepted', 'submitted') AND accepted_at <= %s LIMIT 1",
            (device_id, at),
            lambda row: True,
        )
        return bool(found)

    # -- explorer listings (RecordBrowser) -------------------------------------------
    async def recent_records(self, limit: int, *, device_id: str | None = None) -> list[RecordRow]:
        if device_id is None:
            return await self._select(
                f"SELECT {_RECORD_COLUMNS} FROM records ORDER BY position DESC LIMIT %s",
                (limit,),
                _record,
            )
        return await self._select(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE device_id = %s"
            " ORDER BY position DESC LIMIT %s",
            (device_id, limit),
            _record,
        )

    async def accepted_times(self, since: float, limit: int) -> list[float]:
        return await self._select(
            "SELECT accepted_at FROM (SELECT accepted_at FROM records"
            " ORDER BY position DESC LIMIT %s) newest WHERE accepted_at >= %s",
            (limit, since),
            lambda r: float(r[0]),
        )

    async def hashes_with_prefix(self, prefix: str, limit: int) -> list[tuple[HashKind, str]]:
        low, high = hex_prefix_bounds(prefix)
        return await self._select(
            HASH_PREFIX_SQL, (low, high) * 4 + (limit,), lambda row: (row[0], row[1])
        )

    async def create_batch(
        self, mode: AnchorMode, record_ids: Sequence[str], root: str | None, *, now: float
    ) -> BatchRow:
        ids = list(record_ids)

        async def job(conn: Conn) -> BatchRow:
            # Claim the members: rows another transaction is claiming are skipped rather
            # than waited for, so a race ends at once in a refused, rolled-back batch.
            cursor = await conn.execute(
                "SELECT record_id FROM records WHERE record_id = ANY(%s) AND status = %s"
                " FOR UPDATE SKIP LOCKED",
                (ids, RecordStatus.ACCEPTED.value),
            )
            claimed = {row[0] for row in await cursor.fetchall()}
            missing = [record_id for record_id in ids if record_id not in claimed]
            if missing:
                raise InvalidTransition(f"record {missing[0]} is not waiting for a batch")
            cursor = await conn.execute(
                "INSERT INTO batches(mode, root, status, created_at) VALUES (%s, %s, %s, %s)"
                " RETURNING batch_id",
                (mode.value, root, BatchStatus.PENDING.value, now),
            )
            batch_id = int((await _one(cursor))[0])
            await conn.execute(
                "UPDATE records r SET status = %s, batch_id = %s, leaf_index = m.ord - 1"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS m(record_id, ord)"
                " WHERE r.record_id = m.record_id",
                (RecordStatus.SUBMITTED.value, batch_id, ids),
            )
            return await _require_batch(conn, batch_id)

        return await self._write(job)

    async def set_batch_sent(self, batch_id: int, tx_hash: str) -> None:
        async def job(conn: Conn) -> None:
            cursor = await conn.execute(
                "UPDATE batches SET status = %s, tx_hash = %s WHERE batch_id = %s AND status <> %s",
                (BatchStatus.SENT.value, tx_hash, batch_id, BatchStatus.ANCHORED.value),
            )
            if cursor.rowcount != 1:
                raise InvalidTransition(f"batch {batch_id} cannot be marked sent")

        await self._write(job)

    async def shrink_batch(self, batch_id: int, keep: int) -> BatchRow:
        async def job(conn: Conn) -> BatchRow:
            await conn.execute("SELECT 1 FROM batches WHERE batch_id = %s FOR UPDATE", (batch_id,))
            batch = await _require_batch(conn, batch_id)
            if batch.status is not BatchStatus.PENDING or batch.root is not None:
                raise InvalidTransition(f"batch {batch_id} can no longer change its members")
            if not 1 <= keep < len(batch.record_ids):
                raise InvalidTransition(f"cannot keep {keep} of {len(batch.record_ids)} records")
            await conn.execute(
                "UPDATE records SET status = %s, batch_id = NULL, leaf_index = NULL"
                " WHERE batch_id = %s AND leaf_index >= %s",
                (RecordStatus.ACCEPTED.value, batch_id, keep),
            )
            return await _require_batch(conn, batch_id)

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
        async def job(conn: Conn) -> None:
            cursor = await conn.execute(
                "UPDATE batches SET status = %s, tx_hash = %s, block_number = %s,"
                " block_hash = %s, block_timestamp = %s, anchored_at = %s"
                " WHERE batch_id = %s AND status <> %s",
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
            )
            if cursor.rowcount != 1:
                raise InvalidTransition(f"batch {batch_id} is unknown or already anchored")
            await conn.execute(
                "UPDATE records SET status = %s WHERE batch_id = %s",
                (RecordStatus.ANCHORED.value, batch_id),
            )
            async with conn.cursor() as many:
                await many.executemany(
                    "UPDATE records SET status = %s WHERE batch_id = %s AND record_id = %s",
                    [(status.value, batch_id, rid) for rid, status in (unrecorded or {}).items()],
                )

        await self._write(job)

    async def anchored_batches(self, *, from_block: int = 0) -> list[BatchRow]:
        return await self._select(
            f"{_BATCH_SELECT} WHERE b.status = %s AND b.block_number >= %s"
            " ORDER BY b.block_number, b.batch_id",
            (BatchStatus.ANCHORED.value, from_block),
            _batch,
        )

    async def latest_anchored_batch(self) -> BatchRow | None:
        found = await self._select(
            f"{_BATCH_SELECT} WHERE b.status = %s"
            " ORDER BY b.block_number DESC, b.batch_id DESC LIMIT 1",
            (BatchStatus.ANCHORED.value,),
            _batch,
        )
        return found[0] if found else None

    async def requeue_batches(
        self, batch_ids: Sequence[int], *, roots: Mapping[int, str] | None = None
    ) -> int:
        ids = list(batch_ids)
        new_roots = dict(roots or {})

        async def job(conn: Conn) -> int:
            touched = 0
            for batch_id in ids:
                cursor = await conn.execute(
                    "UPDATE batches SET status = %s, tx_hash = NULL, block_number = NULL,"
                    " block_hash = NULL, block_timestamp = NULL, anchored_at = NULL,"
                    " root = COALESCE(%s, root) WHERE batch_id = %s",
                    (BatchStatus.PENDING.value, new_roots.get(batch_id), batch_id),
                )
                if cursor.rowcount != 1:
                    raise InvalidTransition(f"batch {batch_id} does not exist")
                cursor = await conn.execute(
                    "UPDATE records SET status = %s WHERE batch_id = %s",
                    (RecordStatus.SUBMITTED.value, batch_id),
                )
                touched += cursor.rowcount
            return touched

        return await self._write(job)

    async def mirrored_device_events(self) -> list[DeviceEvent]:
        return await self._select(
            f"SELECT {_EVENT_COLUMNS} FROM device_events WHERE chain_tx_hash IS NOT NULL"
            " ORDER BY event_id",
            (),
            _event,
        )

    async def requeue_device_events(self, from_event_id: int) -> int:
        async def job(conn: Conn) -> int:
            cursor = await conn.execute(
                "UPDATE device_events SET chain_tx_hash = NULL"
                " WHERE event_id >= %s AND chain_tx_hash IS NOT NULL",
                (from_event_id,),
            )
            return cursor.rowcount

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
        async def job(conn: Conn) -> AccessTokenRow:
            if device_id is not None and await _fetch_device(conn, device_id) is None:
                raise DeviceNotFound(f"no device {device_id!r}")
            cursor = await conn.execute(
                f"INSERT INTO access_tokens({_TOKEN_COLUMNS})"
                f" VALUES (%s, %s, %s, %s, %s, %s, NULL) RETURNING {_TOKEN_COLUMNS}",
                (token_hash[:12], token_hash, role.value, device_id, label, now),
            )
            return AccessTokenRow.from_row(await _one(cursor))

        return await self._write(job)

    async def find_access_token(self, token_hash: str) -> AccessTokenRow | None:
        found = await self._select(
            f"SELECT {_TOKEN_COLUMNS} FROM access_tokens WHERE token_hash = %s",
            (token_hash,),
            AccessTokenRow.from_row,
        )
        return found[0] if found else None

    async def list_access_tokens(self) -> list[AccessTokenRow]:
        return await self._select(
            f"SELECT {_TOKEN_COLUMNS} FROM access_tokens ORDER BY created_at, token_id",
            (),
            AccessTokenRow.from_row,
        )

    async def revoke_access_token(self, token_id: str, *, now: float) -> AccessTokenRow:
        async def job(conn: Conn) -> AccessTokenRow:
            cursor = await conn.execute(
                "UPDATE access_tokens SET revoked_at = COALESCE(revoked_at, %s)"
                f" WHERE token_id = %s RETURNING {_TOKEN_COLUMNS}",
                (now, token_id),
            )
            row = await cursor.fetchone()
            if row is None:
                raise TokenNotFound(f"no access token {token_id!r}")
            return AccessTokenRow.from_row(row)

        return await self._write(job)

    async def unfinished_batches(self) -> list[BatchRow]:
        return await self._select(
            f"{_BATCH_SELECT} WHERE b.status <> %s ORDER BY b.batch_id",
            (BatchStatus.ANCHORED.value,),
            _batch,
        )

    async def get_batch(self, batch_id: int) -> BatchRow | None:
        return await self._read(lambda conn: _fetch_batch(conn, batch_id))

    async def batch_records(self, batch_id: int) -> list[RecordRow]:
        return await self._select(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE batch_id = %s ORDER BY leaf_index",
            (batch_id,),
            _record,
        )


# -- schema --------------------------------------------------------------------------------
def _migrate(conninfo: str) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (one transaction, serialised)."""
    try:
        with psycopg.connect(conninfo) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise StorageUnavailable(
                    f"the database schema is version {current}; this build knows up to"
                    f" {SCHEMA_VERSION}: upgrade the notary before pointing it here"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(version),),
                )
    except psycopg.Error as exc:
        # The driver's message names host and user, never the password; still keep it
        # out of our own message and leave it to the chained cause.
        raise StorageUnavailable("the PostgreSQL database could not be opened") from exc


async def _lock_session(conninfo: str) -> Conn:
    """The connection that holds the anchoring lead.

    Client keepalives notice a dead server; the server-side ones make PostgreSQL end this
    session (releasing the lock) within about 11 s when the leader's host vanishes without
    closing its socket. A killed process closes its socket, which releases the lock at once.
    """
    conn = await psycopg.AsyncConnection.connect(
        conninfo,
        autocommit=True,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    )
    for setting, value in (
        ("tcp_keepalives_idle", "5"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
    ):
        await conn.execute("SELECT set_config(%s, %s, false)", (setting, value))
    return conn


# -- row helpers -----------------------------------------------------------------------------
async def _one(cursor: psycopg.AsyncCursor[Row]) -> Row:
    row = await cursor.fetchone()
    if row is None:
        raise InvalidTransition("a row vanished inside its own transaction")
    return row


def _device(row: Sequence[Any]) -> DeviceRow:
    return DeviceRow(
        device_id=row[0],
        sae_id=row[1],
        owner=row[2],
        approved_digest=row[3],
        current_digest=row[4],
        trusted=bool(row[5]),
        active=bool(row[6]),
        last_sequence=None if row[7] is None else int(row[7]),
        registered_at=float(row[8]),
        attestation_count=int(row[9]),
        last_change_at=None if row[10] is None else float(row[10]),
    )


async def _fetch_device(conn: Conn, device_id: str) -> DeviceRow | None:
    cursor = await conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = %s", (device_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else _device(row)


async def _lock_device(conn: Conn, device_id: str) -> DeviceRow | None:
    cursor = await conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = %s FOR UPDATE", (device_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else _device(row)


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


async def _queue_event(
    conn: Conn,
    device_id: str,
    kind: DeviceEventKind,
    digest: str | None,
    at: float,
    record_id: str | None,
) -> psycopg.AsyncCursor[Row]:
    """Send (or, in pipeline mode, queue) a history entry; its row comes from the cursor."""
    return await conn.execute(
        "INSERT INTO device_events(device_id, kind, digest, at, record_id)"
        f" VALUES (%s, %s, %s, %s, %s) RETURNING {_EVENT_COLUMNS}",
        (device_id, kind.value, digest, at, record_id),
    )


async def _insert_event(
    conn: Conn,
    device_id: str,
    kind: DeviceEventKind,
    digest: str | None,
    at: float,
    record_id: str | None,
) -> DeviceEvent:
    return _event(await _one(await _queue_event(conn, device_id, kind, digest, at, record_id)))


async def _insert_consumed(
    conn: Conn, device_id: str, key_ids: Sequence[str], record_id: str | None, at: float
) -> None:
    # Sorted, so two transactions inserting overlapping key sets lock them in one order.
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO consumed_keys(key_id, device_id, record_id, consumed_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (key_id) DO NOTHING",
            [(key_id, device_id, record_id, at) for key_id in sorted(set(key_ids))],
        )


def _record(row: Sequence[Any]) -> RecordRow:
    return RecordRow(
        record_id=row[0],
        device_id=row[1],
        sequence=int(row[2]),
        key_ids=tuple(row[3]),
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
        batch_id=None if row[14] is None else int(row[14]),
        leaf_index=row[15],
        key_path=int(row[16]),
    )


def _batch(row: Sequence[Any]) -> BatchRow:
    return BatchRow(
        batch_id=int(row[0]),
        mode=AnchorMode(row[1]),
        record_ids=tuple(row[10]),
        root=row[2],
        status=BatchStatus(row[3]),
        created_at=float(row[4]),
        tx_hash=row[5],
        block_number=None if row[6] is None else int(row[6]),
        block_hash=row[7],
        block_timestamp=None if row[8] is None else int(row[8]),
        anchored_at=row[9],
    )


async def _fetch_batch(conn: Conn, batch_id: int) -> BatchRow | None:
    cursor = await conn.execute(f"{_BATCH_SELECT} WHERE b.batch_id = %s", (batch_id,))
    row = await cursor.fetchone()
    return None if row is None else _batch(row)


async def _require_batch(conn: Conn, batch_id: int) -> BatchRow:
    batch = await _fetch_batch(conn, batch_id)
    if batch is None:
        raise InvalidTransition(f"batch {batch_id} does not exist")
    return batch
