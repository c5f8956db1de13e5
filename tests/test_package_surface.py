"""The installed console scripts exist and answer --help."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("script", ["qkd-device", "qkd-kme", "qkd-notary", "qswap"])
def test_console_script_prints_usage(script: str) -> None:
    result = subprocess.run([BIN / script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout.lower()


def test_notary_hashes_with_pysha3_unless_the_operator_chose() -> None:
    """py-evm's trie hashing is a third of the embedded chain's CPU (see notary/__init__)."""
    probe = (
        "import notary.chain\n"
        "from eth_hash.auto import keccak\n"
        "assert keccak(b'') == bytes.fromhex("
        "'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470')\n"
        "print(keccak.hasher.__module__)\n"
    )
    env = {"PATH": str(BIN)}
    chosen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert chosen.stdout.strip() == "eth_hash.backends.pysha3", chosen.stderr
    env["ETH_HASH_BACKEND"] = "pycryptodome"
    kept = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert kept.stdout.strip() == "eth_hash.backends.pycryptodome", kept.stderr
