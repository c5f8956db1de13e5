"""Sealed envelopes: QKD-keyed encryption and authentication of one message.

The byte-exact format, for implementations in other languages, is ``docs/envelope-spec.md``
(with known-answer vectors in ``tests/vectors``); this docstring summarises it.

Three modes, and every envelope names its own so nobody mistakes one for another:

``otp``
    One-time pad for confidentiality (information-theoretic) and a one-time Poly1305 key
    for authenticity (Wegman-Carter: statistical security, forgery probability about
    ``8 * ceil(len / 16) / 2**106``). Consumes ``len(plaintext) + 32`` bytes of QKD key.
``aead``
    AES-256-GCM under a 32-byte QKD session key that the sender reuses for several
    messages (random 96-bit nonces) and rotates by count/time (:class:`AEADSession`).
    Computational security only.
``hybrid``
    ``aead`` under a :class:`~qkd_channel.hybrid.HybridKey`: HKDF over the QKD session key
    and an ML-KEM-768 shared secret encapsulated to the recipient's public key, so the
    messages stay confidential if either the QKD key path or ML-KEM holds
    (:mod:`qkd_channel.hybrid`). Same sessions, rotation and 16-byte GCM tag as ``aead``.

Key consumption order (``otp``), fixed and documented so both ends agree: the material of
the keys named in the header is concatenated in header order; bytes ``[0, 32)`` are the
Poly1305 one-time key (``r || s`` as RFC 8439 defines it), bytes ``[32, 32 + n)`` are the
pad for an ``n``-byte plaintext, and any bytes left over are discarded, never reused.

Authenticated data is the canonical binary header (below), so the JSON transport form can
be re-serialised freely without breaking the tag. Binary layout, version 1 (all integers
big-endian; ``str`` fields are UTF-8 with a 1-byte length, ``bytes`` with a 4-byte length)::

    magic      4 bytes  b"QKDE"
    version    1 byte   1
    mode       1 byte   1 = otp, 2 = aead, 3 = hybrid
    sender     str      device ID or party ID of the sealer
    recipient  str      who may open it (the notary's ID, the counterparty's ID)
    sequence   8 bytes  strictly increasing per sender (replay protection is the receiver's)
    timestamp  8 bytes  milliseconds since the Unix epoch, as the sender's clock said
    key count  1 byte   then each key ID as 16 raw UUID bytes
    nonce      bytes    the mode parameters: empty in otp, the 12-byte GCM nonce in aead,
                        kem_key_id (8) || kem_ct (1088) || GCM nonce (12) in hybrid
    -- end of header (the authenticated data) --
    ciphertext bytes
    tag        16 bytes

The JSON form carries the same fields (``v``, ``mode``, ``sender``, ``recipient``, ``seq``,
``ts``, ``key_ids``, ``nonce``, ``ct``, ``tag``; byte fields base64).

Secrets bound to one envelope (:func:`derive_secret`): HKDF-SHA256 with the concatenated
material of the keys named in the header (header order) as input keying material, no HKDF
salt, and ``info = label || header`` (the canonical binary header above). Only the two ends
that hold the keys can compute it; the header makes it unique per envelope even when an
``aead`` session key serves many messages; the label separates its uses.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hmac
import json
import os
import struct
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.poly1305 import Poly1305

from qkd_channel import boundedjson
from qkd_channel.errors import EnvelopeRejected, KeyMaterialExhausted, SessionExpired
from qkd_channel.hybrid import KEM_PARAMS_BYTES, HybridKey
from qkd_channel.keys import QKDKey

__all__ = [
    "MAX_CIPHERTEXT_BYTES",
    "MAX_KEY_IDS",
    "AEADSession",
    "Envelope",
    "KeyMaterialExhausted",
    "Mode",
    "OneTimePad",
    "Opened",
    "SessionExpired",
    "derive_secret",
    "keys_needed",
    "open_envelope",
    "seal",
]

MAGIC = b"QKDE"
VERSION = 1
TAG_BYTES = 16
MAC_KEY_BYTES = 32
AEAD_KEY_BYTES = 32
NONCE_BYTES = 12
MAX_KEY_IDS = 64
MAX_ID_CHARS = 128
#: Upper bound on a ciphertext a parser accepts, so a hostile length field cannot make us
#: allocate unbounded memory. Services set tighter limits of their own.
MAX_CIPHERTEXT_BYTES = 16 * 1024 * 1024


class Mode(enum.StrEnum):
    """Security mode of an envelope; the label travels with every record made from it."""

    OTP = "otp"  #: one-time pad + one-time Poly1305 (information-theoretic)
    AEAD = "aead"  #: AES-256-GCM under a QKD session key (computational)
    HYBRID = "hybrid"  #: AES-256-GCM under HKDF(QKD session key, ML-KEM-768 secret)

    @property
    def uses_sessions(self) -> bool:
        """Whether one QKD key serves a session of messages (``aead``, ``hybrid``)."""
        return self is not Mode.OTP


_MODE_CODES = {Mode.OTP: 1, Mode.AEAD: 2, Mode.HYBRID: 3}
_CODE_MODES = {code: mode for mode, code in _MODE_CODES.items()}
#: Length of the mode-parameter (``nonce``) field in each mode.
_PARAMS_BYTES = {Mode.OTP: 0, Mode.AEAD: NONCE_BYTES, Mode.HYBRID: KEM_PARAMS_BYTES + NONCE_BYTES}


def keys_needed(mode: Mode, plaintext_len: int) -> int:
    """Bytes of QKD key material that sealing ``plaintext_len`` bytes consumes in ``mode``."""
    if plaintext_len < 0:
        raise ValueError("plaintext length cannot be negative")
    if mode is Mode.OTP:
        return plaintext_len + MAC_KEY_BYTES
    return AEAD_KEY_BYTES  # aead and hybrid: one session key, for many messages


class OneTimePad:
    """Key material drawn strictly in order, each byte at most once.

    The object refuses to hand out bytes it already gave (``take`` only moves forward) and
    refuses to be reused once :meth:`finish` was called, like pyca's ``AlreadyFinalized``.
    """

    def __init__(self, keys: Sequence[QKDKey]) -> None:
        if not keys:
            raise KeyMaterialExhausted("no key material supplied")
        self._material = b"".join(key.material for key in keys)
        self._offset = 0
        self._finished = False

    @property
    def remaining(self) -> int:
        return 0 if self._finished else len(self._material) - self._offset

    def take(self, n: int) -> bytes:
        """Return the next ``n`` unused bytes."""
        if self._finished:
            raise KeyMaterialExhausted("one-time pad already used")
        if n > len(self._material) - self._offset:
            raise KeyMaterialExhausted(
                f"need {n} more bytes of key material, {self.remaining} left"
            )
        chunk = self._material[self._offset : self._offset + n]
        self._offset += n
        return chunk

    def finish(self) -> None:
        """Discard whatever is left; the pad cannot be used again."""
        self._material = b""
        self._finished = True


@dataclass(frozen=True)
class Envelope:
    """A sealed message. Constructed by :func:`seal` or parsed by ``from_json``/``from_bytes``."""

    mode: Mode
    sender: str
    recipient: str
    sequence: int
    timestamp_ms: int
    key_ids: tuple[str, ...]
    nonce: bytes
    ciphertext: bytes = field(repr=False)
    tag: bytes = field(repr=False)
    version: int = VERSION

    def __post_init__(self) -> None:
        _check_header_fields(self)

    @property
    def kem_params(self) -> bytes:
        """``kem_key_id || kem_ct`` of a ``hybrid`` envelope (empty in other modes)."""
        return self.nonce[:-NONCE_BYTES] if self.mode is Mode.HYBRID else b""

    @property
    def gcm_nonce(self) -> bytes:
        """The 12-byte AES-GCM nonce of an ``aead`` or ``hybrid`` envelope (the last 12
        bytes of its mode parameters; empty in ``otp``): what must never repeat under one
        session key."""
        return self.nonce[-NONCE_BYTES:] if self.mode.uses_sessions else b""

    def header_bytes(self) -> bytes:
        """The canonical binary header: exactly the data the tag authenticates."""
        parts = [
            MAGIC,
            struct.pack(">BB", self.version, _MODE_CODES[self.mode]),
            _pack_str(self.sender),
            _pack_str(self.recipient),
            struct.pack(">QQB", self.sequence, self.timestamp_ms, len(self.key_ids)),
            *(uuid.UUID(key_id).bytes for key_id in self.key_ids),
            _pack_bytes(self.nonce),
        ]
        return b"".join(parts)

    def to_bytes(self) -> bytes:
        return self.header_bytes() + _pack_bytes(self.ciphertext) + self.tag

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse the binary form; any structural problem raises ``EnvelopeRejected``."""
        try:
            return _parse_binary(data)
        except (struct.error, ValueError, KeyError, IndexError) as exc:
            raise EnvelopeRejected("malformed") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "mode": self.mode.value,
            "sender": self.sender,
            "recipient": self.recipient,
            "seq": self.sequence,
            "ts": self.timestamp_ms,
            "key_ids": list(self.key_ids),
            "nonce": _b64(self.nonce),
            "ct": _b64(self.ciphertext),
            "tag": _b64(self.tag),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, obj: Any) -> Envelope:
        """Build from the JSON form; wrong types, missing fields or bad base64 are rejected."""
        try:
            if not isinstance(obj, dict):
                raise ValueError("envelope must be a JSON object")
            key_ids = obj["key_ids"]
            if not isinstance(key_ids, list):
                raise ValueError("key_ids must be a list")
            return cls(
                version=_strict_int(obj["v"]),
                mode=Mode(obj["mode"]),
                sender=_strict_str(obj["sender"]),
                recipient=_strict_str(obj["recipient"]),
                sequence=_strict_int(obj["seq"]),
                timestamp_ms=_strict_int(obj["ts"]),
                key_ids=tuple(_strict_str(k) for k in key_ids),
                nonce=_unb64(obj["nonce"]),
                ciphertext=_unb64(obj["ct"]),
                tag=_unb64(obj["tag"]),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise EnvelopeRejected("malformed") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        try:
            obj = boundedjson.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeRejected("malformed") from exc
        return cls.from_dict(obj)


@dataclass(frozen=True)
class Opened:
    """A successfully opened envelope: its authenticated header and the plaintext."""

    envelope: Envelope
    plaintext: bytes = field(repr=False)

    @property
    def sender(self) -> str:
        return self.envelope.sender

    @property
    def sequence(self) -> int:
        return self.envelope.sequence

    @property
    def mode(self) -> Mode:
        return self.envelope.mode


def seal(
    plaintext: bytes,
    *,
    sender: str,
    recipient: str,
    sequence: int,
    mode: Mode,
    keys: Sequence[QKDKey],
    timestamp_ms: int | None = None,
) -> Envelope:
    """Encrypt and authenticate ``plaintext`` with QKD key material.

    ``otp`` needs at least :func:`keys_needed` bytes across ``keys`` (consumed in the
    documented order; a key should never be passed to ``seal`` twice). ``aead`` takes exactly
    one 32-byte session key, ``hybrid`` exactly one :class:`~qkd_channel.hybrid.HybridKey`;
    prefer :class:`AEADSession`, which enforces rotation.
    """
    mode = Mode(mode)
    if timestamp_ms is None:
        timestamp_ms = time.time_ns() // 1_000_000
    key_ids = tuple(key.key_id for key in keys)
    if mode is Mode.OTP:
        nonce = b""
    else:
        session_key = _session_key(keys, mode)
        prefix = session_key.kem_params if isinstance(session_key, HybridKey) else b""
        nonce = prefix + os.urandom(NONCE_BYTES)
    draft = Envelope(
        mode, sender, recipient, sequence, timestamp_ms, key_ids, nonce, b"", bytes(TAG_BYTES)
    )
    header = draft.header_bytes()
    if mode is Mode.OTP:
        pad = OneTimePad(keys)
        mac_key = pad.take(MAC_KEY_BYTES)
        stream = pad.take(len(plaintext))
        pad.finish()
        ciphertext = _xor(plaintext, stream)
        tag = Poly1305.generate_tag(mac_key, header + ciphertext)
    else:
        sealed = AESGCM(session_key.material).encrypt(draft.gcm_nonce, plaintext, header)
        ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    return dataclasses.replace(draft, ciphertext=ciphertext, tag=tag)


def open_envelope(
    envelope: Envelope,
    keys: Sequence[QKDKey] | Mapping[str, QKDKey],
    *,
    expected_sender: str | None = None,
    expected_recipient: str | None = None,
) -> Opened:
    """Verify and decrypt. Every failure raises the same ``EnvelopeRejected``.

    ``keys`` must contain the keys named in the header (extra keys are ignored); for a
    ``hybrid`` envelope, the :class:`~qkd_channel.hybrid.HybridKey` its recipient derives
    (:meth:`~qkd_channel.hybrid.HybridKey.for_recipient`). The tag is checked before
    anything is decrypted, in constant time. Sender and recipient are checked after the
    tag, so they are authenticated values, not attacker claims.
    """
    by_id = _index_keys(keys)
    try:
        ordered = [by_id[str(uuid.UUID(key_id))] for key_id in envelope.key_ids]
    except KeyError:
        raise EnvelopeRejected("unknown-key") from None
    header = envelope.header_bytes()
    if envelope.mode is Mode.OTP:
        plaintext = _open_otp(envelope, ordered, header)
    else:
        plaintext = _open_aead(envelope, ordered, header)
    if expected_sender is not None and envelope.sender != expected_sender:
        raise EnvelopeRejected("wrong-sender")
    if expected_recipient is not None and envelope.recipient != expected_recipient:
        raise EnvelopeRejected("wrong-recipient")
    return Opened(envelope, plaintext)


def derive_secret(
    envelope: Envelope,
    keys: Sequence[QKDKey] | Mapping[str, QKDKey],
    *,
    label: bytes,
    length: int = 32,
) -> bytes:
    """A ``length``-byte secret that only the holders of this envelope's keys can compute.

    HKDF-SHA256 over the keys named in the header (in header order), ``info = label ||
    header``. The notary derives its records' commitment salts this way, so the device can
    recompute the salt of its own record without the notary ever publishing it. The keys
    are one-time (``otp``) or rotated (``aead``); the derived value reveals nothing usable
    about them (HKDF is a PRF keyed by the material). A ``hybrid`` envelope's secrets come
    from its hybrid key, so they too stay secret if either the QKD key or ML-KEM does.
    """
    if not label:
        raise ValueError("a derived secret needs a domain-separation label")
    by_id = _index_keys(keys)
    try:
        named = [by_id[key_id] for key_id in envelope.key_ids]
    except KeyError:
        raise KeyMaterialExhausted("a key named in the envelope header is missing") from None
    hybrid = [key for key in named if isinstance(key, HybridKey)]
    if (envelope.mode is Mode.HYBRID) != bool(hybrid) or any(
        key.kem_params != envelope.kem_params for key in hybrid
    ):
        raise ValueError("a hybrid envelope's secrets derive from its own hybrid key, only")
    material = b"".join(key.material for key in named)
    info = label + envelope.header_bytes()
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=info).derive(material)


