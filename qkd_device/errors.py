"""Exceptions of the device SDK.

Hierarchy::

    DeviceError
    ├── DeliveryError          an envelope could not be delivered as asked
    │   ├── DeliveryRejected   the notary refused it for good (4xx); it left the queue
    │   ├── DeliveryPending    not delivered yet (notary down); it stays queued
    │   ├── KeysUnobtainable   the device's KME issued no keys; nothing was sealed
    │   ├── AnchorTimeout      ``wait_anchored`` gave up; the record may still be anchored
    │   └── QueueError         the on-disk send queue is unusable (locked, foreign, corrupt)
    ├── RecordNotFound         the notary has no record with that ID
    └── ReceiptMismatch        a receipt does not commit to what the device sent

``reason`` is a short machine-readable label (the ``qkd-device`` CLI prints it with
``--json``). Key material and salts never appear in these messages; only statuses,
reasons and record IDs do.
"""

from __future__ import annotations

__all__ = [
    "AnchorTimeout",
    "DeliveryError",
    "DeliveryPending",
    "DeliveryRejected",
    "DeviceError",
    "KeysUnobtainable",
    "QueueError",
    "ReceiptMismatch",
    "RecordNotFound",
]


class DeviceError(Exception):
    """Base of every error raised by the device SDK."""

    reason = "device-error"

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        if reason is not None:
            self.reason = reason


class DeliveryError(DeviceError):
    """Base of the SDK's delivery failures."""

    reason = "delivery-failed"


class DeliveryRejected(DeliveryError):
    """The notary answered with a final refusal (400/401/409/413/422).

    The envelope was moved to the queue's ``rejected/`` folder: resending the same bytes
    can never succeed, and its keys are spent. ``status`` and ``reason`` are the notary's.
    """

    def __init__(
        self, detail: str, *, status: int, reason: str, sequence: int, record_id: str
    ) -> None:
        super().__init__(detail, reason=reason)
        self.status = status
        self.sequence = sequence
        self.record_id = record_id


class DeliveryPending(DeliveryError):
    """The retry budget ran out while the notary or its KME was unavailable.

    Nothing is lost: the sealed envelope stays in the on-disk queue and is sent, unchanged,
    before anything newer (by the next ``send``/``flush``, also after a restart).
    """

    reason = "delivery-pending"

    def __init__(self, detail: str, *, pending: int) -> None:
        super().__init__(detail)
        self.pending = pending


class QueueError(DeliveryError):
    """The send queue directory cannot be used (held by another client, wrong device...)."""

    reason = "queue-error"


class KeysUnobtainable(DeliveryError):
    """The device's KME could not issue keys before the deadline (down or out of stock).

    Nothing was sealed or queued and no sequence number was used: send the reading again.
    """

    reason = "keys-unobtainable"


class AnchorTimeout(DeliveryError):
    """The record was not anchored on-chain within the time ``wait_anchored`` was given."""

    reason = "anchor-timeout"


class RecordNotFound(DeviceError):
    """The notary answered 404 for a record ID: it holds no such record."""

    reason = "record-not-found"


class ReceiptMismatch(DeviceError):
    """The notary's receipt names another record, or commits to another payload hash
    than the one the device computed from its own salt and plaintext."""

    reason = "receipt-mismatch"
