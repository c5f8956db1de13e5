"""Hashlock/timelock atomic swaps between Algorand networks with QKD-sealed terms.

Layers, bottom up: :mod:`~atomic_swap.htlc` (the TEAL application and its transactions),
:mod:`~atomic_swap.node` (a node's network, clock and errors), :mod:`~atomic_swap.audit`
(reading a contract back and checking everything: the one audit), :mod:`~atomic_swap.terms`
and :mod:`~atomic_swap.sealing` (offer/acceptance in QKD-sealed envelopes),
:mod:`~atomic_swap.swap` (the protocol), :mod:`~atomic_swap.cli` (``qswap``), and
:mod:`~atomic_swap.devnet` (an algod-compatible dev node on go-algorand's evaluator).
"""

import importlib
from typing import TYPE_CHECKING, Any

from atomic_swap.errors import (
    AccountFileError,
    AuditFailed,
    ChainError,
    DevnetRejected,
    EnvelopeRefused,
    SwapError,
    SwapStateError,
    TransactionRejected,
    UnsafeTerms,
)

if TYPE_CHECKING:
    from atomic_swap.audit import (
        AuditReport,
        ContractState,
        OnChainHTLC,
        audit_htlc,
        read_htlc,
        verify_htlc,
    )
    from atomic_swap.htlc import HTLCTerms, Submitted
    from atomic_swap.sealing import KeySource, TermsChannel
    from atomic_swap.store import SwapRecord, SwapState, SwapStore
    from atomic_swap.swap import (
        Party,
        SafetyPolicy,
        extract_secret,
        initiate,
        participate,
        redeem,
        redeem_acceptance,
        refund,
    )
    from atomic_swap.terms import Acceptance, Network, Offer

# The rest of the API is imported on first use, so ``qswap --help`` (and every CLI command)
# does not pay for algosdk, pydantic and the evaluator before it needs them.
_LAZY = {
    "Acceptance": "atomic_swap.terms",
    "AuditReport": "atomic_swap.audit",
    "ContractState": "atomic_swap.audit",
    "HTLCTerms": "atomic_swap.htlc",
    "KeySource": "atomic_swap.sealing",
    "Network": "atomic_swap.terms",
    "Offer": "atomic_swap.terms",
    "OnChainHTLC": "atomic_swap.audit",
    "Party": "atomic_swap.swap",
    "SafetyPolicy": "atomic_swap.swap",
    "Submitted": "atomic_swap.htlc",
    "SwapRecord": "atomic_swap.store",
    "SwapState": "atomic_swap.store",
    "SwapStore": "atomic_swap.store",
    "TermsChannel": "atomic_swap.sealing",
    "audit_htlc": "atomic_swap.audit",
    "extract_secret": "atomic_swap.swap",
    "initiate": "atomic_swap.swap",
    "participate": "atomic_swap.swap",
    "read_htlc": "atomic_swap.audit",
    "redeem": "atomic_swap.swap",
    "redeem_acceptance": "atomic_swap.swap",
    "refund": "atomic_swap.swap",
    "verify_htlc": "atomic_swap.audit",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atomic_swap' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Acceptance",
    "AccountFileError",
    "AuditFailed",
    "AuditReport",
    "ChainError",
    "ContractState",
    "DevnetRejected",
    "EnvelopeRefused",
    "HTLCTerms",
    "KeySource",
    "Network",
    "Offer",
    "OnChainHTLC",
    "Party",
    "SafetyPolicy",
    "Submitted",
    "SwapError",
    "SwapRecord",
    "SwapState",
    "SwapStateError",
    "SwapStore",
    "TermsChannel",
    "TransactionRejected",
    "UnsafeTerms",
    "audit_htlc",
    "extract_secret",
    "initiate",
    "participate",
    "read_htlc",
    "redeem",
    "redeem_acceptance",
    "refund",
    "verify_htlc",
]
