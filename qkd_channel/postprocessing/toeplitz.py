"""Modified Toeplitz hashing over GF(2), computed by a cache-blocked four-step FFT.

Why this family. Hashing the reconciled key with a function drawn at random from a
universal family squeezes out everything Eve may know (leftover hash lemma). We use the
*modified* Toeplitz matrices ``(I_l | T)`` with ``T`` an ``l x (n - l)`` random Toeplitz
matrix, which Hayashi and Tsurumaru (IEEE Trans. Inf. Theory 62, 2016) show to be a
universal-2 family like plain Toeplitz matrices, with a shorter seed (``n - 1`` bits
instead of ``n + l - 1``) and a smaller product to compute::

    y = x[:l]  XOR  T @ x[l:]            (over GF(2)),   T[i, j] = seed[i - j + n - l - 1]

``T @ x[l:]`` is a slice of the integer convolution ``seed * x[l:]``, reduced mod 2. A
circular convolution of size ``N >= n - 1`` is enough: the wrapped-around terms never land
in the slice we keep.

Why a four-step FFT. The obvious way, three one-dimensional real FFTs of size ``N``, is
limited by memory traffic, not arithmetic: at 16 Mbit each float64 transform streams a
128 MB array through the caches once per radix pass. We view the length-``N`` sequence as
a ``rows x cols`` grid (``i = col + cols * row``) and use the classic factorisation
``DFT_N = (row DFTs of length cols) . twiddles . (column DFTs of length rows)``. Column
transforms (real, ``rows = 2048`` long) run a few dozen columns at a time in buffers that
stay in the CPU cache, together with the uint8-to-float conversion and the twiddle factors
``exp(-2 pi i k_row col / N)``; row transforms (complex, contiguous) run a few rows at a
time with the pointwise product and the inverse row transform fused in; the inverse column
transforms, the rounding and the parity extraction again run per column block. Each large
array is thus read or written about once per step instead of once per radix pass: about
3x less CPU time than the one-dimensional version at 16 Mbit (``scripts/bench_toeplitz.py``).
Column blocks and row blocks are independent, so worker threads share them. Both spectra
are only held for column frequencies ``k_row <= rows / 2``; the rest follows by Hermitian
symmetry (see :func:`_inverse_parity`). Small inputs run the same code on a ``rows x 1``
grid, where it is an ordinary real FFT convolution.

Why not a GF(2)[x] library. A carry-less product in ``gf2x`` would avoid floating point
altogether, but Debian's build (libgf2x3 1.3.0, no PCLMUL, untuned FFT thresholds) takes
about 1 s for an 8 Mbit x 8 Mbit product and 2 s for the 16 Mbit x 8 Mbit one we need,
slower than even the one-dimensional FFT; PyPI has no maintained binding.

Exactness. The convolution values are integers at most ``n``; the float64 result is
rounded to the nearest integer, which is exact as long as the FFT error stays below 1/2.
Percival's bound for FFT convolution (Math. Comp. 2003, radix-2 model) gives an error of
at most ``||a|| ||b|| ((1+e)^3k (1+e sqrt 5)^(3k+1) (1+e)^3k - 1)`` with ``e = 2**-53``;
we take ``k = log2 N + 2``, counting the explicit twiddle multiplication (two correctly
rounded exponentials per twiddle, see :class:`_Twiddles`) as two more radix-2 stages. That
is about ``6e-7`` at ``n = 2**24`` and ``5e-5`` at ``2**30``, so no splitting into
sub-blocks is needed anywhere near the sizes QKD uses. :func:`toeplitz_hash` refuses
inputs whose bound reaches 1/8, and checks after the fact that every output it keeps lies
within 1/8 of an integer (a cheap tripwire against an FFT library that misbehaves). Tests
compare bit for bit against a dense GF(2) matrix product and a direct integer convolution.

The FFTs run in ``ducc0`` (the successor of the pocketfft code inside numpy and scipy).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import ducc0
import numpy as np
import numpy.typing as npt

__all__ = [
    "fft_error_bound",
    "seed_bits",
    "toeplitz_hash",
]

Bits = npt.NDArray[np.uint8]
Complex = npt.NDArray[np.complex128]

_EPS = 2.0**-53
_MAX_ERROR = 0.125
# Adding 1.5 * 2**52 to a float64 of magnitude below 2**51 rounds it to the nearest integer
# and leaves that integer in the low mantissa bits, so its parity is bit 0 of the int64 view.
_ROUNDER = 1.5 * 2.0**52
# Length of the real column transforms: a column block of _BLOCK_COLUMNS columns (float64
# input plus complex half spectrum, about 16 * rows * columns bytes) then fits in L2.
_COLUMN_LENGTH = 2048
_BLOCK_COLUMNS = 32
# Elements of one row block of the fused row transforms (512 KB per operand).
_BLOCK_ELEMENTS = 1 << 15


@dataclass(frozen=True)
class _Grid:
    """The ``rows x cols`` view of a circular convolution of length ``rows * cols``."""

    rows: int  #: length of the real column transforms (even)
    cols: int  #: length of the complex row transforms

    @property
    def size(self) -> int:
        return self.rows * self.cols

    @property
    def half(self) -> int:
        """Rows of a half spectrum: frequencies ``0 .. rows / 2`` of the column transforms."""
        return self.rows // 2 + 1


def _grid(length: int) -> _Grid:
    """The grid for a circular convolution of at least ``length >= 1`` points."""
    rows = 2 * ducc0.fft.good_size(-(-min(length, _COLUMN_LENGTH) // 2))
    return _Grid(rows, ducc0.fft.good_size(-(-length // rows)))


def seed_bits(input_bits: int) -> int:
    """Length of the random seed that selects the hash for an ``input_bits``-bit key."""
    return max(input_bits - 1, 0)


def fft_error_bound(input_bits: int) -> float:
    """Percival's a-priori bound on the convolution error for an ``input_bits`` key."""
    if input_bits <= 1:
        return 0.0
    k = math.ceil(math.log2(_grid(input_bits - 1).size)) + 2
    # (1 + e)^6k (1 + e sqrt 5)^(3k + 1) - 1, in logarithms: 1 + 2**-53 rounds to 1.0.
    growth = math.expm1(6 * k * math.log1p(_EPS) + (3 * k + 1) * math.log1p(_EPS * math.sqrt(5)))
    # ||a||_2 <= sqrt(len a) for 0/1 vectors; both operands are shorter than input_bits.
    return input_bits * growth


