"""The telemetry document inside an envelope, and the identities derived from a record.

Plaintext schema (UTF-8 JSON object, version 1)::

    {"firmware_digest": "<64 lowercase hex>", "telemetry": {...any JSON object...}}

``firmware_digest`` is the SHA-256 (or any 256-bit) digest of the firmware that produced
the message; it feeds the attestation rules. Unknown top-level fields are refused so a
device cannot smuggle data past the schema.

Record ID: ``keccak256("qkd-notary/record/v1" || u8 len || device_id || u64 sequence ||
key UUID bytes...)``. It depends only on authenticated envelope header fields, so the same
envelope always maps to the same record and the chain's duplicate check makes every retry
of an anchoring transaction harmless.

Payload hash: ``keccak256(salt || plaintext)`` with a fresh 32-byte salt per record, so the
on-chain hash of low-entropy telemetry ("21.5 °C") cannot be brute-forced by chain
observers; the receipt discloses the salt to whoever holds it.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Sequence
from typing import Any

from eth_hash.auto import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from notary.errors import SchemaInvalid
from qkd_channel import boundedjson

__all__ = [
    "RECORD_ID_DOMAIN",
    "TelemetryDocument",
    "new_salt",
    "parse_document",
    "payload_hash",
    "record_id",
]

RECORD_ID_DOMAIN = b"qkd-notary/record/v1"
SALT_BYTES = 32
DIGEST_PATTERN = r"^[0-9a-f]{64}$"


class TelemetryDocument(BaseModel):
    """What a device seals: its firmware digest and a free-form telemetry object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    firmware_digest: str = Field(pattern=DIGEST_PATTERN, description="256-bit digest, hex")
    telemetry: dict[str, Any] = Field(description="Sensor readings, any JSON object")


def parse_document(plaintext: bytes) -> TelemetryDocument:
    """Validate decrypted plaintext; anything else raises ``SchemaInvalid`` (422)."""
    try:
        raw = boundedjson.loads(plaintext)
    except ValueError:
        raise SchemaInvalid(
            f"plaintext is not UTF-8 JSON nested at most {boundedjson.MAX_DEPTH} deep"
        ) from None
    try:
        return TelemetryDocument.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "<root>" for err in exc.errors()})
        raise SchemaInvalid(f"telemetry document invalid at: {', '.join(fields)}") from None


def record_id(device_id: str, sequence: int, key_ids: Sequence[str]) -> str:
    """Deterministic 0x-prefixed bytes32 identifier of the record an envelope makes."""
    device = device_id.encode("utf-8")
    material = b"".join(
        [
            RECORD_ID_DOMAIN,
            struct.pack(">B", len(device)),
            device,
            struct.pack(">Q", sequence),
            *(uuid.UUID(key_id).bytes for key_id in key_ids),
        ]
    )
    return "0x" + keccak(material).hex()


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def payload_hash(salt: bytes, payload: bytes) -> str:
    """0x-prefixed keccak256 commitment to the exact plaintext bytes."""
    return "0x" + keccak(salt + payload).hex()
