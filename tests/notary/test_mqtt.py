"""MQTT intake against a real Mosquitto broker: the same pipeline, answers on the
receipts topic, refusals for tampering, replays and topic/sender mismatches, and
redelivery of envelopes published while the notary was offline."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from notary.config import NotarySettings
from notary.mqtt import MQTTIntake
from notary.partition import Partition
from notary.pipeline import IntakePipeline
from notary.service import NotaryService
from qkd_channel.envelope import Envelope
from tests.notary.conftest import Broker, SimDevice


class DeviceLink:
    """A device's MQTT connection: publishes envelopes, collects answers."""

    def __init__(self, broker: Broker, device_id: str) -> None:
        self.device_id = device_id
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{device_id}")
        self.client.on_message = lambda c, u, m: self.answers.put(json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"devices/{device_id}/receipts", qos=1)
        self.client.loop_start()

    def publish(self, payload: bytes, *, topic_device: str | None = None) -> str:
        topic = f"devices/{topic_device or self.device_id}/telemetry"
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)
        return hashlib.sha256(payload).hexdigest()

    async def answer(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.answers.get, True, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def link(mosquitto: Broker) -> Iterator[DeviceLink]:
    dl = DeviceLink(mosquitto, "dev-a")
    try:
        yield dl
    finally:
        dl.close()


@pytest.fixture
async def intake(service: NotaryService, mosquitto: Broker):  # type: ignore[no-untyped-def]
    bridge = MQTTIntake(service.pipeline, host=mosquitto.host, port=mosquitto.port)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


def env_bytes(env: Envelope) -> bytes:
    return env.to_json().encode()


async def test_envelope_over_mqtt_is_accepted_and_answered(
    service: NotaryService, device: SimDevice, intake: MQTTIntake, link: DeviceLink
) -> None:
    await asyncio.sleep(0.2)  # let the device's subscription settle
    digest = link.publish(env_bytes(device.seal()))
    answer = await link.answer()
    assert answer["status"] == 202
    assert answer["message_digest"] == digest
    assert answer["sequence"] == 1 and answer["attestation"] == "first-digest"
    receipt = await service.receipt(answer["record_id"])
    assert receipt.device_id == "dev-a"
    assert service.metrics.accepted.labels("otp", "mqtt")._value.get() == 1


async def test_mqtt_refusals_carry_status_and_reason(
    service: NotaryService, device: SimDevice, intake: MQTTIntake, link: DeviceLink
) -> None:
    await asyncio.sleep(0.2)
    env = device.seal()
    tampered = dataclasses.replace(env, tag=bytes(16))
    link.publish(env_bytes(tampered))
    assert (await link.answer())["status"] == 401
    good = device.seal()
    link.publish(env_bytes(good))
    accepted = await link.answer()
    assert accepted["status"] == 202
    link.publish(env_bytes(good))
    replay = await link.answer()
    assert replay["status"] == 409 and replay["record_id"] == accepted["record_id"]
    link.publish(b"\x00garbage")
    assert (await link.answer())["reason"] == "malformed"
    assert await service.store.outbox_depth() == 1


async def test_topic_must_name_the_sender(
    service: NotaryService,
    device: SimDevice,
    device_b: SimDevice,
    intake: MQTTIntake,
    mosquitto: Broker,
) -> None:
    other = DeviceLink(mosquitto, "dev-b")
    try:
        await asyncio.sleep(0.2)
        # dev-a's genuine envelope injected on dev-b's topic.
        other.publish(env_bytes(device.seal()))
        answer = await other.answer()
        assert answer["status"] == 401 and answer["reason"] == "authentication-failed"
    finally:
        other.close()
    assert await service.store.outbox_depth() == 0


async def test_envelopes_published_while_notary_offline_are_delivered_later(
    service: NotaryService, device: SimDevice, mosquitto: Broker, link: DeviceLink
) -> None:
    # First connection registers the persistent session and subscription.
    bridge = MQTTIntake(service.pipeline, host=mosquitto.host, port=mosquitto.port)
    await bridge.start()
    await bridge.stop()
    envelopes = [device.seal() for _ in range(3)]
    for env in envelopes:
        link.publish(env_bytes(env))
    bridge = MQTTIntake(service.pipeline, host=mosquitto.host, port=mosquitto.port)
    await bridge.start()
    try:
        answers = [await link.answer() for _ in envelopes]
    finally:
        await bridge.stop()
    assert sorted(a["sequence"] for a in answers) == [1, 2, 3]
    assert all(a["status"] == 202 for a in answers)
    assert await service.store.outbox_depth() == 3


class CountingPipeline:
    """The service's pipeline, counting the envelopes one intake instance handed it."""

    def __init__(self, service: NotaryService) -> None:
        self._pipeline = service.pipeline
        self.submitted = 0

    async def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return await self._pipeline.submit(*args, **kwargs)


def member(
    service: NotaryService, broker: Broker, partition: str
) -> tuple[MQTTIntake, CountingPipeline]:
    counting = CountingPipeline(service)
    bridge = MQTTIntake(
        cast(IntakePipeline, counting),
        host=broker.host,
        port=broker.port,
        client_id=f"qkd-notary-{partition.replace('/', 'of')}",
        partition=Partition.parse(partition),
    )
    return bridge, counting


async def test_partitioned_instances_each_handle_their_own_devices_and_lose_none(
    service: NotaryService, device: SimDevice, device_b: SimDevice, mosquitto: Broker
) -> None:
    """Two intake instances, partitions 1/2 and 2/2: every message is handled once, by
    its device's instance, in order even when a device pipelines; while an instance is
    away its devices' messages wait for it and the other's keep flowing."""
    halves = [Partition(1, 2), Partition(2, 2)]
    owner = {
        d.device_id: next(p for p in halves if p.owns(d.device_id)) for d in (device, device_b)
    }
    assert set(owner.values()) == set(halves), "dev-a and dev-b fall in different halves"
    first, first_count = member(service, mosquitto, "1/2")
    second, second_count = member(service, mosquitto, "2/2")
    await first.start()
    await second.start()
    links = {d.device_id: (d, DeviceLink(mosquitto, d.device_id)) for d in (device, device_b)}
    try:
        await asyncio.sleep(0.2)
        for sim, link in links.values():  # three messages in flight per device
            digests = [link.publish(env_bytes(sim.seal())) for _ in range(3)]
            answers = [await link.answer() for _ in digests]
            assert [(a["status"], a["message_digest"], a["sequence"]) for a in answers] == [
                (202, digest, n) for n, digest in enumerate(digests, start=1)
            ]
        assert (first_count.submitted, second_count.submitted) == (3, 3)
        away = next(name for name, p in owner.items() if p == halves[1])
        present = next(name for name, p in owner.items() if p == halves[0])
        await second.stop()  # its session (and subscription) kept by the broker
        later = {name: link.publish(env_bytes(sim.seal())) for name, (sim, link) in links.items()}
        answer = await links[present][1].answer()
        assert (answer["status"], answer["message_digest"]) == (202, later[present])
        await asyncio.sleep(0.3)
        assert links[away][1].answers.empty(), "the away instance's device waits for it"
        second, second_count = member(service, mosquitto, "2/2")
        await second.start()
        answer = await links[away][1].answer()
        assert (answer["status"], answer["message_digest"]) == (202, later[away])
        assert answer["sequence"] == 4 and second_count.submitted == 1
    finally:
        for _, link in links.values():
            link.close()
        await first.stop()
        await second.stop()
    assert first_count.submitted == 4
    assert await service.store.outbox_depth() == 8


def test_partitions_split_devices_stably() -> None:
    halves = [Partition.parse("1/2"), Partition.parse("2/2")]
    devices = [f"meter-{i}" for i in range(200)]
    owners = [[p for p in halves if p.owns(d)] for d in devices]
    assert all(len(o) == 1 for o in owners), "each device has exactly one owner"
    assert 60 < sum(o[0] == halves[0] for o in owners) < 140
    # SHA-256("dev-a") is even: a fixed rule, not Python's per-process hash.
    assert halves[0].owns("dev-a") and str(halves[1]) == "2/2"
    for bad in ("", "1", "0/2", "3/2", "a/b", "1/2/3", "-1/2"):
        with pytest.raises(ValueError):
            Partition.parse(bad)


def test_a_bad_partition_setting_is_refused_at_configuration(tmp_path: Path) -> None:
    assert NotarySettings(data_dir=tmp_path, mqtt_partition="2/3").mqtt_partition == "2/3"
    with pytest.raises(ValueError, match="k/n"):
        NotarySettings(data_dir=tmp_path, mqtt_partition="3/2")
