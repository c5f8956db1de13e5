"""The I/O-free part of the device SDK, shared by the blocking and the asyncio client.

Both clients do the same steps and differ only in how they wait; everything that decides
(what to ask the KME for, how to build and seal the document, what an answer means, how
long to back off) lives here so the twins cannot drift apart.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field
from typing import Any

from qkd_channel.envelope import MAX_KEY_IDS, AEADSession, Mode, keys_needed, seal
from qkd_channel.keys import QKDKey
from qkd_channel.kme.client import KeyStatus
from qkd_device.errors import QueueError
from qkd_device.queue import QueuedEnvelope
from qkd_device.records import payload_hash, record_id, record_salt

__all__ = [
    "Answer",
    "DeliveryReceipt",
    "KeyPlan",
    "RetryPolicy",
    "Verdict",
    "judge",
    "seal_item",
]

_RETRYABLE = frozenset({0, 408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` from the server is a floor.

    The n-th wait is drawn uniformly from ``[cap / 2, cap]`` with
    ``cap = min(max_s, initial_s * multiplier**n)`` ("equal jitter"), so a fleet that lost
    the notary at the same instant does not come back in lock-step. ``deadline_s`` bounds
    one ``send``/``flush`` call; what is not delivered by then stays queued.
    """

    initial_s: float = 0.2
    max_s: float = 10.0
    multiplier: float = 2.0
    deadline_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        cap = min(self.max_s, self.initial_s * self.multiplier ** min(attempt, 64))
        wait = rng.uniform(cap / 2, cap)
        if retry_after is not None and retry_after > 0:
            # Honour the server, plus up to 20 % so a fleet does not return all at once.
            wait = max(wait, retry_after * rng.uniform(1.0, 1.2))
        return wait


@dataclass(frozen=True)
class KeyPlan:
    """How to obtain ``n`` bytes of key within a KME's ETSI GS QKD 014 limits (bits)."""

    min_key_size: int = 64
    max_key_size: int = 65_536
    max_key_per_request: int = 128

    @classmethod
    def from_status(cls, status: KeyStatus) -> KeyPlan:
        return cls(status.min_key_size, status.max_key_size, status.max_key_per_request)

    def requests(self, nbytes: int) -> list[tuple[int, int]]:
        """``(number, size_bits)`` pairs for ``enc_keys`` covering ``nbytes``.

        Keys are as few as the maximum size allows and equally sized (rounded up to whole
        bytes and to the KME's minimum), so the surplus the envelope discards stays small.
        """
        bits = 8 * max(nbytes, 1)
        count = math.ceil(bits / self.max_key_size)
        if count > MAX_KEY_IDS:
            raise ValueError(
                f"{nbytes} bytes of key need {count} keys; an envelope names at most {MAX_KEY_IDS}"
            )
        size = max(self.min_key_size, 8 * math.ceil(math.ceil(bits / count) / 8))
        out = []
        while count > 0:
            number = min(count, self.max_key_per_request)
            out.append((number, size))
            count -= number
        return out


def seal_item(
    plaintext: bytes,
    *,
    device_id: str,
    notary_id: str,
    sequence: int,
    mode: Mode,
    keys: list[QKDKey] | None = None,
    session: AEADSession | None = None,
    origin: str | None = None,
) -> QueuedEnvelope:
    """Seal with fresh OTP keys or the current ``aead``/``hybrid`` session; name the record
    it becomes.

    The record's salt is derived here, while the keys are at hand (they are spent once the
    envelope is sealed), and kept with the queued envelope.
    """
    if mode.uses_sessions:
        if session is None or session.mode is not mode:
            raise ValueError(f"{mode} mode needs a {mode} session")
        envelope = session.seal(plaintext, sender=device_id, recipient=notary_id, sequence=sequence)
        keys = [session.key]
    else:
        if not keys or sum(len(k.material) for k in keys) < keys_needed(mode, len(plaintext)):
            raise ValueError("not enough key material for this plaintext")
        envelope = seal(
            plaintext,
            sender=device_id,
            recipient=notary_id,
            sequence=sequence,
            mode=mode,
            keys=keys,
        )
    rid = record_id(device_id, sequence, envelope.key_ids)
    return QueuedEnvelope(envelope, rid, plaintext, origin, record_salt(envelope, keys))


