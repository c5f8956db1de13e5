"""The rules an envelope's record must pass inside a store's accept transaction.

Both backends run these against the device row they read (and lock) in the same
transaction that writes the record, so the decision and the write cannot be separated by
another accept. Keeping the rules here, outside the SQL, means SQLite and PostgreSQL
cannot drift apart on what counts as a replay.
"""

from __future__ import annotations

from notary.attestation import AttestationResult, attest
from notary.errors import AuthenticationFailed, ReplayDetected
from notary.storage.base import DeviceRow, NewRecord

__all__ = ["admit"]


def admit(
    device: DeviceRow | None, record: NewRecord, *, already_recorded: bool
) -> AttestationResult:
    """The attestation outcome of accepting ``record``, or the refusal to accept it.

    Refusals, in order: unknown device, inactive device (401), the same record already
    accepted (409, naming it), a sequence not above the device's last one (409).
    """
    if device is None:
        raise AuthenticationFailed("unknown-device")
    if not device.active:
        raise AuthenticationFailed("device-inactive")
    if already_recorded:
        raise ReplayDetected("this envelope was already accepted", record_id=record.record_id)
    if device.last_sequence is not None and record.sequence <= device.last_sequence:
        raise ReplayDetected(
            f"sequence {record.sequence} is not above the last accepted {device.last_sequence}",
            reason="stale-sequence",
        )
    return attest(
        approved_digest=device.approved_digest,
        current_digest=device.current_digest,
        trusted=device.trusted,
        reported=record.firmware_digest,
    )
