"""Wegman-Carter authentication of the classical channel with one-time Poly1305 keys.

QKD is only as secure as the authentication of its classical messages: whoever can forge
them can run a man-in-the-middle and share a key with each end. Real links therefore start
from a small pre-shared authentication key and refill it from the key they produce
(Wegman and Carter 1981; information-theoretic, not computational, security).

What is tagged. Each end tags its whole *transcript* since the last checkpoint (every
frame it sent, with its position and length) with a fresh 32-byte Poly1305 key
(``r || s``, RFC 8439) taken from an :class:`AuthenticationKeyPool`; the peer recomputes
the tag over what it received. A key is never used twice. For a transcript of ``L`` bytes
a forgery passes with probability at most ``8 * ceil(L / 16) / 2**106`` per attempt (about
``2**-83`` for 10 MB), whatever the attacker's computing power, and one failure ends the
channel.

Why checkpoints rather than a key per message. Cascade is chatty: one 10^5-bit block takes
over a thousand messages, and a fresh 256-bit key for each (the first design) cost 330 kbit
of key per block to produce 22 kbit. Tagging transcripts at a few checkpoints per block
costs 64 bytes per checkpoint and is just as strong for QKD, because of *when* it checks:
the protocol computes with unverified messages but releases no key until the checkpoint
that covers them has passed at both ends. A tampered run therefore aborts and its raw key
is discarded; all an attacker gained is parities of a key that is thrown away (the usual
delayed-authentication argument of QKD post-processing stacks).

Frames (big-endian)::

    data        0x00 | counter u64 | payload          counter = position since checkpoint
    checkpoint  0x01 | key index u64 | count u64 | tag  tag over sender || index || count ||
                                                         (length u64 || counter || payload)*

The two directions draw from separate key streams, so the parties never race for the same
bytes: checkpoint ``i`` of Alice is keyed by the ``i``-th 32-byte chunk of the Alice-to-Bob
stream, at both ends. Replay, reordering, injection and dropping are caught by the counter
(eagerly) and by the tag (always: a replayed frame from an earlier block was tagged with a
retired key). After a block that aborted half-way, a checkpoint may name a key index ahead
of the receiver's (the sender burned keys whose checkpoints never arrived): the receiver
verifies the tag first and only then discards the skipped keys, so a forged index cannot
burn the pool.

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
import hmac
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.poly1305 import Poly1305

from qkd_channel.errors import AuthenticationFailed, AuthenticationKeyExhausted, ChannelError
from qkd_channel.postprocessing.channel import ClassicalChannel

__all__ = [
    "KEY_BYTES_PER_CHECKPOINT",
    "TAG_BYTES",
    "AuthenticatedChannel",
    "AuthenticationKeyPool",
    "PoolState",
    "Role",
]

KEY_BYTES_PER_CHECKPOINT = 32
TAG_BYTES = 16
_COUNTER = struct.Struct(">Q")


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
        return len(self.buffer) // KEY_BYTES_PER_CHECKPOINT

    def key_at(self, index: int) -> bytes:
        offset = (index - self.next_index) * KEY_BYTES_PER_CHECKPOINT
        if offset < 0:
            raise AuthenticationFailed("authentication key already used")
        if offset + KEY_BYTES_PER_CHECKPOINT > len(self.buffer):
            raise AuthenticationKeyExhausted("authentication key pool exhausted")
        return bytes(self.buffer[offset : offset + KEY_BYTES_PER_CHECKPOINT])

    def discard_through(self, index: int) -> None:
        """Forget every key up to and including ``index``."""
        count = index + 1 - self.next_index
        if count <= 0:
            return
        end = count * KEY_BYTES_PER_CHECKPOINT
        self.buffer[:end] = bytes(end)  # overwrite before releasing
        del self.buffer[:end]
        self.next_index = index + 1


@dataclass(frozen=True)
class PoolState:
    """Everything a pool holds, to be saved and resumed (key material: keep it secret)."""

    consumed: int
    #: Per direction (Alice-to-Bob, Bob-to-Alice): nominal size, index of the first key
    #: left, and the bytes left.
    streams: tuple[tuple[int, int, bytes], tuple[int, int, bytes]]

    def to_json(self) -> dict[str, object]:
        return {
            "consumed": self.consumed,
            "streams": [
                {"capacity": capacity, "next_index": index, "buffer": buffer.hex()}
                for capacity, index, buffer in self.streams
            ],
        }

    @classmethod
    def from_json(cls, document: dict[str, object]) -> PoolState:
        """Parse :meth:`to_json`'s form; ``ValueError`` when it is not that."""
        try:
            raw = document["streams"]
            if not isinstance(raw, list) or len(raw) != 2:
                raise ValueError("two streams expected")
            streams = tuple(
                (int(s["capacity"]), int(s["next_index"]), bytes.fromhex(s["buffer"])) for s in raw
            )
            consumed = document["consumed"]
            if not isinstance(consumed, int):
                raise ValueError("consumed must be an integer")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed pool state: {exc}") from None
        return cls(consumed, (streams[0], streams[1]))


