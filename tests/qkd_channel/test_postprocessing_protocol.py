"""The whole post-processing, end to end, over authenticated in-memory channels."""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import pytest

from qkd_channel.errors import ChannelError, EstimationAborted, LinkAborted
from qkd_channel.link import KeyDesign, LinkRun, secret_length, simulate
from qkd_channel.link.eavesdroppers import InterceptResend
from qkd_channel.link.presets import LAB_LINK, LAB_LINK_SYMMETRIC
from qkd_channel.postprocessing.authentication import (
    AuthenticatedChannel,
    AuthenticationKeyPool,
    Role,
)
from qkd_channel.postprocessing.channel import InMemoryChannel
from qkd_channel.postprocessing.estimation import EstimationSettings
from qkd_channel.postprocessing.protocol import (
    BlockResult,
    PostProcessingConfig,
    run_alice,
    run_bob,
)
from tests.qkd_channel.seeded import seeded

CONFIG = PostProcessingConfig(EstimationSettings(LAB_LINK), timeout=20.0)
PULSES = 2_000_000


@pytest.fixture(scope="module")
def honest_run() -> LinkRun:
    return simulate(LAB_LINK, PULSES, **seeded(21))


def _channels(psk: bytes) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    a, b = InMemoryChannel.pair()
    return (
        AuthenticatedChannel(a, AuthenticationKeyPool(psk), Role.ALICE),
        AuthenticatedChannel(b, AuthenticationKeyPool(psk), Role.BOB),
    )


def _run_block(
    run: LinkRun,
    alice: AuthenticatedChannel,
    bob: AuthenticatedChannel,
    config: PostProcessingConfig = CONFIG,
    bob_config: PostProcessingConfig | None = None,
) -> tuple[Any, Any]:
    out: dict[str, Any] = {}

    def bob_side() -> None:
        try:
            out["bob"] = run_bob(bob, run.bob, bob_config or config)
        except Exception as exc:  # handed back to the test thread
            out["bob"] = exc

    thread = threading.Thread(target=bob_side)
    thread.start()
    try:
        out["alice"] = run_alice(alice, run.alice, config)
    except Exception as exc:
        out["alice"] = exc
    thread.join(timeout=60)
    assert not thread.is_alive()
    return out["alice"], out["bob"]


def test_honest_link_gives_identical_keys_and_consistent_stats(honest_run: LinkRun) -> None:
    alice_ch, bob_ch = _channels(os.urandom(1024))
    alice, bob = _run_block(honest_run, alice_ch, bob_ch)
    assert isinstance(alice, BlockResult), alice
    assert isinstance(bob, BlockResult), bob
    assert alice.key == bob.key
    assert len(alice.key) > 1000
    a, b = alice.stats, bob.stats
    assert a.block_id == b.block_id
    assert (a.qber, a.disclosed_ec_bits, a.secret_bits) == (
        b.qber,
        b.disclosed_ec_bits,
        b.secret_bits,
    )
    assert 0.0 < a.qber < 0.04
    assert a.secret_bits < a.reconciled_bits < a.sifted_bits < a.detections
    assert (
        a.secret_bits == a.auth_key_bits + a.delivered_bits == 8 * len(alice.key) + a.auth_key_bits
    )
    # Cascade's disclosure is charged in full; near n h(QBER), far below the key length.
    assert 0.7 < a.efficiency < 1.5  # against the *sampled* QBER, itself an estimate
    assert 0 < a.disclosed_ec_bits < a.reconciled_bits // 5
    # The pools were topped up identically, so the next block authenticates.
    assert alice_ch.pool.deficit == bob_ch.pool.deficit == 0
    assert "key=" not in repr(alice)
    # Efficient BB84: nothing sacrificed, every Z detection is key, the QBER estimate is
    # the X basis's; the block is (eps_sec + eps_cor)-secure.
    assert a.design is KeyDesign.EFFICIENT
    assert a.sample_bits == 0
    assert a.single_photon_events > 0.5 * a.reconciled_bits
    assert a.epsilon == a.epsilon_sec + a.epsilon_cor < 1.01e-10


def test_the_key_is_what_the_bound_allows_for_the_blocks_own_counts(honest_run: LinkRun) -> None:
    # No key left between the theory and the code: the delivered length is Lim et al.'s
    # eq. (1) for this block's bounds and this block's Cascade disclosure, short only by
    # the verification tag (128 bits where the bound charges log2(2 / eps_cor)) and the
    # rounding to whole bytes.
    alice, _ = _run_block(honest_run, *_channels(os.urandom(512)))
    assert isinstance(alice, BlockResult), alice
    stats = alice.stats
    allowed = secret_length(
        stats.bounds,
        leak_ec=stats.disclosed_ec_bits,
        leak_verify=math.log2(2.0 / stats.epsilon_cor),
        epsilon_sec=stats.epsilon_sec,
    )
    assert allowed - 128 - 8 < stats.secret_bits <= allowed
    assert stats.secret_bits > 0.9 * allowed


