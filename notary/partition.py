"""Which notary instance handles a device's MQTT messages.

Instances sharing one broker each own a partition ``k/n`` of the devices, so that a
device always meets the same instance (see :mod:`notary.mqtt`). The rule is SHA-256 of
the UTF-8 device ID, big-endian, modulo ``n``: stable across processes, versions and
languages, unlike Python's salted ``hash``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Partition"]


@dataclass(frozen=True)
class Partition:
    """Instance ``index`` of ``count`` (1-based) owns the devices whose ID hashes to it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError("a partition is k/n with 1 <= k <= n")

    @classmethod
    def parse(cls, text: str) -> Partition:
        """``"k/n"``, as in the ``mqtt_partition`` setting."""
        index, sep, count = text.partition("/")
        if not (sep and index.isdigit() and count.isdigit()):
            raise ValueError("a partition is written k/n, e.g. 1/2")
        return cls(int(index), int(count))

    def owns(self, device_id: str) -> bool:
        digest = hashlib.sha256(device_id.encode("utf-8")).digest()
        return int.from_bytes(digest, "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
