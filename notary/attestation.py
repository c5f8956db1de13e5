"""Firmware-digest attestation: the trust rules, free of any storage or chain code.

Every telemetry document carries the digest of the firmware that produced it. The rules
(mirrored by the chain's DeviceRegistry):

* The first digest a device reports is recorded. It is trusted if it equals the digest the
  operator registered as expected, or, when none was given, on first use.
* A digest different from the last reported one is recorded and the device becomes
  untrusted, unless the operator approved exactly that digest beforehand (a planned update).
* An operator approval makes a digest the approved one; the device is trusted again as soon
  as its current digest is the approved one.
* Reporting the same digest again changes nothing and records nothing.
* A device that has not reported any digest yet is not trusted (nothing is attested).

Records from an untrusted device are still notarised (they are evidence too) and carry the
trust flag as it was at intake.
"""

from __future__ import annotations

from dataclasses import dataclass

from notary.storage.base import DeviceEventKind

__all__ = ["AttestationResult", "approve", "attest"]


@dataclass(frozen=True)
class AttestationResult:
    """The device state after a report, and the event to record (``None``: nothing new)."""

    approved_digest: str | None
    current_digest: str
    trusted: bool
    event: DeviceEventKind | None


def attest(
    *, approved_digest: str | None, current_digest: str | None, trusted: bool, reported: str
) -> AttestationResult:
    """Apply a reported firmware digest to a device's attestation state."""
    if current_digest is None:
        if approved_digest is None:
            return AttestationResult(reported, reported, True, DeviceEventKind.FIRST_DIGEST)
        ok = reported == approved_digest
        return AttestationResult(approved_digest, reported, ok, DeviceEventKind.FIRST_DIGEST)
    if reported == current_digest:
        return AttestationResult(approved_digest, current_digest, trusted, None)
    ok = reported == approved_digest
    return AttestationResult(approved_digest, reported, ok, DeviceEventKind.DIGEST_CHANGED)


def approve(*, current_digest: str | None, digest: str) -> bool:
    """Trust status after an operator approves ``digest``."""
    return current_digest is not None and current_digest == digest
