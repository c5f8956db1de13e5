"""``qkd-notary demo`` end to end with a small fleet: real KME processes, embedded chain.

The KMEs' only key is what the simulated QKD link between them delivered: the summary's
link rows come from end A's log, and nothing else writes to the key buffers.
"""

from __future__ import annotations

import re
from pathlib import Path

from notary.demo.infrastructure import network_address
from tests.notary.sdk_stack import run_cli


def test_demo_with_a_small_fleet_passes_every_check(tmp_path: Path) -> None:
    code, out = run_cli(
        "demo", "--devices", "2", "--messages", "2", "--workdir", str(tmp_path), timeout_s=300
    )
    assert code == 0, out
    assert "all checks passed" in out
    # 2 x 2 fleet messages, the probe's honest envelope, the flagged meter's two messages.
    assert "│ envelopes accepted (202)            │ 7 " in out
    assert "│ receipts verified against the chain │ 7 " in out
    assert "rejected: bad-tag" in out and "rejected: replay" in out
    assert "meter-01" in out  # the meter whose firmware changed was flagged
    assert (tmp_path / "notary" / "chain.json").is_file()
    assert (tmp_path / "link-auth.key").stat().st_size > 0
    blocks = re.search(r"QKD link \(lab, x\d+\): key blocks\s*│ (\d+) \(([\d,]+) bits", out)
    assert blocks is not None, out
    assert int(blocks[1]) >= 1 and int(blocks[2].replace(",", "")) > 0
    qber = re.search(r"QKD link QBER \(mean, min-max\)\s*│ ([\d.]+)%", out)
    assert qber is not None and 0.0 < float(qber[1]) < 11.0, out
    assert "link block" in (tmp_path / "kme-b.log").read_text()  # end B got the same blocks
    # Security levels derived end to end: KME B reports its QKD link in its Status, each
    # meter reports how it reached KME A. On loopback every hop is information-theoretic;
    # meter-01 comes across the network over TLS, and its otp records say computational.
    assert network_address() is not None, "the demo's TLS meters need a network address"
    levels = dict(re.findall(r"  otp over qkd / (\w+) / local: \d+ record\(s\), (.+)", out))
    assert levels["local"] == (
        "confidentiality information-theoretic, authenticity information-theoretic"
    ), out
    assert levels["tls"] == "confidentiality computational, authenticity computational", out


def test_demo_in_hybrid_mode(tmp_path: Path) -> None:
    """The fleet seals hybrid to the demo notary's ML-KEM key (made as init makes it)."""
    code, out = run_cli(
        "demo", "--devices", "2", "--messages", "1", "--mode", "hybrid",
        "--workdir", str(tmp_path), timeout_s=300,
    )  # fmt: skip
    assert code == 0 and "all checks passed" in out, out
    assert re.search(
        r"  hybrid over qkd / local / local: \d+ record\(s\), confidentiality computational, "
        r"quantum-resistant, authenticity computational, quantum-resistant",
        out,
    ), out
    assert re.search(
        r"  hybrid over qkd / tls / local: \d+ record\(s\), confidentiality computational, "
        r"quantum-resistant, authenticity computational\n",
        out,
    ), out
    assert (tmp_path / "notary" / "kem-mlkem768.key").stat().st_mode & 0o077 == 0
