"""Reliability with real processes: a notary killed with SIGKILL mid-load, the chain node
stopped mid-load, the notary's KME down. Every record answered 202 must end up on-chain
exactly once, and devices using the SDK must lose nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qkd_device import AsyncDeviceClient, DeliveryReceipt, DeviceClient, HTTPTransport, RetryPolicy
from qkd_device.core import Answer
from qkd_device.queue import QueuedEnvelope
from tests.conftest import AnvilFactory
from tests.notary.sdk_stack import (
    FIRMWARE,
    NotaryProcess,
    Stack,
    init_on_node,
    make_pki,
    record_stored_counts,
    running_stack,
)

PASSWORD = "reliability"
DEVICES = 4
PATIENT = RetryPolicy(initial_s=0.1, max_s=1.0, deadline_s=120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("rel-pki"), devices=DEVICES)


@pytest.fixture
def stack(pki: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, pki, blocks=16) as s:
        yield s


async def fleet(
    stack: Stack, root: Path, messages: int, acks: list[DeliveryReceipt], pause_s: float = 0.03
) -> None:
    """``DEVICES`` SDK clients sending ``messages`` each, concurrently."""
    kmes = [stack.async_device_kme(f"sae-{i}") for i in range(DEVICES)]
    clients = [
        AsyncDeviceClient(
            f"dev-{i}",
            kme=kmes[i],
            notary=stack.notary_url,
            firmware_digest=FIRMWARE,
            queue_dir=root / f"queue-{i}",
            retry=PATIENT,
        )
        for i in range(DEVICES)
    ]

    async def run(client: AsyncDeviceClient) -> None:
        for n in range(messages):
            acks.append(await client.send({"n": n}))
            await asyncio.sleep(pause_s)

    try:
        await asyncio.gather(*(run(c) for c in clients))
    finally:
        for client in clients:
            await client.aclose()
        for kme in kmes:
            await kme.aclose()


def wait_all_anchored(stack: Stack, record_ids: set[str], timeout_s: float = 90) -> None:
    pending = set(record_ids)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=stack.notary_url, timeout=10) as http:
        while pending and time.monotonic() < deadline:
            for record_id in list(pending):
                if http.get(f"/v1/records/{record_id}").json()["status"] == "anchored":
                    pending.discard(record_id)
            time.sleep(0.3)
    assert not pending, f"{len(pending)} record(s) never anchored"


async def wait_for(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def served_on(stack: Stack, rpc_url: str) -> NotaryProcess:
    init_on_node(stack, rpc_url, PASSWORD)
    extra = ("--chain-rpc-url", rpc_url, "--anchor-mode", "batch", "--batch-size", "8")
    notary = NotaryProcess(stack, password=PASSWORD, extra=extra)
    notary.start()
    for i in range(DEVICES):
        stack.register(f"dev-{i}", f"sae-{i}")
    return notary


@pytest.mark.slow
async def test_kill_9_of_the_notary_loses_and_duplicates_nothing(
    stack: Stack, tmp_path: Path, anvil_factory: AnvilFactory
) -> None:
    node = anvil_factory()
    notary = served_on(stack, node.url)
    acks: list[DeliveryReceipt] = []
    try:
        sending = asyncio.create_task(fleet(stack, tmp_path, 12, acks))
        await wait_for(lambda: len(acks) >= 12, 60)
        notary.kill()  # SIGKILL: no graceful shutdown, requests in flight are cut off
        killed_at = len(acks)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(notary.start)
        await sending
        assert killed_at < DEVICES * 12 == len(acks)
        record_ids = {a.record_id for a in acks}
        assert len(record_ids) == len(acks)
        await asyncio.to_thread(wait_all_anchored, stack, record_ids)
    finally:
        notary.stop()
    counts = record_stored_counts(node.url, stack.settings.data_dir)
    assert set(counts) == record_ids
    assert set(counts.values()) == {1}  # every record exactly once on-chain


@pytest.mark.slow
async def test_chain_node_outage_keeps_intake_open_and_the_outbox_drains(
    stack: Stack, tmp_path: Path, anvil_factory: AnvilFactory
) -> None:
    node = anvil_factory(state_file=tmp_path / "anvil-state.json")
    notary = served_on(stack, node.url)
    acks: list[DeliveryReceipt] = []
    try:
        sending = asyncio.create_task(fleet(stack, tmp_path, 10, acks, pause_s=0.05))
        await wait_for(lambda: len(acks) >= 8, 60)
        await asyncio.to_thread(node.stop)  # graceful: anvil dumps its state file
        down_at = len(acks)
        await wait_for(lambda: len(acks) >= down_at + 12, 30)  # intake keeps answering 202
        depth = httpx.get(f"{stack.notary_url}/metrics").text
        await asyncio.to_thread(node.start)  # reloads the dumped state
        await sending
        record_ids = {a.record_id for a in acks}
        assert len(record_ids) == DEVICES * 10
        await asyncio.to_thread(wait_all_anchored, stack, record_ids)
    finally:
        notary.stop()
    assert "notary_outbox_depth" in depth
    counts = record_stored_counts(node.url, stack.settings.data_dir)
    assert set(counts) == record_ids and set(counts.values()) == {1}


class KMEOutage:
    """A transport that takes the notary's KME down just before the first delivery and
    brings it back ``outage_s`` later; it records every answer the notary gave."""

    def __init__(self, stack: Stack, outage_s: float) -> None:
        self.stack = stack
        self.outage_s = outage_s
        self.inner = HTTPTransport(stack.notary_url)
        self.answers: list[tuple[float, Answer]] = []
        self.timer: threading.Timer | None = None

    def submit(self, item: QueuedEnvelope) -> Answer:
        if self.timer is None:
            self.stack.kmes.stop("b")
            self.timer = threading.Timer(self.outage_s, self.stack.kmes.start, args=("b",))
            self.timer.start()
        answer = self.inner.submit(item)
        self.answers.append((time.monotonic(), answer))
        return answer

    def fetch_receipt(self, record_id: str):  # type: ignore[no-untyped-def]
        return self.inner.fetch_receipt(record_id)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.join()
        self.inner.close()


def test_kme_outage_is_a_503_with_retry_after_and_the_sdk_delivers_later(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_notary()
    stack.register("dev-0", "sae-0")
    outage = KMEOutage(stack, outage_s=2.5)
    with DeviceClient(
        "dev-0",
        kme=stack.device_kme("sae-0"),
        notary=outage,
        firmware_digest=FIRMWARE,
        queue_dir=tmp_path / "q",
        retry=RetryPolicy(initial_s=0.2, max_s=1.0, deadline_s=30),
    ) as dev:
        ack = dev.send({"temp_c": 4.0})
    statuses = [a.status for _, a in outage.answers]
    assert statuses[0] == 503 and statuses[-1] == 202
    first_time, first = outage.answers[0]
    assert first.body["reason"] == "kme-unavailable" and first.retry_after is not None
    assert outage.answers[1][0] - first_time >= first.retry_after  # Retry-After honoured
    assert ack.sequence == 1 and not ack.resent
    receipt = httpx.get(f"{stack.notary_url}/v1/records/{ack.record_id}").json()
    assert receipt["device_id"] == "dev-0"
