"""The intake pipeline shared by HTTP and MQTT: envelope bytes in, durable record out.

Steps, in order (DESIGN.md section 5), each failure a specific ``IntakeRejected``:

1. size limit (413) and parsing of the JSON or binary envelope form (400);
2. recipient must be this notary; on MQTT the topic's device must be the sender (401);
3. a byte-identical resend of an accepted envelope is a replay (409, with its record ID);
4. device lookup, cached: unknown or deactivated devices are refused (401) *before* any
   key is fetched, so nobody can make the notary burn keys for a device it does not serve;
   likewise a ``hybrid`` envelope for an ML-KEM key this notary does not hold (or when it
   holds none);
5. keys: ``aead``/``hybrid`` session keys come from a short-lived cache, each usable in its
   own mode only; everything else from the KME with the device's SAE as master (merged
   with concurrent requests by the key source). The KME only releases keys that SAE
   obtained, which is what binds keys to a device (401). The link those keys crossed is
   what the KME reports for that SAE pair (cached by the key source);
6. ``hybrid``: decapsulation and the key combination (:mod:`qkd_channel.hybrid`); then the
   constant-time MAC check and decryption (``open_envelope``; 401 on any failure);
7. telemetry schema of the plaintext (422);
8. one storage transaction: sequence strictly above the device's last (409), firmware
   attestation, outbox entry, keys marked consumed. Only after its commit does the caller
   get the record ID to answer ``202 Accepted``.

Keys obtained for an envelope that is then refused are still consumed: they are recorded as
such and never requested again, so a pad is never reused even if a retry names it. Keys
obtained for an envelope whose outbox write failed (503) are kept in memory for ten
minutes, indexed by the digest of that exact envelope, so the device's retry of the same
bytes succeeds; no other envelope can be checked against them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from notary.errors import (
    AuthenticationFailed,
    IntakeRejected,
    KeysRejected,
    MalformedEnvelope,
    NotaryError,
    PayloadTooLarge,
    ReplayDetected,
    ServiceUnavailable,
)
from notary.keysource import KeySource
from notary.logging import log_event
from notary.metrics import NotaryMetrics
from notary.storage.base import DeviceEventKind, DeviceRow, NewRecord, Store
from notary.telemetry import parse_document, payload_hash, record_id, record_salt
from qkd_channel.envelope import Envelope, Mode, open_envelope
from qkd_channel.errors import EnvelopeRejected
from qkd_channel.hybrid import KEM_KEY_ID_BYTES, HybridKey, KEMPrivateKey
from qkd_channel.keys import QKDKey
from qkd_channel.security_levels import Hop, KeyPath

__all__ = ["Accepted", "IntakePipeline"]

log = logging.getLogger("notary.pipeline")

BINARY_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Accepted:
    """What the caller answers ``202 Accepted`` with."""

    record_id: str
    device_id: str
    sequence: int
    mode: Mode
    device_trusted: bool
    attestation: DeviceEventKind | None


@dataclass
class _Session:
    device_id: str
    mode: Mode  #: the session key serves envelopes of this mode only
    key: QKDKey = field(repr=False)
    expires_at: float


@dataclass
class _Retained:
    """Keys of an envelope whose storage write failed, kept for its byte-identical retry."""

    device_id: str
    key: QKDKey = field(repr=False)
    more: tuple[QKDKey, ...] = field(repr=False)
    expires_at: float


RETAIN_TTL_S = 600.0
MAX_RETAINED = 10_000


class IntakePipeline:
    """Verifies envelopes and writes accepted records to the outbox."""

    def __init__(
        self,
        *,
        store: Store,
        keys: KeySource,
        notary_id: str,
        metrics: NotaryMetrics,
        max_envelope_bytes: int = 64 * 1024,
        aead_session_ttl_s: float = 3600.0,
        device_cache_ttl_s: float = 5.0,
        max_sessions: int = 100_000,
        on_accepted: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        kem_key: KEMPrivateKey | None = None,
    ) -> None:
        """``kem_key``: the notary's ML-KEM-768 key; without it ``hybrid`` is refused."""
        self._store = store
        self._kem_key = kem_key
        self._keys = keys
        self._notary_id = notary_id
        self._metrics = metrics
        self._max_bytes = max_envelope_bytes
        self._session_ttl = aead_session_ttl_s
        self._device_ttl = device_cache_ttl_s
        self._max_sessions = max_sessions
        self._clock = clock
        self.on_accepted = on_accepted
        self._devices: dict[str, tuple[float, DeviceRow]] = {}
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, _Retained] = {}

    @property
    def max_envelope_bytes(self) -> int:
        return self._max_bytes

    def forget_device(self, device_id: str) -> None:
        """Drop a cached device row (called after admin changes)."""
        self._devices.pop(device_id, None)

    async def submit(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        channel: str = "http",
        topic_device_id: str | None = None,
    ) -> Accepted:
        """Run the whole pipeline on one envelope; raise ``NotaryError`` subclasses."""
        started = time.perf_counter()
        try:
            accepted = await self._submit(body, content_type, topic_device_id)
        except NotaryError as exc:
            reason = exc.detail_reason if isinstance(exc, IntakeRejected) else exc.reason
            self._metrics.rejected.labels(reason, channel).inc()
            log_event(log, logging.INFO, "envelope refused", reason=reason, channel=channel)
            raise
        finally:
            self._metrics.intake_seconds.observe(time.perf_counter() - started)
        self._metrics.accepted.labels(accepted.mode.value, channel).inc()
        if self.on_accepted is not None:
            self.on_accepted()
        log_event(
            log,
            logging.DEBUG,
            "envelope accepted",
            record_id=accepted.record_id,
            device_id=accepted.device_id,
            sequence=accepted.sequence,
            channel=channel,
        )
        return accepted

    async def _submit(
        self, body: bytes, content_type: str, topic_device_id: str | None
    ) -> Accepted:
        if len(body) > self._max_bytes:
            raise PayloadTooLarge(f"envelopes are limited to {self._max_bytes} bytes")
        envelope = _parse(body, content_type)
        if topic_device_id is not None and envelope.sender != topic_device_id:
            raise AuthenticationFailed("topic-mismatch")
        if envelope.recipient != self._notary_id:
            raise AuthenticationFailed("wrong-recipient")
        envelope_digest = hashlib.sha256(envelope.to_bytes()).hexdigest()
        lookup = await self._store.intake_lookup(envelope_digest, envelope.key_ids)
        if lookup.replay_of is not None:
            raise ReplayDetected("this envelope was already accepted", record_id=lookup.replay_of)
        device = await self._device(envelope.sender)
        if envelope.mode is Mode.HYBRID:
            self._check_kem_recipient(envelope)
        retained = self._retained.pop(envelope_digest, None)
        if (
            retained is not None
            and retained.device_id == device.device_id
            and retained.expires_at > self._clock()
        ):
            keys = [retained.key, *retained.more]
        else:
            keys = await self._obtain_keys(envelope, device, key_reused=bool(lookup.consumed))
        link = await self._keys.link_hop(device.sae_id)  # cached; what the KME reports
        try:
            record = self._verify(envelope, device, keys, envelope_digest, link)
            outcome = await self._store.accept(record)
        except IntakeRejected:
            if envelope.mode is Mode.OTP:
                await self._remember_consumed(device.device_id, envelope.key_ids)
            raise
        except ServiceUnavailable:
            # The KME has already deleted these keys; without them the device's retry of
            # this very envelope could never succeed. Keep them for that retry only: they
            # are looked up by the digest of the whole envelope, so no other message can
            # ever be checked against this pad.
            self._retain(envelope_digest, device.device_id, keys)
            raise
        return Accepted(
            record_id=outcome.record.record_id,
            device_id=outcome.record.device_id,
            sequence=outcome.record.sequence,
            mode=envelope.mode,
            device_trusted=outcome.record.device_trusted,
            attestation=None if outcome.event is None else outcome.event.kind,
        )

    def _verify(
        self,
        envelope: Envelope,
        device: DeviceRow,
        keys: list[QKDKey],
        envelope_digest: str,
        link: Hop,
    ) -> NewRecord:
        try:
            keys = self._opening_keys(envelope, keys)
            opened = open_envelope(
                envelope,
                keys,
                expected_sender=device.device_id,
                expected_recipient=self._notary_id,
            )
        except EnvelopeRejected as exc:
            raise AuthenticationFailed(exc.reason) from None
        document = parse_document(opened.plaintext)
        salt = record_salt(envelope, keys)
        key_path = KeyPath(
            link=link,
            device=Hop(document.key_delivery or Hop.UNREPORTED),
            notary=self._keys.delivery_hop,
        )
        return NewRecord(
            record_id=record_id(device.device_id, envelope.sequence, envelope.key_ids),
            device_id=device.device_id,
            sequence=envelope.sequence,
            key_ids=envelope.key_ids,
            mode=envelope.mode.value,
            payload=opened.plaintext,
            payload_hash=payload_hash(salt, opened.plaintext),
            salt=salt,
            firmware_digest=document.firmware_digest,
            envelope_digest=envelope_digest,
            sent_at_ms=envelope.timestamp_ms,
            accepted_at=self._clock(),
            key_path=key_path.code,
        )

    async def _device(self, device_id: str) -> DeviceRow:
        now = self._clock()
        cached = self._devices.get(device_id)
        if cached is not None and now - cached[0] < self._device_ttl:
            device = cached[1]
        else:
            found = await self._store.get_device(device_id)
            if found is None:
                raise AuthenticationFailed("unknown-device")
            device = found
            self._devices[device_id] = (now, device)
        if not device.active:
            raise AuthenticationFailed("device-inactive")
        return device

    def _check_kem_recipient(self, envelope: Envelope) -> None:
        """Refuse a hybrid envelope we could never open before any key is spent on it."""
        if self._kem_key is None:
            raise AuthenticationFailed("hybrid-not-configured")
        if len(envelope.key_ids) != 1:
            raise AuthenticationFailed("wrong-key")  # a session names one QKD key
        if envelope.kem_params[:KEM_KEY_ID_BYTES] != self._kem_key.public_key.key_id:
            raise AuthenticationFailed("unknown-kem-key")  # a public ID, not a secret

    def _opening_keys(self, envelope: Envelope, keys: list[QKDKey]) -> list[QKDKey]:
        """The keys ``open_envelope`` takes: for ``hybrid`` the combination of the QKD
        session key with the decapsulated ML-KEM secret (raises ``EnvelopeRejected``)."""
        if envelope.mode is not Mode.HYBRID:
            return keys
        if self._kem_key is None or len(keys) != 1:
            raise EnvelopeRejected("hybrid-not-configured" if len(keys) == 1 else "wrong-key")
        return [HybridKey.for_recipient(keys[0], envelope.kem_params, self._kem_key)]

    async def _obtain_keys(
        self, envelope: Envelope, device: DeviceRow, *, key_reused: bool
    ) -> list[QKDKey]:
        if envelope.mode.uses_sessions and len(envelope.key_ids) == 1:
            session = self._session(envelope.key_ids[0])
            if session is not None:
                if session.device_id != device.device_id:
                    raise AuthenticationFailed("key-not-bound")
                if session.mode is not envelope.mode:
                    # One QKD key never serves two modes: a hybrid session's key used as a
                    # bare AES key (or the reverse) is a downgrade or a confusion attempt.
                    raise AuthenticationFailed("key-mode-mismatch")
                return [session.key]
        if key_reused:
            # The KME would refuse too; asking it would only cost a round trip.
            raise AuthenticationFailed("key-reused")
        try:
            keys = await self._keys.dec_keys(device.sae_id, envelope.key_ids)
        except KeysRejected:
            raise AuthenticationFailed("unknown-key") from None
        self._metrics.key_bytes.labels(envelope.mode.value).inc(
            sum(len(key.material) for key in keys)
        )
        if envelope.mode.uses_sessions and len(keys) == 1:
            # Cached even if this envelope then fails its tag: the key genuinely belongs to
            # this device's SAE (the KME checked), and dropping it would let one forged
            # envelope kill the device's session.
            self._remember_session(device.device_id, envelope.mode, keys[0])
        return keys

    def _session(self, key_id: str) -> _Session | None:
        session = self._sessions.get(key_id)
        if session is not None and session.expires_at <= self._clock():
            del self._sessions[key_id]
            return None
        return session

    def _remember_session(self, device_id: str, mode: Mode, key: QKDKey) -> None:
        now = self._clock()
        if len(self._sessions) >= self._max_sessions:
            for key_id in [k for k, s in self._sessions.items() if s.expires_at <= now]:
                del self._sessions[key_id]
            while len(self._sessions) >= self._max_sessions:
                del self._sessions[next(iter(self._sessions))]
        self._sessions[key.key_id] = _Session(device_id, mode, key, now + self._session_ttl)

    def _retain(self, envelope_digest: str, device_id: str, keys: list[QKDKey]) -> None:
        now = self._clock()
        for digest in [d for d, r in self._retained.items() if r.expires_at <= now]:
            del self._retained[digest]
        if len(self._retained) < MAX_RETAINED:
            self._retained[envelope_digest] = _Retained(
                device_id, keys[0], tuple(keys[1:]), now + RETAIN_TTL_S
            )

    async def _remember_consumed(self, device_id: str, key_ids: tuple[str, ...]) -> None:
        try:
            await self._store.record_consumed_keys(device_id, key_ids, now=self._clock())
        except NotaryError:
            # The KME has deleted these keys already, so they cannot be reused regardless;
            # the local mark only saves a KME round trip on a retry.
            log_event(log, logging.WARNING, "could not mark refused keys consumed")


def _parse(body: bytes, content_type: str) -> Envelope:
    try:
        if content_type.split(";")[0].strip().lower() == BINARY_CONTENT_TYPE:
            return Envelope.from_bytes(body)
        return Envelope.from_json(body)
    except (EnvelopeRejected, RecursionError):  # RecursionError: absurdly nested JSON
        raise MalformedEnvelope("the body is not a valid sealed envelope") from None
