"""Wegman-Carter channel: honest traffic passes; every man-in-the-middle trick is rejected."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd_channel.errors import AuthenticationKeyExhausted, ChannelError
from qkd_channel.postprocessing.authentication import (
    KEY_BYTES_PER_CHECKPOINT,
    AuthenticatedChannel,
    AuthenticationKeyPool,
    Role,
)
from qkd_channel.postprocessing.channel import InMemoryChannel

PSK = bytes(range(256)) * 2  # 512 bytes: 8 checkpoints per direction


class Tap:
    """A man in the middle on the raw channel: sees and rewrites Alice-to-Bob frames."""

    def __init__(self) -> None:
        self.alice_raw, self._near = InMemoryChannel.pair()
        self._far, self.bob_raw = InMemoryChannel.pair()

    def intercept(self) -> bytes:
        return self._near.receive(timeout=1)

    def inject(self, frame: bytes) -> None:
        self._far.send(frame)

    def forward(self) -> bytes:
        frame = self.intercept()
        self.inject(frame)
        return frame

    def cut(self) -> None:
        """Close both sides so an end still waiting for a checkpoint fails at once."""
        self._near.close()
        self._far.close()

    def relay_to_alice(self) -> None:
        """Pass Bob's frames back untouched."""
        self._near.send(self._far.receive(timeout=1))


def _ends(
    psk: bytes = PSK,
) -> tuple[Tap, AuthenticatedChannel, AuthenticatedChannel]:
    tap = Tap()
    alice = AuthenticatedChannel(tap.alice_raw, AuthenticationKeyPool(psk), Role.ALICE)
    bob = AuthenticatedChannel(tap.bob_raw, AuthenticationKeyPool(psk), Role.BOB)
    return tap, alice, bob


