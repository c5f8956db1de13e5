"""Nonces for one signing account, safe across threads and restarts.

The node is the source of truth: the first reservation (and the first after any failure)
reads the account's *pending* transaction count, so a restart, or a transaction whose fate
is unknown because the node stopped answering mid-send, can never make us reuse or skip a
nonce. Reservations are serialized by a lock held while the transaction is signed and
handed to the node, so concurrent batches get consecutive nonces in submission order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["NonceManager"]


class NonceManager:
    """Hands out consecutive nonces; resynchronizes from the node after a failure."""

    def __init__(self, pending_count: Callable[[], int]) -> None:
        self._pending_count = pending_count
        self._lock = threading.Lock()
        self._next: int | None = None

    @contextmanager
    def reserve(self) -> Iterator[int]:
        """Hold the next nonce while the caller signs and sends with it.

        The nonce is consumed only when the block exits normally; on an exception the
        cache is dropped and the next reservation asks the node again.
        """
        with self._lock:
            if self._next is None:
                self._next = self._pending_count()
            nonce = self._next
            try:
                yield nonce
            except BaseException:
                self._next = None
                raise
            self._next = nonce + 1

    def forget(self) -> None:
        """Drop the cached nonce (the node will be asked on the next reservation)."""
        with self._lock:
            self._next = None
