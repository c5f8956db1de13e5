"""Values that cross the chain layer's boundary: what goes on-chain and what comes back.

Encodings (the contracts' NatSpec and ``docs/contracts.md`` say the same):

* device ID: the UTF-8 device name right-padded with zero bytes to 32 bytes (at most 32
  bytes, no NUL), so a block explorer shows it as readable hex;
* record ID, payload hash, firmware digest, Merkle root: 32 raw bytes;
* security mode: ``TelemetryNotary.SecurityMode`` (uint8), 1 = ``otp``, 2 = ``aead``,
  3 = ``hybrid``;
* key path: ``uint32``, :meth:`qkd_channel.security_levels.KeyPath.code`;
* payload hash: whatever 32 bytes the caller commits to; the notary uses
  ``keccak256(salt || payload)`` with a secret per-record salt (:mod:`notary.telemetry`);
* timestamps: the device's (``sentAtMs``) and the notary's (``acceptedAtMs``), Unix ms.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from eth_hash.auto import keccak

from notary.errors import InvalidChainInput

__all__ = [
    "AnchorOutcome",
    "AttestationOutcome",
    "BatchOutcome",
    "DeviceAttestation",
    "DeviceInfo",
    "OnChainAnchor",
    "OnChainRecord",
    "RecordInput",
    "Role",
    "SecurityMode",
    "TxInfo",
    "bytes32",
    "decode_device_id",
    "encode_device_id",
]


class SecurityMode(enum.IntEnum):
    """``TelemetryNotary.SecurityMode``; the label says what the envelope guaranteed."""

    OTP = 1  #: one-time pad + one-time Poly1305 key
    AEAD = 2  #: AES-256-GCM under a QKD session key
    HYBRID = 3  #: AES-256-GCM under a key from a QKD key and an ML-KEM-768 secret

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> SecurityMode:
        try:
            return cls[label.upper()]
        except KeyError:
            raise InvalidChainInput(f"unknown security mode {label!r}") from None


class Role(enum.Enum):
    """AccessControl roles; the value is the role ID the contracts use."""

    ADMIN = b"\x00" * 32  #: DEFAULT_ADMIN_ROLE: grants and revokes the other roles
    OPERATOR = keccak(b"OPERATOR_ROLE")  #: registers/deactivates devices, approves firmware
    NOTARY = keccak(b"NOTARY_ROLE")  #: writes records, roots and attestations


def bytes32(value: bytes, what: str) -> bytes:
    """``value`` if it is exactly 32 bytes, else :class:`InvalidChainInput`."""
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidChainInput(f"{what} must be 32 bytes")
    return value


def encode_device_id(device_id: str) -> bytes:
    """The on-chain device ID: UTF-8, right-padded with zeros to 32 bytes."""
    raw = device_id.encode("utf-8")
    if not raw or len(raw) > 32 or b"\x00" in raw:
        raise InvalidChainInput("a device ID must be 1-32 UTF-8 bytes without NUL")
    return raw.ljust(32, b"\x00")


def decode_device_id(raw: bytes) -> str:
    """Inverse of :func:`encode_device_id`."""
    return bytes32(raw, "device ID").rstrip(b"\x00").decode("utf-8", errors="replace")


@dataclass(frozen=True)
class RecordInput:
    """One record for ``recordBatch`` (and one Merkle leaf for ``anchorRoot``): every
    field a receipt claims about the record, so the leaf commits to all of them."""

    record_id: bytes
    device_id: str
    sequence: int
    payload_hash: bytes
    mode: SecurityMode
    key_path: int  #: :meth:`qkd_channel.security_levels.KeyPath.code`
    firmware_digest: bytes
    device_trusted: bool  #: the device's trust verdict right after this message
    sent_at_ms: int  #: the device's clock (authenticated envelope header)
    accepted_at_ms: int  #: the notary's clock when it accepted the envelope
    #: Published in a ``PayloadPublished`` event when non-empty; never stored on-chain.
    payload: bytes = b""

    def __post_init__(self) -> None:
        bytes32(self.record_id, "record ID")
        bytes32(self.payload_hash, "payload hash")
        bytes32(self.firmware_digest, "firmware digest")
        encode_device_id(self.device_id)
        for name in ("sequence", "sent_at_ms", "accepted_at_ms"):
            if not 0 <= getattr(self, name) < 2**64:
                raise InvalidChainInput(f"{name} must fit in uint64")
        if not 0 <= self.key_path < 2**32:
            raise InvalidChainInput("key_path must fit in uint32")
        if not isinstance(self.mode, SecurityMode):
            raise InvalidChainInput("mode must be a SecurityMode")

    def abi_row(self) -> tuple[object, ...]:
        """The ``RecordInput`` tuple as the contract's ABI takes it."""
        return (
            self.record_id,
            encode_device_id(self.device_id),
            self.sequence,
            self.payload_hash,
            int(self.mode),
            self.key_path,
            self.firmware_digest,
            self.device_trusted,
            self.sent_at_ms,
            self.accepted_at_ms,
        )


@dataclass(frozen=True)
class TxInfo:
    """A confirmed transaction."""

    tx_hash: str  #: 0x-hex
    block_number: int
    block_hash: str  #: 0x-hex
    block_timestamp: int  #: Unix seconds
    gas_used: int


@dataclass(frozen=True)
class BatchOutcome:
    """Result of ``recordBatch``, record IDs by what the contract did with them."""

    tx: TxInfo
    recorded: tuple[bytes, ...]  #: new, stored now
    skipped: tuple[bytes, ...]  #: stored before with the same content (a retry)
    #: stored before with other content: (record ID, device ID stored on-chain)
    conflicts: tuple[tuple[bytes, str], ...] = ()
    refused: tuple[bytes, ...] = ()  #: the device is not active in the registry


@dataclass(frozen=True)
class AnchorOutcome:
    """Result of ``anchorRoot``; ``anchored`` is False when the root was already anchored."""

    tx: TxInfo
    root: bytes
    anchored: bool


@dataclass(frozen=True)
class AttestationOutcome:
    """Result of ``attestFirmware``."""

    tx: TxInfo
    changed: bool  #: differs from the previously attested digest
    trusted: bool  #: trust status after the attestation


@dataclass(frozen=True)
class OnChainRecord:
    """``TelemetryNotary.getRecord``."""

    record_id: bytes
    device_id: str
    sequence: int
    leaf: bytes  #: commits to every field of the record (``leafHash``)
    mode: SecurityMode
    recorded_at: int  #: block timestamp
    block_number: int
    payload_published: bool


@dataclass(frozen=True)
class OnChainAnchor:
    """``TelemetryNotary.getAnchor``."""

    root: bytes
    count: int
    first_record_id: bytes
    last_record_id: bytes
    anchored_at: int  #: block timestamp
    block_number: int


@dataclass(frozen=True)
class DeviceInfo:
    """``DeviceRegistry.getDevice`` plus ``isTrusted``."""

    device_id: str
    sae_id: str
    owner: str  #: EIP-55 address
    approved_firmware: bytes | None
    last_firmware: bytes | None
    registered_at: int
    last_change_at: int
    attestation_count: int
    active: bool
    trusted: bool


@dataclass(frozen=True)
class DeviceAttestation:
    """One entry of ``DeviceRegistry.getAttestation``."""

    digest: bytes
    sequence: int  #: the telemetry message that reported the digest
    attested_at: int
    block_number: int
    changed: bool
    trusted: bool
