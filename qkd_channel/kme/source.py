"""Where a KME's key material comes from: a ``KeySource`` of identical blocks at both ends.

A KME does not make key; the QKD link and post-processing do. Whatever runs them (at
link end A as Alice, at end B as Bob) plugs into the KME as a :class:`KeySource`: an async
iterator of :class:`KeyBlock`\\ s that yields, at both ends, the same blocks in the same
order at the link's secret-key rate. :func:`feed_store` moves them into the key buffer and
applies back-pressure: while the buffer is full it stops pulling, which stalls the
(two-party, lock-step) post-processing at both ends alike, so the two buffers never
diverge on which blocks they hold.

A source may say what it is for the KME's Status (:func:`reported_key_path`): a
``key_path`` mapping such as ``{"link": "qkd"}`` (docs/security-levels.md). A source that
says nothing, or a KME without a source, makes no claim about the link.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread

from qkd_channel.kme.store import KeyStore

__all__ = ["KeyBlock", "KeySource", "feed_store", "reported_key_path"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyBlock:
    """A block of secret key, identical at both ends of the link, and its shared ID."""

    block_id: str
    material: bytes = field(repr=False)


@runtime_checkable
class KeySource(Protocol):
    """Produces the blocks a KME stores. Must yield the same sequence at both link ends."""

    def blocks(self) -> AsyncIterator[KeyBlock]:
        """Yield blocks as post-processing finishes them; end when the link shuts down."""
        ...


def reported_key_path(source: KeySource | None) -> dict[str, Any] | None:
    """The ``key_path`` ``source`` declares about itself (its ``key_path`` attribute), for
    the KME's Status; ``None`` when there is no source or it declares nothing."""
    key_path = getattr(source, "key_path", None)
    return dict(key_path) if isinstance(key_path, Mapping) else None


async def feed_store(
    source: KeySource,
    store: KeyStore,
    *,
    capacity_bits: int,
    poll_interval: float = 0.5,
) -> None:
    """Copy blocks from ``source`` into ``store`` until the source ends.

    Before pulling each block it waits until the unallocated pool is below
    ``capacity_bits``, so the buffer overshoots its capacity by at most one block.
    """
    iterator = source.blocks()
    while True:
        while await anyio.to_thread.run_sync(store.available_bits) >= capacity_bits:
            await asyncio.sleep(poll_interval)
        try:
            block = await anext(iterator)
        except StopAsyncIteration:
            log.info("key source finished")
            return
        await anyio.to_thread.run_sync(
            functools.partial(store.add_block, block.block_id, block.material)
        )
        log.info("stored key block %s (%d bits)", block.block_id, 8 * len(block.material))