def test_the_first_design_still_runs_for_comparison() -> None:
    run = simulate(LAB_LINK_SYMMETRIC, PULSES, **seeded(24))
    config = PostProcessingConfig(
        EstimationSettings(LAB_LINK_SYMMETRIC, design=KeyDesign.SIGNAL_SAMPLED), timeout=20.0
    )
    alice, bob = _run_block(run, *_channels(os.urandom(512)), config)
    assert isinstance(alice, BlockResult), alice
    assert isinstance(bob, BlockResult), bob
    assert alice.key == bob.key
    assert alice.stats.design is KeyDesign.SIGNAL_SAMPLED
    assert alice.stats.sample_bits > 0 and alice.stats.vacuum_events == 0.0


def test_ends_configured_for_different_designs_stop_at_once(honest_run: LinkRun) -> None:
    sampled = PostProcessingConfig(
        EstimationSettings(LAB_LINK, design=KeyDesign.SIGNAL_SAMPLED), timeout=5.0
    )
    alice, bob = _run_block(honest_run, *_channels(os.urandom(512)), CONFIG, sampled)
    assert isinstance(bob, ChannelError)
    assert isinstance(alice, (ChannelError, LinkAborted))


def test_consecutive_blocks_produce_fresh_keys(honest_run: LinkRun) -> None:
    alice_ch, bob_ch = _channels(os.urandom(512))
    first, _ = _run_block(honest_run, alice_ch, bob_ch)
    second, second_bob = _run_block(honest_run, alice_ch, bob_ch)
    assert isinstance(first, BlockResult) and isinstance(second, BlockResult)
    assert isinstance(second_bob, BlockResult)
    assert second.key == second_bob.key
    assert second.key != first.key  # fresh sample, hash seeds and Toeplitz seed


def test_intercept_resend_aborts_and_delivers_no_key() -> None:
    run = simulate(
        LAB_LINK,
        PULSES,
        **seeded(22),
        eavesdropper=InterceptResend(1.0),
    )
    alice, bob = _run_block(run, *_channels(os.urandom(512)))
    assert isinstance(alice, EstimationAborted)
    assert isinstance(bob, EstimationAborted)
    assert alice.qber > 0.2


def test_partial_intercept_resend_is_caught_by_the_phase_error_bound() -> None:
    # 30 % interception keeps the QBER near 9 %, under the 11 % abort threshold, but the
    # certified secrecy cannot pay for Cascade's disclosure: no key is produced either way.
    run = simulate(
        LAB_LINK,
        PULSES,
        **seeded(23),
        eavesdropper=InterceptResend(0.3),
    )
    alice, bob = _run_block(run, *_channels(os.urandom(512)))
    assert isinstance(alice, LinkAborted)
    assert isinstance(bob, LinkAborted)


def test_man_in_the_middle_flipping_a_parity_stops_both_ends(honest_run: LinkRun) -> None:
    psk = os.urandom(512)
    a_raw, eve_a = InMemoryChannel.pair()
    eve_b, b_raw = InMemoryChannel.pair()
    alice_ch = AuthenticatedChannel(a_raw, AuthenticationKeyPool(psk), Role.ALICE)
    bob_ch = AuthenticatedChannel(b_raw, AuthenticationKeyPool(psk), Role.BOB)
    stop = threading.Event()

    def relay(src: InMemoryChannel, dst: InMemoryChannel, tamper_at: int | None) -> None:
        count = 0
        while not stop.is_set():
            try:
                frame = src.receive(timeout=0.1)
            except ChannelError:
                if src._peer_closed:  # the end behind it hung up
                    dst.close()
                    return
                continue
            count += 1
            if count == tamper_at:
                frame = frame[:-1] + bytes([frame[-1] ^ 1])
            try:
                dst.send(frame)
            except ChannelError:
                return

    relays = [
        threading.Thread(target=relay, args=(eve_a, eve_b, 6), daemon=True),  # Alice -> Bob
        threading.Thread(target=relay, args=(eve_b, eve_a, None), daemon=True),
    ]
    for thread in relays:
        thread.start()
    alice, bob = _run_block(honest_run, alice_ch, bob_ch)
    stop.set()
    for thread in relays:
        thread.join(timeout=5)
    assert isinstance(alice, (ChannelError, LinkAborted)), alice
    assert isinstance(bob, (ChannelError, LinkAborted)), bob


def test_drivers_refuse_an_unauthenticated_channel(honest_run: LinkRun) -> None:
    a, _ = InMemoryChannel.pair()
    with pytest.raises(TypeError):
        run_alice(a, honest_run.alice, CONFIG)  # type: ignore[arg-type]


def test_driver_refuses_the_wrong_role(honest_run: LinkRun) -> None:
    alice_ch, _ = _channels(os.urandom(128))
    with pytest.raises(ValueError):
        run_bob(alice_ch, honest_run.bob, CONFIG)
