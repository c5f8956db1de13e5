"""Offline receipt verification against the chain: genuine receipts verify in both
anchoring modes, and every kind of tampering is caught with the right reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from notary.anchoring import AnchoringWorker
from notary.chain.client import ChainClient
from notary.config import AnchorMode
from notary.errors import ReceiptInvalid
from notary.keysource import InMemoryKeySource
from notary.receipts import Receipt, verify_receipt
from notary.service import NotaryService
from tests.notary.conftest import fleet

Doc = dict[str, Any]


@pytest.fixture
def w3(chain_client: ChainClient) -> Web3:
    # Any JSON-RPC view of the same chain will do; the embedded chain has no URL, so the
    # verifier reads it through the provider the client opened (read-only calls only).
    return Web3(chain_client._notary.w3.provider)


async def make_receipts(
    service: NotaryService, keys: InMemoryKeySource, chain: ChainClient, mode: AnchorMode
) -> list[tuple[Receipt, bytes]]:
    devices = await fleet(service, keys, 2)
    sent: list[tuple[str, bytes]] = []
    for dev in devices * 2:
        plaintext = dev.plaintext({"kwh": 3.25, "n": len(sent)})
        accepted = await service.pipeline.submit(dev.seal(plaintext).to_json().encode())
        sent.append((accepted.record_id, plaintext))
    await AnchoringWorker(service.store, chain, mode=mode, batch_size=8).drain()
    return [(await service.receipt(rid), plaintext) for rid, plaintext in sent]


@pytest.mark.parametrize("mode", [AnchorMode.MERKLE, AnchorMode.BATCH])
async def test_genuine_receipts_verify_with_their_payload(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
    mode: AnchorMode,
) -> None:
    for receipt, plaintext in await make_receipts(anchored_service, key_source, chain_client, mode):
        # Round trip through JSON: the auditor only has the document.
        document = receipt.model_dump_json()
        result = verify_receipt(
            document, w3, payload=plaintext, expected_contract=chain_client.notary_address
        )
        assert result.method is mode and result.payload_checked
        assert result.block_number == receipt.anchor.block_number  # type: ignore[union-attr]
        assert result.confirmations >= 1


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target = doc
        *parents, last = path.split(".")
        for name in parents:
            target = target[name]
        target[last] = value

    return apply


def _flip_hex(path: str) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target = doc
        *parents, last = path.split(".")
        for name in parents:
            target = target[name]
        value = target[last]
        target[last] = value[:-1] + ("0" if value[-1] != "0" else "1")

    return apply


def _flip_proof(doc: Doc) -> None:
    proof = doc["anchor"]["proof"]
    proof[0] = proof[0][:-1] + ("0" if proof[0][-1] != "0" else "1")


TAMPERING = [
    pytest.param(_set("sequence", 999), "record-id", id="sequence"),
    pytest.param(_set("device_id", "someone-else"), "record-id", id="device"),
    pytest.param(_flip_hex("record_id"), "record-id", id="record-id"),
    pytest.param(_flip_hex("payload_hash"), "payload-hash", id="payload-hash"),
    pytest.param(_set("mode", "aead"), "leaf", id="mode-downgrade"),
    pytest.param(_flip_hex("anchor.leaf"), "leaf", id="leaf"),
    pytest.param(_flip_proof, "proof", id="proof"),
    pytest.param(_flip_hex("anchor.batch_root"), "proof", id="root"),
    pytest.param(_set("anchor.chain_id", 1), "chain-id", id="chain-id"),
    pytest.param(_flip_hex("anchor.block_hash"), "transaction", id="block-hash"),
    pytest.param(_set("anchor.block_number", 1), "transaction", id="block-number"),
    pytest.param(_set("anchor.block_timestamp", 1), "block", id="timestamp"),
    pytest.param(_set("status", "accepted"), "not-anchored", id="not-anchored"),
    pytest.param(_set("receipt_version", "qkd-notary-receipt/0"), "format", id="version"),
]


@pytest.mark.parametrize(("tamper", "reason"), TAMPERING)
async def test_tampered_merkle_receipt_is_rejected(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
    tamper: Callable[[Doc], None],
    reason: str,
) -> None:
    (receipt, plaintext), *_ = await make_receipts(
        anchored_service, key_source, chain_client, AnchorMode.MERKLE
    )
    doc = json.loads(receipt.model_dump_json())
    tamper(doc)
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(doc, w3, payload=plaintext)
    assert info.value.reason == reason


async def test_wrong_payload_contract_and_foreign_transaction_are_rejected(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
) -> None:
    receipts = await make_receipts(anchored_service, key_source, chain_client, AnchorMode.BATCH)
    (receipt, plaintext), *_ = receipts
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(receipt, w3, payload=plaintext + b" ")
    assert info.value.reason == "payload-hash"
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(receipt, w3, expected_contract=chain_client.registry_address)
    assert info.value.reason == "contract"
    doc = json.loads(receipt.model_dump_json())
    doc["anchor"]["contract"] = chain_client.registry_address  # real code, wrong contract
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(doc, w3)
    assert info.value.reason == "contract-code"
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(receipt, w3, min_confirmations=10**6)
    assert info.value.reason == "confirmations"
    # A record that was never anchored, dressed in a real anchoring transaction.
    (other, _), *_ = await make_receipts(
        anchored_service, key_source, chain_client, AnchorMode.MERKLE
    )
    forged = json.loads(receipt.model_dump_json())
    forged["anchor"].update(
        {
            k: json.loads(other.model_dump_json())["anchor"][k]
            for k in ("tx_hash", "block_number", "block_hash", "block_timestamp")
        }
    )
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(forged, w3)
    assert info.value.reason == "event"


_HEX_FIELDS = ["record_id", "payload_hash", "anchor.leaf", "anchor.tx_hash", "anchor.block_hash"]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(_HEX_FIELDS), position=st.integers(2, 65), nibble=st.integers(1, 15))
async def test_any_hex_digit_change_breaks_verification(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
    field: str,
    position: int,
    nibble: int,
) -> None:
    cache = anchored_service.__dict__.setdefault("_test_receipt", [])
    if not cache:
        cache.extend(
            await make_receipts(anchored_service, key_source, chain_client, AnchorMode.BATCH)
        )
    receipt, plaintext = cache[0]
    doc = json.loads(receipt.model_dump_json())
    target = doc
    *parents, last = field.split(".")
    for name in parents:
        target = target[name]
    value: str = target[last]
    digit = int(value[position], 16) ^ nibble
    target[last] = value[:position] + format(digit, "x") + value[position + 1 :]
    with pytest.raises(ReceiptInvalid):
        verify_receipt(doc, w3, payload=plaintext)
