"""The installed console scripts exist and answer --help."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("script", ["qkd-kme", "qkd-notary", "qswap"])
def test_console_script_prints_usage(script: str) -> None:
    result = subprocess.run([BIN / script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
