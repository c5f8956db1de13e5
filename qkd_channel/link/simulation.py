"""Monte Carlo photon-level simulation of a decoy-state BB84 link.

Per pulse Alice picks an intensity class, a basis and a bit; her phase-randomised weak
coherent source emits a Poisson number of photons. Photons cross the fibre (or an
eavesdropper), Bob's receiver registers each surviving photon with probability
``detector_efficiency`` and routes it to the wrong detector with probability
``misalignment_error`` when his basis matches the state's (one half otherwise). Each of his
two detectors also fires on its own with the dark-count probability. A double click is
turned into a random bit (the squashing-model prescription), and after any click both
detectors are blind for ``dead_time_pulses`` slots.

The parties' choices (Alice's class, basis and bit, Bob's basis, his double-click bit) come
from ``random_bytes``, a cryptographic source (:mod:`qkd_channel.link.choices` says why);
the physics draws from a numpy generator. Photon numbers are only ever materialised for
non-empty pulses, and pulses are processed in chunks, so memory stays bounded by Alice's
own record (three bytes per pulse) and the cost is dominated by a handful of vectorised
passes over each chunk.
"""

from __future__ import annotations

import math
import os
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import LinkParameterError
from qkd_channel.link.channel import Eavesdropper, Photons, fibre, thin
from qkd_channel.link.choices import RandomBytes, categorical, uniform_bits
from qkd_channel.link.parameters import LinkParameters
from qkd_channel.link.records import AliceRecord, BobRecord, LinkRun

__all__ = ["DEFAULT_CHUNK", "simulate"]

DEFAULT_CHUNK = 1 << 20
"""Pulses generated per vectorised step (about 40 MB of temporaries)."""

_TAIL = 1e-18  # Poisson term below which photon numbers are no longer tabulated


