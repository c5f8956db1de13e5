"""Privacy amplification as a two-party step: Alice picks the hash, both ends apply it.

Alice draws a fresh uniformly random seed (``seed_bits(n)`` bits from ``random_bytes``,
by default ``os.urandom``) for every block and sends it with the final length; the seed is
public, as the leftover hash lemma allows. Both ends then compute the same modified
Toeplitz hash of their (identical, verified) keys with :func:`toeplitz_hash`, which lives
in :mod:`qkd_channel.postprocessing.toeplitz` together with the reasons for its FFT.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError
from qkd_channel.postprocessing import messages
from qkd_channel.postprocessing.channel import ClassicalChannel
from qkd_channel.postprocessing.messages import Kind, Writer
from qkd_channel.postprocessing.toeplitz import fft_error_bound, seed_bits, toeplitz_hash

__all__ = [
    "RandomBytes",
    "amplify_alice",
    "amplify_bob",
    "fft_error_bound",
    "seed_bits",
    "toeplitz_hash",
]

Bits = npt.NDArray[np.uint8]
RandomBytes = Callable[[int], bytes]


def amplify_alice(
    channel: ClassicalChannel,
    key: Bits,
    output_bits: int,
    *,
    random_bytes: RandomBytes = os.urandom,
) -> Bits:
    """Choose a fresh seed, send it with the final length, and hash Alice's key."""
    n = len(key)
    count = seed_bits(n)
    seed = np.unpackbits(np.frombuffer(random_bytes((count + 7) // 8), dtype=np.uint8))[:count]
    channel.send(Writer(Kind.PA_SEED).u64(output_bits).bits(seed).build())
    return toeplitz_hash(key, seed, output_bits)


def amplify_bob(channel: ClassicalChannel, key: Bits, *, timeout: float | None) -> tuple[Bits, int]:
    """Receive Alice's seed and final length; return Bob's hashed key and that length.

    The caller checks the length against its own computation before using the key.
    """
    reader = messages.receive(channel, Kind.PA_SEED, timeout)
    output_bits = reader.u64()
    seed = reader.bits(expected=seed_bits(len(key)))
    reader.end()
    if output_bits > len(key):
        raise ChannelError("malformed post-processing message")
    return toeplitz_hash(key, seed, output_bits), output_bits
