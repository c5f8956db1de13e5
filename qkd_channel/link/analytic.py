"""Decoy-state GLLP secret key rates: asymptotic and finite-size.

Asymptotic (GLLP with the vacuum + weak decoy bounds of Ma, Qi, Zhao, Lo, PRA 72, 012326
(2005), written for a weak rather than exact vacuum as in Lo, Ma, Chen, PRL 94, 230504)::

    R = q * { Q1_L * [1 - h(e1_U)] - Q_mu * f_EC * h(E_mu) },   q = p_signal * p_Z^2

per pulse sent. The key comes from Z-basis detections of signal pulses; ``e1`` is bounded
from X-basis errors of the decoys, which is the phase-error rate of the Z key's single
photon part. The vacuum contribution to the key is conservatively dropped, as in Ma et al.

Finite size: the bounds of Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014) — Hoeffding
intervals on the per-class counts, and the random-sampling correction ``gamma`` on the phase
error that Tomamichel, Lim, Gisin, Renner (Nat. Commun. 3, 634 (2012)) introduced — adapted to
a key extracted from signal pulses only, so that the finite-key rate converges to the
asymptotic formula above as the block grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from qkd_channel.errors import LinkParameterError
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
    "binary_entropy",
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
    single_photon_events: float
    phase_error_upper: float


def binary_entropy(p: float) -> float:
    """Shannon entropy of a biased coin, in bits; 0 at p = 0 and p = 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


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
    epsilon_sec: float = 1e-10,
    epsilon_cor: float = 1e-15,
) -> FiniteKeyRate:
    """Secret bits extractable from a block with the given counts (Lim et al. 2014 style).

    Every statistical estimate fails with probability at most ``epsilon_sec / 21`` (Lim et
    al.'s composition); the key is ``epsilon_sec``-secret and ``epsilon_cor``-correct::

        l = s1 * [1 - h(phi_U)] - f_EC * n * h(E) - 6*log2(21/eps_sec) - log2(2/eps_cor)

    where ``s1`` lower-bounds single-photon events among the Z-basis signal detections,
    ``phi_U`` upper-bounds their phase-error rate and ``n``, ``E`` are the Z-basis signal
    detections and their error rate.
    """
    if not (0.0 < epsilon_sec < 1.0 and 0.0 < epsilon_cor < 1.0):
        raise LinkParameterError("epsilon_sec and epsilon_cor must lie in (0, 1)")
    eps = epsilon_sec / 21.0
    mu = params.intensities[SIGNAL]
    p_signal = params.intensity_probabilities[SIGNAL]
    tau1 = _tau(params, 1)

    s_z1 = _single_photon_events(counts.sifted_z, params, eps)
    # Of the Z-basis single-photon events, those sent at signal intensity are a binomial
    # sample with probability p_mu * mu * e^-mu / tau1 (the class is decided independently
    # of what happens in the channel).
    share = p_signal * mu * math.exp(-mu) / tau1
    s1 = max(0.0, s_z1 * share - _hoeffding(s_z1, eps))
    s_x1 = _single_photon_events(counts.sifted_x, params, eps)
    phase = _phase_error_upper(counts, params, eps, s1, s_x1)

    n_key = counts.sifted_z[SIGNAL]
    qber = counts.errors_z[SIGNAL] / n_key if n_key > 0 else 0.5
    leak = params.error_correction_efficiency * n_key * binary_entropy(qber)
    length = (
        s1 * (1.0 - binary_entropy(phase))
        - leak
        - 6.0 * math.log2(21.0 / epsilon_sec)
        - math.log2(2.0 / epsilon_cor)
    )
    length = max(0.0, math.floor(length)) if s1 > 0 else 0.0
    n = counts.n_pulses
    per_pulse = length / n if n > 0 else 0.0
    return FiniteKeyRate(
        n_pulses=n,
        key_length=length,
        per_pulse=per_pulse,
        bits_per_second=per_pulse * params.pulse_rate_hz,
        single_photon_events=s1,
        phase_error_upper=phase,
    )


def finite_key_rate(
    params: LinkParameters,
    n_pulses: float,
    *,
    epsilon_sec: float = 1e-10,
    epsilon_cor: float = 1e-15,
) -> FiniteKeyRate:
    """Finite-key rate the model predicts for a block of ``n_pulses`` pulses (mean counts)."""
    if n_pulses <= 0:
        raise LinkParameterError(f"n_pulses must be positive, got {n_pulses}")
    return finite_key_length(
        expected_counts(params, n_pulses),
        params,
        epsilon_sec=epsilon_sec,
        epsilon_cor=epsilon_cor,
    )


def _tau(params: LinkParameters, photons: int) -> float:
    """Probability that a pulse holds ``photons`` photons, over the class mixture."""
    return sum(
        p * math.exp(-k) * k**photons / math.factorial(photons)
        for k, p in zip(params.intensities, params.intensity_probabilities, strict=True)
    )


def _hoeffding(n: float, eps: float) -> float:
    return math.sqrt(max(n, 0.0) / 2.0 * math.log(1.0 / eps))


def _class_bounds(
    per_class: tuple[float, float, float], params: LinkParameters, eps: float
) -> tuple[list[float], list[float]]:
    """Hoeffding intervals on per-class counts, rescaled by ``e^k / p_k`` (Lim et al. eq. 3)."""
    delta = _hoeffding(sum(per_class), eps)
    scale = [
        math.exp(k) / p
        for k, p in zip(params.intensities, params.intensity_probabilities, strict=True)
    ]
    lower = [s * (n - delta) for s, n in zip(scale, per_class, strict=True)]
    upper = [s * (n + delta) for s, n in zip(scale, per_class, strict=True)]
    return lower, upper


def _single_photon_events(
    per_class: tuple[float, float, float], params: LinkParameters, eps: float
) -> float:
    """Lower bound on single-photon detections in one basis over all classes (Lim eq. 2)."""
    mu, nu, w = params.intensities
    low, up = _class_bounds(per_class, params, eps)
    tau0 = _tau(params, 0)
    s0 = max(0.0, tau0 * (nu * low[VACUUM] - w * up[DECOY]) / (nu - w))
    bracket = low[DECOY] - up[VACUUM] - (nu * nu - w * w) / (mu * mu) * (up[SIGNAL] - s0 / tau0)
    s1 = _tau(params, 1) * mu * bracket / (mu * (nu - w) - nu * nu + w * w)
    return max(0.0, s1)


def _phase_error_upper(
    counts: DecoyCounts, params: LinkParameters, eps: float, s_key: float, s_test: float
) -> float:
    """Upper bound on the key's single-photon phase-error rate (Lim et al. eqs. 4-5)."""
    if s_key <= 0.0 or s_test <= 0.0:
        return 0.5
    _, nu, w = params.intensities
    low, up = _class_bounds(counts.errors_x, params, eps)
    v1 = _tau(params, 1) * (up[DECOY] - low[VACUUM]) / (nu - w)
    ratio = min(max(v1 / s_test, 0.0), 0.5)
    if ratio <= 0.0:
        return 0.0  # no certified phase errors; gamma vanishes as the ratio goes to 0
    total = s_key + s_test
    gamma = math.sqrt(
        total
        * (1.0 - ratio)
        * ratio
        / (s_key * s_test * math.log(2.0))
        * math.log2(total / (s_key * s_test * (1.0 - ratio) * ratio) / (eps * eps))
    )
    return min(ratio + gamma, 0.5)
