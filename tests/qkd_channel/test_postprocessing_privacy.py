"""Toeplitz privacy amplification: bit-exact against direct GF(2) products, and the exchange."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ducc0
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd_channel.errors import ChannelError
from qkd_channel.postprocessing import toeplitz
from qkd_channel.postprocessing.channel import InMemoryChannel
from qkd_channel.postprocessing.messages import Kind, Writer
from qkd_channel.postprocessing.privacy import (
    amplify_alice,
    amplify_bob,
    fft_error_bound,
    seed_bits,
    toeplitz_hash,
)

Bits = npt.NDArray[np.uint8]


def dense_hash(key: Bits, seed: Bits, output_bits: int) -> Bits:
    """(I | T) @ key over GF(2) with T built entry by entry: the definition, no FFT."""
    n = len(key)
    m = n - output_bits
    rows = np.arange(output_bits)[:, None]
    cols = np.arange(m)[None, :]
    toeplitz_matrix = seed[rows - cols + m - 1].astype(np.int64)
    product = (toeplitz_matrix @ key[output_bits:].astype(np.int64)) & 1
    result: Bits = product.astype(np.uint8) ^ key[:output_bits]
    return result


def convolution_hash(key: Bits, seed: Bits, output_bits: int) -> Bits:
    """The same hash from numpy's direct (non-FFT) integer convolution, for mid sizes."""
    m = len(key) - output_bits
    full = np.convolve(seed.astype(np.int64), key[output_bits:].astype(np.int64))
    result: Bits = (full[m - 1 : m - 1 + output_bits] & 1).astype(np.uint8) ^ key[:output_bits]
    return result


def textbook_fft_hash(key: Bits, seed: Bits, output_bits: int) -> Bits:
    """The same hash from one-dimensional numpy FFTs of a linear (unwrapped) convolution:
    an independent code path (no grid, no twiddles, no blocking) for large sizes."""
    m = len(key) - output_bits
    size = len(seed) + m
    spectrum = np.fft.rfft(seed.astype(np.float64), size) * np.fft.rfft(key[output_bits:], size)
    values = np.fft.irfft(spectrum, size)[m - 1 : m - 1 + output_bits]
    assert np.abs(values - np.rint(values)).max() < 0.01
    result: Bits = (np.rint(values).astype(np.int64) & 1).astype(np.uint8) ^ key[:output_bits]
    return result


def random_bits(rng: np.random.Generator, count: int, density: float = 0.5) -> Bits:
    bits: Bits = (rng.random(count) < density).astype(np.uint8)
    return bits


@pytest.mark.parametrize(
    ("n", "out"),
    [
        pytest.param(2, 1, id="smallest"),
        pytest.param(64, 32, id="half"),
        pytest.param(1000, 999, id="almost-all"),
        pytest.param(1000, 1, id="one-bit"),
        pytest.param(2049, 1024, id="one-full-column"),
        pytest.param(2050, 1025, id="two-columns"),
        pytest.param(4099, 1500, id="three-columns"),
        pytest.param(4097, 3, id="tiny-output-from-three-columns"),
    ],
)
def test_fast_hash_equals_dense_product(n: int, out: int) -> None:
    rng = np.random.default_rng(n * 7919 + out)
    key = random_bits(rng, n)
    seed = random_bits(rng, seed_bits(n))
    assert np.array_equal(toeplitz_hash(key, seed, out), dense_hash(key, seed, out))


def test_all_ones_input_hits_the_largest_convolution_values() -> None:
    # Every convolution term is 1, so the integer sums are as large as they can be.
    n = 3000
    key = np.ones(n, dtype=np.uint8)
    seed = np.ones(seed_bits(n), dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(key, seed, 1000), dense_hash(key, seed, 1000))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=600))