def simulate(
    params: LinkParameters,
    n_pulses: int,
    *,
    rng: np.random.Generator,
    random_bytes: RandomBytes = os.urandom,
    eavesdropper: Eavesdropper | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> LinkRun:
    """Send ``n_pulses`` pulses over the link and return what each end recorded.

    ``random_bytes`` supplies the parties' choices, ``rng`` the channel's randomness. The
    run is a pure function of ``params``, ``n_pulses``, the bytes ``random_bytes`` returns,
    the generator state and the eavesdropper, so tests that need a reproducible run pass a
    seeded byte source (for a given ``chunk_size``).
    """
    if n_pulses < 0:
        raise LinkParameterError(f"n_pulses must be >= 0, got {n_pulses}")
    if chunk_size <= 0:
        raise LinkParameterError(f"chunk_size must be positive, got {chunk_size}")

    source = _PhotonNumbers(params)
    # Alice's (class, basis) pairs as one categorical draw: class k and basis b (0 = Z)
    # is outcome 2k + b, with probability p_k * p_b.
    alice_outcomes = [
        p * p_basis
        for p in params.intensity_probabilities
        for p_basis in (params.z_basis_probability, params.x_basis_probability)
    ]
    classes = np.empty(n_pulses, dtype=np.uint8)
    bits = np.empty(n_pulses, dtype=np.uint8)
    bases = np.empty(n_pulses, dtype=np.uint8)
    bob_indices: list[npt.NDArray[np.int64]] = []
    bob_bases: list[npt.NDArray[np.uint8]] = []
    bob_bits: list[npt.NDArray[np.uint8]] = []
    dead_time = _DeadTime(params.dead_time_pulses)

    for start in range(0, n_pulses, chunk_size):
        stop = min(start + chunk_size, n_pulses)
        size = stop - start
        outcome = categorical(random_bytes, size, alice_outcomes)
        chunk_classes = (outcome >> 1).astype(np.uint8, copy=False)
        chunk_bases = (outcome & 1).astype(np.uint8, copy=False)
        chunk_bits = uniform_bits(random_bytes, size)
        classes[start:stop] = chunk_classes
        bits[start:stop] = chunk_bits
        bases[start:stop] = chunk_bases

        lit, photons = source.sample(chunk_classes, rng)
        sent = Photons(lit + start, photons, chunk_bases[lit], chunk_bits[lit])
        if eavesdropper is None:
            arrived = fibre(sent, params.channel_transmittance, rng)
        else:
            arrived = eavesdropper.attack(sent, params, rng)
        clicks, basis, bit = _detect(arrived, params, start, size, rng, random_bytes)
        keep = dead_time.filter(clicks)
        bob_indices.append(clicks[keep])
        bob_bases.append(basis[keep])
        bob_bits.append(bit[keep])

    bob = BobRecord(
        indices=_concat(bob_indices, np.int64),
        bases=_concat(bob_bases, np.uint8),
        bits=_concat(bob_bits, np.uint8),
    )
    return LinkRun(
        alice=AliceRecord(bits=bits, bases=bases, intensities=classes),
        bob=bob,
        n_pulses=n_pulses,
        duration_s=n_pulses / params.pulse_rate_hz,
    )


class _PhotonNumbers:
    """Inverse-CDF tables of the Poisson photon number of each intensity class.

    The class is Alice's (secret) choice; the photon number given the class is physics.
    One uniform number per pulse decides it: most pulses are empty, so a comparison with
    the class's vacuum probability settles them, and only the others search a joint table
    in which class ``k`` occupies ``[k, k + 1)``. That is several times faster than numpy's
    Poisson sampler with per-pulse means.
    """

    def __init__(self, params: LinkParameters) -> None:
        edges: list[float] = []
        photons: list[int] = []
        for k, mu in enumerate(params.intensities):
            n = 0
            cumulative = 0.0
            term = math.exp(-mu)
            # stop once the remaining Poisson terms are negligible (terms decrease past mu)
            while mu > 0.0 and (n <= mu or term > _TAIL):
                cumulative += term
                photons.append(n)
                edges.append(k + cumulative)
                n += 1
                term *= mu / n
            # the last entry absorbs the (negligible) tail so each class keeps its exact mass
            photons.append(n)
            edges.append(k + 1.0)
        self._edges = np.asarray(edges[:-1])
        self._photons = np.asarray(photons, dtype=np.int64)
        self._vacuum = np.exp(-np.asarray(params.intensities))

    def sample(
        self, classes: npt.NDArray[np.uint8], rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Offsets of the non-empty pulses among ``classes`` and their photon numbers."""
        u = rng.random(classes.size)
        lit = np.flatnonzero(u >= self._vacuum[classes])
        position = classes[lit] + u[lit]
        counts = self._photons[np.searchsorted(self._edges, position, side="right")]
        return lit, counts


def _detect(
    arrived: Photons,
    params: LinkParameters,
    start: int,
    size: int,
    rng: np.random.Generator,
    random_bytes: RandomBytes,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Bob's receiver: which pulses click, in which basis he measured, which bit he got."""
    seen = arrived.with_counts(thin(arrived.counts, params.detector_efficiency, rng))
    # One flag per pulse of the chunk and detector for dark counts, and one for light
    # reaching the receiver: far cheaper than merging sorted index arrays.
    dark = [np.zeros(size, dtype=np.bool_) for _ in range(2)]
    for flags in dark:
        flags[_dark_counts(size, params.dark_count_per_detector, rng)] = True
    lit = np.zeros(size, dtype=np.bool_)
    lit[seen.indices - start] = True
    offsets = np.flatnonzero(lit | dark[0] | dark[1])
    clicks = offsets + start

    # Bob's basis choice is independent of everything else, so it is drawn only where a
    # detector fired: the click probability of a passive or active receiver does not
    # depend on the basis.
    basis = categorical(
        random_bytes, clicks.size, (params.z_basis_probability, params.x_basis_probability)
    )
    fired = [dark[0][offsets], dark[1][offsets]]

    at = np.searchsorted(clicks, seen.indices)
    matched = basis[at] == seen.bases
    stray = rng.binomial(seen.counts, np.where(matched, params.misalignment_error, 0.5))
    on_state = seen.counts - stray > 0  # the detector that reads the state's own bit
    off_state = stray > 0
    one = seen.bits == 1
    fired[1][at] |= np.where(one, on_state, off_state)
    fired[0][at] |= np.where(one, off_state, on_state)

    bit = fired[1].view(np.uint8).copy()
    double = np.flatnonzero(fired[0] & fired[1])
    bit[double] = uniform_bits(random_bytes, double.size)
    return clicks, basis, bit


def _dark_counts(size: int, probability: float, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Sorted pulse offsets at which one detector fires spontaneously."""
    count = int(rng.binomial(size, probability))
    return np.sort(rng.choice(size, count, replace=False)).astype(np.int64)


class _DeadTime:
    """Non-paralysable dead time shared by both detectors, carried across chunks."""

    def __init__(self, pulses: int) -> None:
        self._pulses = pulses
        self._blind_until = 0  # first pulse number at which the detectors are live again

    def filter(self, clicks: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        keep = np.ones(clicks.size, dtype=np.bool_)
        if self._pulses == 0 or clicks.size == 0:
            return keep
        blind_until = self._blind_until
        span = self._pulses + 1
        for i, pulse in enumerate(clicks.tolist()):
            if pulse < blind_until:
                keep[i] = False
            else:
                blind_until = pulse + span
        self._blind_until = blind_until
        return keep


_T = TypeVar("_T", bound=np.generic)


def _concat(parts: list[npt.NDArray[_T]], dtype: type[_T]) -> npt.NDArray[_T]:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
