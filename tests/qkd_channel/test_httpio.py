"""The device side's HTTP: urllib3 pools, the asyncio faces (worker threads, aiohttp), and
what callers rely on: answers whatever their status, no answer as ``HTTPUnreachable``,
no retries, idle kept-alive connections dropped before the server drops them."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from qkd_channel import httpio
from qkd_channel.errors import HTTPUnreachable, KMERequestRejected
from qkd_channel.httpio import (
    AiohttpAsyncHTTP,
    AsyncHTTP,
    BlockingHTTP,
    ThreadedAsyncHTTP,
    async_http,
    client_ssl_context,
)
from qkd_channel.kme.certs import sae_paths
from qkd_channel.kme.client import AsyncKMEClient
from tests.notary.sdk_stack import free_port
from tests.qkd_channel.conftest import KMEPair


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with its path; remembers the client port of each request."""

    protocol_version = "HTTP/1.1"  # keep-alive
    ports: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        Recorder.ports.append(self.client_address[1])
        body = self.path.encode()
        self.send_response(418)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    Recorder.ports = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_any_status_is_an_answer_and_the_base_path_is_kept(recorder: str) -> None:
    http = BlockingHTTP(recorder + "/api/")
    reply = http.request("GET", "/v1/x")
    http.close()
    assert reply.status_code == 418 and reply.content == b"/api/v1/x"


def test_idle_connections_are_closed_before_the_server_would(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(httpio.time, "monotonic", lambda: now[0])
    http = BlockingHTTP(recorder)
    http.request("GET", "/a")
    now[0] += httpio.IDLE_CLOSE_S - 0.5
    http.request("GET", "/b")
    now[0] += httpio.IDLE_CLOSE_S
    http.request("GET", "/c")
    http.close()
    first, second, third = Recorder.ports
    assert first == second  # reused while fresh
    assert third != second  # a new connection after the idle limit


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:80", "https:///path"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        BlockingHTTP(url)


def _faces(url: str) -> list[AsyncHTTP]:
    return [ThreadedAsyncHTTP(url, timeout_s=2), AiohttpAsyncHTTP(url, timeout_s=2)]


async def test_no_answer_is_http_unreachable_without_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(HTTPUnreachable) as blocking:
        BlockingHTTP(url, timeout_s=2).request("GET", "/")
    assert "127.0.0.1" not in str(blocking.value)
    for face in _faces(url):
        with pytest.raises(HTTPUnreachable):
            await face.request("GET", "/")
        await face.aclose()


async def test_both_asyncio_faces_answer_alike(recorder: str) -> None:
    for face in _faces(recorder):
        reply = await face.request("GET", "/same")
        await face.aclose()
        assert (reply.status_code, reply.content) == (418, b"/same")
        with pytest.raises(HTTPUnreachable):
            await face.request("GET", "/after-close")


def test_aiohttp_is_used_where_it_is_installed() -> None:
    assert isinstance(async_http("http://127.0.0.1:1"), AiohttpAsyncHTTP)


@pytest.mark.parametrize("face", ["threads", "aiohttp"])
async def test_async_kme_client_round_trip_over_either_face(kme_pair: KMEPair, face: str) -> None:
    kme_pair.feed()
    pki: Path = kme_pair.pki
    clients = []
    for end, sae in (("a", "device-1"), ("b", "notary")):
        cert, key = sae_paths(pki, sae)
        context = client_ssl_context(cert, key, pki / "ca.crt")
        url = kme_pair.urls[end]
        http: AsyncHTTP = (
            ThreadedAsyncHTTP(url, ssl_context=context)
            if face == "threads"
            else AiohttpAsyncHTTP(url, ssl_context=context)
        )
        clients.append(AsyncKMEClient(url, cert=cert, key=key, ca=pki / "ca.crt", http=http))
    device, notary = clients
    async with device, notary:
        keys = await device.enc_keys("notary", number=2)
        assert await notary.dec_keys("device-1", [k.key_id for k in keys]) == keys
        with pytest.raises(KMERequestRejected):
            await notary.dec_keys("device-1", [keys[0].key_id])
