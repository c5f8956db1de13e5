"""Exceptions of the ``atomic_swap`` package.

Hierarchy (the CLI maps each branch to its own exit code)::

    SwapError
    ├── DevnetRejected        the devnet's evaluator refused a group (HTTP 400 at the API)
    ├── ChainError            node unreachable / no confirmation in time        exit 5
    │   └── TransactionRejected   the node or the contract refused a transaction
    ├── AuditFailed           an on-chain HTLC does not match the agreed terms   exit 4
    ├── UnsafeTerms           terms that would put our funds at risk             exit 4
    ├── EnvelopeRefused       tampered, replayed, foreign or undecryptable terms exit 3
    ├── AccountFileError      missing, malformed or group/world-readable key     exit 6
    └── SwapStateError        the local record or the contract state forbids it  exit 7

No exception text contains a mnemonic, private key, API token or QKD key material.
"""

from __future__ import annotations

__all__ = [
    "AccountFileError",
    "AuditFailed",
    "ChainError",
    "DevnetRejected",
    "EnvelopeRefused",
    "SwapError",
    "SwapStateError",
    "TransactionRejected",
    "UnsafeTerms",
]


class SwapError(Exception):
    """Base of every error raised by ``atomic_swap``."""


class DevnetRejected(SwapError):
    """The devnet's evaluator refused a transaction group; the text is go-algorand's reason."""


class ChainError(SwapError):
    """The node could not be reached or did not confirm in time; retrying may help."""


class TransactionRejected(ChainError):
    """The node or the contract refused a transaction; the text is the node's reason."""


class AuditFailed(SwapError):
    """An on-chain contract does not match the agreed terms; do not lock funds against it."""


class AccountFileError(SwapError):
    """An account file is missing, malformed, or readable by other users."""


class EnvelopeRefused(SwapError):
    """A sealed offer/acceptance was tampered with, replayed, or not meant for us."""


class UnsafeTerms(SwapError):
    """Swap terms that would put our funds at risk; nothing was locked."""


class SwapStateError(SwapError):
    """The local swap record does not allow this step (unknown swap, wrong state)."""
