"""Plot secret key rate versus loss and distance for the calibrated link model.

Left: the Bristol Clavis2-class preset from 0 to 20 dB total loss: the asymptotic GLLP rate
the preset was fitted with, the finite-key rate (Lim et al. 2014, the implemented bound)
for blocks of pulses and that bound's own infinite-block limit, and the two Bristol
measurements with the numbers in a box. Right: the same hardware versus fibre length, the
asymptotic rate honest and under intercept-resend attacks on a fraction of the pulses (what
the decoy analysis certifies from the attacked statistics).

One colour means one thing in both panels: blue the asymptotic GLLP rate of an honest
link, greens finite-key rates, reds attacks, black measurements.

Usage: python scripts/plot_key_rate.py [--out artifacts/key_rate.png] [--blocks 1e10 1e11]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from qkd_channel.link import (
    BRISTOL_CLAVIS2,
    BRISTOL_MEASUREMENTS,
    InterceptResend,
    asymptotic_key_rate,
    bristol_clavis2,
    finite_key_rate,
    key_rate_from_observation,
    secret_key_rate,
)

ATTACK_FRACTIONS = (0.03, 0.06, 0.1)
HONEST = "tab:blue"  #: asymptotic GLLP rate of an honest link, both panels
FINITE = ("tab:green", "darkolivegreen", "yellowgreen")  #: finite-key rates, by block
LIMIT = "mediumseagreen"  #: the finite-key bound's infinite-block limit
ATTACKS = ("lightcoral", "tab:red", "darkred")  #: intercept-resend, by fraction
MEASURED = "black"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/key_rate.png"))
    parser.add_argument(
        "--blocks",
        type=float,
        nargs="+",
        default=[1e10, 1e11],
        help="pulses per finite-key block (default 1e10 and 1e11: 33 min and 5.6 h at 5 MHz)",
    )
    args = parser.parse_args()

    fig, (by_loss, by_length) = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)
    _plot_versus_loss(by_loss, args.blocks)
    _plot_versus_length(by_length)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")


def _plot_versus_loss(ax: Axes, blocks: list[float]) -> None:
    losses = np.linspace(0.0, 20.0, 201)
    links = [bristol_clavis2(float(x)) for x in losses]
    rate = BRISTOL_CLAVIS2.pulse_rate_hz
    asymptotic = [secret_key_rate(link).bits_per_second for link in links]
    ax.semilogy(
        losses,
        asymptotic,
        color=HONEST,
        label="asymptotic GLLP, signal-pulse key: the fitted model",
    )
    limit = [asymptotic_key_rate(link) * rate for link in links]
    ax.semilogy(
        losses,
        _visible(limit),
        ":",
        color=LIMIT,
        label="asymptotic limit of the finite-key bound (key from every intensity)",
    )
    for block, colour in zip(blocks, FINITE, strict=False):
        finite = [finite_key_rate(link, block).bits_per_second for link in links]
        minutes = block / rate / 60
        ax.semilogy(
            losses,
            _visible(finite),
            "--",
            color=colour,
            label=f"finite key (Lim et al. 2014), blocks of {block:.0e} pulses ({minutes:.0f} min)",
        )
    loss_points, rate_points = zip(*BRISTOL_MEASUREMENTS, strict=True)
    ax.semilogy(loss_points, rate_points, "o", color=MEASURED, label="Bristol measurements")
    rows = ["bit/s      measured  fit (asym.)  finite key"]
    for loss, measured in BRISTOL_MEASUREMENTS:
        link = bristol_clavis2(loss)
        rows.append(
            f"{loss:.0f} dB      {measured:8.0f}  {secret_key_rate(link).bits_per_second:10.0f}"
            f"  {finite_key_rate(link, blocks[0]).bits_per_second:10.0f}"
        )
    rows.append(f"(finite key: blocks of {blocks[0]:.0e} pulses)")
    ax.text(
        0.98,
        0.97,
        "\n".join(rows),
        transform=ax.transAxes,
        ha="right",
        va="top",
        family="monospace",
        fontsize=7.5,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
    )
    ax.set_xlabel("total channel loss (dB)")
    ax.set_ylabel("secret key rate (bit/s)")
    ax.set_title("Clavis2-class preset: a two-parameter fit to the two Bristol points")
    ax.set_xlim(0, 20)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower left")


def _plot_versus_length(ax: Axes) -> None:
    lengths = np.linspace(0.0, 120.0, 241)
    links = [BRISTOL_CLAVIS2.at_total_loss(0.0).at_length(float(km)) for km in lengths]
    honest = [secret_key_rate(link).bits_per_second for link in links]
    ax.semilogy(lengths, _visible(honest), color=HONEST, label="asymptotic, no eavesdropper")
    for fraction, colour in zip(ATTACK_FRACTIONS, ATTACKS, strict=True):
        attack = InterceptResend(fraction)
        rates = [
            key_rate_from_observation(attack.expected_observation(link), link).bits_per_second
            for link in links
        ]
        ax.semilogy(
            lengths,
            _visible(rates),
            "--",
            color=colour,
            label=f"asymptotic, intercept-resend on {fraction:.0%}",
        )
    ax.text(
        0.02,
        0.03,
        f"attacking more than {_fatal_fraction():.1%} of pulses leaves no key at any length",
        transform=ax.transAxes,
        fontsize=8,
    )
    ax.set_xlabel(f"fibre length (km, {BRISTOL_CLAVIS2.fibre_loss_db_per_km} dB/km)")
    ax.set_ylabel("certified secret key rate, asymptotic (bit/s)")
    ax.set_title("Rate versus distance; intercept-resend raises QBER by ~fraction/4")
    ax.set_xlim(0, 120)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")


def _fatal_fraction() -> float:
    """Smallest intercept-resend fraction that leaves no key even with no fibre (bisection)."""
    link = bristol_clavis2(0.0)
    low, high = 0.0, 1.0
    while high - low > 1e-4:
        mid = (low + high) / 2
        observed = InterceptResend(mid).expected_observation(link)
        if key_rate_from_observation(observed, link).per_pulse > 0:
            low = mid
        else:
            high = mid
    return high


def _visible(rates: list[float]) -> np.ndarray:
    """Zero rates become gaps, so a log axis shows where the key stops."""
    values = np.asarray(rates, dtype=float)
    return np.where(values > 0, values, np.nan)


if __name__ == "__main__":
    main()
