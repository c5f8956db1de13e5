"""Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), section IV: their fibre system.

The paper evaluates its bound on a model of a fibre link and optimises the key rate per
pulse over the protocol's free parameters for a fixed post-processing block size ``n_X``
(key-basis detections). This module is that model, so the project's implementation of the
bound (:mod:`qkd_channel.link.finite_key`, the code the post-processing runs) can be
checked against the paper's published results: with ``n_X = 10^4`` "secret keys can be
securely distributed over a fiber length of up to 135 km", and at 100 km the rate with
``n_X = 10^9`` is "about 1.75 times" the one with ``n_X = 10^7``.

The model (their section IV): InGaAs detectors of efficiency ``eta_Bob = 10 %``, dark-count
probability ``p_dc = 6e-7`` and after-pulse probability ``p_ap = 4 %``; fibre of 0.2 dB/km;
intensities ``mu1``, ``mu2`` and ``mu3 = 2e-4``; misalignment ``e_mis = 0.5 %``;
``f_EC = 1.16``; ``eps_cor = 1e-15`` and ``eps_sec = kappa * l`` with ``kappa = 1e-15``.
Per pulse of intensity ``k``, with ``eta_sys = eta_ch * eta_Bob``::

    D_k = 1 - (1 - 2 p_dc) exp(-eta_sys k)       detection (after-pulses excluded)
    R_k = D_k (1 + p_ap)                         detection
    e_k = p_dc + e_mis (1 - exp(-eta_sys k)) + p_ap D_k / 2     detection with a bit error

The paper prints ``eta_ch`` instead of ``eta_sys`` in ``e_k``. Taken literally, that puts
the misalignment errors of a detection at ``e_mis / eta_Bob = 5 %`` whatever the distance;
with ``eta_sys`` the 1.75 ratio above comes out at 1.79, so this is the reading used.
The free parameters are the key-basis probability ``q_x``, ``p_mu1``, ``p_mu2``, ``mu1``
and ``mu2``; the key is the key basis of every intensity (the efficient design).

Reproduced (``tests/qkd_channel/test_link_published.py``): the ratio at 100 km is 1.79,
and keys reach 127 km with ``n_X = 10^4`` (6 % short of the paper's 135 km).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from qkd_channel.link.finite_key import (
    KeyDesign,
    binary_entropy,
    certify,
    entropy_balance,
    secret_length,
)
from qkd_channel.link.statistics import DecoyCounts

__all__ = [
    "PUBLISHED_RATIO_100KM",
    "PUBLISHED_REACH_KM",
    "LimPoint",
    "LimSettings",
    "LimSystem",
    "key_rate",
    "maximum_distance",
    "optimal_key_rate",
]

PUBLISHED_REACH_KM = 135.0
"""Fibre length up to which the paper's ``n_X = 10^4`` curve (Fig. 1) yields key."""

PUBLISHED_RATIO_100KM = 1.75
"""Rate at 100 km with ``n_X = 10^9`` over the rate with ``n_X = 10^7`` (Fig. 1)."""

_FIXED_POINT_STEPS = 8  # eps_sec = kappa * l: l depends on eps_sec only logarithmically
_MAX_INTENSITY = 10.0  # mean photons per pulse; far above any useful signal
_STARTS = (
    (0.9, 0.5, 0.3, 0.5, 0.1),
    (0.95, 0.4, 0.4, 0.45, 0.15),
    (0.75, 0.3, 0.5, 0.4, 0.2),
    (0.5, 0.05, 0.45, 0.45, 0.08),
)  # (q_x, p_mu1, p_mu2, mu1, mu2) the optimiser starts from when not warm-started


@dataclass(frozen=True, kw_only=True)
class LimSystem:
    """The paper's fibre-based system (section IV, dedicated fibre)."""

    detector_efficiency: float = 0.10
    dark_count_probability: float = 6e-7  #: per detector
    afterpulse_probability: float = 4e-2
    misalignment_error: float = 5e-3
    fibre_loss_db_per_km: float = 0.2
    vacuum_intensity: float = 2e-4
    error_correction_efficiency: float = 1.16
    security_constant: float = 1e-15  #: kappa, eps_sec = kappa * l
    epsilon_cor: float = 1e-15

    def detection(self, intensity: float, length_km: float) -> tuple[float, float]:
        """``(R_k, e_k)``: probabilities of a detection and of a detection with an error."""
        eta = 10.0 ** (-self.fibre_loss_db_per_km * length_km / 10.0) * self.detector_efficiency
        p_dc, p_ap = self.dark_count_probability, self.afterpulse_probability
        clicked = 1.0 - (1.0 - 2.0 * p_dc) * math.exp(-eta * intensity)
        error = (
            p_dc
            + self.misalignment_error * (1.0 - math.exp(-eta * intensity))
            + p_ap * clicked / 2.0
        )
        return clicked * (1.0 + p_ap), error


@dataclass(frozen=True)
class LimSettings:
    """The protocol's free parameters."""

    key_basis_probability: float  #: q_x
    signal_probability: float  #: p_mu1
    decoy_probability: float  #: p_mu2
    signal_intensity: float  #: mu1
    decoy_intensity: float  #: mu2

    @classmethod
    def of(cls, values: tuple[float, ...]) -> LimSettings:
        """From ``(q_x, p_mu1, p_mu2, mu1, mu2)``, the optimiser's vector."""
        q_x, p1, p2, mu1, mu2 = (float(v) for v in values)
        return cls(q_x, p1, p2, mu1, mu2)

    def values(self) -> tuple[float, float, float, float, float]:
        """``(q_x, p_mu1, p_mu2, mu1, mu2)``."""
        return (
            self.key_basis_probability,
            self.signal_probability,
            self.decoy_probability,
            self.signal_intensity,
            self.decoy_intensity,
        )


