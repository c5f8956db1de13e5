"""Public request and response schemas of the HTTP API.

These are deliberately separate from the stored rows (:mod:`notary.storage.base`): the rows
hold payloads, salts and internal bookkeeping that a response must not leak by accident.
Every response model is built field by field from a row in :mod:`notary.api.convert`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from notary.storage.base import AccessRole, DeviceEventKind
from notary.telemetry import DIGEST_PATTERN

__all__ = [
    "AccessTokenCreate",
    "AccessTokenIssued",
    "AccessTokenPublic",
    "DeviceCreate",
    "DeviceEventPublic",
    "DevicePublic",
    "DigestApproval",
    "EnvelopeJSON",
    "Health",
    "Problem",
    "Readiness",
    "ReadinessCheck",
    "Redeployment",
    "TelemetryAccepted",
]

_ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"


class Problem(BaseModel):
    """RFC 9457 problem details, plus the notary's machine-readable ``reason``."""

    type: str = Field(description="URI identifying the problem type")
    title: str
    status: int
    detail: str
    reason: str = Field(description="Stable machine-readable label, e.g. replay")
    record_id: str | None = Field(
        default=None, description="For a resent accepted envelope: where its record is"
    )
    retry_after: int | None = Field(default=None, description="Seconds, on 503 answers")


class EnvelopeJSON(BaseModel):
    """The JSON transport form of a sealed envelope (see qkd_channel.envelope)."""

    model_config = ConfigDict(title="Envelope")

    v: Literal[1]
    mode: Literal["otp", "aead", "hybrid"]
    sender: str = Field(description="Device ID")
    recipient: str = Field(description="The notary's ID")
    seq: int = Field(ge=0, lt=2**64, description="Strictly increasing per device")
    ts: int = Field(ge=0, description="Sender clock, ms since the Unix epoch")
    key_ids: list[str] = Field(min_length=1, max_length=64, description="QKD key UUIDs")
    nonce: str = Field(
        description="base64 mode parameters: empty in otp, the 12-byte GCM nonce in aead, "
        "ML-KEM key ID, ciphertext and GCM nonce (1108 bytes) in hybrid"
    )
    ct: str = Field(description="base64 ciphertext")
    tag: str = Field(description="base64 16-byte Poly1305 or GCM tag")


class TelemetryAccepted(BaseModel):
    """Answer to an accepted envelope: where to fetch its receipt."""

    record_id: str = Field(description="0x-prefixed bytes32, deterministic per envelope")
    status: Literal["accepted"] = "accepted"
    device_id: str
    sequence: int
    mode: Literal["otp", "aead", "hybrid"]
    device_trusted: bool = Field(description="Device trust after this message's attestation")
    attestation: DeviceEventKind | None = Field(
        description="first-digest or digest-changed when this message changed the device"
    )
    receipt_url: str = Field(description="Path of the receipt, relative to the API root")


class DeviceCreate(BaseModel):
    """Admin request: register a device."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(
        min_length=1,
        max_length=32,
        pattern=_ID_PATTERN,
        description="At most 32 ASCII characters: the chain stores it as bytes32",
    )
    sae_id: str = Field(min_length=1, max_length=128, pattern=_ID_PATTERN)
    owner: str = Field(default="", max_length=128)
    expected_firmware_digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)


class DigestApproval(BaseModel):
    """Admin request: approve a firmware digest for a device."""

    model_config = ConfigDict(extra="forbid")

    firmware_digest: str = Field(pattern=DIGEST_PATTERN)


class DeviceEventPublic(BaseModel):
    kind: DeviceEventKind
    firmware_digest: str | None
    at: float = Field(description="Unix time")
    record_id: str | None
    chain_tx_hash: str | None = Field(description="DeviceRegistry transaction, once mirrored")


class DevicePublic(BaseModel):
    """Registration, trust status and attestation history of a device."""

    device_id: str
    sae_id: str
    owner: str
    active: bool
    trusted: bool
    approved_firmware_digest: str | None
    current_firmware_digest: str | None
    last_sequence: int | None
    registered_at: float
    attestation_count: int
    last_change_at: float | None
    history: list[DeviceEventPublic]


class AccessTokenCreate(BaseModel):
    """Admin request: a token for the disclosed view of receipts (plaintext and salt)."""

    model_config = ConfigDict(extra="forbid")

    role: AccessRole = Field(description="owner: one device's records; auditor: every device's")
    device_id: str | None = Field(
        default=None, max_length=32, description="The device an owner token covers"
    )
    label: str = Field(min_length=1, max_length=64, description="Whom it was issued to")


class AccessTokenPublic(BaseModel):
    """An access token as listed: never the token itself."""

    token_id: str = Field(description="Public handle: first 12 hex digits of its SHA-256")
    role: AccessRole
    device_id: str | None
    label: str
    created_at: float
    revoked_at: float | None


class AccessTokenIssued(AccessTokenPublic):
    """A new token: ``token`` is shown this once and stored only as its hash."""

    token: str


class Redeployment(BaseModel):
    """Answer to a redeployment: the new contracts and what goes to them again."""

    chain_id: int
    registry: str
    notary: str
    batches: int = Field(description="Batches sent back to be anchored in the new contracts")
    records: int
    device_events: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessCheck(BaseModel):
    ok: bool
    detail: str
    required: bool = Field(description="Whether this check decides readiness")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, ReadinessCheck]
