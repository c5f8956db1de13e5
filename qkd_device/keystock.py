"""A device's small in-memory stock of one-time-pad keys, fetched several per ``enc_keys``.

ETSI GS QKD 014 ``enc_keys`` takes a ``number``: a busy device (or an edge hub driving many)
can obtain the keys of its next few messages in one request instead of one request per
message, which saves its KME a request and a peer synchronisation per message. The price
is that key material sits in the device's memory a little longer before it is used.

Rules the stock keeps:

* it lives in memory only and is never written to disk: a stock lost with the process
  (crash, power cut, ``close``) is wasted key, never reused key;
* a key is removed from the stock *before* it is handed out, and is handed out once, for
  one envelope;
* one stock belongs to one device client, which obtains its keys with its own KME client
  (its SAE's certificate): the notary's KME releases them only with that SAE as master, so
  stocking does not loosen the binding of keys to a device;
* keys are stocked by size, one key per message, sized to the message's need rounded up to
  :data:`GRANULE_BYTES`: the surplus an envelope discards stays below that granule (a
  reading that needs more than one maximum-size key is never served from the stock);
* keys older than ``max_age_s`` are dropped unused, which bounds how long key material
  waits in memory.

``depth=1`` disables the stock: every message then gets keys of exactly its size, fetched
for it alone (the plain behaviour of :class:`~qkd_device.core.KeyPlan`).
"""

from __future__ import annotations

import math
from collections import deque

from qkd_channel.keys import QKDKey
from qkd_device.core import KeyPlan

__all__ = ["GRANULE_BYTES", "KeyStock"]

#: Stocked keys are sized in steps of this many bytes, so readings whose size varies by a
#: few bytes (a counter gaining a digit) share a stock, at the cost of < 16 bytes of key
#: discarded per message.
GRANULE_BYTES = 16


class KeyStock:
    """Keys obtained ahead of need, by size in bits; see the module docstring for the rules."""

    def __init__(self, depth: int = 1, *, max_age_s: float = 300.0) -> None:
        if depth < 1:
            raise ValueError("the key stock depth is at least 1 (1 = no stock)")
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        #: Keys asked for per ``enc_keys`` call when the stock runs dry (1 = no stock).
        self.depth = depth
        self.max_age_s = max_age_s
        #: Keys (and their bytes) dropped unused so far: too old, or left by :meth:`clear`.
        self.dropped = 0
        self.dropped_bytes = 0
        self._by_bits: dict[int, deque[tuple[float, QKDKey]]] = {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_bits.values())

    def take(self, nbytes: int, plan: KeyPlan, now: float) -> list[QKDKey] | None:
        """A stocked key covering ``nbytes``, removed from the stock; ``None`` if none fits."""
        self.expire(now)
        bits = self._stock_bits(nbytes, plan)
        keys = self._by_bits.get(bits) if bits is not None else None
        if bits is None or not keys:
            return None
        key = keys.popleft()[1]
        if not keys:
            del self._by_bits[bits]
        return [key]

    def requests(self, nbytes: int, plan: KeyPlan) -> list[tuple[int, int]]:
        """``(number, size_bits)`` for ``enc_keys`` when :meth:`take` found nothing."""
        bits = self._stock_bits(nbytes, plan)
        if bits is None:
            return plan.requests(nbytes)
        return [(min(self.depth, plan.max_key_per_request), bits)]

    def keep(self, keys: list[QKDKey], nbytes: int, plan: KeyPlan, now: float) -> list[QKDKey]:
        """Of the keys :meth:`requests` obtained, those for this message; stock the rest."""
        if self._stock_bits(nbytes, plan) is None:
            return keys
        for key in keys[1:]:
            self._by_bits.setdefault(key.size_bits, deque()).append((now, key))
        return keys[:1]

    def expire(self, now: float) -> None:
        """Drop keys older than ``max_age_s`` (counted in :attr:`dropped`)."""
        for bits, keys in list(self._by_bits.items()):
            while keys and now - keys[0][0] >= self.max_age_s:
                self._count_dropped(keys.popleft()[1])
            if not keys:
                del self._by_bits[bits]

    def clear(self) -> None:
        """Drop every stocked key, e.g. when the client closes (counted in :attr:`dropped`)."""
        for keys in self._by_bits.values():
            for _, key in keys:
                self._count_dropped(key)
        self._by_bits.clear()

    def _count_dropped(self, key: QKDKey) -> None:
        self.dropped += 1
        self.dropped_bytes += len(key.material)

    def _stock_bits(self, nbytes: int, plan: KeyPlan) -> int | None:
        """Size of the one stocked key that serves ``nbytes``, or ``None``: not stocked."""
        if self.depth == 1:
            return None
        bits = max(plan.min_key_size, 8 * GRANULE_BYTES * math.ceil(max(nbytes, 1) / GRANULE_BYTES))
        return bits if bits <= plan.max_key_size else None
