"""Key material as it leaves a KME: a UUID key ID and the secret bytes.

The material is never shown by ``repr`` so a key that ends up in a log line or a traceback
does not leak.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

__all__ = ["QKDKey"]


@dataclass(frozen=True)
class QKDKey:
    """One key delivered by a KME (ETSI GS QKD 014 ``key_ID`` + ``key``)."""

    key_id: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        # Canonical lowercase UUID text, so IDs compare equal whichever end formatted them.
        object.__setattr__(self, "key_id", str(uuid.UUID(self.key_id)))
        if not self.material:
            raise ValueError("a QKD key cannot be empty")

    @property
    def size_bits(self) -> int:
        return 8 * len(self.material)
