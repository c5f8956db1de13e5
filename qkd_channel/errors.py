"""Exceptions of the ``qkd_channel`` package.

Hierarchy (each module adds its specific subclasses here, so callers can catch by kind)::

    QKDError
    ├── LinkAborted            post-processing gave up (QBER over threshold, verification failed)
    │   ├── EstimationAborted      QBER over threshold or no secret key left in the block
    │   └── VerificationFailed     keys still differ after error correction
    ├── ChannelError           classical channel broken or a message failed authentication
    │   └── AuthenticationKeyExhausted  no authentication key left for the next message
    ├── KMEError               a KME answered with an error or could not be reached
    ├── HTTPUnreachable        no HTTP answer arrived (refused, reset, TLS failure, timeout)
    ├── EnvelopeRejected       a sealed envelope failed to open (one reason, deliberately vague)
    ├── KeyMaterialExhausted   the sealer was given fewer key bytes than the envelope needs
    ├── SessionExpired         an AEAD session key is due for rotation
    ├── KEMKeyError            an ML-KEM key is missing, malformed, exposed or unsupported
    └── LinkParameterError     a link description is invalid (also a ValueError)

No exception text ever contains key material.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "AuthenticationKeyExhausted",
    "ChannelError",
    "EnvelopeRejected",
    "EstimationAborted",
    "HTTPUnreachable",
    "KEMKeyError",
    "KMEError",
    "KeyMaterialExhausted",
    "LinkAborted",
    "LinkParameterError",
    "QKDError",
    "SessionExpired",
    "VerificationFailed",
]


class QKDError(Exception):
    """Base of every error raised by ``qkd_channel``."""


class LinkAborted(QKDError):
    """The two ends abandoned a block of raw key; no key material was produced from it."""


class ChannelError(QKDError):
    """The classical channel failed: closed, timed out, or a message failed authentication."""


class KMEError(QKDError):
    """A key management entity refused a request or could not be reached."""


class HTTPUnreachable(QKDError):
    """No HTTP answer arrived: connection refused or reset, TLS failure, timeout.

    Raised by :mod:`qkd_channel.httpio`; the KME client turns it into ``KMEUnavailable``
    and the device SDK into "no answer, retry later".
    """


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


class KEMKeyError(QKDError):
    """An ML-KEM key (``hybrid`` mode) cannot be used: its file is missing, malformed or
    readable by others, or this cryptography build has no ML-KEM. Never holds key bytes."""


# --- KME (ETSI GS QKD 014) errors -------------------------------------------------------------
#
#     KMEError
#     ├── KMERequestRejected   HTTP 400: malformed or unsatisfiable request
#     ├── KMEUnauthorized      HTTP 401: the caller's certificate identity is not entitled
#     ├── KMEUnavailable       HTTP 503 or network failure: not enough key, peer KME unreachable
#     ├── KMEProtocolError     an answer that is not what ETSI GS QKD 014 prescribes
#     └── KeyStoreError        the key buffer refused an operation (replayed block, conflict)
#
# The KME server raises the first three in its service layer and maps them to the standard
# error body ``{"message", "details"}``; the SAE client raises the same classes when it reads
# such a body, so both sides share one vocabulary.

__all__ += [
    "KMEProtocolError",
    "KMERequestRejected",
    "KMEUnauthorized",
    "KMEUnavailable",
    "KeyStoreError",
]


class _KMEAnswerError(KMEError):
    """A refusal carrying the ETSI GS QKD 014 error body (``message`` plus ``details``)."""

    def __init__(self, message: str, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, object]] = list(details or [])


class KMERequestRejected(_KMEAnswerError):
    """The request was malformed or cannot be satisfied as asked (HTTP 400)."""


class KMEUnauthorized(_KMEAnswerError):
    """The caller is not entitled to what it asked for (HTTP 401)."""


class KMEUnavailable(_KMEAnswerError):
    """No key can be delivered right now: stock too low or the peer KME unreachable (HTTP 503).

    ``stock`` is the number of keys of the default size the KME could still deliver, when it
    said so; ``retry_after`` the seconds it asked the caller to wait, when it said so.
    """

    def __init__(
        self,
        message: str,
        details: list[dict[str, object]] | None = None,
        *,
        stock: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, details)
        self.stock = stock
        self.retry_after = retry_after


class KMEProtocolError(KMEError):
    """A KME answered with something that is not a valid ETSI GS QKD 014 response."""


class KeyStoreError(KMEError):
    """The key buffer refused an operation; ``reason`` is a short machine-readable label,
    ``details`` more of it for the peer KME (block IDs; never key material)."""

    def __init__(self, message: str, *, reason: str, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = dict(details or {})


class LinkParameterError(QKDError, ValueError):
    """A link description is physically meaningless (negative loss, probabilities not summing to 1).

    Also a ``ValueError``, so callers validating user input can catch the builtin kind.
    """


class AuthenticationFailed(ChannelError):
    """A classical message or checkpoint failed Wegman-Carter authentication: tampering,
    or two ends whose authentication pools are no longer in step."""


class AuthenticationKeyExhausted(ChannelError):
    """The Wegman-Carter authentication key pool cannot key another message.

    The link cannot authenticate its classical messages until the pool is refilled out of
    band (a new pre-shared key); post-processing must stop rather than send unauthenticated.
    """


class EstimationAborted(LinkAborted):
    """Parameter estimation rejected the block (QBER over threshold, or no secret key left).

    ``qber`` is the estimated error rate (the test basis's, or the sacrificed sample's in
    the first design), for logs and metrics.
    """

    def __init__(self, message: str, *, qber: float) -> None:
        super().__init__(message)
        self.qber = qber


class VerificationFailed(LinkAborted):
    """The keys after error correction still differ (their universal hashes disagree)."""
