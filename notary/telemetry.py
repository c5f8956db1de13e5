"""The telemetry document inside an envelope, and the identities derived from a record.

Plaintext schema (UTF-8 JSON object, version 1)::

    {"firmware_digest": "<64 lowercase hex>", "telemetry": {...any JSON object...},
     "key_delivery": "tls" | "tls-hybrid-pq" | "local"}          (the last one optional)

``firmware_digest`` is the SHA-256 (or any 256-bit) digest of the firmware that produced
the message; it feeds the attestation rules. ``key_delivery`` is how the device got this
message's keys from its KME (the device hop of the key path,
:mod:`qkd_channel.security_levels`); a device that does not say is recorded as
``unreported``, which only ever lowers the record's security label. Being inside the
sealed plaintext, the report is authenticated by the message's own MAC. Unknown top-level
fields are refused so a device cannot smuggle data past the schema.

Record ID: ``keccak256("qkd-notary/record/v1" || u8 len || device_id || u64 sequence ||
key UUID bytes...)``. It depends only on authenticated envelope header fields, so the same
envelope always maps to the same record and the chain's duplicate check makes every retry
of an anchoring transaction harmless.

Payload hash: ``keccak256(salt || plaintext)`` with a secret 32-byte salt per record, so
the on-chain hash of low-entropy telemetry ("21.5 °C") cannot be brute-forced by chain
observers. The salt is :func:`record_salt`: derived from the envelope's own QKD keys, so
the device and the notary can compute it and nobody else can; the notary shows it only to
the device's owner and auditors (``docs/receipts.md``).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from eth_hash.auto import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from notary.errors import SchemaInvalid
from qkd_channel import boundedjson
from qkd_channel.envelope import Envelope, derive_secret
from qkd_channel.keys import QKDKey

__all__ = [
    "RECORD_ID_DOMAIN",
    "RECORD_SALT_LABEL",
    "TelemetryDocument",
    "parse_document",
    "payload_hash",
    "record_id",
    "record_salt",
]

RECORD_ID_DOMAIN = b"qkd-notary/record/v1"
RECORD_SALT_LABEL = b"qkd-notary/record-salt/v1"
SALT_BYTES = 32
DIGEST_PATTERN = r"^[0-9a-f]{64}$"


class TelemetryDocument(BaseModel):
    """What a device seals: its firmware digest and a free-form telemetry object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    firmware_digest: str = Field(pattern=DIGEST_PATTERN, description="256-bit digest, hex")
    telemetry: dict[str, Any] = Field(description="Sensor readings, any JSON object")
    key_delivery: Literal["tls", "tls-hybrid-pq", "local"] | None = Field(
        default=None, description="How the device got this message's keys from its KME"
    )


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


def record_salt(envelope: Envelope, keys: Sequence[QKDKey]) -> bytes:
    """The secret salt of the record ``envelope`` makes: only the key holders know it."""
    return derive_secret(envelope, keys, label=RECORD_SALT_LABEL, length=SALT_BYTES)


def payload_hash(salt: bytes, payload: bytes) -> str:
    """0x-prefixed keccak256 commitment to the exact plaintext bytes."""
    return "0x" + keccak(salt + payload).hex()
