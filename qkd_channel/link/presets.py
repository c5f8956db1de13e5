"""Reference links: the GYS experiment as analysed by Ma et al., and a Clavis2-class link.

``GYS_2005`` reproduces the parameter set Ma, Qi, Zhao, Lo (PRA 72, 012326 (2005)) took from
the Gobby-Yuan-Shields experiment (APL 84, 3762 (2004)), used throughout the decoy-state
literature as a benchmark. ``BRISTOL_CLAVIS2`` is calibrated to the Bristol measurements of
an IDQ Clavis2-class system (about 1880 bit/s of secret key at 4 dB total loss, about
1220 bit/s at 7 dB); ``docs/link-model.md`` explains the choice of each value.
"""

from __future__ import annotations

from dataclasses import replace

from qkd_channel.link.parameters import LinkParameters

__all__ = [
    "BRISTOL_CLAVIS2",
    "BRISTOL_MEASUREMENTS",
    "GYS_2005",
    "LAB_LINK",
    "LAB_LINK_SYMMETRIC",
    "bristol_clavis2",
]

GYS_2005 = LinkParameters(
    fibre_loss_db_per_km=0.21,
    length_km=0.0,
    detector_efficiency=0.045,
    dark_count_probability=1.7e-6,
    misalignment_error=0.033,
    intensities=(0.48, 0.05, 0.0),
    intensity_probabilities=(0.8, 0.1, 0.1),
    z_basis_probability=0.5,
    pulse_rate_hz=2e6,
    error_correction_efficiency=1.22,
)
"""GYS link (Ma et al. 2005, Table I): set ``length_km`` with :meth:`LinkParameters.at_length`."""

BRISTOL_MEASUREMENTS: tuple[tuple[float, float], ...] = ((4.0, 1880.0), (7.0, 1220.0))
"""Measured (total loss in dB, secret key rate in bit/s) points of the Bristol link."""


def bristol_clavis2(total_loss_db: float = 4.0) -> LinkParameters:
    """The Clavis2-class link behind a channel of ``total_loss_db`` total loss."""
    return BRISTOL_CLAVIS2.at_total_loss(total_loss_db)


BRISTOL_CLAVIS2 = LinkParameters(
    fibre_loss_db_per_km=0.2,
    length_km=0.0,
    extra_loss_db=4.0,
    detector_efficiency=0.10,
    dark_count_probability=2e-5,
    misalignment_error=0.034,
    intensities=(0.5, 0.1, 0.0),
    intensity_probabilities=(0.8, 0.1, 0.1),
    z_basis_probability=0.5,
    pulse_rate_hz=5e6,
    error_correction_efficiency=1.2,
    dead_time_s=13e-6,
)
"""Clavis2-class link at 4 dB total loss (the first Bristol point)."""


#: The project's first lab link, kept to compare designs: the Bristol source at 0 dB with
#: 90 % detectors and no dead time, symmetric bases, the signal class most frequent
#: (signal QBER 1.5 %). Paired with ``KeyDesign.SIGNAL_SAMPLED`` it is the pipeline as it
#: was before the efficient design.
LAB_LINK_SYMMETRIC = replace(
    BRISTOL_CLAVIS2,
    detector_efficiency=0.9,
    dead_time_s=0.0,
    extra_loss_db=0.0,
    intensities=(0.6, 0.2, 0.0),
    intensity_probabilities=(0.5, 0.25, 0.25),
    misalignment_error=0.015,
)

#: A short lab link for efficient BB84 (the KME's default link): the same hardware with a
#: 1 % misalignment, so its QBER (1.0 %) is Tomamichel et al.'s 1 % setting, and source
#: settings that maximise the secret key per pulse of Lim et al.'s bound at 10^5 detections
#: per block (rounded; within 2 % of the optimum): key basis Z with probability 0.75, and
#: the weak class used most because at 0 dB its detections are ~87 % single-photon. Its
#: finite-key fraction per detection is 0 / 15 / 28 % at 10^4 / 10^5 / 10^6 detections
#: (expected counts; ``docs/finite-key.md``).
LAB_LINK = replace(
    LAB_LINK_SYMMETRIC,
    misalignment_error=0.01,
    z_basis_probability=0.75,
    intensities=(0.8, 0.25, 0.0),
    intensity_probabilities=(0.10, 0.55, 0.35),
)
