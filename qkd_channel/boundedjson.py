"""JSON parsing for untrusted input, with a fixed nesting limit.

Every parser of bytes that arrive from the network (envelopes, decrypted telemetry, HTTP
bodies, MQTT answers, swap terms) goes through :func:`loads` instead of ``json.loads``.
The reason is a crash, not a style: py-evm and py_ecc, which the notary imports, raise the
interpreter's recursion limit to 100,000, and at that limit ``json.loads`` of a body
nested about 65,000 deep overflows the C stack and kills the whole process (a segfault,
not an exception). pydantic-core's parser stops at a fixed depth of 200 with a
``ValueError`` whatever the recursion limit, and it is also stricter where we want it: no
``NaN``/``Infinity``, UTF-8 only.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

__all__ = ["MAX_DEPTH", "loads"]

MAX_DEPTH = 200  #: pydantic-core's fixed nesting limit; deeper documents are refused


def loads(data: str | bytes | bytearray) -> Any:
    """Parse standard JSON; ``ValueError`` for anything else, including over-deep nesting."""
    return from_json(data, allow_inf_nan=False)
