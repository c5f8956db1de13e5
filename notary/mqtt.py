"""MQTT intake: envelopes on ``devices/{id}/telemetry``, answers on ``devices/{id}/receipts``.

The same :class:`~notary.pipeline.IntakePipeline` as the HTTP API runs on every message;
the topic's device ID must equal the envelope's (authenticated) sender. Each answer is a
JSON object carrying the HTTP-equivalent ``status`` and ``message_digest`` (SHA-256 of
the published payload) so a device can match answers to messages::

    {"status": 202, "message_digest": "...", "record_id": "0x...", "sequence": 7,
     "device_trusted": true, "attestation": null}
    {"status": 409, "message_digest": "...", "reason": "replay", "title": "...",
     "detail": "...", "record_id": "0x..."}

Delivery: the notary subscribes with QoS 1 on a persistent session (fixed client ID,
``clean_session=False``) and acknowledges a message only after the pipeline finished with
it, so an envelope published while the notary is down or crashing is redelivered by the
broker, never lost.

Several instances: each connects with its own client ID and owns one partition ``k/n``
of the devices (:class:`~notary.partition.Partition`: SHA-256 of the device ID modulo
``n``). Every instance receives every message and acknowledges the others' at once,
unread. A device thus always meets the same instance, which keeps its sequence order and
its aead session (cached per instance) intact; MQTT's shared subscriptions (``$share/``)
would deal one device's messages to several instances. While an instance is away, the
broker keeps its devices' messages in its persistent session until it reconnects:
delayed, never lost (tested against Mosquitto). Change ``n`` with the intake drained.

The receipts topic is a convenience channel: anyone who can publish
there could forge an answer, so devices confirm records through the HTTP receipt or the
chain, which is what a receipt is for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from concurrent.futures import Future
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from notary.errors import NotaryError, ReplayDetected, ServiceUnavailable
from notary.logging import log_event
from notary.partition import Partition
from notary.pipeline import IntakePipeline

__all__ = ["RECEIPT_TOPIC", "TELEMETRY_TOPIC", "MQTTIntake", "answer_topic"]

TELEMETRY_TOPIC = "devices/+/telemetry"
RECEIPT_TOPIC = "devices/{device_id}/receipts"

log = logging.getLogger("notary.mqtt")


def answer_topic(device_id: str) -> str:
    return RECEIPT_TOPIC.format(device_id=device_id)


class MQTTIntake:
    """Bridge between an MQTT broker and the intake pipeline running on an asyncio loop."""

    def __init__(
        self,
        pipeline: IntakePipeline,
        *,
        host: str,
        port: int = 1883,
        client_id: str = "qkd-notary",
        partition: Partition | None = None,
        keepalive_s: int = 30,
        retry_after_s: int = 2,
    ) -> None:
        self._pipeline = pipeline
        self._retry_after_s = retry_after_s
        self._host = host
        self._port = port
        self._keepalive = keepalive_s
        self._partition = partition
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = threading.Event()
        self._inflight: set[Future[None]] = set()
        self._lock = threading.Lock()
        # Messages of one device are processed in arrival order (sequence numbers must
        # rise); asyncio locks are FIFO, and tasks reach them in scheduling order.
        self._device_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, *, timeout_s: float = 10.0) -> None:
        """Connect (in paho's network thread) and wait until subscribed."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self._client.loop_start()
        ok = await asyncio.to_thread(self._connected.wait, timeout_s)
        if not ok:
            await self.stop()
            raise ServiceUnavailable(f"MQTT broker {self._host}:{self._port} not reachable")

    async def stop(self) -> None:
        """Finish messages in flight, then disconnect."""
        with self._lock:
            pending = list(self._inflight)
        for fut in pending:
            await asyncio.wrap_future(fut)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._connected.clear()

    # -- paho callbacks (network thread) ---------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log_event(log, logging.WARNING, "MQTT connection refused", code=str(reason_code))
            return
        client.subscribe(TELEMETRY_TOPIC, qos=1)
        self._connected.set()
        owned = (
            "all" if self._partition is None else f"{self._partition.index}/{self._partition.count}"
        )
        log_event(log, logging.INFO, "MQTT intake subscribed", topic=TELEMETRY_TOPIC, devices=owned)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) != 3 or self._loop is None:
            client.ack(message.mid, message.qos)
            return
        if self._partition is not None and not self._partition.owns(parts[1]):
            client.ack(message.mid, message.qos)  # another instance's device
            return
        fut = asyncio.run_coroutine_threadsafe(
            self._handle(parts[1], bytes(message.payload), message.mid, message.qos), self._loop
        )
        with self._lock:
            self._inflight.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future[None]) -> None:
        with self._lock:
            self._inflight.discard(fut)

    # -- on the asyncio loop ---------------------------------------------------------
    async def _handle(self, device_id: str, payload: bytes, mid: int, qos: int) -> None:
        lock, users = self._device_locks.setdefault(device_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                await self._process(device_id, payload, mid, qos)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._device_locks[device_id]

    async def _process(self, device_id: str, payload: bytes, mid: int, qos: int) -> None:
        answer: dict[str, Any] = {"message_digest": hashlib.sha256(payload).hexdigest()}
        try:
            accepted = await self._pipeline.submit(
                payload, channel="mqtt", topic_device_id=device_id
            )
        except NotaryError as exc:
            answer.update(status=exc.status, reason=exc.reason, title=exc.title, detail=exc.detail)
            if isinstance(exc, ReplayDetected) and exc.record_id:
                answer["record_id"] = exc.record_id
            if isinstance(exc, ServiceUnavailable):
                answer["retry_after"] = exc.retry_after_s or self._retry_after_s
        else:
            answer.update(
                status=202,
                record_id=accepted.record_id,
                sequence=accepted.sequence,
                device_trusted=accepted.device_trusted,
                attestation=None if accepted.attestation is None else accepted.attestation.value,
            )
        self._client.publish(answer_topic(device_id), json.dumps(answer), qos=1)
        # Acknowledge only now: a crash before this point makes the broker redeliver.
        self._client.ack(mid, qos)
