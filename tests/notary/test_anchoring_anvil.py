"""The anchoring worker on a real JSON-RPC chain (anvil): receipts verified through a
separate plain HTTP connection to the node, and a node outage during intake that the
outbox absorbs and the worker drains afterwards without loss or duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from web3 import Web3

from notary.chain.client import ChainClient
from notary.config import AnchorMode, NotarySettings
from notary.keysource import InMemoryKeySource
from notary.receipts import verify_receipt
from notary.service import NotaryService
from notary.storage.base import RecordStatus
from tests.conftest import AnvilFactory, AnvilNode
from tests.notary.conftest import NOTARY_ID, fleet, sqlite_service


@pytest.fixture
def node(anvil_factory: AnvilFactory, tmp_path: Path) -> Iterator[AnvilNode]:
    anvil = anvil_factory(state_file=tmp_path / "anvil-state.json")
    try:
        yield anvil
    finally:
        anvil.stop()


@pytest.fixture
async def anvil_service(
    tmp_path: Path, key_source: InMemoryKeySource, anvil_chain: ChainClient
) -> AsyncIterator[NotaryService]:
    settings = NotarySettings(
        data_dir=tmp_path / "notary",
        notary_id=NOTARY_ID,
        anchor_mode=AnchorMode.MERKLE,
        batch_size=8,
        batch_max_latency_s=0.1,
    )
    svc = sqlite_service(settings, key_source, chain=anvil_chain)
    try:
        yield svc
    finally:
        await svc.aclose()


async def wait_anchored(service: NotaryService, record_ids: list[str], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        receipts = [await service.receipt(r) for r in record_ids]
        if all(r.status is RecordStatus.ANCHORED for r in receipts):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("records were not anchored in time")
        await asyncio.sleep(0.1)


async def test_receipts_from_anvil_verify_over_plain_json_rpc(
    anvil_service: NotaryService, key_source: InMemoryKeySource, node: AnvilNode
) -> None:
    devices = await fleet(anvil_service, key_source, 3)
    sent: list[tuple[str, bytes]] = []
    for dev in devices * 3:
        plaintext = dev.plaintext({"n": len(sent)})
        accepted = await anvil_service.pipeline.submit(dev.seal(plaintext).to_json().encode())
        sent.append((accepted.record_id, plaintext))
    assert anvil_service.worker is not None
    await anvil_service.worker.drain()
    auditor = Web3(Web3.HTTPProvider(node.url))  # the auditor's own connection to a node
    for record_id, plaintext in sent:
        receipt = await anvil_service.receipt(record_id)
        result = verify_receipt(
            receipt.model_dump_json(),
            auditor,
            payload=plaintext,
            expected_contract=anvil_service.chain.notary_address,  # type: ignore[union-attr]
        )
        assert result.chain_id == node.chain_id


async def test_node_outage_fills_the_outbox_and_drains_without_loss(
    anvil_service: NotaryService, key_source: InMemoryKeySource, node: AnvilNode
) -> None:
    devices = await fleet(anvil_service, key_source, 2)
    await anvil_service.start()
    before = [
        (await anvil_service.pipeline.submit(d.seal().to_json().encode())).record_id
        for d in devices
    ]
    await wait_anchored(anvil_service, before, 20)
    node.stop()  # dumps its state; the worker now meets a dead node
    during = []
    for _ in range(3):
        for dev in devices:
            accepted = await anvil_service.pipeline.submit(dev.seal().to_json().encode())
            during.append(accepted.record_id)
    await asyncio.sleep(1.0)  # the worker tries, fails, backs off; intake went on
    assert await anvil_service.store.outbox_depth() == len(during)
    node.start()  # same port, state reloaded
    await wait_anchored(anvil_service, during, 60)
    auditor = Web3(Web3.HTTPProvider(node.url))
    for record_id in before + during:
        verify_receipt(await anvil_service.receipt(record_id), auditor)
    # Exactly once: every anchored root on-chain covers exactly the records naming it.
    assert await anvil_service.store.unfinished_batches() == []
    per_root: dict[str, int] = {}
    for record_id in before + during:
        anchor = (await anvil_service.receipt(record_id)).anchor
        assert anchor is not None and anchor.batch_root is not None
        per_root[anchor.batch_root] = per_root.get(anchor.batch_root, 0) + 1
    chain = anvil_service.chain
    assert isinstance(chain, ChainClient)
    for root, members in per_root.items():
        on_chain = chain.get_anchor(bytes.fromhex(root[2:]))
        assert on_chain is not None and on_chain.count == members