def _checkpoint_both(
    alice: AuthenticatedChannel, bob: AuthenticatedChannel
) -> tuple[BaseException | None, BaseException | None]:
    """Run the checkpoint at both ends concurrently; return what each raised."""
    errors: dict[str, BaseException | None] = {"a": None, "b": None}

    def run(name: str, end: AuthenticatedChannel) -> None:
        try:
            end.checkpoint(timeout=2)
        except ChannelError as exc:
            errors[name] = exc

    threads = [
        threading.Thread(target=run, args=("a", alice)),
        threading.Thread(target=run, args=("b", bob)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return errors["a"], errors["b"]


def _pair(psk: bytes = PSK) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    a, b = InMemoryChannel.pair()
    return (
        AuthenticatedChannel(a, AuthenticationKeyPool(psk), Role.ALICE),
        AuthenticatedChannel(b, AuthenticationKeyPool(psk), Role.BOB),
    )


def test_honest_traffic_passes_checkpoints_both_ways() -> None:
    alice, bob = _pair()
    alice.send(b"hello")
    alice.send(b"")
    bob.send(b"reply")
    assert bob.receive(timeout=1) == b"hello"
    assert bob.receive(timeout=1) == b""
    assert alice.receive(timeout=1) == b"reply"
    assert _checkpoint_both(alice, bob) == (None, None)
    alice.send(b"after")
    assert bob.receive(timeout=1) == b"after"
    assert _checkpoint_both(alice, bob) == (None, None)
    assert alice.pool.consumed_bytes == bob.pool.consumed_bytes == 4 * KEY_BYTES_PER_CHECKPOINT


def test_each_checkpoint_uses_fresh_key_bytes() -> None:
    alice, bob = _pair()
    before = alice.pool.checkpoints_left(Role.ALICE)
    _checkpoint_both(alice, bob)
    _checkpoint_both(alice, bob)
    assert alice.pool.checkpoints_left(Role.ALICE) == before - 2
    assert bob.pool.checkpoints_left(Role.ALICE) == before - 2


@pytest.mark.parametrize("position", ["kind", "counter", "payload"])
def test_flipped_bit_in_data_frame_is_rejected(position: str) -> None:
    tap, alice, bob = _ends()
    alice.send(b"parity answer 0101")
    frame = bytearray(tap.intercept())
    frame[{"kind": 0, "counter": 8, "payload": 12}[position]] ^= 0x01
    tap.inject(bytes(frame))
    thread = threading.Thread(target=_quiet_checkpoint, args=(alice,))
    thread.start()
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)  # kind and counter flips fail here...
        tap.forward()
        bob.checkpoint(timeout=2)  # ...a payload flip at the checkpoint
    tap.cut()
    thread.join(timeout=5)
    # A failed channel stays failed.
    with pytest.raises(ChannelError):
        bob.receive(timeout=0.1)


def _quiet_checkpoint(end: AuthenticatedChannel) -> None:
    try:
        end.checkpoint(timeout=0.5)
    except ChannelError:
        pass


def test_flipped_bit_in_checkpoint_tag_is_rejected() -> None:
    tap, alice, bob = _ends()
    alice.send(b"x")
    tap.forward()
    assert bob.receive(timeout=1) == b"x"
    thread = threading.Thread(target=_quiet_checkpoint, args=(alice,))
    thread.start()
    frame = bytearray(tap.intercept())
    frame[-1] ^= 0x80
    tap.inject(bytes(frame))
    with pytest.raises(ChannelError):
        bob.checkpoint(timeout=2)
    tap.cut()
    thread.join(timeout=5)


def test_replayed_message_is_rejected() -> None:
    tap, alice, bob = _ends()
    alice.send(b"once")
    frame = tap.forward()
    assert bob.receive(timeout=1) == b"once"
    tap.inject(frame)
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_message_replayed_from_an_earlier_block_fails_the_checkpoint() -> None:
    tap, alice, bob = _ends()
    alice.send(b"block one")
    old = tap.forward()
    assert bob.receive(timeout=1) == b"block one"
    thread = threading.Thread(target=_quiet_checkpoint, args=(alice,))
    thread.start()
    tap.forward()
    bob.checkpoint(timeout=2)
    tap.relay_to_alice()
    thread.join(timeout=5)
    # Next block: Eve replaces Alice's first message with the old one (same counter 0).
    alice.send(b"block two")
    tap.intercept()
    tap.inject(old)
    assert bob.receive(timeout=1) == b"block one"  # looks fine until the checkpoint...
    thread = threading.Thread(target=_quiet_checkpoint, args=(alice,))
    thread.start()
    tap.forward()
    with pytest.raises(ChannelError):
        bob.checkpoint(timeout=2)
    tap.cut()
    thread.join(timeout=5)


def test_reordered_messages_are_rejected() -> None:
    tap, alice, bob = _ends()
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
    tap, alice, bob = _ends()
    alice.send(b"one")
    alice.send(b"two")
    alice.send(b"three")
    tap.forward()
    tap.intercept()  # dropped
    tap.forward()
    assert bob.receive(timeout=1) == b"one"
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_dropped_last_message_is_detected_at_the_checkpoint() -> None:
    tap, alice, bob = _ends()
    alice.send(b"one")
    alice.send(b"two")
    tap.forward()
    tap.intercept()  # dropped: nothing follows it, so only the checkpoint can tell
    assert bob.receive(timeout=1) == b"one"
    thread = threading.Thread(target=_quiet_checkpoint, args=(alice,))
    thread.start()
    tap.forward()
    with pytest.raises(ChannelError):
        bob.checkpoint(timeout=2)
    tap.cut()
    thread.join(timeout=5)


def test_message_reflected_from_the_other_direction_is_rejected() -> None:
    a, b = InMemoryChannel.pair()
    alice = AuthenticatedChannel(a, AuthenticationKeyPool(PSK), Role.ALICE)
    bob = AuthenticatedChannel(b, AuthenticationKeyPool(PSK), Role.BOB)
    bob.send(b"from bob")
    a.send(a.receive(timeout=1))  # Eve reflects Bob's data frame back to Bob
    assert bob.receive(timeout=1) == b"from bob"
    thread = threading.Thread(target=_quiet_checkpoint, args=(bob,))
    thread.start()
    reflected_checkpoint = a.receive(timeout=2)  # and then Bob's own checkpoint
    a.send(reflected_checkpoint)
    thread.join(timeout=5)
    with pytest.raises(ChannelError):
        bob.receive(timeout=0.1)
    del alice


def test_forged_message_fails_the_checkpoint() -> None:
    tap, alice, bob = _ends()
    tap.inject(b"\x00" + bytes(8) + b"forged parity")
    assert bob.receive(timeout=1) == b"forged parity"
    thread = threading.Thread(target=_quiet_checkpoint, args=(alice,))
    thread.start()
    tap.forward()
    with pytest.raises(ChannelError):
        bob.checkpoint(timeout=2)
    tap.cut()
    thread.join(timeout=5)


def test_forged_checkpoint_without_the_key_is_rejected() -> None:
    tap, _alice, bob = _ends()
    tap.inject(b"\x01" + bytes(16) + os.urandom(16))
    with pytest.raises(ChannelError):
        bob.checkpoint(timeout=2)


def test_truncated_frame_is_rejected() -> None:
    tap, _alice, bob = _ends()
    tap.inject(b"\x00abc")
    with pytest.raises(ChannelError):
        bob.receive(timeout=1)


def test_forged_far_key_index_does_not_burn_the_pool() -> None:
    tap, _alice, bob = _ends()
    left = bob.pool.checkpoints_left(Role.ALICE)
    tap.inject(b"\x01" + (5).to_bytes(8, "big") + bytes(8) + bytes(16))
    with pytest.raises(ChannelError):
        bob.checkpoint(timeout=2)
    assert bob.pool.checkpoints_left(Role.ALICE) == left


def test_checkpoint_may_skip_keys_the_peer_burned_in_an_aborted_block() -> None:
    psk = os.urandom(512)
    pool_a, pool_b = AuthenticationKeyPool(psk), AuthenticationKeyPool(psk)
    a1, _b1 = InMemoryChannel.pair()
    aborted = AuthenticatedChannel(a1, pool_a, Role.ALICE)
    with pytest.raises(ChannelError):
        aborted.checkpoint(timeout=0.05)  # Bob never answered: Alice burned a key
    a2, b2 = InMemoryChannel.pair()
    alice = AuthenticatedChannel(a2, pool_a, Role.ALICE)
    bob = AuthenticatedChannel(b2, pool_b, Role.BOB)
    alice.send(b"next block")
    assert bob.receive(timeout=1) == b"next block"
    assert _checkpoint_both(alice, bob) == (None, None)
    assert pool_a.checkpoints_left(Role.ALICE) == pool_b.checkpoints_left(Role.ALICE)


def test_exhausted_pool_is_an_explicit_error() -> None:
    alice, bob = _pair(os.urandom(64))
    assert _checkpoint_both(alice, bob) == (None, None)
    with pytest.raises(AuthenticationKeyExhausted):
        alice.checkpoint(timeout=0.1)


def test_replenish_tops_up_both_directions_in_order() -> None:
    alice, bob = _pair(os.urandom(256))
    for _ in range(3):
        _checkpoint_both(alice, bob)
    pool = alice.pool
    assert pool.deficit == 6 * KEY_BYTES_PER_CHECKPOINT
    with pytest.raises(ValueError):
        pool.replenish(os.urandom(pool.deficit + 1))
    pool.replenish(os.urandom(4 * KEY_BYTES_PER_CHECKPOINT))
    assert pool.checkpoints_left(Role.ALICE) == 4
    assert pool.checkpoints_left(Role.BOB) == 2
    pool.replenish(os.urandom(pool.deficit))
    assert pool.deficit == 0


def test_replenished_pools_keep_both_ends_in_step() -> None:
    alice, bob = _pair(os.urandom(128))  # 2 checkpoints per direction
    for round_ in range(6):
        alice.send(b"a%d" % round_)
        assert bob.receive(timeout=1) == b"a%d" % round_
        assert _checkpoint_both(alice, bob) == (None, None)
        fresh = os.urandom(alice.pool.deficit)  # stands for the shared new secret key
        alice.pool.replenish(fresh)
        bob.pool.replenish(fresh)


def test_pool_rejects_odd_sized_psk() -> None:
    with pytest.raises(ValueError):
        AuthenticationKeyPool(bytes(100))


@settings(max_examples=40, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=5),
    victim=st.integers(min_value=0),
    byte=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_single_bit_flip_is_caught_before_the_checkpoint_passes(
    payloads: list[bytes], victim: int, byte: int, bit: int
) -> None:
    tap, alice, bob = _ends()
    for payload in payloads:
        alice.send(payload)
    frames = [tap.intercept() for _ in payloads]
    target = victim % len(frames)
    mutated = bytearray(frames[target])
    mutated[byte % len(mutated)] ^= 1 << bit
    frames[target] = bytes(mutated)
    for frame in frames:
        tap.inject(frame)
    thread = threading.Thread(target=_quiet_checkpoint, args=(alice,))
    thread.start()
    with pytest.raises(ChannelError):
        for _ in payloads:
            bob.receive(timeout=1)
        tap.forward()
        bob.checkpoint(timeout=2)
    tap.cut()
    thread.join(timeout=5)
