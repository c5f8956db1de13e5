"""What one KME needs to know: who it is, its link end, its peer, its limits, its TLS files."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from qkd_channel.kme.identity import validate_entity_id

__all__ = ["DEFAULT_BUFFER_BITS", "KMEConfig", "KeyLimits", "LinkEnd", "TLSFiles"]

#: Key buffer capacity of the Bristol experiment's KMEs: 1 Mbit.
DEFAULT_BUFFER_BITS = 1_000_000


class LinkEnd(enum.Enum):
    """Which end of the QKD link a KME serves; it decides which half of each block it may carve.

    Both KMEs receive identical blocks. End ``A`` allocates keys only from the first half of
    every block (bytes ``[0, n // 2)``), end ``B`` only from the second half (``[n // 2, n)``),
    so the two ends never hand out the same bits without having to agree first.
    """

    A = "A"  # runs Alice in post-processing; owns the first half of each block
    B = "B"  # runs Bob in post-processing; owns the second half of each block

    @property
    def other(self) -> LinkEnd:
        return LinkEnd.B if self is LinkEnd.A else LinkEnd.A


@dataclass(frozen=True)
class KeyLimits:
    """The ETSI GS QKD 014 Status limits this KME enforces (sizes in bits)."""

    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 65_536
    max_key_per_request: int = 128
    max_sae_id_count: int = 4
    buffer_bits: int = DEFAULT_BUFFER_BITS

    def __post_init__(self) -> None:
        for name in ("key_size", "min_key_size", "max_key_size"):
            if getattr(self, name) % 8 or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive multiple of 8 bits")
        if not self.min_key_size <= self.key_size <= self.max_key_size:
            raise ValueError("key sizes must satisfy min_key_size <= key_size <= max_key_size")
        if self.max_key_per_request < 1 or self.max_sae_id_count < 0:
            raise ValueError("max_key_per_request >= 1 and max_sae_id_count >= 0 are required")
        if self.buffer_bits < 2 * self.max_key_size:
            raise ValueError("the buffer must hold at least one maximum-size key per link end")

    @property
    def max_key_count(self) -> int:
        """Keys of the default size this end can hold: it owns half of the buffer."""
        return self.buffer_bits // 2 // self.key_size


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the server certificate, the client certificate used towards the peer, the CA."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    ca: Path


@dataclass(frozen=True)
class KMEConfig:
    """Configuration of one KME process.

    ``sae_ids`` are the SAEs attached to this KME (allowed to call it as master or slave);
    ``None`` admits any SAE holding a certificate from the deployment's CA.
    """

    kme_id: str
    end: LinkEnd
    peer_kme_id: str
    peer_url: str
    data_dir: Path
    tls: TLSFiles
    limits: KeyLimits = field(default_factory=KeyLimits)
    sae_ids: frozenset[str] | None = None
    peer_timeout: float = 5.0

    def __post_init__(self) -> None:
        validate_entity_id(self.kme_id)
        validate_entity_id(self.peer_kme_id)
        if self.kme_id == self.peer_kme_id:
            raise ValueError("a KME cannot be its own peer")
        for sae_id in self.sae_ids or ():
            validate_entity_id(sae_id)
