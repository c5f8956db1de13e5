"""LinkParameters validation and derived quantities."""

from dataclasses import replace
from typing import Any

import pytest

from qkd_channel.errors import LinkParameterError, QKDError
from qkd_channel.link import BRISTOL_CLAVIS2, GYS_2005, LinkParameters


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"fibre_loss_db_per_km": -0.2}, "fibre_loss_db_per_km", id="negative-loss"),
        pytest.param({"length_km": float("nan")}, "length_km", id="nan-length"),
        pytest.param({"extra_loss_db": -1.0}, "extra_loss_db", id="negative-extra"),
        pytest.param({"detector_efficiency": 0.0}, "detector_efficiency", id="blind-detector"),
        pytest.param({"detector_efficiency": 1.5}, "detector_efficiency", id="efficiency>1"),
        pytest.param({"dark_count_probability": 1.0}, "dark_count_probability", id="always-dark"),
        pytest.param({"misalignment_error": 0.6}, "misalignment_error", id="misalignment>0.5"),
        pytest.param({"intensities": (0.1, 0.5, 0.0)}, "signal > decoy", id="decoy>signal"),
        pytest.param({"intensities": (0.5, 0.3, 0.25)}, "must exceed decoy", id="mu<=nu+w"),
        pytest.param({"intensities": (0.5, 0.1)}, "three values", id="two-intensities"),
        pytest.param(
            {"intensity_probabilities": (0.8, 0.1, 0.2)}, "sum to 1", id="probabilities-sum"
        ),
        pytest.param(
            {"intensity_probabilities": (0.9, 0.1, 0.0)}, "positive probability", id="no-vacuum"
        ),
        pytest.param({"z_basis_probability": 1.0}, "z_basis_probability", id="no-x-basis"),
        pytest.param({"pulse_rate_hz": 0.0}, "pulse_rate_hz", id="zero-rate"),
        pytest.param({"error_correction_efficiency": 0.9}, "Shannon limit", id="beats-shannon"),
        pytest.param({"dead_time_s": -1e-6}, "dead_time_s", id="negative-dead-time"),
    ],
)
def test_invalid_parameters_are_rejected_with_a_clear_message(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(LinkParameterError, match=message) as caught:
        replace(GYS_2005, **changes)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, QKDError)


def test_total_loss_combines_fibre_and_extra_loss() -> None:
    link = replace(GYS_2005, length_km=50.0, extra_loss_db=1.5)
    assert link.total_loss_db == pytest.approx(0.21 * 50 + 1.5)
    assert link.channel_transmittance == pytest.approx(10 ** (-(10.5 + 1.5) / 10))
    assert link.transmittance == pytest.approx(link.channel_transmittance * 0.045)


def test_at_total_loss_keeps_the_hardware() -> None:
    link = BRISTOL_CLAVIS2.at_total_loss(7.0)
    assert link.total_loss_db == pytest.approx(7.0)
    assert link.detector_efficiency == BRISTOL_CLAVIS2.detector_efficiency
    assert link.dead_time_s == BRISTOL_CLAVIS2.dead_time_s


def test_dark_count_per_detector_reproduces_y0() -> None:
    p_d = GYS_2005.dark_count_per_detector
    assert 1 - (1 - p_d) ** 2 == pytest.approx(GYS_2005.dark_count_probability, rel=1e-12)


def test_parameters_are_immutable() -> None:
    with pytest.raises(AttributeError):
        GYS_2005.length_km = 10.0  # type: ignore[misc]


def test_keyword_only_construction() -> None:
    with pytest.raises(TypeError):
        LinkParameters(0.2)  # type: ignore[call-arg]
