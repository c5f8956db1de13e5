"""Dashboard figures: records per minute, and values read back from the Prometheus metrics.

The metrics are the notary's own (:class:`~notary.metrics.NotaryMetrics`), read through
``collect()`` so the dashboard shows the same numbers ``/metrics`` exports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

__all__ = ["MinuteRate", "metric_values", "per_minute"]


@dataclass(frozen=True)
class MinuteRate:
    start: float  #: Unix seconds, start of the minute
    count: int


def per_minute(times: Iterable[float], *, now: float, minutes: int) -> list[MinuteRate]:
    """Counts of ``times`` per whole UTC minute, the last ``minutes`` minutes, oldest first
    (the current, still running minute included)."""
    current = int(now // 60)
    counts = dict.fromkeys(range(current - minutes + 1, current + 1), 0)
    for t in times:
        minute = int(t // 60)
        if minute in counts:
            counts[minute] += 1
    return [MinuteRate(float(minute * 60), count) for minute, count in counts.items()]


def metric_values(metric: MetricWrapperBase, label: str) -> dict[str, float]:
    """``{label value: sample value}`` of a labelled gauge or counter (``_total`` samples for
    counters), summed over the other labels."""
    values: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue
            key = sample.labels.get(label, "")
            values[key] = values.get(key, 0.0) + sample.value
    return values
