"""The committed contract artifacts are exactly what the pinned compiler produces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_hash.auto import keccak

from notary.chain.artifacts import BUILD_DIR, load_artifact

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["DeviceRegistry", "TelemetryNotary"]


def test_rebuilding_reproduces_the_committed_artifacts_byte_for_byte() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/build_contracts.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_artifact_is_verifiable_from_its_standard_json_input(name: str) -> None:
    """Everything a source verifier needs: pinned compiler, all sources, matching hashes."""
    document = json.loads((BUILD_DIR / f"{name}.json").read_text())
    lock = json.loads((ROOT / "contracts/package-lock.json").read_text())
    solc = lock["packages"]["node_modules/solc"]["version"]
    assert document["compiler"]["version"].startswith(solc + "+commit.")
    metadata = json.loads(document["metadata"])
    sources = document["standardJsonInput"]["sources"]
    assert f"src/{name}.sol" in metadata["sources"]
    assert set(metadata["sources"]) <= set(sources)
    for unit, entry in metadata["sources"].items():
        assert "0x" + keccak(sources[unit]["content"].encode()).hex() == entry["keccak256"]
    assert (
        metadata["settings"]["optimizer"] == document["standardJsonInput"]["settings"]["optimizer"]
    )


@pytest.mark.parametrize("name", NAMES)
def test_runtime_code_check_masks_only_immutables(name: str) -> None:
    artifact = load_artifact(name)
    code = bytearray(artifact.deployed_bytecode)
    assert artifact.matches_runtime_code(bytes(code))
    for start, length in artifact.immutable_ranges:
        code[start : start + length] = b"\x42" * length
    assert artifact.matches_runtime_code(bytes(code))
    code[0] ^= 0xFF
    assert not artifact.matches_runtime_code(bytes(code))
    assert not artifact.matches_runtime_code(artifact.deployed_bytecode[:-1])
