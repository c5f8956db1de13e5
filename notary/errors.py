"""Exceptions of the ``notary`` package; subclasses are mapped to HTTP problems at the API edge."""

from __future__ import annotations

__all__ = ["NotaryError"]


class NotaryError(Exception):
    """Base of every error raised by ``notary``."""
