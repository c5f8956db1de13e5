"""Prometheus metrics of one notary instance, on a registry of its own.

A per-instance :class:`~prometheus_client.CollectorRegistry` (not the global one) lets
tests and the benchmark run several services in one process without name clashes.
Labels are bounded: rejection reasons are a fixed vocabulary, modes are two values, and the
key-stock gauge is labelled by SAE ID, one per registered device.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "NotaryMetrics"]


class NotaryMetrics:
    """The counters, gauges and histograms the pipeline, worker and API update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter(
            "notary_envelopes_accepted",
            "Envelopes written to the outbox and answered 202",
            ["mode", "channel"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "notary_envelopes_rejected",
            "Envelopes refused, by precise (internal) reason",
            ["reason", "channel"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "notary_intake_seconds",
            "Time from receiving an envelope to answering it",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "notary_outbox_depth",
            "Records accepted but not yet anchored",
            registry=self.registry,
        )
        self.time_to_anchor = Histogram(
            "notary_time_to_anchor_seconds",
            "Time from 202 Accepted to the anchoring transaction being confirmed",
            ["mode"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.batches = Counter(
            "notary_anchor_batches",
            "Anchoring transactions confirmed",
            ["mode"],
            registry=self.registry,
        )
        self.anchored = Counter(
            "notary_records_anchored",
            "Records whose anchoring transaction was confirmed",
            ["mode"],
            registry=self.registry,
        )
        self.key_stock = Gauge(
            "notary_kme_key_stock",
            "Keys the notary's KME still holds for a device SAE",
            ["sae_id"],
            registry=self.registry,
        )
        self.key_stock_depletion = Gauge(
            "notary_kme_key_stock_depletion_seconds",
            "Seconds until a device SAE's key stock runs out at its recent net rate "
            "(+Inf: not falling)",
            ["sae_id"],
            registry=self.registry,
        )
        self.records_unrecorded = Counter(
            "notary_records_unrecorded",
            "Records the contract did not store: refused (device not active in the "
            "registry) or conflict (the record ID is stored with other content)",
            ["outcome"],
            registry=self.registry,
        )
        self.records_lost = Counter(
            "notary_records_lost_by_chain",
            "Anchored records whose evidence a chain rollback or reset took away "
            "(each is anchored again)",
            registry=self.registry,
        )
        self.records_reanchored = Counter(
            "notary_records_reanchored",
            "Records anchored again after the chain lost their first anchoring",
            registry=self.registry,
        )
        self.chain_reset = Gauge(
            "notary_chain_reset",
            "1 while the chain no longer holds the notary's contracts (anchoring stopped)",
            registry=self.registry,
        )
        self.key_bytes = Counter(
            "notary_key_bytes_consumed",
            "Bytes of QKD key material obtained from the KME",
            ["mode"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format for ``/metrics``."""
        return generate_latest(self.registry)
