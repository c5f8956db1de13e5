"""Toeplitz privacy amplification: bit-exact against a dense GF(2) product, and the exchange."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd_channel.errors import ChannelError
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
    toeplitz = seed[rows - cols + m - 1].astype(np.int64)
    product = (toeplitz @ key[output_bits:].astype(np.int64)) & 1
    result: Bits = product.astype(np.uint8) ^ key[:output_bits]
    return result


@pytest.mark.parametrize(
    ("n", "out"),
    [
        pytest.param(2, 1, id="smallest"),
        pytest.param(64, 32, id="half"),
        pytest.param(1000, 999, id="almost-all"),
        pytest.param(1000, 1, id="one-bit"),
        pytest.param(4099, 1500, id="odd-size"),
    ],
)
def test_fft_hash_equals_dense_product(n: int, out: int) -> None:
    rng = np.random.default_rng(n * 7919 + out)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, seed_bits(n), dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(key, seed, out), dense_hash(key, seed, out))


def test_all_ones_input_hits_the_largest_convolution_values() -> None:
    # Every convolution term is 1, so the integer sums are as large as they can be.
    n = 3000
    key = np.ones(n, dtype=np.uint8)
    seed = np.ones(seed_bits(n), dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(key, seed, 1000), dense_hash(key, seed, 1000))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=600))
def test_fft_hash_is_bit_exact_for_random_sizes(data: st.DataObject, n: int) -> None:
    out = data.draw(st.integers(min_value=0, max_value=n))
    seed_value = data.draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed_value)
    density = data.draw(st.sampled_from([0.05, 0.5, 0.95]))
    key = (rng.random(n) < density).astype(np.uint8)
    seed = (rng.random(seed_bits(n)) < density).astype(np.uint8)
    assert np.array_equal(toeplitz_hash(key, seed, out), dense_hash(key, seed, out))


def test_hash_is_linear_over_gf2() -> None:
    rng = np.random.default_rng(3)
    n, out = 5000, 2000
    seed = rng.integers(0, 2, seed_bits(n), dtype=np.uint8)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = rng.integers(0, 2, n, dtype=np.uint8)
    assert np.array_equal(
        toeplitz_hash(a ^ b, seed, out), toeplitz_hash(a, seed, out) ^ toeplitz_hash(b, seed, out)
    )


def test_large_block_matches_dense_rows() -> None:
    # 2**20 bits: compare a few output rows computed directly as GF(2) inner products.
    rng = np.random.default_rng(11)
    n, out = 1 << 20, 1 << 19
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, seed_bits(n), dtype=np.uint8)
    hashed = toeplitz_hash(key, seed, out)
    m = n - out
    tail = key[out:].astype(np.int64)
    for row in (0, 1, out // 2, out - 1):
        window = seed[row : row + m][::-1].astype(np.int64)  # T[row, j] = seed[row - j + m - 1]
        assert hashed[row] == (int(window @ tail) & 1) ^ key[row]


def test_error_bound_leaves_a_wide_margin_at_qkd_sizes() -> None:
    assert fft_error_bound(1 << 24) < 1e-5
    assert fft_error_bound(1 << 28) < 1e-3


def test_rejects_wrong_seed_and_output_lengths() -> None:
    key = np.zeros(10, dtype=np.uint8)
    with pytest.raises(ValueError):
        toeplitz_hash(key, np.zeros(10, dtype=np.uint8), 5)
    with pytest.raises(ValueError):
        toeplitz_hash(key, np.zeros(9, dtype=np.uint8), 11)


def test_seed_exchange_gives_both_ends_the_same_hash() -> None:
    rng = np.random.default_rng(5)
    key = rng.integers(0, 2, 20000, dtype=np.uint8)
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


def test_bob_rejects_a_seed_of_the_wrong_length() -> None:
    a, b = InMemoryChannel.pair()
    a.send(Writer(Kind.PA_SEED).u64(10).bits(np.zeros(5, dtype=np.uint8)).build())
    with pytest.raises(ChannelError):
        amplify_bob(b, np.zeros(100, dtype=np.uint8), timeout=1)