class AEADSession:
    """Sender-side AES-256-GCM session under one key, rotated by count and age.

    The key is a 32-byte QKD key (``aead`` envelopes) or a
    :class:`~qkd_channel.hybrid.HybridKey` (``hybrid`` envelopes: one ML-KEM encapsulation
    per session, repeated in each of its envelopes); :attr:`mode` says which. Random 96-bit
    nonces keep the collision probability below 2**-32 for up to 2**32 messages; the
    default limit is far lower, so a session key is retired long before.
    """

    def __init__(
        self,
        key: QKDKey,
        *,
        max_messages: int = 1 << 20,
        max_age_s: float = 3600.0,
        clock: Any = time.monotonic,
    ) -> None:
        if len(key.material) != AEAD_KEY_BYTES:
            raise ValueError("an AEAD session key must be 256 bits")
        self._key = key
        self._max_messages = max_messages
        self._max_age_s = max_age_s
        self._clock = clock
        self._started = clock()
        self._used = 0
        self.mode = Mode.HYBRID if isinstance(key, HybridKey) else Mode.AEAD

    @property
    def key_id(self) -> str:
        return self._key.key_id

    @property
    def key(self) -> QKDKey:
        """The session key, for secrets bound to one of its envelopes (:func:`derive_secret`)."""
        return self._key

    def expired(self) -> bool:
        return self._used >= self._max_messages or self._clock() - self._started >= self._max_age_s

    def seal(
        self,
        plaintext: bytes,
        *,
        sender: str,
        recipient: str,
        sequence: int,
        timestamp_ms: int | None = None,
    ) -> Envelope:
        if self.expired():
            raise SessionExpired("AEAD session key is due for rotation")
        self._used += 1
        return seal(
            plaintext,
            sender=sender,
            recipient=recipient,
            sequence=sequence,
            mode=self.mode,
            keys=[self._key],
            timestamp_ms=timestamp_ms,
        )


