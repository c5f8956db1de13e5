"""SQLite group commit: concurrent writes share transactions (and fsyncs), yet every caller
is answered only once its own write is committed and visible to any other connection."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notary.errors import ReplayDetected
from notary.storage.sqlite import SQLiteStore
from tests.notary.test_storage import new_record

DEVICES = 64


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "notary.sqlite3")
    await asyncio.gather(
        *(
            opened.create_device(f"g{i}", sae_id="s", owner="", expected_digest=None, now=0.0)
            for i in range(DEVICES)
        )
    )
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_concurrent_accepts_share_few_commits(store: SQLiteStore) -> None:
    before = store.commits
    records = [new_record(f"g{i}", 1) for i in range(DEVICES)]
    outcomes = await asyncio.gather(*(store.accept(r) for r in records))
    assert [o.record.record_id for o in outcomes] == [r.record_id for r in records]
    commits = store.commits - before
    assert 1 <= commits < DEVICES // 4  # one transaction (one fsync) per group, not per write


async def test_every_answer_follows_its_own_commit(store: SQLiteStore) -> None:
    records = [new_record(f"g{i}", 2) for i in range(DEVICES)]
    other = sqlite3.connect(store.path)  # another connection sees committed data only
    try:
        for done in asyncio.as_completed([store.accept(r) for r in records]):
            outcome = await done
            row = other.execute(
                "SELECT status FROM records WHERE record_id = ?", (outcome.record.record_id,)
            ).fetchone()
            assert row == ("accepted",)
    finally:
        other.close()


async def test_a_refused_write_in_a_group_commits_its_neighbours(store: SQLiteStore) -> None:
    await store.accept(new_record("g0", 10))
    mixed = [new_record("g0", 10, digest="d" * 64)] + [
        new_record(f"g{i}", 3) for i in range(1, DEVICES)
    ]
    before = store.commits
    results = await asyncio.gather(*(store.accept(r) for r in mixed), return_exceptions=True)
    assert isinstance(results[0], ReplayDetected)
    assert all(not isinstance(r, BaseException) for r in results[1:])
    assert store.commits - before < DEVICES // 4
    for record in mixed[1:]:
        row = await store.get_record(record.record_id)
        assert row is not None and row.sequence == 3
