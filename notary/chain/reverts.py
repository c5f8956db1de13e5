"""Readable revert reasons: ``Error(string)``, ``Panic(uint256)`` and custom errors.

OpenZeppelin 5 and our contracts revert with custom errors, which a node returns only as
ABI-encoded bytes. :class:`RevertDecoder` turns them into text such as
``AccessControlUnauthorizedAccount(account=0x…, neededRole=0x…)`` for
:class:`~notary.errors.TransactionReverted`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import function_signature_to_4byte_selector

__all__ = ["RevertDecoder"]

_PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}


def _canonical_type(component: dict[str, Any]) -> str:
    kind = str(component["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in component["components"])
        return f"({inner}){kind[5:]}"
    return kind


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class RevertDecoder:
    """Decodes revert data against the errors declared in a set of ABIs."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [_canonical_type(i) for i in item["inputs"]]
                names = [str(i["name"]) for i in item["inputs"]]
                selector = function_signature_to_4byte_selector(
                    f"{item['name']}({','.join(types)})"
                )
                self._errors[selector] = (str(item["name"]), types, names)

    def decode(self, data: bytes) -> str:
        """A human-readable reason for the revert data ``data``."""
        if not data:
            return "reverted without a reason"
        selector, body = data[:4], data[4:]
        try:
            if selector == function_signature_to_4byte_selector("Error(string)"):
                return str(decode(["string"], body)[0])
            if selector == function_signature_to_4byte_selector("Panic(uint256)"):
                code = int(decode(["uint256"], body)[0])
                return f"panic 0x{code:02x}: {_PANIC_CODES.get(code, 'unknown panic code')}"
            if selector in self._errors:
                name, types, names = self._errors[selector]
                values = decode(types, body)
                shown = ", ".join(f"{n}={_show(v)}" for n, v in zip(names, values, strict=True))
                return f"{name}({shown})"
        except DecodingError:
            pass
        return f"unrecognized revert data 0x{data.hex()}"
