"""The peer link's verdicts decide whether reserved bits may be put back: only a request that
provably never left may count as NOT_SENT; anything that failed after the connection was up
is UNKNOWN (the bits are burned). Tested against real TLS servers that misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from qkd_channel.kme.certs import kme_client_paths, kme_server_paths
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.peer import PeerLink, SyncOutcome
from qkd_channel.kme.server import bind_socket
from qkd_channel.kme.store import KeyAllocation, Segment
from qkd_channel.kme.tls import client_ssl_context, server_ssl_context

ALLOCATION = KeyAllocation(
    "6f1c8a52-8f4e-4c1e-9c7a-3f0d2b1e5a77", "device-1", ("notary",), (Segment("blk", 0, 32),)
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _link(pki: Path, url: str) -> PeerLink:
    cert, key = kme_client_paths(pki, "kme-a")
    context = client_ssl_context(cert, key, pki / "ca.crt")
    return PeerLink(url, kme_id="kme-a", end=LinkEnd.A, ssl_context=context, timeout=0.5)


@pytest.fixture
async def serve(kme_pki: Path) -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a TLS server that demands a client certificate, as KME B's does."""
    cert, key = kme_server_paths(kme_pki, "kme-b")
    context = server_ssl_context(cert, key, kme_pki / "ca.crt")
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        sock = bind_socket()
        server = await asyncio.start_server(handler, sock=sock, ssl=context)
        servers.append(server)
        return f"https://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def cleanup() -> AsyncIterator[list[PeerLink]]:
    links: list[PeerLink] = []
    yield links
    for link in links:
        await link.aclose()


async def test_nobody_listening_is_not_sent(kme_pki: Path, cleanup: list[PeerLink]) -> None:
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    link = _link(kme_pki, f"https://127.0.0.1:{port}")
    cleanup.append(link)
    assert (await link.send_allocations([ALLOCATION])).outcome is SyncOutcome.NOT_SENT


async def test_connection_closed_after_the_request_is_unknown(
    kme_pki: Path, serve: Callable[[Handler], Awaitable[str]], cleanup: list[PeerLink]
) -> None:
    received = asyncio.Event()

    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request reached the peer
        received.set()
        writer.close()

    link = _link(kme_pki, await serve(read_then_hang_up))
    cleanup.append(link)
    assert (await link.send_allocations([ALLOCATION])).outcome is SyncOutcome.UNKNOWN
    assert received.is_set()


async def test_no_answer_in_time_is_unknown(
    kme_pki: Path, serve: Callable[[Handler], Awaitable[str]], cleanup: list[PeerLink]
) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # until the client gives up and closes
        writer.close()

    link = _link(kme_pki, await serve(never_answer))
    cleanup.append(link)
    assert (await link.send_allocations([ALLOCATION])).outcome is SyncOutcome.UNKNOWN


async def test_a_4xx_answer_is_refused_with_its_error_body(
    kme_pki: Path, serve: Callable[[Handler], Awaitable[str]], cleanup: list[PeerLink]
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"message": "block not received yet", "details": [{"reason": "unknown_block"}]}'
        writer.write(
            b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    link = _link(kme_pki, await serve(refuse))
    cleanup.append(link)
    result = await link.send_allocations([ALLOCATION])
    assert result.outcome is SyncOutcome.REFUSED and result.status_code == 409
    assert result.error is not None and result.error.details == [{"reason": "unknown_block"}]
