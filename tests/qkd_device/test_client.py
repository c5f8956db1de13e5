"""Device SDK against real KMEs and a real notary: delivery, key use, retries, the queue.

The "power cycle" tests end a client without a clean shutdown (a child process killed with
SIGKILL) and check that a new client on the same queue directory delivers the very same
envelope, spending no new key.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notary.config import create_kem_key
from qkd_channel.envelope import Mode, keys_needed
from qkd_channel.hybrid import KEMPrivateKey
from qkd_channel.keys import QKDKey
from qkd_channel.kme.config import KeyLimits
from qkd_device import (
    AsyncDeviceClient,
    DeliveryPending,
    DeliveryRejected,
    DeviceClient,
    QueueError,
    RetryPolicy,
    SendQueue,
)
from qkd_device.core import Answer, KeyPlan, seal_item
from qkd_device.queue import QueuedEnvelope
from qkd_device.records import build_document, record_id
from tests.notary.sdk_stack import FIRMWARE, NOTARY_SAE, Stack, make_pki, running_stack

FAST = RetryPolicy(initial_s=0.05, max_s=0.2, deadline_s=1.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("sdk-pki"))


@pytest.fixture
def stack(pki: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, pki, devices=2) as s:
        yield s


def client(stack: Stack, tmp_path: Path, **kwargs: object) -> DeviceClient:
    options: dict[str, object] = {
        "kme": stack.device_kme("sae-0"),
        "notary": stack.notary_url,
        "firmware_digest": FIRMWARE,
        "queue_dir": tmp_path / "queue-0",
        "retry": FAST,
        "notary_sae_id": NOTARY_SAE,
    }
    options.update(kwargs)
    return DeviceClient("dev-0", **options)  # type: ignore[arg-type]


def notary_device(stack: Stack, device_id: str) -> dict[str, object]:
    response = httpx.get(f"{stack.notary_url}/v1/devices/{device_id}")
    response.raise_for_status()
    return dict(response.json())


def test_send_delivers_with_the_minimum_key_and_names_the_record(
    stack: Stack, tmp_path: Path
) -> None:
    with client(stack, tmp_path) as dev:
        first = dev.send({"temp_c": 21.5})
        second = dev.send({"temp_c": 21.7})
        pending = dev.queue.pending()
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.device_trusted is True and first.attestation == "first-digest"
    assert not first.resent and not pending
    plaintext = build_document(FIRMWARE, {"temp_c": 21.5}, key_delivery="local")
    # One key per message, exactly len + 32 bytes rounded up to whole KME key bits.
    assert dev.stats.key_bytes == 2 * keys_needed(Mode.OTP, len(plaintext))
    assert notary_device(stack, "dev-0")["last_sequence"] == 2
    receipt = httpx.get(f"{stack.notary_url}/v1/records/{first.record_id}").json()
    assert receipt["device_id"] == "dev-0" and receipt["sequence"] == 1
    assert receipt["mode"] == "otp"
    # Device and notary reach their KMEs on loopback and say so; these KMEs are filled by
    # hand, not by a QKD link, so they report no link and the record claims none.
    assert receipt["key_path"] == {"link": "unreported", "device": "local", "notary": "local"}
    assert receipt["security"]["confidentiality"] == "computational"


def test_payload_above_the_kme_max_key_size_is_sealed_with_several_keys(
    pki: Path, tmp_path: Path
) -> None:
    limits = KeyLimits(key_size=256, min_key_size=64, max_key_size=1024, buffer_bits=400_000)
    with running_stack(tmp_path, pki, devices=1, limits=limits) as s:
        with client(s, tmp_path) as dev:
            ack = dev.send({"samples": list(range(150))})
        receipt = httpx.get(f"{s.notary_url}/v1/records/{ack.record_id}").json()
    needed = keys_needed(Mode.OTP, len(dev.document({"samples": list(range(150))})))
    assert needed * 8 > 1024
    assert len(receipt["key_ids"]) == -(-needed * 8 // 1024)
    assert needed <= dev.stats.key_bytes < needed + len(receipt["key_ids"])


def test_aead_mode_reuses_one_session_key_and_rotates_it(stack: Stack, tmp_path: Path) -> None:
    with client(stack, tmp_path, mode="aead", aead_max_messages=2) as dev:
        acks = [dev.send({"n": n}) for n in range(3)]
    assert [a.mode for a in acks] == [Mode.AEAD] * 3
    # Messages 1-2 share a session key, message 3 needed a new one: 2 x 32 bytes.
    assert dev.stats.key_bytes == 64
    keys = [
        httpx.get(f"{stack.notary_url}/v1/records/{a.record_id}").json()["key_ids"] for a in acks
    ]
    assert keys[0] == keys[1] != keys[2]


def test_hybrid_mode_encapsulates_once_per_session_to_the_pinned_notary_key(
    stack: Stack, tmp_path: Path
) -> None:
    stack.stop_notary()
    pinned, _ = create_kem_key(stack.settings)  # what qkd-notary init does
    stack.start_notary()
    with client(stack, tmp_path, mode="hybrid", notary_kem_key=pinned, aead_max_messages=2) as dev:
        acks = [dev.send({"n": n}) for n in range(3)]
    assert [a.mode for a in acks] == [Mode.HYBRID] * 3
    assert dev.stats.key_bytes == 64  # QKD key as in aead: 32 bytes a session
    receipts = [httpx.get(f"{stack.notary_url}/v1/records/{a.record_id}").json() for a in acks]
    assert receipts[0]["key_ids"] == receipts[1]["key_ids"] != receipts[2]["key_ids"]
    assert all(r["payload_hash"] == a.payload_hash for r, a in zip(receipts, acks, strict=True))
    # Sealed to another ML-KEM key, the notary refuses it for good (and says nothing more).
    stranger = KEMPrivateKey.generate().public_key
    with (
        client(stack, tmp_path, mode="hybrid", notary_kem_key=stranger) as dev,
        pytest.raises(DeliveryRejected) as info,
    ):
        dev.send({"n": 9})
    assert info.value.status == 401


def test_hybrid_mode_without_a_pinned_key_is_refused_before_any_key_is_spent(
    stack: Stack, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="ML-KEM public key"):
        client(stack, tmp_path, mode="hybrid")


def test_unreachable_notary_leaves_the_envelope_queued(stack: Stack, tmp_path: Path) -> None:
    stack.stop_notary()
    with client(stack, tmp_path) as dev:
        with pytest.raises(DeliveryPending) as info:
            dev.send({"temp_c": 20.0})
        queued = dev.queue.pending()
    assert info.value.pending == 1 and len(queued) == 1
    assert dev.stats.retries >= 2


def test_reopened_client_resends_the_same_envelope_without_new_keys(
    stack: Stack, tmp_path: Path
) -> None:
    stack.stop_notary()
    with client(stack, tmp_path) as dev, pytest.raises(DeliveryPending):
        dev.send({"temp_c": 20.0})
    (queued,) = SendQueue(tmp_path / "queue-0", device_id="dev-0").pending()
    stack.start_notary()
    with client(stack, tmp_path) as dev:
        delivered = dev.flush()
        assert dev.stats.key_bytes == 0
    assert [d.record_id for d in delivered] == [queued.record_id]
    receipt = httpx.get(f"{stack.notary_url}/v1/records/{queued.record_id}").json()
    assert receipt["key_ids"] == list(queued.envelope.key_ids)


_CHILD = textwrap.dedent(
    """
    import sys
    from qkd_device import DeviceClient, RetryPolicy
    from tests.notary.sdk_stack import FIRMWARE, Stack
    from qkd_channel.kme.client import KMEClient
    from qkd_channel.kme.certs import sae_paths
    from pathlib import Path

    pki, kme_url, notary_url, queue = sys.argv[1:5]
    cert, key = sae_paths(Path(pki), "sae-0")
    kme = KMEClient(kme_url, cert=cert, key=key, ca=Path(pki) / "ca.crt")
    dev = DeviceClient("dev-0", kme=kme, notary=notary_url, firmware_digest=FIRMWARE,
                       queue_dir=queue, retry=RetryPolicy(initial_s=0.05, max_s=0.1,
                       deadline_s=600))
    dev.send({"reading": 1})  # the notary is down: this retries until the process is killed
    """
)


def test_power_cycle_during_delivery_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    stack.stop_notary()
    queue_dir = tmp_path / "queue-0"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(stack.pki),
            stack.kmes.urls["a"],
            stack.notary_url,
            str(queue_dir),
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while not list((queue_dir / "pending").glob("*.json")):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # let it retry a few times
    finally:
        child.send_signal(signal.SIGKILL)  # power cut: no cleanup, no flush, lock held
        child.wait()
    stack.start_notary()
    with client(stack, tmp_path) as dev:
        (queued,) = dev.queue.pending()
        delivered = dev.flush()
        again = dev.send({"reading": 2})
    assert [d.record_id for d in delivered] == [queued.record_id]
    assert again.sequence == queued.sequence + 1
    assert notary_device(stack, "dev-0")["last_sequence"] == again.sequence


class LosingTransport:
    """Delivers for real but loses the first answer, as a dropped connection would."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.lost = False

    def submit(self, item: QueuedEnvelope) -> Answer:
        answer: Answer = self.inner.submit(item)  # type: ignore[attr-defined]
        if not self.lost:
            self.lost = True
            return Answer(0)
        return answer

    def fetch_receipt(self, rid: str):  # type: ignore[no-untyped-def]
        return self.inner.fetch_receipt(rid)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_lost_answer_is_recovered_from_the_replay_answer(stack: Stack, tmp_path: Path) -> None:
    from qkd_device import HTTPTransport

    transport = LosingTransport(HTTPTransport(stack.notary_url))
    with client(stack, tmp_path, notary=transport) as dev:
        ack = dev.send({"temp_c": 19.0})
    assert ack.resent and dev.stats.delivered == 1 and dev.stats.retries == 1
    assert notary_device(stack, "dev-0")["last_sequence"] == 1


