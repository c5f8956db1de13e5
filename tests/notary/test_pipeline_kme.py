"""The pipeline with its production key source against two real KMEs (ETSI GS QKD 014
over mutual TLS): devices get keys from KME A with enc_keys, the notary from KME B with
dec_keys. Key binding, consumption and KME outages are the KMEs' real behaviour."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notary.config import NotarySettings
from notary.errors import AuthenticationFailed, KeysUnavailable, ReplayDetected
from notary.keysource import CoalescingKeySource, KMEKeySource
from notary.service import NotaryService
from qkd_channel.errors import KMERequestRejected
from qkd_channel.kme.certs import sae_paths
from qkd_channel.kme.client import AsyncKMEClient
from tests.notary.conftest import (
    NOTARY_ID,
    KMEDevice,
    kme_key_source_for,
    sqlite_service,
)
from tests.qkd_channel.conftest import KMEPair


def kme_client(pair: KMEPair, kme: str, sae_id: str) -> AsyncKMEClient:
    cert, key = sae_paths(pair.pki, sae_id)
    return AsyncKMEClient(pair.urls[kme], cert=cert, key=key, ca=pair.pki / "ca.crt", timeout=5)


@pytest.fixture
async def kme_service(tmp_path: Path, kme_link: KMEPair) -> AsyncIterator[NotaryService]:
    settings = NotarySettings(data_dir=tmp_path / "kme-notary", notary_id=NOTARY_ID)
    svc = sqlite_service(settings, kme_key_source_for(kme_link, window_s=0.02))
    await svc.register_device("sensor-1", sae_id="sensor-1")
    await svc.register_device("sensor-2", sae_id="sensor-2")
    try:
        yield svc
    finally:
        await svc.aclose()


async def submit(service: NotaryService, env) -> object:  # type: ignore[no-untyped-def]
    return await service.pipeline.submit(env.to_json().encode())


async def test_envelope_keyed_by_real_kmes_is_accepted_once(
    kme_service: NotaryService, kme_link: KMEPair
) -> None:
    device = KMEDevice("sensor-1", "sensor-1", kme_link)
    env = device.seal({"temp_c": 20.5})
    accepted = await submit(kme_service, env)
    assert accepted.sequence == 1  # type: ignore[attr-defined]
    with pytest.raises(ReplayDetected):
        await submit(kme_service, env)
    # The KME handed the keys out once: nobody can fetch them again.
    with kme_link.client("b", "notary") as notary_kme, pytest.raises(KMERequestRejected):
        notary_kme.dec_keys("sensor-1", list(env.key_ids))


async def test_keys_of_one_device_cannot_authenticate_another(
    kme_service: NotaryService, kme_link: KMEPair
) -> None:
    device = KMEDevice("sensor-1", "sensor-1", kme_link)
    forged = device.seal(sender="sensor-2")  # sensor-1's keys, sensor-2's identity
    with pytest.raises(AuthenticationFailed) as info:
        await submit(kme_service, forged)
    assert info.value.cause == "unknown-key"
    assert await kme_service.store.outbox_depth() == 0


async def test_tampered_envelope_burns_its_keys_at_the_kme(
    kme_service: NotaryService, kme_link: KMEPair
) -> None:
    device = KMEDevice("sensor-1", "sensor-1", kme_link)
    env = device.seal()
    flipped = bytearray(env.ciphertext)
    flipped[-1] ^= 0x80
    with pytest.raises(AuthenticationFailed):
        await submit(kme_service, dataclasses.replace(env, ciphertext=bytes(flipped)))
    with pytest.raises(AuthenticationFailed) as info:
        await submit(kme_service, env)  # the genuine one arrives too late: pad is gone
    assert info.value.cause == "key-reused"


async def test_kme_outage_is_503_and_the_same_bytes_succeed_later(
    kme_service: NotaryService, kme_link: KMEPair
) -> None:
    device = KMEDevice("sensor-1", "sensor-1", kme_link)
    env = device.seal()
    kme_link.stop("b")
    try:
        with pytest.raises(KeysUnavailable) as info:
            await submit(kme_service, env)
        assert info.value.status == 503
        ready = await kme_service.readiness()
        assert not ready["kme"].ok
    finally:
        kme_link.start("b")
    accepted = await submit(kme_service, env)
    assert accepted.sequence == env.sequence  # type: ignore[attr-defined]
    assert (await kme_service.readiness())["kme"].ok


async def test_concurrent_envelopes_of_a_hub_share_kme_calls(
    kme_service: NotaryService, kme_link: KMEPair
) -> None:
    for i in range(6):
        await kme_service.register_device(f"hub-{i}", sae_id="hub")
    devices = [KMEDevice(f"hub-{i}", "hub", kme_link) for i in range(6)]
    envelopes = [d.seal({"i": i}) for i, d in enumerate(devices)]
    results = await asyncio.gather(*(submit(kme_service, e) for e in envelopes))
    assert len({r.record_id for r in results}) == 6  # type: ignore[attr-defined]
    keys = kme_service.keys
    assert isinstance(keys, CoalescingKeySource)
    assert keys.requests == 6 and keys.round_trips < 6  # merged into shared KME calls
    metrics = kme_service.metrics.render().decode()
    assert 'notary_envelopes_accepted_total{channel="http",mode="otp"} 6.0' in metrics


async def test_kme_key_source_keeps_few_requests_on_the_wire(kme_link: KMEPair) -> None:
    """Many concurrent envelopes must not become many concurrent TLS connections to the KME
    (httpx reconnected per request beyond its keep-alive pool; any client pays per
    connection): the key source queues all but ``max_in_flight`` of them."""
    device, notary = kme_client(kme_link, "a", "hub"), kme_client(kme_link, "b", "notary")
    source = KMEKeySource(notary, max_in_flight=2)
    try:
        keys = [(await device.enc_keys("notary"))[0] for _ in range(12)]
        fetched = await asyncio.gather(*(source.dec_keys("hub", [k.key_id]) for k in keys))
        assert [f[0] for f in fetched] == keys
        assert source.peak_in_flight == 2
    finally:
        await device.aclose()
        await source.aclose()
