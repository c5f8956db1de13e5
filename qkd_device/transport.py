"""How sealed envelopes reach the notary: HTTP or MQTT (paho), blocking or asyncio.

A transport sends the exact bytes of a queued envelope and turns whatever comes back into
an :class:`~qkd_device.core.Answer`; it never retries (the client's policy does) and never
raises for an unreachable notary (that is ``Answer(status=0)``, a transient condition).

HTTP goes through :mod:`qkd_channel.httpio`: urllib3 for the blocking transport; for the
asyncio one, aiohttp when it is installed, else the urllib3 pool in worker threads (see
that module for what each costs). Both read answers through the same functions, so they
cannot drift apart. paho-mqtt is imported only when an MQTT transport is built.
"""

from __future__ import annotations

import email.utils
import hashlib
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from qkd_channel import boundedjson
from qkd_channel.errors import HTTPUnreachable
from qkd_channel.httpio import BlockingHTTP, HTTPReply, async_http, tls_context
from qkd_device.core import Answer
from qkd_device.errors import DeliveryError, RecordNotFound
from qkd_device.queue import QueuedEnvelope
from qkd_device.receipt import Receipt

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

__all__ = [
    "AsyncHTTPTransport",
    "AsyncMQTTTransport",
    "AsyncTransport",
    "HTTPTransport",
    "MQTTTransport",
    "Transport",
    "tls_context",
]

T = TypeVar("T")

#: httpx/requests-style TLS options: ``verify`` (True, a CA path, a context or False) and
#: ``cert`` (a PEM with both, or a ``(certificate, key)`` pair), see ``tls_context``.
Verify = ssl.SSLContext | str | Path | bool
ClientCert = str | Path | tuple[str | Path, str | Path] | None


class Transport(Protocol):
    """Blocking transport used by :class:`~qkd_device.client.DeviceClient`."""

    def submit(self, item: QueuedEnvelope) -> Answer: ...

    def fetch_receipt(self, record_id: str) -> Receipt | None:
        """The record's receipt; ``None`` if the notary cannot be reached right now."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """The asyncio twin used by :class:`~qkd_device.client.AsyncDeviceClient`."""

    async def submit(self, item: QueuedEnvelope) -> Answer: ...

    async def fetch_receipt(self, record_id: str) -> Receipt | None: ...

    async def aclose(self) -> None: ...


_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_ACCEPT = {"Accept": "application/json"}


def _http_answer(response: HTTPReply) -> Answer:
    try:
        body = boundedjson.loads(response.content) if response.content else {}
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


def _receipt(response: HTTPReply, record_id: str) -> Receipt | None:
    if response.status_code == 404:
        raise RecordNotFound(f"the notary has no record {record_id}")
    if response.status_code != 200:
        return None
    return Receipt.from_json(response.content)


class HTTPTransport:
    """``POST /v1/telemetry`` and ``GET /v1/records/{id}`` on the notary's base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        verify: Verify = True,
        cert: ClientCert = None,
    ) -> None:
        context = tls_context(verify, cert)
        self._http = BlockingHTTP(base_url, ssl_context=context, timeout_s=timeout_s)

    def submit(self, item: QueuedEnvelope) -> Answer:
        try:
            reply = self._http.request("POST", "/v1/telemetry", item.body(), _JSON)
        except HTTPUnreachable:
            return Answer(0)
        return _http_answer(reply)

    def fetch_receipt(self, record_id: str) -> Receipt | None:
        try:
            reply = self._http.request("GET", f"/v1/records/{record_id}", None, _ACCEPT)
        except HTTPUnreachable:
            return None
        return _receipt(reply, record_id)

    def close(self) -> None:
        self._http.close()


class AsyncHTTPTransport:
    """The asyncio twin of :class:`HTTPTransport`.

    ``verify``/``cert`` as for :class:`HTTPTransport`. HTTP is
    :func:`~qkd_channel.httpio.async_http` (aiohttp if installed, else urllib3 in worker
    threads); either opens its connections lazily, so the transport can be built outside
    an event loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        verify: Verify = True,
        cert: ClientCert = None,
    ) -> None:
        context = tls_context(verify, cert)
        self._http = async_http(base_url, ssl_context=context, timeout_s=timeout_s)
        self._closed = False

    async def _request(self, method: str, path: str, body: bytes | None = None) -> HTTPReply | None:
        """The answer, or ``None`` if none arrived (refused, reset, timed out)."""
        if self._closed:
            raise DeliveryError("the transport is closed")
        try:
            return await self._http.request(method, path, body, _JSON if body else _ACCEPT)
        except HTTPUnreachable:
            return None

    async def submit(self, item: QueuedEnvelope) -> Answer:
        reply = await self._request("POST", "/v1/telemetry", item.body())
        return Answer(0) if reply is None else _http_answer(reply)

    async def fetch_receipt(self, record_id: str) -> Receipt | None:
        reply = await self._request("GET", f"/v1/records/{record_id}")
        return None if reply is None else _receipt(reply, record_id)

    async def aclose(self) -> None:
        self._closed = True
        await self._http.aclose()


class MQTTTransport:
    """Publish to ``devices/{id}/telemetry`` (QoS 1), read the answer on ``.../receipts``.

    Answers are matched by ``message_digest`` (SHA-256 of the published bytes), which the
    notary's MQTT intake echoes. The receipts topic is not authenticated (anyone allowed to
    publish there could forge an answer), so receipts are fetched over HTTP from
    ``receipts_url`` and, for proof, checked against the chain. ``tls`` (a client context,
    e.g. from :func:`~qkd_channel.httpio.tls_context`) connects to the broker over TLS;
    ``receipts_tls`` is the context for ``receipts_url``.
    """

    def __init__(
        self,
        device_id: str,
        *,
        host: str,
        port: int = 1883,
        answer_timeout_s: float = 10.0,
        receipts_url: str | None = None,
        tls: ssl.SSLContext | None = None,
        receipts_tls: ssl.SSLContext | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt  # only MQTT devices pay for importing paho
        from paho.mqtt.enums import CallbackAPIVersion

        self._device_id = device_id
        self._timeout = answer_timeout_s
        self._answers: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._receipts = (
            HTTPTransport(receipts_url, verify=receipts_tls or True) if receipts_url else None
        )
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{uuid.uuid4().hex[:8]}"
        )
        if tls is not None:
            self._client.tls_set_context(tls)
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
        return await _in_thread(self._sync.submit, item)

    async def fetch_receipt(self, record_id: str) -> Receipt | None:
        return await _in_thread(self._sync.fetch_receipt, record_id)

    async def aclose(self) -> None:
        await _in_thread(self._sync.close)


async def _in_thread(call: Callable[..., T], *args: Any) -> T:
    """``asyncio.to_thread``, imported where it runs: a blocking device never loads asyncio."""
    import asyncio

    return await asyncio.to_thread(call, *args)