def test_final_refusal_moves_the_envelope_to_dead_letters(stack: Stack, tmp_path: Path) -> None:
    with client(stack, tmp_path, notary_id="another-notary") as dev:
        with pytest.raises(DeliveryRejected) as info:
            dev.send({"temp_c": 19.0})
        assert not dev.queue.pending()
        (dead,) = dev.queue.rejected()
    assert info.value.status == 401 and info.value.reason == "authentication-failed"
    assert dead["answer"]["status"] == 401


def test_unregistered_device_is_refused(stack: Stack, tmp_path: Path) -> None:
    with (
        DeviceClient(
            "dev-2",
            kme=stack.device_kme("sae-2"),
            notary=stack.notary_url,
            firmware_digest=FIRMWARE,
            queue_dir=tmp_path / "q2",
            retry=FAST,
        ) as dev,
        pytest.raises(DeliveryRejected) as info,
    ):
        dev.send({"x": 1})
    assert info.value.status == 401


def test_a_queue_directory_serves_one_client_and_one_device(tmp_path: Path) -> None:
    first = SendQueue(tmp_path / "q", device_id="dev-0")
    try:
        with pytest.raises(QueueError, match="in use"):
            SendQueue(tmp_path / "q", device_id="dev-0")
    finally:
        first.close()
    with pytest.raises(QueueError, match="another device"):
        SendQueue(tmp_path / "q", device_id="dev-9")


