"""Benchmark Cascade: efficiency, round trips and throughput on the in-memory channel.

Alice and Bob run in two threads of this process, as in the KME. Errors are placed at
exactly round(n * QBER) random positions and Cascade is told that QBER (the figure
parameter estimation would give). Throughput is sifted key bits reconciled per second,
both wall clock and per CPU second of the whole process (both parties together: the
fairer figure on a shared machine, where wall time mostly measures how long the two
threads wait for a core at each of the protocol's round trips).

``--baseline REV`` also runs the Cascade of git revision ``REV`` (its
``qkd_channel/postprocessing/cascade.py``, loaded from ``git show`` into a throw-away
module; it must speak the current ``cascade_wire`` format) on the same keys and seeds,
and prints the speed-up. Nothing of the old implementation stays in the library.

    .venv/bin/python scripts/bench_cascade.py [--quick] [--baseline 012313d]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from qkd_channel.postprocessing import cascade
from qkd_channel.postprocessing.channel import InMemoryChannel

__all__ = ["CascadePoint", "bench_cascade", "load_revision", "main"]

_MODULE_PATH = "qkd_channel/postprocessing/cascade.py"


@dataclass(frozen=True)
class CascadePoint:
    key_bits: int
    qber: float
    runs: int
    efficiency: float
    wall_mbit_s: float
    cpu_mbit_s: float
    exchanges: float
    residual_runs: int


def _one_run(
    implementation: ModuleType, n: int, qber: float, seed: int
) -> tuple[float, int, float, float, bool]:
    """``(efficiency, exchanges, wall s, CPU s, residual)`` of one reconciliation."""
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[rng.choice(n, round(n * qber), replace=False)] ^= 1
    a_end, b_end = InMemoryChannel.pair()
    thread = threading.Thread(
        target=implementation.reconcile_alice, args=(a_end, alice), kwargs={"qber": qber}
    )
    wall, cpu = time.perf_counter(), time.process_time()
    thread.start()
    corrected, stats = implementation.reconcile_bob(b_end, bob, qber=qber, seed=seed)
    thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    residual = not np.array_equal(corrected, alice)
    return float(stats.efficiency), int(stats.exchanges), wall, cpu, residual


def bench_cascade(
    key_bits: int, qber: float, runs: int, implementation: ModuleType = cascade
) -> CascadePoint:
    """Reconcile ``runs`` keys of ``key_bits`` bits at ``qber`` (seeds 0..runs-1)."""
    results = [_one_run(implementation, key_bits, qber, seed) for seed in range(runs)]
    wall = sum(r[2] for r in results)
    cpu = sum(r[3] for r in results)
    return CascadePoint(
        key_bits=key_bits,
        qber=qber,
        runs=runs,
        efficiency=float(np.mean([r[0] for r in results])),
        wall_mbit_s=key_bits * runs / wall / 1e6,
        cpu_mbit_s=key_bits * runs / cpu / 1e6,
        exchanges=float(np.mean([r[1] for r in results])),
        residual_runs=sum(r[4] for r in results),
    )


def load_revision(revision: str) -> ModuleType:
    """The Cascade module as it was at git ``revision``, imported under a private name."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{revision}:{_MODULE_PATH}"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cascade_baseline.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("cascade_baseline", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, no 1 Mbit block")
    parser.add_argument("--baseline", metavar="REV", help="also run Cascade as of git REV")
    args = parser.parse_args()
    baseline = load_revision(args.baseline) if args.baseline else None
    qbers = (0.01, 0.02, 0.05, 0.08)
    plan = [(10_000, q, 2 if args.quick else 5) for q in qbers]
    plan += [(100_000, q, 1 if args.quick else 2) for q in qbers]
    if not args.quick:
        plan.append((1_000_000, 0.02, 1))
    header = (
        f"{'bits':>9} {'QBER':>5} {'runs':>4} {'f':>6} {'exch':>5} {'Mbit/s':>7} "
        f"{'Mbit/cpu-s':>10} {'residual':>8}"
    )
    if baseline is not None:
        header += f" | {args.baseline}: {'f':>6} {'exch':>5} {'Mbit/cpu-s':>10} {'speed-up':>8}"
    print(header)
    points: dict[tuple[int, float], CascadePoint] = {}
    speedups: dict[tuple[int, float], float] = {}
    for n, qber, runs in plan:
        point = points[(n, qber)] = bench_cascade(n, qber, runs)
        line = (
            f"{n:>9} {qber:>5.2f} {runs:>4} {point.efficiency:>6.3f} {point.exchanges:>5.0f} "
            f"{point.wall_mbit_s:>7.3f} {point.cpu_mbit_s:>10.3f} {point.residual_runs:>8}"
        )
        if baseline is not None:
            old = bench_cascade(n, qber, runs, baseline)
            speedups[(n, qber)] = point.cpu_mbit_s / old.cpu_mbit_s
            line += (
                f" | {'':>{len(args.baseline) + 1}} {old.efficiency:>6.3f} {old.exchanges:>5.0f} "
                f"{old.cpu_mbit_s:>10.3f} {speedups[(n, qber)]:>7.1f}x"
            )
        print(line, flush=True)
    largest = max(n for n, _ in points)
    at_2 = points[(largest, 0.02)]
    f_10k = " ".join(f"{points[(10_000, q)].efficiency:.3f}" for q in qbers)
    summary = (
        f"cascade: f(10k @1/2/5/8%)={f_10k} f(100k @5%)={points[(100_000, 0.05)].efficiency:.3f}"
        f" throughput @2%: 100k {points[(100_000, 0.02)].cpu_mbit_s:.2f} Mbit/cpu-s"
        f" ({points[(100_000, 0.02)].wall_mbit_s:.2f} wall), {largest} bits"
        f" {at_2.cpu_mbit_s:.2f} Mbit/cpu-s ({at_2.wall_mbit_s:.2f} wall); residual errors in "
        f"{sum(p.residual_runs for p in points.values())}/{sum(p.runs for p in points.values())}"
        " runs"
    )
    if speedups:
        summary += f"; CPU speed-up over {args.baseline} @2%: " + ", ".join(
            f"{n // 1000}k {speedups[(n, 0.02)]:.1f}x" for n, q in points if q == 0.02
        )
    print(summary)


if __name__ == "__main__":
    main()
