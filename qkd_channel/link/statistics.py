"""What decoy-state analysis looks at: per-intensity gains and error rates.

The same two value types carry the model's *expected* statistics and the statistics
*measured* on a simulated run, so one set of decoy bounds (``analytic``) serves both and
the two can be compared number for number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qkd_channel.link.parameters import LinkParameters
from qkd_channel.link.records import LinkRun

__all__ = [
    "DecoyCounts",
    "DecoyObservation",
    "count_run",
    "expected_counts",
    "expected_observation",
    "observation_from_arrivals",
]

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class DecoyObservation:
    """Rates per intensity class (signal, decoy, vacuum).

    ``gains``: probability that Bob registers a click for a pulse of that class (any basis).
    ``qber_z``/``qber_x``: error rate among sifted detections (Alice's and Bob's bases agree)
    in the Z (key) and X (test) basis.
    """

    gains: Triple
    qber_z: Triple
    qber_x: Triple


@dataclass(frozen=True)
class DecoyCounts:
    """Event counts per intensity class over a block; floats so expected counts fit too.

    ``pulses``: pulses Alice sent; ``clicks``: Bob's (dead-time filtered) detections in any
    basis; ``sifted_*``: detections with matching bases; ``errors_*``: of those, wrong bits.
    """

    pulses: Triple
    clicks: Triple
    sifted_z: Triple
    errors_z: Triple
    sifted_x: Triple
    errors_x: Triple

    @property
    def n_pulses(self) -> float:
        """Total pulses in the block."""
        return sum(self.pulses)

    def observation(self) -> DecoyObservation:
        """Rates estimated from the counts (no confidence intervals: asymptotic use only)."""
        return DecoyObservation(
            gains=_ratio(self.clicks, self.pulses),
            qber_z=_ratio(self.errors_z, self.sifted_z),
            qber_x=_ratio(self.errors_x, self.sifted_x),
        )


def count_run(run: LinkRun) -> DecoyCounts:
    """Tally a simulated run the way Alice and Bob do after announcing classes and bases."""
    classes = run.alice.intensities
    clicked = run.bob.indices
    click_classes = classes[clicked]
    sifted = run.alice.bases[clicked] == run.bob.bases
    wrong = run.alice.bits[clicked] != run.bob.bits
    in_z = sifted & (run.bob.bases == 0)
    in_x = sifted & (run.bob.bases == 1)

    def tally(mask: npt.NDArray[np.bool_]) -> Triple:
        counts = np.bincount(click_classes[mask], minlength=3)
        return (float(counts[0]), float(counts[1]), float(counts[2]))

    everything = np.ones(clicked.size, dtype=np.bool_)
    sent = np.bincount(classes, minlength=3)
    return DecoyCounts(
        pulses=(float(sent[0]), float(sent[1]), float(sent[2])),
        clicks=tally(everything),
        sifted_z=tally(in_z),
        errors_z=tally(in_z & wrong),
        sifted_x=tally(in_x),
        errors_x=tally(in_x & wrong),
    )


def expected_observation(params: LinkParameters) -> DecoyObservation:
    """The model's gains and QBERs for an honest channel.

    Photon counts at Bob's two detectors are independent Poisson variables (a rotated,
    phase-randomised coherent state), with means ``eta*mu*(1-e_det)`` at the right detector
    and ``eta*mu*e_det`` at the wrong one; each detector also has dark-count probability
    ``p_d``. A double click counts as an error half of the time. For small ``eta*mu`` this is
    Ma et al.'s ``Q = Y0 + 1 - exp(-eta*mu)``, ``EQ = Y0/2 + e_det*(1 - exp(-eta*mu))``.
    Dead time then scales every gain by the same duty factor ``1 / (1 + D * Q_avg)``.
    """
    eta = params.transmittance
    e_det = params.misalignment_error
    live = 1.0 - params.dark_count_per_detector
    gains: list[float] = []
    errors: list[float] = []
    for mu in params.intensities:
        p_right = 1.0 - live * math.exp(-eta * mu * (1.0 - e_det))
        p_wrong = 1.0 - live * math.exp(-eta * mu * e_det)
        gain = 1.0 - (1.0 - p_right) * (1.0 - p_wrong)
        error = p_wrong * (1.0 - p_right) + 0.5 * p_wrong * p_right
        gains.append(gain)
        errors.append(error / gain)
    mean_gain = sum(p * q for p, q in zip(params.intensity_probabilities, gains, strict=True))
    duty = 1.0 / (1.0 + params.dead_time_pulses * mean_gain)
    qber = (errors[0], errors[1], errors[2])
    return DecoyObservation(
        gains=(gains[0] * duty, gains[1] * duty, gains[2] * duty), qber_z=qber, qber_x=qber
    )


def observation_from_arrivals(
    params: LinkParameters, arrivals: list[dict[int, float]]
) -> DecoyObservation:
    """Gains and QBERs when the photon numbers reaching Bob's receiver are known per class.

    ``arrivals[k]`` maps a photon number ``m`` to its probability for class ``k`` (missing
    mass means no photon arrives). The photons carry Alice's state; an attack that changes
    only *how many* photons arrive (photon-number splitting, any lossy channel) is described
    exactly this way. For ``m`` photons each is registered with probability ``eta_det`` and
    lands on the wrong detector with probability ``e_det``; dark counts are independent.
    """
    eta_det = params.detector_efficiency
    e_det = params.misalignment_error
    live = 1.0 - params.dark_count_per_detector
    gains: list[float] = []
    errors: list[float] = []
    for distribution in arrivals:
        empty = 1.0 - sum(distribution.values())
        gain = error = 0.0
        for m, probability in [(0, empty), *distribution.items()]:
            silent = live * live * (1.0 - eta_det) ** m
            right_silent = live * (1.0 - eta_det * (1.0 - e_det)) ** m
            wrong_silent = live * (1.0 - eta_det * e_det) ** m
            wrong_only = right_silent - silent
            both = 1.0 - right_silent - wrong_silent + silent
            gain += probability * (1.0 - silent)
            error += probability * (wrong_only + 0.5 * both)
        gains.append(gain)
        errors.append(error / gain if gain > 0 else 0.0)
    mean_gain = sum(p * q for p, q in zip(params.intensity_probabilities, gains, strict=True))
    duty = 1.0 / (1.0 + params.dead_time_pulses * mean_gain)
    qber = (errors[0], errors[1], errors[2])
    return DecoyObservation(
        gains=(gains[0] * duty, gains[1] * duty, gains[2] * duty), qber_z=qber, qber_x=qber
    )


def expected_counts(params: LinkParameters, n_pulses: float) -> DecoyCounts:
    """Mean event counts of a block of ``n_pulses`` pulses over an honest channel."""
    observed = expected_observation(params)
    p_z = params.z_basis_probability
    p_x = params.x_basis_probability
    pulses = tuple(n_pulses * p for p in params.intensity_probabilities)
    clicks = tuple(n * q for n, q in zip(pulses, observed.gains, strict=True))
    sifted_z = tuple(c * p_z * p_z for c in clicks)
    sifted_x = tuple(c * p_x * p_x for c in clicks)
    return DecoyCounts(
        pulses=_triple(pulses),
        clicks=_triple(clicks),
        sifted_z=_triple(sifted_z),
        errors_z=_triple(tuple(s * e for s, e in zip(sifted_z, observed.qber_z, strict=True))),
        sifted_x=_triple(sifted_x),
        errors_x=_triple(tuple(s * e for s, e in zip(sifted_x, observed.qber_x, strict=True))),
    )


def _ratio(numerators: Triple, denominators: Triple) -> Triple:
    values = [n / d if d > 0 else 0.0 for n, d in zip(numerators, denominators, strict=True)]
    return _triple(tuple(values))


def _triple(values: tuple[float, ...]) -> Triple:
    return (values[0], values[1], values[2])
