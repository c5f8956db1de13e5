"""SAE-side client of a KME's ETSI GS QKD 014 API, over HTTPS with mutual TLS.

``KMEClient`` (blocking) and ``AsyncKMEClient`` (asyncio) are twins (``close``/``aclose``);
both build requests and read answers through the same functions, so they cannot drift
apart. They speak HTTP through :mod:`qkd_channel.httpio` (urllib3; aiohttp for the asyncio
twin when it is installed) and read answers with the standard library, so a device
install needs neither pydantic nor an async HTTP stack. Answers are turned into exceptions
at this boundary::

    KMEError
    ├── KMERequestRejected   400 (``message``, ``details`` from the standard error body)
    ├── KMEUnauthorized      401
    ├── KMEUnavailable       503, or the KME could not be reached (``stock``, ``retry_after``)
    └── KMEProtocolError     anything else, or an answer not shaped as the standard says
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from qkd_channel import boundedjson
from qkd_channel.errors import (
    HTTPUnreachable,
    KMEProtocolError,
    KMERequestRejected,
    KMEUnauthorized,
    KMEUnavailable,
)
from qkd_channel.httpio import (
    IDLE_CLOSE_S,
    AsyncHTTP,
    BlockingHTTP,
    HTTPReply,
    async_http,
    client_ssl_context,
)
from qkd_channel.keys import QKDKey

__all__ = ["IDLE_CLOSE_S", "AsyncKMEClient", "KMEClient", "KeyStatus"]

_PREFIX = "/api/v1/keys"
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class KeyStatus:
    """The Status object of ETSI GS QKD 014 (clause 6.1), with Python names."""

    source_kme_id: str
    target_kme_id: str
    master_sae_id: str
    slave_sae_id: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_sae_id_count: int
    #: The optional vendor object (``status_extension``); ``None`` when the KME sent none.
    #: This project's KMEs report what feeds their key buffer there (``key_path``).
    status_extension: dict[str, Any] | None = None


#: The standard's field name for each :class:`KeyStatus` attribute, and its JSON type.
_STATUS_FIELDS: dict[str, tuple[str, type]] = {
    "source_kme_id": ("source_KME_ID", str),
    "target_kme_id": ("target_KME_ID", str),
    "master_sae_id": ("master_SAE_ID", str),
    "slave_sae_id": ("slave_SAE_ID", str),
    "key_size": ("key_size", int),
    "stored_key_count": ("stored_key_count", int),
    "max_key_count": ("max_key_count", int),
    "max_key_per_request": ("max_key_per_request", int),
    "max_key_size": ("max_key_size", int),
    "min_key_size": ("min_key_size", int),
    "max_sae_id_count": ("max_SAE_ID_count", int),
}


def _object(content: bytes, what: str) -> dict[str, Any]:
    try:
        body = boundedjson.loads(content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise KMEProtocolError(f"KME answer is not a valid {what}")
    return body


def _typed(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise KMEProtocolError(f"KME answer is not a valid {what}")
    return value


def _status(response: HTTPReply) -> KeyStatus:
    body = _object(_checked(response).content, "Status")
    values = {
        attr: _typed(body, name, kind, "Status") for attr, (name, kind) in _STATUS_FIELDS.items()
    }
    extension = body.get("status_extension")
    return KeyStatus(**values, status_extension=extension if isinstance(extension, dict) else None)


def _keys(
    response: HTTPReply, expected: int, expected_ids: list[str] | None = None
) -> list[QKDKey]:
    container = _object(_checked(response).content, "KeyContainer")
    keys = [_key(item) for item in _typed(container, "keys", list, "KeyContainer")]
    if len(keys) != expected:
        raise KMEProtocolError(f"KME sent {len(keys)} keys, {expected} were asked for")
    if expected_ids is not None and sorted(k.key_id for k in keys) != sorted(
        _canonical_key_id(i) for i in expected_ids
    ):
        raise KMEProtocolError("KME sent keys other than the ones asked for")
    return keys


def _key(item: Any) -> QKDKey:
    if not isinstance(item, dict):
        raise KMEProtocolError("KME answer is not a valid KeyContainer")
    key_id = _typed(item, "key_ID", str, "KeyContainer")
    material = _typed(item, "key", str, "KeyContainer")
    try:
        return QKDKey(key_id, base64.b64decode(material, validate=True))
    except (ValueError, binascii.Error):
        raise KMEProtocolError(
            "KME sent a key that is not base64 or a key_ID that is not a UUID"
        ) from None


def _canonical_key_id(key_id: str) -> str:
    try:
        return str(uuid.UUID(key_id))
    except ValueError:
        return key_id


def _error_body(content: bytes) -> tuple[str, list[dict[str, object]]] | None:
    """``message`` and ``details`` of the standard error body (clause 6.5), if it is one."""
    try:
        body = boundedjson.loads(content)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return None
    details = body.get("details", [])
    if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
        return None
    return body["message"], details


def _checked(response: HTTPReply) -> HTTPReply:
    """Return a 200 answer; raise the matching ``KMEError`` for anything else."""
    code = response.status_code
    if code == 200:
        return response
    message, details = _error_body(response.content) or (
        f"HTTP {code} without the standard error body",
        [],
    )
    if code == 400:
        raise KMERequestRejected(message, details)
    if code == 401:
        raise KMEUnauthorized(message, details)
    if code == 503:
        counts = [d.get("stored_key_count") for d in details]
        stock = next((c for c in counts if isinstance(c, int) and not isinstance(c, bool)), None)
        retry_after: float | None
        try:
            retry_after = float(response.headers["Retry-After"])
        except (KeyError, TypeError, ValueError):
            retry_after = None
        raise KMEUnavailable(message, details, stock=stock, retry_after=retry_after)
    raise KMEProtocolError(f"KME answered HTTP {code}: {message}")


def _enc_body(number: int, size: int, additional: Iterable[str]) -> dict[str, object]:
    body: dict[str, object] = {"number": number, "size": size}
    extra = list(additional)
    if extra:
        body["additional_slave_SAE_IDs"] = extra
    return body


def _dec_body(key_ids: list[str]) -> dict[str, object]:
    return {"key_IDs": [{"key_ID": k} for k in key_ids]}


def _request_body(body: dict[str, object] | None) -> tuple[bytes | None, dict[str, str]]:
    if body is None:
        return None, {"Accept": "application/json"}
    return json.dumps(body, separators=(",", ":")).encode(), _JSON_HEADERS


def _unreachable(exc: HTTPUnreachable) -> KMEUnavailable:
    return KMEUnavailable(f"KME unreachable: {exc}")


class KMEClient:
    """Blocking client of one KME, authenticated by the SAE's client certificate."""

    def __init__(
        self,
        base_url: str,
        *,
        cert: Path | str,
        key: Path | str,
        ca: Path | str,
        timeout: float = 10.0,
    ) -> None:
        context = client_ssl_context(Path(cert), Path(key), Path(ca))
        #: Where the KME is reached (its host says whether keys cross a network).
        self.base_url = base_url
        self._http = BlockingHTTP(base_url, ssl_context=context, timeout_s=timeout)

    def _send(self, method: str, url: str, body: dict[str, object] | None = None) -> HTTPReply:
        try:
            return self._http.request(method, url, *_request_body(body))
        except HTTPUnreachable as exc:
            raise _unreachable(exc) from exc

    def status(self, slave_sae_id: str) -> KeyStatus:
        """Get status: stock and limits for keys shared with ``slave_sae_id``."""
        return _status(self._send("GET", f"{_PREFIX}/{slave_sae_id}/status"))

    def enc_keys(
        self,
        slave_sae_id: str,
        *,
        number: int = 1,
        size: int = 256,
        additional_slave_sae_ids: Iterable[str] = (),
    ) -> list[QKDKey]:
        """Get key (as master SAE): ``number`` new keys of ``size`` bits shared with the slaves."""
        body = _enc_body(number, size, additional_slave_sae_ids)
        return _keys(self._send("POST", f"{_PREFIX}/{slave_sae_id}/enc_keys", body), number)

    def dec_keys(self, master_sae_id: str, key_ids: Iterable[str]) -> list[QKDKey]:
        """Get key with key IDs (as slave SAE): the keys ``master_sae_id`` obtained."""
        ids = [str(k) for k in key_ids]
        response = self._send("POST", f"{_PREFIX}/{master_sae_id}/dec_keys", _dec_body(ids))
        return _keys(response, len(ids), ids)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KMEClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncKMEClient:
    """The ``asyncio`` twin of :class:`KMEClient`.

    Its HTTP is :func:`~qkd_channel.httpio.async_http`: aiohttp when installed (kept-alive
    connections, up to 100 at once), else the blocking pool in worker threads. Either is
    opened lazily, so the client can be built outside an event loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        cert: Path | str,
        key: Path | str,
        ca: Path | str,
        timeout: float = 10.0,
        http: AsyncHTTP | None = None,
    ) -> None:
        if http is None:
            context = client_ssl_context(Path(cert), Path(key), Path(ca))
            http = async_http(base_url, ssl_context=context, timeout_s=timeout)
        #: Where the KME is reached (its host says whether keys cross a network).
        self.base_url = base_url
        self._http = http
        self._closed = False

    async def _send(
        self, method: str, url: str, body: dict[str, object] | None = None
    ) -> HTTPReply:
        if self._closed:
            raise KMEUnavailable("KME client is closed")
        try:
            return await self._http.request(method, url, *_request_body(body))
        except HTTPUnreachable as exc:
            raise _unreachable(exc) from exc

    async def status(self, slave_sae_id: str) -> KeyStatus:
        """Get status: stock and limits for keys shared with ``slave_sae_id``."""
        return _status(await self._send("GET", f"{_PREFIX}/{slave_sae_id}/status"))

    async def enc_keys(
        self,
        slave_sae_id: str,
        *,
        number: int = 1,
        size: int = 256,
        additional_slave_sae_ids: Iterable[str] = (),
    ) -> list[QKDKey]:
        """Get key (as master SAE): ``number`` new keys of ``size`` bits shared with the slaves."""
        body = _enc_body(number, size, additional_slave_sae_ids)
        return _keys(await self._send("POST", f"{_PREFIX}/{slave_sae_id}/enc_keys", body), number)

    async def dec_keys(self, master_sae_id: str, key_ids: Iterable[str]) -> list[QKDKey]:
        """Get key with key IDs (as slave SAE): the keys ``master_sae_id`` obtained."""
        ids = [str(k) for k in key_ids]
        response = await self._send("POST", f"{_PREFIX}/{master_sae_id}/dec_keys", _dec_body(ids))
        return _keys(response, len(ids), ids)

    async def aclose(self) -> None:
        self._closed = True
        await self._http.aclose()

    async def __aenter__(self) -> AsyncKMEClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
