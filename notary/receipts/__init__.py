"""Versioned notary receipts: what ``GET /v1/records/{id}`` returns and auditors verify.

A receipt (``qkd-notary-receipt/2``, documented in ``docs/receipts.md``) is
self-contained: together with *any* JSON-RPC node of the chain it proves that the record
was anchored and that every claim it makes is bound on-chain, without trusting the
notary. Chainpoint receipts and TrustOS trust points are the models: the receipt states
the claims, and the chain is the only authority consulted when checking them.

* :mod:`notary.receipts.model` — the documents (v2, and v1 as issued before);
* :func:`build_receipt` — a receipt from a stored record (public or disclosed view);
* :func:`verify_receipt` — the auditor's side, field by field (:class:`VerificationReport`).
"""

from notary.receipts.build import build_receipt, record_key_path
from notary.receipts.model import (
    RECEIPT_VERSION,
    RECEIPT_VERSION_1,
    AnchorProof,
    Disclosure,
    Receipt,
    ReceiptV1,
)
from notary.receipts.report import RECEIPT_CHECKS, FieldCheck, Outcome, VerificationReport
from notary.receipts.verify import BOUND_FIELDS, chain_record, parse_receipt, verify_receipt

__all__ = [
    "BOUND_FIELDS",
    "RECEIPT_CHECKS",
    "RECEIPT_VERSION",
    "RECEIPT_VERSION_1",
    "AnchorProof",
    "Disclosure",
    "FieldCheck",
    "Outcome",
    "Receipt",
    "ReceiptV1",
    "VerificationReport",
    "build_receipt",
    "chain_record",
    "parse_receipt",
    "record_key_path",
    "verify_receipt",
]
