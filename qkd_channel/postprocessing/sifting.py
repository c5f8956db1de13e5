"""Sifting: agree on which detections both ends measured in the same basis.

Bob announces the pulse numbers that clicked and the basis he measured each in; Alice
answers, for each detection, whether her preparation basis matched and, for the matched
ones, the intensity class of the pulse (decoy-state BB84 announces intensities: parameter
estimation needs them, and the security bound accounts for Eve knowing them). Bits are
never sent. Each end keeps its own bit for every matched detection; the Z-basis ones
become key candidates, the X-basis ones are disclosed later to estimate the phase error.

Alice checks Bob's announcement (strictly increasing pulse numbers inside the run) so a
malformed message fails loudly instead of indexing her record out of range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError
from qkd_channel.link.records import AliceRecord, BobRecord
from qkd_channel.postprocessing import messages
from qkd_channel.postprocessing.channel import ClassicalChannel
from qkd_channel.postprocessing.messages import Kind, Writer

__all__ = ["BASIS_X", "BASIS_Z", "SiftedKey", "sift_alice", "sift_bob"]

Bits = npt.NDArray[np.uint8]

BASIS_Z = 0
BASIS_X = 1
_CLASSES = 3


@dataclass(frozen=True)
class SiftedKey:
    """One end's matched-basis detections; ``bases`` and ``classes`` are the same at both ends."""

    bits: Bits  #: this end's bit for every matched detection
    bases: Bits  #: the common basis (0 = Z, 1 = X)
    classes: Bits  #: intensity class of the pulse (0 signal, 1 decoy, 2 vacuum)
    detections: int  #: Bob's detections before sifting
    #: Detections per intensity class before sifting; only Alice can count them (Bob never
    #: learns the class of an unmatched pulse), so it is ``None`` at Bob.
    detections_per_class: tuple[float, float, float] | None = None

    def __len__(self) -> int:
        return len(self.bits)


def sift_bob(channel: ClassicalChannel, record: BobRecord, *, timeout: float | None) -> SiftedKey:
    """Announce detections and bases; learn which matched and their intensity classes."""
    channel.send(Writer(Kind.DETECTIONS).int64s(record.indices).bits(record.bases).build())
    reader = messages.receive(channel, Kind.SIFT, timeout)
    matched = reader.bits(expected=len(record.indices)).astype(bool)
    classes = np.frombuffer(reader.blob(), dtype=np.uint8)
    reader.end()
    if len(classes) != int(matched.sum()) or (classes >= _CLASSES).any():
        raise ChannelError("malformed post-processing message")
    return SiftedKey(
        bits=record.bits[matched],
        bases=record.bases[matched],
        classes=classes.copy(),
        detections=len(record.indices),
    )


def sift_alice(
    channel: ClassicalChannel, record: AliceRecord, *, timeout: float | None
) -> SiftedKey:
    """Read Bob's detections, tell him which bases matched and the intensity classes."""
    reader = messages.receive(channel, Kind.DETECTIONS, timeout)
    indices = reader.int64s()
    bob_bases = reader.bits(expected=len(indices))
    reader.end()
    n_pulses = len(record.bits)
    if len(indices) and (
        indices[0] < 0 or indices[-1] >= n_pulses or (np.diff(indices) <= 0).any()
    ):
        raise ChannelError("malformed post-processing message")
    matched = record.bases[indices] == bob_bases
    kept = indices[matched]
    classes = record.intensities[kept]
    per_class = np.bincount(record.intensities[indices], minlength=_CLASSES)
    channel.send(Writer(Kind.SIFT).bits(matched.view(np.uint8)).blob(classes.tobytes()).build())
    return SiftedKey(
        bits=record.bits[kept],
        bases=record.bases[kept],
        classes=classes,
        detections=len(indices),
        detections_per_class=(float(per_class[0]), float(per_class[1]), float(per_class[2])),
    )
