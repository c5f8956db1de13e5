"""Exceptions of the ``qkd_channel`` package.

Hierarchy (each module adds its specific subclasses here, so callers can catch by kind)::

    QKDError
    ├── LinkAborted            post-processing gave up (QBER over threshold, verification failed)
    ├── ChannelError           classical channel broken or a message failed authentication
    ├── KMEError               a KME answered with an error or could not be reached
    ├── EnvelopeRejected       a sealed envelope failed to open (one reason, deliberately vague)
    ├── KeyMaterialExhausted   the sealer was given fewer key bytes than the envelope needs
    └── SessionExpired         an AEAD session key is due for rotation

No exception text ever contains key material.
"""

from __future__ import annotations

__all__ = [
    "ChannelError",
    "EnvelopeRejected",
    "KMEError",
    "KeyMaterialExhausted",
    "LinkAborted",
    "QKDError",
    "SessionExpired",
]


class QKDError(Exception):
    """Base of every error raised by ``qkd_channel``."""


class LinkAborted(QKDError):
    """The two ends abandoned a block of raw key; no key material was produced from it."""


class ChannelError(QKDError):
    """The classical channel failed: closed, timed out, or a message failed authentication."""


class KMEError(QKDError):
    """A key management entity refused a request or could not be reached."""


class EnvelopeRejected(QKDError):
    """A sealed envelope could not be opened.

    Raised for every failure (bad tag, wrong key, malformed header, wrong mode) with the same
    public message, so an attacker cannot tell which check failed. ``reason`` is a short
    machine-readable label for logs and metrics only.
    """

    def __init__(self, reason: str = "invalid") -> None:
        super().__init__("envelope rejected")
        self.reason = reason


class KeyMaterialExhausted(QKDError):
    """The supplied QKD keys hold fewer bytes than the envelope needs."""


class SessionExpired(QKDError):
    """An AEAD session key reached its message-count or age limit; fetch a new one."""
