"""Read-only views of the chain the notary anchors to: blocks, transactions, attestations.

Everything here is a blocking node call (web3 is synchronous); routes run these methods in
a worker thread. The embedded chain's provider serializes requests, so reading next to
the anchoring worker is safe. Node failures become
:class:`~notary.errors.ChainUnavailable` so pages can say "chain unreachable" instead of
failing; nothing here sends a transaction.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3Exception

from notary.chain.client import ChainClient
from notary.errors import ChainUnavailable, InvalidChainInput, NotaryError
from notary.explorer.decode import DecodedCall, DecodedEvent, NotaryABI
from notary.explorer.event_log import EventLog, query_events

__all__ = ["Attestation", "BlockSummary", "BlockView", "ChainView", "TxView"]

T = TypeVar("T")


@dataclass(frozen=True)
class BlockSummary:
    """A block as lists show it (no transaction fetched)."""

    number: int
    hash: str
    timestamp: int
    tx_hashes: tuple[str, ...]
    gas_used: int


@dataclass(frozen=True)
class TxView:
    """A mined transaction with its call and events decoded."""

    hash: str
    block_number: int
    block_hash: str
    sender: str
    to: str | None
    to_name: str | None  #: DeviceRegistry / TelemetryNotary, when it is one of ours
    created: str | None  #: address of a contract this transaction deployed
    succeeded: bool
    gas_used: int
    call: DecodedCall | None
    events: tuple[DecodedEvent, ...]


@dataclass(frozen=True)
class BlockView:
    """A block with its transactions decoded."""

    summary: BlockSummary
    parent_hash: str
    transactions: tuple[TxView, ...]  #: decoded, at most ``ChainView.MAX_BLOCK_TXS``


@dataclass(frozen=True)
class Attestation:
    """One entry of a device's on-chain attestation history (``getAttestation``)."""

    index: int
    digest: str
    attested_at: int
    block_number: int
    changed: bool
    trusted: bool


#: One view (with its ABI decoders) per chain client, for as long as the client lives.
_VIEWS: weakref.WeakKeyDictionary[ChainClient, ChainView] = weakref.WeakKeyDictionary()


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


class ChainView:
    """The explorer's window on the notary's chain client (read-only)."""

    #: Transactions of one block fetched and decoded for its page (two node calls each).
    MAX_BLOCK_TXS = 50

    def __init__(self, chain: ChainClient) -> None:
        self._chain = chain
        self.w3: Web3 = chain.w3
        self.chain_id = chain.chain_id
        self.registry_address = chain.registry_address
        self.notary_address = chain.notary_address
        self.embedded = chain.embedded
        self._abi = NotaryABI(
            self.w3,
            {"DeviceRegistry": self.registry_address, "TelemetryNotary": self.notary_address},
        )

    @classmethod
    def of(cls, chain: object) -> ChainView | None:
        """The view of the service's chain, or ``None`` when none is attached (or it is
        not a :class:`ChainClient`, e.g. a test double without a node behind it)."""
        if not isinstance(chain, ChainClient):
            return None
        view = _VIEWS.get(chain)
        if view is None:
            view = _VIEWS[chain] = cls(chain)
        return view

    def _node(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except NotaryError:
            raise
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailable(f"chain node query failed: {type(exc).__name__}") from exc

    # -- blocks ------------------------------------------------------------------------

    def head(self) -> int:
        return self._node(lambda: int(self.w3.eth.block_number))

    def latest_blocks(self, count: int, *, below: int | None = None) -> list[BlockSummary]:
        """Up to ``count`` blocks, newest first, starting at ``below`` (or the head)."""
        top = self.head() if below is None else min(below, self.head())
        numbers = range(top, max(top - count, -1), -1)
        return [self._summary(self._node(partial(self.w3.eth.get_block, n))) for n in numbers]

    def block(self, block_id: int | str) -> BlockView | None:
        """A block by number or 0x hash, with its transactions decoded; ``None`` if unknown."""

        def fetch() -> Any:
            try:
                return self.w3.eth.get_block(block_id)  # type: ignore[arg-type]
            except BlockNotFound:
                return None

        block = self._node(fetch)
        if block is None:
            return None
        summary = self._summary(block)
        fetched = (self.transaction(h) for h in summary.tx_hashes[: self.MAX_BLOCK_TXS])
        return BlockView(summary, _hex(block["parentHash"]), tuple(tx for tx in fetched if tx))

    @staticmethod
    def _summary(block: Any) -> BlockSummary:
        return BlockSummary(
            number=int(block["number"]),
            hash=_hex(block["hash"]),
            timestamp=int(block["timestamp"]),
            tx_hashes=tuple(_hex(h) for h in block["transactions"]),
            gas_used=int(block["gasUsed"]),
        )

    # -- transactions ------------------------------------------------------------------

    def transaction(self, tx_hash: str) -> TxView | None:
        """A mined transaction with its call and events decoded; ``None`` if unknown."""

        def fetch() -> tuple[Any, Any] | None:
            try:
                return (
                    self.w3.eth.get_transaction(tx_hash),  # type: ignore[arg-type]
                    self.w3.eth.get_transaction_receipt(tx_hash),  # type: ignore[arg-type]
                )
            except TransactionNotFound:
                return None

        found = self._node(fetch)
        if found is None:
            return None
        tx, receipt = found
        to = None if tx["to"] is None else to_checksum_address(tx["to"])
        created = receipt.get("contractAddress")
        return TxView(
            hash=_hex(tx["hash"]),
            block_number=int(receipt["blockNumber"]),
            block_hash=_hex(receipt["blockHash"]),
            sender=to_checksum_address(tx["from"]),
            to=to,
            to_name=self._abi.contract_name(to),
            created=None if created is None else to_checksum_address(created),
            succeeded=receipt["status"] == 1,
            gas_used=int(receipt["gasUsed"]),
            call=self._abi.call(to, bytes(tx["input"])),
            events=tuple(self._abi.events(receipt["logs"])),
        )

    # -- events ------------------------------------------------------------------------

    def events(
        self,
        *,
        device_id: str | None = None,
        event: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 200,
    ) -> EventLog:
        """The contracts' events matching the filters, newest first (bounded scan)."""
        return self._node(
            lambda: query_events(
                self.w3,
                self._abi,
                [self.registry_address, self.notary_address],
                device_id=device_id,
                event=event,
                since=since,
                until=until,
                limit=limit,
            )
        )

    # -- devices -----------------------------------------------------------------------

    def attestations(self, device_id: str) -> list[Attestation] | None:
        """The device's on-chain attestation history, oldest first; ``None`` if the
        registry does not know the device (yet: registration is mirrored asynchronously)."""
        try:
            if self._node(lambda: self._chain.get_device(device_id)) is None:
                return None
        except InvalidChainInput:  # not encodable as an on-chain device ID (> 32 bytes)
            return None
        count = self._node(lambda: self._chain.attestation_count(device_id))
        history = []
        for index in range(count):
            entry = self._node(partial(self._chain.get_attestation, device_id, index))
            history.append(
                Attestation(
                    index=index,
                    digest=entry.digest.hex(),
                    attested_at=entry.attested_at,
                    block_number=entry.block_number,
                    changed=entry.changed,
                    trusted=entry.trusted,
                )
            )
        return history
