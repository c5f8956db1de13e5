"""Receipts from stored records: what ``GET /v1/records/{id}`` answers."""

from __future__ import annotations

from notary.receipts.model import AnchorProof, Disclosure, KeyPathView, Receipt, SecurityView
from notary.storage.base import RecordRow
from qkd_channel.security_levels import KeyPath, derive_levels

__all__ = ["build_receipt", "record_key_path"]


def record_key_path(record: RecordRow) -> KeyPath:
    """The key path stored with a record (records from before v2: all ``unreported``)."""
    return KeyPath.from_code(record.key_path)


def build_receipt(record: RecordRow, anchor: AnchorProof | None, *, disclose: bool) -> Receipt:
    """The receipt of ``record``; ``disclose`` adds the salt and the plaintext (only for
    callers entitled to them: the device's owner and auditors)."""
    path = record_key_path(record)
    levels = derive_levels(record.mode, path)
    disclosure = None
    if disclose:
        disclosure = Disclosure(
            salt="0x" + record.salt.hex(), payload=record.payload.decode("utf-8")
        )
    return Receipt(
        record_id=record.record_id,
        status=record.status,
        device_id=record.device_id,
        sequence=record.sequence,
        key_ids=list(record.key_ids),
        mode=record.mode,  # type: ignore[arg-type]  # stored from Mode values only
        key_path=KeyPathView.model_validate(path.to_dict()),
        security=SecurityView.model_validate(levels.to_dict()),
        firmware_digest=record.firmware_digest,
        device_trusted=record.device_trusted,
        payload_hash=record.payload_hash,
        sent_at_ms=record.sent_at_ms,
        accepted_at_ms=record.accepted_at_ms,
        anchor=anchor,
        disclosure=disclosure,
    )
