"""Telemetry stays private: an attacker who fetches everything the notary serves without
a token (API, explorer pages, the embedded chain's JSON-RPC, metrics) and tries 10^4
candidate readings against every payload hash, with every 32-byte value they saw as a
possible salt, recovers nothing. An auditor's token recovers the reading at once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from eth_hash.auto import keccak

from notary.anchoring import AnchoringWorker
from notary.api import create_app
from notary.chain.client import ChainClient
from notary.config import AnchorMode
from notary.keysource import InMemoryKeySource
from notary.service import NotaryService
from notary.storage.base import AccessRole
from tests.notary.conftest import SimDevice, fleet

CANDIDATES = 10_000
_HEX32 = re.compile(
    r"0x([0-9a-fA-F]{64})(?![0-9a-fA-F])|(?<![0-9a-fA-F])([0-9a-f]{64})(?![0-9a-f])"
)


def reading(device: SimDevice, kwh: int) -> bytes:
    """The exact plaintext the device seals for a meter reading (low entropy: 10^4 values)."""
    return device.plaintext({"kwh": kwh})


@pytest.fixture(params=[AnchorMode.MERKLE, AnchorMode.BATCH], ids=["merkle", "batch"])
async def published(
    request: pytest.FixtureRequest,
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
) -> AsyncIterator[tuple[httpx.AsyncClient, NotaryService, list[tuple[str, bytes]]]]:
    devices = await fleet(anchored_service, key_source, 2)
    secrets = [4321, 17, 9999, 250]
    sent: list[tuple[str, bytes]] = []
    for device, kwh in zip(devices * 2, secrets, strict=True):
        plaintext = reading(device, kwh)
        accepted = await anchored_service.pipeline.submit(device.seal(plaintext).to_json().encode())
        sent.append((accepted.record_id, plaintext))
    await AnchoringWorker(
        anchored_service.store, chain_client, mode=request.param, batch_size=8
    ).drain()
    transport = httpx.ASGITransport(app=create_app(anchored_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://notary.test") as client:
        yield client, anchored_service, sent


async def everything_public(client: httpx.AsyncClient, record_ids: list[str]) -> list[str]:
    """Every answer an unauthenticated client can get about these records."""
    pages = [
        "/v1/devices",
        "/metrics",
        "/explorer/",
        "/explorer/devices",
        "/explorer/blocks",
        "/explorer/events",
        "/explorer/events?format=json",
    ]
    for record_id in record_ids:
        receipt = (await client.get(f"/v1/records/{record_id}")).json()
        pages += [
            f"/v1/records/{record_id}",
            f"/v1/devices/{receipt['device_id']}",
            f"/explorer/devices/{receipt['device_id']}",
            f"/explorer/records/{record_id}",
            f"/explorer/records/{record_id}?verify_onchain=true",
            f"/explorer/tx/{receipt['anchor']['tx_hash']}",
            f"/explorer/blocks/{receipt['anchor']['block_number']}",
        ]
    texts = []
    for page in pages:
        response = await client.get(page)
        assert response.status_code == 200, page
        texts.append(response.text)
    logs = await client.post(
        "/rpc",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getLogs",
            "params": [{"fromBlock": "0x0", "toBlock": "latest"}],
        },
    )
    texts.append(logs.text)
    return texts


async def test_a_dictionary_search_over_everything_public_recovers_no_reading(
    published: tuple[httpx.AsyncClient, NotaryService, list[tuple[str, bytes]]],
) -> None:
    client, service, sent = published
    texts = await everything_public(client, [rid for rid, _ in sent])
    seen = {bytes.fromhex(a or b) for text in texts for a, b in _HEX32.findall(text)}
    assert len(seen) > 20  # hashes, proofs, block and transaction hashes, topics...
    public_receipts = [(await client.get(f"/v1/records/{rid}")).json() for rid, _ in sent]
    targets = {r["payload_hash"] for r in public_receipts}
    assert all(r["disclosure"] is None for r in public_receipts)
    # The attacker knows the devices' document format; only the reading is unknown.
    template = sent[0][1].decode()
    candidates = [
        re.sub(r'"kwh": \d+', f'"kwh": {kwh}', template).encode() for kwh in range(CANDIDATES)
    ]
    assert {plaintext for _, plaintext in sent} <= set(candidates)  # the answers are in it
    service_token, _ = await service.issue_access_token(
        role=AccessRole.AUDITOR, device_id=None, label="control"
    )
    recovered = [
        candidate
        for salt in (b"", *seen)
        for candidate in candidates
        if "0x" + keccak(salt + candidate).hex() in targets
    ]
    assert recovered == []
    # The search itself works: had a salt been public (v1 receipts published it), it would
    # have found the reading at once.
    full = await client.get(
        f"/v1/records/{sent[0][0]}", headers={"Authorization": f"Bearer {service_token}"}
    )
    leaked = bytes.fromhex(full.json()["disclosure"]["salt"][2:])
    found = [c for c in candidates if "0x" + keccak(leaked + c).hex() in targets]
    assert found == [sent[0][1]]
    # Nor does any answer carry a reading in clear (the telemetry key is not even named).
    for text in texts:
        assert "kwh" not in text


async def test_an_auditor_token_recovers_the_reading(
    published: tuple[httpx.AsyncClient, NotaryService, list[tuple[str, bytes]]],
) -> None:
    client, service, sent = published
    token, _ = await service.issue_access_token(
        role=AccessRole.AUDITOR, device_id=None, label="auditor"
    )
    for record_id, plaintext in sent:
        receipt = (
            await client.get(
                f"/v1/records/{record_id}", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
        disclosure = receipt["disclosure"]
        assert disclosure["payload"].encode() == plaintext
        salt = bytes.fromhex(disclosure["salt"][2:])
        assert "0x" + keccak(salt + plaintext).hex() == receipt["payload_hash"]
    # The explorer shows the reading once the auditor signs in, and not before.
    record_id, plaintext = sent[0]
    page = f"/explorer/records/{record_id}"
    public = (await client.get(page)).text
    assert "kwh" not in public and 'id="reading-hidden"' in public
    signed = await client.post("/explorer/signin", data={"token": token})
    assert signed.status_code == 303
    shown = (await client.get(page)).text
    assert 'id="disclosed-payload"' in shown and "&#34;kwh&#34;: 4321" in shown
    assert 'id="disclosed-salt"' in shown and "signed in: auditor" in shown
    await client.post("/explorer/signout")
    client.cookies.clear()
    assert "kwh" not in (await client.get(page)).text
    wrong = await client.post("/explorer/signin", data={"token": "qkdn_not-a-token"})
    assert wrong.status_code == 401
