"""Verify a receipt against any node of the chain, without trusting the notary.

:func:`verify_receipt` needs the receipt, a ``Web3`` connected to any node of the chain
and, optionally, the plaintext and salt (an owner's or auditor's receipt carries both in
its ``disclosure``; a device can compute its own salt). It uses nothing the notary stores.
For a ``qkd-notary-receipt/2`` document, in order (names in :data:`RECEIPT_CHECKS`):

1. ``record-id``: recomputed from device ID, sequence and key IDs;
2. ``payload-hash``: ``keccak256(salt || plaintext)``, when both are at hand;
3. ``security``: the levels follow from ``mode`` and ``key_path`` (never asserted);
4. ``leaf``: recomputed from every bound field; ``proof`` (Merkle method) leads to the root;
5. ``chain-id``, ``contract`` (if pinned), ``contract-code``: the node and the contract;
6. ``transaction``, ``block``, ``confirmations``: the anchoring transaction is final;
7. ``event``, ``state``, ``batch-size``: the transaction anchored this root (or stored
   this record, whose event repeats every field, so a forged field is named), and the
   contract's state still agrees;
8. ``accepted-at``: the notary accepted the record before the block that anchors it;
9. ``registry``, ``attestation``: the device is registered in the contract's
   ``DeviceRegistry``, and the registry's attestation history has the receipt's firmware
   digest as the one in effect for this message's sequence number.

A contradicted claim raises :class:`~notary.errors.ReceiptInvalid` whose ``reason`` is the
check and whose message names the field; a receipt that is not anchored and final yet
raises :class:`~notary.errors.ReceiptNotFinal`; an unreachable node raises
``ChainUnavailable``. Otherwise the result is a :class:`VerificationReport` listing every
field as verified on-chain, verified locally, or not verifiable. v1 receipts are checked
by :mod:`notary.receipts.legacy` and reported with their unbound fields as such.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eth_utils.address import to_checksum_address
from pydantic import ValidationError
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from notary.chain.artifacts import load_artifact
from notary.chain.merkle import process_proof, record_leaf
from notary.chain.models import RecordInput, SecurityMode, encode_device_id
from notary.config import AnchorMode
from notary.errors import ChainUnavailable, InvalidChainInput, ReceiptInvalid
from notary.receipts.chainview import AnchorChecks, CheckLog, unhex
from notary.receipts.legacy import verify_v1
from notary.receipts.model import RECEIPT_VERSION_1, Receipt, ReceiptV1
from notary.receipts.report import Outcome, VerificationReport
from notary.storage.base import RecordStatus
from notary.telemetry import payload_hash, record_id
from qkd_channel.boundedjson import loads as bounded_loads
from qkd_channel.security_levels import KeyPath, derive_levels

__all__ = ["BOUND_FIELDS", "chain_record", "parse_receipt", "verify_receipt"]

#: The fields a v2 leaf commits to (besides the record ID), in the receipt's names.
BOUND_FIELDS: tuple[str, ...] = (
    "device_id",
    "sequence",
    "payload_hash",
    "mode",
    "key_path",
    "firmware_digest",
    "device_trusted",
    "sent_at_ms",
    "accepted_at_ms",
)
#: How far the notary's clock may run ahead of the chain's before a receipt whose record
#: was "accepted" after its anchoring block is refused.
CLOCK_SKEW_MS = 300_000
#: Attestations walked back at most, looking for the one in effect for a message.
MAX_ATTESTATIONS_WALKED = 256

_RECORD_TUPLE = "(bytes32,bytes32,uint64,bytes32,uint8,uint32,bytes32,bool,uint64,uint64)"


def parse_receipt(
    document: Receipt | ReceiptV1 | Mapping[str, Any] | str | bytes,
) -> Receipt | ReceiptV1:
    """A receipt of a version this build knows; anything else is ``format``."""
    if isinstance(document, Receipt | ReceiptV1):
        return document
    try:
        raw = bounded_loads(document) if isinstance(document, str | bytes) else dict(document)
    except (ValueError, TypeError):
        raise ReceiptInvalid("not a JSON receipt", reason="format") from None
    version = raw.get("receipt_version") if isinstance(raw, dict) else None
    model: type[Receipt] | type[ReceiptV1] = ReceiptV1 if version == RECEIPT_VERSION_1 else Receipt
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "<root>" for e in exc.errors()})
        raise ReceiptInvalid(
            f"not a qkd-notary receipt (v1 or v2): bad {', '.join(fields[:5])}", reason="format"
        ) from None


def verify_receipt(
    receipt: Receipt | ReceiptV1 | Mapping[str, Any] | str | bytes,
    w3: Web3,
    *,
    payload: bytes | None = None,
    salt: bytes | None = None,
    expected_record_id: str | None = None,
    expected_contract: str | None = None,
    min_confirmations: int = 1,
    on_pass: Callable[[str], None] | None = None,
) -> VerificationReport:
    """Check ``receipt`` against the chain ``w3`` is connected to (see the module doc).

    ``payload``/``salt`` default to the receipt's ``disclosure``. ``expected_record_id``
    refuses a receipt of another record. ``on_pass`` hears the name of each check
    (:data:`RECEIPT_CHECKS`) as it passes.
    """
    parsed = parse_receipt(receipt)
    log = CheckLog(parsed.receipt_version, parsed.record_id, on_pass or _ignore)
    if expected_record_id is not None and parsed.record_id.lower() != expected_record_id.lower():
        raise log.refuse(
            "record-id",
            "record_id",
            f"the receipt is for record {parsed.record_id}, not {expected_record_id}",
        )
    try:
        if isinstance(parsed, ReceiptV1):
            return verify_v1(
                parsed,
                w3,
                log,
                payload=payload,
                salt=salt,
                expected_contract=expected_contract,
                min_confirmations=min_confirmations,
            )
        return _Verifier(parsed, w3, log).run(payload, salt, expected_contract, min_confirmations)
    except Web3Exception as exc:
        raise ChainUnavailable(f"chain query failed: {type(exc).__name__}") from exc
    except (OSError, ValueError) as exc:
        raise ChainUnavailable(f"chain node unreachable: {type(exc).__name__}") from exc


def _ignore(check: str) -> None:
    """The default ``on_pass``: nobody is listening."""


def chain_record(receipt: Receipt) -> RecordInput:
    """The record a v2 receipt describes, in the contract's terms (its leaf's preimage)."""
    try:
        return RecordInput(
            record_id=unhex(receipt.record_id, "record_id"),
            device_id=receipt.device_id,
            sequence=receipt.sequence,
            payload_hash=unhex(receipt.payload_hash, "payload_hash"),
            mode=SecurityMode.from_label(receipt.mode),
            key_path=KeyPath.from_dict(receipt.key_path.model_dump()).code,
            firmware_digest=unhex(receipt.firmware_digest, "firmware_digest"),
            device_trusted=receipt.device_trusted,
            sent_at_ms=receipt.sent_at_ms,
            accepted_at_ms=receipt.accepted_at_ms,
        )
    except (InvalidChainInput, ValueError) as exc:
        raise ReceiptInvalid(f"a record field cannot be encoded: {exc}", reason="format") from None


class _Verifier:
    """One v2 verification run (see the module docstring for the order of checks)."""

    def __init__(self, receipt: Receipt, w3: Web3, log: CheckLog) -> None:
        self.receipt = receipt
        self.w3 = w3
        self.log = log

    def run(
        self,
        payload: bytes | None,
        salt: bytes | None,
        expected_contract: str | None,
        min_confirmations: int,
    ) -> VerificationReport:
        receipt, log = self.receipt, self.log
        log.field("receipt_version", Outcome.LOCAL, "a version this verifier knows")
        anchor = receipt.anchor
        if receipt.status is not RecordStatus.ANCHORED or anchor is None:
            raise log.not_final(f"the record is {receipt.status.value}, not anchored yet")
        record = chain_record(receipt)
        self._offline(record, payload, salt)
        chain = AnchorChecks(self.w3, anchor, load_artifact("TelemetryNotary"), log)
        chain.node_and_contract(expected_contract)
        chain.transaction_and_block(min_confirmations)
        leaf = unhex(anchor.leaf, "leaf")
        if anchor.method is AnchorMode.MERKLE:
            assert anchor.batch_root is not None  # _offline checked the proof
            chain.root_anchored(unhex(anchor.batch_root, "batch_root"))
        else:
            self._stored(chain, record, leaf)
        self._bound_fields_on_chain()
        self._accepted_before_block(anchor.block_timestamp)
        self._registry(chain)
        return log.report(**chain.chain_facts())

    # -- local ---------------------------------------------------------------------------
    def _offline(self, record: RecordInput, payload: bytes | None, salt: bytes | None) -> None:
        receipt, log = self.receipt, self.log
        assert receipt.anchor is not None
        if record_id(receipt.device_id, receipt.sequence, receipt.key_ids) != (
            receipt.record_id.lower()
        ):
            raise log.refuse(
                "record-id", "record_id", "does not match device_id, sequence and key_ids"
            )
        log.passed_check("record-id")
        log.field("key_ids", Outcome.LOCAL, "they and device_id, sequence give the record ID")
        self._payload(payload, salt)
        levels = derive_levels(receipt.mode, KeyPath.from_dict(receipt.key_path.model_dump()))
        if levels.to_dict() != receipt.security.model_dump():
            raise log.refuse(
                "security",
                "security",
                f"{receipt.mode} over this key path gives {levels.to_dict()}",
            )
        log.passed_check("security")
        log.field("security", Outcome.LOCAL, "derived from mode and key_path")
        leaf = record_leaf(record)
        if "0x" + leaf.hex() != receipt.anchor.leaf.lower():
            raise log.refuse(
                "leaf",
                "anchor.leaf",
                "the receipt's fields do not hash to its leaf (one of record_id, "
                + ", ".join(BOUND_FIELDS)
                + " was changed)",
            )
        log.passed_check("leaf")
        if receipt.anchor.method is AnchorMode.MERKLE:
            proof = [unhex(p, "proof element") for p in receipt.anchor.proof]
            root = receipt.anchor.batch_root
            if (
                root is None
                or any(len(p) != 32 for p in proof)
                or process_proof(leaf, proof) != unhex(root, "batch_root")
            ):
                raise log.refuse(
                    "proof",
                    "anchor.proof",
                    "does not lead from the leaf to the root: the record's fields are not "
                    "what was anchored",
                )
            log.passed_check("proof")
            log.field("anchor.proof", Outcome.LOCAL, "leads from the leaf to the root")
        log.field("anchor.leaf", Outcome.LOCAL, "recomputed from the record's fields")

    def _payload(self, payload: bytes | None, salt: bytes | None) -> None:
        receipt, log = self.receipt, self.log
        disclosure = receipt.disclosure
        if disclosure is not None:
            salt = salt if salt is not None else unhex(disclosure.salt, "salt")
            payload = payload if payload is not None else disclosure.payload.encode("utf-8")
        if payload is None:
            return
        if salt is None:
            log.field(
                "payload",
                Outcome.UNVERIFIABLE,
                "no salt: the public receipt has none (the device can derive it; "
                "owners and auditors get it with the receipt)",
            )
            return
        if payload_hash(salt, payload) != receipt.payload_hash.lower():
            raise log.refuse(
                "payload-hash", "payload", "the plaintext and salt do not hash to payload_hash"
            )
        log.passed_check("payload-hash")
        for name in ("payload", "salt"):
            log.field(name, Outcome.LOCAL, "hash to payload_hash")

    # -- on-chain ------------------------------------------------------------------------
    def _stored(self, chain: AnchorChecks, record: RecordInput, leaf: bytes) -> None:
        """Batch method: the ``RecordStored`` event repeats every field (a forged one is
        named), and ``getRecord`` still holds the same leaf in the same block."""
        log = self.log
        entry = chain.event(chain.artifact.event_topic("RecordStored"), 2, record.record_id)
        logged_leaf, logged = self.w3.codec.decode(["bytes32", _RECORD_TUPLE], bytes(entry["data"]))
        for name, mine, theirs in zip(
            ("record_id", *BOUND_FIELDS), record.abi_row(), logged, strict=True
        ):
            if _normalise(mine) != _normalise(theirs):
                raise log.refuse("event", name, "differs from the record the chain stored")
        log.passed_check("event")
        device, stored_leaf, _, recorded_at, block_number, _, _ = chain.call(
            "getRecord", record.record_id
        )
        if (
            int(recorded_at) == 0
            or bytes(stored_leaf) != leaf
            or bytes(logged_leaf) != leaf
            or bytes(device) != encode_device_id(record.device_id)
            or int(block_number) != chain.anchor.block_number
        ):
            raise log.refuse("state", "anchor.leaf", "the contract no longer holds this record")
        log.passed_check("state")
        chain.batch_size_from_events()

    def _bound_fields_on_chain(self) -> None:
        self.log.field("record_id", Outcome.ON_CHAIN, "committed in the anchored leaf")
        for name in BOUND_FIELDS:
            if name not in ("firmware_digest", "accepted_at_ms", "device_id"):
                self.log.field(name, Outcome.ON_CHAIN, "committed in the anchored leaf")

    def _accepted_before_block(self, block_timestamp: int) -> None:
        if self.receipt.accepted_at_ms > block_timestamp * 1000 + CLOCK_SKEW_MS:
            raise self.log.refuse(
                "accepted-at", "accepted_at_ms", "later than the block that anchors it"
            )
        self.log.passed_check("accepted-at")
        self.log.field(
            "accepted_at_ms", Outcome.ON_CHAIN, "committed in the leaf, before its block"
        )

    def _registry(self, chain: AnchorChecks) -> None:
        """``registry`` and ``attestation``: cross-checks in the DeviceRegistry."""
        receipt, log = self.receipt, self.log
        artifact = load_artifact("DeviceRegistry")
        address = to_checksum_address(chain.call("registry"))
        if not artifact.matches_runtime_code(bytes(self.w3.eth.get_code(address))):
            raise log.refuse("registry", "device_id", "the notary's registry is not genuine")
        registry = self.w3.eth.contract(address=address, abi=artifact.abi)
        device_id = encode_device_id(receipt.device_id)
        sender: Any = {"from": chain.tx["from"]}
        try:
            registry.functions.getDevice(device_id).call(sender)
        except ContractLogicError:
            raise log.refuse(
                "registry", "device_id", "not registered in the DeviceRegistry"
            ) from None
        log.passed_check("registry")
        log.field("device_id", Outcome.ON_CHAIN, "committed in the leaf, registered")
        count = int(registry.functions.attestationCount(device_id).call(sender))
        for index in range(count - 1, max(-1, count - 1 - MAX_ATTESTATIONS_WALKED), -1):
            digest, sequence, *_ = registry.functions.getAttestation(device_id, index).call(sender)
            if int(sequence) > receipt.sequence:
                continue
            if bytes(digest).hex() != receipt.firmware_digest.lower():
                raise log.refuse(
                    "attestation",
                    "firmware_digest",
                    f"the registry attested {bytes(digest).hex()} for message {int(sequence)}",
                )
            log.passed_check("attestation")
            log.field(
                "firmware_digest",
                Outcome.ON_CHAIN,
                f"committed in the leaf, attested in DeviceRegistry (message {int(sequence)})",
            )
            return
        log.field(
            "firmware_digest",
            Outcome.ON_CHAIN,
            "committed in the leaf (the registry has no attestation for it yet)",
        )


def _normalise(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytes | bytearray) else value
