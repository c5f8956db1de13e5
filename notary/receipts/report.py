"""What a verification established, field by field, and the names of its checks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from notary.config import AnchorMode

__all__ = ["RECEIPT_CHECKS", "FieldCheck", "Outcome", "VerificationReport"]

#: Every check :func:`~notary.receipts.verify_receipt` can run, in order; a failure's
#: ``reason`` is one of them, or ``format`` / ``not-final`` when the document is not a
#: checkable receipt yet.
RECEIPT_CHECKS: tuple[str, ...] = (
    "record-id",
    "payload-hash",
    "security",
    "leaf",
    "proof",
    "chain-id",
    "contract",
    "contract-code",
    "transaction",
    "block",
    "confirmations",
    "event",
    "state",
    "batch-size",
    "accepted-at",
    "registry",
    "attestation",
)


class Outcome(enum.StrEnum):
    """What the verifier could establish about one field of the receipt."""

    ON_CHAIN = "verified on-chain"  #: the chain holds it (committed, or checked there)
    LOCAL = "verified locally"  #: follows from verified fields or from material at hand
    UNVERIFIABLE = "not verifiable"  #: a claim nothing binds (v1 receipts), or no material
    FAILED = "refused"  #: contradicted: the receipt is forged or for something else


@dataclass(frozen=True)
class FieldCheck:
    """One line of the report."""

    field: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    """Every field a receipt claims, and what backs it.

    ``verified`` holds only when every field is verified on-chain or locally: a receipt
    with a field nothing binds (a v1 receipt's ``device_trusted``, say) is not forged, but
    it is not fully verified either.
    """

    receipt_version: str
    record_id: str
    fields: tuple[FieldCheck, ...]
    method: AnchorMode | None = None
    chain_id: int | None = None
    contract: str | None = None
    block_number: int | None = None
    block_timestamp: int | None = None
    confirmations: int | None = None
    checks_passed: tuple[str, ...] = field(default=())

    @property
    def verified(self) -> bool:
        return all(f.outcome in (Outcome.ON_CHAIN, Outcome.LOCAL) for f in self.fields)

    @property
    def unverifiable(self) -> tuple[str, ...]:
        return tuple(f.field for f in self.fields if f.outcome is Outcome.UNVERIFIABLE)

    @property
    def refused(self) -> FieldCheck | None:
        return next((f for f in self.fields if f.outcome is Outcome.FAILED), None)

    def outcome_of(self, name: str) -> Outcome | None:
        return next((f.outcome for f in self.fields if f.field == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "receipt_version": self.receipt_version,
            "record_id": self.record_id,
            "verified": self.verified,
            "method": None if self.method is None else self.method.value,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "block_number": self.block_number,
            "block_timestamp": self.block_timestamp,
            "confirmations": self.confirmations,
            "fields": [
                {"field": f.field, "outcome": f.outcome.value, "detail": f.detail}
                for f in self.fields
            ],
        }
