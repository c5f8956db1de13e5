"""The telemetry document inside an envelope, as the notary validates it.

The document's schema, record IDs, record salts and payload hashes are defined once, on
the device side (:mod:`qkd_device.records`, which the device needs to compute the same
values); they are re-exported here under their old names for the server's modules. What
only the server does lives here: validating decrypted plaintext against the schema
(unknown top-level fields refused, so a device cannot smuggle data past it).

``key_delivery`` (optional) is how the device got this message's keys from its KME: the
device hop of the record's key path (:mod:`qkd_channel.security_levels`). A device that
does not say is recorded as ``unreported``, which only ever lowers the record's security
label; being inside the sealed plaintext, the report is authenticated by the message's MAC.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from notary.errors import SchemaInvalid
from qkd_channel import boundedjson
from qkd_device.records import (
    DIGEST_PATTERN,
    RECORD_ID_DOMAIN,
    RECORD_SALT_LABEL,
    SALT_BYTES,
    payload_hash,
    record_id,
    record_salt,
)

__all__ = [
    "DIGEST_PATTERN",
    "RECORD_ID_DOMAIN",
    "RECORD_SALT_LABEL",
    "SALT_BYTES",
    "TelemetryDocument",
    "parse_document",
    "payload_hash",
    "record_id",
    "record_salt",
]


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
