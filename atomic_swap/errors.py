"""Exceptions of the ``atomic_swap`` package."""

from __future__ import annotations

__all__ = ["SwapError"]


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
