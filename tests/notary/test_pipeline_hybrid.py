"""``hybrid`` envelopes through the intake pipeline: sessions as in ``aead``, the notary's
ML-KEM key, and the attacks (forged encapsulation, mode confusion, replay, a notary that
cannot open hybrid) each refused without spending keys it need not spend."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from notary.config import NotarySettings
from notary.errors import AuthenticationFailed, ReplayDetected
from notary.keysource import InMemoryKeySource
from notary.service import NotaryService
from notary.telemetry import payload_hash, record_salt
from qkd_channel.envelope import Envelope, Mode
from qkd_channel.hybrid import HybridKey, KEMPrivateKey
from qkd_channel.security_levels import Hop, Level
from tests.notary.conftest import NOTARY_KEM, SimDevice, fresh_keys, sqlite_service


async def submit(service: NotaryService, env: Envelope):  # type: ignore[no-untyped-def]
    return await service.pipeline.submit(env.to_json().encode())


@pytest.fixture
def qkd_link_source() -> InMemoryKeySource:
    return InMemoryKeySource(link_hop=Hop.QKD)


@pytest.fixture
async def hybrid_service(
    settings: NotarySettings, qkd_link_source: InMemoryKeySource
) -> AsyncIterator[NotaryService]:
    svc = sqlite_service(settings, qkd_link_source, kem_key=NOTARY_KEM)
    await svc.register_device("dev-h", sae_id="sae-h")
    await svc.start()
    try:
        yield svc
    finally:
        await svc.aclose()


@pytest.fixture
def meter(qkd_link_source: InMemoryKeySource) -> SimDevice:
    return SimDevice("dev-h", "sae-h", qkd_link_source)


async def test_a_hybrid_session_is_fetched_once_and_each_record_salted_by_the_device_key(
    hybrid_service: NotaryService, meter: SimDevice, qkd_link_source: InMemoryKeySource
) -> None:
    first = meter.seal(meter.plaintext(key_delivery="local"), mode=Mode.HYBRID)
    (session_key,) = meter.last_keys
    second = meter.seal(meter.plaintext(key_delivery="local"), mode=Mode.HYBRID, keys=[session_key])
    for env in (first, second):
        accepted = await submit(hybrid_service, env)
        assert accepted.mode is Mode.HYBRID
        row = await hybrid_service.store.get_record(accepted.record_id)
        assert row is not None and row.mode == "hybrid"
        # The device computes the same salt from its own hybrid key: the notary never
        # has to publish it.
        salt = record_salt(env, [session_key])
        assert row.salt == salt and row.payload_hash == payload_hash(salt, row.payload)
    assert qkd_link_source.calls == 1  # one KME delivery for the whole session
    receipt = await hybrid_service.receipt(accepted.record_id)
    assert receipt.security.confidentiality == Level.COMPUTATIONAL_QUANTUM_RESISTANT
    assert receipt.security.authenticity == Level.COMPUTATIONAL_QUANTUM_RESISTANT


async def test_hybrid_authenticity_is_capped_by_a_tls_hop(
    hybrid_service: NotaryService, meter: SimDevice
) -> None:
    env = meter.seal(meter.plaintext(key_delivery="tls"), mode=Mode.HYBRID)
    receipt = await hybrid_service.receipt((await submit(hybrid_service, env)).record_id)
    assert receipt.key_path.device == "tls"
    assert receipt.security.confidentiality == Level.COMPUTATIONAL_QUANTUM_RESISTANT
    assert receipt.security.authenticity == Level.COMPUTATIONAL


async def test_a_notary_without_an_ml_kem_key_refuses_hybrid_before_fetching_keys(
    service: NotaryService, device: SimDevice, key_source: InMemoryKeySource
) -> None:
    env = device.seal(mode=Mode.HYBRID)
    with pytest.raises(AuthenticationFailed) as info:
        await submit(service, env)
    assert info.value.cause == "hybrid-not-configured"
    assert key_source.calls == 0 and await key_source.stock("sae-a") == 1


async def test_an_envelope_for_another_ml_kem_key_is_refused_before_fetching_keys(
    hybrid_service: NotaryService, meter: SimDevice, qkd_link_source: InMemoryKeySource
) -> None:
    stranger = KEMPrivateKey.generate().public_key
    env = meter.seal(mode=Mode.HYBRID, kem=stranger)
    with pytest.raises(AuthenticationFailed) as info:
        await submit(hybrid_service, env)
    assert info.value.cause == "unknown-kem-key"
    assert qkd_link_source.calls == 0


async def test_a_forged_kem_ciphertext_is_refused(
    hybrid_service: NotaryService, meter: SimDevice
) -> None:
    env = meter.seal(mode=Mode.HYBRID)
    forged = bytearray(env.nonce)
    forged[100] ^= 0x40  # inside kem_ct
    with pytest.raises(AuthenticationFailed) as info:
        await submit(hybrid_service, dataclasses.replace(env, nonce=bytes(forged)))
    assert info.value.cause == "bad-tag"
    assert await hybrid_service.store.outbox_depth() == 0
    await submit(hybrid_service, env)  # the session key stays usable for the genuine one


async def test_a_hybrid_session_key_never_serves_aead(
    hybrid_service: NotaryService, meter: SimDevice
) -> None:
    """Someone holding the bare QKD key (say, harvested from a classical TLS hop) cannot
    downgrade the session to aead, where ML-KEM no longer protects it."""
    hybrid = meter.seal(mode=Mode.HYBRID)
    await submit(hybrid_service, hybrid)
    (session_key,) = meter.last_keys
    bare = hybrid_service.pipeline._sessions[session_key.key_id].key
    assert not isinstance(bare, HybridKey)
    downgraded = meter.seal(mode=Mode.AEAD, keys=[bare])
    with pytest.raises(AuthenticationFailed) as info:
        await submit(hybrid_service, downgraded)
    assert info.value.cause == "key-mode-mismatch"


async def test_an_aead_session_key_never_serves_hybrid(
    hybrid_service: NotaryService, meter: SimDevice
) -> None:
    aead = meter.seal(mode=Mode.AEAD)
    await submit(hybrid_service, aead)
    (key,) = meter.last_keys
    with pytest.raises(AuthenticationFailed) as info:
        await submit(hybrid_service, meter.seal(mode=Mode.HYBRID, keys=[key]))
    assert info.value.cause == "key-mode-mismatch"


async def test_replayed_and_stale_hybrid_envelopes_are_refused(
    hybrid_service: NotaryService, meter: SimDevice
) -> None:
    first = meter.seal(mode=Mode.HYBRID, sequence=7)
    accepted = await submit(hybrid_service, first)
    with pytest.raises(ReplayDetected) as replay:
        await submit(hybrid_service, first)
    assert replay.value.record_id == accepted.record_id
    (session_key,) = meter.last_keys
    stale = meter.seal(mode=Mode.HYBRID, keys=[session_key], sequence=6)
    with pytest.raises(ReplayDetected) as info:
        await submit(hybrid_service, stale)
    assert info.value.reason == "stale-sequence"


async def test_a_hybrid_envelope_must_name_exactly_one_key(
    hybrid_service: NotaryService, meter: SimDevice, qkd_link_source: InMemoryKeySource
) -> None:
    env = meter.seal(mode=Mode.HYBRID)
    extra = fresh_keys(32)
    qkd_link_source.deposit("sae-h", extra)
    two = dataclasses.replace(env, key_ids=(*env.key_ids, extra[0].key_id))
    with pytest.raises(AuthenticationFailed) as info:
        await submit(hybrid_service, two)
    assert info.value.cause == "wrong-key"
    assert qkd_link_source.calls == 0  # refused before the KME spent the keys
