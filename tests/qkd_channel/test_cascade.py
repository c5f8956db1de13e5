"""Cascade over the in-memory classical channel: efficiency, correctness, robustness."""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkd_channel.errors import ChannelError, QKDError
from qkd_channel.postprocessing import cascade_wire as wire
from qkd_channel.postprocessing.cascade import (
    CascadeConfig,
    CascadeStats,
    binary_entropy,
    pass_layout,
    reconcile_alice,
    reconcile_bob,
)
from qkd_channel.postprocessing.channel import InMemoryChannel
from qkd_channel.postprocessing.verification import key_tag

FAST = CascadeConfig(timeout=10.0)


def noisy_pair(
    n: int, qber: float, seed: int, *, exact: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    if exact:
        flips = rng.choice(n, round(n * qber), replace=False)
    else:
        flips = np.flatnonzero(rng.random(n) < qber)
    bob[flips] ^= 1
    return alice, bob


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def reconcile(
    alice: np.ndarray, bob: np.ndarray, qber: float, seed: int, config: CascadeConfig = FAST
) -> tuple[np.ndarray, CascadeStats, CascadeStats]:
    a_end, b_end = InMemoryChannel.pair()
    thread, box = in_thread(lambda: reconcile_alice(a_end, alice, qber=qber, config=config))
    corrected, bob_stats = reconcile_bob(b_end, bob, qber=qber, seed=seed, config=config)
    thread.join(timeout=30)
    assert "error" not in box, box.get("error")
    return corrected, box["result"], bob_stats


@pytest.mark.parametrize(
    ("n", "qber", "runs", "target"),
    [
        pytest.param(10_000, 0.01, 4, 1.10, id="10k-1%"),
        pytest.param(10_000, 0.02, 4, 1.10, id="10k-2%"),
        pytest.param(10_000, 0.05, 4, 1.10, id="10k-5%"),
        pytest.param(100_000, 0.05, 1, 1.07, id="100k-5%"),
    ],
)
def test_efficiency_meets_issue_targets(n: int, qber: float, runs: int, target: float) -> None:
    efficiencies = []
    for run in range(runs):
        alice, bob = noisy_pair(n, qber, seed=run)
        corrected, alice_stats, bob_stats = reconcile(alice, bob, qber, seed=run)
        assert np.array_equal(corrected, alice)
        assert alice_stats.disclosed_bits == bob_stats.disclosed_bits
        efficiencies.append(bob_stats.efficiency)
    assert float(np.mean(efficiencies)) <= target


def test_efficiency_with_binomial_errors_stays_close_to_target() -> None:
    # The protocol only knows the estimated QBER; here the true error count is random.
    efficiencies = []
    for run in range(3):
        alice, bob = noisy_pair(10_000, 0.02, seed=100 + run, exact=False)
        corrected, _, stats = reconcile(alice, bob, 0.02, seed=run)
        assert np.array_equal(corrected, alice)
        efficiencies.append(stats.efficiency)
    assert float(np.mean(efficiencies)) <= 1.15


def test_stats_account_for_every_bit_on_the_wire() -> None:
    alice, bob = noisy_pair(5_000, 0.03, seed=7)
    corrected, alice_stats, bob_stats = reconcile(alice, bob, 0.03, seed=7)
    assert np.array_equal(corrected, alice)
    assert bob_stats.corrected_bits == round(5_000 * 0.03)
    assert alice_stats.corrected_bits is None
    assert alice_stats.exchanges == bob_stats.exchanges
    assert alice_stats.messages_sent == bob_stats.messages_received
    assert alice_stats.bytes_sent == bob_stats.bytes_received
    assert alice_stats.bytes_received == bob_stats.bytes_sent
    # Alice's answers carry exactly the disclosed bits: 5-byte header + packed bits each.
    assert alice_stats.bytes_sent >= alice_stats.disclosed_bits / 8
    assert alice_stats.seed == bob_stats.seed == 7
    assert alice_stats.block_sizes == bob_stats.block_sizes
    assert bob_stats.efficiency == pytest.approx(
        bob_stats.disclosed_bits / (5_000 * binary_entropy(0.03))
    )


class Recording:
    """A channel end that keeps a copy of every message it sends."""

    def __init__(self, inner: InMemoryChannel) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    def send(self, message: bytes) -> None:
        self.sent.append(bytes(message))
        self.inner.send(message)

    def receive(self, timeout: float | None = None) -> bytes:
        return self.inner.receive(timeout)

    def close(self) -> None:
        self.inner.close()


def recorded_run(
    n: int, qber: float, seed: int
) -> tuple[np.ndarray, np.ndarray, CascadeStats, Recording, Recording]:
    alice, bob = noisy_pair(n, qber, seed=seed)
    a_inner, b_inner = InMemoryChannel.pair()
    a_end, b_end = Recording(a_inner), Recording(b_inner)
    thread, box = in_thread(lambda: reconcile_alice(a_end, alice, qber=qber, config=FAST))
    corrected, stats = reconcile_bob(b_end, bob, qber=qber, seed=seed, config=FAST)
    thread.join(timeout=30)
    assert "error" not in box, box.get("error")
    return alice, corrected, stats, a_end, b_end


def test_disclosed_bits_are_exactly_the_parities_alice_sent() -> None:
    alice, corrected, stats, a_end, _ = recorded_run(20_000, 0.04, seed=11)
    assert np.array_equal(corrected, alice)
    answers = [m for m in a_end.sent if m[:1] == wire.MessageType.PARITY.value]
    assert len(answers) == stats.exchanges
    assert sum(int.from_bytes(m[1:5], "little") for m in answers) == stats.disclosed_bits


def test_no_sub_block_parity_is_asked_for_twice() -> None:
    # The tree cache answers every node already revealed (or implied by parent xor
    # sibling), even when a block is searched again after a cascade fix.
    _, _, stats, _, b_end = recorded_run(20_000, 0.05, seed=12)
    queries = [m for m in b_end.sent if m[:1] == wire.MessageType.QUERY.value]
    ranges: list[tuple[int, int, int]] = []
    for message in queries:
        query = wire.decode_query(message, key_bits=20_000, passes_started=len(stats.block_sizes))
        ranges += zip(
            query.passes.tolist(), query.starts.tolist(), query.ends.tolist(), strict=True
        )
    assert len(ranges) == len(set(ranges))
    assert stats.corrected_bits == round(20_000 * 0.05)


def test_large_keys_need_few_round_trips() -> None:
    # Searches of all passes run in lock-step and the pass-2 blocks are small enough for
    # many chains of cascade fixes to run at once: ~150 round trips for 10^5 bits at 2 %
    # (with opt. (8)'s 512-bit pass-2 blocks ~700; ~900 in the implementation of 012313d).
    alice, bob = noisy_pair(100_000, 0.02, seed=5)
    corrected, _, stats = reconcile(alice, bob, 0.02, seed=5)
    assert np.array_equal(corrected, alice)
    assert stats.exchanges <= 250
    assert stats.efficiency <= 1.07


def test_inputs_are_not_modified() -> None:
    alice, bob = noisy_pair(2_000, 0.05, seed=3)
    alice_before, bob_before = alice.copy(), bob.copy()
    corrected, _, _ = reconcile(alice, bob, 0.05, seed=3)
    assert np.array_equal(alice, alice_before)
    assert np.array_equal(bob, bob_before)
    assert np.array_equal(corrected, alice)


def test_thousand_runs_leave_no_error_past_verification_and_never_add_one() -> None:
    """Cascade alone may leave a mismatch (rarely); every fix removes a real error, and the
    verification hash that follows catches whatever is left: zero residual errors after
    verification in 1,000 runs (the issue's requirement)."""
    residual_runs = 0
    runs = 1_000
    for run in range(runs):
        alice, bob = noisy_pair(1_000, 0.03, seed=10_000 + run, exact=False)
        before = int(np.count_nonzero(alice != bob))
        corrected, _, stats = reconcile(alice, bob, 0.03, seed=run)
        after = int(np.count_nonzero(alice != corrected))
        assert after == before - (stats.corrected_bits or 0)
        hash_key = secrets.token_bytes(32)
        if after:
            residual_runs += 1
            # What is left is invisible to Cascade (even in every block it checked), so
            # only the verification hash can catch it; it is never odd here.
            assert after % 2 == 0
            assert key_tag(hash_key, corrected) != key_tag(hash_key, alice)
        else:
            assert key_tag(hash_key, corrected) == key_tag(hash_key, alice)
    assert residual_runs <= 10


def block_parities_of(diff: np.ndarray, stats: CascadeStats) -> list[np.ndarray]:
    out = []
    for index, size in enumerate(stats.block_sizes):
        perm, edges = pass_layout(stats.seed, index, diff.size, size)
        prefix = np.concatenate(([0], np.cumsum(diff[perm]) & 1)).astype(np.int64)
        out.append(prefix[edges[1:]] ^ prefix[edges[:-1]])
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 600),
    qber=st.floats(0.0, 0.2),
    error_rate=st.floats(0.0, 0.3),
    data_seed=st.integers(0, 2**32 - 1),
    seed=st.integers(0, 2**64 - 1),
)
def test_property_any_remaining_difference_is_even_in_every_block(
    n: int, qber: float, error_rate: float, data_seed: int, seed: int
) -> None:
    alice, bob = noisy_pair(n, error_rate, data_seed, exact=False)
    before = int(np.count_nonzero(alice != bob))
    corrected, alice_stats, bob_stats = reconcile(alice, bob, qber, seed=seed)
    diff = (alice ^ corrected).astype(np.uint8)
    # Bob differs from Alice only by a pattern every disclosed block parity misses.
    for parities in block_parities_of(diff, bob_stats):
        assert not parities.any()
    assert int(diff.sum()) == before - (bob_stats.corrected_bits or 0)
    assert alice_stats.disclosed_bits == bob_stats.disclosed_bits
    blocks = [-(-n // size) for size in bob_stats.block_sizes]
    # Every pass's top-level parities cross the wire (pass 2+ minus the inferred last one).
    assert bob_stats.disclosed_bits >= blocks[0] + sum(b - 1 for b in blocks[1:])
    assert bob_stats.disclosed_bits <= sum(blocks) + (bob_stats.corrected_bits or 0) * max(
        1, math.ceil(math.log2(n))
    ) * len(blocks)


# -- robustness -------------------------------------------------------------------------


def test_key_length_mismatch_aborts_both_sides() -> None:
    a_end, b_end = InMemoryChannel.pair()
    alice = np.zeros(100, dtype=np.uint8)
    thread, box = in_thread(lambda: reconcile_alice(a_end, alice, qber=0.02, config=FAST))
    with pytest.raises(ChannelError, match="key_length"):
        reconcile_bob(b_end, np.zeros(101, dtype=np.uint8), qber=0.02, seed=1, config=FAST)
    thread.join(timeout=10)
    assert isinstance(box.get("error"), ChannelError)


def test_seed_mismatch_with_pre_agreed_seed_aborts() -> None:
    a_end, b_end = InMemoryChannel.pair()
    key = np.zeros(64, dtype=np.uint8)
    thread, box = in_thread(lambda: reconcile_alice(a_end, key, qber=0.02, seed=5, config=FAST))
    with pytest.raises(ChannelError, match="seed"):
        reconcile_bob(b_end, key, qber=0.02, seed=6, config=FAST)
    thread.join(timeout=10)
    assert isinstance(box.get("error"), ChannelError)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"Z", id="unknown-type"),
        pytest.param(b"Q\x01\x00\x00\x00", id="truncated-query"),
        pytest.param(b"D", id="done-before-start"),
        pytest.param(wire.encode_start(64, 1, 2)[:-1], id="short-start"),
    ],
)
def test_alice_rejects_malformed_first_message(message: bytes) -> None:
    a_end, b_end = InMemoryChannel.pair()
    key = np.zeros(64, dtype=np.uint8)
    thread, box = in_thread(lambda: reconcile_alice(a_end, key, qber=0.02, config=FAST))
    b_end.send(message)
    thread.join(timeout=10)
    assert isinstance(box.get("error"), ChannelError)
    assert b_end.receive(timeout=5)[:1] == wire.MessageType.ABORT.value


