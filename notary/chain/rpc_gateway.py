"""A read-only Ethereum JSON-RPC gateway to the embedded chain, for ``cast``, web3 clients
and block explorers (served over HTTP at ``/rpc`` by :mod:`notary.api.routes.rpc`).

Every request goes through the chain's :class:`~notary.chain.embedded.SerializedTesterProvider`,
which holds the chain lock for one provider request at a time; the anchoring worker takes
the same lock, so the gateway bounds how long one caller can hold it:

- ``eth_call``/``eth_estimateGas`` run with at most ``gas_cap`` gas (py-evm executes about
  a million gas of cheap opcodes per second);
- ``eth_getLogs`` spans at most ``max_log_blocks`` blocks and ``max_log_results`` logs and
  walks them block by block, one short lock hold each, skipping blocks whose logs bloom
  rules the filter out (as real nodes do);
- ``eth_feeHistory`` spans at most 1024 blocks, again one block per lock hold.

The chain is permissioned with one signer, the notary: state-changing, signing, filter
(server-side state) and node-control methods are refused with ``-32004``; methods that
are neither served nor refused are ``-32601``. ``eth_accounts`` is always empty.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from eth_tester.exceptions import BlockNotFound, TransactionFailed
from eth_tester.exceptions import ValidationError as TesterValidationError
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError as EVMValidationError
from web3.types import RPCEndpoint

from notary.chain import rpc_codec as codec
from notary.chain.embedded import SerializedTesterProvider
from notary.errors import JSONRPCError

__all__ = [
    "LIMIT_EXCEEDED",
    "METHOD_NOT_FOUND",
    "NOT_SUPPORTED",
    "SERVER_ERROR",
    "EmbeddedRPCGateway",
    "RPCLimits",
]

METHOD_NOT_FOUND = -32601
SERVER_ERROR = -32000
#: EIP-1474 "method not supported": a known method this gateway refuses on purpose.
NOT_SUPPORTED = -32004
#: EIP-1474 "limit exceeded".
LIMIT_EXCEEDED = -32005

_READ_ONLY = (
    "the embedded chain is read-only through /rpc: the notary is its only signer and "
    "writes it through its own API"
)
_NO_FILTERS = (
    "filters and subscriptions keep server-side state and are not offered by /rpc; "
    "poll eth_getLogs and eth_blockNumber instead"
)
_REFUSED_METHODS = {
    "eth_sendTransaction": _READ_ONLY,
    "eth_sendRawTransaction": _READ_ONLY,
    "eth_sendRawTransactionSync": _READ_ONLY,
    "eth_signTransaction": _READ_ONLY,
    "eth_sign": _READ_ONLY,
    "eth_signTypedData": _READ_ONLY,
    "eth_signTypedData_v3": _READ_ONLY,
    "eth_signTypedData_v4": _READ_ONLY,
    "eth_newFilter": _NO_FILTERS,
    "eth_newBlockFilter": _NO_FILTERS,
    "eth_newPendingTransactionFilter": _NO_FILTERS,
    "eth_getFilterChanges": _NO_FILTERS,
    "eth_getFilterLogs": _NO_FILTERS,
    "eth_uninstallFilter": _NO_FILTERS,
    "eth_subscribe": _NO_FILTERS,
    "eth_unsubscribe": _NO_FILTERS,
}
#: Whole namespaces of signing, dev-chain control and node administration.
_REFUSED_NAMESPACES = ("personal", "evm", "testing", "miner", "admin", "anvil", "hardhat")

#: The provider reports any failed execution as code 3; only a revert is code 3 on a real
#: node (geth reports out-of-gas and other failures as -32000).
_REVERT_CODE = 3
_REVERTED = "execution reverted"
_OUT_OF_GAS = "execution failed: OutOfGas"

_MAX_FEE_HISTORY_BLOCKS = 1024


@dataclass(frozen=True)
class RPCLimits:
    """Bounds on what one request may cost the chain (and the batch/body size at the edge)."""

    #: Largest HTTP request body accepted.
    max_body_bytes: int = 1 << 20
    #: Most requests in one JSON-RPC batch.
    max_batch: int = 100
    #: Gas available to ``eth_call``/``eth_estimateGas`` (larger requests are lowered to it).
    gas_cap: int = 2_000_000
    #: Most blocks one ``eth_getLogs`` may span.
    max_log_blocks: int = 5_000
    #: Most logs one ``eth_getLogs`` may return.
    max_log_results: int = 10_000


def _client_version() -> str:
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return f"qkd-notary/v{version('qkd-notary')}/py-evm-{version('py-evm')}/{python}"


class EmbeddedRPCGateway:
    """Serves read-only JSON-RPC methods from the embedded chain's provider (blocking)."""

    def __init__(
        self,
        provider: SerializedTesterProvider,
        *,
        chain_id: int,
        limits: RPCLimits | None = None,
    ) -> None:
        """Serve ``provider``'s chain, whose ID is ``chain_id`` (known to the caller, so
        building a gateway never waits for the chain lock)."""
        self._provider = provider
        self._chain_id = chain_id
        self.limits = limits or RPCLimits()
        self._client_version = _client_version()
        self._methods: dict[str, tuple[int, Callable[[list[Any]], Any]]] = {
            # name: (most parameters, handler)
            "web3_clientVersion": (0, lambda _: self._client_version),
            "web3_sha3": (1, lambda p: "0x" + keccak(hexstr=codec.data(p[0], 0)).hex()),
            "net_version": (0, lambda _: str(self._chain_id)),
            "net_listening": (0, lambda _: self._request("net_listening", [])),
            "net_peerCount": (0, lambda _: "0x0"),
            "eth_chainId": (0, lambda _: hex(self._chain_id)),
            "eth_syncing": (0, lambda _: False),
            "eth_accounts": (0, lambda _: []),
            "eth_blockNumber": (0, lambda _: hex(self._head())),
            "eth_gasPrice": (0, lambda _: hex(self._next_base_fee() + self._tip())),
            "eth_maxPriorityFeePerGas": (0, lambda _: hex(self._tip())),
            "eth_feeHistory": (3, self._fee_history),
            "eth_getBlockByNumber": (2, self._block_by_number),
            "eth_getBlockByHash": (2, self._block_by_hash),
            "eth_getBlockTransactionCountByNumber": (1, self._count_by_number("transactions")),
            "eth_getBlockTransactionCountByHash": (1, self._count_by_hash("transactions")),
            "eth_getUncleCountByBlockNumber": (1, self._count_by_number("uncles")),
            "eth_getUncleCountByBlockHash": (1, self._count_by_hash("uncles")),
            "eth_getTransactionByHash": (1, self._transaction_by_hash),
            "eth_getTransactionByBlockHashAndIndex": (2, self._transaction_by_hash_and_index),
            "eth_getTransactionByBlockNumberAndIndex": (2, self._transaction_by_number_and_index),
            "eth_getTransactionReceipt": (1, self._receipt),
            "eth_getBlockReceipts": (1, self._block_receipts),
            "eth_getLogs": (1, self._logs),
            "eth_call": (3, self._call),
            "eth_estimateGas": (2, self._estimate_gas),
            "eth_getBalance": (2, self._account_state("eth_getBalance")),
            "eth_getCode": (2, self._account_state("eth_getCode")),
            "eth_getTransactionCount": (2, self._account_state("eth_getTransactionCount")),
            "eth_getStorageAt": (3, self._storage_at),
        }

    @property
    def methods(self) -> frozenset[str]:
        """The names of the served methods."""
        return frozenset(self._methods)

    def call(self, method: str, params: list[Any]) -> Any:
        """Answer one request with a JSON-ready result; raise :class:`JSONRPCError`."""
        served = self._methods.get(method)
        if served is None:
            raise self._unserved(method)
        most, handler = served
        if len(params) > most:
            raise JSONRPCError(codec.INVALID_PARAMS, f"too many arguments, want at most {most}")
        return handler(params + [None] * (most - len(params)))

    @staticmethod
    def _unserved(method: str) -> JSONRPCError:
        reason = _REFUSED_METHODS.get(method)
        if reason is None and method.partition("_")[0] in _REFUSED_NAMESPACES:
            reason = _READ_ONLY
        name = method[:64]  # echo a caller's name, not a megabyte of it
        if reason is not None:
            return JSONRPCError(NOT_SUPPORTED, f"{name} is not supported: {reason}")
        return JSONRPCError(METHOD_NOT_FOUND, f"the method {name} does not exist/is not available")

    # -- provider access -----------------------------------------------------------------

    def _request(self, method: str, params: list[Any]) -> Any:
        """One provider request (one hold of the chain lock), errors shaped like geth's."""
        try:
            response = self._provider.make_request(RPCEndpoint(method), params)
        except BlockNotFound:
            raise JSONRPCError(SERVER_ERROR, "header not found") from None
        except (TesterValidationError, EVMValidationError, TransactionFailed) as exc:
            raise JSONRPCError(SERVER_ERROR, str(exc) or type(exc).__name__) from None
        error = response.get("error")
        if error is None:
            return response.get("result")
        if isinstance(error, str):
            raise JSONRPCError(SERVER_ERROR, error)
        code, message = int(error.get("code", SERVER_ERROR)), str(error.get("message", ""))
        if code == _REVERT_CODE and message != _REVERTED:
            raise JSONRPCError(SERVER_ERROR, message)
        raise JSONRPCError(code, message, data=error.get("data"))

    def _head(self) -> int:
        return int(self._request("eth_blockNumber", []))

    def _tip(self) -> int:
        return int(self._request("eth_maxPriorityFeePerGas", []))

    def _next_base_fee(self) -> int:
        """The base fee of the block being built, as py-evm computed it from the head."""
        pending = self._request("eth_getBlockByNumber", ["pending", False])
        return int(pending["base_fee_per_gas"])

    def _block_number(self, block: codec.BlockParam) -> int | str:
        """A block parameter in eth-tester's form; a hash becomes its number."""
        if not isinstance(block, codec.BlockByHash):
            return block
        found = self._request("eth_getBlockByHash", [block.block_hash, False])
        if found is None:
            raise JSONRPCError(SERVER_ERROR, f"header for hash {block.block_hash} not found")
        return int(found["number"])

    def _numbered(self, block: int | str) -> int:
        return self._head() if block == codec.LATEST else int(block)

    # -- blocks and transactions -----------------------------------------------------

    def _block_by_number(self, p: list[Any]) -> Any:
        block = codec.block_number(p[0], 0)
        full = False if p[1] is None else codec.boolean(p[1], 1)
        found = self._request("eth_getBlockByNumber", [block, full])
        return None if found is None else codec.encode_block(found)

    def _block_by_hash(self, p: list[Any]) -> Any:
        block_hash = codec.hash32(p[0], 0)
        full = False if p[1] is None else codec.boolean(p[1], 1)
        found = self._request("eth_getBlockByHash", [block_hash, full])
        return None if found is None else codec.encode_block(found)

    def _count_by_number(self, field: str) -> Callable[[list[Any]], Any]:
        """How many ``field`` entries (transactions, uncles) a numbered block has."""

        def count(p: list[Any]) -> Any:
            block = codec.block_number(p[0], 0)
            found = self._request("eth_getBlockByNumber", [block, False])
            return None if found is None else hex(len(found[field]))

        return count

    def _count_by_hash(self, field: str) -> Callable[[list[Any]], Any]:
        """How many ``field`` entries (transactions, uncles) a block named by hash has."""

        def count(p: list[Any]) -> Any:
            found = self._request("eth_getBlockByHash", [codec.hash32(p[0], 0), False])
            return None if found is None else hex(len(found[field]))

        return count

    def _transaction_by_hash(self, p: list[Any]) -> Any:
        found = self._request("eth_getTransactionByHash", [codec.hash32(p[0], 0)])
        return None if found is None else codec.encode_transaction(found)

    def _transaction_by_hash_and_index(self, p: list[Any]) -> Any:
        block_hash, index = codec.hash32(p[0], 0), codec.quantity(p[1], 1)
        found = self._request("eth_getTransactionByBlockHashAndIndex", [block_hash, index])
        return None if found is None else codec.encode_transaction(found)

    def _transaction_by_number_and_index(self, p: list[Any]) -> Any:
        block = codec.block_number(p[0], 0)
        index = codec.quantity(p[1], 1)
        found = self._request("eth_getTransactionByBlockNumberAndIndex", [block, index])
        return None if found is None else codec.encode_transaction(found)

    def _receipt(self, p: list[Any]) -> Any:
        found = self._request("eth_getTransactionReceipt", [codec.hash32(p[0], 0)])
        return None if found is None else codec.encode_receipt(found)

    def _block_receipts(self, p: list[Any]) -> Any:
        block = codec.block_param(p[0], 0)
        if isinstance(block, codec.BlockByHash):
            found = self._request("eth_getBlockByHash", [block.block_hash, False])
        else:
            found = self._request("eth_getBlockByNumber", [block, False])
        if found is None:
            return None
        return [
            codec.encode_receipt(self._request("eth_getTransactionReceipt", [tx_hash]))
            for tx_hash in found["transactions"]
        ]

    # -- logs ------------------------------------------------------------------------

    def _logs(self, p: list[Any]) -> Any:
        query = codec.log_filter(p[0], 0)
        if query.block_hash is not None:
            first = last = int(self._block_number(codec.BlockByHash(query.block_hash)))
        else:
            head = self._head()
            first = head if query.from_block in (None, codec.LATEST) else int(query.from_block)
            last = head if query.to_block in (None, codec.LATEST) else int(query.to_block)
            if first > last:
                raise JSONRPCError(codec.INVALID_PARAMS, "invalid block range params")
            last = min(last, head)
        if last - first + 1 > self.limits.max_log_blocks:
            raise JSONRPCError(
                LIMIT_EXCEEDED,
                f"query spans more than {self.limits.max_log_blocks} blocks; narrow the range",
            )
        logs: list[dict[str, Any]] = []
        for number in range(first, last + 1):
            header = self._request("eth_getBlockByNumber", [number, False])
            if header is None or not query.may_match(int(header["logs_bloom"])):
                continue
            found = self._request("eth_getLogs", [query.as_tester_filter(number, number)])
            logs.extend(codec.encode_log(entry) for entry in found)
            if len(logs) > self.limits.max_log_results:
                raise JSONRPCError(
                    LIMIT_EXCEEDED,
                    f"query returned more than {self.limits.max_log_results} results; "
                    "narrow the range or the filter",
                )
        return logs

    # -- execution -------------------------------------------------------------------

    def _call_args(self, p: list[Any]) -> tuple[dict[str, Any], int | str]:
        tx = codec.call_request(p[0], 0, chain_id=self._chain_id, gas_cap=self.limits.gas_cap)
        block = codec.LATEST if p[1] is None else codec.block_param(p[1], 1)
        return tx, self._block_number(block)

    def _call(self, p: list[Any]) -> Any:
        if p[2] not in (None, {}):
            raise JSONRPCError(codec.INVALID_PARAMS, "state overrides are not supported")
        tx, block = self._call_args(p)
        return self._request("eth_call", [tx, block])

    def _estimate_gas(self, p: list[Any]) -> Any:
        tx, block = self._call_args(p)
        # py-evm estimates at the block gas limit whatever the request's gas; a run at the
        # cap first keeps an endless loop from holding the chain lock for the whole block.
        try:
            self._request("eth_call", [tx, block])
        except JSONRPCError as exc:
            if str(exc) == _OUT_OF_GAS:
                raise JSONRPCError(
                    SERVER_ERROR, f"gas required exceeds allowance ({tx['gas']})"
                ) from None
            raise
        return hex(int(self._request("eth_estimateGas", [tx, block])))

    # -- accounts --------------------------------------------------------------------

    def _account_state(self, method: str) -> Callable[[list[Any]], Any]:
        """``eth_getBalance``, ``eth_getCode``, ``eth_getTransactionCount``: (address, block)."""

        def read(p: list[Any]) -> Any:
            account = codec.address(p[0], 0)
            block = codec.LATEST if p[1] is None else codec.block_param(p[1], 1)
            found = self._request(method, [account, self._block_number(block)])
            return found if isinstance(found, str) else hex(int(found))

        return read

    def _storage_at(self, p: list[Any]) -> Any:
        account = codec.address(p[0], 0)
        slot = codec.quantity(p[1], 1)
        block = codec.LATEST if p[2] is None else codec.block_param(p[2], 2)
        return self._request("eth_getStorageAt", [account, hex(slot), self._block_number(block)])

    # -- fees ------------------------------------------------------------------------

    def _fee_history(self, p: list[Any]) -> Any:
        count = codec.quantity(p[0], 0, maximum=2**32)
        if not 1 <= count <= _MAX_FEE_HISTORY_BLOCKS:
            raise JSONRPCError(
                codec.INVALID_PARAMS, f"block count must be 1..{_MAX_FEE_HISTORY_BLOCKS}"
            )
        newest_param = codec.LATEST if p[1] is None else codec.block_number(p[1], 1)
        head = self._head()
        newest = self._numbered(newest_param)
        if newest > head:
            raise JSONRPCError(SERVER_ERROR, "request beyond head block")
        wanted = codec.percentiles(p[2], 2)
        oldest = max(0, newest - count + 1)
        base_fees: list[int] = []
        ratios: list[float] = []
        rewards: list[list[str]] = []
        for number in range(oldest, newest + 1):
            block = self._request("eth_getBlockByNumber", [number, bool(wanted)])
            base_fee = int(block["base_fee_per_gas"])
            base_fees.append(base_fee)
            ratios.append(int(block["gas_used"]) / int(block["gas_limit"]))
            if wanted:
                rewards.append([hex(r) for r in self._block_rewards(block, base_fee, wanted)])
        if newest == head:
            base_fees.append(self._next_base_fee())
        else:
            following = self._request("eth_getBlockByNumber", [newest + 1, False])
            base_fees.append(int(following["base_fee_per_gas"]))
        history: dict[str, Any] = {
            "oldestBlock": hex(oldest),
            "baseFeePerGas": [hex(fee) for fee in base_fees],
            "gasUsedRatio": ratios,
        }
        if wanted:
            history["reward"] = rewards
        return history

    def _block_rewards(
        self, block: dict[str, Any], base_fee: int, wanted: tuple[float, ...]
    ) -> list[int]:
        """geth's reward percentiles: tips sorted, weighted by the gas each transaction used."""
        if not block["transactions"]:
            return [0] * len(wanted)
        spent = []
        for tx in block["transactions"]:
            receipt = self._request("eth_getTransactionReceipt", [tx["hash"]])
            if "max_fee_per_gas" in tx:
                tip = min(
                    int(tx["max_priority_fee_per_gas"]), int(tx["max_fee_per_gas"]) - base_fee
                )
            else:
                tip = int(tx["gas_price"]) - base_fee
            spent.append((tip, int(receipt["gas_used"])))
        spent.sort(key=lambda item: item[0])
        block_gas = int(block["gas_used"])
        rewards = []
        index, cumulative = 0, spent[0][1]
        for percentile in wanted:
            threshold = block_gas * percentile / 100
            while cumulative < threshold and index < len(spent) - 1:
                index += 1
                cumulative += spent[index][1]
            rewards.append(spent[index][0])
        return rewards
