"""The intake pipeline end to end against a real SQLite store and a KME-rule key buffer,
including the attacks of issue 4: every refused envelope leaves the outbox untouched."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from notary.errors import (
    AuthenticationFailed,
    KeysUnavailable,
    MalformedEnvelope,
    PayloadTooLarge,
    ReplayDetected,
    SchemaInvalid,
    StorageUnavailable,
)
from notary.keysource import CoalescingKeySource, InMemoryKeySource
from notary.service import NotaryService
from notary.storage.base import DeviceEventKind, RecordStatus
from notary.storage.sqlite import SQLiteStore
from notary.telemetry import payload_hash, record_id
from qkd_channel.envelope import Envelope, Mode
from tests.notary.conftest import FIRMWARE_A, FIRMWARE_B, SimDevice, fresh_keys


async def submit(service: NotaryService, env: Envelope, **kw: object):  # type: ignore[no-untyped-def]
    return await service.pipeline.submit(env.to_json().encode(), **kw)  # type: ignore[arg-type]


async def assert_outbox(service: NotaryService, depth: int) -> None:
    assert await service.store.outbox_depth() == depth


async def test_accepts_otp_envelope_into_outbox(service: NotaryService, device: SimDevice) -> None:
    env = device.seal(device.plaintext({"temp_c": 19.0}))
    accepted = await submit(service, env)
    assert accepted.record_id == record_id("dev-a", 1, env.key_ids)
    assert accepted.attestation is DeviceEventKind.FIRST_DIGEST
    assert accepted.device_trusted
    row = await service.store.get_record(accepted.record_id)
    assert row is not None and row.status is RecordStatus.ACCEPTED
    assert row.payload == device.plaintext({"temp_c": 19.0})
    assert row.payload_hash == payload_hash(row.salt, row.payload)
    stored_device = await service.store.get_device("dev-a")
    assert stored_device is not None and stored_device.last_sequence == 1
    assert stored_device.current_digest == FIRMWARE_A
    await assert_outbox(service, 1)


async def test_aead_session_key_is_fetched_once_and_reused(
    service: NotaryService, device: SimDevice, key_source: InMemoryKeySource
) -> None:
    first = device.seal(mode=Mode.AEAD)
    await submit(service, first)
    assert key_source.calls == 1
    # The SDK keeps sealing under the same session key; the KME cannot deliver it twice.
    keys = service.pipeline._sessions[first.key_ids[0]].key
    second = device.seal(mode=Mode.AEAD, keys=[keys])
    accepted = await submit(service, second)
    assert accepted.sequence == 2
    assert key_source.calls == 1
    await assert_outbox(service, 2)


async def test_resent_envelope_is_a_replay_naming_its_record(
    service: NotaryService, device: SimDevice
) -> None:
    env = device.seal()
    accepted = await submit(service, env)
    with pytest.raises(ReplayDetected) as info:
        await submit(service, env)
    assert info.value.record_id == accepted.record_id
    assert info.value.status == 409
    await assert_outbox(service, 1)


async def test_stale_sequence_is_refused_and_its_keys_stay_consumed(
    service: NotaryService, device: SimDevice, key_source: InMemoryKeySource
) -> None:
    await submit(service, device.seal(sequence=5))
    stale = device.seal(sequence=5)
    with pytest.raises(ReplayDetected) as info:
        await submit(service, stale)
    assert info.value.reason == "stale-sequence"
    consumed = await service.store.consumed_keys(stale.key_ids)
    assert set(consumed) == set(stale.key_ids)
    calls = key_source.calls
    with pytest.raises(AuthenticationFailed) as again:
        await submit(service, stale)
    assert again.value.cause == "key-reused"
    assert key_source.calls == calls  # never asked the KME for a used pad again
    await assert_outbox(service, 1)


@pytest.mark.parametrize("field_name", ["ciphertext", "tag"])
async def test_bit_flip_is_refused_and_burns_the_keys(
    service: NotaryService, device: SimDevice, field_name: str
) -> None:
    env = device.seal()
    value = bytearray(getattr(env, field_name))
    value[0] ^= 0x01
    changes: dict[str, Any] = {field_name: bytes(value)}
    tampered = dataclasses.replace(env, **changes)
    with pytest.raises(AuthenticationFailed) as info:
        await submit(service, tampered)
    assert info.value.cause == "bad-tag"
    assert info.value.reason == "authentication-failed"
    # The genuine envelope arriving later cannot be opened: its pad was consumed.
    with pytest.raises(AuthenticationFailed):
        await submit(service, env)
    await assert_outbox(service, 0)


async def test_tampered_header_sequence_is_refused(
    service: NotaryService, device: SimDevice
) -> None:
    env = device.seal()
    with pytest.raises(AuthenticationFailed):
        await submit(service, dataclasses.replace(env, sequence=env.sequence + 100))
    await assert_outbox(service, 0)


async def test_device_a_keys_under_device_b_identity_are_refused(
    service: NotaryService, device: SimDevice, device_b: SimDevice
) -> None:
    # Device A holds keys from its own SAE and claims to be device B.
    env = device.seal(sender="dev-b")
    with pytest.raises(AuthenticationFailed) as info:
        await submit(service, env)
    assert info.value.cause == "unknown-key"
    await assert_outbox(service, 0)
    assert (await service.store.get_device("dev-b")).last_sequence is None  # type: ignore[union-attr]


async def test_unregistered_device_is_refused_without_touching_the_kme(
    service: NotaryService, key_source: InMemoryKeySource
) -> None:
    ghost = SimDevice("ghost", "sae-ghost", key_source)
    with pytest.raises(AuthenticationFailed) as info:
        await submit(service, ghost.seal())
    assert info.value.cause == "unknown-device"
    assert key_source.calls == 0
    await assert_outbox(service, 0)


async def test_deactivated_device_is_refused(service: NotaryService, device: SimDevice) -> None:
    await submit(service, device.seal())
    await service.deactivate_device("dev-a")
    with pytest.raises(AuthenticationFailed) as info:
        await submit(service, device.seal())
    assert info.value.cause == "device-inactive"
    await assert_outbox(service, 1)


async def test_envelope_for_another_recipient_is_refused(
    service: NotaryService, device: SimDevice
) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await submit(service, device.seal(recipient="other-notary"))
    assert info.value.cause == "wrong-recipient"


async def test_mqtt_topic_must_match_the_sender(service: NotaryService, device: SimDevice) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await submit(service, device.seal(), topic_device_id="dev-z", channel="mqtt")
    assert info.value.cause == "topic-mismatch"


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(json.dumps({"telemetry": {}}).encode(), id="no-digest"),
        pytest.param(
            json.dumps({"firmware_digest": "xyz", "telemetry": {}}).encode(), id="bad-digest"
        ),
        pytest.param(
            json.dumps({"firmware_digest": FIRMWARE_A, "telemetry": [1]}).encode(),
            id="telemetry-not-object",
        ),
        pytest.param(
            json.dumps({"firmware_digest": FIRMWARE_A, "telemetry": {}, "x": 1}).encode(),
            id="extra-field",
        ),
    ],
)
async def test_authentic_but_invalid_document_is_a_schema_error(
    service: NotaryService, device: SimDevice, plaintext: bytes
) -> None:
    with pytest.raises(SchemaInvalid):
        await submit(service, device.seal(plaintext))
    await assert_outbox(service, 0)


async def test_oversized_and_malformed_bodies(service: NotaryService) -> None:
    with pytest.raises(PayloadTooLarge):
        await service.pipeline.submit(b"{" + b" " * service.pipeline.max_envelope_bytes)
    with pytest.raises(MalformedEnvelope):
        await service.pipeline.submit(b'{"v": 1}')
    with pytest.raises(MalformedEnvelope):
        await service.pipeline.submit(b"[" * 5000 + b"]" * 5000)
    with pytest.raises(MalformedEnvelope):
        await service.pipeline.submit(b"QKDE\x01", content_type="application/octet-stream")


async def test_binary_envelope_form_is_accepted(service: NotaryService, device: SimDevice) -> None:
    env = device.seal()
    accepted = await service.pipeline.submit(
        env.to_bytes(), content_type="application/octet-stream"
    )
    assert accepted.sequence == 1


async def test_changed_firmware_is_recorded_and_marks_device_untrusted(
    service: NotaryService, device: SimDevice
) -> None:
    await submit(service, device.seal())
    device.firmware_digest = FIRMWARE_B
    changed = await submit(service, device.seal())
    assert changed.attestation is DeviceEventKind.DIGEST_CHANGED
    assert not changed.device_trusted
    # Still notarised, flagged as from an untrusted device.
    row = await service.store.get_record(changed.record_id)
    assert row is not None and not row.device_trusted
    same = await submit(service, device.seal())
    assert same.attestation is None and not same.device_trusted
    approved = await service.approve_firmware("dev-a", FIRMWARE_B)
    assert approved.trusted and approved.approved_digest == FIRMWARE_B
    after = await submit(service, device.seal())
    assert after.device_trusted
    _, events = await service.device("dev-a")
    assert [e.kind for e in events] == [
        DeviceEventKind.REGISTERED,
        DeviceEventKind.FIRST_DIGEST,
        DeviceEventKind.DIGEST_CHANGED,
        DeviceEventKind.APPROVED,
    ]


async def test_unexpected_first_digest_is_untrusted(
    service: NotaryService, key_source: InMemoryKeySource
) -> None:
    await service.register_device("dev-x", sae_id="sae-x", expected_digest=FIRMWARE_B)
    dev = SimDevice("dev-x", "sae-x", key_source, firmware_digest=FIRMWARE_A)
    accepted = await submit(service, dev.seal())
    assert not accepted.device_trusted


async def test_preapproved_update_keeps_device_trusted(
    service: NotaryService, device: SimDevice
) -> None:
    await submit(service, device.seal())
    await service.approve_firmware("dev-a", FIRMWARE_B)
    device.firmware_digest = FIRMWARE_B
    accepted = await submit(service, device.seal())
    assert accepted.attestation is DeviceEventKind.DIGEST_CHANGED
    assert accepted.device_trusted


async def test_kme_down_is_unavailable_and_writes_nothing(
    service: NotaryService, device: SimDevice, key_source: InMemoryKeySource
) -> None:
    env = device.seal()
    key_source.available = False
    with pytest.raises(KeysUnavailable) as info:
        await submit(service, env)
    assert info.value.status == 503
    await assert_outbox(service, 0)
    key_source.available = True
    accepted = await submit(service, env)  # keys were not consumed by the failed attempt
    assert accepted.sequence == env.sequence


async def test_concurrent_envelopes_of_one_sae_share_a_kme_call(
    service: NotaryService, key_source: InMemoryKeySource
) -> None:
    coalescing = CoalescingKeySource(key_source, window_s=0.05)
    service.pipeline._keys = coalescing
    hub_devices = []
    for i in range(8):
        await service.register_device(f"hub-{i}", sae_id="sae-hub")
        hub_devices.append(SimDevice(f"hub-{i}", "sae-hub", key_source))
    envelopes = [d.seal() for d in hub_devices]
    # One forged envelope in the same window must not sink its neighbours.
    forged = dataclasses.replace(hub_devices[0].seal(), tag=bytes(16))
    results = await asyncio.gather(
        *(submit(service, e) for e in [*envelopes, forged]), return_exceptions=True
    )
    assert all(not isinstance(r, BaseException) for r in results[:-1])
    assert isinstance(results[-1], AuthenticationFailed)
    # One merged call (9 envelopes) + none extra: the forged tag is only found after
    # decryption, so the merged request itself succeeded.
    assert key_source.calls == 1
    await assert_outbox(service, 8)


async def test_coalescer_falls_back_per_envelope_when_one_key_id_is_unknown(
    service: NotaryService, key_source: InMemoryKeySource
) -> None:
    coalescing = CoalescingKeySource(key_source, window_s=0.05)
    service.pipeline._keys = coalescing
    devs = []
    for i in range(3):
        await service.register_device(f"hub-{i}", sae_id="sae-hub")
        devs.append(SimDevice(f"hub-{i}", "sae-hub", key_source))
    good = [d.seal() for d in devs[:2]]
    # Keys never deposited at the KME: the merged request is refused as a whole.
    bogus = devs[2].seal(keys=fresh_keys(200))
    results = await asyncio.gather(
        *(submit(service, e) for e in [*good, bogus]), return_exceptions=True
    )
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[1], BaseException)
    assert isinstance(results[2], AuthenticationFailed)
    assert results[2].cause == "unknown-key"
    await assert_outbox(service, 2)


async def test_retry_after_an_outbox_failure_succeeds_with_the_same_bytes(
    service: NotaryService, device: SimDevice, key_source: InMemoryKeySource
) -> None:
    store = service.store
    assert isinstance(store, SQLiteStore)
    env = device.seal()
    # A real SQLite write failure: the writer connection refuses writes.
    store._writer_conn.execute("PRAGMA query_only=ON")
    try:
        with pytest.raises(StorageUnavailable) as info:
            await submit(service, env)
        assert info.value.status == 503
    finally:
        store._writer_conn.execute("PRAGMA query_only=OFF")
    calls = key_source.calls
    accepted = await submit(service, env)  # the KME deleted the keys; the notary kept them
    assert accepted.sequence == env.sequence
    assert key_source.calls == calls
    # Only that exact envelope could use them: a forgery naming the same keys cannot.
    forged = dataclasses.replace(env, sequence=env.sequence + 1)
    with pytest.raises(AuthenticationFailed):
        await submit(service, forged)
    await assert_outbox(service, 1)
