"""Receipt verification against the chain, field by field: genuine receipts verify in
both anchoring modes, and every forged claim is refused naming its field, even when the
forger recomputes the leaf to match (the commitments are on-chain, not in the receipt)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from notary.access import Viewer
from notary.anchoring import AnchoringWorker
from notary.chain.client import ChainClient
from notary.chain.merkle import record_leaf
from notary.config import AnchorMode
from notary.errors import ReceiptInvalid, ReceiptNotFinal
from notary.keysource import InMemoryKeySource
from notary.receipts import BOUND_FIELDS, Outcome, Receipt, chain_record, verify_receipt
from notary.service import NotaryService
from notary.telemetry import record_id
from qkd_channel.security_levels import Hop
from tests.notary.conftest import fleet

Doc = dict[str, Any]
ADMIN = Viewer(label="test", everything=True)


@pytest.fixture
def key_source() -> InMemoryKeySource:
    """A "KME" that reports a QKD link, so that otp records can be information-theoretic."""
    return InMemoryKeySource(link_hop=Hop.QKD)


@pytest.fixture
def w3(chain_client: ChainClient) -> Web3:
    # Any JSON-RPC view of the same chain will do; the embedded chain has no URL, so the
    # verifier reads it through the provider the client opened (read-only calls only).
    return Web3(chain_client._notary.w3.provider)


async def make_receipts(
    service: NotaryService, keys: InMemoryKeySource, chain: ChainClient, mode: AnchorMode
) -> list[tuple[Receipt, bytes]]:
    """Four anchored records, with their disclosed receipts (salt and plaintext)."""
    devices = await fleet(service, keys, 2)
    sent: list[tuple[str, bytes]] = []
    for dev in devices * 2:
        plaintext = dev.plaintext({"kwh": 3.25, "n": len(sent)}, key_delivery="local")
        accepted = await service.pipeline.submit(dev.seal(plaintext).to_json().encode())
        sent.append((accepted.record_id, plaintext))
    await AnchoringWorker(service.store, chain, mode=mode, batch_size=8).drain()
    return [(await service.receipt(rid, viewer=ADMIN), plaintext) for rid, plaintext in sent]


@pytest.mark.parametrize("mode", [AnchorMode.MERKLE, AnchorMode.BATCH])
async def test_genuine_receipts_verify_every_field(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
    mode: AnchorMode,
) -> None:
    for receipt, plaintext in await make_receipts(anchored_service, key_source, chain_client, mode):
        assert receipt.security.confidentiality == "information-theoretic"
        assert receipt.disclosure is not None and receipt.disclosure.payload == plaintext.decode()
        # Round trip through JSON: the auditor only has the document.
        report = verify_receipt(
            receipt.model_dump_json(), w3, expected_contract=chain_client.notary_address
        )
        assert report.verified and report.method is mode and report.confirmations >= 1
        assert report.block_number == receipt.anchor.block_number  # type: ignore[union-attr]
        for name in ("record_id", *BOUND_FIELDS, "status", "anchor.tx_hash"):
            assert report.outcome_of(name) is Outcome.ON_CHAIN, name
        for name in ("security", "key_ids", "payload", "salt"):
            assert report.outcome_of(name) is Outcome.LOCAL, name
        public = verify_receipt(receipt.public().model_dump_json(), w3)
        assert public.verified and public.outcome_of("payload") is None


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


def _downgrade_mode(doc: Doc) -> None:
    doc["mode"] = "aead"


def _stronger_label(doc: Doc) -> None:
    doc["key_path"]["device"] = "tls"  # the path is weaker now, the label left as it was


TAMPERING = [
    pytest.param(_set("sequence", 999), "record-id", id="sequence"),
    pytest.param(_set("device_id", "someone-else"), "record-id", id="device"),
    pytest.param(_flip_hex("record_id"), "record-id", id="record-id"),
    pytest.param(_flip_hex("payload_hash"), "payload-hash", id="payload-hash"),
    pytest.param(_set("disclosure.payload", '{"kwh": 0}'), "payload-hash", id="plaintext"),
    pytest.param(_flip_hex("disclosure.salt"), "payload-hash", id="salt"),
    pytest.param(_downgrade_mode, "security", id="mode-vs-security"),
    pytest.param(_stronger_label, "security", id="key-path-vs-security"),
    pytest.param(_set("security.authenticity", "computational"), "security", id="security"),
    pytest.param(_set("device_trusted", False), "leaf", id="device-trusted"),
    pytest.param(_set("firmware_digest", "f" * 64), "leaf", id="firmware-digest"),
    pytest.param(_set("sent_at_ms", 1), "leaf", id="sent-at"),
    pytest.param(_set("accepted_at_ms", 2), "leaf", id="accepted-at"),
    pytest.param(_flip_hex("anchor.leaf"), "leaf", id="leaf"),
    pytest.param(_flip_proof, "proof", id="proof"),
    pytest.param(_flip_hex("anchor.batch_root"), "proof", id="root"),
    pytest.param(_set("anchor.chain_id", 1), "chain-id", id="chain-id"),
    pytest.param(_flip_hex("anchor.block_hash"), "transaction", id="block-hash"),
    pytest.param(_set("anchor.block_number", 1), "transaction", id="block-number"),
    pytest.param(_set("anchor.block_timestamp", 1), "block", id="timestamp"),
    pytest.param(_set("anchor.batch_size", 99), "batch-size", id="batch-size"),
    pytest.param(_set("receipt_version", "qkd-notary-receipt/0"), "format", id="version"),
]


@pytest.mark.parametrize(("tamper", "reason"), TAMPERING)
async def test_tampered_merkle_receipt_is_refused(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
    tamper: Callable[[Doc], None],
    reason: str,
) -> None:
    (receipt, _), *_ = await make_receipts(
        anchored_service, key_source, chain_client, AnchorMode.MERKLE
    )
    doc = json.loads(receipt.model_dump_json())
    tamper(doc)
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(doc, w3)
    assert info.value.reason == reason


def _reseal_leaf(doc: Doc) -> None:
    """What a careful forger does next: make the leaf agree with the forged fields."""
    doc["anchor"]["leaf"] = "0x" + record_leaf(chain_record(Receipt.model_validate(doc))).hex()


FORGED_CLAIMS = [
    pytest.param("device_trusted", False, id="device_trusted"),
    pytest.param("firmware_digest", "f" * 64, id="firmware_digest"),
    pytest.param("sent_at_ms", 1_234, id="sent_at_ms"),
    pytest.param("accepted_at_ms", 5_678, id="accepted_at_ms"),
    pytest.param("payload_hash", "0x" + "ab" * 32, id="payload_hash"),
]


@pytest.mark.parametrize("mode", [AnchorMode.MERKLE, AnchorMode.BATCH])
@pytest.mark.parametrize(("field", "value"), FORGED_CLAIMS)
async def test_forged_claim_with_a_matching_leaf_is_refused_in_both_modes(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
    mode: AnchorMode,
    field: str,
    value: Any,
) -> None:
    """The receipt is self-consistent after the forgery; only the chain can refuse it.
    Merkle: the forged leaf has no path to the anchored root. Batch: the stored record's
    event repeats every field, so the forged one is named."""
    (receipt, _), *_ = await make_receipts(anchored_service, key_source, chain_client, mode)
    doc = json.loads(receipt.public().model_dump_json())
    doc[field] = value
    _reseal_leaf(doc)
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(doc, w3)
    if mode is AnchorMode.MERKLE:
        assert info.value.reason == "proof"
    else:
        assert info.value.reason == "event" and str(info.value).startswith(f"{field}:")
    report = info.value.report
    assert report is not None and report.refused is not None  # type: ignore[attr-defined]


async def test_receipt_of_another_record_is_refused(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
) -> None:
    (first, _), (second, _), *_ = await make_receipts(
        anchored_service, key_source, chain_client, AnchorMode.MERKLE
    )
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(second, w3, expected_record_id=first.record_id)
    assert info.value.reason == "record-id" and first.record_id in str(info.value)


async def test_unanchored_or_unconfirmed_receipts_are_not_final(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
) -> None:
    (receipt, _), *_ = await make_receipts(
        anchored_service, key_source, chain_client, AnchorMode.BATCH
    )
    with pytest.raises(ReceiptNotFinal):
        verify_receipt(receipt, w3, min_confirmations=10**6)
    doc = json.loads(receipt.model_dump_json())
    doc["status"] = "submitted"
    with pytest.raises(ReceiptNotFinal) as info:
        verify_receipt(doc, w3)
    assert info.value.reason == "not-final"


async def test_wrong_payload_contract_and_foreign_transaction_are_refused(
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


async def test_a_digest_the_registry_never_attested_is_refused(
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
    w3: Web3,
) -> None:
    """A notary key that records a firmware digest the registry never attested for the
    device (a compromised notary host) gets a receipt that is consistent with the chain's
    TelemetryNotary, but the DeviceRegistry cross-check refuses it."""
    (receipt, _), *_ = await make_receipts(
        anchored_service, key_source, chain_client, AnchorMode.BATCH
    )
    doc = json.loads(receipt.public().model_dump_json())
    doc["key_ids"] = [str(uuid.uuid4())]
    doc["record_id"] = record_id(doc["device_id"], doc["sequence"], doc["key_ids"])
    doc["firmware_digest"] = "e" * 64
    record = chain_record(Receipt.model_validate(doc))
    tx = chain_client.record_batch([record]).tx  # the notary key itself writes the lie
    doc["anchor"].update(
        tx_hash=tx.tx_hash,
        block_number=tx.block_number,
        block_hash=tx.block_hash,
        block_timestamp=tx.block_timestamp,
        batch_size=1,
        leaf="0x" + record_leaf(record).hex(),
    )
    with pytest.raises(ReceiptInvalid) as info:
        verify_receipt(doc, w3)
    assert info.value.reason == "attestation"
    assert str(info.value).startswith("firmware_digest:")


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
    receipt, _ = cache[0]
    doc = json.loads(receipt.model_dump_json())
    target = doc
    *parents, last = field.split(".")
    for name in parents:
        target = target[name]
    value: str = target[last]
    digit = int(value[position], 16) ^ nibble
    target[last] = value[:position] + format(digit, "x") + value[position + 1 :]
    with pytest.raises(ReceiptInvalid):
        verify_receipt(doc, w3)
