"""Chain records for tests: every field a receipt binds, with plausible defaults."""

from __future__ import annotations

from typing import Any

from eth_hash.auto import keccak

from notary.chain.models import RecordInput, SecurityMode
from qkd_channel.security_levels import Hop, KeyPath

#: A key path with every hop reported (QKD link, TLS to the device, local at the notary).
KEY_PATH = KeyPath(link=Hop.QKD, device=Hop.TLS, notary=Hop.LOCAL)


def chain_record(
    tag: str | bytes,
    device: str = "rec-device",
    sequence: int = 1,
    mode: SecurityMode = SecurityMode.OTP,
    **overrides: Any,
) -> RecordInput:
    """A record whose IDs and hashes derive from ``tag`` (distinct tags, distinct records)."""
    raw = tag.encode() if isinstance(tag, str) else tag
    fields: dict[str, Any] = {
        "record_id": keccak(raw),
        "device_id": device,
        "sequence": sequence,
        "payload_hash": keccak(b"payload:" + raw),
        "mode": mode,
        "key_path": KEY_PATH.code,
        "firmware_digest": keccak(b"firmware"),
        "device_trusted": True,
        "sent_at_ms": 1_800_000_000_000 + sequence % 1_000_000,
        "accepted_at_ms": 1_800_000_000_100 + sequence % 1_000_000,
    }
    fields.update(overrides)
    return RecordInput(**fields)
