"""HTTP for the device side: urllib3 connection pools, and an asyncio face for them.

The KME client and the device SDK's notary transport speak HTTP through this one module,
so a device install needs nothing but urllib3 (no httpx, no aiohttp). Shapes:

* :class:`BlockingHTTP`: one kept-alive urllib3 pool per base URL;
* :class:`ThreadedAsyncHTTP`: the same pool driven from ``asyncio`` through a small pool
  of worker threads (a device sends one message at a time; a hub a few dozen at once);
* :class:`AiohttpAsyncHTTP`: aiohttp, when it is installed (the ``server`` extra brings
  it). It costs about a sixth of the CPU per request of the threaded face, which matters
  to a process driving hundreds of devices (the demo, ``scripts/bench_notary.py``), not
  to a device; :func:`async_http` picks it when available.

``asyncio`` is imported inside the coroutines (where whoever runs the event loop has long
loaded it), not at the top: a blocking device never loads it, which saves about a fifth
of the SDK's import time.

Every face answers with an :class:`HTTPReply` or raises
:class:`~qkd_channel.errors.HTTPUnreachable` (no answer at all: refused, reset, TLS
failure, timeout). None retries: retry policy belongs to the callers, which know whether
a request may be repeated (a lost ``enc_keys`` answer spends keys).
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import urllib3

from qkd_channel.errors import HTTPUnreachable

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "IDLE_CLOSE_S",
    "AiohttpAsyncHTTP",
    "AsyncHTTP",
    "BlockingHTTP",
    "HTTPReply",
    "ThreadedAsyncHTTP",
    "async_http",
    "client_ssl_context",
    "tls_context",
]

#: Kept-alive connections idle this long are closed before the next request, ahead of the
#: server (uvicorn: 5 s keep-alive) closing them itself: a request written onto a
#: connection the server is closing at that very moment gets no answer, and for
#: ``enc_keys`` a lost answer means spent keys.
IDLE_CLOSE_S = 4.0


@dataclass(frozen=True)
class HTTPReply:
    """Status, headers and body of an HTTP answer, whichever client fetched it."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def client_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """A TLS >= 1.2 client context presenting ``cert`` and trusting only ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # ETSI GS QKD 014 clause 5.1
    context.load_cert_chain(cert, key)
    return context


def tls_context(
    verify: ssl.SSLContext | str | Path | bool = True,
    cert: str | Path | tuple[str | Path, str | Path] | None = None,
) -> ssl.SSLContext:
    """An SSL context from requests/httpx-style ``verify`` and ``cert`` options.

    ``verify``: ``True`` (system CAs), a CA bundle path, a ready context, or ``False`` (no
    server verification, for tests only). ``cert``: a client certificate for mutual TLS,
    a PEM file holding certificate and key or a ``(certificate, key)`` pair; it is loaded
    into the context (also into one passed as ``verify``, as httpx does).
    """
    if verify is False:
        if cert is not None:
            raise ValueError("a client certificate needs verify=True, a CA path or a context")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True:
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=str(verify))
    if cert is not None:
        certfile, keyfile = cert if isinstance(cert, tuple) else (cert, None)
        context.load_cert_chain(certfile, keyfile)
    return context


def _unreachable(exc: BaseException) -> HTTPUnreachable:
    # The exception's type names the failure (ConnectionRefused, SSLError, timeout...);
    # its text can hold the URL, which is not a secret but is not needed either.
    return HTTPUnreachable(f"no answer: {type(exc).__name__}")


class BlockingHTTP:
    """Requests to one base URL over a kept-alive urllib3 pool (thread-safe)."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        maxsize: int = 1,
    ) -> None:
        url = urllib3.util.parse_url(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._base_url = base_url
        self._prefix = (url.path or "").rstrip("/")
        self._options: dict[str, Any] = {
            "timeout": urllib3.Timeout(timeout_s),
            "maxsize": maxsize,
            "retries": False,
        }
        if url.scheme == "https":
            self._options["ssl_context"] = ssl_context or ssl.create_default_context()
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._last_used = time.monotonic()

    def _new_pool(self) -> urllib3.HTTPConnectionPool:
        return urllib3.connection_from_url(self._base_url, **self._options)

    def _fresh_pool(self) -> urllib3.HTTPConnectionPool:
        """The pool, emptied first if its connections sat idle for :data:`IDLE_CLOSE_S`."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_used >= IDLE_CLOSE_S:
                self._pool.close()
                self._pool = self._new_pool()
            self._last_used = now
            return self._pool

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTTPReply:
        """Send one request; the answer whatever its status, or ``HTTPUnreachable``."""
        pool = self._fresh_pool()
        try:
            response = pool.urlopen(
                method,
                self._prefix + path,
                body=body,
                headers=dict(headers or {}),
                redirect=False,
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _unreachable(exc) from exc
        return HTTPReply(response.status, response.headers, response.data)

    def close(self) -> None:
        with self._lock:
            self._pool.close()


class AsyncHTTP(Protocol):
    """What the asyncio clients need of an HTTP client."""

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTTPReply: ...

    async def aclose(self) -> None: ...


class ThreadedAsyncHTTP:
    """:class:`BlockingHTTP` for asyncio: each request runs in one of ``concurrency``
    worker threads, so at most that many are in flight at once."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        concurrency: int = 8,
    ) -> None:
        self._http = BlockingHTTP(
            base_url, ssl_context=ssl_context, timeout_s=timeout_s, maxsize=concurrency
        )
        self._workers = ThreadPoolExecutor(concurrency, thread_name_prefix="qkd-http")
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTTPReply:
        if self._closed:
            raise HTTPUnreachable("the HTTP client is closed")
        import asyncio  # loaded by whoever runs the loop; see the module docstring

        call = functools.partial(self._http.request, method, path, body, headers)
        return await asyncio.get_running_loop().run_in_executor(self._workers, call)

    async def aclose(self) -> None:
        import asyncio

        self._closed = True
        await asyncio.to_thread(self._workers.shutdown)
        self._http.close()


class AiohttpAsyncHTTP:
    """The same requests over aiohttp (installed with the ``server`` extra).

    Connections are kept alive and reused (up to 100 at once). The session is opened on
    the first request, inside the event loop that uses it, so the client can be built
    outside one.
    """

    def __init__(
        self, base_url: str, *, ssl_context: ssl.SSLContext | None = None, timeout_s: float = 10.0
    ) -> None:
        import aiohttp  # optional: only the server extra installs it

        self._aiohttp = aiohttp
        self._base_url = base_url.rstrip("/")
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise HTTPUnreachable("the HTTP client is closed")
        if self._session is None:
            connector = self._aiohttp.TCPConnector(ssl=self._ssl, keepalive_timeout=IDLE_CLOSE_S)
            self._session = self._aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTTPReply:
        http = self._http()
        try:
            async with http.request(
                method, self._base_url + path, data=body, headers=headers
            ) as reply:
                return HTTPReply(reply.status, reply.headers, await reply.read())
        except (TimeoutError, self._aiohttp.ClientError) as exc:
            raise _unreachable(exc) from exc

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def async_http(
    base_url: str, *, ssl_context: ssl.SSLContext | None = None, timeout_s: float = 10.0
) -> AsyncHTTP:
    """aiohttp when it is installed, else urllib3 in worker threads (a device install)."""
    if find_spec("aiohttp") is not None:
        return AiohttpAsyncHTTP(base_url, ssl_context=ssl_context, timeout_s=timeout_s)
    return ThreadedAsyncHTTP(base_url, ssl_context=ssl_context, timeout_s=timeout_s)
