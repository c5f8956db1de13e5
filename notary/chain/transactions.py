"""Sending transactions for one signing account: the policy half of the chain client.

* every node call goes through a bounded retry with backoff; when the node stays away the
  caller gets :class:`~notary.errors.ChainUnavailable`;
* gas is estimated (a revert already shows up here, decoded) and given a margin; a
  transaction that would not fit in a block raises :class:`~notary.errors.BatchTooLarge`.
  The embedded chain is the exception: its node runs in-process and refuses a failing
  transaction without mining it, so the sender skips the estimate (which would run the
  whole transaction through py-evm a second time), gives the block gas limit, and gets the
  same decoded revert or :class:`~notary.errors.BatchTooLarge` from the send itself;
* nonces come from :class:`~notary.chain.nonces.NonceManager` (thread-safe, resynchronized
  from the node's pending count after any failure or restart, including a transaction
  that was sent but not mined in time: a node that lost it, in a rollback or a restart,
  would otherwise be handed ever higher nonces that can never be mined);
* a send that failed in transit is retried with the *same signed bytes* and only after
  asking the node whether the transaction already arrived, so nothing executes twice; if
  the node disappears while we send or wait, the caller gets
  :class:`~notary.errors.TransactionNotConfirmed` with the hash to look up later;
* a transaction is done when its block has ``confirmations - 1`` blocks on top and its
  receipt still points at the same block; a mined revert raises
  :class:`~notary.errors.TransactionReverted` with the decoded reason. A transaction the
  node no longer knows at all (neither mined nor pending, for ``dropped_after_s``) is given
  up at once rather than waited for until the receipt timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import TxParams, TxReceipt, Wei

from notary.chain.models import TxInfo
from notary.chain.nonces import NonceManager
from notary.chain.reverts import RevertDecoder
from notary.chain.settings import ChainSettings
from notary.errors import (
    BatchTooLarge,
    ChainError,
    ChainUnavailable,
    TransactionNotConfirmed,
    TransactionReverted,
)

__all__ = ["TransactionSender", "hex0x"]

T = TypeVar("T")
_DEFAULT_TIP_WEI = 10**9


def hex0x(value: bytes) -> str:
    """``0x``-prefixed lowercase hex."""
    return "0x" + bytes(value).hex()


class TransactionSender:
    """Signs, sends and confirms transactions of one account on one node."""

    def __init__(
        self,
        w3: Web3,
        settings: ChainSettings,
        signer: LocalAccount,
        *,
        chain_id: int,
        reverts: RevertDecoder,
        estimate_gas: bool = True,
    ) -> None:
        """``estimate_gas=False`` only for a node that refuses failing transactions."""
        self._w3 = w3
        self._estimate_gas = estimate_gas
        self._settings = settings
        self._signer = signer
        self._chain_id = chain_id
        self._reverts = reverts
        self._nonces = NonceManager(
            lambda: self.rpc(
                "eth_getTransactionCount",
                lambda: w3.eth.get_transaction_count(signer.address, "pending"),
            )
        )
        latest = self.rpc("eth_getBlockByNumber", lambda: w3.eth.get_block("latest"))
        self.block_gas_limit = int(latest["gasLimit"])

    @property
    def address(self) -> str:
        return str(self._signer.address)

    def resync(self) -> None:
        """Ask the node for the next nonce before the next transaction (after a rollback
        the node's count is lower than ours; a nonce past it would never be mined)."""
        self._nonces.forget()

    def rpc(self, what: str, call: Callable[[], T]) -> T:
        """Run one node call under the retry policy."""
        return self._settings.retry.run(what, call)

    def view(self, contract: Contract, function: str, *args: Any) -> Any:
        """Call a view function; a revert raises TransactionReverted with its reason."""

        def call() -> Any:
            return getattr(contract.functions, function)(*args).call({"from": self.address})

        try:
            return self.rpc(function, call)
        except ContractLogicError as exc:
            raise TransactionReverted(self.reason(exc)) from exc

    def reason(self, exc: ContractLogicError) -> str:
        """The decoded revert reason carried by a web3 ContractLogicError."""
        data = exc.data
        if isinstance(data, str) and data.startswith("0x"):
            return self._reverts.decode(bytes.fromhex(data[2:]))
        return str(exc.message or exc)

    def transact(self, what: str, to: str | None, data: bytes) -> tuple[TxReceipt, TxInfo]:
        """Estimate, sign with the next nonce, send once, wait for confirmations."""
        call: TxParams = {"from": self.address, "data": data, "value": Wei(0)}
        if to is not None:
            call["to"] = to
        gas = self._estimate(what, call) if self._estimate_gas else self.block_gas_limit
        fees = self._fees()
        with self._nonces.reserve() as nonce:
            transaction: dict[str, Any] = {
                "data": data,
                "value": 0,
                "gas": gas,
                "nonce": nonce,
                "chainId": self._chain_id,
                **fees,
            }
            if to is not None:
                transaction["to"] = to
            signed = self._signer.sign_transaction(transaction)
            tx_hash = hex0x(signed.hash)
            try:
                self._send(what, bytes(signed.raw_transaction), tx_hash)
            except ChainUnavailable as exc:
                # A send that timed out may still have reached the node: hand out the hash.
                raise TransactionNotConfirmed(
                    f"the node became unreachable while {what} transaction {tx_hash} was "
                    "being sent; it may or may not have arrived",
                    tx_hash=tx_hash,
                ) from exc
        try:
            receipt = self._wait(what, tx_hash)
        except TransactionNotConfirmed:
            self._nonces.forget()
            raise
        if receipt["status"] != 1:
            reason = self._mined_revert_reason(call, gas, receipt)
            raise TransactionReverted(reason, tx_hash=tx_hash)
        return receipt, self.info(receipt)

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        """The receipt of a mined transaction, ``None`` if the node does not know it."""

        def fetch() -> TxReceipt | None:
            try:
                return self._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None

        return self.rpc("eth_getTransactionReceipt", fetch)

    def info(self, receipt: TxReceipt) -> TxInfo:
        """Where a mined transaction sits (fetches its block for the timestamp)."""
        number = int(receipt["blockNumber"])
        block = self.rpc("eth_getBlockByNumber", lambda: self._w3.eth.get_block(number))
        return TxInfo(
            tx_hash=hex0x(receipt["transactionHash"]),
            block_number=number,
            block_hash=hex0x(receipt["blockHash"]),
            block_timestamp=int(block["timestamp"]),
            gas_used=int(receipt["gasUsed"]),
        )

    def _estimate(self, what: str, call: TxParams) -> int:
        try:
            estimate = int(self.rpc("eth_estimateGas", lambda: self._w3.eth.estimate_gas(call)))
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._refusal(what, "refused to estimate", exc) from exc
        if estimate > self.block_gas_limit:
            raise BatchTooLarge(
                f"{what} needs {estimate} gas, a block holds {self.block_gas_limit}; split it"
            )
        return min(int(estimate * self._settings.gas_margin), self.block_gas_limit)

    def _refusal(self, what: str, verb: str, exc: ContractLogicError | Web3RPCError) -> ChainError:
        """The error for a node's refusal to estimate or accept a transaction.

        web3 turns a revert into ContractLogicError for estimates and calls only; a send
        refused with a revert comes back as a plain RPC error with code 3 and the data.
        """
        if isinstance(exc, ContractLogicError):
            return TransactionReverted(self.reason(exc))
        error = (exc.rpc_response or {}).get("error")
        if isinstance(error, dict) and error.get("code") == 3:
            data = str(error.get("data") or "0x")
            return TransactionReverted(self._reverts.decode(bytes.fromhex(data[2:])))
        if "gas required exceeds" in str(exc):
            return BatchTooLarge(
                f"{what} needs more gas than a block holds ({self.block_gas_limit}); split it"
            )
        return ChainError(f"the node {verb} the {what} transaction: {exc}")

    def _fees(self) -> dict[str, int]:
        """EIP-1559 fees when the chain has a base fee (2x base + tip), else a gas price."""
        block = self.rpc("eth_getBlockByNumber", lambda: self._w3.eth.get_block("latest"))
        base = block.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": int(self.rpc("eth_gasPrice", lambda: self._w3.eth.gas_price))}
        try:
            tip = int(self.rpc("eth_maxPriorityFeePerGas", lambda: self._w3.eth.max_priority_fee))
        except Web3RPCError:
            tip = _DEFAULT_TIP_WEI
        return {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}

    def _send(self, what: str, raw: bytes, tx_hash: str) -> None:
        """Hand the signed bytes to the node; on a retry, first ask whether they arrived."""
        attempts = 0

        def send_once() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and self._known(tx_hash):
                return
            try:
                self._w3.eth.send_raw_transaction(raw)
            except Web3RPCError as exc:
                if "already known" in str(exc).lower() or self._known(tx_hash):
                    return
                raise self._refusal(what, "rejected", exc) from exc

        self.rpc("eth_sendRawTransaction", send_once)

    def _known(self, tx_hash: str) -> bool:
        """Whether the node has the transaction, mined or pending (one call, no retry:
        callers run it under their own retry)."""
        try:
            self._w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def _wait(self, what: str, tx_hash: str) -> TxReceipt:
        """Poll until the receipt has the configured confirmations on a stable block."""
        started = time.monotonic()
        deadline = started + self._settings.receipt_timeout_s
        delay = self._settings.poll_interval_s
        known_at = started
        try:
            while True:
                receipt = self.receipt(tx_hash)
                if receipt is not None and self._confirmed(receipt, tx_hash):
                    return receipt
                now = time.monotonic()
                if receipt is not None or self.rpc(
                    "eth_getTransactionByHash", lambda: self._known(tx_hash)
                ):
                    known_at = now
                elif now - known_at >= self._settings.dropped_after_s:
                    raise TransactionNotConfirmed(
                        f"{what} transaction {tx_hash} is neither mined nor pending on the "
                        "node any more (dropped, or lost in a rollback)",
                        tx_hash=tx_hash,
                    )
                if now >= deadline:
                    raise TransactionNotConfirmed(
                        f"{what} transaction {tx_hash} not confirmed within "
                        f"{self._settings.receipt_timeout_s:.0f}s",
                        tx_hash=tx_hash,
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)
        except ChainUnavailable as exc:
            raise TransactionNotConfirmed(
                f"the node became unreachable while {what} transaction {tx_hash} was pending",
                tx_hash=tx_hash,
            ) from exc

    def _confirmed(self, receipt: TxReceipt, tx_hash: str) -> bool:
        needed = self._settings.confirmations
        if needed == 1:
            return True
        head = int(self.rpc("eth_blockNumber", lambda: self._w3.eth.block_number))
        if head - int(receipt["blockNumber"]) + 1 < needed:
            return False
        again = self.receipt(tx_hash)
        return again is not None and again["blockHash"] == receipt["blockHash"]

    def _mined_revert_reason(self, call: TxParams, gas: int, receipt: TxReceipt) -> str:
        if int(receipt["gasUsed"]) >= gas:
            return f"out of gas ({gas} gas given)"
        # Replay on the block's post-state: a revert caused by an earlier transaction of
        # the same block (the usual race) shows up there with its reason.
        replay: TxParams = {**call, "gas": gas}
        block = int(receipt["blockNumber"])
        try:
            self.rpc("eth_call", lambda: self._w3.eth.call(replay, block))
        except ContractLogicError as exc:
            return self.reason(exc)
        return "reverted on-chain; the reason could not be reproduced by replaying it"
