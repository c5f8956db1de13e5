"""The device's view of a notary receipt: the document as served, plus the few fields a
device acts on.

The full receipt format, and its on-chain verification, belong to the server side
(``notary.receipts``, ``qkd-notary receipt verify``), which needs web3. A device needs
less: is the record anchored, and does the receipt commit to what *it* sent? So this view
keeps the JSON document exactly as the notary served it (hand it to an auditor or to
``qkd-notary receipt verify`` unchanged) and reads only ``record_id``, ``status`` and, by
name, fields that every receipt version carries. It does not enumerate a version's field
set, so a newer receipt version flows through unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qkd_channel import boundedjson
from qkd_device.errors import DeviceError, ReceiptMismatch

__all__ = ["ANCHORED", "Receipt"]

#: The ``status`` of a record whose anchoring transaction is final on-chain.
ANCHORED = "anchored"


@dataclass(frozen=True)
class Receipt:
    """A notary receipt: ``record_id``, ``status`` and the raw ``document``."""

    record_id: str
    status: str
    document: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, content: bytes | str) -> Receipt:
        """Parse the body of ``GET /v1/records/{id}``; ``DeviceError`` if it is not one."""
        try:
            document = boundedjson.loads(content)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise DeviceError("the notary's receipt is not a JSON object", reason="bad-receipt")
        record, status = document.get("record_id"), document.get("status")
        if not isinstance(record, str) or not isinstance(status, str):
            raise DeviceError(
                "the notary's receipt names no record or status", reason="bad-receipt"
            )
        return cls(record.lower(), status, document)

    @property
    def version(self) -> str | int | None:
        """The receipt format (``receipt_version``), as the notary stated it."""
        value = self.document.get("receipt_version")
        return value if isinstance(value, str | int) and not isinstance(value, bool) else None

    @property
    def anchored(self) -> bool:
        return self.status == ANCHORED

    @property
    def payload_hash(self) -> str | None:
        """The on-chain commitment ``keccak256(salt || plaintext)``, 0x-hex."""
        value = self.document.get("payload_hash")
        return value.lower() if isinstance(value, str) else None

    @property
    def anchor(self) -> Mapping[str, Any] | None:
        """Chain coordinates (transaction, block, proof) once anchored."""
        value = self.document.get("anchor")
        return value if isinstance(value, Mapping) else None

    def check(self, record_id: str, payload_hash: str) -> None:
        """Raise ``ReceiptMismatch`` unless this receipt is for ``record_id`` and commits
        to ``payload_hash`` (which the device computed from its own salt and plaintext)."""
        if self.record_id != record_id.lower():
            raise ReceiptMismatch(f"the receipt is for {self.record_id}, not {record_id}")
        if self.payload_hash != payload_hash.lower():
            raise ReceiptMismatch(
                f"the receipt of {self.record_id} commits to another payload than was sent"
            )

    def to_json(self) -> str:
        """The document as the notary served it (re-serialised, same content)."""
        return json.dumps(self.document, separators=(",", ":"))
