"""Run a :class:`~notary.service.NotaryService` behind uvicorn, in-process or as a daemon.

:class:`NotaryServer` binds (port 0 picks a free port), starts the service's background
work, serves the API, and on :meth:`~NotaryServer.stop` (or SIGINT/SIGTERM in
:meth:`~NotaryServer.serve_forever`) stops accepting, lets requests in flight finish and
closes the service, so everything answered 202 is durable and the outbox resumes on the
next start. ``qkd-notary serve`` is ``asyncio.run(NotaryServer(service, ...).serve_forever())``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Generator

import uvicorn

from notary.api.main import create_app
from notary.logging import configure_logging
from notary.service import NotaryService

__all__ = ["NotaryServer"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class NotaryServer:
    """The HTTP API (and MQTT intake, anchoring worker) of one service."""

    def __init__(self, service: NotaryService, *, host: str = "127.0.0.1", port: int = 0):
        self.service = service
        self._host = host
        self._port = port
        config = uvicorn.Config(
            create_app(service),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL once started (with the real port when 0 was asked for)."""
        if self._socket is None:
            raise RuntimeError("server not started")
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> str:
        """Bind, start the service's background work and serve; return the base URL."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto must name TCP: asyncio sets TCP_NODELAY on accepted connections only then,
        # and without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.set_inheritable(True)
        self._socket = sock
        await self.service.start()
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise a startup failure
                raise RuntimeError("uvicorn stopped during startup")
            await asyncio.sleep(0.01)
        return self.url

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight, close the service."""
        if self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None
        await self.service.aclose()
        if self._socket is not None:
            self._socket.close()

    async def serve_forever(self) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully (JSON logs on stderr)."""
        configure_logging(self.service.settings.log_level)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()
