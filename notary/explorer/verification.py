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
from notary.receipts import RECEIPT_CHECKS, Receipt, Verification, verify_receipt

__all__ = ["CHECK_DESCRIPTIONS", "CheckOutcome", "CheckStatus", "VerificationReport", "verify"]

#: What each check of :data:`notary.receipts.RECEIPT_CHECKS` establishes, for the page.
CHECK_DESCRIPTIONS: Mapping[str, str] = {
    "record-id": "record ID recomputed from device ID, sequence and key IDs",
    "payload-hash": "the plaintext hashes with the salt to payload_hash",
    "leaf": "Merkle leaf recomputed from the record fields",
    "proof": "inclusion proof leads from the leaf to the anchored root",
    "chain-id": "the node serves the receipt's chain",
    "contract": "anchored in the expected contract address",
    "contract-code": "the address runs the genuine TelemetryNotary code",
    "transaction": "transaction succeeded, targets the contract, sits in the stated block",
    "block": "block hash and timestamp match the receipt",
    "confirmations": "the block is confirmed",
    "event": "the transaction emitted the anchoring event (RecordStored / RootAnchored)",
    "state": "the contract's state agrees (getRecord / getAnchor)",
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
class VerificationReport:
    """Every check's outcome; ``valid`` only when verification completed."""

    checks: tuple[CheckOutcome, ...]
    valid: bool
    failed_check: str | None  #: the failing check, or ``format``/``not-anchored``
    message: str | None  #: why it failed (public wording from ReceiptInvalid)
    result: Verification | None


def verify(
    receipt: Receipt | Mapping[str, Any] | str | bytes,
    w3: Web3,
    *,
    payload: bytes | None = None,
    expected_contract: str | None = None,
) -> VerificationReport:
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
    return VerificationReport(
        checks=tuple(checks),
        valid=failure is None,
        failed_check=None if failure is None else failure.reason,
        message=None if failure is None else failure.detail,
        result=result,
    )
