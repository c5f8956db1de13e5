"""Wire format of the Cascade messages (both directions).

Every message starts with one ASCII type byte; integers are little-endian. Bob drives the
protocol, Alice only answers, so each of Bob's requests gets exactly one answer except
``START`` and ``DONE``::

    Bob -> Alice
      START  b"S" | version u8 | n u64 | seed u64 | passes u8
      PASS   b"P" | pass u8 | block_size u32 | omit_last u8
             "send the parities of all top-level blocks of this pass" (without the last block
             when omit_last = 1: Bob infers it from the whole-key parity)
      QUERY  b"Q" | count u32 | pass u8[count] | start u32[count] | end u32[count]
             "send the parity of key[perm_pass[start:end]]" for each of the count ranges
      DONE   b"D"
    Alice -> Bob
      PARITY b"R" | count u32 | packbits(parity bits, big-endian bit order)
    Either side
      ABORT  b"E" | reason u8      the sender hit a protocol violation and gives up

The ranges are positions in the pass's permuted order, so a query names a contiguous
sub-block (a node of the binary search tree) in 9 bytes and never a key bit by index.
Parsing is strict: a wrong length, an out-of-range value or an unexpected type raises
:class:`~qkd_channel.errors.ChannelError`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError

__all__ = [
    "MAX_KEY_BITS",
    "MAX_PASSES",
    "VERSION",
    "AbortReason",
    "MessageType",
    "PassRequest",
    "Query",
    "Start",
    "decode_abort",
    "decode_parities",
    "decode_pass",
    "decode_query",
    "decode_start",
    "encode_abort",
    "encode_done",
    "encode_parities",
    "encode_pass",
    "encode_query",
    "encode_start",
    "message_type",
]

VERSION = 1
#: Positions travel as u32 and tree nodes are keyed by ``(pass, start, end)`` in one int64.
MAX_KEY_BITS = (1 << 28) - 1
MAX_PASSES = 64

_START = struct.Struct("<cBQQB")
_PASS = struct.Struct("<cBIB")
_COUNT = struct.Struct("<cI")
_ABORT = struct.Struct("<cB")


class MessageType(bytes, enum.Enum):
    """First byte of every Cascade message."""

    START = b"S"
    PASS = b"P"
    QUERY = b"Q"
    DONE = b"D"
    PARITY = b"R"
    ABORT = b"E"


class AbortReason(enum.IntEnum):
    """Why a party aborted; sent in ``ABORT`` so the peer fails fast instead of timing out."""

    MALFORMED = 1  # a message did not parse or broke the protocol order
    KEY_LENGTH = 2  # the two keys have different lengths
    SEED = 3  # the permutation seed differs from the pre-agreed one
    VERSION = 4  # unsupported protocol version


@dataclass(frozen=True)
class Start:
    version: int
    key_bits: int
    seed: int
    passes: int


@dataclass(frozen=True)
class PassRequest:
    pass_index: int
    block_size: int
    omit_last: bool


@dataclass(frozen=True)
class Query:
    passes: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]


def message_type(message: bytes) -> MessageType:
    """The type of ``message``; raises :class:`ChannelError` for an empty or unknown one."""
    try:
        return MessageType(message[:1])
    except ValueError:
        raise ChannelError("cascade: unknown message type") from None


def encode_start(key_bits: int, seed: int, passes: int) -> bytes:
    return _START.pack(MessageType.START.value, VERSION, key_bits, seed, passes)


def decode_start(message: bytes) -> Start:
    _expect_len(message, _START.size)
    _, version, key_bits, seed, passes = _START.unpack(message)
    if not 0 < key_bits <= MAX_KEY_BITS or not 0 < passes <= MAX_PASSES:
        raise ChannelError("cascade: START out of range")
    return Start(version, key_bits, seed, passes)


def encode_pass(pass_index: int, block_size: int, *, omit_last: bool) -> bytes:
    return _PASS.pack(MessageType.PASS.value, pass_index, block_size, int(omit_last))


def decode_pass(message: bytes) -> PassRequest:
    _expect_len(message, _PASS.size)
    _, pass_index, block_size, omit_last = _PASS.unpack(message)
    if omit_last > 1 or block_size == 0:
        raise ChannelError("cascade: PASS out of range")
    return PassRequest(pass_index, block_size, bool(omit_last))


def encode_query(
    passes: npt.NDArray[np.integer], starts: npt.NDArray[np.integer], ends: npt.NDArray[np.integer]
) -> bytes:
    count = len(starts)
    return b"".join(
        (
            _COUNT.pack(MessageType.QUERY.value, count),
            passes.astype("<u1").tobytes(),
            starts.astype("<u4").tobytes(),
            ends.astype("<u4").tobytes(),
        )
    )


def decode_query(message: bytes, *, key_bits: int, passes_started: int) -> Query:
    """Parse a ``QUERY``; every range must be non-empty, inside the key, in a started pass."""
    count = _count(message, MessageType.QUERY)
    _expect_len(message, _COUNT.size + 9 * count)
    body = memoryview(message)[_COUNT.size :]
    passes = np.frombuffer(body[:count], dtype="<u1").astype(np.int64)
    starts = np.frombuffer(body[count : 5 * count], dtype="<u4").astype(np.int64)
    ends = np.frombuffer(body[5 * count :], dtype="<u4").astype(np.int64)
    if count and (
        int(passes.max()) >= passes_started
        or bool(np.any(starts >= ends))
        or int(ends.max()) > key_bits
    ):
        raise ChannelError("cascade: QUERY out of range")
    return Query(passes, starts, ends)


def encode_parities(bits: npt.NDArray[np.uint8]) -> bytes:
    return _COUNT.pack(MessageType.PARITY.value, len(bits)) + np.packbits(bits).tobytes()


def decode_parities(message: bytes, expected: int) -> npt.NDArray[np.uint8]:
    """Parse a ``PARITY`` answer that must carry exactly ``expected`` bits (zero padding)."""
    count = _count(message, MessageType.PARITY)
    nbytes = (expected + 7) // 8
    if count != expected:
        raise ChannelError("cascade: PARITY has the wrong number of bits")
    _expect_len(message, _COUNT.size + nbytes)
    packed = np.frombuffer(message, dtype=np.uint8, offset=_COUNT.size)
    bits = np.unpackbits(packed)
    if bits[expected:].any():
        raise ChannelError("cascade: PARITY padding is not zero")
    return bits[:expected]


def encode_done() -> bytes:
    return MessageType.DONE.value


def encode_abort(reason: AbortReason) -> bytes:
    return _ABORT.pack(MessageType.ABORT.value, int(reason))


def decode_abort(message: bytes) -> str:
    """The peer's abort reason as a label (``"unknown"`` for a code this version lacks)."""
    if len(message) != _ABORT.size:
        return "unknown"
    code = message[1]
    try:
        return AbortReason(code).name.lower()
    except ValueError:
        return "unknown"


def _count(message: bytes, kind: MessageType) -> int:
    if len(message) < _COUNT.size or message[:1] != kind.value:
        raise ChannelError(f"cascade: expected a {kind.name} message")
    count: int = _COUNT.unpack_from(message)[1]
    return count


def _expect_len(message: bytes, size: int) -> None:
    if len(message) != size:
        raise ChannelError("cascade: message has the wrong length")
