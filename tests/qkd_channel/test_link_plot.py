"""The key-rate plot script runs headless and writes a PNG."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "plot_key_rate.py"


def test_plot_script_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "rate.png"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--blocks", "1e10"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000
