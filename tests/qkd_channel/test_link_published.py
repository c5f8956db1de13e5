"""Finite-key numbers pinned to published ones, each with its source and tolerance.

* Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012), Table II, Q = 1 %: optimal
  expected key rate 11.7 / 30.4 / 47.8 % at n = 10^4 / 10^5 / 10^6, test-basis
  probability 38.2 / 22.0 / 12.5 %. Their formula, their optimisation, an exact
  robustness term (module docstring of ``tomamichel2012``): within 10 % at 10^5 and 10^6,
  within 25 % at 10^4 (ours is higher: the paper's unspecified robustness bound).
* Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), section IV: with their system
  model and the bound as the post-processing runs it, keys up to 135 km with n_X = 10^4
  (within 10 %), and at 100 km the n_X = 10^9 rate about 1.75 times the 10^7 one
  (within 5 %).
* The project in Tomamichel's setting: the lab preset has a 1 % QBER, and its efficient
  pipeline beats the 20 % per detection at 10^6 detections that issue 18 asks for.
"""

import math

import pytest

from qkd_channel.link import KeyDesign, LinkParameters, expected_observation, finite_key_rate
from qkd_channel.link.lim2014 import (
    PUBLISHED_RATIO_100KM,
    PUBLISHED_REACH_KM,
    LimSystem,
    maximum_distance,
    optimal_key_rate,
)
from qkd_channel.link.presets import LAB_LINK, LAB_LINK_SYMMETRIC
from qkd_channel.link.tomamichel2012 import PUBLISHED_RATES, key_length, optimal_rate

TOMAMICHEL_TEST_PROBABILITY = {10**4: 0.382, 10**5: 0.220, 10**6: 0.125}  # Table II, "p_x"


@pytest.mark.parametrize(
    ("n", "tolerance"),
    [
        pytest.param(10**4, 0.25, id="1e4"),
        pytest.param(10**5, 0.10, id="1e5"),
        pytest.param(10**6, 0.10, id="1e6"),
    ],
)
def test_tomamichel_rates_at_one_percent_qber_match_their_table(n: int, tolerance: float) -> None:
    result = optimal_rate(n, 0.01)
    assert result.rate == pytest.approx(PUBLISHED_RATES[n], rel=tolerance)
    assert result.test_probability == pytest.approx(TOMAMICHEL_TEST_PROBABILITY[n], abs=0.03)
    assert (result.epsilon_sec + result.epsilon_cor) / result.key_length == pytest.approx(1e-14)


def test_tomamichel_key_length_tends_to_the_asymptotic_bb84_rate() -> None:
    # r_max(Q) = 1 - 2 h(Q) with ideal error correction and k << n (their Discussion).
    n, k, qber = 1e14, 1e11, 0.01
    h = -qber * math.log2(qber) - (1 - qber) * math.log2(1 - qber)
    length = key_length(n, k, qber, epsilon_sec=1e-10, epsilon_cor=1e-10, leak_ec=n * h)
    assert length / n == pytest.approx(1 - 2 * h, rel=1e-3)


def test_lim_rate_ratio_between_block_sizes_at_100_km() -> None:
    system = LimSystem()
    large = optimal_key_rate(system, 100.0, 1e9)
    medium = optimal_key_rate(system, 100.0, 1e7)
    assert large.rate / medium.rate == pytest.approx(PUBLISHED_RATIO_100KM, rel=0.05)


def test_lim_small_blocks_reach_their_published_distance() -> None:
    reach = maximum_distance(LimSystem(), 1e4, start_km=60.0, step_km=16.0, resolution=1.0)
    assert reach == pytest.approx(PUBLISHED_REACH_KM, rel=0.10)


def test_lab_preset_is_tomamichels_one_percent_setting() -> None:
    observed = expected_observation(LAB_LINK)
    for k in range(2):  # the classes that carry light; the vacuum class errs half the time
        assert observed.qber_z[k] == pytest.approx(0.010, abs=0.0006)


def _per_detection(link: LinkParameters, detections: float, design: KeyDesign) -> float:
    """Secret bits per detection of a block of ``detections`` detections (mean counts)."""
    observed = expected_observation(link)
    click = sum(p * q for p, q in zip(link.intensity_probabilities, observed.gains, strict=True))
    return finite_key_rate(link, detections / click, design=design).key_length / detections


def test_efficient_design_beats_the_issue_target_where_the_first_design_did_not() -> None:
    efficient = _per_detection(LAB_LINK, 1e6, KeyDesign.EFFICIENT)
    first = _per_detection(LAB_LINK_SYMMETRIC, 1e6, KeyDesign.SIGNAL_SAMPLED)
    assert efficient >= 0.20  # issue 18: F >= 20 % (expected counts; the bench measures)
    assert first < 0.08
    assert efficient < PUBLISHED_RATES[10**6]  # below the single-photon source's figure