@pytest.mark.parametrize(
    "query",
    [
        pytest.param((np.array([1]), np.array([0]), np.array([4])), id="pass-not-started"),
        pytest.param((np.array([0]), np.array([5]), np.array([5])), id="empty-range"),
        pytest.param((np.array([0]), np.array([0]), np.array([65])), id="past-the-end"),
    ],
)
def test_alice_rejects_out_of_range_queries(
    query: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    a_end, b_end = InMemoryChannel.pair()
    key = np.ones(64, dtype=np.uint8)
    thread, box = in_thread(lambda: reconcile_alice(a_end, key, qber=0.02, config=FAST))
    b_end.send(wire.encode_start(64, 1, 2))
    b_end.send(wire.encode_pass(0, 8, omit_last=False))
    assert len(wire.decode_parities(b_end.receive(timeout=5), 8)) == 8
    b_end.send(wire.encode_query(*query))
    thread.join(timeout=10)
    assert isinstance(box.get("error"), ChannelError)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"R\x05\x00\x00\x00\x00", id="wrong-count"),
        pytest.param(b"Q\x00\x00\x00\x00", id="wrong-type"),
        pytest.param(wire.encode_abort(wire.AbortReason.MALFORMED), id="peer-abort"),
    ],
)
def test_bob_rejects_bad_answer(reply: bytes) -> None:
    a_end, b_end = InMemoryChannel.pair()
    key = np.zeros(64, dtype=np.uint8)
    thread, box = in_thread(lambda: reconcile_bob(b_end, key, qber=0.05, seed=1, config=FAST))
    assert a_end.receive(timeout=5)[:1] == wire.MessageType.START.value
    a_end.receive(timeout=5)  # first PASS request
    a_end.send(reply)
    thread.join(timeout=10)
    assert isinstance(box.get("error"), ChannelError)


