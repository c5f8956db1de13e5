"""When will a device's key stock run out? An estimate from the stock the KME reports.

The notary sees each device SAE's stock (ETSI ``stored_key_count``) whenever it refreshes
its gauges (a ``/metrics`` scrape, the dashboard). The stock moves by the link's supply
minus the fleet's consumption; :class:`StockWatch` keeps the recent samples per SAE and
extrapolates the net trend: a falling stock reaches zero in ``stock / fall rate``
seconds. Running out is an ordinary state (devices get 503 with ``Retry-After``), but an
operator wants to hear about it before it happens, so the first sample below the warning
horizon logs one line (and another once it recovers).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable

from notary.logging import log_event

__all__ = ["StockWatch"]

log = logging.getLogger("notary.keys")


class StockWatch:
    """Per-SAE stock samples over a sliding window, and the depletion estimate."""

    def __init__(
        self,
        *,
        window_s: float = 600.0,
        warn_below_s: float = 900.0,
        clock: Callable[[], float],
    ) -> None:
        self._window = window_s
        self._warn_below = warn_below_s
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._warned: set[str] = set()

    def observe(self, sae_id: str, stock: int) -> float:
        """Record a stock reading; return seconds until it runs out (``inf``: not falling)."""
        now = self._clock()
        samples = self._samples.setdefault(sae_id, deque())
        samples.append((now, stock))
        while len(samples) > 2 and now - samples[0][0] > self._window:
            samples.popleft()
        depletion = _depletion(samples)
        self._report(sae_id, stock, depletion)
        return depletion

    def _report(self, sae_id: str, stock: int, depletion: float) -> None:
        if depletion < self._warn_below and sae_id not in self._warned:
            self._warned.add(sae_id)
            log_event(
                log,
                logging.WARNING,
                "key stock running out",
                sae_id=sae_id,
                stock=stock,
                depletion_s=round(depletion),
            )
        elif depletion >= self._warn_below and sae_id in self._warned:
            self._warned.discard(sae_id)
            log_event(log, logging.INFO, "key stock recovering", sae_id=sae_id, stock=stock)


def _depletion(samples: deque[tuple[float, int]]) -> float:
    """Least-squares trend of the samples, extrapolated to zero stock."""
    if len(samples) < 2:
        return math.inf
    t0 = samples[0][0]
    xs = [t - t0 for t, _ in samples]
    ys = [float(s) for _, s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return math.inf
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    if slope >= 0:
        return math.inf
    return ys[-1] / -slope
