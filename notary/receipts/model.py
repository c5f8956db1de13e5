"""The receipt documents: ``qkd-notary-receipt/2`` and the superseded ``/1``.

A v2 receipt claims nothing that is not either committed on-chain (in the record's leaf:
``docs/receipts.md``) or derived from committed fields (``security`` from ``mode`` and
``key_path``). The public view carries hashes, proofs and chain coordinates only; the
``disclosure`` section (the salt and the plaintext) is filled in only for the device's
owner and auditors, so a low-entropy reading cannot be guessed from what anyone can fetch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from notary.config import AnchorMode
from notary.storage.base import RecordStatus

__all__ = [
    "RECEIPT_VERSION",
    "RECEIPT_VERSION_1",
    "AnchorProof",
    "AnchorProofV1",
    "Disclosure",
    "KeyPathView",
    "Receipt",
    "ReceiptV1",
    "SecurityView",
]

RECEIPT_VERSION: Literal["qkd-notary-receipt/2"] = "qkd-notary-receipt/2"
RECEIPT_VERSION_1: Literal["qkd-notary-receipt/1"] = "qkd-notary-receipt/1"

HopLabel = Literal["unreported", "tls", "tls-hybrid-pq", "local", "qkd", "qkd-trusted-relay"]
LevelLabel = Literal["information-theoretic", "computational, quantum-resistant", "computational"]


class AnchorProof(BaseModel):
    """Where and how the record is anchored on-chain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: AnchorMode = Field(description="batch: record stored; merkle: root stored")
    chain_id: int
    contract: str = Field(description="TelemetryNotary address (EIP-55)")
    tx_hash: str
    block_number: int
    block_hash: str
    block_timestamp: int = Field(description="Block timestamp, Unix seconds")
    batch_size: int = Field(description="Records in the anchoring transaction or tree")
    leaf: str = Field(description="Merkle leaf of the record (see docs/receipts.md)")
    batch_root: str | None = Field(description="Merkle root anchored (merkle method)")
    proof: list[str] = Field(description="Sibling hashes from leaf to root (merkle method)")


class KeyPathView(BaseModel):
    """How the message's keys travelled (``docs/security-levels.md``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    link: HopLabel = Field(description="Between the two KMEs")
    device: HopLabel = Field(description="From the device's KME to the device")
    notary: HopLabel = Field(description="From the notary's KME to the notary")


class SecurityView(BaseModel):
    """What the record's protection rests on, derived from ``mode`` and ``key_path``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    confidentiality: LevelLabel
    authenticity: LevelLabel
    trusted_nodes: bool = Field(description="Relay nodes between the KMEs saw the key")


class Disclosure(BaseModel):
    """What only the device's owner and auditors may see: it unlocks the reading."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    salt: str = Field(description="0x-hex, 32 bytes; derived from the message's QKD keys")
    payload: str = Field(description="The exact UTF-8 plaintext the device sealed")


class Receipt(BaseModel):
    """A notarised telemetry record and, once anchored and final, its on-chain proof."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    receipt_version: Literal["qkd-notary-receipt/2"] = RECEIPT_VERSION
    record_id: str
    status: RecordStatus
    device_id: str
    sequence: int
    key_ids: list[str]
    mode: Literal["otp", "aead", "hybrid"]
    key_path: KeyPathView
    security: SecurityView
    firmware_digest: str = Field(description="Firmware digest the device reported, 64 hex")
    device_trusted: bool = Field(description="Device trust right after this message")
    payload_hash: str = Field(description="keccak256(salt || plaintext), 0x-hex")
    sent_at_ms: int = Field(description="Device clock (authenticated header field)")
    accepted_at_ms: int = Field(description="Notary clock at acceptance, Unix ms")
    anchor: AnchorProof | None = None
    disclosure: Disclosure | None = Field(
        default=None, description="Owner and auditor view only (docs/receipts.md)"
    )

    def public(self) -> Receipt:
        """The same receipt without the disclosure section."""
        return self.model_copy(update={"disclosure": None})


class AnchorProofV1(BaseModel):
    """The anchor section of a v1 receipt."""

    model_config = ConfigDict(frozen=True)

    method: AnchorMode
    chain_id: int
    contract: str
    tx_hash: str
    block_number: int
    block_hash: str
    block_timestamp: int
    batch_id: int
    batch_size: int
    leaf: str
    batch_root: str | None
    proof: list[str]


class ReceiptV1(BaseModel):
    """A receipt issued before v2: only part of its claims are bound on-chain."""

    model_config = ConfigDict(frozen=True)

    receipt_version: Literal["qkd-notary-receipt/1"] = RECEIPT_VERSION_1
    record_id: str
    status: RecordStatus
    device_id: str
    sequence: int
    mode: Literal["otp", "aead"]
    security: str
    key_ids: list[str]
    firmware_digest: str
    device_trusted: bool
    payload_hash: str
    salt: str
    sent_at_ms: int
    accepted_at: str
    anchor: AnchorProofV1 | None = None