def toeplitz_hash(key: Bits, seed: Bits, output_bits: int, *, threads: int = 1) -> Bits:
    """``(I | T) @ key`` over GF(2) for the modified Toeplitz matrix named by ``seed``.

    ``key`` and ``seed`` are 0/1 ``uint8`` arrays, ``len(seed) == seed_bits(len(key))``.
    Returns ``output_bits`` bits. ``threads`` worker threads share the blocks (numpy and
    ducc0 release the GIL); the result does not depend on it. One is the default: both
    ends of a link often run on one host, and on hyper-threaded or busy cores a second
    thread buys little wall time for about a third more CPU time (bench_toeplitz.py).
    """
    n = len(key)
    if not 0 <= output_bits <= n:
        raise ValueError("output length must lie between 0 and the input length")
    if len(seed) != seed_bits(n):
        raise ValueError("seed length must be len(key) - 1")
    if fft_error_bound(n) >= _MAX_ERROR:
        raise ValueError("input too large for exact float64 FFT hashing")
    if threads < 1:
        raise ValueError("threads must be at least 1")
    head = key[:output_bits]
    tail = key[output_bits:]
    if output_bits == 0 or len(tail) == 0:
        return np.array(head, dtype=np.uint8, copy=True)
    product = _circular_parity(seed, tail, start=len(tail) - 1, count=output_bits, threads=threads)
    result: Bits = product ^ head
    return result


