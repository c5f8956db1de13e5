"""Wire format of the post-processing messages (everything except Cascade's own).

Every message is ``kind u8 | fields``; integers and floats are big-endian, bit strings are
``length u64 | numpy.packbits(bits)`` (big-endian bit order, zero padding). Parsing is
strict: a wrong kind, a short or over-long body, or non-zero padding raises
``ChannelError``, so a malformed message can never be half-read. The messages are
authenticated by the channel underneath, so strictness guards against bugs and version
skew, not against forgery.

An ``ABORT`` (reason u8) may replace any expected message: :func:`receive` turns it into
``LinkAborted`` so that a party that gives up takes its peer with it.
"""

from __future__ import annotations

import enum
import struct

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError, LinkAborted
from qkd_channel.postprocessing.channel import ClassicalChannel

__all__ = ["AbortReason", "Kind", "Reader", "Writer", "receive", "send_abort"]

Bits = npt.NDArray[np.uint8]


class Kind(enum.IntEnum):
    """Message kinds, in protocol order."""

    BLOCK_START = 0x01  #: Alice -> Bob: protocol version, key design, block ID
    DETECTIONS = 0x10  #: Bob -> Alice: indices of detected pulses and Bob's bases
    SIFT = 0x11  #: Alice -> Bob: which detections matched Alice's basis, their intensity
    SAMPLE = 0x20  #: Alice -> Bob: key positions sacrificed (signal-sampled design only)
    DISCLOSURE = 0x21  #: Bob -> Alice: his bits at the sample (if any) and in the X basis
    ESTIMATE = 0x22  #: Alice -> Bob: the error counts both ends bound the key with
    VERIFY = 0x30  #: Alice -> Bob: universal-hash key and Alice's tag
    VERDICT = 0x31  #: Bob -> Alice: whether the tags matched
    PA_SEED = 0x40  #: Alice -> Bob: final key length and the Toeplitz seed
    ABORT = 0x7F  #: either way: the sender gives up on this block


class AbortReason(enum.IntEnum):
    """Why a party abandoned a block (sent in ``ABORT``; never carries key material)."""

    PROTOCOL = 1  #: malformed or unexpected message
    QBER = 2  #: estimated error rate above threshold
    NO_SECRET_KEY = 3  #: the bounds leave no secret key in this block
    VERIFICATION = 4  #: keys differ after error correction
    LENGTH_MISMATCH = 5  #: the ends computed different final lengths


class Writer:
    """Builds one message body field by field."""

    def __init__(self, kind: Kind) -> None:
        self._parts: list[bytes] = [bytes([kind])]

    def u8(self, value: int) -> Writer:
        self._parts.append(struct.pack(">B", value))
        return self

    def u64(self, value: int) -> Writer:
        self._parts.append(struct.pack(">Q", value))
        return self

    def f64(self, value: float) -> Writer:
        self._parts.append(struct.pack(">d", value))
        return self

    def raw(self, data: bytes) -> Writer:
        self._parts.append(data)
        return self

    def blob(self, data: bytes) -> Writer:
        return self.u64(len(data)).raw(data)

    def bits(self, bits: Bits) -> Writer:
        return self.u64(len(bits)).raw(np.packbits(bits).tobytes())

    def int64s(self, values: npt.NDArray[np.int64]) -> Writer:
        return self.u64(len(values)).raw(values.astype(">i8").tobytes())

    def build(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads one message body; every accessor raises ``ChannelError`` on malformed input."""

    def __init__(self, body: bytes) -> None:
        self._body = memoryview(body)
        self._offset = 0

    def _take(self, size: int) -> memoryview:
        if size < 0 or self._offset + size > len(self._body):
            raise ChannelError("malformed post-processing message")
        chunk = self._body[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def u8(self) -> int:
        return int(self._take(1)[0])

    def u64(self) -> int:
        value: int = struct.unpack(">Q", self._take(8))[0]
        return value

    def f64(self) -> float:
        value: float = struct.unpack(">d", self._take(8))[0]
        return value

    def raw(self, size: int) -> bytes:
        return bytes(self._take(size))

    def blob(self) -> bytes:
        return self.raw(self.u64())

    def bits(self, expected: int | None = None) -> Bits:
        count = self.u64()
        if expected is not None and count != expected:
            raise ChannelError("malformed post-processing message")
        packed = np.frombuffer(self._take((count + 7) // 8), dtype=np.uint8)
        bits = np.unpackbits(packed)
        if bits[count:].any():
            raise ChannelError("malformed post-processing message")
        return bits[:count]

    def int64s(self) -> npt.NDArray[np.int64]:
        count = self.u64()
        if count > len(self._body):
            raise ChannelError("malformed post-processing message")
        values = np.frombuffer(self._take(8 * count), dtype=">i8")
        return values.astype(np.int64)

    def end(self) -> None:
        """Assert the whole body was consumed."""
        if self._offset != len(self._body):
            raise ChannelError("malformed post-processing message")


def receive(channel: ClassicalChannel, kind: Kind, timeout: float | None) -> Reader:
    """Wait for the next message, which must be of ``kind`` (or the peer's ``ABORT``)."""
    message = channel.receive(timeout)
    if not message:
        raise ChannelError("malformed post-processing message")
    if message[0] == Kind.ABORT and len(message) == 2:
        try:
            reason = AbortReason(message[1]).name.lower()
        except ValueError:
            reason = "unknown"
        raise LinkAborted(f"peer aborted the block ({reason})")
    if message[0] != kind:
        raise ChannelError(f"expected a {kind.name} message")
    return Reader(message[1:])


def send_abort(channel: ClassicalChannel, reason: AbortReason) -> None:
    """Tell the peer this block is abandoned; best effort, the block is lost either way."""
    try:
        channel.send(Writer(Kind.ABORT).u8(reason).build())
    except ChannelError:
        pass
