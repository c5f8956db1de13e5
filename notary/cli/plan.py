"""``qkd-notary plan``: will this link's key keep up with this fleet?"""

from __future__ import annotations

import json

import click

from notary.planning import FleetPlan, KeyBudget, plan_fleet
from qkd_channel.envelope import Mode
from qkd_channel.extras import exit_unless_installed

__all__ = ["plan"]

#: Pulses per post-processing block for a preset's finite-key rate (what the KME runs).
BLOCK_PULSES = 1e10


def _preset_rate(link: str, loss_db: float | None) -> tuple[float, str]:
    """Finite-key secret bits per second of a preset link, and how it was obtained."""
    exit_unless_installed("qkd-notary plan --link", "sim")
    from qkd_channel.link.analytic import finite_key_rate
    from qkd_channel.link.presets import LAB_LINK, bristol_clavis2

    if link == "bristol":
        loss = 4.0 if loss_db is None else loss_db
        params, name = bristol_clavis2(loss), f"Bristol Clavis2-class fit at {loss:g} dB"
    else:
        if loss_db is not None:
            raise click.UsageError("--loss-db applies to --link bristol only")
        params, name = LAB_LINK, "lab link"
    rate = finite_key_rate(params, BLOCK_PULSES).bits_per_second
    return rate, f"{name}, finite-key rate for {BLOCK_PULSES:.0e}-pulse blocks"


@click.command()
@click.option("--link", type=click.Choice(["lab", "bristol"]), help="A simulated link preset.")
@click.option("--loss-db", type=float, help="Total loss of the Bristol preset (default 4 dB).")
@click.option(
    "--key-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="A measured secret key rate, bit/s (instead of --link).",
)
@click.option(
    "--buffer-bits",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="The KME's key buffer.",
)
@click.option("--devices", type=click.IntRange(min=1), required=True)
@click.option(
    "--interval-s",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    help="Seconds between two readings of one device.",
)
@click.option(
    "--reading-bytes",
    type=click.IntRange(min=2),
    default=64,
    show_default=True,
    help="Size of one reading's telemetry JSON object.",
)
@click.option(
    "--mode", type=click.Choice([m.value for m in Mode]), default="otp", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(
    link: str | None,
    loss_db: float | None,
    key_rate: float | None,
    buffer_bits: int,
    devices: int,
    interval_s: float,
    reading_bytes: int,
    mode: str,
    as_json: bool,
) -> None:
    """Key consumption of a fleet against a link's key supply: headroom, the largest fleet
    the link serves, and how long the buffer lasts if the fleet outruns it."""
    if (link is None) == (key_rate is None):
        raise click.UsageError("give exactly one of --link (a preset) or --key-rate (measured)")
    if key_rate is not None:
        supply, source = key_rate, "measured key rate"
    else:
        assert link is not None
        supply, source = _preset_rate(link, loss_db)
    fleet = FleetPlan(
        devices=devices, interval_s=interval_s, reading_bytes=reading_bytes, mode=Mode(mode)
    )
    budget = plan_fleet(fleet, supply_bits_per_s=supply, buffer_bits=buffer_bits)
    if as_json:
        click.echo(json.dumps({"source": source, **budget.to_dict()}, indent=2))
        return
    _print(budget, source)


def _print(budget: KeyBudget, source: str) -> None:
    fleet = budget.plan
    lines = [
        f"supply        {budget.supply_bits_per_s:,.0f} bit/s ({source}), buffer "
        f"{budget.buffer_bits:,} bit",
        f"fleet         {fleet.devices:,} device(s), a {fleet.reading_bytes}-byte reading every "
        f"{fleet.interval_s:g} s, {fleet.mode.value}",
        f"per message   {fleet.key_bytes_per_message:,.2f} byte(s) of QKD key",
        f"consumption   {budget.consumption_bits_per_s:,.1f} bit/s "
        f"({100 * budget.utilisation:.1f} % of the supply)",
        f"headroom      {budget.headroom_bits_per_s:,.1f} bit/s",
        f"largest fleet {budget.largest_fleet:,} device(s) of this kind",
    ]
    lasts = budget.buffer_lasts_s
    if lasts is not None:
        lines.append(
            f"OVER BUDGET   a full buffer lasts {lasts:,.0f} s ({lasts / 3600:.2f} h); then "
            "devices wait for key (the KME answers 503)"
        )
    elif budget.buffer_fills_s is not None:
        lines.append(f"buffer        fills from empty in {budget.buffer_fills_s:,.0f} s under load")
    click.echo("\n".join(lines))
