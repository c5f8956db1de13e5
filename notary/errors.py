"""Exceptions of the ``notary`` package; subclasses are mapped to HTTP problems at the API edge.

Hierarchy::

    NotaryError
    ├── IntakeRejected            an envelope was refused; nothing reached the outbox
    │   ├── MalformedEnvelope     400  not a parseable envelope
    │   ├── AuthenticationFailed  401  bad MAC, unknown/foreign key, unknown or inactive device
    │   ├── ReplayDetected        409  stale sequence, or a resent envelope
    │   ├── PayloadTooLarge       413  body over the configured limit
    │   └── SchemaInvalid         422  authenticated plaintext that is not a telemetry document
    ├── ServiceUnavailable        503  a dependency is down; the client should retry later
    │   ├── KeysUnavailable       the KME could not be reached or refused the notary itself
    │   ├── StorageUnavailable    the outbox could not be written
    │   └── ChainUnavailable      the chain node could not be reached
    ├── KeysRejected              the KME refused to deliver the named keys (maps to 401)
    ├── DeviceNotFound            404
    ├── DeviceExists              409
    ├── DeviceInactive            409  admin change to a deactivated device
    ├── RecordNotFound            404
    ├── TokenNotFound             404  no access token with that ID
    ├── InvalidRequest            422  an admin request whose fields contradict each other
    ├── AdminUnauthorized         401  missing or wrong admin bearer token
    ├── AccessDenied              401  an access token that is unknown, revoked or not the device's
    ├── InvalidTransition         an outbox entry was moved through an illegal state change
    ├── ReceiptInvalid            a receipt failed offline verification (``reason`` says why)
    │   └── ReceiptNotFinal       the claims hold so far, but the anchor is not final yet
    ├── ChainError                the chain layer failed; retrying the same call will not help
    │   ├── ChainMisconfigured    wrong chain ID, missing/foreign contract code (refuse to start)
    │   │   ├── EmbeddedChainLocked  the embedded chain is open in another process
    │   │   └── ChainReset        the chain lost the contracts (reset, or rolled back before
    │   │                         their deployment): redeploy and re-anchor
    │   ├── TransactionReverted   the EVM reverted; ``revert_reason`` holds the decoded reason
    │   ├── TransactionNotConfirmed  not mined/confirmed in time; ``tx_hash`` may still land
    │   ├── BatchTooLarge         a batch needs more gas than a block holds
    │   ├── InvalidChainInput 422 a value cannot be encoded for the contracts
    │   └── KeystoreError         signer keystore missing, malformed or wrong password
    ├── InvalidProof          422 a Merkle inclusion proof does not lead to the root
    └── JSONRPCError          a /rpc request is answered with a JSON-RPC error object

``reason`` attributes are short machine-readable labels. For authentication failures the
public reason is always ``authentication-failed``; the precise cause (``bad-tag``,
``unknown-key``...) is kept in ``detail_reason`` for logs and metrics only, so an attacker
cannot tell which check failed. No exception text ever contains key material or tokens.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDenied",
    "AdminUnauthorized",
    "AuthenticationFailed",
    "BatchTooLarge",
    "ChainError",
    "ChainMisconfigured",
    "ChainReset",
    "ChainUnavailable",
    "DeviceExists",
    "DeviceInactive",
    "DeviceNotFound",
    "EmbeddedChainLocked",
    "IntakeRejected",
    "InvalidChainInput",
    "InvalidProof",
    "InvalidRequest",
    "InvalidTransition",
    "JSONRPCError",
    "KeysRejected",
    "KeysUnavailable",
    "KeystoreError",
    "MalformedEnvelope",
    "NotaryError",
    "PayloadTooLarge",
    "ReceiptInvalid",
    "ReceiptNotFinal",
    "RecordNotFound",
    "ReplayDetected",
    "SchemaInvalid",
    "ServiceUnavailable",
    "StorageUnavailable",
    "TokenNotFound",
    "TransactionNotConfirmed",
    "TransactionReverted",
]


class NotaryError(Exception):
    """Base of every error raised by ``notary``."""

    #: HTTP status the API edge answers with (MQTT rejections carry it too).
    status: ClassVar[int] = 500
    #: Short public title of the problem type.
    title: ClassVar[str] = "Internal error"
    #: Machine-readable label shown to clients.
    reason: str = "internal"

    def __init__(self, detail: str | None = None, *, reason: str | None = None) -> None:
        super().__init__(detail or self.title)
        if reason is not None:
            self.reason = reason

    @property
    def detail(self) -> str:
        return str(self)


class IntakeRejected(NotaryError):
    """An envelope was refused before anything was written to the outbox."""

    status = 400
    title = "Envelope rejected"
    reason = "rejected"

    @property
    def detail_reason(self) -> str:
        """The precise cause, for logs and metrics (equals ``reason`` unless hidden)."""
        return self.reason


class MalformedEnvelope(IntakeRejected):
    status = 400
    title = "Malformed envelope"
    reason = "malformed"


class AuthenticationFailed(IntakeRejected):
    """Every authentication failure looks the same from outside.

    ``cause`` (bad-tag, unknown-key, unknown-device, device-inactive, wrong-sender...) only
    goes to logs and metrics.
    """

    status = 401
    title = "Authentication failed"
    reason = "authentication-failed"

    def __init__(self, cause: str) -> None:
        super().__init__("the envelope could not be authenticated")
        self.cause = cause

    @property
    def detail_reason(self) -> str:
        return self.cause


class ReplayDetected(IntakeRejected):
    """The envelope was already accepted, or its sequence is not above the last one."""

    status = 409
    title = "Replay or stale sequence"
    reason = "replay"

    def __init__(self, detail: str, *, reason: str = "replay", record_id: str | None = None):
        super().__init__(detail, reason=reason)
        #: Set when the envelope is a byte-identical resend of an accepted one, so a device
        #: whose first answer was lost learns where its record is.
        self.record_id = record_id


class PayloadTooLarge(IntakeRejected):
    status = 413
    title = "Payload too large"
    reason = "too-large"


class SchemaInvalid(IntakeRejected):
    status = 422
    title = "Telemetry schema violation"
    reason = "schema"


class ServiceUnavailable(NotaryError):
    """A dependency is down; the request may succeed later (``Retry-After``)."""

    status = 503
    title = "Service unavailable"
    reason = "unavailable"

    def __init__(self, detail: str | None = None, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        #: The dependency's own hint (e.g. the KME's Retry-After); ``None`` lets the edge
        #: use the configured default.
        self.retry_after_s = retry_after_s


class KeysUnavailable(ServiceUnavailable):
    title = "Key management entity unavailable"
    reason = "kme-unavailable"


class StorageUnavailable(ServiceUnavailable):
    title = "Storage unavailable"
    reason = "storage-unavailable"


class ChainUnavailable(ServiceUnavailable):
    title = "Chain unavailable"
    reason = "chain-unavailable"


class KeysRejected(NotaryError):
    """The KME refused to deliver keys (unknown ID, already delivered, other master SAE)."""

    status = 401
    title = "Keys rejected"
    reason = "unknown-key"


class DeviceNotFound(NotaryError):
    status = 404
    title = "Device not found"
    reason = "device-not-found"


class DeviceExists(NotaryError):
    status = 409
    title = "Device already registered"
    reason = "device-exists"


class DeviceInactive(NotaryError):
    """A deactivated device cannot be changed any more (deactivation is final)."""

    status = 409
    title = "Device deactivated"
    reason = "device-inactive"


class RecordNotFound(NotaryError):
    status = 404
    title = "Record not found"
    reason = "record-not-found"


class TokenNotFound(NotaryError):
    status = 404
    title = "Access token not found"
    reason = "token-not-found"


class InvalidRequest(NotaryError):
    status = 422
    title = "Invalid request"
    reason = "invalid-request"


class AdminUnauthorized(NotaryError):
    status = 401
    title = "Admin authentication required"
    reason = "admin-unauthorized"


class AccessDenied(NotaryError):
    """A bearer token for the full view that is unknown, revoked, or for another device.

    One answer for all three, so a caller cannot probe which tokens exist.
    """

    status = 401
    title = "Access denied"
    reason = "access-denied"


class InvalidTransition(NotaryError):
    title = "Illegal outbox state change"
    reason = "invalid-transition"


class ReceiptInvalid(NotaryError):
    """Offline verification found a receipt that the chain does not back.

    ``reason`` names the check (or the receipt field) that failed; ``report``, when the
    verifier got that far, holds the field-by-field outcome up to the failure.
    """

    status = 422
    title = "Receipt does not verify"
    reason = "receipt-invalid"

    def __init__(
        self, detail: str | None = None, *, reason: str | None = None, report: object = None
    ) -> None:
        super().__init__(detail, reason=reason)
        self.report = report


class ReceiptNotFinal(ReceiptInvalid):
    """Nothing in the receipt is contradicted, but it is not anchored and final yet:
    not anchored at all, or with fewer confirmations than asked for. Try again later."""

    title = "Receipt not final yet"
    reason = "not-final"


# --- chain layer (notary.chain) -------------------------------------------------------
# ChainUnavailable above is the transient case (node unreachable after bounded retries);
# ChainError and its subclasses are not cured by waiting.


class ChainError(NotaryError):
    """The chain layer failed for a reason that retrying the same call will not fix."""

    title = "Chain error"
    reason = "chain-error"


class ChainMisconfigured(ChainError):
    """Refusal to start: wrong chain ID, no or foreign contract code at a configured
    address, an unreadable deployment file, or an embedded chain of another chain ID."""

    status = 409
    title = "Chain misconfigured"
    reason = "chain-misconfigured"


class EmbeddedChainLocked(ChainMisconfigured):
    """The embedded chain of this data directory is open in another process."""

    reason = "embedded-chain-locked"


class ChainReset(ChainMisconfigured):
    """The chain no longer holds the notary's contracts: it was reset, or rolled back to
    before their deployment. Anchoring stops until ``qkd-notary chain redeploy
    --re-anchor`` deploys them again and re-anchors every record."""

    title = "Chain reset"
    reason = "chain-reset"


class TransactionReverted(ChainError):
    """The EVM reverted a transaction (or its gas estimate); ``revert_reason`` is the
    decoded ``Error(string)`` or custom error, e.g. ``AccessControlUnauthorizedAccount(...)``."""

    title = "Transaction reverted"
    reason = "tx-reverted"

    def __init__(self, revert_reason: str, *, tx_hash: str | None = None) -> None:
        where = f" (tx {tx_hash})" if tx_hash else ""
        super().__init__(f"transaction reverted{where}: {revert_reason}")
        self.revert_reason = revert_reason
        self.tx_hash = tx_hash


class TransactionNotConfirmed(ChainError):
    """A sent transaction was not mined or not confirmed in time. It may still land:
    look it up by ``tx_hash`` before sending anything that replaces it."""

    title = "Transaction not confirmed"
    reason = "tx-not-confirmed"

    def __init__(self, detail: str, *, tx_hash: str) -> None:
        super().__init__(detail)
        self.tx_hash = tx_hash


class BatchTooLarge(ChainError):
    """A batch needs more gas than a block holds; split it."""

    title = "Batch too large for one block"
    reason = "batch-too-large"


class InvalidChainInput(ChainError):
    """A value cannot be encoded for the contracts (device ID over 32 bytes, bad length)."""

    status = 422
    title = "Invalid chain input"
    reason = "invalid-chain-input"


class KeystoreError(ChainError):
    """The signer keystore is missing, malformed or the password does not open it."""

    title = "Keystore error"
    reason = "keystore"


class InvalidProof(NotaryError):
    """A Merkle inclusion proof does not lead from the leaf to the root."""

    status = 422
    title = "Invalid inclusion proof"
    reason = "invalid-proof"


class JSONRPCError(NotaryError):
    """A request to the embedded chain's JSON-RPC gateway (``/rpc``) failed.

    It is answered as a JSON-RPC error object (``code``, message, optional ``data``), not
    as an HTTP problem: JSON-RPC clients such as cast and web3.py read only that shape.
    """

    status = 200
    title = "JSON-RPC error"
    reason = "json-rpc"

    def __init__(self, code: int, message: str, *, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
