"""What each end of the quantum channel holds after a run of pulses.

These are the hand-over types between the photon-level simulation (``qkd_channel.link``)
and post-processing (``qkd_channel.postprocessing``). Alice knows every pulse she sent;
Bob only knows the pulses that clicked his detectors, so his record is compact.

Conventions: bits and bases are ``uint8`` arrays of 0/1; basis 0 is Z (rectilinear),
basis 1 is X (diagonal). Intensity classes index ``LinkParameters.intensities``
(0 = signal, 1 = decoy, 2 = vacuum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["AliceRecord", "BobRecord", "LinkRun"]

Bits = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class AliceRecord:
    """Per-pulse choices of the sender, indexed by pulse number."""

    bits: Bits
    bases: Bits
    intensities: Bits


@dataclass(frozen=True)
class BobRecord:
    """Receiver's detections: pulse numbers that clicked, with his basis and measured bit.

    Double clicks are already resolved (random bit, as squashing models prescribe).
    """

    indices: npt.NDArray[np.int64]
    bases: Bits
    bits: Bits


@dataclass(frozen=True)
class LinkRun:
    """The outcome of sending ``n_pulses`` pulses over the simulated link."""

    alice: AliceRecord
    bob: BobRecord
    n_pulses: int
    duration_s: float
