"""Finite-key key rates next to published ones: the ``finite_key:`` line of bench_qkd.py.

* **published setting**: Tomamichel, Lim, Gisin, Renner 2012 (Nat. Commun. 3, 634), the
  optimised expected key rate of their single-photon BB84 at 1 % QBER for ``n`` = 10^4 /
  10^5 / 10^6, computed with their formula (:mod:`qkd_channel.link.tomamichel2012`),
  next to their Table II (11.7 / 30.4 / 47.8 %);
* **pipeline**: the project's efficient-BB84 pipeline on the lab preset (QBER 1.0 %):
  blocks of 10^4 / 10^5 / 10^6 detections are simulated (the parties' choices from
  ``os.urandom``) and post-processed by both parties over an authenticated in-memory
  channel; secret bits per detection, next to what the implemented bound (Lim et al. 2014)
  allows for the same counts with the same error-correction disclosure. The first design
  (symmetric bases, signal-only key, sacrificed sample) runs the same blocks for comparison;
* **bristol finite**: the Bristol preset's finite-key rate at 4 and 7 dB for blocks of
  10^10 pulses (33 min), next to the measured 1880 / 1220 bit/s and the asymptotic fit.

    .venv/bin/python scripts/bench_finite_key.py
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from qkd_channel.errors import LinkAborted
from qkd_channel.link import (
    BRISTOL_MEASUREMENTS,
    KeyDesign,
    LinkParameters,
    LinkRun,
    bristol_clavis2,
    expected_observation,
    finite_key_rate,
    secret_key_rate,
    secret_length,
    simulate,
)
from qkd_channel.link.presets import LAB_LINK, LAB_LINK_SYMMETRIC
from qkd_channel.link.tomamichel2012 import PUBLISHED_RATES, optimal_rate
from qkd_channel.postprocessing.authentication import (
    AuthenticatedChannel,
    AuthenticationKeyPool,
    Role,
)
from qkd_channel.postprocessing.channel import InMemoryChannel
from qkd_channel.postprocessing.estimation import EstimationSettings
from qkd_channel.postprocessing.protocol import (
    BlockResult,
    PostProcessingConfig,
    run_alice,
    run_bob,
)

__all__ = ["BLOCKS", "FiniteKeyLine", "bench_finite_key", "main", "post_process"]

BLOCKS = (10**4, 10**5, 10**6)  #: detections per block (pipeline) and n (Tomamichel)
BRISTOL_BLOCK = 1e10  #: pulses per block for the Bristol finite-key rates (33 min at 5 MHz)


@dataclass(frozen=True)
class FiniteKeyLine:
    published_setting: tuple[float, ...]  #: Tomamichel's r, their formula, per BLOCKS
    pipeline: tuple[float, ...]  #: secret bits per detection, efficient design, per BLOCKS
    bound: tuple[float, ...]  #: what the bound allows for the same counts, per BLOCKS
    first_design: tuple[float, ...]  #: the first design's pipeline, per BLOCKS
    bristol_finite: tuple[float, float]  #: bit/s at 4 and 7 dB

    def summary(self) -> str:
        """The exact summary line of issue 18."""
        return (
            "finite_key: published_setting="
            + "/".join(f"{r:.1%}".rstrip("%") for r in self.published_setting)
            + "% pipeline="
            + "/".join(f"{r:.1%}".rstrip("%") for r in self.pipeline)
            + f"% bristol_finite={self.bristol_finite[0]:.0f}/{self.bristol_finite[1]:.0f} bit/s"
        )


def post_process(run: LinkRun, config: PostProcessingConfig) -> BlockResult:
    """Both parties' post-processing of one run, in two threads; raises if it aborts."""
    psk = os.urandom(4096)
    a, b = InMemoryChannel.pair()
    alice_ch = AuthenticatedChannel(a, AuthenticationKeyPool(psk), Role.ALICE)
    bob_ch = AuthenticatedChannel(b, AuthenticationKeyPool(psk), Role.BOB)
    out: dict[str, Any] = {}

    def bob() -> None:
        try:
            out["bob"] = run_bob(bob_ch, run.bob, config)
        except LinkAborted as exc:
            out["bob"] = exc

    thread = threading.Thread(target=bob)
    thread.start()
    alice = run_alice(alice_ch, run.alice, config)
    thread.join()
    if not isinstance(out["bob"], BlockResult) or out["bob"].key != alice.key:
        raise SystemExit("the two ends disagree")
    return alice


