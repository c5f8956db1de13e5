"""Benchmark Cascade: efficiency and throughput on the in-memory channel.

Alice and Bob run in two threads of this process, as in the KME. Errors are placed at
exactly round(n * QBER) random positions and Cascade is told that QBER (the figure
parameter estimation would give). Throughput is sifted key bits reconciled per second,
both wall clock and per CPU second of the whole process (both parties together: the
fairer figure on a shared machine).

    .venv/bin/python scripts/bench_cascade.py [--quick]
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

import numpy as np

from qkd_channel.postprocessing.cascade import CascadeStats, reconcile_alice, reconcile_bob
from qkd_channel.postprocessing.channel import InMemoryChannel

__all__ = ["CascadePoint", "bench_cascade", "main"]


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


def _one_run(n: int, qber: float, seed: int) -> tuple[CascadeStats, float, float, bool]:
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[rng.choice(n, round(n * qber), replace=False)] ^= 1
    a_end, b_end = InMemoryChannel.pair()
    thread = threading.Thread(target=reconcile_alice, args=(a_end, alice), kwargs={"qber": qber})
    wall, cpu = time.perf_counter(), time.process_time()
    thread.start()
    corrected, stats = reconcile_bob(b_end, bob, qber=qber, seed=seed)
    thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return stats, wall, cpu, not np.array_equal(corrected, alice)


def bench_cascade(key_bits: int, qber: float, runs: int) -> CascadePoint:
    results = [_one_run(key_bits, qber, seed) for seed in range(runs)]
    wall = sum(r[1] for r in results)
    cpu = sum(r[2] for r in results)
    return CascadePoint(
        key_bits=key_bits,
        qber=qber,
        runs=runs,
        efficiency=float(np.mean([r[0].efficiency for r in results])),
        wall_mbit_s=key_bits * runs / wall / 1e6,
        cpu_mbit_s=key_bits * runs / cpu / 1e6,
        exchanges=float(np.mean([r[0].exchanges for r in results])),
        residual_runs=sum(r[3] for r in results),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, no 1 Mbit block")
    args = parser.parse_args()
    plan = [(10_000, q, 2 if args.quick else 5) for q in (0.01, 0.02, 0.05, 0.08)]
    plan += [(100_000, q, 1) for q in (0.01, 0.02, 0.05, 0.08)]
    if not args.quick:
        plan.append((1_000_000, 0.02, 1))
    points = []
    print(
        f"{'bits':>9} {'QBER':>5} {'runs':>4} {'f':>6} {'Mbit/s':>7} {'Mbit/cpu-s':>10} "
        f"{'exch':>6} {'residual':>8}"
    )
    for n, qber, runs in plan:
        point = bench_cascade(n, qber, runs)
        points.append(point)
        print(
            f"{n:>9} {qber:>5.2f} {runs:>4} {point.efficiency:>6.3f} {point.wall_mbit_s:>7.3f} "
            f"{point.cpu_mbit_s:>10.3f} {point.exchanges:>6.0f} {point.residual_runs:>8}"
        )
    by_key = {(p.key_bits, p.qber): p for p in points}
    at_2 = max((p for p in points if p.qber == 0.02), key=lambda p: p.key_bits)
    f_10k = " ".join(f"{by_key[(10_000, q)].efficiency:.3f}" for q in (0.01, 0.02, 0.05, 0.08))
    print(
        f"cascade: f(10k @1/2/5/8%)={f_10k} f(100k @5%)={by_key[(100_000, 0.05)].efficiency:.3f} "
        f"throughput({at_2.key_bits} bits @2%)={at_2.wall_mbit_s:.2f} Mbit/s wall, "
        f"{at_2.cpu_mbit_s:.2f} Mbit/cpu-s; residual errors in "
        f"{sum(p.residual_runs for p in points)}/{sum(p.runs for p in points)} runs"
    )


if __name__ == "__main__":
    main()
