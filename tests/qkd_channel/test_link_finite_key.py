"""The finite-key bound of Lim et al. 2014: its security budget, validity and behaviour."""

import math
from dataclasses import replace

import pytest

from qkd_channel.link import (
    GYS_2005,
    DecoyCounts,
    FiniteKeyBounds,
    KeyDesign,
    LinkParameters,
    bristol_clavis2,
    certify,
    epsilon_budget,
    expected_counts,
    secret_key_rate,
    secret_length,
)
from qkd_channel.link.finite_key import LIM_EPSILON_TERMS
from qkd_channel.link.presets import LAB_LINK

LINKS = [
    pytest.param(LAB_LINK, id="lab"),
    pytest.param(bristol_clavis2(4.0), id="bristol-4dB"),
    pytest.param(GYS_2005.at_length(50.0), id="gys-50km"),
]


def _certify(
    counts: DecoyCounts,
    link: LinkParameters,
    *,
    design: KeyDesign = KeyDesign.EFFICIENT,
    epsilon_sec: float = 1e-10,
    sample_size: int = 0,
) -> FiniteKeyBounds:
    return certify(
        counts,
        link.intensities,
        link.intensity_probabilities,
        design=design,
        epsilon_sec=epsilon_sec,
        sample_size=sample_size,
    )


def test_the_security_budget_is_lims_21_terms_and_sums_to_epsilon_sec() -> None:
    terms = epsilon_budget(1e-10)
    assert sum(t.multiplicity for t in terms) == LIM_EPSILON_TERMS == 21
    assert math.fsum(t.multiplicity * t.value for t in terms) == pytest.approx(1e-10, rel=1e-12)
    assert {t.value for t in terms} == {1e-10 / 21}  # every failure event gets the same share


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("asymptotic", [False, True], ids=["1e10-pulses", "asymptotic"])
def test_bounds_hold_for_the_honest_model(link: LinkParameters, asymptotic: bool) -> None:
    # The model's true vacuum and single-photon detections in the key basis, and their true
    # phase-error rate, from the exact (infinitely many decoys) yields.
    pulses = 1.0 if asymptotic else 1e10
    exact = secret_key_rate(link, bounds="exact").bounds
    p_zz = link.z_basis_probability**2
    mix = list(zip(link.intensities, link.intensity_probabilities, strict=True))
    tau0 = sum(p * math.exp(-k) for k, p in mix)
    tau1 = sum(p * k * math.exp(-k) for k, p in mix)
    bounds = certify(
        expected_counts(link, pulses),
        link.intensities,
        link.intensity_probabilities,
        design=KeyDesign.EFFICIENT,
        epsilon_sec=1e-10,
        asymptotic=asymptotic,
    )
    assert bounds.vacuum_events <= pulses * p_zz * tau0 * exact.y0 * (1 + 1e-12)
    assert bounds.single_photon_events <= pulses * p_zz * tau1 * exact.y1_lower
    assert bounds.phase_error_rate >= exact.e1_upper
    if asymptotic:  # vacuum + weak decoy: within a few percent of the truth
        assert bounds.single_photon_events > 0.95 * pulses * p_zz * tau1 * exact.y1_lower
        assert bounds.phase_error_rate < 1.25 * exact.e1_upper


def test_more_test_basis_errors_mean_a_higher_phase_error_and_a_shorter_key() -> None:
    counts = expected_counts(LAB_LINK, 1e8)
    e0, e1, e2 = counts.errors_x
    worse = replace(counts, errors_x=(1.5 * e0, 1.5 * e1, 1.5 * e2))
    good, bad = _certify(counts, LAB_LINK), _certify(worse, LAB_LINK)
    assert bad.phase_error_rate > good.phase_error_rate
    lengths = [secret_length(b, leak_ec=0, leak_verify=128, epsilon_sec=1e-10) for b in (good, bad)]
    assert lengths[0] > lengths[1] > 0


def test_a_looser_security_parameter_buys_key() -> None:
    counts = expected_counts(LAB_LINK, 1e7)
    lengths = [
        secret_length(
            _certify(counts, LAB_LINK, epsilon_sec=eps),
            leak_ec=0,
            leak_verify=128,
            epsilon_sec=eps,
        )
        for eps in (1e-15, 1e-10, 1e-5)
    ]
    assert 0 < lengths[0] < lengths[1] < lengths[2]


def test_the_sacrificed_sample_costs_its_share_and_one_more_failure_event() -> None:
    counts = expected_counts(LAB_LINK, 1e8)
    design = KeyDesign.SIGNAL_SAMPLED
    whole = _certify(counts, LAB_LINK, design=design)
    sample = round(0.1 * counts.sifted_z[0])
    kept = _certify(counts, LAB_LINK, design=design, sample_size=sample)
    assert whole.epsilon_terms == 21 and kept.epsilon_terms == 22
    assert kept.single_photon_events < 0.9 * whole.single_photon_events
    assert kept.phase_error_rate > whole.phase_error_rate
    assert kept.vacuum_events == whole.vacuum_events == 0.0


def test_the_efficient_design_counts_every_class_the_first_only_signal_pulses() -> None:
    counts = expected_counts(LAB_LINK, 1e8)
    efficient = _certify(counts, LAB_LINK)
    first = _certify(counts, LAB_LINK, design=KeyDesign.SIGNAL_SAMPLED)
    # LAB_LINK sends the signal class 10 % of the time: most single photons are elsewhere.
    assert first.single_photon_events < 0.3 * efficient.single_photon_events
    # Vacuum detections count too (a few dark counts: visible only in the large-block limit).
    limit = certify(
        expected_counts(LAB_LINK, 1.0),
        LAB_LINK.intensities,
        LAB_LINK.intensity_probabilities,
        design=KeyDesign.EFFICIENT,
        epsilon_sec=1e-10,
        asymptotic=True,
    )
    assert limit.vacuum_events > 0.0


def test_a_block_without_weak_detections_certifies_nothing() -> None:
    counts = expected_counts(LAB_LINK, 1e8)
    blocked = replace(
        counts,
        sifted_z=(counts.sifted_z[0], 0.0, 0.0),
        sifted_x=(counts.sifted_x[0], 0.0, 0.0),
        errors_x=(counts.errors_x[0], 0.0, 0.0),
    )
    bounds = _certify(blocked, LAB_LINK)
    assert bounds.certifies_nothing
    assert bounds.phase_error_rate == 0.5
    assert secret_length(bounds, leak_ec=0, leak_verify=0, epsilon_sec=1e-10) == 0


def test_bad_arguments_are_refused() -> None:
    counts = expected_counts(LAB_LINK, 1e8)
    with pytest.raises(ValueError):
        _certify(counts, LAB_LINK, epsilon_sec=0.0)
    with pytest.raises(ValueError):
        _certify(counts, LAB_LINK, sample_size=100)  # only the signal-sampled design samples
