"""The photon-level simulation agrees with the analytic model and keeps its contracts."""

import inspect
import math
import os
from dataclasses import replace

import numpy as np
import pytest

from qkd_channel.errors import LinkParameterError
from qkd_channel.link import (
    GYS_2005,
    LinkParameters,
    LinkRun,
    bristol_clavis2,
    count_run,
    estimate_key_rate,
    expected_observation,
    secret_key_rate,
    simulate,
)
from qkd_channel.link.choices import categorical, uniform_bits
from tests.qkd_channel.seeded import seeded

SIGMAS = 4.5  # per comparison; ~7e-6 two-sided false-alarm probability each


def binomial_z(successes: float, trials: float, p: float) -> float:
    return (successes - trials * p) / math.sqrt(trials * p * (1 - p))


# A link with plenty of decoy statistics, so a few million pulses suffice.
BUSY = replace(
    GYS_2005,
    detector_efficiency=0.1,
    intensities=(0.5, 0.1, 0.0),
    intensity_probabilities=(0.5, 0.4, 0.1),
    dark_count_probability=2e-4,
).at_total_loss(6.0)


@pytest.mark.parametrize(
    ("link", "n_pulses"),
    [
        pytest.param(BUSY, 3_000_000, id="busy-6dB"),
        pytest.param(bristol_clavis2(4.0), 3_000_000, id="bristol-4dB-dead-time"),
        pytest.param(GYS_2005.at_length(25.0), 4_000_000, id="gys-25km"),
    ],
)
def test_measured_gains_and_qbers_match_the_model(link: LinkParameters, n_pulses: int) -> None:
    run = simulate(link, n_pulses, **seeded(20261123))
    counts = count_run(run)
    expected = expected_observation(link)
    for k in range(3):
        if counts.pulses[k] * expected.gains[k] < 30:
            continue  # too few events for a normal approximation
        assert abs(binomial_z(counts.clicks[k], counts.pulses[k], expected.gains[k])) < SIGMAS
        for sifted, errors, qber in (
            (counts.sifted_z[k], counts.errors_z[k], expected.qber_z[k]),
            (counts.sifted_x[k], counts.errors_x[k], expected.qber_x[k]),
        ):
            assert abs(binomial_z(errors, sifted, qber)) < SIGMAS
    # sifting: Z-basis share of clicks is p_Z^2
    p_zz = link.z_basis_probability**2
    assert abs(binomial_z(sum(counts.sifted_z), sum(counts.clicks), p_zz)) < SIGMAS


def test_class_and_basis_frequencies_follow_the_parameters() -> None:
    link = replace(BUSY, z_basis_probability=0.8)
    run = simulate(link, 1_000_000, **seeded(1))
    n = run.n_pulses
    for k, p in enumerate(link.intensity_probabilities):
        assert abs(binomial_z(float(np.sum(run.alice.intensities == k)), n, p)) < SIGMAS
    assert abs(binomial_z(float(np.sum(run.alice.bases == 0)), n, 0.8)) < SIGMAS
    assert abs(binomial_z(float(np.sum(run.bob.bases == 0)), run.bob.indices.size, 0.8)) < SIGMAS
    assert abs(binomial_z(float(np.sum(run.alice.bits)), n, 0.5)) < SIGMAS


def test_run_records_have_the_documented_shape() -> None:
    link = bristol_clavis2(4.0)
    run = simulate(
        link,
        200_000,
        **seeded(3),
        chunk_size=65_536,
    )
    assert run.n_pulses == 200_000
    assert run.duration_s == pytest.approx(200_000 / link.pulse_rate_hz)
    for array in (run.alice.bits, run.alice.bases, run.alice.intensities):
        assert array.dtype == np.uint8 and array.size == 200_000
    assert run.bob.indices.dtype == np.int64
    assert run.bob.bases.dtype == np.uint8 and run.bob.bits.dtype == np.uint8
    assert set(np.unique(run.bob.bits)) <= {0, 1}
    assert np.all(np.diff(run.bob.indices) > link.dead_time_pulses)  # dead time respected


def test_dead_time_spans_chunk_boundaries() -> None:
    link = bristol_clavis2(0.0)
    run = simulate(
        link,
        300_000,
        **seeded(4),
        chunk_size=1_000,
    )
    assert np.all(np.diff(run.bob.indices) > link.dead_time_pulses)


