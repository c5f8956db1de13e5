"""Receipt verification shown check by check, on top of :func:`notary.receipts.verify_receipt`.

The explorer runs the auditor's own code path (the one ``qkd-notary receipt verify`` uses)
and listens to which checks pass, so a page can list every check as passed, failed, not
applicable or not reached. Nothing here re-implements a check.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from notary.errors import ReceiptInvalid
from notary.receipts import (
    RECEIPT_CHECKS,
    FieldCheck,
    Receipt,
    ReceiptV1,
    VerificationReport,
    verify_receipt,
)

__all__ = ["CHECK_DESCRIPTIONS", "CheckOutcome", "CheckStatus", "PageVerification", "verify"]

#: What each check of :data:`notary.receipts.RECEIPT_CHECKS` establishes, for the page.
CHECK_DESCRIPTIONS: Mapping[str, str] = {
    "record-id": "record ID recomputed from device ID, sequence and key IDs",
    "payload-hash": "the plaintext hashes with the salt to payload_hash",
    "security": "the security levels follow from the mode and the key path",
    "leaf": "Merkle leaf recomputed from every field the receipt claims",
    "proof": "inclusion proof leads from the leaf to the anchored root",
    "chain-id": "the node serves the receipt's chain",
    "contract": "anchored in the expected contract address",
    "contract-code": "the address runs the genuine TelemetryNotary code",
    "transaction": "transaction succeeded, targets the contract, sits in the stated block",
    "block": "block hash and timestamp match the receipt",
    "confirmations": "the block is final (enough confirmations)",
    "event": "the transaction emitted the anchoring event (RecordStored / RootAnchored)",
    "state": "the contract's state agrees (getRecord / getAnchor)",
    "batch-size": "the anchored batch holds as many records as the receipt says",
    "accepted-at": "the notary accepted the record before the block that anchors it",
    "registry": "the device is registered in the contract's DeviceRegistry",
    "attestation": "the registry attested this firmware digest for this message",
}


class CheckStatus(enum.StrEnum):
    """The outcome of one check as the page shows it."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "n/a"  #: skipped by design (no plaintext, batch method, no pinned contract)
    NOT_REACHED = "not reached"  #: an earlier check failed


@dataclass(frozen=True)
class CheckOutcome:
    """One row of the checks table."""

    name: str
    description: str
    status: CheckStatus


@dataclass(frozen=True)
class PageVerification:
    """Every check's outcome and every field's; ``valid`` only when verification
    completed with every claimed field verified."""

    checks: tuple[CheckOutcome, ...]
    valid: bool
    failed_check: str | None  #: the failing check, or ``format``/``not-final``
    message: str | None  #: why it failed (public wording from ReceiptInvalid)
    result: VerificationReport | None
    fields: tuple[FieldCheck, ...]


def verify(
    receipt: Receipt | ReceiptV1 | Mapping[str, Any] | str | bytes,
    w3: Web3,
    *,
    payload: bytes | None = None,
    salt: bytes | None = None,
    expected_contract: str | None = None,
) -> PageVerification:
    """Run :func:`verify_receipt` and report each check (blocking: node calls).

    Raises ``ChainUnavailable`` when the node cannot be asked: that is no verdict on the
    receipt, and a page must not show it as FAILED.
    """
    passed: list[str] = []
    failure: ReceiptInvalid | None = None
    result = None
    try:
        result = verify_receipt(
            receipt,
            w3,
            payload=payload,
            salt=salt,
            expected_contract=expected_contract,
            on_pass=passed.append,
        )
    except ReceiptInvalid as exc:
        failure = exc
    failed_at = None
    if failure is not None and failure.reason in RECEIPT_CHECKS:
        failed_at = RECEIPT_CHECKS.index(failure.reason)
    checks = []
    for position, name in enumerate(RECEIPT_CHECKS):
        if name in passed:
            status = CheckStatus.PASSED
        elif failed_at is not None and position == failed_at:
            status = CheckStatus.FAILED
        elif failure is not None and (failed_at is None or position > failed_at):
            status = CheckStatus.NOT_REACHED
        else:
            status = CheckStatus.NOT_APPLICABLE
        checks.append(CheckOutcome(name, CHECK_DESCRIPTIONS[name], status))
    partial = failure.report if failure is not None else result
    return PageVerification(
        checks=tuple(checks),
        valid=failure is None and result is not None and result.verified,
        failed_check=None if failure is None else failure.reason,
        message=None if failure is None else failure.detail,
        result=result,
        fields=partial.fields if isinstance(partial, VerificationReport) else (),
    )
