"""The compiled contracts committed under ``contracts/build/``, shipped in the package.

``scripts/build_contracts.py`` writes them; a test proves they are reproducible.
``notary/chain/contracts`` is a symbolic link to ``contracts/build``: in a checkout the
chain layer reads the build output itself, and a wheel (setuptools copies what the link
points to, as package data) carries the artifacts inside the installed package.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic

__all__ = ["BUILD_DIR", "LEGACY_DIR", "ContractArtifact", "load_artifact"]

BUILD_DIR = Path(__file__).parent / "contracts"
#: Artifacts of superseded builds (``<Name>-v1.json``): receipts anchored by them still
#: verify, and a data directory still pointing at them is recognised as a migration.
LEGACY_DIR = BUILD_DIR / "legacy"


@dataclass(frozen=True)
class ContractArtifact:
    """ABI and bytecode of one contract, as solc produced them."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    #: (offset, length) of every immutable in the runtime code; set at deployment.
    immutable_ranges: tuple[tuple[int, int], ...]
    compiler: str

    def event_topic(self, name: str) -> bytes:
        """``topics[0]`` of the event ``name``, from the ABI (so it cannot drift)."""
        for entry in self.abi:
            if entry.get("type") == "event" and entry.get("name") == name:
                return bytes(event_abi_to_log_topic(cast(ABIEvent, entry)))
        raise KeyError(f"{self.name} has no event {name}")

    def matches_runtime_code(self, code: bytes) -> bool:
        """Whether ``code`` (from ``eth_getCode``) is this contract's runtime bytecode,
        with the immutable values the constructor wrote masked out."""
        if len(code) != len(self.deployed_bytecode):
            return False
        expected, actual = bytearray(self.deployed_bytecode), bytearray(code)
        for start, length in self.immutable_ranges:
            expected[start : start + length] = actual[start : start + length]
        return expected == actual


@functools.cache
def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> ContractArtifact:
    """Read ``<build_dir>/<name>.json`` (``legacy/<name>-v1`` for a superseded build)."""
    document = json.loads((build_dir / f"{name}.json").read_text("utf-8"))
    ranges = tuple(
        sorted(
            (int(ref["start"]), int(ref["length"]))
            for refs in document["immutableReferences"].values()
            for ref in refs
        )
    )
    return ContractArtifact(
        name=document["contractName"],
        abi=document["abi"],
        bytecode=bytes.fromhex(document["bytecode"][2:]),
        deployed_bytecode=bytes.fromhex(document["deployedBytecode"][2:]),
        immutable_ranges=ranges,
        compiler=document["compiler"]["version"],
    )