def test_silent_peer_times_out_instead_of_hanging() -> None:
    _, b_end = InMemoryChannel.pair()
    with pytest.raises(ChannelError):
        reconcile_bob(
            b_end, np.zeros(64, np.uint8), qber=0.02, seed=1, config=CascadeConfig(timeout=0.2)
        )


def test_padding_bits_of_an_answer_must_be_zero() -> None:
    with pytest.raises(ChannelError):
        wire.decode_parities(b"R\x03\x00\x00\x00\xff", 3)
    assert wire.decode_parities(b"R\x03\x00\x00\x00\xa0", 3).tolist() == [1, 0, 1]


@given(st.binary(max_size=64))
def test_wire_decoders_only_raise_channel_error(data: bytes) -> None:
    for decode in (
        wire.message_type,
        wire.decode_start,
        wire.decode_pass,
        lambda m: wire.decode_query(m, key_bits=1000, passes_started=3),
        lambda m: wire.decode_parities(m, 5),
    ):
        try:
            decode(data)
        except ChannelError:
            pass
    assert isinstance(wire.decode_abort(data), str)


@pytest.mark.parametrize(
    ("key", "qber"),
    [
        pytest.param(np.array([0, 2, 1]), 0.02, id="not-bits"),
        pytest.param(np.zeros((2, 2), np.uint8), 0.02, id="not-1d"),
        pytest.param(np.zeros(0, np.uint8), 0.02, id="empty"),
        pytest.param(np.zeros(8, np.uint8), 0.5, id="qber-too-high"),
        pytest.param(np.zeros(8, np.uint8), -0.1, id="qber-negative"),
    ],
)
def test_bad_arguments_raise_value_error(key: np.ndarray, qber: float) -> None:
    a_end, _ = InMemoryChannel.pair()
    with pytest.raises(ValueError):
        reconcile_bob(a_end, key, qber=qber, seed=1)