@dataclass(frozen=True)
class Answer:
    """What the notary said about one delivery attempt, whatever the transport.

    ``status`` is the HTTP status (MQTT answers carry the same numbers); 0 means no answer
    arrived (connection refused, timeout).
    """

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None


@dataclass(frozen=True)
class DeliveryReceipt:
    """The notary's acknowledgement that a record exists (it is durable in its outbox).

    Not yet a proof: pass it to ``wait_anchored`` for the notary's receipt once anchored
    (checked against ``payload_hash``; the chain check is ``qkd-notary receipt verify``).
    ``resent`` is true when the first answer was lost and the notary recognised the resent
    envelope (``device_trusted``/``attestation`` are then unknown).

    ``salt`` and ``payload_hash`` are the device's own computation of the record's secret
    salt and of the on-chain commitment ``keccak256(salt || plaintext)``: with them the
    device checks any receipt without the notary disclosing the salt. The salt is as
    secret as the reading; it is not shown by ``repr``. Both are ``None`` for an envelope
    queued by an SDK version that did not keep salts.
    """

    record_id: str
    device_id: str
    sequence: int
    mode: Mode
    device_trusted: bool | None
    attestation: str | None
    resent: bool = False
    salt: bytes | None = field(default=None, repr=False)
    payload_hash: str | None = None


class Verdict(enum.Enum):
    DELIVERED = "delivered"  #: the notary holds the record
    REJECTED = "rejected"  #: final refusal; resending the same bytes cannot succeed
    RETRY = "retry"  #: transient; resend the same bytes later
    RESEAL = "reseal"  #: the notary provably lost this envelope's keys; seal the reading anew


def judge(
    item: QueuedEnvelope, answer: Answer, *, uncertain: bool = False
) -> tuple[Verdict, DeliveryReceipt | None]:
    """Classify an answer to the delivery of ``item``.

    ``uncertain`` says an earlier attempt at this same envelope may have reached the notary
    (no answer, a 5xx, or the envelope was found queued after a restart). A 401 then has a
    benign explanation: the notary fetched the keys from its KME (which hands a key out
    once) and crashed before storing the record. The notary checks byte-identical resends
    of *accepted* envelopes before anything else (answering 409 with the record ID), so a
    401 proves it holds no record of this envelope, and sealing the same reading once more
    under fresh keys and a new sequence number cannot duplicate it. Once only: a reading
    that was already re-sealed is not re-sealed again.
    """
    body = answer.body
    if answer.status == 202:
        notary_record = body.get("record_id")
        if notary_record is not None and str(notary_record).lower() != item.record_id:
            raise QueueError("the notary named a different record ID than the envelope derives")
        return Verdict.DELIVERED, _receipt(item, body, resent=False)
    if answer.status == 409 and str(body.get("record_id", "")).lower() == item.record_id:
        # A byte-identical resend of an envelope the notary already accepted: our first
        # attempt got through but its answer was lost.
        return Verdict.DELIVERED, _receipt(item, {}, resent=True)
    if answer.status in _RETRYABLE or answer.status >= 500:
        return Verdict.RETRY, None
    if answer.status == 401 and uncertain and item.origin is None and item.plaintext:
        return Verdict.RESEAL, None
    return Verdict.REJECTED, None


def _receipt(item: QueuedEnvelope, body: dict[str, Any], *, resent: bool) -> DeliveryReceipt:
    trusted = body.get("device_trusted")
    attestation = body.get("attestation")
    salt = item.salt or None
    return DeliveryReceipt(
        record_id=item.record_id,
        device_id=item.envelope.sender,
        sequence=item.sequence,
        mode=item.envelope.mode,
        device_trusted=trusted if isinstance(trusted, bool) else None,
        attestation=attestation if isinstance(attestation, str) else None,
        resent=resent,
        salt=salt,
        payload_hash=payload_hash(salt, item.plaintext) if salt is not None else None,
    )
