"""The API over a real socket (uvicorn), started and stopped in-process."""

from __future__ import annotations

import httpx

from notary.server import NotaryServer
from notary.service import NotaryService
from tests.notary.conftest import SimDevice


async def test_server_accepts_over_real_http_and_stops_cleanly(
    service: NotaryService, device: SimDevice
) -> None:
    server = NotaryServer(service, port=0)
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post(
                "/v1/telemetry",
                content=device.seal().to_json(),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 202, response.text
            receipt = await client.get(response.json()["receipt_url"])
            assert receipt.status_code == 200
            assert receipt.json()["record_id"] == response.json()["record_id"]
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await server.stop()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            await client.get("/healthz")
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("server still answering after stop()")
