"""The walkthrough in ``docs/atomic-swap.md``, run verbatim: the docs cannot drift.

Every ``sh`` block of the "Walkthrough" section is concatenated, in order, into one bash
script (``set -euo pipefail``) run in an empty directory with the project's ``qswap`` and
``qkd-kme`` on the ``PATH``. Only the ports are chosen here (the blocks default them), so
the run never collides with anything else on the machine. Two devnets, two KMEs with
their simulated QKD link, two parties: a completed swap and a refund, and the final
balances checked to the microAlgo.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from atomic_swap.devnet.process import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "atomic-swap.md"


def walkthrough_blocks() -> list[str]:
    text = DOC.read_text()
    start = text.index("\n## Walkthrough")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.S)


def test_the_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) >= 5
    script = tmp_path / "walkthrough.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(blocks))
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        **{
            name: str(free_port())
            for name in ("A_PORT", "B_PORT", "KME_A_PORT", "KME_B_PORT", "LINK_PORT")
        },
    }
    for name in list(env):
        if name.startswith(("QSWAP_", "ALGOD_", "INITIATOR_")):
            del env[name]
    proc = subprocess.Popen(
        ["bash", str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=400)
    finally:
        # Whatever the outcome, nothing the script started outlives the test.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()
    log = output + "".join(
        f"\n--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
        for p in (tmp_path / "swap-demo").glob("*.log")
    )
    assert proc.returncode == 0, log
    demo = tmp_path / "swap-demo"
    # Two networks with their own genesis.
    versions = [json.loads(line) for line in output.splitlines() if '"genesis_id"' in line]
    assert {v["genesis_id"] for v in versions} == {"alpha-v1", "beta-v1"}
    assert len({v["genesis_hash_b64"] for v in versions}) == 2
    # The completed swap and the refund, as each party's records say.
    for party in ("alice", "bob"):
        states = sorted(
            json.loads(p.read_text())["state"] for p in (demo / f"{party}-home" / "swaps").glob("*")
        )
        assert states == ["redeemed", "refunded"], (party, log)
    assert "refused: Bob's deadline has not passed yet" in output
    # Every balance to the microAlgo (alice A, alice B, bob A, bob B, in the doc's order).
    shown = [int(n) for n in re.findall(r"^(\d+) µALGO", output, flags=re.M)]
    assert shown == [6_993_000, 2_998_000, 3_998_000, 7_993_000], log
