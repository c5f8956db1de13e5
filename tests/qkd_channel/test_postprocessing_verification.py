"""Error verification: equal keys pass, any difference aborts both ends."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from qkd_channel.errors import VerificationFailed
from qkd_channel.postprocessing.channel import InMemoryChannel
from qkd_channel.postprocessing.verification import (
    TAG_BITS,
    VerificationResult,
    collision_probability,
    key_tag,
    verify_alice,
    verify_bob,
)


def _run(alice_key: np.ndarray, bob_key: np.ndarray) -> dict[str, object]:
    a, b = InMemoryChannel.pair()
    out: dict[str, object] = {}

    def bob() -> None:
        try:
            out["bob"] = verify_bob(b, bob_key, timeout=5)
        except VerificationFailed as exc:
            out["bob"] = exc

    thread = threading.Thread(target=bob)
    thread.start()
    try:
        out["alice"] = verify_alice(a, alice_key, timeout=5)
    except VerificationFailed as exc:
        out["alice"] = exc
    thread.join(timeout=10)
    return out


def test_equal_keys_pass_at_both_ends() -> None:
    key = np.random.default_rng(1).integers(0, 2, 10000, dtype=np.uint8)
    out = _run(key, key.copy())
    assert isinstance(out["alice"], VerificationResult)
    assert isinstance(out["bob"], VerificationResult)
    assert out["alice"].disclosed_bits == TAG_BITS
    assert out["alice"].failure_probability < 2.0**-80


@pytest.mark.parametrize("position", [0, 4999, 9999])
def test_a_single_residual_error_aborts_both_ends(position: int) -> None:
    key = np.random.default_rng(2).integers(0, 2, 10000, dtype=np.uint8)
    wrong = key.copy()
    wrong[position] ^= 1
    out = _run(key, wrong)
    assert isinstance(out["alice"], VerificationFailed)
    assert isinstance(out["bob"], VerificationFailed)


def test_two_compensating_errors_are_caught() -> None:
    # The pattern Cascade can miss: an even number of errors in one block.
    key = np.zeros(4096, dtype=np.uint8)
    wrong = key.copy()
    wrong[[10, 11]] = 1
    out = _run(key, wrong)
    assert isinstance(out["bob"], VerificationFailed)


def test_tag_binds_the_length() -> None:
    hash_key = bytes(range(32))
    assert key_tag(hash_key, np.zeros(8, dtype=np.uint8)) != key_tag(
        hash_key, np.zeros(9, dtype=np.uint8)
    )


def test_collision_probability_grows_with_length() -> None:
    assert collision_probability(1 << 24) > collision_probability(1 << 10)
    assert collision_probability(1 << 24) < 2.0**-85
