"""The Store contract, held against both backends (SQLite and a real PostgreSQL): atomic
accept, concurrent accepts, outbox lifecycle, and durability of every acknowledged write
across a kill -9 of the writing process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from notary.config import AnchorMode
from notary.errors import (
    AuthenticationFailed,
    DeviceExists,
    DeviceNotFound,
    InvalidTransition,
    ReplayDetected,
    TokenNotFound,
)
from notary.storage.base import (
    AccessRole,
    BatchStatus,
    NewRecord,
    RecordBrowser,
    RecordStatus,
    Store,
)
from notary.storage.postgres import PostgresStore
from notary.storage.sqlite import SQLiteStore
from notary.telemetry import record_id
from tests.notary.postgres_server import PostgresServer
from tests.notary.records import KEY_PATH

DIGEST = "c" * 64


_keys = iter(range(1, 1 << 40))


def new_record(
    device_id: str, sequence: int, *, digest: str = DIGEST, accepted_at: float = 1.0
) -> NewRecord:
    key_id = f"00000000-0000-4000-8000-{next(_keys):012x}"
    return NewRecord(
        record_id=record_id(device_id, sequence, [key_id]),
        device_id=device_id,
        sequence=sequence,
        key_ids=(key_id,),
        mode="otp",
        payload=b"{}",
        payload_hash="0x" + "11" * 32,
        salt=b"\x22" * 32,
        firmware_digest=digest,
        envelope_digest=f"{device_id}-{sequence}",
        sent_at_ms=0,
        accepted_at=accepted_at,
        key_path=KEY_PATH.code,
    )


#: What a backend is reached by: a SQLite file path or a PostgreSQL URL.
Location = str


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Location]:
    """Where a fresh database of the parametrised backend lives."""
    if request.param == "sqlite":
        yield str(tmp_path / "n.sqlite3")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database() as url:
        yield url


def open_at(location: Location) -> Store:
    """A store (re)opened on ``location``."""
    if location.startswith("postgresql://"):
        return PostgresStore(location)
    return SQLiteStore(Path(location))


@pytest.fixture
def opener(location: Location) -> Callable[[], Store]:
    return lambda: open_at(location)


@pytest.fixture
async def store(opener: Callable[[], Store]) -> AsyncIterator[Store]:
    s = opener()
    await s.create_device("d1", sae_id="sae-1", owner="", expected_digest=None, now=0.0)
    try:
        yield s
    finally:
        await s.aclose()


async def test_state_survives_reopen(opener: Callable[[], Store]) -> None:
    first = opener()
    await first.create_device("d1", sae_id="s", owner="o", expected_digest=None, now=0.0)
    outcome = await first.accept(new_record("d1", 7))
    await first.aclose()
    again = opener()
    try:
        row = await again.get_record(outcome.record.record_id)
        assert row is not None and row.sequence == 7 and row.status is RecordStatus.ACCEPTED
        device = await again.get_device("d1")
        assert device is not None and device.last_sequence == 7
    finally:
        await again.aclose()


async def test_duplicate_device_is_refused(store: Store) -> None:
    with pytest.raises(DeviceExists):
        await store.create_device("d1", sae_id="x", owner="", expected_digest=None, now=1.0)


async def test_refused_accept_writes_nothing(store: Store) -> None:
    await store.accept(new_record("d1", 5))
    stale = new_record("d1", 5, digest="d" * 64)
    with pytest.raises(ReplayDetected):
        await store.accept(stale)
    assert await store.consumed_keys(stale.key_ids) == {}
    device = await store.get_device("d1")
    assert device is not None and device.current_digest == DIGEST  # attestation untouched
    assert len(await store.device_events("d1")) == 2  # registered + first-digest only
    with pytest.raises(AuthenticationFailed):
        await store.accept(new_record("nobody", 1))


async def test_intake_lookup_answers_replay_and_consumed_keys_at_once(store: Store) -> None:
    accepted = await store.accept(new_record("d1", 3))
    refused = new_record("d1", 4)
    await store.record_consumed_keys("d1", refused.key_ids, now=2.0)
    fresh = new_record("d1", 5)
    names = (*accepted.record.key_ids, *refused.key_ids, *fresh.key_ids)

    replay = await store.intake_lookup(accepted.record.envelope_digest, names)
    assert replay.replay_of == accepted.record.record_id
    assert set(replay.consumed) == {*accepted.record.key_ids, *refused.key_ids}
    (used,) = accepted.record.key_ids
    assert replay.consumed[used].record_id == accepted.record.record_id
    assert replay.consumed[refused.key_ids[0]].record_id is None
    assert replay.consumed[used].device_id == "d1"

    new = await store.intake_lookup(fresh.envelope_digest, fresh.key_ids)
    assert new.replay_of is None and dict(new.consumed) == {}
    assert (await store.intake_lookup("no-such-digest", ())).consumed == {}


async def test_full_64_bit_sequences_are_ordered(store: Store) -> None:
    await store.accept(new_record("d1", 2**63 + 5))
    with pytest.raises(ReplayDetected):
        await store.accept(new_record("d1", 2**62))
    top = await store.accept(new_record("d1", 2**64 - 1))
    assert top.device.last_sequence == 2**64 - 1


async def test_concurrent_accepts_all_land(store: Store) -> None:
    # SQLite group-commits these; PostgreSQL runs them on parallel connections. Calls in
    # flight together have no order, so each device has one per round.
    await asyncio.gather(
        *(
            store.create_device(f"g{i}", sae_id="s", owner="", expected_digest=None, now=0.0)
            for i in range(100)
        )
    )
    outcomes = []
    for sequence in (1, 2):
        records = [new_record(f"g{i}", sequence) for i in range(100)]
        outcomes += await asyncio.gather(*(store.accept(r) for r in records))
    assert len({o.record.record_id for o in outcomes}) == 200
    assert await store.outbox_depth() == 200
    assert {o.device.last_sequence for o in outcomes[100:]} == {2}
    # A refused job in the same group does not abort its neighbours.
    mixed = [new_record("g0", 10), new_record("g1", 1), new_record("g2", 11)]
    results = await asyncio.gather(*(store.accept(r) for r in mixed), return_exceptions=True)
    assert isinstance(results[1], ReplayDetected)
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)


async def test_outbox_lifecycle_and_illegal_transitions(store: Store) -> None:
    ids = [(await store.accept(new_record("d1", s))).record.record_id for s in (1, 2, 3)]
    pending = await store.pending_records(10)
    assert [r.record_id for r in pending] == ids
    batch = await store.create_batch(AnchorMode.MERKLE, ids[:2], "0x" + "ab" * 32, now=2.0)
    assert batch.record_ids == tuple(ids[:2]) and batch.status is BatchStatus.PENDING
    with pytest.raises(InvalidTransition):
        await store.create_batch(AnchorMode.MERKLE, ids[1:], None, now=2.0)
    # The failed batch left no trace: record 3 is still waiting.
    assert [r.record_id for r in await store.pending_records(10)] == ids[2:]
    await store.set_batch_sent(batch.batch_id, "0x" + "cd" * 32)
    assert [b.batch_id for b in await store.unfinished_batches()] == [batch.batch_id]
    await store.mark_batch_anchored(
        batch.batch_id,
        tx_hash="0x" + "cd" * 32,
        block_number=9,
        block_hash="0x" + "ef" * 32,
        block_timestamp=1_700_000_000,
        now=3.0,
    )
    with pytest.raises(InvalidTransition):
        await store.mark_batch_anchored(
            batch.batch_id,
            tx_hash="0x",
            block_number=1,
            block_hash="0x",
            block_timestamp=0,
            now=4.0,
        )
    assert await store.unfinished_batches() == []
    members = await store.batch_records(batch.batch_id)
    assert [m.leaf_index for m in members] == [0, 1]
    assert all(m.status is RecordStatus.ANCHORED for m in members)
    assert await store.outbox_depth() == 1


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from tests.notary.test_storage import new_record, open_at

    async def main():
        store = open_at(sys.argv[1])
        await store.create_device("k", sae_id="s", owner="", expected_digest=None, now=0.0)
        seq = 0
        while True:
            seq += 1
            outcome = await store.accept(new_record("k", seq))
            print(outcome.record.record_id, flush=True)

    asyncio.run(main())
    """
)


