"""How sealed envelopes reach the notary: HTTP (httpx) or MQTT (paho), blocking or asyncio.

A transport sends the exact bytes of a queued envelope and turns whatever comes back into
an :class:`~notary.sdk.core.Answer`; it never retries (the client's policy does) and never
raises for an unreachable notary (that is ``Answer(status=0)``, a transient condition).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import threading
import time
import uuid
from typing import Any, Protocol

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from notary.errors import RecordNotFound
from notary.receipts import Receipt
from notary.sdk.core import Answer
from notary.sdk.errors import DeliveryError
from notary.sdk.queue import QueuedEnvelope
from qkd_channel import boundedjson

__all__ = [
    "AsyncHTTPTransport",
    "AsyncMQTTTransport",
    "AsyncTransport",
    "HTTPTransport",
    "MQTTTransport",
    "Transport",
]


class Transport(Protocol):
    """Blocking transport used by :class:`~notary.sdk.client.DeviceClient`."""

    def submit(self, item: QueuedEnvelope) -> Answer: ...

    def fetch_receipt(self, record_id: str) -> Receipt | None:
        """The record's receipt; ``None`` if the notary cannot be reached right now."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The asyncio twin used by :class:`~notary.sdk.client.AsyncDeviceClient`."""

    async def submit(self, item: QueuedEnvelope) -> Answer: ...

    async def fetch_receipt(self, record_id: str) -> Receipt | None: ...

    async def aclose(self) -> None: ...


_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def _http_answer(response: httpx.Response) -> Answer:
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    return Answer(
        response.status_code,
        body if isinstance(body, dict) else {},
        _retry_after(response.headers.get("Retry-After")),
    )


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _receipt(response: httpx.Response, record_id: str) -> Receipt | None:
    if response.status_code == 404:
        raise RecordNotFound(f"the notary has no record {record_id}")
    if response.status_code != 200:
        return None
    return Receipt.model_validate_json(response.content)


class HTTPTransport:
    """``POST /v1/telemetry`` and ``GET /v1/records/{id}`` on the notary's base URL."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, **httpx_options: Any) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, **httpx_options)

    def submit(self, item: QueuedEnvelope) -> Answer:
        try:
            response = self._http.post("/v1/telemetry", content=item.body(), headers=_JSON)
        except httpx.TransportError:
            return Answer(0)
        return _http_answer(response)

    def fetch_receipt(self, record_id: str) -> Receipt | None:
        try:
            response = self._http.get(f"/v1/records/{record_id}")
        except httpx.TransportError:
            return None
        return _receipt(response, record_id)

    def close(self) -> None:
        self._http.close()


class AsyncHTTPTransport:
    """The asyncio twin of :class:`HTTPTransport`."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, **httpx_options: Any) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, **httpx_options)

    async def submit(self, item: QueuedEnvelope) -> Answer:
        try:
            response = await self._http.post("/v1/telemetry", content=item.body(), headers=_JSON)
        except httpx.TransportError:
            return Answer(0)
        return _http_answer(response)

    async def fetch_receipt(self, record_id: str) -> Receipt | None:
        try:
            response = await self._http.get(f"/v1/records/{record_id}")
        except httpx.TransportError:
            return None
        return _receipt(response, record_id)

    async def aclose(self) -> None:
        await self._http.aclose()


class MQTTTransport:
    """Publish to ``devices/{id}/telemetry`` (QoS 1), read the answer on ``.../receipts``.

    Answers are matched by ``message_digest`` (SHA-256 of the published bytes), which the
    notary's MQTT intake echoes. The receipts topic is not authenticated (anyone allowed to
    publish there could forge an answer), so receipts are fetched over HTTP from
    ``receipts_url`` and, for proof, checked against the chain.
    """

    def __init__(
        self,
        device_id: str,
        *,
        host: str,
        port: int = 1883,
        answer_timeout_s: float = 10.0,
        receipts_url: str | None = None,
    ) -> None:
        self._device_id = device_id
        self._timeout = answer_timeout_s
        self._answers: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._receipts = HTTPTransport(receipts_url) if receipts_url else None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{uuid.uuid4().hex[:8]}"
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"devices/{self._device_id}/receipts", qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            answer = boundedjson.loads(msg.payload)
        except ValueError:
            return
        if isinstance(answer, dict) and isinstance(answer.get("message_digest"), str):
            with self._cond:
                self._answers[answer["message_digest"]] = answer
                self._cond.notify_all()

    def submit(self, item: QueuedEnvelope) -> Answer:
        deadline = time.monotonic() + self._timeout
        if not self._subscribed.wait(self._timeout):
            return Answer(0)
        body = item.body()
        digest = hashlib.sha256(body).hexdigest()
        info = self._client.publish(f"devices/{self._device_id}/telemetry", body, qos=1)
        with self._cond:
            while digest not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return Answer(0)
                self._cond.wait(left)
            answer = self._answers.pop(digest)
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        status = answer.get("status")
        retry = answer.get("retry_after")
        return Answer(
            status if isinstance(status, int) else 0,
            answer,
            float(retry) if isinstance(retry, int | float) else None,
        )

    def fetch_receipt(self, record_id: str) -> Receipt | None:
        if self._receipts is None:
            raise DeliveryError("fetching receipts needs the notary's HTTP URL (receipts_url)")
        return self._receipts.fetch_receipt(record_id)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        if self._receipts is not None:
            self._receipts.close()


class AsyncMQTTTransport:
    """:class:`MQTTTransport` for asyncio (paho runs its own network thread)."""

    def __init__(self, device_id: str, **options: Any) -> None:
        self._sync = MQTTTransport(device_id, **options)

    async def submit(self, item: QueuedEnvelope) -> Answer:
        return await asyncio.to_thread(self._sync.submit, item)

    async def fetch_receipt(self, record_id: str) -> Receipt | None:
        return await asyncio.to_thread(self._sync.fetch_receipt, record_id)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._sync.close)
