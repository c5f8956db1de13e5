"""Benchmark of the QKD link and post-processing: Cascade, Toeplitz hashing, whole blocks.

Prints, in one run:

* Cascade reconciliation efficiency ``f = disclosed / (n h(QBER))`` and throughput (Mbit/s
  of sifted key reconciled, both parties in two threads over the in-memory channel) at
  QBER 1, 2, 5 and 8 % on ``--cascade-bits``-bit blocks, and at 2 % on a 1 Mbit frame,
  measured by ``bench_cascade.py``;
* Toeplitz privacy-amplification throughput at 1 Mbit and 16 Mbit input blocks, and the
  ratio to the previous one-dimensional FFT, measured by ``bench_toeplitz.py``;
* the cost of cryptographic randomness in the link simulation: pulses per second with the
  parties' choices from ``os.urandom`` against the same simulation fed by numpy's PCG64;
* simulated end-to-end secret key per CPU second (photon simulation + the full two-party
  post-processing over an authenticated in-memory channel) against the link model's
  finite-key rate for the same block;
* finite-key rates next to published ones, measured by ``bench_finite_key.py``;

then two summary lines: ``bench_qkd:`` and ``finite_key:``.
Usage: ``python scripts/bench_qkd.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from bench_cascade import CascadePoint, bench_cascade  # sibling script: one Cascade measurement
from bench_finite_key import bench_finite_key, post_process  # sibling script
from bench_finite_key import describe as describe_finite_key
from bench_toeplitz import ToeplitzPoint, bench_toeplitz, describe  # sibling script

from qkd_channel.link import BRISTOL_CLAVIS2, LinkParameters, finite_key_rate, simulate
from qkd_channel.link.analytic import secret_key_rate
from qkd_channel.link.choices import RandomBytes
from qkd_channel.link.presets import LAB_LINK
from qkd_channel.postprocessing.estimation import EstimationSettings
from qkd_channel.postprocessing.protocol import PostProcessingConfig


def bench_randomness(link: LinkParameters, pulses: int, runs: int) -> tuple[float, float]:
    """Simulated pulses per second with the parties' choices from ``os.urandom`` and from
    numpy's PCG64 (what the link used before), best of ``runs`` alternating runs each."""
    sources: dict[str, RandomBytes] = {
        "os": os.urandom,
        "pcg": np.random.default_rng(3).bytes,
    }
    best = dict.fromkeys(sources, 0.0)
    simulate(link, 100_000, rng=np.random.default_rng(1))  # warm-up
    for _ in range(runs):
        for name, source in sources.items():
            started = time.perf_counter()
            simulate(link, pulses, rng=np.random.default_rng(2), random_bytes=source)
            best[name] = max(best[name], pulses / (time.perf_counter() - started))
    return best["os"], best["pcg"]


