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
    InvalidTransition,
    ReplayDetected,
)
from notary.storage.base import BatchStatus, NewRecord, RecordBrowser, RecordStatus, Store
from notary.storage.postgres import PostgresStore
from notary.storage.sqlite import SQLiteStore
from notary.telemetry import record_id
from tests.notary.postgres_server import PostgresServer

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
