"""Sifting and parameter estimation on synthetic records with known answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from qkd_channel.errors import ChannelError, EstimationAborted
from qkd_channel.link import BRISTOL_CLAVIS2, GYS_2005, SIGNAL, simulate
from qkd_channel.link.records import AliceRecord, BobRecord
from qkd_channel.postprocessing.channel import ClassicalChannel, InMemoryChannel
from qkd_channel.postprocessing.estimation import (
    EstimationSettings,
    estimate_alice,
    estimate_bob,
    secret_key_length,
)
from qkd_channel.postprocessing.messages import Kind, Writer
from qkd_channel.postprocessing.sifting import sift_alice, sift_bob


def _both(
    alice: Callable[[ClassicalChannel], Any], bob: Callable[[ClassicalChannel], Any]
) -> tuple[Any, Any]:
    a, b = InMemoryChannel.pair()
    out: dict[str, Any] = {}

    def run_bob() -> None:
        try:
            out["bob"] = bob(b)
        except Exception as exc:  # handed back to the test thread
            out["bob"] = exc

    thread = threading.Thread(target=run_bob)
    thread.start()
    try:
        out["alice"] = alice(a)
    except Exception as exc:
        out["alice"] = exc
    thread.join(timeout=30)
    return out["alice"], out["bob"]


def _records(n: int, detect: float, qber: float, seed: int = 0) -> tuple[AliceRecord, BobRecord]:
    rng = np.random.default_rng(seed)
    alice = AliceRecord(
        bits=rng.integers(0, 2, n, dtype=np.uint8),
        bases=rng.integers(0, 2, n, dtype=np.uint8),
        intensities=rng.choice(3, size=n, p=[0.8, 0.1, 0.1]).astype(np.uint8),
    )
    indices = np.flatnonzero(rng.random(n) < detect).astype(np.int64)
    bases = rng.integers(0, 2, len(indices), dtype=np.uint8)
    bits = alice.bits[indices].copy()
    flips = rng.random(len(indices)) < qber
    bits[flips] ^= 1
    return alice, BobRecord(indices=indices, bases=bases, bits=bits)


def test_sifting_keeps_exactly_the_matching_bases() -> None:
    alice, bob = _records(20000, 0.3, 0.0)
    sa, sb = _both(
        lambda ch: sift_alice(ch, alice, timeout=5), lambda ch: sift_bob(ch, bob, timeout=5)
    )
    matched = alice.bases[bob.indices] == bob.bases
    assert len(sa) == len(sb) == int(matched.sum())
    assert np.array_equal(sa.bases, sb.bases)
    assert np.array_equal(sa.classes, sb.classes)
    assert np.array_equal(sa.classes, alice.intensities[bob.indices[matched]])
    assert np.array_equal(sa.bits, sb.bits)  # no channel errors in this record
    assert sa.detections == sb.detections == len(bob.indices)
    assert sa.detections_per_class is not None and sum(sa.detections_per_class) == len(bob.indices)
    assert sb.detections_per_class is None


@pytest.mark.parametrize(
    "indices",
    [
        pytest.param([5, 3], id="not-increasing"),
        pytest.param([1, 1], id="duplicate"),
        pytest.param([-1], id="negative"),
        pytest.param([1000], id="past-the-end"),
    ],
)
def test_alice_rejects_malformed_detections(indices: list[int]) -> None:
    alice, _ = _records(1000, 0.1, 0.0)
    a, b = InMemoryChannel.pair()
    values = np.array(indices, dtype=np.int64)
    b.send(Writer(Kind.DETECTIONS).int64s(values).bits(np.zeros(len(values), np.uint8)).build())
    with pytest.raises(ChannelError):
        sift_alice(a, alice, timeout=1)


def _estimate(alice: AliceRecord, bob: BobRecord, settings: EstimationSettings) -> tuple[Any, Any]:
    sa, sb = _both(
        lambda ch: sift_alice(ch, alice, timeout=5), lambda ch: sift_bob(ch, bob, timeout=5)
    )
    assert sa.detections_per_class is not None
    pulses = tuple(float(x) for x in np.bincount(alice.intensities, minlength=3))
    rng = np.random.default_rng(9)
    return _both(
        lambda ch: estimate_alice(
            ch,
            sa,
            settings,
            pulses=pulses,  # type: ignore[arg-type]
            clicks=sa.detections_per_class,
            rng=rng,
            timeout=5,
        ),
        lambda ch: estimate_bob(ch, sb, settings, timeout=5),
    )


def test_estimation_measures_the_qber_and_removes_the_sample() -> None:
    alice, bob = _records(200000, 0.3, 0.03)
    settings = EstimationSettings(GYS_2005, sample_fraction=0.2)
    ea, eb = _estimate(alice, bob, settings)
    assert ea.qber == eb.qber
    assert 0.015 < ea.qber < 0.045
    assert ea.counts == eb.counts
    assert ea.single_photon_events == eb.single_photon_events
    assert ea.phase_error_rate == eb.phase_error_rate
    # Key = signal-class Z bits minus the sample, identical positions at both ends.
    assert len(ea.key) == len(eb.key)
    assert ea.sample_size + len(ea.key) == int(ea.counts.sifted_z[SIGNAL])
    assert ea.sample_size == pytest.approx(0.2 * ea.counts.sifted_z[SIGNAL], abs=1)
    errors = np.count_nonzero(ea.key != eb.key) / len(ea.key)
    assert errors == pytest.approx(0.03, abs=0.01)


def test_qber_above_threshold_aborts_both_ends() -> None:
    alice, bob = _records(50000, 0.3, 0.2)
    ea, eb = _estimate(alice, bob, EstimationSettings(GYS_2005))
    assert isinstance(ea, EstimationAborted)
    assert isinstance(eb, EstimationAborted)
    assert ea.qber > 0.11


def test_detections_blind_to_intensity_leave_no_single_photons() -> None:
    # Equal yields for every intensity class is what a photon-number-splitting attacker
    # would show; the decoy bound must certify no single-photon events at all.
    alice, bob = _records(400000, 0.3, 0.02)
    ea, _ = _estimate(alice, bob, EstimationSettings(GYS_2005))
    assert ea.single_photon_events == 0.0
    assert secret_key_length(ea, leak_ec=0, leak_verify=128, epsilon_sec=1e-10) == 0


def test_key_length_falls_bit_for_bit_with_disclosure() -> None:
    link = replace(
        BRISTOL_CLAVIS2,
        detector_efficiency=0.9,
        dead_time_s=0.0,
        extra_loss_db=0.0,
        intensities=(0.6, 0.2, 0.0),
        intensity_probabilities=(0.5, 0.25, 0.25),
        misalignment_error=0.015,
    )
    run = simulate(link, 2_000_000, rng=np.random.default_rng(4))
    ea, eb = _estimate(run.alice, run.bob, EstimationSettings(link))
    free = secret_key_length(ea, leak_ec=0, leak_verify=128, epsilon_sec=1e-10)
    assert 0 < free < len(ea.key)
    assert secret_key_length(ea, leak_ec=5000, leak_verify=128, epsilon_sec=1e-10) == free - 5000
    assert secret_key_length(ea, leak_ec=10**9, leak_verify=128, epsilon_sec=1e-10) == 0
    assert ea.phase_error_rate == eb.phase_error_rate < 0.5
