"""Finite-key decoy-state bounds of Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014).

One function, :func:`certify`, turns a block's public counts (detections per intensity
class in each basis, errors in the test basis) into what the block certifies: a lower
bound on its vacuum and single-photon events in the key basis and an upper bound on the
single-photon phase-error rate. :func:`secret_length` turns that into the key length of
Lim et al.'s eq. (1). The analytic model (expected counts) and the post-processing
(measured counts) call the same two functions, so the theory and the code cannot drift
apart.

Basis names: Lim et al. extract the key from their X basis; here the key basis is Z
(basis 0) and the test basis X (basis 1), the convention of the rest of the package. With
the key-basis counts ``n_k``, test-basis counts ``t_k`` and test-basis errors ``m_k`` of
class ``k`` (intensities ``mu1 > mu2 + mu3``, ``mu2 > mu3 >= 0``, probabilities ``p_k``)::

    n_k^+- = e^k / p_k * (n_k +- sqrt(n/2 ln(1/eps)))                n = sum n_k (same for t, m)
    s_0   >= tau0 (mu2 n_mu3^- - mu3 n_mu2^+) / (mu2 - mu3)                              (2)
    s_1   >= tau1 mu1 [n_mu2^- - n_mu3^+ - (mu2^2 - mu3^2)/mu1^2 (n_mu1^+ - s_0/tau0)]
                / (mu1 (mu2 - mu3) - mu2^2 + mu3^2)                                    (3)
    v_1   <= tau1 (m_mu2^+ - m_mu3^-) / (mu2 - mu3)          (test-basis counts)          (4)
    phi   <= v_1/s_1' + gamma(eps, v_1/s_1', s_1', s_1),   s_1' the test basis's s_1     (5)
    gamma(eps, b, c, d) = sqrt((c+d)(1-b)b / (c d ln 2) * log2((c+d) / (c d (1-b) b eps^2)))
    l = floor(s_0 + s_1 (1 - h(phi)) - leak_EC - leak_verify - 6 log2(1/eps))         (1)

with ``tau_j = sum_k p_k e^-k k^j / j!`` and every failure event given the same ``eps``.

**The security parameter, term by term** (Lim et al., appendix B, eq. B4): the key is
``eps_sec``-secret with ``eps_sec = 2 (2 a1 + a2 + a3) + nu + 10 e1 + 2 e2``; setting every
term to ``eps = eps_sec / 21`` gives the ``6 log2(21 / eps_sec)`` of eq. (1)
(:func:`epsilon_budget` lists the terms). It is ``eps_cor``-correct through error
verification, so the block is ``(eps_sec + eps_cor)``-secure (composable).

:class:`KeyDesign` selects the protocol the counts come from. ``EFFICIENT`` is Lim et
al.'s protocol as published. ``SIGNAL_SAMPLED`` is the project's first design, kept for
comparison: key from signal-class detections only (one more Hoeffding step for the signal
share of the single-photon events) and, in the post-processing, a random sample of them
sacrificed for the QBER (one more: 22 terms instead of 21). It is Lim-style accounting,
not a published proof.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from qkd_channel.link.parameters import DECOY, SIGNAL, VACUUM
from qkd_channel.link.statistics import DecoyCounts

__all__ = [
    "LIM_EPSILON_TERMS",
    "EpsilonTerm",
    "FiniteKeyBounds",
    "KeyDesign",
    "binary_entropy",
    "certify",
    "entropy_balance",
    "epsilon_budget",
    "secret_length",
]

Triple = tuple[float, float, float]

LIM_EPSILON_TERMS = 21
"""Failure events of Lim et al.'s bound, each given ``eps_sec / 21`` (eq. B4)."""
_SAMPLE_TERMS = LIM_EPSILON_TERMS + 1  # the sacrificed sample of the signal-sampled design


class KeyDesign(enum.Enum):
    """Which detections make the key and how the phase error is estimated."""

    EFFICIENT = "efficient"
    """Lim et al. 2014: the key is every key-basis detection of every intensity class
    (vacuum and single-photon events both count), the test basis estimates the phase
    error, nothing is sacrificed. Pair it with a biased basis choice."""

    SIGNAL_SAMPLED = "signal-sampled"
    """The project's first design: the key is the key-basis detections of signal pulses;
    the post-processing sacrifices a random sample of them for the QBER."""


@dataclass(frozen=True)
class FiniteKeyBounds:
    """What a block's statistics certify about the key it will be hashed from."""

    vacuum_events: float  #: s_0, lower bound (0 for the signal-sampled design)
    single_photon_events: float  #: s_1, lower bound
    phase_error_rate: float  #: phi, upper bound on the single-photon phase-error rate, <= 1/2
    epsilon_terms: int  #: failure events eps_sec is split over (21, or 22 with a sample)

    @property
    def certifies_nothing(self) -> bool:
        """True when no error-correction cost could leave any secret key."""
        entropy = self.single_photon_events * (1.0 - binary_entropy(self.phase_error_rate))
        return self.vacuum_events + entropy <= 0.0


