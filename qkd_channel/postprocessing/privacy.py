"""Privacy amplification with modified Toeplitz hashing over GF(2), computed by FFT.

Why this family. Hashing the reconciled key with a function drawn at random from a
universal family squeezes out everything Eve may know (leftover hash lemma). We use the
*modified* Toeplitz matrices ``(I_l | T)`` with ``T`` an ``l x (n - l)`` random Toeplitz
matrix, which Hayashi and Tsurumaru (IEEE Trans. Inf. Theory 62, 2016) show to be a
universal-2 family like plain Toeplitz matrices, with a shorter seed (``n - 1`` bits
instead of ``n + l - 1``) and a smaller product to compute::

    y = x[:l]  XOR  T @ x[l:]            (over GF(2)),   T[i, j] = seed[i - j + n - l - 1]

``T @ x[l:]`` is a slice of the integer convolution ``seed * x[l:]``, reduced mod 2. We
compute it with one real-to-complex FFT per operand and one inverse, circular of size
``N >= n - 1`` (enough that the wrapped-around terms never land in the slice we keep).

Exactness. The convolution values are integers at most ``n``; the float64 result is
rounded to the nearest integer, which is exact as long as the FFT error stays below 1/2.
Percival's bound for FFT convolution (Math. Comp. 2003, radix-2 model) gives an error of
at most ``||a|| ||b|| ((1+e)^3k (1+e sqrt 5)^(3k+1) (1+e)^3k - 1)`` with ``k = log2 N`` and
``e = 2**-53``: about ``6e-7`` at ``n = 2**24`` and ``5e-5`` at ``2**30``, so no splitting
into sub-blocks is needed anywhere near the sizes QKD uses. :func:`toeplitz_hash` refuses
inputs whose bound reaches 1/8, and checks after the fact that every output lies within
1/8 of an integer (a cheap tripwire against an FFT library that misbehaves). Tests compare
bit for bit against a dense GF(2) matrix product.

The FFTs run in ``ducc0`` (the successor of the pocketfft code inside numpy and scipy,
about twice as fast here and multi-threaded).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import ducc0
import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError
from qkd_channel.postprocessing import messages
from qkd_channel.postprocessing.channel import ClassicalChannel
from qkd_channel.postprocessing.messages import Kind, Writer

__all__ = [
    "amplify_alice",
    "amplify_bob",
    "fft_error_bound",
    "seed_bits",
    "toeplitz_hash",
]

Bits = npt.NDArray[np.uint8]
RandomBytes = Callable[[int], bytes]

_EPS = 2.0**-53
_MAX_ERROR = 0.125


def seed_bits(input_bits: int) -> int:
    """Length of the random seed that selects the hash for an ``input_bits``-bit key."""
    return max(input_bits - 1, 0)


def fft_error_bound(input_bits: int) -> float:
    """Percival's a-priori bound on the convolution error for an ``input_bits`` key."""
    if input_bits <= 1:
        return 0.0
    k = math.ceil(math.log2(ducc0.fft.good_size(input_bits - 1, True)))
    growth = (1 + _EPS) ** (6 * k) * (1 + _EPS * math.sqrt(5)) ** (3 * k + 1) - 1
    # ||a||_2 <= sqrt(len a) for 0/1 vectors; both operands are shorter than input_bits.
    return input_bits * growth


def toeplitz_hash(key: Bits, seed: Bits, output_bits: int, *, threads: int = 2) -> Bits:
    """``(I | T) @ key`` over GF(2) for the modified Toeplitz matrix named by ``seed``.

    ``key`` and ``seed`` are 0/1 ``uint8`` arrays, ``len(seed) == seed_bits(len(key))``.
    Returns ``output_bits`` bits.
    """
    n = len(key)
    if not 0 <= output_bits <= n:
        raise ValueError("output length must lie between 0 and the input length")
    if len(seed) != seed_bits(n):
        raise ValueError("seed length must be len(key) - 1")
    if fft_error_bound(n) >= _MAX_ERROR:
        raise ValueError("input too large for exact float64 FFT hashing")
    head = key[:output_bits]
    tail = key[output_bits:]
    if output_bits == 0 or len(tail) == 0:
        return np.array(head, dtype=np.uint8, copy=True)
    m = len(tail)
    size = ducc0.fft.good_size(n - 1, True)
    # One real work buffer, reused for both operands and the result: at 16 Mbit the cost
    # is memory traffic as much as arithmetic, so nothing is allocated twice.
    work = np.empty(size, dtype=np.float64)
    work[: n - 1] = seed
    work[n - 1 :] = 0.0
    spectrum = ducc0.fft.r2c(work, nthreads=threads)
    work[:m] = tail
    work[m:] = 0.0
    other = ducc0.fft.r2c(work, nthreads=threads)
    spectrum *= other
    del other
    ducc0.fft.c2r(
        spectrum,
        lastsize=size,
        forward=False,
        inorm=2,
        out=work,
        nthreads=threads,
        allow_overwriting_input=True,
    )
    wanted = work[m - 1 : m - 1 + output_bits]
    rounded = np.rint(wanted)
    parity = (rounded.astype(np.int64) & 1).astype(np.uint8)
    np.subtract(wanted, rounded, out=wanted)
    np.abs(wanted, out=wanted)
    if float(wanted.max()) >= _MAX_ERROR:
        raise FloatingPointError("FFT convolution lost integer precision")
    result: Bits = parity ^ head
    return result


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