async def test_acknowledged_writes_survive_kill_9(location: Location) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, location],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    acknowledged = [proc.stdout.readline().strip() for _ in range(40)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    store = open_at(location)
    try:
        for rid in acknowledged:
            assert await store.get_record(rid) is not None
        device = await store.get_device("k")
        assert device is not None and device.last_sequence is not None
        assert device.last_sequence >= 40
    finally:
        await store.aclose()


async def test_shrink_batch_returns_the_tail_to_the_outbox(store: Store) -> None:
    ids = [(await store.accept(new_record("d1", s))).record.record_id for s in (1, 2, 3, 4)]
    batch = await store.create_batch(AnchorMode.BATCH, ids, None, now=1.0)
    shrunk = await store.shrink_batch(batch.batch_id, 1)
    assert shrunk.record_ids == (ids[0],)
    assert [r.record_id for r in await store.pending_records(10)] == ids[1:]
    with pytest.raises(InvalidTransition):
        await store.shrink_batch(batch.batch_id, 1)  # nothing left to give back
    merkle = await store.create_batch(AnchorMode.MERKLE, ids[1:], "0x" + "aa" * 32, now=2.0)
    with pytest.raises(InvalidTransition):
        await store.shrink_batch(merkle.batch_id, 1)  # a fixed root cannot lose leaves


async def test_explorer_listings_are_newest_first(store: Store) -> None:
    assert isinstance(store, RecordBrowser)
    await store.create_device("d2", sae_id="s", owner="", expected_digest=None, now=0.0)
    ids = []
    for n in range(6):
        device = "d1" if n % 2 == 0 else "d2"
        outcome = await store.accept(new_record(device, n + 1, accepted_at=100.0 + n))
        ids.append(outcome.record.record_id)
    assert [r.record_id for r in await store.recent_records(4)] == ids[::-1][:4]
    assert [r.record_id for r in await store.recent_records(10, device_id="d2")] == ids[1::2][::-1]
    assert sorted(await store.accepted_times(103.0, 10)) == [103.0, 104.0, 105.0]
    assert sorted(await store.accepted_times(0.0, 2)) == [104.0, 105.0]  # newest 2 only


async def test_stored_hashes_are_found_by_prefix(store: Store) -> None:
    """The explorer's shortened-hash search: a prefix range over record IDs, the anchoring
    transaction and its block, exact at the range's ends (``…ff`` prefixes included)."""
    assert isinstance(store, RecordBrowser)
    ids = [(await store.accept(new_record("d1", s))).record.record_id for s in (1, 2, 3)]
    await _anchor(store, ids[:1], 0xFFF)
    tx_hash, block_hash = f"0x{0xFFF:064x}", f"0x{0xFFF + 1000:064x}"
    for stored, kind in [(ids[1], "record"), (tx_hash, "transaction"), (block_hash, "block")]:
        for cut in (8, 20, 66):
            assert (kind, stored) in await store.hashes_with_prefix(stored[:cut], 10), (kind, cut)
    everything = await store.hashes_with_prefix("0x", 100)
    assert sorted(v for k, v in everything if k == "record") == sorted(ids)
    assert await store.hashes_with_prefix("0x" + "f" * 8, 10) == []
    assert len(await store.hashes_with_prefix("0x", 2)) == 2
    # The range ends where the prefix does: the hash one above the prefix is not in it.
    above = f"0x{int(tx_hash[2:20], 16) + 1:018x}"
    assert ("transaction", tx_hash) not in await store.hashes_with_prefix(above, 10)


async def _anchor(store: Store, ids: list[str], block: int, root: str | None = None) -> int:
    batch = await store.create_batch(
        AnchorMode.MERKLE if root else AnchorMode.BATCH, ids, root, now=2.0
    )
    await store.mark_batch_anchored(
        batch.batch_id,
        tx_hash=f"0x{block:064x}",
        block_number=block,
        block_hash=f"0x{block + 1000:064x}",
        block_timestamp=1_700_000_000 + block,
        now=3.0,
    )
    return batch.batch_id


async def test_unrecorded_members_get_their_own_terminal_status(store: Store) -> None:
    await store.create_device("u", sae_id="s", owner="", expected_digest=None, now=0.0)
    ids = [(await store.accept(new_record("u", s))).record.record_id for s in (1, 2, 3)]
    batch = await store.create_batch(AnchorMode.BATCH, ids, None, now=2.0)
    await store.mark_batch_anchored(
        batch.batch_id,
        tx_hash="0x" + "cd" * 32,
        block_number=9,
        block_hash="0x" + "ef" * 32,
        block_timestamp=1_700_000_000,
        now=3.0,
        unrecorded={ids[1]: RecordStatus.REFUSED, ids[2]: RecordStatus.CONFLICT},
    )
    statuses = [(await store.get_record(i)).status for i in ids]  # type: ignore[union-attr]
    assert statuses == [RecordStatus.ANCHORED, RecordStatus.REFUSED, RecordStatus.CONFLICT]
    assert await store.outbox_depth() == 0  # terminal: not waiting for the chain


async def test_lost_batches_go_back_to_the_outbox_with_their_members(store: Store) -> None:
    await store.create_device("r", sae_id="s", owner="", expected_digest=None, now=0.0)
    ids = [(await store.accept(new_record("r", s))).record.record_id for s in range(1, 6)]
    first = await _anchor(store, ids[:2], block=5)
    second = await _anchor(store, ids[2:4], block=8, root="0x" + "12" * 32)
    third = await _anchor(store, ids[4:], block=9)
    assert [b.batch_id for b in await store.anchored_batches()] == [first, second, third]
    assert [b.batch_id for b in await store.anchored_batches(from_block=8)] == [second, third]
    latest = await store.latest_anchored_batch()
    assert latest is not None and latest.batch_id == third and latest.block_number == 9
    touched = await store.requeue_batches([second, third], roots={second: "0x" + "34" * 32})
    assert touched == 3
    assert [b.batch_id for b in await store.unfinished_batches()] == [second, third]
    again = await store.get_batch(second)
    assert again is not None and again.status is BatchStatus.PENDING
    assert again.root == "0x" + "34" * 32 and again.tx_hash is None and again.block_number is None
    assert again.record_ids == tuple(ids[2:4])  # same members, same leaf order
    statuses = [(await store.get_record(i)).status for i in ids]  # type: ignore[union-attr]
    assert statuses == [RecordStatus.ANCHORED] * 2 + [RecordStatus.SUBMITTED] * 3
    assert await store.outbox_depth() == 3
    assert (await store.latest_anchored_batch()).batch_id == first  # type: ignore[union-attr]
    with pytest.raises(InvalidTransition):
        await store.requeue_batches([9999])


async def test_lost_device_events_are_mirrored_again(store: Store) -> None:
    await store.create_device("e1", sae_id="s", owner="", expected_digest=None, now=0.0)
    events = await store.pending_device_events(10)  # d1's registration, then e1's
    for event, tx in zip(events, ("0x" + "01" * 32, "already-registered"), strict=True):
        await store.mark_event_mirrored(event.event_id, tx)
    assert [e.event_id for e in await store.mirrored_device_events()] == [
        e.event_id for e in events
    ]
    assert await store.requeue_device_events(events[1].event_id) == 1
    assert [e.event_id for e in await store.pending_device_events(10)] == [events[1].event_id]
    assert await store.requeue_device_events(0) == 1
    assert len(await store.pending_device_events(10)) == 2


async def test_access_tokens_are_kept_as_hashes_and_revocable(store: Store) -> None:
    await store.create_device("t", sae_id="s", owner="", expected_digest=None, now=0.0)
    owner = await store.create_access_token(
        "ab" * 32, role=AccessRole.OWNER, device_id="t", label="owner", now=1.0
    )
    auditor = await store.create_access_token(
        "cd" * 32, role=AccessRole.AUDITOR, device_id=None, label="audit", now=2.0
    )
    assert owner.token_id == "ab" * 6 and owner.covers("t") and not owner.covers("other")
    assert auditor.covers("other")
    assert await store.find_access_token("ab" * 32) == owner
    assert await store.find_access_token("ef" * 32) is None
    assert [t.token_id for t in await store.list_access_tokens()] == ["ab" * 6, "cd" * 6]
    revoked = await store.revoke_access_token(auditor.token_id, now=5.0)
    assert revoked.revoked_at == 5.0 and not revoked.covers("other")
    assert (await store.revoke_access_token(auditor.token_id, now=9.0)).revoked_at == 5.0
    with pytest.raises(TokenNotFound):
        await store.revoke_access_token("nope", now=1.0)
    with pytest.raises(DeviceNotFound):
        await store.create_access_token(
            "ef" * 32, role=AccessRole.OWNER, device_id="ghost", label="x", now=1.0
        )


async def test_a_schema_1_sqlite_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A data directory from before receipts v2: its records keep their rows and read as
    'key path unreported', and the token table appears."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = SQLiteStore(path)
    await old.create_device("o", sae_id="s", owner="", expected_digest=None, now=0.0)
    rid = (await old.accept(new_record("o", 1))).record.record_id
    await old.aclose()
    with sqlite3.connect(path) as conn:  # what the previous build had created
        conn.execute("ALTER TABLE records DROP COLUMN key_path")
        conn.execute("DROP TABLE access_tokens")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    upgraded = SQLiteStore(path)
    try:
        record = await upgraded.get_record(rid)
        assert record is not None and record.key_path == 0
        assert await upgraded.list_access_tokens() == []
    finally:
        await upgraded.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "2",
        )
