"""Properties of the analytic model over many random, physically valid links."""

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from qkd_channel.link import (
    GYS_2005,
    KeyDesign,
    LinkParameters,
    asymptotic_key_rate,
    certify,
    expected_counts,
    finite_key_rate,
    secret_key_rate,
)


@st.composite
def links(draw: st.DrawFn) -> LinkParameters:
    mu = draw(st.floats(0.2, 0.8))
    nu = draw(st.floats(0.02, mu / 2))
    p_decoy = draw(st.floats(0.05, 0.4))
    p_vacuum = draw(st.floats(0.05, 0.3))
    return replace(
        GYS_2005,
        detector_efficiency=draw(st.floats(0.03, 0.6)),
        dark_count_probability=draw(st.floats(1e-7, 1e-4)),
        misalignment_error=draw(st.floats(0.0, 0.06)),
        intensities=(mu, nu, 0.0),
        intensity_probabilities=(1 - p_decoy - p_vacuum, p_decoy, p_vacuum),
        z_basis_probability=draw(st.floats(0.3, 0.9)),
        error_correction_efficiency=draw(st.floats(1.0, 1.3)),
        dead_time_s=draw(st.sampled_from([0.0, 1e-6, 1e-5])),
    ).at_total_loss(draw(st.floats(0.0, 30.0)))


@settings(max_examples=60, deadline=None)
@given(links(), st.floats(0.1, 5.0))
def test_more_loss_never_gives_more_key(link: LinkParameters, extra_db: float) -> None:
    near = secret_key_rate(link).per_pulse
    far = secret_key_rate(link.at_total_loss(link.total_loss_db + extra_db)).per_pulse
    assert far <= near


@settings(max_examples=60, deadline=None)
@given(links())
def test_practical_decoys_never_beat_infinitely_many(link: LinkParameters) -> None:
    practical = secret_key_rate(link)
    exact = secret_key_rate(link, bounds="exact")
    assert practical.bounds.y1_lower <= exact.bounds.y1_lower * (1 + 1e-9)
    assert practical.bounds.e1_upper >= exact.bounds.e1_upper * (1 - 1e-9)
    assert practical.per_pulse <= exact.per_pulse * (1 + 1e-9) + 1e-15


@settings(max_examples=40, deadline=None)
@given(links(), st.sampled_from([1e8, 1e10, 1e12]), st.sampled_from(list(KeyDesign)))
def test_finite_key_never_exceeds_its_asymptotic_limit(
    link: LinkParameters, n_pulses: float, design: KeyDesign
) -> None:
    finite = finite_key_rate(link, n_pulses, design=design).per_pulse
    assert finite <= asymptotic_key_rate(link, design=design) * (1 + 1e-9) + 1e-15


@settings(max_examples=40, deadline=None)
@given(links(), st.sampled_from([1e8, 1e10, 1e12]))
def test_finite_key_bounds_hold_for_the_honest_model(link: LinkParameters, n_pulses: float) -> None:
    # True vacuum and single-photon detections in the key basis and their phase-error
    # rate, from the model's exact yields; the bound may only under-count and over-err.
    exact = secret_key_rate(link, bounds="exact").bounds
    mix = list(zip(link.intensities, link.intensity_probabilities, strict=True))
    key_share = n_pulses * link.z_basis_probability**2
    bounds = certify(
        expected_counts(link, n_pulses),
        link.intensities,
        link.intensity_probabilities,
        design=KeyDesign.EFFICIENT,
        epsilon_sec=1e-10,
    )
    vacuum = key_share * sum(p * math.exp(-k) for k, p in mix) * exact.y0
    single = key_share * sum(p * k * math.exp(-k) for k, p in mix) * exact.y1_lower
    assert bounds.vacuum_events <= vacuum * (1 + 1e-9)
    assert bounds.single_photon_events <= single * (1 + 1e-9)
    if bounds.single_photon_events > 0:
        assert bounds.phase_error_rate >= exact.e1_upper * (1 - 1e-9)
