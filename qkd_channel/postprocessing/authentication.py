"""Wegman-Carter authentication of the classical channel with one-time Poly1305 keys.

QKD is only as secure as the authentication of its classical messages: whoever can forge
them can run a man-in-the-middle and share a key with each end. Real links therefore start
from a small pre-shared authentication key and refill it from the key they produce
(Wegman and Carter 1981; information-theoretic, not computational, security).

Construction. Each message gets its own fresh 32-byte Poly1305 key (``r || s``, RFC 8439)
taken from an :class:`AuthenticationKeyPool`; a key is never used twice. Forging a tag for
any message of ``L`` bytes succeeds with probability at most ``8 * ceil(L / 16) / 2**106``
per attempt, whatever the attacker's computing power, and one failed attempt ends the
channel. Frame layout (big-endian)::

    counter  8 bytes   message number in this direction, since the pool was created
    payload  n bytes
    tag      16 bytes  Poly1305(key[counter], direction || counter || payload)

The two directions draw from separate key streams, so the two parties never race for the
same bytes and stay in step without talking about it: message ``i`` from Alice to Bob is
keyed by the ``i``-th 32-byte chunk of the Alice-to-Bob stream, at both ends.

Replay, reordering and dropping are rejected by the counter: after the first message of a
channel, each frame must carry exactly the next counter. Only the first frame may skip
ahead, which resynchronises the two pools after a block that aborted half-way (the sender
had used keys for messages the receiver never read); the skipped keys are discarded, never
reused, and the tag is checked *before* anything is discarded, so a forged counter cannot
burn the pool. Any failure poisons the channel: every later call raises ``ChannelError``.

Replenishment: the pool remembers its nominal size per direction. After each successful
block the protocol takes :attr:`AuthenticationKeyPool.deficit` bytes from the front of the
new secret key and hands them to :meth:`AuthenticationKeyPool.replenish`, which tops up
the Alice-to-Bob stream first and then the Bob-to-Alice stream. Both ends run the same
arithmetic on pools in the same state, so they stay identical. An attacker who keeps
blocks from completing drains the pool (denial of service, never forgery); an empty pool
raises :class:`~qkd_channel.errors.AuthenticationKeyExhausted`.
"""

from __future__ import annotations

import enum
import struct
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

from qkd_channel.errors import AuthenticationKeyExhausted, ChannelError
from qkd_channel.postprocessing.channel import ClassicalChannel

__all__ = [
    "KEY_BYTES_PER_MESSAGE",
    "TAG_BYTES",
    "AuthenticatedChannel",
    "AuthenticationKeyPool",
    "Role",
]

KEY_BYTES_PER_MESSAGE = 32
TAG_BYTES = 16
_COUNTER = struct.Struct(">Q")
_OVERHEAD = _COUNTER.size + TAG_BYTES


class Role(enum.Enum):
    """Which end of the link a party is; fixes which key stream it sends with."""

    ALICE = 0  #: the sender of the quantum states
    BOB = 1  #: the receiver of the quantum states

    @property
    def peer(self) -> Role:
        return Role.BOB if self is Role.ALICE else Role.ALICE


class _Stream:
    """One direction's key bytes: append-only at the back, consumed once from the front."""

    def __init__(self, material: bytes, capacity: int) -> None:
        self.buffer = bytearray(material)
        self.capacity = capacity
        #: Index (in 32-byte keys) of the first key still in ``buffer``.
        self.next_index = 0

    @property
    def keys_left(self) -> int:
        return len(self.buffer) // KEY_BYTES_PER_MESSAGE

    def key_at(self, index: int) -> bytes:
        offset = (index - self.next_index) * KEY_BYTES_PER_MESSAGE
        if offset < 0:
            raise ChannelError("authentication key already used")
        if offset + KEY_BYTES_PER_MESSAGE > len(self.buffer):
            raise AuthenticationKeyExhausted("authentication key pool exhausted")
        return bytes(self.buffer[offset : offset + KEY_BYTES_PER_MESSAGE])

    def discard_through(self, index: int) -> None:
        """Forget every key up to and including ``index``."""
        count = index + 1 - self.next_index
        if count <= 0:
            return
        end = count * KEY_BYTES_PER_MESSAGE
        self.buffer[:end] = bytes(end)  # overwrite before releasing
        del self.buffer[:end]
        self.next_index = index + 1


