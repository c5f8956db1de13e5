"""Calls and events of the notary's contracts, decoded with their ABIs for display.

The ABIs are the committed build artifacts (:func:`notary.chain.artifacts.load_artifact`),
so the explorer shows exactly what the deployed contracts define. Values become display
strings here, once, with a link target where one exists (a device, a record, a block), so
templates only lay them out. Encodings follow :mod:`notary.chain.models`: device IDs are
zero-padded UTF-8, security modes are ``1 = otp`` / ``2 = aead`` / ``3 = hybrid``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception

from notary.chain.artifacts import load_artifact
from notary.chain.models import Role, SecurityMode, decode_device_id
from notary.errors import InvalidChainInput

__all__ = ["CONTRACT_NAMES", "DecodedArg", "DecodedCall", "DecodedEvent", "NotaryABI"]

#: The contracts the explorer decodes, by artifact name.
CONTRACT_NAMES = ("DeviceRegistry", "TelemetryNotary")

_DEVICE_FIELDS = {"deviceId"}
_RECORD_FIELDS = {"recordId", "firstRecordId", "lastRecordId"}
_ROLES = {role.value: role.name for role in Role}


@dataclass(frozen=True)
class DecodedArg:
    """One named value; ``link`` is ``(kind, key)`` with kind ``device`` or ``record``."""

    name: str
    value: str
    link: tuple[str, str] | None = None


@dataclass(frozen=True)
class DecodedEvent:
    """One log of a transaction receipt."""

    log_index: int
    contract: str  #: contract name, or the emitting address when not one of ours
    name: str  #: event name, or ``unknown`` when not decodable
    args: tuple[DecodedArg, ...]


@dataclass(frozen=True)
class DecodedCall:
    """The function a transaction called on one of our contracts, with its arguments."""

    contract: str
    function: str
    args: tuple[DecodedArg, ...]


def _format(name: str, abi_type: str, value: Any) -> list[DecodedArg]:
    """Display rows for one ABI value (tuples and arrays flattened with dotted names)."""
    if abi_type.endswith("[]"):
        rows: list[DecodedArg] = [DecodedArg(name, f"{len(value)} item(s)")]
        for i, item in enumerate(value):
            rows.extend(_format(f"{name}[{i}]", abi_type[:-2], item))
        return rows
    if isinstance(value, bytes) and abi_type == "bytes32":
        if name in _DEVICE_FIELDS:
            try:
                device_id = decode_device_id(value)
            except InvalidChainInput:
                return [DecodedArg(name, "0x" + value.hex())]
            return [DecodedArg(name, device_id, ("device", device_id))]
        if name in _RECORD_FIELDS:
            return [DecodedArg(name, "0x" + value.hex(), ("record", "0x" + value.hex()))]
        if name in {"role", "previousAdminRole", "newAdminRole"} and value in _ROLES:
            return [DecodedArg(name, _ROLES[value])]
        return [DecodedArg(name, "0x" + value.hex())]
    if abi_type == "bytes":
        # Published payloads are public on-chain, but the explorer is no telemetry viewer.
        return [DecodedArg(name, f"{len(value)} byte(s)")]
    if abi_type == "uint8" and name == "mode":
        try:
            return [DecodedArg(name, SecurityMode(int(value)).label)]
        except ValueError:
            return [DecodedArg(name, str(value))]
    if abi_type == "address":
        return [DecodedArg(name, to_checksum_address(value))]
    return [DecodedArg(name, str(value))]


def _format_args(
    inputs: Sequence[Mapping[str, Any]], values: Mapping[str, Any]
) -> list[DecodedArg]:
    rows: list[DecodedArg] = []
    for spec in inputs:
        value = values[spec["name"]]
        if spec["type"].startswith("tuple"):
            rows.extend(_format_tuple(spec, value))
        else:
            rows.extend(_format(spec["name"], spec["type"], value))
    return rows


def _format_tuple(spec: Mapping[str, Any], value: Any) -> list[DecodedArg]:
    """A struct (or array of structs) as ``name[i].field`` rows."""
    components = spec["components"]
    is_array = spec["type"].endswith("[]")
    items = value if is_array else [value]
    rows = [DecodedArg(spec["name"], f"{len(items)} item(s)")] if is_array else []
    for i, item in enumerate(items):
        prefix = f"{spec['name']}[{i}]" if is_array else spec["name"]
        names = [c["name"] for c in components]
        fields = item if isinstance(item, Mapping) else dict(zip(names, item, strict=True))
        for component in components:
            for row in _format(component["name"], component["type"], fields[component["name"]]):
                rows.append(DecodedArg(f"{prefix}.{row.name}", row.value, row.link))
    return rows


class NotaryABI:
    """Decoder for the DeviceRegistry and TelemetryNotary deployed at known addresses."""

    def __init__(self, w3: Web3, addresses: Mapping[str, str]) -> None:
        """``addresses`` maps artifact name (:data:`CONTRACT_NAMES`) to its address."""
        self._contracts: dict[str, tuple[str, Contract]] = {}
        self._events: dict[tuple[str, bytes], dict[str, Any]] = {}
        for name, address in addresses.items():
            checksummed = to_checksum_address(address)
            abi = load_artifact(name).abi
            self._contracts[checksummed] = (name, w3.eth.contract(address=checksummed, abi=abi))
            for entry in abi:
                if entry["type"] == "event":
                    self._events[(checksummed, event_abi_to_log_topic(cast(ABIEvent, entry)))] = (
                        entry
                    )

    def event_topic(self, name: str) -> bytes | None:
        """``topics[0]`` of the event ``name`` of either contract, ``None`` if neither has it."""
        for (_, topic), entry in self._events.items():
            if entry["name"] == name:
                return topic
        return None

    def contract_name(self, address: str | None) -> str | None:
        """``DeviceRegistry``/``TelemetryNotary`` for our addresses, else ``None``."""
        if address is None:
            return None
        known = self._contracts.get(to_checksum_address(address))
        return None if known is None else known[0]

    def call(self, to: str | None, data: bytes) -> DecodedCall | None:
        """The function and arguments of a transaction to one of our contracts."""
        if to is None or len(data) < 4:
            return None
        known = self._contracts.get(to_checksum_address(to))
        if known is None:
            return None
        name, contract = known
        try:
            function, params = contract.decode_function_input(data)
        except (ValueError, Web3Exception):
            return None
        args = _format_args(function.abi["inputs"], params)
        return DecodedCall(name, function.fn_name, tuple(args))

    def events(self, logs: Iterable[Mapping[str, Any]]) -> list[DecodedEvent]:
        """Every log of a transaction receipt, decoded when it is one of our events."""
        decoded = []
        for entry in logs:
            address = to_checksum_address(entry["address"])
            topics = [bytes(t) for t in entry["topics"]]
            event_abi = self._events.get((address, topics[0])) if topics else None
            index = int(entry["logIndex"])
            if event_abi is None:
                decoded.append(DecodedEvent(index, address, "unknown", ()))
                continue
            _, contract = self._contracts[address]
            data = contract.events[event_abi["name"]]().process_log(entry)
            decoded.append(
                DecodedEvent(
                    index,
                    self._contracts[address][0],
                    event_abi["name"],
                    tuple(_format_args(event_abi["inputs"], data["args"])),
                )
            )
        return decoded
