"""Receipts issued before v2 still verify against the contracts they were anchored in,
with every claim the v1 leaf never bound reported as not verifiable."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from eth_hash.auto import keccak
from hexbytes import HexBytes
from web3 import Web3

from notary.chain.artifacts import LEGACY_DIR, load_artifact
from notary.chain.calldata import encode_call
from notary.chain.client import ChainClient
from notary.chain.merkle import MerkleTree
from notary.chain.models import encode_device_id
from notary.errors import ReceiptInvalid
from notary.receipts import Outcome, ReceiptV1, verify_receipt
from notary.receipts.legacy import UNBOUND_V1, record_leaf_v1
from notary.telemetry import payload_hash, record_id

SALT = bytes(range(32))
PLAINTEXT = b'{"firmware_digest": "' + b"a" * 64 + b'", "telemetry": {"kwh": 1}}'


def _deploy(client: ChainClient, name: str, *args: Any) -> Any:
    artifact = load_artifact(f"{name}-v1", LEGACY_DIR)
    factory = client.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = bytes(HexBytes(factory.constructor(*args).data_in_transaction))
    receipt, _ = client._tx.transact(f"deploy {name} v1", None, data)
    return client.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def _v1_documents(client: ChainClient) -> list[dict[str, Any]]:
    """Two records anchored in v1 contracts, one per method, as the v1 notary wrote them."""
    me = client.address
    registry = _deploy(client, "DeviceRegistry", me, me, me)
    notary = _deploy(client, "TelemetryNotary", me, me, registry.address)
    documents = []
    for method in ("batch", "merkle"):
        key_ids = [str(uuid.uuid4())]
        document: dict[str, Any] = {
            "receipt_version": "qkd-notary-receipt/1",
            "record_id": record_id("legacy-dev", 3, key_ids),
            "status": "anchored",
            "device_id": "legacy-dev",
            "sequence": 3,
            "mode": "otp",
            "security": "information-theoretic",
            "key_ids": key_ids,
            "firmware_digest": "a" * 64,
            "device_trusted": True,
            "payload_hash": payload_hash(SALT, PLAINTEXT),
            "salt": "0x" + SALT.hex(),
            "sent_at_ms": 1_700_000_000_000,
            "accepted_at": "2026-11-23T09:56:08+00:00",
        }
        leaf = record_leaf_v1(ReceiptV1.model_validate(document))
        row = (
            bytes.fromhex(document["record_id"][2:]),
            encode_device_id("legacy-dev"),
            3,
            bytes.fromhex(document["payload_hash"][2:]),
            1,
        )
        if method == "batch":
            call = ("recordBatch", [[row], []])
            root = None
        else:
            tree = MerkleTree([leaf, keccak(b"neighbour")])
            root = tree.root
            call = ("anchorRoot", [root, 2, row[0], row[0]])
        _, tx = client._tx.transact(call[0], notary.address, encode_call(notary, *call))
        document["anchor"] = {
            "method": method,
            "chain_id": client.chain_id,
            "contract": notary.address,
            "tx_hash": tx.tx_hash,
            "block_number": tx.block_number,
            "block_hash": tx.block_hash,
            "block_timestamp": tx.block_timestamp,
            "batch_id": 1,
            "batch_size": 1 if root is None else 2,
            "leaf": "0x" + leaf.hex(),
            "batch_root": None if root is None else "0x" + root.hex(),
            "proof": [] if root is None else ["0x" + keccak(b"neighbour").hex()],
        }
        documents.append(document)
    return documents


@pytest.fixture(scope="module")
def v1_documents(chain_client: ChainClient) -> list[dict[str, Any]]:
    return _v1_documents(chain_client)


@pytest.mark.parametrize("index", [0, 1], ids=["batch", "merkle"])
def test_v1_receipts_verify_as_v1_with_unbound_claims_reported(
    chain_client: ChainClient, v1_documents: list[dict[str, Any]], index: int
) -> None:
    w3 = Web3(chain_client._notary.w3.provider)
    report = verify_receipt(json.dumps(v1_documents[index]), w3, payload=PLAINTEXT)
    assert report.receipt_version == "qkd-notary-receipt/1"
    assert not report.verified
    assert set(report.unverifiable) == set(UNBOUND_V1)
    for name in ("record_id", "device_id", "sequence", "payload_hash", "mode", "status"):
        assert report.outcome_of(name) is Outcome.ON_CHAIN, name
    assert report.outcome_of("salt") is Outcome.LOCAL


def test_a_forged_v1_receipt_is_still_refused(
    chain_client: ChainClient, v1_documents: list[dict[str, Any]]
) -> None:
    w3 = Web3(chain_client._notary.w3.provider)
    forged = {**v1_documents[0], "sequence": 4}
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(forged, w3)
    assert info.value.reason == "record-id"
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(v1_documents[1], w3, payload=PLAINTEXT + b" ")
    assert info.value.reason == "payload-hash"
