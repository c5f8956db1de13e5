"""Wire format: round trips, and hostile bytes only ever raise ChannelError or LinkAborted."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd_channel.errors import ChannelError, LinkAborted
from qkd_channel.postprocessing.channel import InMemoryChannel
from qkd_channel.postprocessing.messages import (
    AbortReason,
    Kind,
    Reader,
    Writer,
    receive,
    send_abort,
)


@settings(max_examples=100, deadline=None)
@given(
    bits=st.lists(st.integers(0, 1), max_size=200),
    ints=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
    blob=st.binary(max_size=100),
    number=st.integers(0, 2**64 - 1),
    real=st.floats(allow_nan=False),
)
def test_fields_round_trip(
    bits: list[int], ints: list[int], blob: bytes, number: int, real: float
) -> None:
    message = (
        Writer(Kind.SIFT)
        .bits(np.array(bits, dtype=np.uint8))
        .int64s(np.array(ints, dtype=np.int64))
        .blob(blob)
        .u64(number)
        .f64(real)
        .build()
    )
    assert message[0] == Kind.SIFT
    reader = Reader(message[1:])
    assert reader.bits().tolist() == bits
    assert reader.int64s().tolist() == ints
    assert reader.blob() == blob
    assert reader.u64() == number
    assert reader.f64() == real
    reader.end()


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_the_parser(body: bytes) -> None:
    reader = Reader(body)
    try:
        reader.bits()
        reader.int64s()
        reader.blob()
        reader.end()
    except ChannelError:
        pass


def test_nonzero_padding_is_rejected() -> None:
    body = Writer(Kind.SIFT).u64(3).raw(bytes([0b1111_1111])).build()[1:]
    with pytest.raises(ChannelError):
        Reader(body).bits()


def test_trailing_bytes_are_rejected() -> None:
    reader = Reader(Writer(Kind.SIFT).u64(1).raw(b"extra").build()[1:])
    reader.u64()
    with pytest.raises(ChannelError):
        reader.end()


def test_unexpected_kind_is_rejected() -> None:
    a, b = InMemoryChannel.pair()
    a.send(Writer(Kind.SAMPLE).build())
    with pytest.raises(ChannelError):
        receive(b, Kind.SIFT, timeout=1)


def test_peer_abort_becomes_link_aborted() -> None:
    a, b = InMemoryChannel.pair()
    send_abort(a, AbortReason.QBER)
    with pytest.raises(LinkAborted, match="qber"):
        receive(b, Kind.SIFT, timeout=1)
