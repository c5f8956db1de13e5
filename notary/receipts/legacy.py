"""Verification of ``qkd-notary-receipt/1`` documents, issued before receipts v2.

A v1 leaf commits to record ID, device ID, sequence, payload hash and mode only, against
the v1 ``TelemetryNotary`` build (``contracts/build/legacy``). Those fields are checked as
before; the rest of a v1 receipt (firmware digest, trust verdict, timestamps, the security
label) was never bound and is reported as not verifiable, so a v1 receipt can verify but
never counts as fully verified.
"""

from __future__ import annotations

from eth_hash.auto import keccak
from web3 import Web3

from notary.chain.artifacts import LEGACY_DIR, load_artifact
from notary.chain.merkle import process_proof
from notary.chain.models import SecurityMode, encode_device_id
from notary.config import AnchorMode
from notary.errors import InvalidChainInput, ReceiptInvalid
from notary.receipts.chainview import AnchorChecks, CheckLog, unhex
from notary.receipts.model import ReceiptV1
from notary.receipts.report import Outcome, VerificationReport
from notary.storage.base import RecordStatus
from notary.telemetry import payload_hash, record_id

__all__ = ["record_leaf_v1", "verify_v1"]

#: Claims a v1 receipt makes that nothing on-chain binds.
UNBOUND_V1 = ("firmware_digest", "device_trusted", "sent_at_ms", "accepted_at", "security")


def record_leaf_v1(receipt: ReceiptV1) -> bytes:
    """The v1 leaf: ``keccak256(keccak256(abi.encode(recordId, deviceId, sequence,
    payloadHash, mode)))``."""
    try:
        encoded = b"".join(
            (
                unhex(receipt.record_id, "record_id"),
                encode_device_id(receipt.device_id),
                receipt.sequence.to_bytes(32, "big"),
                unhex(receipt.payload_hash, "payload_hash"),
                int(SecurityMode.from_label(receipt.mode)).to_bytes(32, "big"),
            )
        )
    except (InvalidChainInput, OverflowError) as exc:
        raise ReceiptInvalid(f"a record field cannot be encoded: {exc}", reason="format") from None
    return keccak(keccak(encoded))


def verify_v1(
    receipt: ReceiptV1,
    w3: Web3,
    log: CheckLog,
    *,
    payload: bytes | None,
    salt: bytes | None,
    expected_contract: str | None,
    min_confirmations: int,
) -> VerificationReport:
    """Check what a v1 receipt binds; report the rest as not verifiable."""
    log.field("receipt_version", Outcome.LOCAL, "v1: only part of its claims are bound")
    anchor = receipt.anchor
    if receipt.status is not RecordStatus.ANCHORED or anchor is None:
        raise log.not_final(f"the record is {receipt.status.value}, not anchored yet")
    if record_id(receipt.device_id, receipt.sequence, receipt.key_ids) != receipt.record_id.lower():
        raise log.refuse("record-id", "record_id", "does not match device_id, sequence and key_ids")
    log.passed_check("record-id")
    log.field("key_ids", Outcome.LOCAL, "they and device_id, sequence give the record ID")
    if payload is not None:
        salt = salt if salt is not None else unhex(receipt.salt, "salt")
        if payload_hash(salt, payload) != receipt.payload_hash.lower():
            raise log.refuse("payload-hash", "payload", "does not hash to payload_hash")
        log.passed_check("payload-hash")
        log.field("salt", Outcome.LOCAL, "hashes with the plaintext to payload_hash")
    else:
        log.field("salt", Outcome.UNVERIFIABLE, "no plaintext given to check it against")
    leaf = record_leaf_v1(receipt)
    if "0x" + leaf.hex() != anchor.leaf.lower():
        raise log.refuse("leaf", "anchor.leaf", "the receipt's fields do not hash to its leaf")
    log.passed_check("leaf")
    if anchor.method is AnchorMode.MERKLE:
        proof = [unhex(p, "proof element") for p in anchor.proof]
        if (
            anchor.batch_root is None
            or any(len(p) != 32 for p in proof)
            or process_proof(leaf, proof) != unhex(anchor.batch_root, "batch_root")
        ):
            raise log.refuse("proof", "anchor.proof", "does not lead from the leaf to the root")
        log.passed_check("proof")
    chain = AnchorChecks(w3, anchor, load_artifact("TelemetryNotary-v1", LEGACY_DIR), log)
    chain.node_and_contract(expected_contract)
    chain.transaction_and_block(min_confirmations)
    rid = unhex(receipt.record_id, "record_id")
    if anchor.method is AnchorMode.MERKLE:
        assert anchor.batch_root is not None
        chain.root_anchored(unhex(anchor.batch_root, "batch_root"))
    else:
        chain.event(chain.artifact.event_topic("RecordStored"), 2, rid)
        log.passed_check("event")
        device, stored_hash, sequence, recorded_at, block_number, mode, _ = chain.call(
            "getRecord", rid
        )
        if (
            int(recorded_at) == 0
            or bytes(device) != encode_device_id(receipt.device_id)
            or "0x" + bytes(stored_hash).hex() != receipt.payload_hash.lower()
            or int(sequence) != receipt.sequence
            or int(mode) != int(SecurityMode.from_label(receipt.mode))
            or int(block_number) != anchor.block_number
        ):
            raise log.refuse("state", "anchor.leaf", "the stored record differs from the receipt")
        log.passed_check("state")
        chain.batch_size_from_events()
    for name in ("record_id", "device_id", "sequence", "payload_hash", "mode"):
        log.field(name, Outcome.ON_CHAIN, "committed in the anchored v1 leaf")
    for name in UNBOUND_V1:
        log.field(name, Outcome.UNVERIFIABLE, "a v1 receipt does not bind it on-chain")
    return log.report(**chain.chain_facts())
