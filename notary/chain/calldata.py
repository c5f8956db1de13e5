"""Calldata for our contracts' functions, encoded by eth-abi directly.

web3's ``Contract.encode_abi`` matches the arguments against every overload and runs each
value through recursive normalizers before it calls eth-abi. For a 500-record
``recordBatch`` that bookkeeping cost about 1 ms a record on this machine, more than the
EVM spends storing the record. Our functions have no overloads and their arguments are
already typed by :mod:`notary.chain.models`, so the selector and eth-abi types come
straight from the function's ABI entry; eth-abi still checks every value against its type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types
from web3.contract import Contract

from notary.errors import InvalidChainInput

__all__ = ["encode_call"]


def encode_call(contract: Contract, function: str, args: Sequence[Any]) -> bytes:
    """The calldata of ``contract.function(*args)``: selector followed by the arguments."""
    entries = [
        entry
        for entry in contract.abi
        if entry["type"] == "function" and entry.get("name") == function
    ]
    if len(entries) != 1:
        raise InvalidChainInput(f"expected exactly one function {function!r} in the ABI")
    abi = entries[0]
    try:
        arguments = encode(get_abi_input_types(abi), list(args))
    except (TypeError, ValueError) as exc:  # eth-abi's EncodingError is a ValueError
        raise InvalidChainInput(f"cannot encode {function}: {exc}") from exc
    return function_abi_to_4byte_selector(abi) + arguments
