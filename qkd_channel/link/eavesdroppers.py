"""Attacks on the quantum channel, each with the signature the theory predicts.

* :class:`InterceptResend` measures a fraction of the pulses in a random basis and resends
  what she saw. Half her guesses are in the wrong basis, so a fraction ``f`` of attacked
  pulses adds about ``f/4`` to the sifted QBER: 25 % when she attacks everything, far above
  the 11 % at which post-processing aborts.
* :class:`PhotonNumberSplitting` makes a non-demolition photon-number measurement, blocks
  single-photon pulses, keeps one photon of every multi-photon pulse and forwards the rest
  over a lossless line, tuned so that Bob's gain *at the signal intensity* is what the
  honest fibre would give. The signal's gain and QBER look normal; the decoy classes'
  gains do not, and the decoy bounds expose the attack (``Y1_L`` collapses).
* :class:`BeamSplitting` replaces the fibre by a lossless line and a beam splitter with
  the fibre's transmittance, keeping the reflected photons. Bob's statistics are exactly
  those of the honest link; what Eve learns is bounded by the multi-photon part that GLLP
  already hands to her, so the certified key stays secret.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import LinkParameterError
from qkd_channel.link.channel import Photons, fibre, thin
from qkd_channel.link.parameters import SIGNAL, LinkParameters
from qkd_channel.link.statistics import (
    DecoyObservation,
    expected_observation,
    observation_from_arrivals,
)

__all__ = ["BeamSplitting", "InterceptResend", "PhotonNumberSplitting"]

_MAX_PHOTONS = 40  # Poisson terms beyond this are below double precision for mu <= 5


class InterceptResend:
    """Measure-and-resend on a random ``fraction`` of the pulses, next to Alice.

    Eve measures with an ideal detector in a basis drawn with Alice's basis bias (the best
    she can do without knowing the basis), and resends the same number of photons prepared
    in the state she found, so Bob's gain is unchanged and only the QBER betrays her. Empty
    pulses give her nothing to measure and pass as they are.
    """

    def __init__(self, fraction: float = 1.0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise LinkParameterError(f"fraction must lie in [0, 1], got {fraction}")
        self.fraction = fraction

    def attack(self, sent: Photons, params: LinkParameters, rng: np.random.Generator) -> Photons:
        size = sent.indices.size
        hit = rng.random(size) < self.fraction
        eve_basis = (rng.random(size) >= params.z_basis_probability).view(np.uint8)
        guess = rng.integers(0, 2, size, dtype=np.uint8)
        eve_bit = np.where(eve_basis == sent.bases, sent.bits, guess)
        resent = Photons(
            indices=sent.indices,
            counts=sent.counts,
            bases=np.where(hit, eve_basis, sent.bases),
            bits=np.where(hit, eve_bit, sent.bits),
        )
        return fibre(resent, params.channel_transmittance, rng)

    def expected_observation(self, params: LinkParameters) -> DecoyObservation:
        """Gains and QBERs the attack produces on average (the analytic twin of ``attack``).

        Gains are those of the honest link. A re-prepared pulse in the wrong basis reaches
        Bob's two detectors in equal shares, so its clicks err half the time; in the right
        basis it behaves like Alice's own pulse. Eve picks the wrong basis with probability
        ``p_X`` for Z-basis pulses and ``p_Z`` for X-basis pulses.
        """
        honest = expected_observation(params)
        f = self.fraction

        def mixed(qber: tuple[float, float, float], wrong: float) -> tuple[float, float, float]:
            a, b, c = (e * (1.0 - f * wrong) + 0.5 * f * wrong for e in qber)
            return a, b, c

        return DecoyObservation(
            gains=honest.gains,
            qber_z=mixed(honest.qber_z, params.x_basis_probability),
            qber_x=mixed(honest.qber_x, params.z_basis_probability),
        )


class PhotonNumberSplitting:
    """Block single photons, split multi-photon pulses, forward the rest without loss.

    Eve picks the forwarding probabilities once from the public link description so that
    Bob's expected gain at the signal intensity matches the honest fibre's: if forwarding
    ``n - 1`` photons of every multi-photon pulse already gives too much, she forwards only
    a share of them and blocks all single photons; otherwise she lets just enough single
    photons through. She cannot tell decoy pulses from signal pulses, so the same rule
    applies to them, which is what the decoy-state method detects.
    """

    def attack(self, sent: Photons, params: LinkParameters, rng: np.random.Generator) -> Photons:
        single_pass, multi_pass = self.forwarding(params)
        single = sent.counts == 1
        passes = rng.random(sent.indices.size) < np.where(single, single_pass, multi_pass)
        forwarded = np.where(single, 1, sent.counts - 1)
        return sent.with_counts(np.where(passes, forwarded, 0))

    def expected_observation(self, params: LinkParameters) -> DecoyObservation:
        """Gains and QBERs the attack produces on average (the analytic twin of ``attack``)."""
        single_pass, multi_pass = self.forwarding(params)
        arrivals: list[dict[int, float]] = []
        for mu in params.intensities:
            arrived: dict[int, float] = {}
            if mu > 0.0:
                poisson = math.exp(-mu)
                for n in range(1, _MAX_PHOTONS):
                    poisson *= mu / n
                    forwarded, share = (1, single_pass) if n == 1 else (n - 1, multi_pass)
                    arrived[forwarded] = arrived.get(forwarded, 0.0) + poisson * share
            arrivals.append(arrived)
        return observation_from_arrivals(params, arrivals)

    @staticmethod
    def forwarding(params: LinkParameters) -> tuple[float, float]:
        """Probabilities of forwarding a single-photon and a multi-photon pulse."""
        mu = params.intensities[SIGNAL]
        eta_det = params.detector_efficiency
        honest = 1.0 - math.exp(-params.transmittance * mu)
        # Detection probability contributed by multi-photon pulses when n - 1 photons reach
        # Bob losslessly: sum_{n>=2} P_mu(n) * [1 - (1 - eta_det)^(n-1)].
        if eta_det < 1.0:
            remaining = math.exp(-mu) * (math.exp(mu * (1.0 - eta_det)) - 1.0) / (1.0 - eta_det)
        else:
            remaining = mu * math.exp(-mu)
        multi = (1.0 - math.exp(-mu)) - remaining
        single = mu * math.exp(-mu) * eta_det
        if multi >= honest:
            return 0.0, honest / multi
        return min(1.0, (honest - multi) / single), 1.0


class BeamSplitting:
    """Lossless line plus a beam splitter of the fibre's transmittance; Eve keeps the rest.

    :attr:`tapped_pulses` lists the pulses of which Eve holds at least one photon: with a
    quantum memory she measures them after the basis announcement and learns Alice's bit.
    """

    def __init__(self) -> None:
        self._tapped: list[npt.NDArray[np.int64]] = []

    def attack(self, sent: Photons, params: LinkParameters, rng: np.random.Generator) -> Photons:
        to_bob = thin(sent.counts, params.channel_transmittance, rng)
        self._tapped.append(sent.indices[sent.counts - to_bob > 0])
        return sent.with_counts(to_bob)

    @property
    def tapped_pulses(self) -> npt.NDArray[np.int64]:
        """Sorted pulse numbers of which Eve kept a photon."""
        if not self._tapped:
            return np.empty(0, dtype=np.int64)
        return np.sort(np.concatenate(self._tapped))
