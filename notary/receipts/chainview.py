"""The chain-side checks every receipt version shares: node, contract, transaction, block.

:class:`AnchorChecks` runs them against one ``Web3`` for one anchor section, reporting each
passed check to a :class:`CheckLog`. Version-specific checks (leaves, stored records,
registry cross-checks) build on it in :mod:`notary.receipts.verify` and
:mod:`notary.receipts.legacy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import BlockNotFound, TransactionNotFound

from notary.chain.artifacts import ContractArtifact
from notary.config import AnchorMode
from notary.errors import ReceiptInvalid, ReceiptNotFinal
from notary.receipts.report import FieldCheck, Outcome, VerificationReport

__all__ = ["AnchorChecks", "AnchorSection", "CheckLog", "unhex"]


class AnchorSection(Protocol):
    """The anchor fields every receipt version has."""

    method: AnchorMode
    chain_id: int
    contract: str
    tx_hash: str
    block_number: int
    block_hash: str
    block_timestamp: int
    batch_size: int
    batch_root: str | None


def unhex(value: str, what: str) -> bytes:
    """Bytes of a ``0x``-hex field; malformed hex is a malformed receipt."""
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ReceiptInvalid(f"{what} is not hex", reason="format") from None


@dataclass
class CheckLog:
    """Checks passed and field outcomes so far; a failure carries them in its report."""

    receipt_version: str
    record_id: str
    on_pass: Callable[[str], None]
    passed: list[str] = field(default_factory=list)
    fields: list[FieldCheck] = field(default_factory=list)

    def passed_check(self, name: str) -> None:
        self.passed.append(name)
        self.on_pass(name)

    def field(self, name: str, outcome: Outcome, detail: str) -> None:
        self.fields.append(FieldCheck(name, outcome, detail))

    def report(self, **chain: Any) -> VerificationReport:
        return VerificationReport(
            receipt_version=self.receipt_version,
            record_id=self.record_id,
            fields=tuple(self.fields),
            checks_passed=tuple(self.passed),
            **chain,
        )

    def refuse(self, check: str, field_name: str, message: str) -> ReceiptInvalid:
        """The exception for a contradicted claim, naming the field in the report."""
        self.field(field_name, Outcome.FAILED, message)
        return ReceiptInvalid(f"{field_name}: {message}", reason=check, report=self.report())

    def not_final(self, message: str) -> ReceiptNotFinal:
        self.field("status", Outcome.UNVERIFIABLE, message)
        return ReceiptNotFinal(message, report=self.report())


def check_anchor_format(anchor: AnchorSection) -> None:
    """Malformed chain coordinates make a bad receipt, not a failing node: refuse them
    before any query (web3 would raise its own ValueError for them)."""
    if (
        len(unhex(anchor.tx_hash, "tx_hash")) != 32
        or len(unhex(anchor.block_hash, "block_hash")) != 32
        or not is_address(anchor.contract)
    ):
        raise ReceiptInvalid("malformed transaction, block or contract", reason="format")


class AnchorChecks:
    """Node, contract, transaction and block checks for one anchor section."""

    def __init__(
        self, w3: Web3, anchor: AnchorSection, artifact: ContractArtifact, log: CheckLog
    ) -> None:
        check_anchor_format(anchor)
        self.w3 = w3
        self.anchor = anchor
        self.artifact = artifact
        self.log = log
        self.address = to_checksum_address(anchor.contract)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=artifact.abi)
        self.tx: Any = None
        self.confirmations = 0

    def node_and_contract(self, expected_contract: str | None) -> None:
        """``chain-id``, ``contract`` (when pinned) and ``contract-code``."""
        anchor, log = self.anchor, self.log
        if self.w3.eth.chain_id != anchor.chain_id:
            raise log.refuse("chain-id", "anchor.chain_id", "the node serves another chain")
        log.passed_check("chain-id")
        log.field("anchor.chain_id", Outcome.ON_CHAIN, "the node serves this chain")
        pinned = ""
        if expected_contract is not None:
            if to_checksum_address(expected_contract) != self.address:
                raise log.refuse(
                    "contract", "anchor.contract", "anchored in another contract than expected"
                )
            log.passed_check("contract")
            pinned = ", at the pinned address"
        if not self.artifact.matches_runtime_code(bytes(self.w3.eth.get_code(self.address))):
            raise log.refuse(
                "contract-code", "anchor.contract", f"the code there is not {self.artifact.name}"
            )
        log.passed_check("contract-code")
        log.field(
            "anchor.contract",
            Outcome.ON_CHAIN,
            f"runs the genuine {self.artifact.name} code{pinned or ' (address not pinned)'}",
        )

    def transaction_and_block(self, min_confirmations: int) -> None:
        """``transaction``, ``block`` and ``confirmations`` (short of them: not final)."""
        anchor, log = self.anchor, self.log
        try:
            tx = self.w3.eth.get_transaction_receipt(anchor.tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            raise log.refuse(
                "transaction",
                "anchor.tx_hash",
                "no such transaction on this chain (never sent, or lost in a rollback)",
            ) from None
        if (
            tx["status"] != 1
            or tx["to"] is None
            or to_checksum_address(tx["to"]) != self.address
            or tx["blockNumber"] != anchor.block_number
            or "0x" + bytes(tx["blockHash"]).hex() != anchor.block_hash.lower()
        ):
            raise log.refuse(
                "transaction", "anchor.tx_hash", "the transaction does not match the receipt"
            )
        self.tx = tx
        log.passed_check("transaction")
        log.field("anchor.tx_hash", Outcome.ON_CHAIN, "succeeded, sent to the contract")
        try:
            block = self.w3.eth.get_block(anchor.block_number)
        except BlockNotFound:
            raise log.refuse("block", "anchor.block_number", "no such block") from None
        if "0x" + bytes(block["hash"]).hex() != anchor.block_hash.lower():
            raise log.refuse("block", "anchor.block_hash", "another block at that height")
        if block["timestamp"] != anchor.block_timestamp:
            raise log.refuse("block", "anchor.block_timestamp", "the block has another time")
        log.passed_check("block")
        for name in ("anchor.block_number", "anchor.block_hash", "anchor.block_timestamp"):
            log.field(name, Outcome.ON_CHAIN, "the block holding the transaction")
        self.confirmations = self.w3.eth.block_number - anchor.block_number + 1
        if self.confirmations < min_confirmations:
            raise log.not_final(
                f"{self.confirmations} confirmation(s) of the {min_confirmations} asked for: "
                "not final yet"
            )
        log.passed_check("confirmations")
        log.field("status", Outcome.ON_CHAIN, f"anchored, {self.confirmations} confirmation(s)")

    def call(self, function: str, *args: Any) -> Any:
        """A view of the contract at the anchoring contract's current state."""
        # Some backends (eth-tester) want a funded sender even for views: the account that
        # paid for the anchoring transaction is one.
        call_from: Any = {"from": self.tx["from"]}
        return getattr(self.contract.functions, function)(*args).call(call_from)

    def event(self, topic: bytes, position: int, value: bytes) -> Any:
        """The log of the anchoring transaction with ``topics[position] == value``."""
        for entry in self.tx["logs"]:
            topics = [bytes(t) for t in entry["topics"]]
            if (
                to_checksum_address(entry["address"]) == self.address
                and len(topics) > position
                and topics[0] == topic
                and topics[position] == value
            ):
                return entry
        raise self.log.refuse(
            "event", "anchor.tx_hash", "the transaction did not emit the anchoring event"
        )

    def root_anchored(self, root: bytes) -> None:
        """Merkle method: ``event``, ``state`` and ``batch-size`` for the root."""
        anchor, log = self.anchor, self.log
        self.event(self.artifact.event_topic("RootAnchored"), 1, root)
        log.passed_check("event")
        state = self.call("getAnchor", root)
        if int(state[3]) == 0 or int(state[4]) != anchor.block_number:
            raise log.refuse("state", "anchor.batch_root", "the root is not anchored in that block")
        log.passed_check("state")
        log.field("anchor.batch_root", Outcome.ON_CHAIN, "anchored in that block")
        if int(state[2]) != anchor.batch_size:
            raise log.refuse("batch-size", "anchor.batch_size", "the anchored count differs")
        log.passed_check("batch-size")
        log.field("anchor.batch_size", Outcome.ON_CHAIN, "the anchored root's record count")

    def batch_size_from_events(self) -> None:
        """Batch method: ``batch-size`` from the transaction's ``BatchRecorded`` event."""
        topic = self.artifact.event_topic("BatchRecorded")
        for entry in self.tx["logs"]:
            if (
                to_checksum_address(entry["address"]) == self.address
                and entry["topics"]
                and bytes(entry["topics"][0]) == topic
            ):
                recorded, other = self.w3.codec.decode(["uint256", "uint256"], bytes(entry["data"]))
                if int(recorded) + int(other) == self.anchor.batch_size:
                    self.log.passed_check("batch-size")
                    self.log.field(
                        "anchor.batch_size", Outcome.ON_CHAIN, "the transaction's record count"
                    )
                    return
        raise self.log.refuse(
            "batch-size", "anchor.batch_size", "the transaction holds another number of records"
        )

    def chain_facts(self) -> dict[str, Any]:
        """The report's chain coordinates once everything checked out."""
        return {
            "method": self.anchor.method,
            "chain_id": self.anchor.chain_id,
            "contract": self.address,
            "block_number": self.anchor.block_number,
            "block_timestamp": self.anchor.block_timestamp,
            "confirmations": self.confirmations,
        }
