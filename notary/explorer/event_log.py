"""The notary's contract events, filtered by device, event name and time, for the explorer's
event-log view and its CSV/JSON export (what Blockscout and Etherscan offer as "Logs").

Events come from ``eth_getLogs`` on the two contracts, decoded with their ABIs
(:class:`~notary.explorer.decode.NotaryABI`). A time window becomes a block range by binary
search on block timestamps (they never decrease), so no block outside it is read. The scan
goes back from the newest block in chunks and stops at ``limit`` events or
:data:`MAX_SCAN_BLOCKS`, so one request costs a bounded amount of node work whatever the
chain's length; the answer says when it stopped early.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.types import FilterParams

from notary.explorer.decode import DecodedArg, NotaryABI

__all__ = ["EVENT_NAMES", "EventLog", "LoggedEvent", "query_events"]

#: Blocks one request reads at most, and per ``eth_getLogs`` call.
MAX_SCAN_BLOCKS = 200_000
CHUNK_BLOCKS = 20_000
#: Events one request returns at most.
MAX_LIMIT = 1_000

#: Events the filter accepts (both contracts' own events).
EVENT_NAMES = (
    "RecordStored",
    "RecordSkipped",
    "RecordConflict",
    "RecordRefused",
    "PayloadPublished",
    "BatchRecorded",
    "RootAnchored",
    "AnchorSkipped",
    "DeviceRegistered",
    "DeviceDeactivated",
    "FirmwareAttested",
    "AttestationSkipped",
    "FirmwareChanged",
    "FirmwareApproved",
    "RoleGranted",
    "RoleRevoked",
)


@dataclass(frozen=True)
class LoggedEvent:
    block_number: int
    block_timestamp: int
    tx_hash: str
    log_index: int
    contract: str
    name: str
    args: tuple[DecodedArg, ...]

    @property
    def device_ids(self) -> set[str]:
        """Every device the event names (its own ``deviceId``, a stored one, a record's)."""
        return {arg.value for arg in self.args if arg.link is not None and arg.link[0] == "device"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_number": self.block_number,
            "block_timestamp": self.block_timestamp,
            "tx_hash": self.tx_hash,
            "log_index": self.log_index,
            "contract": self.contract,
            "event": self.name,
            "args": {arg.name: arg.value for arg in self.args},
        }


@dataclass(frozen=True)
class EventLog:
    events: tuple[LoggedEvent, ...]  #: newest first
    from_block: int
    to_block: int
    complete: bool  #: False when the limit or the scan bound cut it short


def query_events(
    w3: Web3,
    abi: NotaryABI,
    addresses: list[str],
    *,
    device_id: str | None = None,
    event: str | None = None,
    since: int | None = None,
    until: int | None = None,
    limit: int = 200,
) -> EventLog:
    """Events of ``addresses`` matching every filter given, newest first (see module doc)."""
    limit = max(1, min(limit, MAX_LIMIT))
    head = int(w3.eth.block_number)
    timestamp = _block_time(w3)
    first = 0 if since is None else _first_block_at_or_after(timestamp, head, since)
    last = head if until is None else _last_block_at_or_before(timestamp, head, until)
    lowest = max(first, last - MAX_SCAN_BLOCKS + 1)
    query: FilterParams = {"address": [to_checksum_address(a) for a in addresses]}
    if event is not None:
        topic = abi.event_topic(event)
        if topic is None:
            raise ValueError(f"no event {event!r} in the notary's contracts")
        query["topics"] = ["0x" + topic.hex()]
    found: list[LoggedEvent] = []
    top = last
    while top >= lowest and len(found) < limit:
        bottom = max(lowest, top - CHUNK_BLOCKS + 1)
        logs = w3.eth.get_logs({**query, "fromBlock": bottom, "toBlock": top})
        for entry in sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]), reverse=True):
            (decoded,) = abi.events([entry])
            number = int(entry["blockNumber"])
            logged = LoggedEvent(
                block_number=number,
                block_timestamp=timestamp(number),
                tx_hash="0x" + bytes(entry["transactionHash"]).hex(),
                log_index=decoded.log_index,
                contract=decoded.contract,
                name=decoded.name,
                args=decoded.args,
            )
            if device_id is not None and device_id not in logged.device_ids:
                continue
            found.append(logged)
            if len(found) == limit:
                break
        top = bottom - 1
    complete = len(found) < limit and lowest == first
    return EventLog(tuple(found), lowest, last, complete)


def _block_time(w3: Web3) -> Callable[[int], int]:
    cache: dict[int, int] = {}

    def timestamp(number: int) -> int:
        if number not in cache:
            cache[number] = int(w3.eth.get_block(number)["timestamp"])
        return cache[number]

    return timestamp


def _first_block_at_or_after(timestamp: Callable[[int], int], head: int, when: int) -> int:
    low, high = 0, head + 1
    while low < high:
        middle = (low + high) // 2
        if timestamp(middle) < when:
            low = middle + 1
        else:
            high = middle
    return low


def _last_block_at_or_before(timestamp: Callable[[int], int], head: int, when: int) -> int:
    return _first_block_at_or_after(timestamp, head, when + 1) - 1