class AuthenticationKeyPool:
    """The authentication key shared by the two ends, split into one stream per direction.

    ``initial_key`` is the pre-shared key: its first half keys Alice-to-Bob messages and
    its second half Bob-to-Alice messages. Its length (a positive multiple of 64 bytes)
    fixes the nominal size the pool is refilled to. Both ends must build their pool from
    the same bytes; the object is thread-safe.
    """

    def __init__(
        self, initial_key: bytes, *, on_change: Callable[[PoolState], None] | None = None
    ) -> None:
        """``on_change`` receives the new state after every retirement or replenishment,
        before the key involved can be used (see :mod:`.pool_store`)."""
        size = len(initial_key)
        if size == 0 or size % (2 * KEY_BYTES_PER_CHECKPOINT):
            raise ValueError("the pre-shared key must be a positive multiple of 64 bytes")
        half = size // 2
        alice, bob = _Stream(initial_key[:half], half), _Stream(initial_key[half:], half)
        self._setup(alice, bob, consumed=0, on_change=on_change)

    def _setup(
        self,
        alice: _Stream,
        bob: _Stream,
        *,
        consumed: int,
        on_change: Callable[[PoolState], None] | None,
    ) -> None:
        self._streams = {Role.ALICE: alice, Role.BOB: bob}
        self._lock = threading.Lock()
        self._consumed = consumed
        self._on_change = on_change

    @classmethod
    def resume(
        cls, state: PoolState, *, on_change: Callable[[PoolState], None] | None = None
    ) -> AuthenticationKeyPool:
        """The pool as :meth:`snapshot` left it."""
        (cap_a, index_a, buf_a), (cap_b, index_b, buf_b) = state.streams
        if len(buf_a) > cap_a or len(buf_b) > cap_b or min(index_a, index_b) < 0:
            raise ValueError("inconsistent pool state")
        alice, bob = _Stream(buf_a, cap_a), _Stream(buf_b, cap_b)
        alice.next_index, bob.next_index = index_a, index_b
        pool = cls.__new__(cls)
        pool._setup(alice, bob, consumed=state.consumed, on_change=on_change)
        return pool

    def snapshot(self) -> PoolState:
        with self._lock:
            return self._state()

    def _state(self) -> PoolState:
        a, b = self._streams[Role.ALICE], self._streams[Role.BOB]
        return PoolState(
            self._consumed,
            (
                (a.capacity, a.next_index, bytes(a.buffer)),
                (b.capacity, b.next_index, bytes(b.buffer)),
            ),
        )

    def _changed(self) -> None:
        """Under the lock, after a mutation: persist it before anyone can use it."""
        if self._on_change is not None:
            self._on_change(self._state())

    def checkpoints_left(self, sender: Role) -> int:
        """How many more checkpoints ``sender`` can tag before the pool runs dry."""
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
            self._changed()

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
            self._consumed += (stream.next_index - before) * KEY_BYTES_PER_CHECKPOINT
            if stream.next_index != before:
                self._changed()


