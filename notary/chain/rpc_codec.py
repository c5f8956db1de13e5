"""Ethereum JSON-RPC values to eth-tester's Python values and back, for the ``/rpc`` gateway.

Requests: every parameter is checked here (hex quantities, block tags, addresses, hashes,
call objects, log filters), so malformed input is a JSON-RPC ``-32602`` naming the
parameter, never an exception from deep inside eth-tester or py-evm.

Results: eth-tester answers in its own normal form (snake_case keys, Python ints, a block
bloom as an int, receipts without a bloom, logs without ``removed``). JSON-RPC clients —
alloy (cast), ethers, web3.py, indexers — expect the execution-API shape: camelCase keys,
hex quantities, ``miner``/``input``/``yParity``, a 256-byte ``logsBloom`` on blocks and
receipts. The ``encode_*`` functions produce that shape.

The embedded chain has no mempool (each transaction is mined when sent) and one sealer (no
reorganisations), so ``pending``, ``safe`` and ``finalized`` all name the latest block.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eth_bloom.bloom import BloomFilter
from eth_utils.address import is_hex_address, to_checksum_address

from notary.errors import JSONRPCError

__all__ = [
    "INVALID_PARAMS",
    "LATEST",
    "BlockByHash",
    "BlockParam",
    "LogFilter",
    "address",
    "block_number",
    "block_param",
    "boolean",
    "call_request",
    "data",
    "encode_block",
    "encode_log",
    "encode_receipt",
    "encode_transaction",
    "encode_value",
    "hash32",
    "log_filter",
    "percentiles",
    "quantity",
]

INVALID_PARAMS = -32602
LATEST: Literal["latest"] = "latest"
_LATEST_TAGS = frozenset({"latest", "pending", "safe", "finalized"})
_UINT256_MAX = 2**256 - 1
_ZERO_ADDRESS = "0x" + "00" * 20
_BLOOM_BYTES = 256


@dataclass(frozen=True)
class BlockByHash:
    """A block named by hash (EIP-1898); the gateway resolves it to a number."""

    block_hash: str


#: What eth-tester accepts as a block: a number or "latest" (tags are folded), or a hash.
BlockParam = int | Literal["latest"] | BlockByHash


@dataclass(frozen=True)
class LogFilter:
    """An ``eth_getLogs`` filter with block bounds still unresolved."""

    from_block: int | Literal["latest"] | None
    to_block: int | Literal["latest"] | None
    block_hash: str | None
    addresses: tuple[str, ...]
    #: Per position: ``None`` (any topic) or the accepted topics.
    topics: tuple[tuple[str, ...] | None, ...]

    def may_match(self, bloom: int) -> bool:
        """Whether a block with this logs bloom can hold a matching log (no false negatives)."""
        block_bloom = BloomFilter(bloom)
        if self.addresses and not any(bytes.fromhex(a[2:]) in block_bloom for a in self.addresses):
            return False
        return all(
            alternatives is None or any(bytes.fromhex(t[2:]) in block_bloom for t in alternatives)
            for alternatives in self.topics
        )

    def as_tester_filter(self, first: int, last: int) -> dict[str, Any]:
        """eth-tester's ``get_logs`` keyword arguments for blocks ``first..last``."""
        return {
            "from_block": first,
            "to_block": last,
            "address": list(self.addresses) or None,
            "topics": [None if t is None else list(t) for t in self.topics] or None,
        }


def _invalid(position: int | str, message: str) -> JSONRPCError:
    where = f"argument {position}" if isinstance(position, int) else position
    return JSONRPCError(INVALID_PARAMS, f"invalid {where}: {message}")


def _hex_digits(value: Any, position: int | str, what: str) -> str:
    if not isinstance(value, str) or not value.startswith(("0x", "0X")):
        raise _invalid(position, f"{what} must be a 0x-prefixed hex string")
    digits = value[2:]
    if any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise _invalid(position, f"{what} is not hexadecimal")
    return digits.lower()


