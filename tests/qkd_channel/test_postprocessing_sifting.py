"""Sifting and parameter estimation on synthetic records with known answers."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from qkd_channel.errors import ChannelError, EstimationAborted
from qkd_channel.link import SIGNAL, KeyDesign, simulate
from qkd_channel.link.presets import LAB_LINK_SYMMETRIC
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
from tests.qkd_channel.seeded import seeded

SOURCE = LAB_LINK_SYMMETRIC  # intensities 0.6 / 0.2 / 0 sent 50 / 25 / 25 % of the time


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


def _records(
    n: int, detect: float, qber: float, seed: int = 0, *, blind: bool = True
) -> tuple[AliceRecord, BobRecord]:
    """Records of ``n`` pulses with SOURCE's class mix and a flat error rate ``qber``.

    ``blind``: every class is detected with probability ``detect`` (what a photon-number
    splitter can show, and enough for sifting); otherwise a class of intensity ``k`` is
    detected with probability ``1 - e^{-eta k} + 1e-4``, ``eta`` chosen so that the signal
    class gets ``detect``, as over a lossy fibre.
    """
    rng = np.random.default_rng(seed)
    alice = AliceRecord(
        bits=rng.integers(0, 2, n, dtype=np.uint8),
        bases=rng.integers(0, 2, n, dtype=np.uint8),
        intensities=rng.choice(3, size=n, p=SOURCE.intensity_probabilities).astype(np.uint8),
    )
    if blind:
        chance = np.full(3, detect)
    else:
        mu = np.asarray(SOURCE.intensities)
        eta = -math.log(1.0 - detect) / mu[SIGNAL]
        chance = 1.0 - np.exp(-eta * mu) + 1e-4
    indices = np.flatnonzero(rng.random(n) < chance[alice.intensities]).astype(np.int64)
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


def test_signal_sampled_estimation_measures_the_qber_and_removes_the_sample() -> None:
    alice, bob = _records(400000, 0.3, 0.03, blind=False)
    settings = EstimationSettings(SOURCE, design=KeyDesign.SIGNAL_SAMPLED, sample_fraction=0.2)
    ea, eb = _estimate(alice, bob, settings)
    assert ea.qber == eb.qber
    assert 0.015 < ea.qber < 0.045
    assert ea.counts == eb.counts
    assert ea.bounds == eb.bounds
    assert ea.vacuum_events == 0.0  # this design does not count vacuum events
    # Key = signal-class Z bits minus the sample, identical positions at both ends.
    assert len(ea.key) == len(eb.key)
    assert ea.sample_size + len(ea.key) == int(ea.counts.sifted_z[SIGNAL])
    assert ea.sample_size == pytest.approx(0.2 * ea.counts.sifted_z[SIGNAL], abs=1)
    errors = np.count_nonzero(ea.key != eb.key) / len(ea.key)
    assert errors == pytest.approx(0.03, abs=0.01)


def test_efficient_estimation_keeps_every_key_basis_bit_and_tests_the_other_basis() -> None:
    alice, bob = _records(400000, 0.3, 0.03, blind=False)
    ea, eb = _estimate(alice, bob, EstimationSettings(SOURCE))
    assert ea.sample_size == eb.sample_size == 0
    assert ea.counts == eb.counts
    assert ea.bounds == eb.bounds
    # Key = every Z detection of every class; nothing sacrificed.
    assert len(ea.key) == len(eb.key) == int(sum(ea.counts.sifted_z))
    # The QBER estimate is the X basis's, where Bob disclosed his bits.
    x_errors = sum(ea.counts.errors_x) / sum(ea.counts.sifted_x)
    assert ea.qber == eb.qber == x_errors
    assert 0.02 < ea.qber < 0.04
    errors = np.count_nonzero(ea.key != eb.key) / len(ea.key)
    assert errors == pytest.approx(0.03, abs=0.005)


@pytest.mark.parametrize("design", list(KeyDesign))
def test_qber_above_threshold_aborts_both_ends(design: KeyDesign) -> None:
    alice, bob = _records(50000, 0.3, 0.2)
    ea, eb = _estimate(alice, bob, EstimationSettings(SOURCE, design=design))
    assert isinstance(ea, EstimationAborted)
    assert isinstance(eb, EstimationAborted)
    assert ea.qber > 0.11


def test_detections_blind_to_intensity_leave_no_single_photons() -> None:
    # Equal yields for every intensity class is what a photon-number-splitting attacker
    # would show; the decoy bound must certify no single-photon events at all.
    alice, bob = _records(400000, 0.3, 0.02)
    sampled, _ = _estimate(alice, bob, EstimationSettings(SOURCE, design=KeyDesign.SIGNAL_SAMPLED))
    assert isinstance(sampled, EstimationAborted)  # nothing certified: stop before Cascade
    # The efficient design also counts detections of vacuum pulses, whose bits nobody but
    # Alice can know: they are all the secret left. (This record is unphysical there: Bob
    # agrees with Alice on them, which no channel allows; a real one pays a 50 % QBER on
    # them in error correction.)
    efficient, _ = _estimate(alice, bob, EstimationSettings(SOURCE))
    assert efficient.single_photon_events == 0.0
    free = secret_key_length(efficient, leak_ec=0, leak_verify=128, epsilon_sec=1e-10)
    assert 0 < free < efficient.vacuum_events


@pytest.mark.parametrize("design", list(KeyDesign))
def test_nothing_certified_aborts_before_error_correction(design: KeyDesign) -> None:
    # Bob detects signal pulses only (an attacker blocking every weak pulse): neither a
    # single-photon nor a vacuum event can be certified, so both ends stop at once.
    alice, bob = _records(100000, 0.3, 0.02)
    on_signal = alice.intensities[bob.indices] == SIGNAL
    bob = BobRecord(bob.indices[on_signal], bob.bases[on_signal], bob.bits[on_signal])
    ea, eb = _estimate(alice, bob, EstimationSettings(SOURCE, design=design))
    assert isinstance(ea, EstimationAborted)
    assert isinstance(eb, EstimationAborted)
    assert "certify" in str(ea)


@pytest.mark.parametrize("design", list(KeyDesign))
def test_key_length_falls_bit_for_bit_with_disclosure(design: KeyDesign) -> None:
    run = simulate(LAB_LINK_SYMMETRIC, 2_000_000, **seeded(4))
    ea, eb = _estimate(run.alice, run.bob, EstimationSettings(LAB_LINK_SYMMETRIC, design=design))
    free = secret_key_length(ea, leak_ec=0, leak_verify=128, epsilon_sec=1e-10)
    assert 0 < free < len(ea.key)
    assert secret_key_length(ea, leak_ec=5000, leak_verify=128, epsilon_sec=1e-10) == free - 5000
    assert secret_key_length(ea, leak_ec=10**9, leak_verify=128, epsilon_sec=1e-10) == 0
    assert ea.phase_error_rate == eb.phase_error_rate < 0.5
