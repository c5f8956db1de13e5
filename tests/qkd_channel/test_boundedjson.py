"""The untrusted-input JSON parser: standard JSON in, a ValueError for anything else."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qkd_channel import boundedjson

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_parses_what_json_dumps_writes(value: object) -> None:
    assert boundedjson.loads(json.dumps(value)) == value


@pytest.mark.parametrize(
    "text",
    [b"NaN", b"[Infinity]", b"[1,]", b"{'a': 1}", b"\xff\xfe", b"", b"[1] 2"],
)
def test_non_standard_json_is_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        boundedjson.loads(text)


def test_nesting_is_refused_beyond_the_limit_whatever_the_recursion_limit() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what py-evm/py_ecc set in the notary process
    try:
        depth = boundedjson.MAX_DEPTH
        assert boundedjson.loads("[" * (depth - 1) + "]" * (depth - 1))
        with pytest.raises(ValueError):
            boundedjson.loads("[" * 200_000 + "]" * 200_000)
    finally:
        sys.setrecursionlimit(limit)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(_json_values)
def test_the_depth_guard_measures_what_the_parser_would_nest(value: object) -> None:
    assert boundedjson._depth(json.dumps(value)) == _depth(value)


@pytest.mark.parametrize(
    "text",
    [
        '["' + "[" * 1000 + '"]',  # brackets inside a string are text
        '["\\"' + "{" * 1000 + '"]',  # behind an escaped quote too
        "[" * boundedjson.MAX_DEPTH + "]" * boundedjson.MAX_DEPTH,  # exactly the limit
    ],
)
def test_brackets_in_strings_do_not_count_and_the_limit_itself_is_accepted(text: str) -> None:
    assert boundedjson.loads(text) is not None


def test_one_level_over_the_limit_is_refused() -> None:
    depth = boundedjson.MAX_DEPTH + 1
    with pytest.raises(ValueError, match="deeper"):
        boundedjson.loads("[" * depth + "]" * depth)
