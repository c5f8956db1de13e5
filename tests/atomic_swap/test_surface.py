"""The exported API of ``atomic_swap`` is deliberate."""

from __future__ import annotations

import atomic_swap
from atomic_swap import errors


def test_public_names_resolve_and_are_deliberate() -> None:
    for name in atomic_swap.__all__:
        assert getattr(atomic_swap, name) is not None
    assert set(atomic_swap.__all__) >= {"initiate", "participate", "redeem", "refund", "HTLCTerms"}
    assert not any(name.startswith("_") for name in atomic_swap.__all__)


def test_every_error_derives_from_swap_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.SwapError)
