"""Monte Carlo photon-level simulation of a decoy-state BB84 link.

Per pulse Alice picks an intensity class, a basis and a bit; her phase-randomised weak
coherent source emits a Poisson number of photons. Photons cross the fibre (or an
eavesdropper), Bob's receiver registers each surviving photon with probability
``detector_efficiency`` and routes it to the wrong detector with probability
``misalignment_error`` when his basis matches the state's (one half otherwise). Each of his
two detectors also fires on its own with the dark-count probability. A double click is
turned into a random bit (the squashing-model prescription), and after any click both
detectors are blind for ``dead_time_pulses`` slots.

Photon numbers are only ever materialised for non-empty pulses, and pulses are processed
in chunks, so memory stays bounded by Alice's own record (three bytes per pulse) and the
cost is dominated by a handful of vectorised passes over each chunk.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import LinkParameterError
from qkd_channel.link.channel import Eavesdropper, Photons, fibre, thin
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
    eavesdropper: Eavesdropper | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> LinkRun:
    """Send ``n_pulses`` pulses over the link and return what each end recorded.

    The run is a pure function of ``params``, ``n_pulses``, the generator state and the
    eavesdropper, so a seeded generator reproduces it exactly (for a given ``chunk_size``).
    """
    if n_pulses < 0:
        raise LinkParameterError(f"n_pulses must be >= 0, got {n_pulses}")
    if chunk_size <= 0:
        raise LinkParameterError(f"chunk_size must be positive, got {chunk_size}")

    source = _SourceTable(params)
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
        chunk_classes, lit, photons = source.sample(rng, size)
        chunk_bits = rng.integers(0, 2, size, dtype=np.uint8)
        chunk_bases = (rng.random(size) >= params.z_basis_probability).view(np.uint8)
        classes[start:stop] = chunk_classes
        bits[start:stop] = chunk_bits
        bases[start:stop] = chunk_bases

        sent = Photons(lit + start, photons, chunk_bases[lit], chunk_bits[lit])
        if eavesdropper is None:
            arrived = fibre(sent, params.channel_transmittance, rng)
        else:
            arrived = eavesdropper.attack(sent, params, rng)
        clicks, basis, bit = _detect(arrived, params, start, size, rng)
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


class _SourceTable:
    """Joint inverse-CDF table of (intensity class, photon number).

    One uniform number per pulse picks both the class and the Poisson photon number, which
    is several times faster than numpy's Poisson sampler with per-pulse means. Most pulses
    are empty, so the class comes from two comparisons and the table is only searched for
    the pulses whose number lies above their class's vacuum share.
    """

    def __init__(self, params: LinkParameters) -> None:
        edges: list[float] = []
        photons: list[int] = []
        class_starts: list[float] = []
        vacuum_tops: list[float] = []
        mass_before = 0.0
        for mu, p_class in zip(params.intensities, params.intensity_probabilities, strict=True):
            class_starts.append(mass_before)
            vacuum_tops.append(mass_before + p_class * math.exp(-mu))
            n = 0
            cumulative = 0.0
            term = math.exp(-mu)
            # stop once the remaining Poisson terms are negligible (terms decrease past mu)
            while mu > 0.0 and (n <= mu or term > _TAIL):
                cumulative += term
                photons.append(n)
                edges.append(mass_before + p_class * cumulative)
                n += 1
                term *= mu / n
            # the last entry absorbs the (negligible) tail so each class keeps its exact mass
            photons.append(n)
            mass_before += p_class
            edges.append(mass_before)
        self._edges = np.asarray(edges[:-1])
        self._photons = np.asarray(photons, dtype=np.int64)
        self._class_edges = np.asarray(class_starts[1:])
        self._vacuum_tops = np.asarray(vacuum_tops)

    def sample(
        self, rng: np.random.Generator, size: int
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Classes of all pulses, offsets of the non-empty ones and their photon numbers."""
        u = rng.random(size)
        classes = (u >= self._class_edges[0]).view(np.uint8) + (u >= self._class_edges[1]).view(
            np.uint8
        )
        lit = np.flatnonzero(u >= self._vacuum_tops[classes])
        counts = self._photons[np.searchsorted(self._edges, u[lit], side="right")]
        return classes, lit, counts


def _detect(
    arrived: Photons, params: LinkParameters, start: int, size: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Bob's receiver: which pulses click, in which basis he measured, which bit he got."""
    seen = arrived.with_counts(thin(arrived.counts, params.detector_efficiency, rng))
    p_dark = params.dark_count_per_detector
    dark = [_dark_counts(size, p_dark, rng) + start for _ in range(2)]
    clicks = np.union1d(np.union1d(seen.indices, dark[0]), dark[1])

    # Bob's basis choice is independent of everything else, so it is drawn only where a
    # detector fired: the click probability of a passive or active receiver does not
    # depend on the basis.
    basis = (rng.random(clicks.size) >= params.z_basis_probability).view(np.uint8)
    fired = [
        np.isin(clicks, dark[0], assume_unique=True),
        np.isin(clicks, dark[1], assume_unique=True),
    ]

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
    bit[double] = rng.integers(0, 2, double.size, dtype=np.uint8)
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
