"""Photons in flight and the honest fibre that carries them.

The simulation only tracks non-empty pulses past Alice's source: for each one its pulse
number, how many photons it holds and the BB84 state (basis, bit) they are prepared in.
An eavesdropper is anything that maps what Alice sends to what reaches Bob's receiver, so
the honest fibre and every attack share this one small interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from qkd_channel.link.parameters import LinkParameters

__all__ = ["Eavesdropper", "Photons", "fibre", "thin"]


@dataclass(frozen=True)
class Photons:
    """Non-empty pulses: global pulse numbers, photon counts and the state they carry.

    ``bases``/``bits`` are those of the *state on the wire*: Alice's choice for the honest
    channel, the eavesdropper's choice for pulses she re-prepared.
    """

    indices: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    bases: npt.NDArray[np.uint8]
    bits: npt.NDArray[np.uint8]

    def select(self, mask: npt.NDArray[np.bool_]) -> Photons:
        """The pulses where ``mask`` holds."""
        return Photons(self.indices[mask], self.counts[mask], self.bases[mask], self.bits[mask])

    def with_counts(self, counts: npt.NDArray[np.int64]) -> Photons:
        """Same pulses with new photon counts; pulses left empty are dropped."""
        keep = counts > 0
        return Photons(self.indices[keep], counts[keep], self.bases[keep], self.bits[keep])


class Eavesdropper(Protocol):
    """Eve in place of the fibre: takes Alice's pulses, returns what reaches Bob's receiver.

    Bob's own detector efficiency, dark counts and misalignment are applied afterwards by
    the simulation, because Eve cannot change Bob's hardware.
    """

    def attack(
        self, sent: Photons, params: LinkParameters, rng: np.random.Generator
    ) -> Photons: ...


def thin(
    counts: npt.NDArray[np.int64], survival: float, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Each photon survives independently with probability ``survival`` (binomial loss).

    Draws one vectorised binomial per distinct photon number: numpy's binomial sampler is
    several times faster with a scalar ``n`` than with an array of them.
    """
    out = np.zeros_like(counts)
    if survival >= 1.0:
        out[:] = counts
        return out
    if counts.size == 0:
        return out
    present = np.flatnonzero(np.bincount(counts))  # photon numbers that occur (small ints)
    for n in present[present > 0].tolist():
        where = np.flatnonzero(counts == n)
        out[where] = rng.binomial(n, survival, size=where.size)
    return out


def fibre(sent: Photons, transmittance: float, rng: np.random.Generator) -> Photons:
    """The honest lossy channel: photons are lost independently, states are untouched."""
    return sent.with_counts(thin(sent.counts, transmittance, rng))