def test_hash_is_bit_exact_for_random_sizes(data: st.DataObject, n: int) -> None:
    out = data.draw(st.integers(min_value=0, max_value=n))
    rng = np.random.default_rng(data.draw(st.integers(min_value=0, max_value=2**32 - 1)))
    density = data.draw(st.sampled_from([0.05, 0.5, 0.95]))
    key = random_bits(rng, n, density)
    seed = random_bits(rng, seed_bits(n), density)
    assert np.array_equal(toeplitz_hash(key, seed, out), dense_hash(key, seed, out))


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    n=st.integers(min_value=2, max_value=700),
    column_length=st.sampled_from([2, 4, 6, 10, 16, 50]),
    block_columns=st.integers(min_value=1, max_value=9),
    block_elements=st.integers(min_value=1, max_value=200),
    threads=st.integers(min_value=1, max_value=3),
)
def test_every_grid_shape_and_block_split_is_bit_exact(
    data: st.DataObject,
    n: int,
    column_length: int,
    block_columns: int,
    block_elements: int,
    threads: int,
) -> None:
    # Tiny grid and block sizes put the 16 Mbit code paths (many columns, several column
    # and row blocks shared among threads, a partial last block, wanted outputs starting
    # mid-row) on small keys that the dense definition can check.
    out = data.draw(st.integers(min_value=1, max_value=n - 1))
    rng = np.random.default_rng(data.draw(st.integers(min_value=0, max_value=2**32 - 1)))
    density = data.draw(st.sampled_from([0.05, 0.5, 1.0]))
    key = random_bits(rng, n, density)
    seed = random_bits(rng, seed_bits(n), density)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(toeplitz, "_COLUMN_LENGTH", column_length)
        patch.setattr(toeplitz, "_BLOCK_COLUMNS", block_columns)
        patch.setattr(toeplitz, "_BLOCK_ELEMENTS", block_elements)
        hashed = toeplitz_hash(key, seed, out, threads=threads)
    assert np.array_equal(hashed, dense_hash(key, seed, out))


@settings(max_examples=15, deadline=None)
@given(data=st.data(), n=st.integers(min_value=2049, max_value=9000))
def test_multi_column_grids_match_a_direct_integer_convolution(data: st.DataObject, n: int) -> None:
    # Real grid sizes (2048-point columns), lengths and output offsets not multiples of 64.
    out = data.draw(st.integers(min_value=1, max_value=n - 1))
    rng = np.random.default_rng(data.draw(st.integers(min_value=0, max_value=2**32 - 1)))
    key = random_bits(rng, n)
    seed = random_bits(rng, seed_bits(n))
    assert np.array_equal(toeplitz_hash(key, seed, out), convolution_hash(key, seed, out))


def test_many_column_blocks_match_the_textbook_fft() -> None:
    # 2**18 + an odd amount: 131 columns, so several column blocks and a partial last one.
    rng = np.random.default_rng(17)
    n, out = (1 << 18) + 12_345, 100_001
    key = random_bits(rng, n)
    seed = random_bits(rng, seed_bits(n))
    assert toeplitz._grid(n - 1).cols > 2 * toeplitz._BLOCK_COLUMNS
    expected = textbook_fft_hash(key, seed, out)
    for threads in (1, 2, 5):
        assert np.array_equal(toeplitz_hash(key, seed, out, threads=threads), expected)