def test_sequence_numbers_are_never_handed_out_twice(tmp_path: Path) -> None:
    queue = SendQueue(tmp_path / "q", device_id="dev-0")
    taken = [queue.reserve_sequence() for _ in range(3)]
    queue.close()  # no explicit save: every reservation is already durable
    reopened = SendQueue(tmp_path / "q", device_id="dev-0")
    assert taken == [1, 2, 3] and reopened.reserve_sequence() == 4
    reopened.close()
    state = json.loads((tmp_path / "q" / "state.json").read_text())
    assert state == {"device_id": "dev-0", "next_sequence": 5}
    assert oct(os.stat(tmp_path / "q" / "state.json").st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "q").st_mode & 0o777) == "0o700"


def test_bad_telemetry_is_refused_before_any_key_is_spent(stack: Stack, tmp_path: Path) -> None:
    with client(stack, tmp_path) as dev:
        with pytest.raises(TypeError):
            dev.send([1, 2, 3])  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            dev.send({"t": float("nan")})
        assert dev.stats.key_bytes == 0 and dev.queue.next_sequence == 1
    with pytest.raises(ValueError, match="firmware digest"):
        client(stack, tmp_path, firmware_digest="F" * 64)


class ScriptedTransport:
    """Answers from a script, then delegates: exercises the retry policy exactly."""

    def __init__(self, inner: object, script: list[Answer]) -> None:
        self.inner = inner
        self.script = script

    def submit(self, item: QueuedEnvelope) -> Answer:
        if self.script:
            return self.script.pop(0)
        answer: Answer = self.inner.submit(item)  # type: ignore[attr-defined]
        return answer

    def fetch_receipt(self, rid: str):  # type: ignore[no-untyped-def]
        return self.inner.fetch_receipt(rid)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_retry_after_is_a_floor_for_the_backoff(stack: Stack, tmp_path: Path) -> None:
    from qkd_device import HTTPTransport

    waits: list[float] = []
    script = [Answer(503, {"reason": "kme-unavailable"}, 3.0), Answer(0)]
    transport = ScriptedTransport(HTTPTransport(stack.notary_url), script)
    policy = RetryPolicy(initial_s=0.01, max_s=0.05, deadline_s=60)
    with client(stack, tmp_path, notary=transport, retry=policy, sleep=waits.append) as dev:
        ack = dev.send({"temp_c": 18.0})
    assert ack.sequence == 1
    assert len(waits) == 2 and 3.0 <= waits[0] <= 3.6 and waits[1] <= 0.05


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_s=0.1, max_s=2.0, multiplier=2.0)
    rng = random.Random(7)
    for attempt in range(12):
        cap = min(2.0, 0.1 * 2**attempt)
        waits = {policy.delay(attempt, None, rng) for _ in range(50)}
        assert all(cap / 2 <= w <= cap for w in waits)
        assert len(waits) > 1  # jittered, not lock-step


