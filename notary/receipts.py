"""Versioned notary receipts: what ``GET /v1/records/{id}`` returns and auditors verify.

A receipt (format ``qkd-notary-receipt/1``, documented in ``docs/receipts.md``) is
self-contained: together with the plaintext the device sent (optional) and *any* JSON-RPC
node of the chain, it proves that the record was anchored, without trusting the notary.
Chainpoint receipts and TrustOS trust points are the models: the receipt states the
claim, and the chain is the only authority consulted when checking it.

:func:`verify_receipt` is the auditor's side. It needs only the receipt, a ``Web3``
connected to any node of the chain and, optionally, the plaintext; it uses nothing the
notary stores. Checks, each failure a :class:`~notary.errors.ReceiptInvalid` with a
``reason``:

1. the record ID is recomputed from device ID, sequence and key IDs (``record-id``);
2. the plaintext, when given, hashes with the salt to ``payload_hash`` (``payload-hash``);
3. the Merkle leaf is recomputed from the record fields (``leaf``), and in Merkle mode the
   proof leads from it to ``batch_root`` (``proof``);
4. the node's chain ID is the receipt's (``chain-id``); the contract address runs the
   genuine ``TelemetryNotary`` runtime code (``contract-code``) and, if the caller pins it,
   is the expected address (``contract``);
5. the transaction succeeded, targets that contract, sits in the stated block, whose hash
   and timestamp match, with enough confirmations (``transaction``, ``block``,
   ``confirmations``);
6. the transaction emitted ``RootAnchored(root)`` or ``RecordStored(record)``, and the
   contract's state agrees now: ``getAnchor(root)`` / ``getRecord(id)`` at that block
   with the same fields (``event``, ``state``).

These names, in this order, are :data:`RECEIPT_CHECKS`; ``on_pass`` hears each one that
passed, so a viewer (the explorer) can show every check, not only the first failure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eth_hash.auto import keccak
from eth_utils.address import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3Exception

from notary.chain.artifacts import load_artifact
from notary.chain.merkle import process_proof, record_leaf
from notary.chain.models import RecordInput, SecurityMode, encode_device_id
from notary.config import AnchorMode
from notary.errors import ChainUnavailable, InvalidChainInput, ReceiptInvalid
from notary.storage.base import RecordRow, RecordStatus
from notary.telemetry import payload_hash, record_id

__all__ = [
    "RECEIPT_CHECKS",
    "RECEIPT_VERSION",
    "AnchorProof",
    "Receipt",
    "Verification",
    "build_receipt",
    "security_label",
    "verify_receipt",
]

_RECORD_STORED = keccak(b"RecordStored(bytes32,bytes32,uint64,bytes32,uint8)")
_ROOT_ANCHORED = keccak(b"RootAnchored(bytes32,uint64,bytes32,bytes32)")


RECEIPT_VERSION: Literal["qkd-notary-receipt/1"] = "qkd-notary-receipt/1"

#: Every check :func:`verify_receipt` can run, in order; a failure's ``reason`` is one of
#: them, or ``format`` / ``not-anchored`` when the document is not a checkable receipt.
RECEIPT_CHECKS: tuple[str, ...] = (
    "record-id",
    "payload-hash",
    "leaf",
    "proof",
    "chain-id",
    "contract",
    "contract-code",
    "transaction",
    "block",
    "confirmations",
    "event",
    "state",
)


def security_label(mode: str) -> Literal["information-theoretic", "computational"]:
    """What the envelope mode actually guarantees; travels with every record."""
    return "information-theoretic" if mode == "otp" else "computational"


class AnchorProof(BaseModel):
    """Where and how the record is anchored on-chain."""

    model_config = ConfigDict(frozen=True)

    method: AnchorMode = Field(description="batch: record stored; merkle: root stored")
    chain_id: int
    contract: str = Field(description="TelemetryNotary address (EIP-55)")
    tx_hash: str
    block_number: int
    block_hash: str
    block_timestamp: int = Field(description="Block timestamp, Unix seconds")
    batch_id: int = Field(description="The notary's batch number (informational)")
    batch_size: int
    leaf: str = Field(description="Merkle leaf of the record (see docs/receipts.md)")
    batch_root: str | None = Field(description="Merkle root anchored (merkle method)")
    proof: list[str] = Field(description="Sibling hashes from leaf to root (merkle method)")


class Receipt(BaseModel):
    """A notarised telemetry record and, once anchored, its on-chain proof."""

    model_config = ConfigDict(frozen=True)

    receipt_version: Literal["qkd-notary-receipt/1"] = RECEIPT_VERSION
    record_id: str
    status: RecordStatus
    device_id: str
    sequence: int
    mode: Literal["otp", "aead"]
    security: Literal["information-theoretic", "computational"]
    key_ids: list[str]
    firmware_digest: str
    device_trusted: bool = Field(description="Device trust when the record was accepted")
    payload_hash: str = Field(description="keccak256(salt || plaintext), 0x-hex")
    salt: str = Field(description="0x-hex, 32 bytes")
    sent_at_ms: int = Field(description="Device clock (authenticated header field)")
    accepted_at: str = Field(description="Notary clock, RFC 3339")
    anchor: AnchorProof | None = None


def build_receipt(record: RecordRow, anchor: AnchorProof | None) -> Receipt:
    """Assemble a receipt from the stored record and its anchor proof (if anchored)."""
    mode: Literal["otp", "aead"] = "otp" if record.mode == "otp" else "aead"
    return Receipt(
        record_id=record.record_id,
        status=record.status,
        device_id=record.device_id,
        sequence=record.sequence,
        mode=mode,
        security=security_label(record.mode),
        key_ids=list(record.key_ids),
        firmware_digest=record.firmware_digest,
        device_trusted=record.device_trusted,
        payload_hash=record.payload_hash,
        salt="0x" + record.salt.hex(),
        sent_at_ms=record.sent_at_ms,
        accepted_at=dt.datetime.fromtimestamp(record.accepted_at, dt.UTC).isoformat(),
        anchor=anchor,
    )


@dataclass(frozen=True)
class Verification:
    """What an auditor established about a receipt."""

    record_id: str
    method: AnchorMode
    chain_id: int
    contract: str
    block_number: int
    block_timestamp: int
    confirmations: int
    payload_checked: bool


def verify_receipt(
    receipt: Receipt | Mapping[str, Any] | str | bytes,
    w3: Web3,
    *,
    payload: bytes | None = None,
    expected_contract: str | None = None,
    min_confirmations: int = 1,
    on_pass: Callable[[str], None] | None = None,
) -> Verification:
    """Check ``receipt`` against the chain ``w3`` is connected to (see the module doc).

    Raises ``ReceiptInvalid`` (``reason`` says which check failed) or ``ChainUnavailable``.
    ``on_pass`` is called with the name of each check (:data:`RECEIPT_CHECKS`) as it
    passes; checks that do not apply (no payload, batch method, no pinned contract) are
    not reported.
    """
    passed = on_pass if on_pass is not None else _ignore
    parsed = _parse_receipt(receipt)
    anchor = parsed.anchor
    if parsed.status is not RecordStatus.ANCHORED or anchor is None:
        raise ReceiptInvalid("the receipt is not anchored yet", reason="not-anchored")
    _check_anchor_format(anchor)
    _check_offline(parsed, anchor, payload, passed)
    try:
        return _check_chain(
            parsed, anchor, w3, expected_contract, min_confirmations, payload, passed
        )
    except Web3Exception as exc:
        raise ChainUnavailable(f"chain query failed: {type(exc).__name__}") from exc
    except (OSError, ValueError) as exc:
        raise ChainUnavailable(f"chain node unreachable: {type(exc).__name__}") from exc


def _ignore(check: str) -> None:
    """The default ``on_pass``: nobody is listening."""


def _parse_receipt(receipt: Receipt | Mapping[str, Any] | str | bytes) -> Receipt:
    if isinstance(receipt, Receipt):
        return receipt
    try:
        if isinstance(receipt, str | bytes):
            return Receipt.model_validate_json(receipt)
        return Receipt.model_validate(receipt)
    except ValidationError:
        raise ReceiptInvalid("not a qkd-notary-receipt/1 document", reason="format") from None


def _unhex(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ReceiptInvalid(f"{what} is not hex", reason="format") from None
    return raw


def _check_anchor_format(anchor: AnchorProof) -> None:
    """Malformed chain coordinates make a bad receipt, not a failing node: refuse them
    before any query (web3 would raise its own ValueError for them)."""
    if (
        len(_unhex(anchor.tx_hash, "tx_hash")) != 32
        or len(_unhex(anchor.block_hash, "block_hash")) != 32
        or not is_address(anchor.contract)
    ):
        raise ReceiptInvalid("malformed transaction, block or contract", reason="format")


def _chain_record(receipt: Receipt) -> RecordInput:
    try:
        return RecordInput(
            record_id=_unhex(receipt.record_id, "record_id"),
            device_id=receipt.device_id,
            sequence=receipt.sequence,
            payload_hash=_unhex(receipt.payload_hash, "payload_hash"),
            mode=SecurityMode.from_label(receipt.mode),
        )
    except InvalidChainInput as exc:
        raise ReceiptInvalid(str(exc), reason="format") from None


def _check_offline(
    receipt: Receipt, anchor: AnchorProof, payload: bytes | None, passed: Callable[[str], None]
) -> None:
    expected_id = record_id(receipt.device_id, receipt.sequence, receipt.key_ids)
    if expected_id != receipt.record_id.lower():
        raise ReceiptInvalid("record ID does not match its fields", reason="record-id")
    passed("record-id")
    if payload is not None:
        if payload_hash(_unhex(receipt.salt, "salt"), payload) != receipt.payload_hash.lower():
            raise ReceiptInvalid("payload does not match the hash", reason="payload-hash")
        passed("payload-hash")
    leaf = record_leaf(_chain_record(receipt))
    if "0x" + leaf.hex() != anchor.leaf.lower():
        raise ReceiptInvalid("leaf does not match the record fields", reason="leaf")
    passed("leaf")
    if anchor.method is AnchorMode.MERKLE:
        if anchor.batch_root is None:
            raise ReceiptInvalid("Merkle receipt without a root", reason="proof")
        proof = [_unhex(p, "proof element") for p in anchor.proof]
        if any(len(p) != 32 for p in proof) or process_proof(leaf, proof) != _unhex(
            anchor.batch_root, "batch_root"
        ):
            raise ReceiptInvalid("the proof does not lead to the root", reason="proof")
        passed("proof")


def _check_chain(
    receipt: Receipt,
    anchor: AnchorProof,
    w3: Web3,
    expected_contract: str | None,
    min_confirmations: int,
    payload: bytes | None,
    passed: Callable[[str], None],
) -> Verification:
    if w3.eth.chain_id != anchor.chain_id:
        raise ReceiptInvalid("the node serves another chain", reason="chain-id")
    passed("chain-id")
    contract_address = to_checksum_address(anchor.contract)
    if expected_contract is not None:
        if to_checksum_address(expected_contract) != contract_address:
            raise ReceiptInvalid("anchored in another contract than expected", reason="contract")
        passed("contract")
    artifact = load_artifact("TelemetryNotary")
    if not artifact.matches_runtime_code(bytes(w3.eth.get_code(contract_address))):
        raise ReceiptInvalid("the contract is not TelemetryNotary", reason="contract-code")
    passed("contract-code")
    try:
        tx = w3.eth.get_transaction_receipt(anchor.tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        raise ReceiptInvalid("no such transaction on this chain", reason="transaction") from None
    if (
        tx["status"] != 1
        or tx["to"] is None
        or to_checksum_address(tx["to"]) != contract_address
        or tx["blockNumber"] != anchor.block_number
        or "0x" + bytes(tx["blockHash"]).hex() != anchor.block_hash.lower()
    ):
        raise ReceiptInvalid("the transaction does not match the receipt", reason="transaction")
    passed("transaction")
    try:
        block = w3.eth.get_block(anchor.block_number)
    except BlockNotFound:
        raise ReceiptInvalid("no such block on this chain", reason="block") from None
    if (
        "0x" + bytes(block["hash"]).hex() != anchor.block_hash.lower()
        or block["timestamp"] != anchor.block_timestamp
    ):
        raise ReceiptInvalid("the block does not match the receipt", reason="block")
    passed("block")
    confirmations = w3.eth.block_number - anchor.block_number + 1
    if confirmations < min_confirmations:
        raise ReceiptInvalid(f"only {confirmations} confirmation(s)", reason="confirmations")
    passed("confirmations")
    contract = w3.eth.contract(address=contract_address, abi=artifact.abi)
    # Views need no sender, but some backends (eth-tester) want a funded one: the account
    # that paid for the anchoring transaction is one.
    call_from: Any = {"from": tx["from"]}
    rid = _unhex(receipt.record_id, "record_id")
    if anchor.method is AnchorMode.MERKLE:
        assert anchor.batch_root is not None
        root = _unhex(anchor.batch_root, "batch_root")
        _require_event(tx, contract_address, _ROOT_ANCHORED, 1, root)
        passed("event")
        state = contract.functions.getAnchor(root).call(call_from)
        if int(state[3]) == 0 or int(state[4]) != anchor.block_number:
            raise ReceiptInvalid("the root is not anchored in that block", reason="state")
    else:
        _require_event(tx, contract_address, _RECORD_STORED, 2, rid)
        passed("event")
        device, stored_hash, sequence, recorded_at, block_number, mode, _ = (
            contract.functions.getRecord(rid).call(call_from)
        )
        if (
            int(recorded_at) == 0
            or bytes(device) != encode_device_id(receipt.device_id)
            or "0x" + bytes(stored_hash).hex() != receipt.payload_hash.lower()
            or int(sequence) != receipt.sequence
            or int(mode) != int(SecurityMode.from_label(receipt.mode))
            or int(block_number) != anchor.block_number
        ):
            raise ReceiptInvalid("the stored record differs from the receipt", reason="state")
    passed("state")
    return Verification(
        record_id=receipt.record_id,
        method=anchor.method,
        chain_id=anchor.chain_id,
        contract=contract_address,
        block_number=anchor.block_number,
        block_timestamp=anchor.block_timestamp,
        confirmations=confirmations,
        payload_checked=payload is not None,
    )


def _require_event(tx: Any, address: str, topic: bytes, position: int, value: bytes) -> None:
    for entry in tx["logs"]:
        topics = [bytes(t) for t in entry["topics"]]
        if (
            to_checksum_address(entry["address"]) == address
            and len(topics) > position
            and topics[0] == topic
            and topics[position] == value
        ):
            return
    raise ReceiptInvalid("the transaction did not emit the anchoring event", reason="event")
