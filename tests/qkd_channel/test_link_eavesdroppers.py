"""Attacks on the quantum channel leave the signatures the theory predicts."""

import math
from dataclasses import replace

import numpy as np
import pytest

from qkd_channel.errors import LinkParameterError
from qkd_channel.link import (
    GYS_2005,
    count_run,
    estimate_key_rate,
    expected_observation,
    key_rate_from_observation,
    simulate,
)
from qkd_channel.link.eavesdroppers import BeamSplitting, InterceptResend, PhotonNumberSplitting
from tests.qkd_channel.seeded import seeded

SIGMAS = 4.5

# 10 dB of loss: enough that Eve can hide a PNS attack in the signal's statistics.
LINK = replace(
    GYS_2005,
    detector_efficiency=0.1,
    intensities=(0.5, 0.1, 0.0),
    intensity_probabilities=(0.5, 0.4, 0.1),
    dark_count_probability=2e-5,
).at_total_loss(10.0)
PULSES = 3_000_000


def binomial_z(successes: float, trials: float, p: float) -> float:
    return (successes - trials * p) / math.sqrt(trials * p * (1 - p))


def test_honest_run_certifies_a_key() -> None:
    run = simulate(LINK, PULSES, **seeded(11))
    assert estimate_key_rate(run, LINK).per_pulse > 0


def test_full_intercept_resend_pushes_qber_to_a_quarter_and_kills_the_key() -> None:
    run = simulate(
        LINK,
        PULSES,
        **seeded(12),
        eavesdropper=InterceptResend(1.0),
    )
    counts = count_run(run)
    e_det = LINK.misalignment_error
    # Wrong-basis guesses (half of them) err half the time; Bob's misalignment adds e_det/2.
    expected_qber = 0.25 + e_det / 2
    assert abs(binomial_z(counts.errors_z[0], counts.sifted_z[0], expected_qber)) < SIGMAS
    assert counts.errors_z[0] / counts.sifted_z[0] > 0.11  # far above the abort threshold
    assert estimate_key_rate(run, LINK).per_pulse == 0.0


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_partial_intercept_resend_adds_a_quarter_of_the_fraction(fraction: float) -> None:
    attack = InterceptResend(fraction)
    run = simulate(
        LINK,
        PULSES,
        **seeded(13),
        eavesdropper=attack,
    )
    counts = count_run(run)
    e_det = LINK.misalignment_error
    expected_qber = (1 - fraction) * e_det + fraction * (0.25 + e_det / 2)
    assert abs(binomial_z(counts.errors_z[0], counts.sifted_z[0], expected_qber)) < SIGMAS
    # Intercept-resend does not change the gain: only the QBER betrays it.
    gain = expected_observation(LINK).gains[0]
    assert abs(binomial_z(counts.clicks[0], counts.pulses[0], gain)) < SIGMAS


def test_pns_is_invisible_in_signal_statistics_but_exposed_by_decoys() -> None:
    run = simulate(
        LINK,
        PULSES,
        **seeded(14),
        eavesdropper=PhotonNumberSplitting(),
    )
    counts = count_run(run)
    honest = expected_observation(LINK)
    # What a non-decoy BB84 system looks at is normal ...
    assert abs(binomial_z(counts.clicks[0], counts.pulses[0], honest.gains[0])) < SIGMAS
    assert abs(binomial_z(counts.errors_z[0], counts.sifted_z[0], honest.qber_z[0])) < SIGMAS
    # ... but the weak decoy loses far more than an honest channel could explain,
    assert binomial_z(counts.clicks[1], counts.pulses[1], honest.gains[1]) < -20
    # exactly as the attack's analytic signature predicts,
    predicted = PhotonNumberSplitting().expected_observation(LINK)
    for k in (0, 1):
        assert abs(binomial_z(counts.clicks[k], counts.pulses[k], predicted.gains[k])) < SIGMAS
    # so the certified single-photon yield collapses and no key is produced.
    estimate = estimate_key_rate(run, LINK)
    assert estimate.bounds.y1_lower == 0.0
    assert estimate.per_pulse == 0.0


def test_pns_prediction_preserves_signal_gain_and_starves_the_decoy() -> None:
    predicted = PhotonNumberSplitting().expected_observation(LINK)
    honest = expected_observation(LINK)
    assert predicted.gains[0] == pytest.approx(honest.gains[0], rel=1e-9)
    assert predicted.qber_z[0] == pytest.approx(honest.qber_z[0], abs=1e-3)
    assert predicted.gains[1] < honest.gains[1] / 3
    assert key_rate_from_observation(predicted, LINK).per_pulse == 0.0


def test_pns_forwarding_blocks_all_single_photons_at_high_loss() -> None:
    single, multi = PhotonNumberSplitting.forwarding(LINK)
    assert single == 0.0
    assert 0.0 < multi < 1.0


def test_beam_splitting_is_invisible_and_within_what_gllp_concedes() -> None:
    attack = BeamSplitting()
    run = simulate(
        LINK,
        PULSES,
        **seeded(15),
        eavesdropper=attack,
    )
    counts = count_run(run)
    honest = expected_observation(LINK)
    for k in (0, 1):
        assert abs(binomial_z(counts.clicks[k], counts.pulses[k], honest.gains[k])) < SIGMAS
    # Eve's and Bob's photon counts from a coherent pulse are independent Poissons, so she
    # holds a photon of a detected signal pulse with probability 1 - exp(-(1 - t) mu).
    clicked = run.bob.indices[run.alice.intensities[run.bob.indices] == 0]
    tapped = np.isin(clicked, attack.tapped_pulses)
    share = 1 - math.exp(-(1 - LINK.channel_transmittance) * LINK.intensities[0])
    assert abs(binomial_z(float(tapped.sum()), clicked.size, share)) < SIGMAS
    # GLLP already treats every non-single-photon detection as known to Eve.
    estimate = estimate_key_rate(run, LINK)
    assert estimate.per_pulse > 0
    assert tapped.mean() < 1 - estimate.bounds.q1_lower / estimate.signal_gain


def test_no_eavesdropper_forwards_zero_photons_as_detections() -> None:
    run = simulate(
        replace(LINK, dark_count_probability=0.0),
        200_000,
        **seeded(16),
        eavesdropper=InterceptResend(1.0),
    )
    vacuum_clicks = np.sum(run.alice.intensities[run.bob.indices] == 2)
    assert vacuum_clicks == 0  # empty pulses give Eve nothing to resend


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_intercept_resend_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(LinkParameterError):
        InterceptResend(fraction)


def test_intercept_resend_prediction_matches_simulation_with_biased_bases() -> None:
    link = replace(LINK, z_basis_probability=0.8)
    attack = InterceptResend(0.5)
    run = simulate(
        link,
        PULSES,
        **seeded(17),
        eavesdropper=attack,
    )
    counts = count_run(run)
    predicted = attack.expected_observation(link)
    # Eve guesses Z as often as Alice does, so the rarely used X basis takes most errors.
    assert predicted.qber_x[0] > predicted.qber_z[0]
    for k in (0, 1):
        assert abs(binomial_z(counts.errors_z[k], counts.sifted_z[k], predicted.qber_z[k])) < (
            SIGMAS
        )
        assert abs(binomial_z(counts.errors_x[k], counts.sifted_x[k], predicted.qber_x[k])) < (
            SIGMAS
        )
