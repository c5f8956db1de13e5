"""Wegman-Carter channel: honest traffic passes; every man-in-the-middle trick is rejected."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd_channel.errors import AuthenticationKeyExhausted, ChannelError
from qkd_channel.postprocessing.authentication import (
    KEY_BYTES_PER_MESSAGE,
    AuthenticatedChannel,
    AuthenticationKeyPool,
    Role,
)
from qkd_channel.postprocessing.channel import InMemoryChannel


class Tap:
    """A man in the middle on the raw channel: sees and rewrites every frame."""

    def __init__(self) -> None:
        self.alice_raw, self.tap_alice_side = InMemoryChannel.pair()
        self.tap_bob_side, self.bob_raw = InMemoryChannel.pair()

    def forward(self) -> bytes:
        frame = self.tap_alice_side.receive(timeout=1)
        self.tap_bob_side.send(frame)
        return frame

    def intercept(self) -> bytes:
        return self.tap_alice_side.receive(timeout=1)

    def inject(self, frame: bytes) -> None:
        self.tap_bob_side.send(frame)


def _ends(psk: bytes) -> tuple[Tap, AuthenticatedChannel, AuthenticatedChannel]:
    tap = Tap()
    alice = AuthenticatedChannel(tap.alice_raw, AuthenticationKeyPool(psk), Role.ALICE)
    bob = AuthenticatedChannel(tap.bob_raw, AuthenticationKeyPool(psk), Role.BOB)
    return tap, alice, bob


PSK = bytes(range(256)) * 2  # 512 bytes: 8 keys per direction


def test_honest_messages_pass_both_ways() -> None:
    a, b = InMemoryChannel.pair()
    alice = AuthenticatedChannel(a, AuthenticationKeyPool(PSK), Role.ALICE)
    bob = AuthenticatedChannel(b, AuthenticationKeyPool(PSK), Role.BOB)
    alice.send(b"hello")
    alice.send(b"")
    bob.send(b"reply")
    assert bob.receive(timeout=1) == b"hello"
    assert bob.receive(timeout=1) == b""
    assert alice.receive(timeout=1) == b"reply"
    assert alice.pool.consumed_bytes == bob.pool.consumed_bytes == 3 * KEY_BYTES_PER_MESSAGE


def test_every_message_uses_fresh_key_bytes() -> None:
    pool = AuthenticationKeyPool(PSK)
    a, b = InMemoryChannel.pair()
    alice = AuthenticatedChannel(a, pool, Role.ALICE)
    before = pool.messages_left(Role.ALICE)
    alice.send(b"x")
    alice.send(b"x")
    assert pool.messages_left(Role.ALICE) == before - 2
    # Same payload, different one-time keys: different tags.
    first, second = b.receive(timeout=1), b.receive(timeout=1)
    assert first[-16:] != second[-16:]


@pytest.mark.parametrize("position", ["counter", "payload", "tag"])
def test_flipped_bit_is_rejected(position: str) -> None:
    tap, alice, bob = _ends(PSK)
    alice.send(b"parity answer 0101")
    frame = bytearray(tap.intercept())
    index = {"counter": 7, "payload": 10, "tag": len(frame) - 1}[position]
    frame[index] ^= 0x01
    tap.inject(bytes(frame))
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)
    # A failed channel stays failed, even for an honest message afterwards.
    alice.send(b"honest")
    tap.forward()
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_replayed_message_is_rejected() -> None:
    tap, alice, bob = _ends(PSK)
    alice.send(b"once")
    frame = tap.forward()
    assert bob.receive(timeout=1) == b"once"
    tap.inject(frame)
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_reordered_messages_are_rejected() -> None:
    tap, alice, bob = _ends(PSK)
    alice.send(b"first")
    alice.send(b"second")
    alice.send(b"third")
    first, second, third = tap.intercept(), tap.intercept(), tap.intercept()
    tap.inject(first)
    tap.inject(third)
    tap.inject(second)
    assert bob.receive(timeout=1) == b"first"
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_dropped_message_is_detected() -> None:
    tap, alice, bob = _ends(PSK)
    alice.send(b"one")
    alice.send(b"two")
    alice.send(b"three")
    tap.forward()
    tap.intercept()  # dropped
    tap.forward()
    assert bob.receive(timeout=1) == b"one"
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_message_spliced_from_other_direction_is_rejected() -> None:
    a, b = InMemoryChannel.pair()
    pool_a, pool_b = AuthenticationKeyPool(PSK), AuthenticationKeyPool(PSK)
    alice = AuthenticatedChannel(a, pool_a, Role.ALICE)
    bob = AuthenticatedChannel(b, pool_b, Role.BOB)
    bob.send(b"from bob")
    reflected = a.receive(timeout=1)  # Eve reflects Bob's frame back to Bob
    a.send(reflected)
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)
    del alice


def test_forgery_without_the_key_is_rejected() -> None:
    tap, _alice, bob = _ends(PSK)
    tap.inject(bytes(8) + b"forged" + os.urandom(16))
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_truncated_frame_is_rejected() -> None:
    tap, _alice, bob = _ends(PSK)
    tap.inject(b"short")
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_forged_far_counter_does_not_burn_the_pool() -> None:
    tap, alice, bob = _ends(PSK)
    left = bob.pool.messages_left(Role.ALICE)
    tap.inject((5).to_bytes(8, "big") + b"x" + bytes(16))
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)
    assert bob.pool.messages_left(Role.ALICE) == left
    del alice


def test_first_frame_may_skip_keys_the_peer_burned_in_an_aborted_block() -> None:
    psk = os.urandom(512)
    pool_a, pool_b = AuthenticationKeyPool(psk), AuthenticationKeyPool(psk)
    a1, b1 = InMemoryChannel.pair()
    alice = AuthenticatedChannel(a1, pool_a, Role.ALICE)
    alice.send(b"lost when the block aborted")
    alice.close()
    a2, b2 = InMemoryChannel.pair()
    alice2 = AuthenticatedChannel(a2, pool_a, Role.ALICE)
    bob2 = AuthenticatedChannel(b2, pool_b, Role.BOB)
    alice2.send(b"next block")
    assert bob2.receive(timeout=1) == b"next block"
    assert pool_a.messages_left(Role.ALICE) == pool_b.messages_left(Role.ALICE)
    del b1


def test_exhausted_pool_is_an_explicit_error() -> None:
    a, _b = InMemoryChannel.pair()
    alice = AuthenticatedChannel(a, AuthenticationKeyPool(bytes(64)), Role.ALICE)
    alice.send(b"the only one")
    with pytest.raises(AuthenticationKeyExhausted):
        alice.send(b"one too many")


def test_replenish_tops_up_both_directions_in_order() -> None:
    pool = AuthenticationKeyPool(os.urandom(256))
    a, _b = InMemoryChannel.pair()
    alice = AuthenticatedChannel(a, pool, Role.ALICE)
    for _ in range(3):
        alice.send(b"m")
    assert pool.deficit == 3 * KEY_BYTES_PER_MESSAGE
    with pytest.raises(ValueError):
        pool.replenish(os.urandom(pool.deficit + 1))
    pool.replenish(os.urandom(pool.deficit))
    assert pool.deficit == 0
    assert pool.messages_left(Role.ALICE) == 4


def test_replenished_pools_keep_both_ends_in_step() -> None:
    psk = os.urandom(128)
    a, b = InMemoryChannel.pair()
    pool_a, pool_b = AuthenticationKeyPool(psk), AuthenticationKeyPool(psk)
    alice = AuthenticatedChannel(a, pool_a, Role.ALICE)
    bob = AuthenticatedChannel(b, pool_b, Role.BOB)
    for round_ in range(5):  # far more messages than the 2 keys per direction of the PSK
        alice.send(b"a%d" % round_)
        assert bob.receive(timeout=1) == b"a%d" % round_
        bob.send(b"b")
        assert alice.receive(timeout=1) == b"b"
        fresh = os.urandom(pool_a.deficit)  # stands for the shared new secret key
        pool_a.replenish(fresh)
        pool_b.replenish(fresh)


def test_pool_rejects_odd_sized_psk() -> None:
    with pytest.raises(ValueError):
        AuthenticationKeyPool(bytes(100))


@settings(max_examples=50, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=5),
    victim=st.integers(min_value=0),
    byte=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_single_bit_flip_anywhere_is_rejected(
    payloads: list[bytes], victim: int, byte: int, bit: int
) -> None:
    tap, alice, bob = _ends(PSK)
    for payload in payloads:
        alice.send(payload)
    frames = [tap.intercept() for _ in payloads]
    target = victim % len(frames)
    for i, frame in enumerate(frames):
        if i == target:
            mutated = bytearray(frame)
            mutated[byte % len(mutated)] ^= 1 << bit
            tap.inject(bytes(mutated))
        else:
            tap.inject(frame)
    for i, payload in enumerate(payloads):
        if i == target:
            with pytest.raises(ChannelError):
                bob.receive(timeout=1)
            return
        assert bob.receive(timeout=1) == payload
