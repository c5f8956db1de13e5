"""JSON parsing for untrusted input, with a fixed nesting limit.

Every parser of bytes that arrive from the network (envelopes, decrypted telemetry, HTTP
bodies, MQTT answers, swap terms) goes through :func:`loads` instead of ``json.loads``.
The reason is a crash, not a style: py-evm and py_ecc, which the notary imports, raise the
interpreter's recursion limit to 100,000, and at that limit ``json.loads`` of a body
nested about 65,000 deep overflows the C stack and kills the whole process (a segfault,
not an exception).

:func:`loads` therefore measures the nesting depth *before* the standard library parses
anything, and refuses deeper documents with a ``ValueError`` whatever the recursion limit.
It is also stricter than ``json.loads`` where we want it: UTF-8 only (no UTF-16/32
sniffing), no ``NaN``/``Infinity``. Only the standard library is used, so the device
install (which has no pydantic) parses exactly as the server does.

How the depth is measured without a parser of our own: string literals are cut out with
one regular expression (they are the only place a bracket can hide), the brackets left are
kept, and the running count of open brackets is summed with C-speed builtins. The standard
parser can only be as deep as the brackets it has read and not closed, so no document
that passes the check can make it recurse further than :data:`MAX_DEPTH`. A document with
no more than :data:`MAX_DEPTH` opening brackets in all cannot be deeper, so the common
case (an envelope, a telemetry reading) costs two ``str.count`` calls on top of
``json.loads``.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, NoReturn

__all__ = ["MAX_DEPTH", "loads"]

MAX_DEPTH = 200  #: deepest nesting of arrays/objects accepted; deeper documents are refused

#: A JSON string literal (escapes included), written as "unrolled loop" so a long string
#: costs one fast character-class scan, not one alternation per character.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_DECODER = json.JSONDecoder()


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not standard JSON")


def _depth(text: str) -> int:
    """The deepest nesting of brackets outside string literals."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def loads(data: str | bytes | bytearray) -> Any:
    """Parse standard JSON; ``ValueError`` for anything else, including over-deep nesting."""
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")  # strict UTF-8
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH}")
    return json.loads(text, parse_constant=_refuse_constant)