@pytest.mark.parametrize("key_stock", [1, 4])
async def test_async_client_keeps_per_device_order_under_concurrent_sends(
    stack: Stack, tmp_path: Path, key_stock: int
) -> None:
    kme = stack.async_device_kme("sae-1")
    async with (
        kme,
        AsyncDeviceClient(
            "dev-1",
            kme=kme,
            notary=stack.notary_url,
            firmware_digest=FIRMWARE,
            queue_dir=tmp_path / "aq",
            retry=FAST,
            key_stock=key_stock,
        ) as dev,
    ):
        acks = await asyncio.gather(*(dev.send({"n": n}) for n in range(8)))
    assert dev.stats.key_bytes_dropped == 0  # with a stock of 4: two refills, every key used
    assert sorted(a.sequence for a in acks) == list(range(1, 9))
    assert all(a.record_id == record_id("dev-1", a.sequence, _key_ids(stack, a)) for a in acks)
    assert notary_device(stack, "dev-1")["last_sequence"] == 8


def _key_ids(stack: Stack, ack: object) -> list[str]:
    rid = ack.record_id  # type: ignore[attr-defined]
    return list(httpx.get(f"{stack.notary_url}/v1/records/{rid}").json()["key_ids"])


@given(
    nbytes=st.integers(0, 200_000),
    min_bytes=st.integers(1, 64),
    max_factor=st.integers(1, 512),
    per_request=st.integers(1, 128),
)
def test_key_plan_covers_the_need_within_kme_limits(
    nbytes: int, min_bytes: int, max_factor: int, per_request: int
) -> None:
    plan = KeyPlan(8 * min_bytes, 8 * min_bytes * max_factor, per_request)
    try:
        requests = plan.requests(nbytes)
    except ValueError:
        assert -(-8 * nbytes // plan.max_key_size) > 64  # more keys than an envelope names
        return
    count = sum(n for n, _ in requests)
    sizes = {size for _, size in requests}
    (size,) = sizes
    assert all(1 <= n <= per_request for n, _ in requests)
    assert plan.min_key_size <= size <= plan.max_key_size and size % 8 == 0
    assert count * size >= 8 * nbytes
    # Waste: at most rounding to whole bytes per key, or the KME's minimum key size.
    assert count * size < 8 * max(nbytes, 1) + count * 8 or size == plan.min_key_size


async def test_mqtt_transport_delivers_through_the_notary_intake(
    stack: Stack, tmp_path: Path, mosquitto: object
) -> None:
    from notary.mqtt import MQTTIntake
    from notary.service import NotaryService
    from qkd_device import AsyncMQTTTransport

    stack.stop_notary()
    service = NotaryService.open(stack.settings)
    intake = MQTTIntake(
        service.pipeline,
        host=mosquitto.host,  # type: ignore[attr-defined]
        port=mosquitto.port,  # type: ignore[attr-defined]
    )
    await intake.start()
    kme = stack.async_device_kme("sae-0")
    transport = AsyncMQTTTransport(
        "dev-0",
        host=mosquitto.host,  # type: ignore[attr-defined]
        port=mosquitto.port,  # type: ignore[attr-defined]
        answer_timeout_s=5,
    )
    try:
        async with (
            kme,
            AsyncDeviceClient(
                "dev-0",
                kme=kme,
                notary=transport,
                firmware_digest=FIRMWARE,
                queue_dir=tmp_path / "mq",
                retry=FAST,
            ) as dev,
        ):
            acks = [await dev.send({"n": n}) for n in range(3)]
            with pytest.raises(DeliveryRejected) as info:
                dev.firmware_digest = "0" * 64
                dev.notary_id = "elsewhere"
                await dev.send({"n": 3})
    finally:
        await intake.stop()
        await service.aclose()
    assert [a.sequence for a in acks] == [1, 2, 3]
    assert acks[0].attestation == "first-digest" and acks[0].device_trusted is True
    assert info.value.status == 401


class CrashingNotary:
    """Acts like a notary that fetched the envelope's keys from its KME (spending them)
    and crashed before storing the record: no answer. Later attempts go through."""

    def __init__(self, stack: Stack) -> None:
        from qkd_channel.kme.certs import sae_paths
        from qkd_channel.kme.client import KMEClient
        from qkd_device import HTTPTransport

        cert, key = sae_paths(stack.pki, NOTARY_SAE)
        self.notary_kme = KMEClient(
            stack.kmes.urls["b"], cert=cert, key=key, ca=stack.pki / "ca.crt"
        )
        self.inner = HTTPTransport(stack.notary_url)
        self.crashed = False

    def submit(self, item: QueuedEnvelope) -> Answer:
        if not self.crashed:
            self.crashed = True
            self.notary_kme.dec_keys("sae-0", item.envelope.key_ids)
            return Answer(0)
        return self.inner.submit(item)

    def fetch_receipt(self, rid: str):  # type: ignore[no-untyped-def]
        return self.inner.fetch_receipt(rid)

    def close(self) -> None:
        self.notary_kme.close()
        self.inner.close()


def test_reading_is_resealed_once_when_a_crashed_notary_lost_its_keys(
    stack: Stack, tmp_path: Path
) -> None:
    with client(stack, tmp_path, notary=CrashingNotary(stack)) as dev:
        ack = dev.send({"temp_c": 5.0})
        assert not dev.queue.pending() and not dev.queue.rejected()
    assert dev.stats.resealed == 1 and dev.stats.delivered == 1
    assert ack.sequence == 2  # sequence 1 was the lost envelope
    receipt = httpx.get(f"{stack.notary_url}/v1/records/{ack.record_id}").json()
    assert receipt["sequence"] == 2
    assert notary_device(stack, "dev-0")["last_sequence"] == 2


def test_a_401_on_a_first_attempt_is_final_not_resealed(stack: Stack, tmp_path: Path) -> None:
    with client(stack, tmp_path, notary_id="another-notary") as dev:
        with pytest.raises(DeliveryRejected):
            dev.send({"temp_c": 5.0})
        assert dev.stats.resealed == 0 and dev.stats.key_bytes > 0


def test_queue_in_memory_view_matches_what_a_reopen_reads_from_disk(tmp_path: Path) -> None:
    """The queue mirrors its pending entries in memory; after puts, deliveries and a dead
    letter, a fresh open of the directory must find exactly the same entries."""
    queue = SendQueue(tmp_path / "q", device_id="dev-0")
    items = []
    for n in range(5):
        plaintext = build_document(FIRMWARE, {"n": n})
        key = QKDKey(str(uuid.uuid4()), os.urandom(keys_needed(Mode.OTP, len(plaintext))))
        item = seal_item(
            plaintext,
            device_id="dev-0",
            notary_id="notary",
            sequence=queue.reserve_sequence(),
            mode=Mode.OTP,
            keys=[key],
        )
        queue.put(item)
        items.append(item)
    queue.done(items[0])
    queue.dead_letter(items[2], {"status": 401})
    in_memory = [(i.sequence, i.record_id, i.body()) for i in queue.pending()]
    queue.close()
    reopened = SendQueue(tmp_path / "q", device_id="dev-0")
    on_disk = [(i.sequence, i.record_id, i.body()) for i in reopened.pending()]
    reopened.close()
    assert in_memory == on_disk
    assert [s for s, _, _ in on_disk] == [2, 4, 5]