@dataclass(frozen=True)
class LimPoint:
    """One evaluated protocol: its key rate per pulse and what produced it."""

    rate: float  #: l / N, secret bits per pulse sent
    key_length: float  #: l
    pulses: float  #: N, pulses sent to fill the block
    settings: LimSettings
    balance: float = -math.inf  #: eq. (1) before rounding, in bits (negative: no key)


def key_rate(
    system: LimSystem, length_km: float, block_size: float, settings: LimSettings
) -> LimPoint:
    """The paper's ``R = l / N`` for these settings (0 when they are invalid or leave none).

    ``block_size`` is ``n_X``, the key-basis detections of all intensities; the expected
    counts of the block follow from the system model.
    """
    q_x, p1, p2, mu1, mu2 = settings.values()
    mu3 = system.vacuum_intensity
    p3 = 1.0 - p1 - p2
    if not (0.0 < q_x < 1.0 and p1 > 0.0 and p2 > 0.0 and p3 > 0.0 and mu2 > mu3):
        return LimPoint(0.0, 0.0, math.inf, settings)
    if not mu2 + mu3 < mu1 <= _MAX_INTENSITY:
        return LimPoint(0.0, 0.0, math.inf, settings)
    intensities, probabilities = (mu1, mu2, mu3), (p1, p2, p3)
    rates = [system.detection(k, length_km) for k in intensities]
    clicks_per_pulse = sum(p * r for p, (r, _) in zip(probabilities, rates, strict=True))
    pulses = block_size / (q_x * q_x * clicks_per_pulse)
    counts = _expected_counts(pulses, q_x, probabilities, rates)
    n_key, key_errors = sum(counts.sifted_z), sum(counts.errors_z)
    leak = system.error_correction_efficiency * n_key * binary_entropy(key_errors / n_key)
    verify = math.log2(2.0 / system.epsilon_cor)
    length, balance = float(block_size), 0.0
    for _ in range(_FIXED_POINT_STEPS):
        epsilon_sec = min(system.security_constant * max(length, 1.0), 0.5)
        bounds = certify(
            counts,
            intensities,
            probabilities,
            design=KeyDesign.EFFICIENT,
            epsilon_sec=epsilon_sec,
        )
        balance = entropy_balance(bounds, leak_ec=leak, leak_verify=verify, epsilon_sec=epsilon_sec)
        length = float(
            secret_length(bounds, leak_ec=leak, leak_verify=verify, epsilon_sec=epsilon_sec)
        )
        if length == 0.0:
            break
    return LimPoint(length / pulses, length, pulses, settings, balance)


def optimal_key_rate(
    system: LimSystem,
    length_km: float,
    block_size: float,
    *,
    start: LimSettings | None = None,
) -> LimPoint:
    """The best :func:`key_rate` found by Nelder-Mead from ``start`` (or a few defaults)."""
    starts = [start.values()] if start is not None else list(_STARTS)
    best: LimPoint | None = None
    for values in starts:

        def loss(v: np.ndarray) -> float:
            point = key_rate(system, length_km, block_size, LimSettings.of(tuple(v)))
            if point.rate > 0.0:
                return -point.rate * 1e6  # scaled: Nelder-Mead's tolerances are absolute
            # Where no key is left the rate is flat; the shortfall per block bit still
            # points towards settings that leave some.
            return -point.balance / block_size if math.isfinite(point.balance) else math.inf

        result = minimize(
            loss,
            np.asarray(values),
            method="Nelder-Mead",
            options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-9},
        )
        point = key_rate(system, length_km, block_size, LimSettings.of(tuple(result.x)))
        if best is None or point.rate > best.rate:
            best = point
    assert best is not None
    return best


def maximum_distance(
    system: LimSystem, block_size: float, *, start_km: float, step_km: float, resolution: float
) -> float:
    """Longest fibre with a key, to within ``resolution`` km, by continuation.

    From ``start_km`` (which must yield a key) the distance grows by ``step_km`` while the
    optimiser, warm-started from the previous optimum, still finds a key; the step halves
    whenever it does not. Warm starts track the optimal settings as they drift with
    distance, which a cold start near the cut-off, where almost every setting leaves no
    key, cannot do.
    """
    point = optimal_key_rate(system, start_km, block_size)
    if point.rate <= 0.0:
        raise ValueError(f"no key at {start_km} km to start the search from")
    distance, step = start_km, step_km
    while step >= resolution:
        trial = optimal_key_rate(system, distance + step, block_size, start=point.settings)
        if trial.rate > 0.0:
            distance, point = distance + step, trial
        else:
            step /= 2.0
    return distance


def _expected_counts(
    pulses: float,
    q_x: float,
    probabilities: tuple[float, float, float],
    rates: list[tuple[float, float]],
) -> DecoyCounts:
    """Mean counts of a block of ``pulses`` pulses; the key basis is the Z of this package."""
    q_t = 1.0 - q_x
    sent = [pulses * p for p in probabilities]

    def triple(values: list[float]) -> tuple[float, float, float]:
        return (values[0], values[1], values[2])

    return DecoyCounts(
        pulses=triple(sent),
        clicks=triple([n * r for n, (r, _) in zip(sent, rates, strict=True)]),
        sifted_z=triple([n * q_x * q_x * r for n, (r, _) in zip(sent, rates, strict=True)]),
        errors_z=triple([n * q_x * q_x * e for n, (_, e) in zip(sent, rates, strict=True)]),
        sifted_x=triple([n * q_t * q_t * r for n, (r, _) in zip(sent, rates, strict=True)]),
        errors_x=triple([n * q_t * q_t * e for n, (_, e) in zip(sent, rates, strict=True)]),
    )
