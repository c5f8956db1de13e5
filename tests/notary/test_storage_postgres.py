"""PostgreSQL store, beyond the shared Store contract: what several instances sharing one
database rely on. Replay refused across instances under races, disjoint batch claims, one
anchoring leader that hands over when it goes, a versioned schema, recovery after lost
connections, and a database password that never reaches a message or a log."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from notary.anchoring import AnchorChain, AnchoringWorker
from notary.chain.client import ChainClient
from notary.config import AnchorMode, NotarySettings
from notary.errors import InvalidTransition, ReplayDetected, StorageUnavailable
from notary.logging import JSONFormatter
from notary.storage import open_store
from notary.storage.base import RecordStatus
from notary.storage.postgres import SCHEMA_VERSION, PostgresStore, redact_url
from tests.notary.postgres_server import PostgresServer
from tests.notary.test_storage import new_record


@pytest.fixture
def url(postgres_server: PostgresServer) -> Iterator[str]:
    with postgres_server.database() as database_url:
        yield database_url


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database: what two notary instances hold."""
    a = PostgresStore(url, lead_retry_s=0.05)
    b = PostgresStore(url, lead_retry_s=0.05)
    await a.create_device("d1", sae_id="s", owner="", expected_digest=None, now=0.0)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


def admin(server: PostgresServer, url: str) -> psycopg.Connection[Any]:
    """A superuser connection to the database ``url`` names."""
    return psycopg.connect(server.admin_url(url.rsplit("/", 1)[1]), autocommit=True)


async def test_the_same_envelope_raced_through_two_instances_lands_once(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pair
    for sequence in range(1, 31):
        record = new_record("d1", sequence)
        results = await asyncio.gather(a.accept(record), b.accept(record), return_exceptions=True)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(refused) == 1 and isinstance(refused[0], ReplayDetected)
    device = await a.get_device("d1")
    assert device is not None and device.last_sequence == 30
    assert await b.outbox_depth() == 30


async def test_racing_sequences_are_accepted_strictly_increasing(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pair
    rng = random.Random(7)
    sequences = list(range(1, 121))
    rng.shuffle(sequences)
    records = [new_record("d1", s) for s in sequences]
    results = await asyncio.gather(
        *(rng.choice((a, b)).accept(r) for r in records), return_exceptions=True
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, ReplayDetected) for r in results if isinstance(r, BaseException))
    # Acceptance order (the outbox position) is the order in which the device row lock
    # was held: every accepted sequence is above all accepted before it.
    in_order = [r.sequence for r in await a.pending_records(200)]
    assert in_order == sorted(in_order) and len(set(in_order)) == len(accepted)
    device = await b.get_device("d1")
    assert device is not None and device.last_sequence == max(in_order)


async def test_overlapping_batch_claims_from_two_instances_are_disjoint(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pair
    for round_ in range(10):
        ids = [
            (await a.accept(new_record("d1", round_ * 20 + n + 1))).record.record_id
            for n in range(20)
        ]
        results = await asyncio.gather(
            a.create_batch(AnchorMode.BATCH, ids[:12], None, now=1.0),
            b.create_batch(AnchorMode.BATCH, ids[8:], None, now=1.0),
            return_exceptions=True,
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], InvalidTransition)
        # The losing claim left no trace: exactly the winner's members left the outbox.
        waiting = {r.record_id for r in await b.pending_records(100)}
        assert waiting == set(ids) - set(won[0].record_ids)
        for record_id in won[0].record_ids:
            row = await b.get_record(record_id)
            assert row is not None and row.batch_id == won[0].batch_id
        await a.create_batch(AnchorMode.BATCH, sorted(waiting), None, now=2.0)


def lock_holder_pid(server: PostgresServer, url: str) -> int:
    with admin(server, url) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_anchoring_lead_is_exclusive_and_moves_when_its_session_ends(
    pair: tuple[PostgresStore, PostgresStore], postgres_server: PostgresServer, url: str
) -> None:
    a, b = pair
    assert await a.hold_anchoring_lead()
    await asyncio.sleep(0.06)
    assert not await b.hold_anchoring_lead()
    assert await a.hold_anchoring_lead()  # a holder keeps it
    assert (await b.lead_holder() or "").startswith("qkd-notary ")
    # The holder's lock session dies (a crashed process, a cut connection).
    with admin(postgres_server, url) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (lock_holder_pid(postgres_server, url),))
    await asyncio.sleep(0.06)
    assert await b.hold_anchoring_lead()  # the lock was released with the session
    assert not await a.hold_anchoring_lead()  # and the old holder notices it lost it
    await asyncio.sleep(0.06)
    assert not await a.hold_anchoring_lead()
    await b.aclose()  # a graceful stop hands the lead over at once
    await asyncio.sleep(0.06)
    assert await a.hold_anchoring_lead()


class CountingChain:
    """The real chain client, with a count of the transactions each worker asked for."""

    def __init__(self, inner: ChainClient) -> None:
        self._inner = inner
        self.sends = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name in ("record_batch", "anchor_root", "register_device", "attest_firmware"):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.sends += 1
                return attribute(*args, **kwargs)

            return counted
        return attribute