def _open_otp(envelope: Envelope, keys: Sequence[QKDKey], header: bytes) -> bytes:
    pad = OneTimePad(keys)
    try:
        mac_key = pad.take(MAC_KEY_BYTES)
        stream = pad.take(len(envelope.ciphertext))
    except KeyMaterialExhausted:
        raise EnvelopeRejected("key-too-short") from None
    finally:
        pad.finish()
    expected = Poly1305.generate_tag(mac_key, header + envelope.ciphertext)
    if not hmac.compare_digest(expected, envelope.tag):
        raise EnvelopeRejected("bad-tag")
    return _xor(envelope.ciphertext, stream)


def _open_aead(envelope: Envelope, keys: Sequence[QKDKey], header: bytes) -> bytes:
    """``aead`` and ``hybrid``: the GCM nonce is the last 12 bytes of the mode parameters."""
    try:
        session_key = _session_key(keys, envelope.mode)
    except ValueError:
        raise EnvelopeRejected("wrong-key") from None  # a bad size, or the other mode's kind
    if isinstance(session_key, HybridKey) and not hmac.compare_digest(
        session_key.kem_params, envelope.kem_params
    ):
        raise EnvelopeRejected("kem-mismatch")
    try:
        return AESGCM(session_key.material).decrypt(
            envelope.gcm_nonce, envelope.ciphertext + envelope.tag, header
        )
    except InvalidTag:
        raise EnvelopeRejected("bad-tag") from None


