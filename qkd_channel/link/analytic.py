"""Decoy-state secret key rates of the link model: asymptotic GLLP and finite-key.

Asymptotic (GLLP with the vacuum + weak decoy bounds of Ma, Qi, Zhao, Lo, PRA 72, 012326
(2005), written for a weak rather than exact vacuum as in Lo, Ma, Chen, PRL 94, 230504)::

    R = q * { Q1_L * [1 - h(e1_U)] - Q_mu * f_EC * h(E_mu) },   q = p_signal * p_Z^2

per pulse sent. The key comes from Z-basis detections of signal pulses; ``e1`` is bounded
from X-basis errors of the decoys, which is the phase-error rate of the Z key's single
photon part. The vacuum contribution to the key is conservatively dropped, as in Ma et al.
This is the textbook formula: the literature cross-checks and the Bristol fit use it.

Finite key: the bound of Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014)
(:mod:`qkd_channel.link.finite_key`) on the expected counts of a block, for either
:class:`~qkd_channel.link.finite_key.KeyDesign`; :func:`asymptotic_key_rate` is its limit
for infinitely large blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from qkd_channel.errors import LinkParameterError
from qkd_channel.link.finite_key import KeyDesign, binary_entropy, certify, secret_length
from qkd_channel.link.parameters import DECOY, SIGNAL, VACUUM, LinkParameters
from qkd_channel.link.records import LinkRun
from qkd_channel.link.statistics import (
    DecoyCounts,
    DecoyObservation,
    count_run,
    expected_counts,
    expected_observation,
)

__all__ = [
    "DecoyBounds",
    "FiniteKeyRate",
    "KeyRate",
    "asymptotic_key_rate",
    "decoy_bounds",
    "estimate_key_rate",
    "finite_key_length",
    "finite_key_rate",
    "key_rate_from_observation",
    "secret_key_rate",
]


@dataclass(frozen=True)
class DecoyBounds:
    """What the decoy analysis certifies about single-photon signal pulses.

    ``y0``: background yield; ``y1_lower``: single-photon yield; ``q1_lower``: single-photon
    gain of the signal class (``Y1 * mu * exp(-mu)``); ``e1_upper``: single-photon phase
    error rate (capped at 1/2).
    """

    y0: float
    y1_lower: float
    q1_lower: float
    e1_upper: float


@dataclass(frozen=True)
class KeyRate:
    """An asymptotic secret key rate with the quantities it was computed from."""

    per_pulse: float
    bits_per_second: float
    signal_gain: float
    signal_qber: float
    bounds: DecoyBounds


@dataclass(frozen=True)
class FiniteKeyRate:
    """Secret key extractable from one block of ``n_pulses`` pulses."""

    n_pulses: float
    key_length: float
    per_pulse: float
    bits_per_second: float
    vacuum_events: float
    single_photon_events: float
    phase_error_upper: float


def decoy_bounds(observed: DecoyObservation, params: LinkParameters) -> DecoyBounds:
    """Lower bound on Y1 and upper bound on e1 from signal, weak decoy and vacuum rates.

    With intensities ``mu > nu > w >= 0`` (``w = 0`` gives Ma et al.'s eqs. for vacuum +
    weak decoy)::

        Y0_L = max(0, (nu*Q_w*e^w - w*Q_nu*e^nu) / (nu - w))
        Y1_L = mu / (mu*nu - mu*w - nu^2 + w^2)
               * [Q_nu*e^nu - Q_w*e^w - (nu^2 - w^2)/mu^2 * (Q_mu*e^mu - Y0_L)]
        e1_U = (E_nu*Q_nu*e^nu - E_w*Q_w*e^w) / ((nu - w) * Y1_L)
    """
    mu, nu, w = params.intensities
    q_mu, q_nu, q_w = observed.gains
    e_nu, e_w = observed.qber_x[DECOY], observed.qber_x[VACUUM]
    y0 = max(0.0, (nu * q_w * math.exp(w) - w * q_nu * math.exp(nu)) / (nu - w))
    y1 = (
        mu
        / (mu * nu - mu * w - nu * nu + w * w)
        * (
            q_nu * math.exp(nu)
            - q_w * math.exp(w)
            - (nu * nu - w * w) / (mu * mu) * (q_mu * math.exp(mu) - y0)
        )
    )
    if y1 <= 0.0:
        return DecoyBounds(y0=y0, y1_lower=0.0, q1_lower=0.0, e1_upper=0.5)
    e1 = (e_nu * q_nu * math.exp(nu) - e_w * q_w * math.exp(w)) / ((nu - w) * y1)
    return DecoyBounds(
        y0=y0, y1_lower=y1, q1_lower=y1 * mu * math.exp(-mu), e1_upper=min(max(e1, 0.0), 0.5)
    )


def _exact_bounds(params: LinkParameters, observed: DecoyObservation) -> DecoyBounds:
    """Single-photon yield and error of the honest model: the infinite-decoy limit."""
    if params.intensities[VACUUM] > 0.0 or params.dark_count_probability == 0.0:
        raise LinkParameterError("exact bounds need an exact vacuum class and Y0 > 0")
    mu = params.intensities[SIGNAL]
    y0 = params.dark_count_probability
    eta = params.transmittance
    p_d = params.dark_count_per_detector
    e_det = params.misalignment_error
    duty = observed.gains[VACUUM] / y0  # the dead-time factor, read off the vacuum class
    # One photon reaches at most one detector: wrong (eta*e_det), right, or none (1 - eta);
    # dark counts fire independently on each detector.
    y1 = 1.0 - (1.0 - y0) * (1.0 - eta)
    wrong_only = eta * e_det * (1.0 - p_d) + (1.0 - eta) * p_d * (1.0 - p_d)
    both = eta * p_d + (1.0 - eta) * p_d * p_d
    e1 = (wrong_only + 0.5 * both) / y1
    return DecoyBounds(
        y0=y0 * duty, y1_lower=y1 * duty, q1_lower=y1 * duty * mu * math.exp(-mu), e1_upper=e1
    )


def key_rate_from_observation(observed: DecoyObservation, params: LinkParameters) -> KeyRate:
    """Asymptotic GLLP rate for the given (expected or measured) decoy statistics."""
    return _rate(observed, decoy_bounds(observed, params), params)


def secret_key_rate(
    params: LinkParameters, *, bounds: Literal["vacuum+weak", "exact"] = "vacuum+weak"
) -> KeyRate:
    """Asymptotic secret key rate the model predicts for an honest channel.

    ``bounds="exact"`` uses the true single-photon yield and error rate, i.e. the limit of
    infinitely many decoy intensities; it is the benchmark the vacuum + weak decoy bound
    approaches as the decoy intensity goes to zero.
    """
    observed = expected_observation(params)
    if bounds == "exact":
        return _rate(observed, _exact_bounds(params, observed), params)
    return key_rate_from_observation(observed, params)


def estimate_key_rate(run: LinkRun, params: LinkParameters) -> KeyRate:
    """Asymptotic rate inferred from a simulated run's measured gains and QBERs.

    This is what Alice and Bob can certify from their data alone: an attack that reshapes
    the photon-number statistics (photon-number splitting) shows up here even when the
    signal's gain and QBER look normal.
    """
    return key_rate_from_observation(count_run(run).observation(), params)


def _rate(observed: DecoyObservation, bounds: DecoyBounds, params: LinkParameters) -> KeyRate:
    q_mu = observed.gains[SIGNAL]
    e_mu = observed.qber_z[SIGNAL]
    q = params.intensity_probabilities[SIGNAL] * params.z_basis_probability**2
    per_pulse = q * (
        bounds.q1_lower * (1.0 - binary_entropy(bounds.e1_upper))
        - q_mu * params.error_correction_efficiency * binary_entropy(e_mu)
    )
    per_pulse = max(per_pulse, 0.0)
    return KeyRate(
        per_pulse=per_pulse,
        bits_per_second=per_pulse * params.pulse_rate_hz,
        signal_gain=q_mu,
        signal_qber=e_mu,
        bounds=bounds,
    )


def finite_key_length(
    counts: DecoyCounts,
    params: LinkParameters,
    *,
    design: KeyDesign = KeyDesign.EFFICIENT,
    epsilon_sec: float = 1e-10,
    epsilon_cor: float = 1e-15,
) -> FiniteKeyRate:
    """Secret bits a block with these counts yields, by Lim et al.'s eq. (1).

    Error correction is charged as the model's ``f_EC n h(E)`` on the key's detections
    and verification as ``log2(2/eps_cor)``, as Lim et al. evaluate it; the post-processing
    charges what it really disclosed instead. The key is ``eps_sec``-secret and
    ``eps_cor``-correct (:mod:`qkd_channel.link.finite_key`).
    """
    if not (0.0 < epsilon_sec < 1.0 and 0.0 < epsilon_cor < 1.0):
        raise LinkParameterError("epsilon_sec and epsilon_cor must lie in (0, 1)")
    bounds = certify(
        counts,
        params.intensities,
        params.intensity_probabilities,
        design=design,
        epsilon_sec=epsilon_sec,
    )
    length = secret_length(
        bounds,
        leak_ec=_model_leak(counts, params, design),
        leak_verify=math.log2(2.0 / epsilon_cor),
        epsilon_sec=epsilon_sec,
    )
    n = counts.n_pulses
    per_pulse = length / n if n > 0 else 0.0
    return FiniteKeyRate(
        n_pulses=n,
        key_length=float(length),
        per_pulse=per_pulse,
        bits_per_second=per_pulse * params.pulse_rate_hz,
        vacuum_events=bounds.vacuum_events,
        single_photon_events=bounds.single_photon_events,
        phase_error_upper=bounds.phase_error_rate,
    )


def finite_key_rate(
    params: LinkParameters,
    n_pulses: float,
    *,
    design: KeyDesign = KeyDesign.EFFICIENT,
    epsilon_sec: float = 1e-10,
    epsilon_cor: float = 1e-15,
) -> FiniteKeyRate:
    """Finite-key rate the model predicts for a block of ``n_pulses`` pulses (mean counts)."""
    if n_pulses <= 0:
        raise LinkParameterError(f"n_pulses must be positive, got {n_pulses}")
    return finite_key_length(
        expected_counts(params, n_pulses),
        params,
        design=design,
        epsilon_sec=epsilon_sec,
        epsilon_cor=epsilon_cor,
    )


def asymptotic_key_rate(
    params: LinkParameters, *, design: KeyDesign = KeyDesign.EFFICIENT
) -> float:
    """Secret bits per pulse of the finite-key bound's infinite-block limit.

    The same decoy estimates without any statistical correction or ``eps`` term, on the
    expected counts per pulse: what :func:`finite_key_rate` tends to as the block grows.
    For the signal-sampled design this is the vacuum + weak decoy GLLP rate of
    :func:`secret_key_rate`.
    """
    counts = expected_counts(params, 1.0)
    bounds = certify(
        counts,
        params.intensities,
        params.intensity_probabilities,
        design=design,
        epsilon_sec=0.5,
        asymptotic=True,
    )
    entropy = bounds.single_photon_events * (1.0 - binary_entropy(bounds.phase_error_rate))
    return max(0.0, bounds.vacuum_events + entropy - _model_leak(counts, params, design))


def _model_leak(counts: DecoyCounts, params: LinkParameters, design: KeyDesign) -> float:
    """``f_EC n h(E)`` over the detections the design makes its key from."""
    if design is KeyDesign.EFFICIENT:
        n, errors = sum(counts.sifted_z), sum(counts.errors_z)
    else:
        n, errors = counts.sifted_z[SIGNAL], counts.errors_z[SIGNAL]
    if n <= 0:
        return 0.0
    return params.error_correction_efficiency * n * binary_entropy(errors / n)