def test_large_block_matches_dense_rows() -> None:
    # 2**20 bits: compare a few output rows computed directly as GF(2) inner products.
    rng = np.random.default_rng(11)
    n, out = 1 << 20, 1 << 19
    key = random_bits(rng, n)
    seed = random_bits(rng, seed_bits(n))
    hashed = toeplitz_hash(key, seed, out)
    m = n - out
    tail = key[out:].astype(np.int64)
    for row in (0, 1, out // 2, out - 1):
        window = seed[row : row + m][::-1].astype(np.int64)  # T[row, j] = seed[row - j + m - 1]
        assert hashed[row] == (int(window @ tail) & 1) ^ key[row]


def test_hash_is_linear_over_gf2() -> None:
    rng = np.random.default_rng(3)
    n, out = 5000, 2000
    seed = random_bits(rng, seed_bits(n))
    a = random_bits(rng, n)
    b = random_bits(rng, n)
    assert np.array_equal(
        toeplitz_hash(a ^ b, seed, out), toeplitz_hash(a, seed, out) ^ toeplitz_hash(b, seed, out)
    )


def test_strided_views_hash_like_their_copies() -> None:
    rng = np.random.default_rng(8)
    key_source = random_bits(rng, 8000)
    seed_source = random_bits(rng, 2 * 3999)
    key, seed = key_source[::2], seed_source[1::2]
    assert np.array_equal(
        toeplitz_hash(key, seed, 1234), toeplitz_hash(key.copy(), seed.copy(), 1234)
    )


def test_error_bound_leaves_a_wide_margin_at_qkd_sizes() -> None:
    assert 1e-7 < fft_error_bound(1 << 24) < 1e-5
    assert fft_error_bound(1 << 28) < 1e-3
    assert fft_error_bound(1 << 20) < fft_error_bound(1 << 24) < fft_error_bound(1 << 28)


def test_refuses_sizes_whose_error_bound_is_too_large() -> None:
    key = np.zeros(1 << 12, dtype=np.uint8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(toeplitz, "_MAX_ERROR", fft_error_bound(1 << 12))
        with pytest.raises(ValueError, match="too large"):
            toeplitz_hash(key, np.zeros(seed_bits(1 << 12), dtype=np.uint8), 100)


def test_lost_fft_precision_is_detected_not_rounded_away() -> None:
    # An FFT that returns values a quarter off the integers must stop the hash rather than
    # silently hand both ends a key that is no longer the universal hash of their input.
    real_c2r: Callable[..., Any] = ducc0.fft.c2r

    def sloppy_c2r(*args: Any, **kwargs: Any) -> Any:
        values = real_c2r(*args, **kwargs)
        values += 0.25
        return values

    rng = np.random.default_rng(4)
    key = random_bits(rng, 3000)
    seed = random_bits(rng, seed_bits(3000))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ducc0.fft, "c2r", sloppy_c2r)
        with pytest.raises(FloatingPointError):
            toeplitz_hash(key, seed, 1000)


def test_rejects_wrong_seed_and_output_lengths() -> None:
    key = np.zeros(10, dtype=np.uint8)
    with pytest.raises(ValueError):
        toeplitz_hash(key, np.zeros(10, dtype=np.uint8), 5)
    with pytest.raises(ValueError):
        toeplitz_hash(key, np.zeros(9, dtype=np.uint8), 11)
    with pytest.raises(ValueError):
        toeplitz_hash(key, np.zeros(9, dtype=np.uint8), 5, threads=0)


def test_seed_exchange_gives_both_ends_the_same_hash() -> None:
    rng = np.random.default_rng(5)
    key = random_bits(rng, 20000)
    a, b = InMemoryChannel.pair()
    result: dict[str, tuple[Bits, int]] = {}
    thread = threading.Thread(target=lambda: result.update(bob=amplify_bob(b, key, timeout=5)))
    thread.start()
    alice = amplify_alice(a, key, 8000)
    thread.join(timeout=10)
    bob, length = result["bob"]
    assert length == 8000
    assert np.array_equal(alice, bob)
    assert len(alice) == 8000


def test_alice_takes_every_seed_bit_from_her_random_source() -> None:
    # The seed is the first n - 1 bits (MSB first) of exactly ceil((n - 1) / 8) fresh bytes.
    rng = np.random.default_rng(6)
    n = 1001
    key = random_bits(rng, n)
    source = rng.bytes(125)
    asked: list[int] = []

    def random_bytes(count: int) -> bytes:
        asked.append(count)
        return source[:count]

    a, b = InMemoryChannel.pair()
    hashed = amplify_alice(a, key, 300, random_bytes=random_bytes)
    seed = np.unpackbits(np.frombuffer(source, dtype=np.uint8))[: n - 1]
    assert asked == [125]
    assert np.array_equal(hashed, dense_hash(key, seed, 300))
    bob, length = amplify_bob(b, key, timeout=1)
    assert length == 300
    assert np.array_equal(bob, hashed)


def test_bob_rejects_a_seed_of_the_wrong_length() -> None:
    a, b = InMemoryChannel.pair()
    a.send(Writer(Kind.PA_SEED).u64(10).bits(np.zeros(5, dtype=np.uint8)).build())
    with pytest.raises(ChannelError):
        amplify_bob(b, np.zeros(100, dtype=np.uint8), timeout=1)
