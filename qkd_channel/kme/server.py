"""Running a KME: uvicorn over HTTPS with mutual TLS, in the foreground or in a thread.

The TLS context demands a client certificate from the deployment's CA on every connection
(``CERT_REQUIRED``), and the HTTP protocol is
:class:`~qkd_channel.kme.tls.MTLSHttpToolsProtocol` so the application sees the verified
certificate. A connection without a valid certificate never reaches the application.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from qkd_channel.kme.api import create_app
from qkd_channel.kme.config import KMEConfig
from qkd_channel.kme.source import KeySource
from qkd_channel.kme.tls import MTLSHttpToolsProtocol, server_ssl_context

__all__ = ["KMEServerThread", "bind_socket", "serve", "uvicorn_config"]


def uvicorn_config(
    config: KMEConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    source: KeySource | None = None,
    log_level: str = "info",
) -> uvicorn.Config:
    """A uvicorn configuration serving the KME of ``config`` with mutual TLS."""
    tls = config.tls

    def ssl_context(_config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
        return server_ssl_context(tls.server_cert, tls.server_key, tls.ca)

    return uvicorn.Config(
        create_app(config, source=source),
        host=host,
        port=port,
        http=MTLSHttpToolsProtocol,
        ssl_certfile=tls.server_cert,
        ssl_keyfile=tls.server_key,
        ssl_ca_certs=tls.ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        ssl_context_factory=ssl_context,
        lifespan="on",
        # Idle keep-alive TLS connections (the peer KME's pool) may never answer close_notify;
        # do not let them hold a shutdown for asyncio's 30 s SSL shutdown timeout.
        timeout_graceful_shutdown=2,
        log_level=log_level,
        server_header=False,
    )


def serve(
    config: KMEConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8443,
    source: KeySource | None = None,
    log_level: str = "info",
) -> None:
    """Serve the KME until interrupted (SIGINT/SIGTERM)."""
    uvicorn.Server(
        uvicorn_config(config, host=host, port=port, source=source, log_level=log_level)
    ).run()


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it from ``getsockname()``)."""
    # proto must say TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only
    # when it does, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class KMEServerThread:
    """A KME served from a background thread on an already bound socket.

    For embedding a KME pair in one process (tests, single-machine demos). Use as a context
    manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: KMEConfig,
        sock: socket.socket,
        *,
        source: KeySource | None = None,
        log_level: str = "warning",
    ) -> None:
        host, port = sock.getsockname()[:2]
        self.url = f"https://{host}:{port}"
        self._sock = sock
        self._server = uvicorn.Server(
            uvicorn_config(config, host=host, port=port, source=source, log_level=log_level)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("KME server failed to start")
            time.sleep(0.01)

    def stop(self, timeout: float = 15.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> KMEServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