def _circular_parity(a: Bits, b: Bits, *, start: int, count: int, threads: int) -> Bits:
    """Parities of ``(a * b)[start : start + count]``, ``*`` the circular convolution of
    length ``grid.size >= len(a) >= len(b)``, for 0/1 vectors ``a`` and ``b``."""
    grid = _grid(len(a))
    twiddles = _Twiddles.for_grid(grid)
    step = max(1, _BLOCK_ELEMENTS // grid.cols)
    low = start // grid.cols
    high = (start + count - 1) // grid.cols + 1  # grid rows holding the wanted outputs
    parity = np.empty((grid.rows, grid.cols), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        forward = partial(_forward, grid=grid, twiddles=twiddles)
        spectrum, other = pool.map(forward, (_on_grid(a, grid), _on_grid(b, grid)))
        row_blocks = _deal(range(0, grid.half, step), threads)
        for _ in pool.map(partial(_convolve_rows, spectrum, other, step), row_blocks):
            pass
        del other  # 8 bytes per key bit, no longer needed: free it before the last step
        inverse = partial(_inverse_parity, spectrum, grid, twiddles.conjugate(), parity, low, high)
        worst = max(pool.map(inverse, _deal(range(0, grid.cols, twiddles.width), threads)))
    if worst >= _MAX_ERROR:
        raise FloatingPointError("FFT convolution lost integer precision")
    result: Bits = parity.reshape(-1)[start : start + count].copy()
    return result


def _deal(blocks: range, parts: int) -> list[range]:
    """``blocks`` dealt round-robin into ``parts`` disjoint shares, one per thread."""
    return [blocks[part::parts] for part in range(parts)]


def _convolve_rows(spectrum: Complex, other: Complex, step: int, firsts: range) -> None:
    """Row transforms of both operands, their product and its inverse row transform, for
    the blocks of ``step`` rows starting at ``firsts``; the result replaces ``spectrum``."""
    for first in firsts:
        rows = spectrum[first : first + step]
        ducc0.fft.c2c(rows, axes=(1,), out=rows)
        others = other[first : first + step]
        ducc0.fft.c2c(others, axes=(1,), out=others)
        rows *= others
        ducc0.fft.c2c(rows, axes=(1,), forward=False, inorm=2, out=rows)


def _on_grid(bits: Bits, grid: _Grid) -> Bits:
    """``bits`` laid out on the grid: the first ``ceil(len(bits) / cols)`` of its rows, the
    last one zero-padded (the rows below are all zero and need no copy)."""
    used = -(-len(bits) // grid.cols)
    padded = np.zeros(used * grid.cols, dtype=np.uint8)
    padded[: len(bits)] = bits
    return padded.reshape(used, grid.cols)


def _unit_roots(grid: _Grid, turns: npt.NDArray[np.int64]) -> Complex:
    """``exp(-2 pi i t / N)`` for integer ``t`` (any sign), reduced mod ``N`` exactly first."""
    roots: Complex = np.exp((turns % grid.size) * (-2j * np.pi / grid.size))
    return roots


@dataclass(frozen=True)
class _Twiddles:
    """The factors ``w^(k col)``, ``w = exp(-2 pi i / N)``, ``k < grid.half``, as the
    product ``within[k, col % width] * blocks[k, col // width]``: a few hundred thousand
    exponentials instead of ``N / 2``, shared by both operands and (conjugated) the inverse.
    """

    width: int
    within: Complex
    blocks: Complex

    @classmethod
    def for_grid(cls, grid: _Grid) -> _Twiddles:
        width = min(_BLOCK_COLUMNS, grid.cols)
        k = np.arange(grid.half, dtype=np.int64)[:, None]
        within = _unit_roots(grid, k * np.arange(width, dtype=np.int64))
        blocks = _unit_roots(grid, k * np.arange(0, grid.cols, width, dtype=np.int64))
        return cls(width, within, blocks)

    def conjugate(self) -> _Twiddles:
        """The factors of the inverse transform."""
        return _Twiddles(self.width, self.within.conj(), self.blocks.conj())

    def shift(self, first: int) -> Complex:
        """The column-block factor ``w^(k first)`` for the block starting at ``first``."""
        shift: Complex = self.blocks[:, first // self.width, None]
        return shift


def _forward(bits: Bits, grid: _Grid, twiddles: _Twiddles) -> Complex:
    """Column transforms and twiddles of 0/1 grid rows (see :func:`_on_grid`): the first
    two steps. Returns the ``half x cols`` array whose rows still need a transform."""
    width = twiddles.width
    used = len(bits)
    out: Complex = ducc0.misc.empty_noncritical((grid.half, grid.cols), dtype=np.complex128)
    column = np.zeros((grid.rows, width), dtype=np.float64)
    spectrum = np.empty((grid.half, width), dtype=np.complex128)
    for first in range(0, grid.cols, width):
        cols = min(width, grid.cols - first)
        np.copyto(column[:used, :cols], bits[:, first : first + cols], casting="unsafe")
        block = ducc0.fft.r2c(column[:, :cols], axes=(0,), out=spectrum[:, :cols])
        # Both twiddle factors on the cache-resident block; the second one stores it.
        block *= twiddles.within[:, :cols]
        np.multiply(block, twiddles.shift(first), out=out[:, first : first + cols])
    return out


def _inverse_parity(
    spectrum: Complex,
    grid: _Grid,
    twiddles: _Twiddles,
    parity: Bits,
    low: int,
    high: int,
    firsts: range,
) -> float:
    """Undo twiddles (``twiddles`` conjugated) and column transforms for the column blocks
    starting at ``firsts``, round, and write the parities of grid rows ``low .. high - 1``
    into ``parity``. Returns the largest distance of a kept value from its integer.

    ``spectrum`` holds frequencies ``k_row <= rows / 2`` of each column sequence
    ``Z_col[k_row]``; for a real result ``Z_col`` is Hermitian in ``k_row``, which is what
    the real inverse transform assumes, so the other half is never needed.
    """
    width = twiddles.width
    block = np.empty((grid.half, width), dtype=np.complex128)
    values = np.empty((grid.rows, width), dtype=np.float64)
    rounded = np.empty((high - low, width), dtype=np.float64)
    worst = 0.0
    for first in firsts:
        cols = min(width, grid.cols - first)
        part = block[:, :cols]
        np.multiply(spectrum[:, first : first + cols], twiddles.within[:, :cols], out=part)
        part *= twiddles.shift(first)
        real = ducc0.fft.c2r(
            part,
            axes=(0,),
            lastsize=grid.rows,
            forward=False,
            inorm=2,
            out=values[:, :cols],
            allow_overwriting_input=True,
        )[low:high]
        near = np.add(real, _ROUNDER, out=rounded[:, :cols])
        np.bitwise_and(
            near.view(np.int64), 1, out=parity[low:high, first : first + cols], casting="unsafe"
        )
        near -= _ROUNDER
        near -= real
        worst = max(worst, float(near.max()), -float(near.min()))
    return worst
