"""Exceptions of the ``atomic_swap`` package."""

from __future__ import annotations

__all__ = ["SwapError"]


class SwapError(Exception):
    """Base of every error raised by ``atomic_swap``."""