def test_seeded_runs_are_reproducible() -> None:
    first = simulate(BUSY, 100_000, **seeded(5))
    second = simulate(BUSY, 100_000, **seeded(5))
    assert np.array_equal(first.bob.indices, second.bob.indices)
    assert np.array_equal(first.bob.bits, second.bob.bits)
    assert np.array_equal(first.alice.bits, second.alice.bits)


def test_estimated_rate_from_a_run_matches_the_model() -> None:
    run = simulate(BUSY, 3_000_000, **seeded(6))
    measured = estimate_key_rate(run, BUSY)
    model = secret_key_rate(BUSY)
    # Y1 rests on thousands of decoy clicks: tight. e1 rests on a few dozen X-basis decoy
    # errors, so it is compared within its own binomial spread.
    assert measured.bounds.y1_lower == pytest.approx(model.bounds.y1_lower, rel=0.05)
    counts = count_run(run)
    expected = expected_observation(BUSY)
    nu = BUSY.intensities[1]
    e_nu = expected.qber_x[1]
    # e1 ~ E_nu * Q_nu * e^nu / (nu * Y1): propagate the binomial spread of E_nu.
    spread = math.sqrt(e_nu * (1 - e_nu) / counts.sifted_x[1]) * (
        expected.gains[1] * math.exp(nu) / (nu * model.bounds.y1_lower)
    )
    assert abs(measured.bounds.e1_upper - model.bounds.e1_upper) < SIGMAS * spread
    assert measured.per_pulse > 0


def test_zero_pulses_give_an_empty_run() -> None:
    run = simulate(BUSY, 0, **seeded(0))
    assert run.bob.indices.size == 0 and run.alice.bits.size == 0


@pytest.mark.parametrize(("n_pulses", "chunk_size"), [(-1, 1024), (10, 0)])
def test_bad_arguments_are_rejected(n_pulses: int, chunk_size: int) -> None:
    with pytest.raises(LinkParameterError):
        simulate(
            BUSY,
            n_pulses,
            **seeded(0),
            chunk_size=chunk_size,
        )


def test_the_parties_choices_come_from_random_bytes_and_the_channel_from_rng() -> None:
    # One chunk: Alice's choices are the first bytes drawn, before any of Bob's.
    def choices(physics: int, parties: int) -> LinkRun:
        return simulate(
            BUSY,
            50_000,
            rng=np.random.default_rng(physics),
            random_bytes=np.random.default_rng([parties, 1]).bytes,
        )

    base, other_channel, other_parties = choices(7, 8), choices(9, 8), choices(7, 10)
    for record in ("bits", "bases", "intensities"):
        assert np.array_equal(getattr(base.alice, record), getattr(other_channel.alice, record))
        assert not np.array_equal(getattr(base.alice, record), getattr(other_parties.alice, record))
    assert not np.array_equal(base.bob.indices, other_channel.bob.indices)


def test_the_default_source_of_the_parties_choices_is_the_os_generator() -> None:
    default = inspect.signature(simulate).parameters["random_bytes"].default
    assert default is os.urandom
    # Two default runs with the same channel seed: the same physics, different choices.
    first = simulate(BUSY, 20_000, rng=np.random.default_rng(3))
    second = simulate(BUSY, 20_000, rng=np.random.default_rng(3))
    assert not np.array_equal(first.alice.bits, second.alice.bits)


def test_uniform_bits_are_the_bytes_bits_most_significant_first() -> None:
    assert uniform_bits(lambda n: bytes([0b10110000, 0xFF])[:n], 5).tolist() == [1, 0, 1, 1, 0]


def test_categorical_draws_follow_32_bit_thresholds_exactly() -> None:
    probabilities = (0.25, 0.5, 0.25)  # thresholds at 2^30 and 3 * 2^30
    draws = np.array([0, 2**30 - 1, 2**30, 3 * 2**30 - 1, 3 * 2**30, 2**32 - 1], dtype="<u4")
    assert categorical(lambda n: draws.tobytes()[:n], 6, probabilities).tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    with pytest.raises(ValueError):
        categorical(os.urandom, 1, (0.5, 0.4))


def test_categorical_frequencies_follow_the_probabilities() -> None:
    probabilities = (0.075, 0.025, 0.4125, 0.1375, 0.2625, 0.0875)  # LAB_LINK's class x basis
    n = 400_000
    draws = categorical(np.random.default_rng(5).bytes, n, probabilities)
    counts = np.bincount(draws, minlength=6)
    for count, p in zip(counts, probabilities, strict=True):
        assert abs(binomial_z(float(count), n, p)) < SIGMAS