async def wait_drained(store: PostgresStore, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await store.outbox_depth() or await store.pending_device_events(1):
        assert asyncio.get_running_loop().time() < deadline, "outbox did not drain"
        await asyncio.sleep(0.05)


async def test_only_the_leading_worker_sends_and_the_other_takes_over(
    url: str, chain_client: ChainClient
) -> None:
    stores = [PostgresStore(url, lead_retry_s=0.1) for _ in range(2)]
    chains = [CountingChain(chain_client) for _ in range(2)]
    workers = [
        AnchoringWorker(
            store,
            cast(AnchorChain, chain),
            mode=AnchorMode.BATCH,
            batch_size=8,
            max_latency_s=0.05,
            poll_interval_s=0.02,
        )
        for store, chain in zip(stores, chains, strict=True)
    ]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(w.run(s)) for w, s in zip(workers, stops, strict=True)]
    tag = uuid.uuid4().hex[:8]
    devices = [f"pg{tag}-{i}" for i in range(4)]
    try:
        for device in devices:
            await stores[0].create_device(device, sae_id="s", owner="", expected_digest=None, now=0)
        first = [
            (await stores[n % 2].accept(new_record(devices[n % 4], 1 + n // 4))).record
            for n in range(24)
        ]
        await wait_drained(stores[1])
        leader = 0 if chains[0].sends else 1
        assert chains[leader].sends > 0 and chains[1 - leader].sends == 0
        # The leader goes away; the other instance takes the lead and anchors from now on.
        stops[leader].set()
        await tasks[leader]
        await stores[leader].aclose()
        survivor = stores[1 - leader]
        second = [
            (await survivor.accept(new_record(devices[n % 4], 100 + n // 4))).record
            for n in range(16)
        ]
        await wait_drained(survivor)
        assert chains[1 - leader].sends > 0
        batches: dict[str, int] = {}
        for record in first + second:
            row = await survivor.get_record(record.record_id)
            assert row is not None and row.status is RecordStatus.ANCHORED
            assert row.batch_id is not None
            batches[record.record_id] = row.batch_id
            stored = chain_client.get_record(bytes.fromhex(record.record_id[2:]))
            assert stored is not None and stored.sequence == record.sequence
        assert len(batches) == 40
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for store in stores:
            await store.aclose()


async def test_schema_is_versioned_and_a_newer_one_is_refused(
    url: str, postgres_server: PostgresServer
) -> None:
    store = PostgresStore(url)
    await store.aclose()
    PostgresStore(url)  # reopening an up-to-date schema migrates nothing
    with admin(postgres_server, url) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert row == (str(SCHEMA_VERSION),)
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(99),))
    with pytest.raises(StorageUnavailable, match="upgrade the notary"):
        PostgresStore(url)


def test_instances_starting_together_create_the_schema_once(url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            PostgresStore(url)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


async def test_lost_database_connections_are_replaced_without_errors(
    pair: tuple[PostgresStore, PostgresStore], postgres_server: PostgresServer, url: str
) -> None:
    a, _ = pair
    await asyncio.gather(*(a.get_device("d1") for _ in range(8)))  # grow the pool
    with admin(postgres_server, url) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1  # every pooled connection of `a`
    for sequence in range(1, 11):
        await a.accept(new_record("d1", sequence))
    assert await a.outbox_depth() == 10


async def test_a_database_refusing_connections_is_a_503_until_it_is_back(
    url: str, postgres_server: PostgresServer
) -> None:
    store = PostgresStore(url, acquire_timeout_s=1)  # schema created, pool not yet open
    name = url.rsplit("/", 1)[1]
    try:
        with psycopg.connect(postgres_server.admin_url(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            with pytest.raises(StorageUnavailable):
                await store.get_device("d1")
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await store.create_device("d1", sae_id="s", owner="", expected_digest=None, now=0.0)
        assert await store.get_device("d1") is not None
    finally:
        await store.aclose()


async def test_an_unreachable_database_is_storage_unavailable() -> None:
    with pytest.raises(StorageUnavailable):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=1)


async def test_the_database_password_reaches_no_message_or_log(
    postgres_server: PostgresServer,
    url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = postgres_server.app_password
    assert password in url
    assert redact_url(url) == url.replace(password, "***")
    settings = NotarySettings(data_dir=tmp_path, database_url=url)
    assert password not in repr(settings) and password not in str(settings)
    with caplog.at_level(logging.DEBUG):
        store = open_store(settings)
        await store.aclose()
    logged = "\n".join(JSONFormatter().format(record) for record in caplog.records)
    assert "127.0.0.1" in logged and password not in logged
    wrong = url.replace(password, "not-" + password)
    with pytest.raises(StorageUnavailable) as refused:
        PostgresStore(wrong)
    assert "password authentication failed" in str(refused.value.__cause__)
    for text in (str(refused.value), repr(refused.value), str(refused.value.__cause__)):
        assert password not in text


def test_unknown_database_schemes_are_refused_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must start with") as refused:
        NotarySettings(data_dir=tmp_path, database_url="mysql://u:hunter2@db/x")
    assert "hunter2" not in str(refused.value)