class AuthenticationKeyPool:
    """The authentication key shared by the two ends, split into one stream per direction.

    ``initial_key`` is the pre-shared key: its first half keys Alice-to-Bob messages and
    its second half Bob-to-Alice messages. Its length (a positive multiple of 64 bytes)
    fixes the nominal size the pool is refilled to. Both ends must build their pool from
    the same bytes; the object is thread-safe.
    """

    def __init__(self, initial_key: bytes) -> None:
        size = len(initial_key)
        if size == 0 or size % (2 * KEY_BYTES_PER_MESSAGE):
            raise ValueError("the pre-shared key must be a positive multiple of 64 bytes")
        half = size // 2
        self._streams = {
            Role.ALICE: _Stream(initial_key[:half], half),
            Role.BOB: _Stream(initial_key[half:], half),
        }
        self._lock = threading.Lock()
        self._consumed = 0

    def messages_left(self, sender: Role) -> int:
        """How many more messages ``sender`` can authenticate before the pool runs dry."""
        with self._lock:
            return self._streams[sender].keys_left

    @property
    def consumed_bytes(self) -> int:
        """Key bytes used or discarded so far (both directions), for accounting."""
        with self._lock:
            return self._consumed

    @property
    def deficit(self) -> int:
        """Bytes :meth:`replenish` needs to bring both streams back to their nominal size."""
        with self._lock:
            return sum(s.capacity - len(s.buffer) for s in self._streams.values())

    def replenish(self, material: bytes) -> None:
        """Append fresh secret key: Alice-to-Bob stream first, then Bob-to-Alice.

        ``material`` may not exceed :attr:`deficit`; taking exactly ``deficit`` bytes from
        each new block keeps the pool full. Bytes are added in whole 32-byte keys only
        where possible; a partial key waits in the buffer until it is completed.
        """
        with self._lock:
            room = sum(s.capacity - len(s.buffer) for s in self._streams.values())
            if len(material) > room:
                raise ValueError("replenish was given more key than the pool's deficit")
            rest = memoryview(material)
            for role in (Role.ALICE, Role.BOB):
                stream = self._streams[role]
                take = min(len(rest), stream.capacity - len(stream.buffer))
                stream.buffer += rest[:take]
                rest = rest[take:]

    def _key_for(self, sender: Role, index: int) -> bytes:
        with self._lock:
            return self._streams[sender].key_at(index)

    def _next_index(self, sender: Role) -> int:
        with self._lock:
            return self._streams[sender].next_index

    def _retire(self, sender: Role, index: int) -> None:
        with self._lock:
            stream = self._streams[sender]
            before = stream.next_index
            stream.discard_through(index)
            self._consumed += (stream.next_index - before) * KEY_BYTES_PER_MESSAGE


class AuthenticatedChannel:
    """A :class:`ClassicalChannel` whose every message carries a one-time Poly1305 tag.

    Wraps any channel (in-memory or TCP). ``role`` says which end this is. ``receive``
    returns only messages that verified; anything else (forged, altered, replayed,
    reordered, dropped-before) raises ``ChannelError`` and the channel stays broken.
    """

    def __init__(self, inner: ClassicalChannel, pool: AuthenticationKeyPool, role: Role) -> None:
        self._inner = inner
        self._pool = pool
        self._role = role
        self._broken = False
        self._received_any = False
        self._lock = threading.Lock()

    @property
    def role(self) -> Role:
        return self._role

    @property
    def pool(self) -> AuthenticationKeyPool:
        return self._pool

    def send(self, message: bytes) -> None:
        with self._lock:
            self._check_usable()
            index = self._pool._next_index(self._role)
            try:
                key = self._pool._key_for(self._role, index)
            except ChannelError:
                self._broken = True
                raise
            # The key is retired before the frame leaves: it must never key a second message.
            self._pool._retire(self._role, index)
        header = _COUNTER.pack(index)
        tag = Poly1305.generate_tag(key, _authenticated_data(self._role, header, message))
        self._inner.send(header + message + tag)

    def receive(self, timeout: float | None = None) -> bytes:
        self._check_usable()
        frame = self._inner.receive(timeout)
        with self._lock:
            self._check_usable()
            try:
                payload = self._verify(frame)
            except ChannelError:
                self._broken = True
                raise
            self._received_any = True
            return payload

    def close(self) -> None:
        self._broken = True
        self._inner.close()

    def __enter__(self) -> AuthenticatedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._broken:
            raise ChannelError("authenticated channel is closed or failed")

    def _verify(self, frame: bytes) -> bytes:
        sender = self._role.peer
        if len(frame) < _OVERHEAD:
            raise ChannelError("message failed authentication")
        header, payload, tag = frame[:8], frame[8:-TAG_BYTES], frame[-TAG_BYTES:]
        (index,) = _COUNTER.unpack(header)
        expected = self._pool._next_index(sender)
        # Exactly the next counter, except that the first frame may skip keys the peer
        # burned in an aborted block (see module docstring).
        if index < expected or (self._received_any and index != expected):
            raise ChannelError("message failed authentication")
        try:
            key = self._pool._key_for(sender, index)
        except ChannelError:
            # A counter past the end of the pool: the honest peer could not have sent it.
            raise ChannelError("message failed authentication") from None
        try:
            Poly1305.verify_tag(key, _authenticated_data(sender, header, payload), tag)
        except InvalidSignature:
            if index == expected:
                # This key has now answered a forgery attempt: never trust it again.
                self._pool._retire(sender, index)
            raise ChannelError("message failed authentication") from None
        self._pool._retire(sender, index)
        return payload


def _authenticated_data(sender: Role, header: bytes, payload: bytes) -> bytes:
    return bytes([sender.value]) + header + payload