def quantity(value: Any, position: int | str, *, maximum: int = _UINT256_MAX) -> int:
    """A non-negative integer given as a hex quantity (or, leniently, a JSON integer)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        digits = _hex_digits(value, position, "quantity")
        if not digits or len(digits) > 64:
            raise _invalid(position, "quantity must have 1 to 64 hex digits")
        number = int(digits, 16)
    if not 0 <= number <= maximum:
        raise _invalid(position, f"quantity out of range (0..{maximum})")
    return number


def hash32(value: Any, position: int | str) -> str:
    """A 32-byte hash, lowercase ``0x``-hex."""
    digits = _hex_digits(value, position, "hash")
    if len(digits) != 64:
        raise _invalid(position, "hash must be 32 bytes")
    return "0x" + digits


def address(value: Any, position: int | str) -> str:
    """A 20-byte address in EIP-55 form (any case accepted, as geth does)."""
    if not isinstance(value, str) or not is_hex_address(value) or not value.startswith("0x"):
        raise _invalid(position, "address must be 20 bytes of 0x-prefixed hex")
    return str(to_checksum_address(value))


def data(value: Any, position: int | str) -> str:
    """Arbitrary bytes, lowercase ``0x``-hex of even length."""
    digits = _hex_digits(value, position, "data")
    if len(digits) % 2:
        raise _invalid(position, "data must have an even number of hex digits")
    return "0x" + digits


def boolean(value: Any, position: int | str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(position, "expected true or false")
    return value


def block_number(value: Any, position: int | str) -> int | Literal["latest"]:
    """A block tag or number (tags for the head fold to ``latest``)."""
    if isinstance(value, str) and value in _LATEST_TAGS:
        return LATEST
    if value == "earliest":
        return 0
    return quantity(value, position, maximum=2**63 - 1)


def block_param(value: Any, position: int) -> BlockParam:
    """A block tag, number, hash or EIP-1898 object (``{"blockHash": ...}``)."""
    if isinstance(value, Mapping):
        if set(value) - {"blockNumber", "blockHash", "requireCanonical"}:
            raise _invalid(position, "block object takes blockNumber or blockHash")
        if ("blockNumber" in value) == ("blockHash" in value):
            raise _invalid(position, "block object needs exactly one of blockNumber, blockHash")
        if "blockHash" in value:
            # No reorganisations on this chain: every known block is canonical.
            return BlockByHash(hash32(value["blockHash"], position))
        return block_number(value["blockNumber"], position)
    if isinstance(value, str) and len(value) == 66:
        return BlockByHash(hash32(value, position))
    return block_number(value, position)


_CALL_QUANTITIES = {
    "gas": "gas",
    "gasPrice": "gas_price",
    "maxFeePerGas": "max_fee_per_gas",
    "maxPriorityFeePerGas": "max_priority_fee_per_gas",
    "value": "value",
    "nonce": "nonce",
}
_FEE_KEYS = frozenset({"gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"})
#: Accepted for compatibility and dropped: the fields of a typed transaction that a call
#: does not need (the type is inferred from the fee fields, the chain ID is checked).
_CALL_IGNORED = frozenset({"type", "chainId", "accessList"})


def call_request(value: Any, position: int, *, chain_id: int, gas_cap: int) -> dict[str, Any]:
    """An ``eth_call``/``eth_estimateGas`` object in eth-tester's form.

    ``from`` defaults to the zero address and the gas to ``gas_cap`` (larger values are
    lowered to it); without fee fields the call is free (``gas_price`` 0), as in geth.
    """
    if not isinstance(value, Mapping):
        raise _invalid(position, "transaction call object expected")
    unknown = set(value) - set(_CALL_QUANTITIES) - _CALL_IGNORED - {"from", "to", "data", "input"}
    if unknown:
        raise _invalid(position, f"unsupported call fields: {', '.join(sorted(unknown))}")
    where = f"argument {position}"
    tx: dict[str, Any] = {
        "from": _ZERO_ADDRESS
        if value.get("from") is None
        else address(value["from"], f"{where}.from")
    }
    if value.get("to") is not None:
        tx["to"] = address(value["to"], f"{where}.to")
    for key, name in _CALL_QUANTITIES.items():
        if value.get(key) is not None:
            tx[name] = quantity(value[key], f"{where}.{key}")
    payloads = {
        data(value[k], f"{where}.{k}") for k in ("input", "data") if value.get(k) is not None
    }
    if len(payloads) > 1:
        raise _invalid(position, "input and data differ")
    if payloads:
        tx["data"] = payloads.pop()
    if value.get("chainId") is not None and quantity(value["chainId"], where) != chain_id:
        raise _invalid(position, f"chainId is not this chain's ({chain_id})")
    if "gas_price" in tx and _FEE_KEYS & (tx.keys() - {"gas_price"}):
        raise _invalid(position, "gasPrice cannot be combined with EIP-1559 fee fields")
    if not _FEE_KEYS & tx.keys():
        tx["gas_price"] = 0
    tx["gas"] = min(tx.get("gas", gas_cap), gas_cap)
    return tx


def _topic_position(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        # An empty alternative list matches anything, as in geth.
        return tuple(hash32(t, where) for t in value) or None
    return (hash32(value, where),)


def log_filter(value: Any, position: int) -> LogFilter:
    """An ``eth_getLogs`` filter object."""
    if not isinstance(value, Mapping):
        raise _invalid(position, "filter object expected")
    where = f"argument {position}"
    block_hash = None
    if value.get("blockHash") is not None:
        if value.get("fromBlock") is not None or value.get("toBlock") is not None:
            raise _invalid(position, "blockHash cannot be combined with fromBlock/toBlock")
        block_hash = hash32(value["blockHash"], f"{where}.blockHash")
    raw_address = value.get("address")
    if raw_address is None:
        addresses: tuple[str, ...] = ()
    elif isinstance(raw_address, list):
        addresses = tuple(address(a, f"{where}.address") for a in raw_address)
    else:
        addresses = (address(raw_address, f"{where}.address"),)
    raw_topics = value.get("topics") or []
    if not isinstance(raw_topics, list) or len(raw_topics) > 4:
        raise _invalid(position, "topics must be a list of at most 4 positions")
    topics = tuple(_topic_position(t, f"{where}.topics") for t in raw_topics)
    while topics and topics[-1] is None:
        topics = topics[:-1]

    def bound(key: str) -> int | Literal["latest"] | None:
        raw = value.get(key)
        return None if raw is None else block_number(raw, f"{where}.{key}")

    return LogFilter(bound("fromBlock"), bound("toBlock"), block_hash, addresses, topics)


def percentiles(value: Any, position: int, *, limit: int = 100) -> tuple[float, ...]:
    """``eth_feeHistory`` reward percentiles: at most ``limit``, ascending, in [0, 100]."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > limit:
        raise _invalid(position, f"reward percentiles must be a list of at most {limit}")
    result: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise _invalid(position, "reward percentiles must be numbers")
        if not 0 <= item <= 100 or (result and item < result[-1]):
            raise _invalid(position, "reward percentiles must ascend within [0, 100]")
        result.append(float(item))
    return tuple(result)