@dataclass(frozen=True)
class EpsilonTerm:
    """One failure event of the bound: what it covers, how often it counts, its share."""

    covers: str
    multiplicity: int
    value: float


def binary_entropy(p: float) -> float:
    """Shannon entropy of a biased coin, in bits; 0 at p = 0 and p = 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def epsilon_budget(epsilon_sec: float) -> tuple[EpsilonTerm, ...]:
    """Lim et al.'s eq. (B4) with every term equal: the multiplicities sum to 21.

    ``sum(t.multiplicity * t.value for t in epsilon_budget(e)) == e`` (up to rounding).
    """
    eps = epsilon_sec / LIM_EPSILON_TERMS
    return (
        EpsilonTerm("Hoeffding bounds on key-basis counts per class (5 one-sided)", 5, eps),
        EpsilonTerm("Hoeffding bounds on test-basis counts per class (5 one-sided)", 5, eps),
        EpsilonTerm("Hoeffding bounds on test-basis errors, decoy and vacuum (2)", 2, eps),
        EpsilonTerm("random-sampling bound on the phase error (gamma), smoothing x2x2", 4, eps),
        EpsilonTerm("chain rule splitting off the single-photon part (smoothing x2)", 2, eps),
        EpsilonTerm("chain rule splitting off the vacuum part (smoothing x2)", 2, eps),
        EpsilonTerm("leftover hash lemma (privacy amplification)", 1, eps),
    )


def certify(
    counts: DecoyCounts,
    intensities: Triple,
    probabilities: Triple,
    *,
    design: KeyDesign,
    epsilon_sec: float,
    sample_size: int = 0,
    asymptotic: bool = False,
) -> FiniteKeyBounds:
    """Bounds on the key of a block with these public counts (module docstring).

    ``counts.errors_z`` is not used: the key basis's errors are paid for by error
    correction, never estimated here. ``sample_size`` (signal-sampled design only) is the
    number of key bits sacrificed at random for the QBER; the bounds then hold for the
    rest. ``asymptotic=True`` drops every statistical correction (the limit of infinitely
    large blocks, for counts that are expected values).
    """
    if not 0.0 < epsilon_sec < 1.0:
        raise ValueError("epsilon_sec must lie in (0, 1)")
    if sample_size and design is not KeyDesign.SIGNAL_SAMPLED:
        raise ValueError("only the signal-sampled design sacrifices a sample")
    terms = _SAMPLE_TERMS if sample_size else LIM_EPSILON_TERMS
    stats = _Decoy(intensities, probabilities, 0.0 if asymptotic else epsilon_sec / terms)
    test_single = stats.single_photon_events(counts.sifted_x)
    if design is KeyDesign.EFFICIENT:
        vacuum = stats.vacuum_events(counts.sifted_z)
        single = stats.single_photon_events(counts.sifted_z)
    else:
        vacuum, single = 0.0, stats.signal_share(stats.single_photon_events(counts.sifted_z))
    phase = stats.phase_error_rate(counts.errors_x, test_single, single)
    if sample_size:
        single, phase = stats.after_sample(single, phase, sample_size, counts.sifted_z[SIGNAL])
    return FiniteKeyBounds(
        vacuum_events=vacuum,
        single_photon_events=single,
        phase_error_rate=phase,
        epsilon_terms=terms,
    )


def secret_length(
    bounds: FiniteKeyBounds, *, leak_ec: float, leak_verify: float, epsilon_sec: float
) -> int:
    """Lim et al.'s eq. (1): secret bits left after error correction and verification.

    ``leak_ec`` is what error correction disclosed (or a model of it, ``f_EC n h(E)``);
    ``leak_verify`` what verification disclosed (Lim et al. write ``log2(2/eps_cor)``).
    Zero when nothing is left.
    """
    if bounds.single_photon_events <= 0.0 and bounds.vacuum_events <= 0.0:
        return 0
    balance = entropy_balance(
        bounds, leak_ec=leak_ec, leak_verify=leak_verify, epsilon_sec=epsilon_sec
    )
    return max(0, math.floor(balance))


def entropy_balance(
    bounds: FiniteKeyBounds, *, leak_ec: float, leak_verify: float, epsilon_sec: float
) -> float:
    """Eq. (1) before rounding: negative when the block is short of secret by that much.

    Optimisers need it: the key length is flat at zero wherever no key is left.
    """
    return (
        bounds.vacuum_events
        + bounds.single_photon_events * (1.0 - binary_entropy(bounds.phase_error_rate))
        - leak_ec
        - leak_verify
        - 6.0 * math.log2(bounds.epsilon_terms / epsilon_sec)
    )


class _Decoy:
    """The decoy-state estimates of one source, every failure event given ``eps``.

    ``eps = 0`` means no statistical correction at all (expected counts, infinite block).
    """

    def __init__(self, intensities: Triple, probabilities: Triple, eps: float) -> None:
        self.mu = intensities
        self.p = probabilities
        self.eps = eps
        self.tau0 = self._tau(0)
        self.tau1 = self._tau(1)

    def _tau(self, photons: int) -> float:
        """Probability that a pulse holds ``photons`` photons, over the class mixture."""
        return sum(
            p * math.exp(-k) * k**photons / math.factorial(photons)
            for k, p in zip(self.mu, self.p, strict=True)
        )

    def deviation(self, total: float) -> float:
        """Hoeffding's ``sqrt(n/2 ln(1/eps))`` for a total of ``n`` events."""
        if self.eps == 0.0:
            return 0.0
        return math.sqrt(max(total, 0.0) / 2.0 * math.log(1.0 / self.eps))

    def _rescaled(self, per_class: Triple) -> tuple[list[float], list[float]]:
        """``n_k^-`` and ``n_k^+``: per-class counts widened and rescaled by ``e^k / p_k``."""
        delta = self.deviation(sum(per_class))
        scale = [math.exp(k) / p for k, p in zip(self.mu, self.p, strict=True)]
        lower = [s * (n - delta) for s, n in zip(scale, per_class, strict=True)]
        upper = [s * (n + delta) for s, n in zip(scale, per_class, strict=True)]
        return lower, upper

    def vacuum_events(self, per_class: Triple) -> float:
        """Eq. (2): lower bound on detections of vacuum pulses in one basis."""
        _, nu, w = self.mu
        low, up = self._rescaled(per_class)
        return max(0.0, self.tau0 * (nu * low[VACUUM] - w * up[DECOY]) / (nu - w))

    def single_photon_events(self, per_class: Triple) -> float:
        """Eq. (3): lower bound on detections of single-photon pulses in one basis."""
        mu, nu, w = self.mu
        low, up = self._rescaled(per_class)
        s0 = self.vacuum_events(per_class)
        bracket = (
            low[DECOY] - up[VACUUM] - (nu * nu - w * w) / (mu * mu) * (up[SIGNAL] - s0 / self.tau0)
        )
        return max(0.0, self.tau1 * mu * bracket / (mu * (nu - w) - nu * nu + w * w))

    def signal_share(self, single: float) -> float:
        """Single-photon events sent at signal intensity, out of ``single`` in all classes.

        The class is chosen independently of the channel, so they are a binomial sample
        with probability ``p_mu mu e^-mu / tau1``; one more Hoeffding step bounds it.
        """
        mu, p_signal = self.mu[SIGNAL], self.p[SIGNAL]
        share = p_signal * mu * math.exp(-mu) / self.tau1
        return max(0.0, single * share - self.deviation(single))

    def phase_error_rate(self, test_errors: Triple, test_single: float, key_single: float) -> float:
        """Eqs. (4)-(5): upper bound on the key's single-photon phase-error rate."""
        if key_single <= 0.0 or test_single <= 0.0:
            return 0.5
        _, nu, w = self.mu
        low, up = self._rescaled(test_errors)
        errors = self.tau1 * (up[DECOY] - low[VACUUM]) / (nu - w)
        ratio = min(max(errors / test_single, 0.0), 0.5)
        if ratio == 0.0 or ratio == 0.5 or self.eps == 0.0:
            return ratio  # gamma vanishes as the ratio goes to 0 (b log 1/b -> 0)
        total = test_single + key_single
        product = test_single * key_single
        variance = (1.0 - ratio) * ratio
        gamma = math.sqrt(
            total
            * variance
            / (product * math.log(2.0))
            * math.log2(total / (product * variance * self.eps**2))
        )
        return min(ratio + gamma, 0.5)

    def after_sample(
        self, single: float, phase: float, sample_size: int, candidates: float
    ) -> tuple[float, float]:
        """Bounds for the key left once ``sample_size`` of ``candidates`` bits are removed.

        If ``S >= s`` key candidates are single-photon, a uniformly random sample holds at
        most ``k S / N + d`` of them except with probability ``eps`` (Hoeffding without
        replacement, ``d = sqrt(k/2 ln(1/eps))``), so ``s (1 - k/N) - d`` remain; the
        sample can only remove phase errors, so their rate grows at most by the factor
        ``1 / (1 - k/N - d/s)``.
        """
        if single <= 0.0 or candidates <= 0.0:
            return 0.0, 0.5
        drift = self.deviation(sample_size)
        kept_share = 1.0 - sample_size / candidates
        kept = single * kept_share - drift
        denominator = kept_share - drift / single
        if kept <= 0.0 or denominator <= 0.0:
            return 0.0, 0.5
        return kept, min(phase / denominator, 0.5)