def bench_end_to_end(link: LinkParameters, pulses: int) -> dict[str, float]:
    """One simulated block through the whole protocol; secret bits per CPU second."""
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    run = simulate(link, pulses, rng=np.random.default_rng(7))
    alice = post_process(run, PostProcessingConfig(EstimationSettings(link)))
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - wall_start
    model = finite_key_rate(link, pulses)
    return {
        "secret_bits": alice.stats.secret_bits,
        "model_bits": model.key_length,
        "cpu_s": cpu,
        "wall_s": wall,
        "bits_per_cpu_s": alice.stats.secret_bits / cpu,
        "link_s": run.duration_s,
        "rate_on_link": alice.stats.secret_bits / run.duration_s,
        "model_rate": model.bits_per_second,
        "qber": alice.stats.qber,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller blocks")
    parser.add_argument("--cascade-bits", type=int, default=100_000)
    args = parser.parse_args()
    runs = 1 if args.quick else 3

    print(f"Cascade on {args.cascade_bits}-bit blocks, in-memory channel, {runs} run(s) each")
    cascade: dict[float, CascadePoint] = {}
    for qber in (0.01, 0.02, 0.05, 0.08):
        point = cascade[qber] = bench_cascade(args.cascade_bits, qber, runs)
        print(
            f"  QBER {qber:4.0%}: f = {point.efficiency:.3f}   {point.wall_mbit_s:6.2f} Mbit/s "
            f"wall, {point.cpu_mbit_s:6.2f} Mbit/s per CPU-s, {point.exchanges:4.0f} round "
            f"trips, residual runs {point.residual_runs}"
        )
    # One KME buffer's worth (1 Mbit, the Bristol figure): the frame size a link reconciles.
    large = bench_cascade(1_000_000, 0.02, 1)
    print(
        f"  1 Mbit frame, QBER 2%: f = {large.efficiency:.3f}   {large.wall_mbit_s:6.2f} Mbit/s "
        f"wall, {large.cpu_mbit_s:6.2f} Mbit/s per CPU-s, {large.exchanges:4.0f} round trips"
    )

    print("Toeplitz privacy amplification (modified Toeplitz, output = input/2)")
    toeplitz: dict[int, ToeplitzPoint] = {}
    for bits in (1 << 20, 1 << 24):
        toeplitz[bits] = bench_toeplitz(bits, runs)
        print(describe(toeplitz[bits]))

    pulses = 2_000_000 if args.quick else 5_000_000
    os_rate, pcg_rate = bench_randomness(LAB_LINK, pulses, runs)
    print(
        f"Link simulation, lab link, {pulses:.0e} pulses, choices from os.urandom: "
        f"{os_rate:.3g} pulses/s; from numpy PCG64: {pcg_rate:.3g} pulses/s "
        f"(cryptographic randomness: +{pcg_rate / os_rate - 1:.0%} time, best of {runs})"
    )

    e2e = bench_end_to_end(LAB_LINK, pulses)
    print(f"End to end, lab link, {pulses:.0e} pulses ({e2e['link_s']:.2f} s of link time)")
    print(
        f"  secret {e2e['secret_bits']:.0f} bit (model finite-key {e2e['model_bits']:.0f} bit), "
        f"QBER {e2e['qber']:.2%}"
    )
    print(
        f"  {e2e['bits_per_cpu_s']:.0f} secret bit per CPU second "
        f"({e2e['cpu_s']:.2f} s CPU, {e2e['wall_s']:.2f} s wall); "
        f"link would deliver {e2e['rate_on_link']:.0f} bit/s, model {e2e['model_rate']:.0f} bit/s"
    )
    bristol = secret_key_rate(BRISTOL_CLAVIS2).bits_per_second
    print(
        f"  Bristol preset (asymptotic model) needs {bristol:.0f} bit/s: post-processing "
        f"keeps up {e2e['bits_per_cpu_s'] / bristol:.0f}x over"
    )

    finite_key = bench_finite_key()
    print(describe_finite_key(finite_key))

    print(
        "bench_qkd: cascade f@1/2/5/8% = "
        + "/".join(f"{cascade[q].efficiency:.3f}" for q in (0.01, 0.02, 0.05, 0.08))
        + f", cascade@2% {cascade[0.02].wall_mbit_s:.2f} Mbit/s wall"
        + f" ({cascade[0.02].cpu_mbit_s:.2f}/CPU-s) at {args.cascade_bits} bits,"
        + f" {large.wall_mbit_s:.2f} Mbit/s wall ({large.cpu_mbit_s:.2f}/CPU-s) at 1 Mbit"
        + f", toeplitz 1M/16M {toeplitz[1 << 20].wall_mbit_s:.1f}"
        + f"/{toeplitz[1 << 24].wall_mbit_s:.1f} Mbit/s wall"
        + f" ({toeplitz[1 << 24].cpu_mbit_s:.1f}/CPU-s at 16M,"
        + f" x{toeplitz[1 << 24].cpu_speedup:.1f} vs 1-D FFT)"
        + f", e2e {e2e['bits_per_cpu_s']:.0f} secret bit/CPU-s vs model {e2e['model_rate']:.0f}"
        + " bit/s"
    )
    print(finite_key.summary())


if __name__ == "__main__":
    main()
