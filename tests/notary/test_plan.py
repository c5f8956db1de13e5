"""``qkd-notary plan``: the key budget arithmetic, checked against what the SDK spends."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from notary.cli import main
from notary.planning import FleetPlan, plan_fleet
from qkd_channel.envelope import Mode, keys_needed
from qkd_device.records import build_document


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["plan", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_otp_spends_exactly_what_the_sdk_seals() -> None:
    reading = {"kwh": 1234.5, "v": 229.7, "pad": "x" * 30}
    document = build_document("a" * 64, reading, key_delivery="local")  # as the SDK seals
    size = len(build_document("a" * 64, reading)) - len(build_document("a" * 64, {})) + 2
    fleet = FleetPlan(devices=1, interval_s=60, reading_bytes=size, mode=Mode.OTP)
    assert fleet.key_bytes_per_message == keys_needed(Mode.OTP, len(document))


def test_aead_spreads_a_session_key_over_the_session() -> None:
    every_minute = FleetPlan(devices=1, interval_s=60, reading_bytes=64, mode=Mode.AEAD)
    assert every_minute.key_bytes_per_message == pytest.approx(32 / 10)  # 600 s sessions
    busy = FleetPlan(devices=1, interval_s=0.01, reading_bytes=64, mode=Mode.AEAD)
    assert busy.key_bytes_per_message == pytest.approx(32 / 10_000)  # message-capped
    rare = FleetPlan(devices=1, interval_s=3600, reading_bytes=64, mode=Mode.AEAD)
    assert rare.key_bytes_per_message == 32  # a session per message


def test_budget_headroom_largest_fleet_and_buffer_time() -> None:
    fleet = FleetPlan(devices=100, interval_s=60, reading_bytes=64, mode=Mode.OTP)
    budget = plan_fleet(fleet, supply_bits_per_s=1880, buffer_bits=1_000_000)
    per_device = 8 * fleet.key_bytes_per_message / 60
    assert budget.consumption_bits_per_s == pytest.approx(100 * per_device)
    assert budget.largest_fleet == int(1880 // per_device)
    assert budget.buffer_lasts_s == pytest.approx(1_000_000 / (100 * per_device - 1880))
    assert budget.buffer_fills_s is None
    small = plan_fleet(
        FleetPlan(devices=10, interval_s=60, reading_bytes=64, mode=Mode.OTP),
        supply_bits_per_s=1880,
        buffer_bits=1_000_000,
    )
    assert small.buffer_lasts_s is None and small.headroom_bits_per_s > 0


def test_the_bristol_example_of_the_docs() -> None:
    code, out = run("--key-rate", "1880", "--devices", "100", "--interval-s", "60", "--json")
    plan = json.loads(out)
    # 64: each otp document carries the SDK's 23-byte key-delivery report besides the reading.
    assert code == 0 and plan["largest_fleet"] == 64 and plan["utilisation"] > 1
    code, out = run("--link", "bristol", "--loss-db", "4", "--devices", "64", "--interval-s", "60")
    assert code == 0 and "finite-key rate" in out and "largest fleet" in out


@pytest.mark.parametrize(
    "args",
    [
        ("--devices", "1", "--interval-s", "60"),  # neither a link nor a rate
        ("--link", "lab", "--key-rate", "5", "--devices", "1", "--interval-s", "60"),
        ("--key-rate", "0", "--devices", "1", "--interval-s", "60"),
        ("--key-rate", "5", "--devices", "0", "--interval-s", "60"),
        ("--link", "lab", "--loss-db", "3", "--devices", "1", "--interval-s", "60"),
    ],
)
def test_bad_plans_are_usage_errors(args: tuple[str, ...]) -> None:
    code, out = run(*args)
    assert code == 2 and "Error" in out