def _session_key(keys: Sequence[QKDKey], mode: Mode) -> QKDKey:
    """The one 256-bit key of an ``aead`` or ``hybrid`` envelope, of the mode's own kind: a
    hybrid key never serves ``aead`` nor a bare QKD key ``hybrid`` (no mode confusion)."""
    if len(keys) != 1 or len(keys[0].material) != AEAD_KEY_BYTES:
        raise ValueError(f"{mode} mode takes exactly one 256-bit session key")
    if isinstance(keys[0], HybridKey) != (mode is Mode.HYBRID):
        raise ValueError("hybrid mode takes a HybridKey, aead mode a plain QKD key")
    return keys[0]


def _index_keys(keys: Sequence[QKDKey] | Mapping[str, QKDKey]) -> dict[str, QKDKey]:
    values: Iterable[QKDKey] = keys.values() if isinstance(keys, Mapping) else keys
    return {key.key_id: key for key in values}


def _xor(data: bytes, stream: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def _check_header_fields(env: Envelope) -> None:
    """Reject envelopes whose fields cannot be encoded canonically (ValueError)."""
    if env.version != VERSION:
        raise ValueError(f"unsupported envelope version {env.version}")
    for name, value in (("sender", env.sender), ("recipient", env.recipient)):
        if not value or len(value) > MAX_ID_CHARS or len(value.encode()) > 255:
            raise ValueError(f"{name} must be 1-{MAX_ID_CHARS} characters")
    if not 0 <= env.sequence < 1 << 64 or not 0 <= env.timestamp_ms < 1 << 64:
        raise ValueError("sequence and timestamp must fit in 64 unsigned bits")
    if not 1 <= len(env.key_ids) <= MAX_KEY_IDS:
        raise ValueError(f"an envelope names 1-{MAX_KEY_IDS} key IDs")
    canonical = tuple(str(uuid.UUID(key_id)) for key_id in env.key_ids)
    if len(set(canonical)) != len(canonical):
        raise ValueError("key IDs must be distinct")
    object.__setattr__(env, "key_ids", canonical)
    expected_nonce = _PARAMS_BYTES[env.mode]
    if len(env.nonce) != expected_nonce:
        raise ValueError(f"{env.mode} envelopes carry {expected_nonce} bytes of mode parameters")
    if len(env.tag) != TAG_BYTES:
        raise ValueError("tag must be 16 bytes")
    if len(env.ciphertext) > MAX_CIPHERTEXT_BYTES:
        raise ValueError("ciphertext too large")


def _parse_binary(data: bytes) -> Envelope:
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC:
        raise ValueError("bad magic")
    version, mode_code = struct.unpack_from(">BB", view, 4)
    offset = 6
    sender, offset = _unpack_str(view, offset)
    recipient, offset = _unpack_str(view, offset)
    sequence, timestamp_ms, count = struct.unpack_from(">QQB", view, offset)
    offset += 17
    key_ids = []
    for _ in range(count):
        raw = bytes(view[offset : offset + 16])
        if len(raw) != 16:
            raise ValueError("truncated key ID")
        key_ids.append(str(uuid.UUID(bytes=raw)))
        offset += 16
    nonce, offset = _unpack_bytes(view, offset)
    ciphertext, offset = _unpack_bytes(view, offset)
    tag = bytes(view[offset:])
    return Envelope(
        version=version,
        mode=_CODE_MODES[mode_code],
        sender=sender,
        recipient=recipient,
        sequence=sequence,
        timestamp_ms=timestamp_ms,
        key_ids=tuple(key_ids),
        nonce=nonce,
        ciphertext=ciphertext,
        tag=tag,
    )


def _pack_str(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">B", len(raw)) + raw


def _pack_bytes(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _unpack_str(view: memoryview, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">B", view, offset)
    raw = bytes(view[offset + 1 : offset + 1 + length])
    if len(raw) != length:
        raise ValueError("truncated string")
    return raw.decode(), offset + 1 + length


def _unpack_bytes(view: memoryview, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", view, offset)
    if length > MAX_CIPHERTEXT_BYTES:
        raise ValueError("field too large")
    raw = bytes(view[offset + 4 : offset + 4 + length])
    if len(raw) != length:
        raise ValueError("truncated field")
    return raw, offset + 4 + length


def _strict_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _strict_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(value, validate=True)