def test_config_schedule_follows_the_qber_and_never_exceeds_half_the_key() -> None:
    sizes = CascadeConfig().block_sizes(10_000, 0.02)
    assert sizes[:3] == (64, 128, 4096)
    assert sizes[3:] == (5_000,) * 11
    assert CascadeConfig().block_sizes(10, 0.0) == (5,) * 14
    # Pass 2 is twice pass 1 but at least 64 bits (fewer round trips than opt. (8)).
    assert CascadeConfig().block_sizes(100_000, 0.05)[:2] == (16, 64)
    assert CascadeConfig().block_sizes(100_000, 0.01)[:2] == (128, 256)
    assert CascadeConfig(second_block_factor=8).block_sizes(100_000, 0.02)[:2] == (64, 512)
    for bad in ({"passes": 0}, {"second_block_factor": 0}, {"timeout": 0.0}):
        with pytest.raises(ValueError):
            CascadeConfig(**bad)


def test_errors_are_qkd_errors() -> None:
    assert issubclass(ChannelError, QKDError)


def test_contradictory_parities_stop_both_ends_instead_of_looping() -> None:
    # A man in the middle flips one top-level parity of Alice's first answer; every later
    # answer is Alice's true one. No key has those parities: Bob must give up (the
    # tampering itself is caught by authentication only at the next checkpoint).
    alice, bob = noisy_pair(20_000, 0.02, seed=3)
    a_end, eve_a = InMemoryChannel.pair()
    eve_b, b_end = InMemoryChannel.pair()
    flipped = threading.Event()

    def relay(src: InMemoryChannel, dst: InMemoryChannel, tamper: bool) -> None:
        while True:
            try:
                message = src.receive(timeout=15)
            except ChannelError:
                dst.close()
                return
            if tamper and not flipped.is_set() and message[:1] == wire.MessageType.PARITY.value:
                flipped.set()  # byte 5 opens the packed bits: flip block 0's parity
                message = message[:5] + bytes([message[5] ^ 0x80]) + message[6:]
            dst.send(message)

    for args in ((eve_a, eve_b, True), (eve_b, eve_a, False)):
        threading.Thread(target=relay, args=args, daemon=True).start()
    alice_thread, alice_box = in_thread(
        lambda: reconcile_alice(a_end, alice, qber=0.02, config=FAST)
    )
    bob_thread, bob_box = in_thread(
        lambda: reconcile_bob(b_end, bob, qber=0.02, seed=5, config=FAST)
    )
    bob_thread.join(timeout=20)
    alice_thread.join(timeout=20)
    assert not bob_thread.is_alive(), "Bob kept correcting against contradictory parities"
    assert flipped.is_set()
    assert "contradict" in str(bob_box.get("error"))
    assert isinstance(alice_box.get("error"), ChannelError)
