"""Hashlock/timelock atomic swaps between Algorand networks with QKD-sealed terms."""

from atomic_swap.errors import SwapError

__all__ = ["SwapError"]
