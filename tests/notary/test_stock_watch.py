"""Key-stock depletion: the estimate, the warning ahead of it, and the dashboard."""

from __future__ import annotations

import logging
import math

import pytest

from notary.stock_watch import StockWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_falling_stock_is_extrapolated_to_zero_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    watch = StockWatch(warn_below_s=300, clock=clock)
    assert watch.observe("sae-1", 1000) == math.inf  # one sample says nothing
    caplog.set_level(logging.INFO, logger="notary.keys")
    estimates = []
    for stock in (990, 980, 970):
        clock.now += 10
        estimates.append(watch.observe("sae-1", stock))
    assert estimates[-1] == pytest.approx(970)  # 1 key/s falling, 970 left
    for stock in range(960, 100, -10):
        clock.now += 10
        watch.observe("sae-1", stock)
    warnings = [r for r in caplog.records if r.getMessage() == "key stock running out"]
    assert len(warnings) == 1
    for _ in range(70):  # the link outruns the fleet again: the window forgets the fall
        clock.now += 10
        watch.observe("sae-1", 500)
    assert watch.observe("sae-1", 500) == math.inf
    assert any(r.getMessage() == "key stock recovering" for r in caplog.records)


def test_a_steady_or_rising_stock_never_runs_out() -> None:
    clock = Clock()
    watch = StockWatch(clock=clock)
    for stock in (100, 100, 120, 150):
        clock.now += 5
        depletion = watch.observe("sae-2", stock)
    assert depletion == math.inf
