"""Analytic decoy-state key rates: literature cross-checks, calibration, finite-size behaviour."""

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from qkd_channel.errors import LinkParameterError
from qkd_channel.link import (
    BRISTOL_CLAVIS2,
    BRISTOL_MEASUREMENTS,
    GYS_2005,
    DecoyObservation,
    KeyDesign,
    LinkParameters,
    asymptotic_key_rate,
    binary_entropy,
    bristol_clavis2,
    decoy_bounds,
    expected_observation,
    finite_key_rate,
    observation_from_arrivals,
    secret_key_rate,
)


def cutoff_km(link: LinkParameters, *, bounds: str = "vacuum+weak") -> float:
    """Largest distance with a positive rate, by bisection (the rate falls monotonically)."""
    low, high = 50.0, 250.0
    while high - low > 0.01:
        mid = (low + high) / 2
        if secret_key_rate(link.at_length(mid), bounds=bounds).per_pulse > 0:  # type: ignore[arg-type]
            low = mid
        else:
            high = mid
    return low


@pytest.mark.parametrize(
    ("p", "h"),
    [(0.0, 0.0), (1.0, 0.0), (0.5, 1.0), (0.11, 0.4999), (0.25, 0.8113)],
)
def test_binary_entropy_known_values(p: float, h: float) -> None:
    assert binary_entropy(p) == pytest.approx(h, abs=1e-4)


def test_gys_infinite_decoy_cutoff_matches_ma_et_al() -> None:
    # Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005): with the GYS parameters the asymptotic
    # (infinitely many decoys) decoy-state protocol reaches about 142 km at mu = 0.48.
    assert cutoff_km(GYS_2005, bounds="exact") == pytest.approx(142.0, abs=1.5)


def test_gys_vacuum_weak_decoy_approaches_the_infinite_decoy_cutoff() -> None:
    # Ma et al.'s central claim: vacuum + a weak decoy (nu = 0.05) comes within a few km of
    # the infinite-decoy limit.
    exact = cutoff_km(GYS_2005, bounds="exact")
    practical = cutoff_km(GYS_2005)
    assert exact - 4.0 < practical < exact


def test_gys_expected_gain_and_qber_match_ma_et_al_formulas() -> None:
    link = GYS_2005.at_length(60.0)
    eta = link.transmittance
    mu = 0.48
    observed = expected_observation(link)
    q_ma = 1.7e-6 + 1 - math.exp(-eta * mu)
    e_ma = (0.5 * 1.7e-6 + 0.033 * (1 - math.exp(-eta * mu))) / q_ma
    assert observed.gains[0] == pytest.approx(q_ma, rel=1e-4)
    assert observed.qber_z[0] == pytest.approx(e_ma, rel=1e-3)


def test_decoy_bounds_are_valid_bounds_for_the_honest_model() -> None:
    link = GYS_2005.at_length(60.0)
    practical = secret_key_rate(link).bounds
    exact = secret_key_rate(link, bounds="exact").bounds
    assert 0 < practical.y1_lower <= exact.y1_lower
    assert practical.y1_lower > 0.95 * exact.y1_lower  # and tight
    assert exact.e1_upper <= practical.e1_upper < 0.5


def test_decoy_bounds_certify_nothing_without_a_decoy_excess() -> None:
    # Decoy gain far below what a Poissonian source through any channel could give.
    observed = DecoyObservation(
        gains=(1e-3, 1e-6, 1e-6), qber_z=(0.02, 0.02, 0.5), qber_x=(0.02, 0.02, 0.5)
    )
    bounds = decoy_bounds(observed, GYS_2005)
    assert bounds.y1_lower == 0.0
    assert bounds.e1_upper == 0.5


@pytest.mark.parametrize(("loss_db", "measured"), BRISTOL_MEASUREMENTS)
def test_bristol_preset_reproduces_the_measured_rates(loss_db: float, measured: float) -> None:
    rate = secret_key_rate(bristol_clavis2(loss_db)).bits_per_second
    assert rate == pytest.approx(measured, rel=0.25)  # the acceptance band of the issue
    assert rate == pytest.approx(measured, rel=0.02)  # what the calibration achieves


@pytest.mark.parametrize("preset", [GYS_2005, BRISTOL_CLAVIS2], ids=["gys", "bristol"])
def test_rate_decreases_with_loss_and_vanishes_beyond_cutoff(preset: LinkParameters) -> None:
    losses = np.arange(0.0, 45.0, 0.5)
    rates = [secret_key_rate(preset.at_total_loss(float(x))).per_pulse for x in losses]
    assert rates[0] > 0
    assert all(b <= a for a, b in itertools.pairwise(rates))
    positive = [x for x, r in zip(losses, rates, strict=True) if r > 0]
    assert all(r == 0 for x, r in zip(losses, rates, strict=True) if x > max(positive))
    assert max(positive) < 44.0


