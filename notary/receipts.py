"""Versioned notary receipts: what ``GET /v1/records/{id}`` returns and auditors verify.

A receipt (format ``qkd-notary-receipt/1``, documented in ``docs/receipts.md``) is
self-contained: together with the plaintext the device sent (optional) and *any* JSON-RPC
node of the chain, it proves that the record was anchored, without trusting the notary.
Chainpoint receipts and TrustOS trust points are the models: the receipt states the
claim, and the chain is the only authority consulted when checking it.

Building receipts lives here; checking them lives in :mod:`notary.verify`.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from notary.config import AnchorMode
from notary.storage.base import RecordRow, RecordStatus

__all__ = [
    "RECEIPT_VERSION",
    "AnchorProof",
    "Receipt",
    "build_receipt",
    "security_label",
]

RECEIPT_VERSION: Literal["qkd-notary-receipt/1"] = "qkd-notary-receipt/1"


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
