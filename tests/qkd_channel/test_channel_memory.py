"""InMemoryChannel: ordered delivery between threads, timeouts and closing."""

from __future__ import annotations

import threading

import pytest

from qkd_channel.errors import ChannelError
from qkd_channel.postprocessing.channel import ClassicalChannel, InMemoryChannel


def test_pair_delivers_messages_in_order_both_ways() -> None:
    a, b = InMemoryChannel.pair()
    for i in range(5):
        a.send(bytes([i]))
    b.send(b"back")
    assert [b.receive(timeout=1) for _ in range(5)] == [bytes([i]) for i in range(5)]
    assert a.receive(timeout=1) == b"back"


def test_ends_satisfy_the_protocol() -> None:
    a, b = InMemoryChannel.pair()
    assert isinstance(a, ClassicalChannel)
    assert isinstance(b, ClassicalChannel)


def test_receive_times_out_with_channel_error() -> None:
    a, _b = InMemoryChannel.pair()
    with pytest.raises(ChannelError):
        a.receive(timeout=0.01)


def test_close_wakes_blocked_peer_after_pending_messages() -> None:
    a, b = InMemoryChannel.pair()
    a.send(b"last words")
    a.close()
    assert b.receive(timeout=1) == b"last words"
    with pytest.raises(ChannelError):
        b.receive(timeout=1)
    with pytest.raises(ChannelError):
        b.receive(timeout=1)
    with pytest.raises(ChannelError):
        b.send(b"x")
    with pytest.raises(ChannelError):
        a.send(b"x")


def test_close_unblocks_a_receiver_in_another_thread() -> None:
    a, b = InMemoryChannel.pair()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            b.receive()
        except ChannelError as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    a.close()
    t.join(timeout=5)
    assert not t.is_alive()
    assert len(errors) == 1


def test_send_copies_the_buffer() -> None:
    a, b = InMemoryChannel.pair()
    buf = bytearray(b"abc")
    a.send(bytes(buf))
    buf[0] = 0
    assert b.receive(timeout=1) == b"abc"