def _block(
    link: LinkParameters, design: KeyDesign, detections: int, seed: int
) -> tuple[float, float]:
    """Secret bits per detection of one simulated block, and the bound's for its counts."""
    observed = expected_observation(link)
    click = sum(p * q for p, q in zip(link.intensity_probabilities, observed.gains, strict=True))
    run = simulate(link, math.ceil(detections / click), rng=np.random.default_rng(seed))
    detected = len(run.bob.indices)
    config = PostProcessingConfig(EstimationSettings(link, design=design))
    try:
        stats = post_process(run, config).stats
    except LinkAborted:
        return 0.0, 0.0
    allowed = secret_length(
        stats.bounds,
        leak_ec=stats.disclosed_ec_bits,
        leak_verify=math.log2(2.0 / stats.epsilon_cor),
        epsilon_sec=stats.epsilon_sec,
    )
    return stats.secret_bits / detected, allowed / detected


def bench_finite_key() -> FiniteKeyLine:
    published = tuple(optimal_rate(n, 0.01).rate for n in BLOCKS)
    efficient = [_block(LAB_LINK, KeyDesign.EFFICIENT, n, seed) for seed, n in enumerate(BLOCKS)]
    first = [
        _block(LAB_LINK_SYMMETRIC, KeyDesign.SIGNAL_SAMPLED, n, seed)[0]
        for seed, n in enumerate(BLOCKS)
    ]
    four, seven = (finite_key_rate(bristol_clavis2(loss), BRISTOL_BLOCK) for loss in (4.0, 7.0))
    return FiniteKeyLine(
        published_setting=published,
        pipeline=tuple(fraction for fraction, _ in efficient),
        bound=tuple(allowed for _, allowed in efficient),
        first_design=tuple(first),
        bristol_finite=(four.bits_per_second, seven.bits_per_second),
    )


def describe(line: FiniteKeyLine) -> str:
    """The detail lines printed above the summary."""

    def percents(values: tuple[float, ...]) -> str:
        return " / ".join(f"{v:.1%}" for v in values)

    ratios = " / ".join(
        f"{p / b:.3f}" if b else "-" for p, b in zip(line.pipeline, line.bound, strict=True)
    )
    bristol = " / ".join(
        f"{measured:.0f} measured, {finite:.0f} finite-key, "
        f"{secret_key_rate(bristol_clavis2(loss)).bits_per_second:.0f} asymptotic (fit) "
        f"at {loss:.0f} dB"
        for (loss, measured), finite in zip(BRISTOL_MEASUREMENTS, line.bristol_finite, strict=True)
    )
    blocks = " / ".join(f"1e{round(math.log10(n))}" for n in BLOCKS)
    return (
        f"Finite key at n = {blocks} (eps_sec 1e-10; Tomamichel's security rate 1e-14)\n"
        f"  Tomamichel 2012, their formula, 1 % QBER: {percents(line.published_setting)} "
        f"(their Table II: {percents(tuple(PUBLISHED_RATES[n] for n in BLOCKS))})\n"
        f"  pipeline, efficient BB84, lab preset (QBER 1.0 %), per detection: "
        f"{percents(line.pipeline)}\n"
        f"    the bound on the same counts and disclosure: {percents(line.bound)} "
        f"(pipeline / bound {ratios})\n"
        f"  first design (symmetric preset, signal key, 10 % sample): "
        f"{percents(line.first_design)}\n"
        f"  Bristol preset, blocks of {BRISTOL_BLOCK:.0e} pulses, bit/s: {bristol}"
    )


def main() -> None:
    line = bench_finite_key()
    print(describe(line))
    print(line.summary())


if __name__ == "__main__":
    main()
