"""The classical channel between the two ends of a QKD link, and its in-memory implementation.

Post-processing is a two-party protocol: every step (sifting, estimation, Cascade,
verification, privacy amplification) is written against the small ``ClassicalChannel``
interface below, so the same code runs between two threads (``InMemoryChannel``) and
between two KME processes (``qkd_channel.postprocessing.tcp.TCPChannel``). The channel
only moves opaque, ordered, whole messages; integrity and authenticity are the job of the
Wegman-Carter wrapper in ``authentication``, which wraps any implementation.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol, runtime_checkable

from qkd_channel.errors import ChannelError

__all__ = ["ClassicalChannel", "InMemoryChannel"]


@runtime_checkable
class ClassicalChannel(Protocol):
    """An ordered, message-oriented, bidirectional link to the other end.

    ``send`` delivers one whole message; ``receive`` returns the next whole message from the
    peer, in order. Both raise ``ChannelError`` once the channel is closed (by either side)
    or broken; ``receive`` also raises it when ``timeout`` seconds pass without a message.
    """

    def send(self, message: bytes) -> None:
        """Queue ``message`` for the peer."""
        ...

    def receive(self, timeout: float | None = None) -> bytes:
        """Block until the peer's next message arrives (``None``: wait forever)."""
        ...

    def close(self) -> None:
        """Release the channel; the peer's pending and later ``receive`` calls fail."""
        ...


class _Closed:
    """Queue sentinel that tells a receiver the peer has closed its end."""


_CLOSED = _Closed()


class InMemoryChannel:
    """One end of a thread-safe in-process channel; create both ends with ``pair()``.

    Each end owns an inbound queue; ``send`` puts into the peer's queue. Closing an end
    posts a sentinel to the peer, so a peer blocked in ``receive`` wakes up with
    ``ChannelError`` instead of hanging (the in-process analogue of a TCP FIN).
    """

    def __init__(self) -> None:
        self._inbox: queue.Queue[bytes | _Closed] = queue.Queue()
        self._peer: InMemoryChannel | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._peer_closed = False

    @classmethod
    def pair(cls) -> tuple[InMemoryChannel, InMemoryChannel]:
        """Two connected ends (give one to each party's thread)."""
        a, b = cls(), cls()
        a._peer, b._peer = b, a
        return a, b

    def send(self, message: bytes) -> None:
        with self._lock:
            if self._closed or self._peer_closed or self._peer is None:
                raise ChannelError("channel closed")
            peer = self._peer
        peer._inbox.put(bytes(message))

    def receive(self, timeout: float | None = None) -> bytes:
        with self._lock:
            if self._closed:
                raise ChannelError("channel closed")
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise ChannelError("timed out waiting for the peer") from None
        if isinstance(item, _Closed):
            with self._lock:
                self._peer_closed = True
            # Leave the sentinel for any later receive on this end.
            self._inbox.put(item)
            raise ChannelError("peer closed the channel")
        return item

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            peer = self._peer
        # Wake a receive blocked on our own inbox as well as the peer's.
        self._inbox.put(_CLOSED)
        if peer is not None:
            peer._inbox.put(_CLOSED)

    def __enter__(self) -> InMemoryChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
