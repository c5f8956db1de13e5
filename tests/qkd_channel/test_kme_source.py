"""Key sources feeding the buffer: back-pressure, and a KME pair fed by identical sources."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.server import KMEServerThread, bind_socket
from qkd_channel.kme.source import KeyBlock, KeySource, feed_store
from qkd_channel.kme.store import KeyStore
from tests.qkd_channel.conftest import KMEPair, kme_config


class SeededBlocks:
    """The same pseudo-random blocks at every instance with the same seed; counts pulls.

    Stands in for post-processing, which yields identical blocks at both link ends.
    """

    def __init__(self, seed: int, *, count: int | None = None, nbytes: int = 256) -> None:
        self._seed, self._count, self._nbytes = seed, count, nbytes
        self.pulled = 0

    async def blocks(self) -> AsyncIterator[KeyBlock]:
        rng = random.Random(self._seed)
        index = 0
        while self._count is None or index < self._count:
            self.pulled += 1
            yield KeyBlock(f"round-{index}", rng.randbytes(self._nbytes))
            index += 1
            await asyncio.sleep(0)


def test_seeded_blocks_is_a_key_source() -> None:
    assert isinstance(SeededBlocks(1), KeySource)


async def test_feeder_stops_pulling_while_the_buffer_is_full(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, kme_id="kme-a", end=LinkEnd.A)
    source = SeededBlocks(7, nbytes=128)  # 1024 bits per block, endless
    task = asyncio.create_task(feed_store(source, store, capacity_bits=4096, poll_interval=0.01))
    try:
        for _ in range(500):
            if store.available_bits() >= 4096:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert source.pulled == 4  # exactly up to capacity, then it waits
        assert store.available_bits() == 4096
        store.reserve("m", ["s"], [2048])  # make room: the producer resumes
        for _ in range(500):
            if source.pulled >= 6:
                break
            await asyncio.sleep(0.01)
        assert source.pulled == 6
    finally:
        task.cancel()
        store.close()


async def test_feeder_ends_with_a_finite_source(tmp_path: Path) -> None:
    with KeyStore(tmp_path, kme_id="kme-a", end=LinkEnd.A) as store:
        await feed_store(SeededBlocks(3, count=3, nbytes=64), store, capacity_bits=10**6)
        assert store.available_bits() == 3 * 64 * 8


def test_kme_pair_fed_by_identical_sources_agrees_on_keys(kme_pki: Path, tmp_path: Path) -> None:
    socks = {name: bind_socket() for name in ("a", "b")}
    urls = {name: f"https://127.0.0.1:{s.getsockname()[1]}" for name, s in socks.items()}
    configs = {
        "a": kme_config(kme_pki, tmp_path / "a", "kme-a", LinkEnd.A, "kme-b", urls["b"]),
        "b": kme_config(kme_pki, tmp_path / "b", "kme-b", LinkEnd.B, "kme-a", urls["a"]),
    }
    servers = {
        name: KMEServerThread(configs[name], socks[name], source=SeededBlocks(42, count=4))
        for name in ("a", "b")
    }
    pair = KMEPair(kme_pki, configs, urls, servers)
    for server in servers.values():
        server.start()
    try:
        with pair.client("a", "device-1") as device, pair.client("b", "notary") as notary:
            deadline = time.monotonic() + 10
            while device.status("notary").stored_key_count < 16:
                assert time.monotonic() < deadline, "the key source never filled the buffer"
                time.sleep(0.02)
            keys = device.enc_keys("notary", number=16)
            assert notary.dec_keys("device-1", [k.key_id for k in keys]) == keys
            back = notary.enc_keys("device-1", number=16)
            assert device.dec_keys("notary", [k.key_id for k in back]) == back
    finally:
        for server in servers.values():
            server.stop()