class AuthenticatedChannel:
    """A :class:`ClassicalChannel` whose traffic is authenticated at checkpoints.

    Wraps any channel (in-memory or TCP); ``role`` says which end this is. ``send`` and
    ``receive`` move messages at once (with an order counter checked eagerly), and
    :meth:`checkpoint`, called by both ends at the same point of the protocol, proves that
    each end received exactly what the other sent since the previous checkpoint. Until a
    checkpoint passes, received messages are *unauthenticated*: the protocol may compute
    with them but must release nothing (no key) before the checkpoint that covers them.
    Any failure (forged, altered, replayed, reordered, dropped or injected message) raises
    ``ChannelError`` and leaves the channel broken.
    """

    def __init__(self, inner: ClassicalChannel, pool: AuthenticationKeyPool, role: Role) -> None:
        self._inner = inner
        self._pool = pool
        self._role = role
        self._broken = False
        self._sent: list[bytes] = []
        self._received: list[bytes] = []
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
            frame = _COUNTER.pack(len(self._sent)) + message
            self._sent.append(frame)
        self._inner.send(_DATA + frame)

    def receive(self, timeout: float | None = None) -> bytes:
        self._check_usable()
        frame = self._inner.receive(timeout)
        with self._lock:
            self._check_usable()
            if frame[:1] != _DATA or len(frame) < 1 + _COUNTER.size:
                self._broken = True
                raise AuthenticationFailed("message failed authentication")
            (counter,) = _COUNTER.unpack_from(frame, 1)
            if counter != len(self._received):
                self._broken = True
                raise AuthenticationFailed("message failed authentication")
            self._received.append(frame[1:])
            return frame[1 + _COUNTER.size :]

    def checkpoint(self, timeout: float | None = None) -> None:
        """Exchange transcript tags with the peer; return only if both transcripts match.

        Costs one fresh 32-byte key per direction.
        """
        with self._lock:
            self._check_usable()
            try:
                index = self._pool._next_index(self._role)
                key = self._pool._key_for(self._role, index)
                # Retired before use: a key must never tag a second transcript.
                self._pool._retire(self._role, index)
            except ChannelError:
                self._broken = True
                raise
            tag = _transcript_tag(key, self._role, index, self._sent)
            sent_count = len(self._sent)
        self._inner.send(_CHECKPOINT + _COUNTER.pack(index) + _COUNTER.pack(sent_count) + tag)
        frame = self._inner.receive(timeout)
        with self._lock:
            try:
                self._verify_checkpoint(frame)
            except ChannelError:
                self._broken = True
                raise
            self._sent.clear()
            self._received.clear()

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

    def _verify_checkpoint(self, frame: bytes) -> None:
        sender = self._role.peer
        if len(frame) != 1 + 2 * _COUNTER.size + TAG_BYTES or frame[:1] != _CHECKPOINT:
            raise AuthenticationFailed("message failed authentication")
        (index,) = _COUNTER.unpack_from(frame, 1)
        (count,) = _COUNTER.unpack_from(frame, 1 + _COUNTER.size)
        tag = frame[-TAG_BYTES:]
        # The peer may have burned keys in a block that aborted before its checkpoint got
        # through; skipping forward is safe because the tag is checked before anything is
        # discarded, and an old index is refused outright (no key is ever used twice).
        if index < self._pool._next_index(sender) or count != len(self._received):
            raise AuthenticationFailed("message failed authentication")
        try:
            key = self._pool._key_for(sender, index)
        except ChannelError:
            raise AuthenticationFailed("message failed authentication") from None
        expected = _transcript_tag(key, sender, index, self._received)
        if not hmac.compare_digest(expected, tag):
            raise AuthenticationFailed("message failed authentication")
        self._pool._retire(sender, index)


_DATA = b"\x00"
_CHECKPOINT = b"\x01"


def _transcript_tag(key: bytes, sender: Role, index: int, frames: list[bytes]) -> bytes:
    """One-time Poly1305 over ``sender || index || count || (len || frame)*``."""
    mac = Poly1305(key)
    mac.update(bytes([sender.value]) + _COUNTER.pack(index) + _COUNTER.pack(len(frames)))
    for frame in frames:
        mac.update(_COUNTER.pack(len(frame)))
        mac.update(frame)
    return mac.finalize()
