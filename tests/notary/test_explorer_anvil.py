"""The explorer on a JSON-RPC chain (anvil) rather than the embedded one: the same pages,
on-chain verification and decoding work over plain HTTP JSON-RPC."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from notary.anchoring import AnchoringWorker
from notary.api import create_app
from notary.chain.client import ChainClient
from notary.config import AnchorMode, NotarySettings
from notary.keysource import InMemoryKeySource
from notary.service import NotaryService
from tests.conftest import AnvilFactory, AnvilNode
from tests.notary.conftest import NOTARY_ID, fleet, sqlite_service


@pytest.fixture
def node(anvil_factory: AnvilFactory) -> Iterator[AnvilNode]:
    anvil = anvil_factory()
    try:
        yield anvil
    finally:
        anvil.stop()


@pytest.fixture
async def anvil_service(
    tmp_path: Path, key_source: InMemoryKeySource, anvil_chain: ChainClient
) -> AsyncIterator[NotaryService]:
    settings = NotarySettings(data_dir=tmp_path / "notary", notary_id=NOTARY_ID)
    svc = sqlite_service(settings, key_source, chain=anvil_chain)
    try:
        yield svc
    finally:
        await svc.aclose()


async def test_pages_and_verification_work_on_anvil(
    anvil_service: NotaryService,
    key_source: InMemoryKeySource,
    anvil_chain: ChainClient,
    node: AnvilNode,
) -> None:
    devices = await fleet(anvil_service, key_source, 2)
    record_ids = []
    for dev in devices * 2:
        sealed = dev.seal().to_json().encode()
        record_ids.append((await anvil_service.pipeline.submit(sealed)).record_id)
    worker = AnchoringWorker(anvil_service.store, anvil_chain, mode=AnchorMode.MERKLE)
    await worker.drain()
    transport = httpx.ASGITransport(app=create_app(anvil_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://notary.test") as c:
        dashboard = await c.get("/explorer/")
        assert dashboard.status_code == 200 and "JSON-RPC node" in dashboard.text
        assert f'href="/explorer/blocks/{anvil_chain.block_number()}"' in dashboard.text
        for record_id in record_ids:
            page = await c.get(f"/explorer/records/{record_id}", params={"verify_onchain": "true"})
            assert "VERIFIED" in page.text
            results = dict(
                re.findall(r'data-check="([a-z-]+)">.*?"result">([^<]+)<', page.text, re.S)
            )
            assert results["proof"] == "passed" and results["state"] == "passed"
        anchor = (await c.get(f"/v1/records/{record_ids[0]}")).json()["anchor"]
        tx = await c.get(f"/explorer/tx/{anchor['tx_hash']}")
        assert "TelemetryNotary.anchorRoot" in tx.text and 'data-event="RootAnchored"' in tx.text
        found = await c.get(
            "/explorer/search", params={"q": str(anchor["block_number"])}, follow_redirects=True
        )
        assert found.status_code == 200 and anchor["tx_hash"] in found.text
        device = await c.get(f"/explorer/devices/{devices[0].device_id}")
        assert 'id="onchain-attestations"' in device.text

        # The node goes away: pages still answer, and a receipt is never shown as FAILED
        # because the chain could not be asked.
        node.stop()
        dashboard = await c.get("/explorer/")
        assert dashboard.status_code == 200 and "unreachable" in dashboard.text
        page = await c.get(f"/explorer/records/{record_ids[0]}", params={"verify_onchain": "true"})
        assert page.status_code == 200 and 'id="chain-error"' in page.text
        assert "FAILED" not in page.text and "VERIFIED" not in page.text
        receipt = (await c.get(f"/v1/records/{record_ids[0]}")).text
        pasted = await c.post("/explorer/verify", data={"receipt": receipt})
        assert pasted.status_code == 503 and "FAILED" not in pasted.text
        assert (await c.get(f"/explorer/tx/{anchor['tx_hash']}")).status_code == 503
        device = await c.get(f"/explorer/devices/{devices[0].device_id}")
        assert device.status_code == 200 and "Chain unreachable" in device.text
