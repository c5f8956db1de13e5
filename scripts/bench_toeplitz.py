"""Benchmark Toeplitz privacy amplification against the previous one-dimensional FFT.

For each block size the library's :func:`toeplitz_hash` (cache-blocked four-step FFT; its
default single thread, and ``threads=2``) and the implementation it replaced (three
one-dimensional 2-thread ``ducc0`` FFTs of the whole block, kept here only as the
yardstick) hash the same random key with the same random seed to ``output = input / 2``
bits; the results must agree bit for bit. Runs alternate so that load from other
processes hits all alike. Throughput is Mbit
of *input* key hashed per second, best of the runs, both wall clock and per CPU second
of this process (the fairer figure on a shared machine).

    .venv/bin/python scripts/bench_toeplitz.py [--runs 3] [--mbit 1 16]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import ducc0
import numpy as np
import numpy.typing as npt

from qkd_channel.postprocessing.privacy import seed_bits, toeplitz_hash

__all__ = ["ToeplitzPoint", "bench_toeplitz", "describe", "main", "previous_fft_hash"]

Bits = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class ToeplitzPoint:
    input_bits: int
    output_bits: int
    runs: int
    wall_mbit_s: float  #: library default (one thread)
    cpu_mbit_s: float
    two_thread_wall_mbit_s: float  #: library with threads=2
    two_thread_cpu_mbit_s: float
    previous_wall_mbit_s: float  #: the replaced 1-D FFT, 2 threads as it ran in the library
    previous_cpu_mbit_s: float

    @property
    def cpu_speedup(self) -> float:
        return self.cpu_mbit_s / self.previous_cpu_mbit_s

    @property
    def wall_speedup(self) -> float:
        return self.wall_mbit_s / self.previous_wall_mbit_s


def previous_fft_hash(key: Bits, seed: Bits, output_bits: int, *, threads: int = 2) -> Bits:
    """The hash as the library computed it before: one real FFT per operand and one
    inverse, each over the whole ``n - 1``-point circular convolution."""
    n = len(key)
    head, tail = key[:output_bits], key[output_bits:]
    m = len(tail)
    size = ducc0.fft.good_size(n - 1, True)
    work = np.zeros(size, dtype=np.float64)
    work[: n - 1] = seed
    spectrum = ducc0.fft.r2c(work, nthreads=threads)
    work[:m] = tail
    work[m:] = 0.0
    spectrum *= ducc0.fft.r2c(work, nthreads=threads)
    ducc0.fft.c2r(
        spectrum,
        lastsize=size,
        forward=False,
        inorm=2,
        out=work,
        nthreads=threads,
        allow_overwriting_input=True,
    )
    wanted = work[m - 1 : m - 1 + output_bits]
    rounded = np.rint(wanted)
    if float(np.abs(wanted - rounded).max()) >= 0.125:
        raise FloatingPointError("FFT convolution lost integer precision")
    result: Bits = (rounded.astype(np.int64) & 1).astype(np.uint8) ^ head
    return result


def bench_toeplitz(input_bits: int, runs: int) -> ToeplitzPoint:
    """Best-of-``runs`` throughput of both implementations at ``input_bits``-bit blocks."""
    rng = np.random.default_rng(input_bits)
    key = rng.integers(0, 2, input_bits, dtype=np.uint8)
    seed = rng.integers(0, 2, seed_bits(input_bits), dtype=np.uint8)
    output_bits = input_bits // 2
    candidates: dict[str, Callable[[], Bits]] = {
        "current": partial(toeplitz_hash, key, seed, output_bits),
        "two_thread": partial(toeplitz_hash, key, seed, output_bits, threads=2),
        "previous": partial(previous_fft_hash, key, seed, output_bits),
    }
    expected = candidates["previous"]()  # also the warm-up: FFT plans, page faults
    wall = dict.fromkeys(candidates, np.inf)
    cpu = dict.fromkeys(candidates, np.inf)
    for round_ in range(runs + 1):  # round 0 warms the new code up and is not counted
        for name, hash_once in candidates.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            result = hash_once()
            if round_ > 0:
                wall[name] = min(wall[name], time.perf_counter() - wall_start)
                cpu[name] = min(cpu[name], time.process_time() - cpu_start)
            if not np.array_equal(result, expected):
                raise SystemExit("the four-step and the one-dimensional FFT hashes differ")
    mbit = input_bits / 1e6
    return ToeplitzPoint(
        input_bits,
        output_bits,
        runs,
        wall_mbit_s=mbit / wall["current"],
        cpu_mbit_s=mbit / cpu["current"],
        two_thread_wall_mbit_s=mbit / wall["two_thread"],
        two_thread_cpu_mbit_s=mbit / cpu["two_thread"],
        previous_wall_mbit_s=mbit / wall["previous"],
        previous_cpu_mbit_s=mbit / cpu["previous"],
    )


def describe(point: ToeplitzPoint) -> str:
    """Two lines per block size, shared with ``bench_qkd.py``."""
    return (
        f"  {point.input_bits / 2**20:2g} Mbit -> {point.output_bits / 2**20:g} Mbit: "
        f"{point.wall_mbit_s:5.1f} Mbit/s wall, {point.cpu_mbit_s:5.1f} per CPU-s "
        f"(2 threads: {point.two_thread_wall_mbit_s:.1f} wall, "
        f"{point.two_thread_cpu_mbit_s:.1f} per CPU-s)\n"
        f"      previous 1-D FFT (2 threads): {point.previous_wall_mbit_s:5.1f} wall, "
        f"{point.previous_cpu_mbit_s:5.1f} per CPU-s; new/previous x{point.wall_speedup:.2f} "
        f"wall, x{point.cpu_speedup:.2f} CPU (best of {point.runs})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mbit", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    print("Toeplitz privacy amplification (modified Toeplitz, output = input/2)")
    for mbit in args.mbit:
        print(describe(bench_toeplitz(mbit << 20, args.runs)))


if __name__ == "__main__":
    main()
