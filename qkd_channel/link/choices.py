"""The two parties' random choices, drawn from a cryptographic source.

Everything the security proof assumes Eve cannot predict comes from ``random_bytes``
(``os.urandom`` by default, the stand-in for a QRNG): Alice's bit, basis and intensity
class for every pulse, Bob's measurement basis, and the random bit Bob assigns to a double
click. The channel itself (photon numbers, loss, dark counts, misalignment) is physics, not
a secret, and stays on numpy's generator.

Why not numpy: PCG64 is a statistical generator, not a cryptographic one. Its state can be
recovered from a modest number of outputs (Bouillaguet, Martinez, Sauvage, "Practical
seed-recovery for the PCG pseudo-random number generator", IACR ToSC 2020(3)), and the
protocol publishes outputs: the bases at sifting and, in the test basis, the bits
themselves. An eavesdropper who can predict Alice's remaining bits needs no photon at
all; the vacuum and single-photon terms of the key length count those bits as uniformly
random and secret.

Biased choices use one 32-bit uniform integer per draw compared with thresholds
``round(P * 2^32)``, so each realised probability is within ``2^-32`` of its nominal
value: far below the statistical corrections of any block the bounds are applied to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["RandomBytes", "categorical", "uniform_bits"]

RandomBytes = Callable[[int], bytes]
"""A source of uniformly random bytes: ``random_bytes(n)`` returns ``n`` of them."""

_SCALE = float(1 << 32)


def uniform_bits(random_bytes: RandomBytes, count: int) -> npt.NDArray[np.uint8]:
    """``count`` independent fair bits (0/1), eight per byte of ``random_bytes``."""
    raw = np.frombuffer(random_bytes((count + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:count]


def categorical(
    random_bytes: RandomBytes, count: int, probabilities: Sequence[float]
) -> npt.NDArray[np.uint8]:
    """``count`` independent draws of an index ``i`` with probability ``probabilities[i]``.

    Four bytes per draw; the probabilities must sum to 1 (to within 1e-9).
    """
    if not 1 <= len(probabilities) <= 256 or min(probabilities) < 0.0:
        raise ValueError("between 1 and 256 non-negative probabilities are needed")
    if abs(sum(probabilities) - 1.0) > 1e-9:
        raise ValueError("probabilities must sum to 1")
    edges = np.round(np.cumsum(probabilities)[:-1] * _SCALE)
    thresholds = np.minimum(edges, _SCALE - 1.0).astype(np.uint32)
    draws = np.frombuffer(random_bytes(4 * count), dtype="<u4")
    # The index is the number of thresholds at or below the draw; a few vectorised
    # comparisons are an order of magnitude faster than searchsorted here.
    index = np.zeros(count, dtype=np.uint8)
    for threshold in thresholds:
        index += draws >= threshold
    return index