def test_dead_time_saturates_rate_at_low_loss() -> None:
    without = replace(BRISTOL_CLAVIS2, dead_time_s=0.0)
    ratio_with = (
        secret_key_rate(bristol_clavis2(7.0)).per_pulse
        / secret_key_rate(bristol_clavis2(4.0)).per_pulse
    )
    ratio_without = (
        secret_key_rate(without.at_total_loss(7.0)).per_pulse
        / secret_key_rate(without.at_total_loss(4.0)).per_pulse
    )
    assert ratio_without == pytest.approx(10 ** (-0.3), rel=0.03)  # ~ linear in transmittance
    assert ratio_with == pytest.approx(1220 / 1880, rel=0.03)


@pytest.mark.parametrize("design", list(KeyDesign))
def test_finite_key_is_below_its_asymptotic_limit_and_converges(design: KeyDesign) -> None:
    link = bristol_clavis2(4.0)
    limit = asymptotic_key_rate(link, design=design)
    blocks = [1e9, 1e10, 1e11, 1e12, 1e14, 1e16]
    finite = [finite_key_rate(link, n, design=design).per_pulse for n in blocks]
    assert all(f < limit for f in finite)
    assert all(b > a for a, b in itertools.pairwise(finite))
    assert finite[-1] == pytest.approx(limit, rel=0.01)


def test_the_first_designs_limit_is_the_gllp_rate() -> None:
    # Without statistical corrections the signal-only bound is Ma et al.'s vacuum + weak
    # decoy GLLP formula, term for term; the efficient design adds the decoy and vacuum
    # classes' detections to the key.
    for link in (bristol_clavis2(4.0), GYS_2005.at_length(60.0)):
        gllp = secret_key_rate(link).per_pulse
        sampled = asymptotic_key_rate(link, design=KeyDesign.SIGNAL_SAMPLED)
        assert sampled == pytest.approx(gllp, rel=1e-9)
        assert asymptotic_key_rate(link) > gllp


def test_bristol_finite_key_rates_of_the_first_design_are_unchanged() -> None:
    # The figures issue 18 quotes for the project before the efficient design: 1,032 and
    # 539 bit/s at 4 and 7 dB for blocks of 1e10 pulses.
    sampled = KeyDesign.SIGNAL_SAMPLED
    assert finite_key_rate(bristol_clavis2(4.0), 1e10, design=sampled).bits_per_second == (
        pytest.approx(1031.5, abs=0.5)
    )
    assert finite_key_rate(bristol_clavis2(7.0), 1e10, design=sampled).bits_per_second == (
        pytest.approx(538.5, abs=0.5)
    )


@pytest.mark.parametrize("n_pulses", [1e4, 1e6, 1e8])
def test_finite_key_is_zero_for_small_blocks(n_pulses: float) -> None:
    result = finite_key_rate(bristol_clavis2(4.0), n_pulses)
    assert result.key_length == 0.0
    assert result.per_pulse == 0.0


def test_finite_key_shrinks_with_a_stricter_security_parameter() -> None:
    link = bristol_clavis2(4.0)
    loose = finite_key_rate(link, 1e11, epsilon_sec=1e-6).key_length
    strict = finite_key_rate(link, 1e11, epsilon_sec=1e-15).key_length
    assert 0 < strict < loose


def test_finite_key_rejects_bad_arguments() -> None:
    with pytest.raises(LinkParameterError):
        finite_key_rate(GYS_2005, 0)
    with pytest.raises(LinkParameterError):
        finite_key_rate(GYS_2005, 1e9, epsilon_sec=0.0)


def test_photon_number_resolved_model_reproduces_the_closed_form() -> None:
    # Poisson arrivals with the channel's transmittance are the honest link.
    link = bristol_clavis2(4.0)
    t = link.channel_transmittance
    arrivals: list[dict[int, float]] = []
    for mu in link.intensities:
        pmf = {m: math.exp(-mu * t) * (mu * t) ** m / math.factorial(m) for m in range(1, 30)}
        arrivals.append(pmf if mu > 0 else {})
    resolved = observation_from_arrivals(link, arrivals)
    closed = expected_observation(link)
    for k in range(3):
        assert resolved.gains[k] == pytest.approx(closed.gains[k], rel=1e-9)
        assert resolved.qber_z[k] == pytest.approx(closed.qber_z[k], rel=1e-9)