# -- results -------------------------------------------------------------------------


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def encode_value(value: Any) -> Any:
    """eth-tester's normal form as JSON-RPC: ints as hex quantities, bytes as hex data,
    snake_case keys as camelCase (bools, floats, strings and ``None`` unchanged)."""
    if isinstance(value, bool) or value is None or isinstance(value, float | str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Mapping):
        return {_camel(str(k)): encode_value(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [encode_value(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} as JSON-RPC")


def _bloom_hex(bloom: int) -> str:
    return "0x" + bloom.to_bytes(_BLOOM_BYTES, "big").hex()


def encode_transaction(tx: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction object; eth-tester's ``data`` is the RPC's ``input``."""
    fields = {("input" if k == "data" else k): v for k, v in tx.items()}
    if fields.get("to") == "":
        fields["to"] = None
    encoded: dict[str, Any] = encode_value(fields)
    return encoded


def encode_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """A block object; ``coinbase`` is the RPC's ``miner``, the bloom is 256 bytes."""
    fields = {("miner" if k == "coinbase" else k): v for k, v in block.items()}
    fields["logs_bloom"] = _bloom_hex(int(block["logs_bloom"]))
    transactions = block["transactions"]
    fields["transactions"] = [
        encode_transaction(tx) if isinstance(tx, Mapping) else tx for tx in transactions
    ]
    encoded: dict[str, Any] = encode_value(fields)
    return encoded


def encode_log(log: Mapping[str, Any]) -> dict[str, Any]:
    """A log object: eth-tester's ``type: mined`` becomes ``removed: false`` (no reorgs)."""
    fields = {k: v for k, v in log.items() if k != "type"}
    fields["removed"] = False
    encoded: dict[str, Any] = encode_value(fields)
    return encoded


def encode_receipt(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """A receipt object with its logs bloom (eth-tester omits it; clients require it).

    The pre-Byzantium ``root`` field, which eth-tester fills with a meaningless constant,
    is dropped: the receipt's ``status`` is authoritative.
    """
    bloom = BloomFilter()
    for log in receipt["logs"]:
        bloom.add(bytes.fromhex(log["address"][2:]))
        for topic in log["topics"]:
            bloom.add(bytes.fromhex(topic[2:]))
    fields = {k: v for k, v in receipt.items() if k not in ("state_root", "logs")}
    encoded: dict[str, Any] = encode_value(fields)
    encoded["logs"] = [encode_log(log) for log in receipt["logs"]]
    encoded["logsBloom"] = _bloom_hex(int(bloom))
    return encoded
