"""How sealed envelopes reach the notary: HTTP or MQTT (paho), blocking or asyncio.

A transport sends the exact bytes of a queued envelope and turns whatever comes back into
an :class:`~notary.sdk.core.Answer`; it never retries (the client's policy does) and never
raises for an unreachable notary (that is ``Answer(status=0)``, a transient condition).

The blocking HTTP transport uses httpx; the asyncio one uses aiohttp, because it sits on
the path of every envelope of a fleet driven from one process (an edge hub, the load
generator of ``scripts/bench_notary.py``): on the benchmark machine an httpx/httpcore
``POST`` cost the client ~2.5 ms of CPU, an aiohttp one ~0.4 ms. Both read answers
through the same functions, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from notary.errors import RecordNotFound
from notary.receipts import Receipt
from notary.sdk.core import Answer
from notary.sdk.errors import DeliveryError
from notary.sdk.queue import QueuedEnvelope
from qkd_channel import boundedjson
from qkd_channel.http_reply import HTTPReply

__all__ = [
    "IDLE_CLOSE_S",
    "AsyncHTTPTransport",
    "AsyncMQTTTransport",
    "AsyncTransport",
    "HTTPTransport",
    "MQTTTransport",
    "Transport",
    "tls_context",
]

#: The asyncio transport closes a kept-alive connection idle this long, before the notary
#: (uvicorn: 5 s keep-alive) closes it itself. Reusing a connection the server is closing
#: at that very moment fails the ``POST``: harmless (the same bytes are resent), but a
#: wasted round trip and a needless backoff.
IDLE_CLOSE_S = 4.0


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
        return _http_answer(HTTPReply.of(response))

    def fetch_receipt(self, record_id: str) -> Receipt | None:
        try:
            response = self._http.get(f"/v1/records/{record_id}")
        except httpx.TransportError:
            return None
        return _receipt(HTTPReply.of(response), record_id)

    def close(self) -> None:
        self._http.close()


def tls_context(
    verify: ssl.SSLContext | str | Path | bool = True,
    cert: str | Path | tuple[str | Path, str | Path] | None = None,
) -> ssl.SSLContext | bool:
    """The ``ssl`` argument of aiohttp for httpx-style ``verify``/``cert`` options.

    ``verify``: ``True`` (system CAs), a CA bundle path, a ready context, or ``False`` (no
    server verification, for tests only). ``cert``: a client certificate for mutual TLS,
    a PEM file holding certificate and key or a ``(certificate, key)`` pair; it is loaded
    into the context (also into one passed as ``verify``, as httpx does).
    """
    if verify is False:
        if cert is not None:
            raise ValueError("a client certificate needs verify=True, a CA path or a context")
        return False
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True:
        if cert is None:
            return True  # aiohttp's default verifying context
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=str(verify))
    if cert is not None:
        certfile, keyfile = cert if isinstance(cert, tuple) else (cert, None)
        context.load_cert_chain(certfile, keyfile)
    return context


class AsyncHTTPTransport:
    """The asyncio twin of :class:`HTTPTransport` (aiohttp).

    ``verify``/``cert`` take the httpx forms (see :func:`tls_context`). Connections are
    kept alive and reused. The aiohttp session is opened on the first request, inside the event
    loop that uses it, so the transport can be built outside one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        verify: ssl.SSLContext | str | Path | bool = True,
        cert: str | Path | tuple[str | Path, str | Path] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._ssl = tls_context(verify, cert)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise DeliveryError("the transport is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, keepalive_timeout=IDLE_CLOSE_S),
                timeout=self._timeout,
            )
        return self._session

    async def _request(self, method: str, path: str, body: bytes | None = None) -> HTTPReply | None:
        """The answer, or ``None`` if none arrived (refused, reset, timed out)."""
        http = self._http()
        headers = _JSON if body is not None else None
        try:
            async with http.request(
                method, self._base_url + path, data=body, headers=headers
            ) as reply:
                return HTTPReply(reply.status, reply.headers, await reply.read())
        except (TimeoutError, aiohttp.ClientError):
            return None

    async def submit(self, item: QueuedEnvelope) -> Answer:
        reply = await self._request("POST", "/v1/telemetry", item.body())
        return Answer(0) if reply is None else _http_answer(reply)

    async def fetch_receipt(self, record_id: str) -> Receipt | None:
        reply = await self._request("GET", f"/v1/records/{record_id}")
        return None if reply is None else _receipt(reply, record_id)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


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
