"""enc_keys requests allocated in batches: one store transaction and one peer sync for many
concurrent requests, with every request's guarantees kept (two real KMEs, mutual TLS)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from pathlib import Path

import pytest

from qkd_channel.errors import KeyStoreError, KMERequestRejected, KMEUnauthorized
from qkd_channel.keys import QKDKey
from qkd_channel.kme.certs import sae_paths
from qkd_channel.kme.client import AsyncKMEClient
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.store import KeyOrder, KeyStore
from tests.qkd_channel.conftest import KMEPair, start_pair

_RECORDED = re.compile(r"recorded (\d+) key\(s\) allocated by peer KME")


def _client(pair: KMEPair, kme: str, sae_id: str) -> AsyncKMEClient:
    cert, key = sae_paths(pair.pki, sae_id)
    return AsyncKMEClient(pair.urls[kme], cert=cert, key=key, ca=pair.pki / "ca.crt")


def _peer_batches(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [int(m.group(1)) for m in _RECORDED.finditer(caplog.text)]


async def test_concurrent_requests_share_peer_syncs_and_keep_one_time_delivery(
    kme_pair: KMEPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qkd_channel.kme.service")
    (material,) = kme_pair.feed(blocks=1, nbytes=4096)
    masters = ["device-1", "intruder", "auditor"]
    devices = {m: _client(kme_pair, "a", m) for m in masters}
    notary = _client(kme_pair, "b", "notary")
    try:
        orders = [masters[i % 3] for i in range(30)]
        answers = await asyncio.gather(
            *(
                devices[m].enc_keys("notary", number=1 + i % 2, size=128)
                for i, m in enumerate(orders)
            )
        )
        # Each request got what it asked for; together they are A's half carved once.
        assert [len(keys) for keys in answers] == [1 + i % 2 for i in range(30)]
        flat = [k for keys in answers for k in keys]
        assert len({k.key_id for k in flat}) == len(flat) == 45
        carved = sorted(material.index(k.material) for k in flat)
        assert carved == [16 * i for i in range(45)]  # disjoint, contiguous, from A's half
        # Fewer peer syncs than requests: some batch carried several requests' keys.
        batches = _peer_batches(caplog)
        assert sum(batches) == 45 and len(batches) < 30 and max(batches) > 2
        # Only the master that obtained a key can name it to the slave.
        for master, keys in zip(orders, answers, strict=True):
            ids = [k.key_id for k in keys]
            other = next(m for m in masters if m != master)
            with pytest.raises(KMEUnauthorized):  # wrong master: refused, nothing deleted
                await notary.dec_keys(other, ids)
            assert await notary.dec_keys(master, ids) == keys
    finally:
        for client in [*devices.values(), notary]:
            await client.aclose()


async def test_a_request_the_peer_refuses_does_not_fail_its_batch(
    kme_pki: Path, tmp_path: Path
) -> None:
    # KME B serves only "notary": keys for "auditor" are refused by the peer, not by A.
    pair = start_pair(kme_pki, tmp_path, sae_ids={"b": frozenset({"notary"})})
    device = _client(pair, "a", "device-1")
    try:
        pair.feed(blocks=1, nbytes=1024)
        before = (await device.status("notary")).stored_key_count
        slaves = ["notary", "auditor", "notary", "notary", "auditor", "notary"]
        results = await asyncio.gather(
            *(device.enc_keys(slave) for slave in slaves), return_exceptions=True
        )
        for slave, result in zip(slaves, results, strict=True):
            if slave == "auditor":
                assert isinstance(result, KMERequestRejected)
                assert "not attached" in result.message
            else:
                assert isinstance(result, list) and isinstance(result[0], QKDKey)
        # Refused requests burned nothing: exactly the four delivered keys left the pool.
        assert (await device.status("notary")).stored_key_count == before - 4
    finally:
        await device.aclose()
        for name in list(pair.servers):
            pair.stop(name)


def test_reserve_orders_carves_in_order_and_all_or_nothing(tmp_path: Path) -> None:
    a = KeyStore(tmp_path / "a", kme_id="kme-a", end=LinkEnd.A)
    material = secrets.token_bytes(100)  # end A owns bytes 0..49
    a.add_block("blk-1", material)
    try:
        reservation = a.reserve_orders(
            [KeyOrder("dev-1", ("notary",), (64, 64)), KeyOrder("dev-2", ("notary",), (128,))]
        )
        assert [k.material for k in reservation.keys] == [
            material[0:8],
            material[8:16],
            material[16:32],
        ]
        assert [x.master_sae_id for x in reservation.allocations] == ["dev-1", "dev-1", "dev-2"]
        left = a.available_bits(LinkEnd.A)
        assert left == 8 * (50 - 32)
        with pytest.raises(KeyStoreError) as info:
            a.reserve_orders(
                [KeyOrder("dev-1", ("notary",), (64,)), KeyOrder("dev-2", ("notary",), (256,))]
            )
        assert info.value.reason == "insufficient"
        assert a.available_bits(LinkEnd.A) == left  # the order that fitted carved nothing
    finally:
        a.close()


async def test_concurrent_dec_keys_are_each_all_or_nothing_and_once(kme_pair: KMEPair) -> None:
    kme_pair.feed(blocks=1, nbytes=4096)
    device, notary = _client(kme_pair, "a", "device-1"), _client(kme_pair, "b", "notary")
    try:
        keys = [(await device.enc_keys("notary", number=2, size=128)) for _ in range(6)]
        ids = [[k.key_id for k in pair] for pair in keys]
        bogus = "00000000-0000-4000-8000-000000000000"
        calls = [
            notary.dec_keys("device-1", ids[0]),
            notary.dec_keys("device-1", [ids[1][0], bogus]),  # one unknown ID: nothing given
            notary.dec_keys("intruder", ids[2]),  # wrong master: refused
            notary.dec_keys("device-1", ids[3]),
            notary.dec_keys("device-1", ids[3]),  # the same keys twice in one batch
            notary.dec_keys("device-1", ids[4]),
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert results[0] == keys[0] and results[5] == keys[4]
        assert isinstance(results[1], KMERequestRejected)
        assert isinstance(results[2], KMEUnauthorized)
        assert sorted(map(type, results[3:5]), key=str) == sorted(
            [list, KMERequestRejected], key=str
        )
        assert keys[3] in results[3:5]
        # The refused requests delivered nothing: their keys are still there, once.
        assert await notary.dec_keys("device-1", ids[1]) == keys[1]
        assert await notary.dec_keys("device-1", ids[2]) == keys[2]
        with pytest.raises(KMERequestRejected):
            await notary.dec_keys("device-1", ids[1])
    finally:
        await device.aclose()
        await notary.aclose()
