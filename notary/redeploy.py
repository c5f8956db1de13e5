"""Anchor everything again after new contracts were deployed.

Used when the chain lost the notary's contracts (a reset, a rollback to before their
deployment) and to migrate a data directory whose contracts are a superseded build: every
batch, anchored or not, goes back to PENDING with its root recomputed for the current
leaf format, every record to ``submitted``, and every device event back to unmirrored, so
the anchoring worker registers the devices, attests their firmware and anchors each batch
in the new contracts. The same code serves ``POST /v1/admin/chain/redeploy`` on a running
notary and ``qkd-notary chain redeploy --re-anchor`` on a stopped one.
"""

from __future__ import annotations

from dataclasses import dataclass

from notary.anchoring import record_input
from notary.chain.merkle import MerkleTree
from notary.storage.base import Store

__all__ = ["ReanchorPlan", "requeue_everything"]


@dataclass(frozen=True)
class ReanchorPlan:
    """What was sent back to be anchored in the new contracts."""

    batches: int
    records: int
    device_events: int


async def requeue_everything(store: Store) -> ReanchorPlan:
    """Send every batch and every device event back to the anchoring worker."""
    batches = [*await store.anchored_batches(), *await store.unfinished_batches()]
    roots: dict[int, str] = {}
    for batch in batches:
        if batch.root is not None:
            members = await store.batch_records(batch.batch_id)
            tree = MerkleTree.of_records([record_input(member) for member in members])
            roots[batch.batch_id] = "0x" + tree.root.hex()
    records = await store.requeue_batches([batch.batch_id for batch in batches], roots=roots)
    events = await store.requeue_device_events(0)
    return ReanchorPlan(batches=len(batches), records=records, device_events=events)
