"""What a record is made of, computed identically by the device and the notary.

Telemetry document (the plaintext a device seals; UTF-8 JSON object, version 1)::

    {"firmware_digest": "<64 lowercase hex>", "key_delivery": "local" | "tls",
     "telemetry": {...any JSON object...}}

``firmware_digest`` is the SHA-256 (or any 256-bit) digest of the firmware that produced
the message; it feeds the notary's attestation rules. ``key_delivery`` (optional) is how
the device got this message's keys from its KME, the device hop of the record's key path
(``docs/security-levels.md``): the SDK derives it from its KME client's URL and leaves it
out when it cannot tell. The notary refuses unknown top-level fields (its validating
parser is ``notary.telemetry.parse_document``).

Record ID: ``keccak256("qkd-notary/record/v1" || u8 len || device_id || u64 sequence ||
key UUID bytes...)``. It depends only on authenticated envelope header fields, so the same
envelope always maps to the same record and the chain's duplicate check makes every retry
of an anchoring transaction harmless.

Payload hash: ``keccak256(salt || plaintext)`` with a secret 32-byte salt per record, so
the on-chain hash of low-entropy telemetry ("21.5 °C") cannot be brute-forced by chain
observers. The salt is :func:`record_salt`: derived from the envelope's own QKD keys, so
the device and the notary can compute it and nobody else can. The device keeps its own
(see ``DeliveryReceipt.salt``) and can check any receipt's payload hash without the notary
ever disclosing it.

keccak256 is the Ethereum hash (original Keccak padding), not SHA3-256: safe-pysha3
provides it, a small C extension with no dependencies.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sha3

from qkd_channel.envelope import Envelope, derive_secret
from qkd_channel.keys import QKDKey

__all__ = [
    "DIGEST_PATTERN",
    "RECORD_ID_DOMAIN",
    "RECORD_SALT_LABEL",
    "SALT_BYTES",
    "build_document",
    "keccak256",
    "payload_hash",
    "record_id",
    "record_salt",
]

RECORD_ID_DOMAIN = b"qkd-notary/record/v1"
RECORD_SALT_LABEL = b"qkd-notary/record-salt/v1"
SALT_BYTES = 32
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
_DIGEST_CHARS = frozenset("0123456789abcdef")
#: What a document may say about its key delivery (the notary accepts exactly these).
_KEY_DELIVERIES = frozenset({"local", "tls", "tls-hybrid-pq"})


def keccak256(data: bytes) -> bytes:
    """The 32-byte Keccak-256 digest (Ethereum's ``keccak256``)."""
    return bytes(sha3.keccak_256(data).digest())


def build_document(
    firmware_digest: str, telemetry: Mapping[str, Any], *, key_delivery: str | None = None
) -> bytes:
    """The plaintext a device seals, canonical (sorted keys, no spaces), validated early.

    ``key_delivery``: how this message's keys reached the device (``"local"`` or ``"tls"``;
    ``None`` leaves it out, which the notary records as ``unreported``). Raises
    ``ValueError``/``TypeError`` before any key is spent on a document the notary would
    refuse.
    """
    if len(firmware_digest) != 64 or not set(firmware_digest) <= _DIGEST_CHARS:
        raise ValueError(f"firmware digest must match {DIGEST_PATTERN} (lowercase hex)")
    if not isinstance(telemetry, Mapping):
        raise TypeError("telemetry must be a JSON object (dict)")
    doc: dict[str, Any] = {"firmware_digest": firmware_digest, "telemetry": dict(telemetry)}
    if key_delivery is not None:
        if key_delivery not in _KEY_DELIVERIES:
            raise ValueError(f"key_delivery must be one of {sorted(_KEY_DELIVERIES)}")
        doc["key_delivery"] = key_delivery
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


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
    return "0x" + keccak256(material).hex()


def record_salt(envelope: Envelope, keys: Sequence[QKDKey]) -> bytes:
    """The secret salt of the record ``envelope`` makes: only the key holders know it."""
    return derive_secret(envelope, keys, label=RECORD_SALT_LABEL, length=SALT_BYTES)


def payload_hash(salt: bytes, payload: bytes) -> str:
    """0x-prefixed keccak256 commitment to the exact plaintext bytes."""
    return "0x" + keccak256(salt + payload).hex()
