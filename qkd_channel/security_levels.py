"""Security levels derived from what happened, never asserted: envelope mode plus key path.

A record's confidentiality and authenticity are only as strong as the weakest step its keys
took. The key path has three hops, each labelled with how the key material crossed it
(:class:`Hop`):

``link``
    between the two KMEs: a QKD link (post-processing authenticated with a Wegman-Carter
    pool), or QKD links joined by trusted relay nodes;
``device``
    from the device's KME to the device (an SAE): over TLS, over TLS with a hybrid
    post-quantum key exchange, or never over a network (KME-local SAE, pre-loaded keys);
``notary``
    from the notary's KME to the notary, likewise.

:func:`derive_levels` maps (mode, path) to a :class:`SecurityLevels`; the rules and their
reasoning are in ``docs/security-levels.md``. A hop nobody reported counts as the weakest
kind, so a missing report can only lower a label, never raise it.

The path travels on-chain as one ``uint32`` (:meth:`KeyPath.code`): byte 0 the link,
byte 1 the device hop, byte 2 the notary hop, each a :class:`Hop` code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Hop", "KeyPath", "Level", "SecurityLevels", "derive_levels"]


class Hop(enum.StrEnum):
    """How key material crossed one hop of its path."""

    UNREPORTED = "unreported"  #: nobody said: treated as the weakest kind
    TLS = "tls"  #: TLS with a classical key exchange (ECDHE): harvest-now-decrypt-later
    TLS_HYBRID_PQ = "tls-hybrid-pq"  #: TLS whose key exchange includes ML-KEM
    LOCAL = "local"  #: never crossed a network (SAE on the KME's host, or pre-loaded)
    QKD = "qkd"  #: one QKD link between the two KMEs
    QKD_TRUSTED_RELAY = "qkd-trusted-relay"  #: QKD links joined by trusted nodes

    @property
    def code(self) -> int:
        return _HOP_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> Hop:
        try:
            return _CODE_HOPS[code]
        except KeyError:
            raise ValueError(f"unknown key-path hop code {code}") from None


_HOP_CODES = {hop: code for code, hop in enumerate(Hop)}
_CODE_HOPS = {code: hop for hop, code in _HOP_CODES.items()}


class Level(enum.StrEnum):
    """What a property rests on, strongest first."""

    INFORMATION_THEORETIC = "information-theoretic"  #: no computational assumption at all
    COMPUTATIONAL_QUANTUM_RESISTANT = "computational, quantum-resistant"
    COMPUTATIONAL = "computational"  #: open to a future quantum computer

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {
    Level.COMPUTATIONAL: 0,
    Level.COMPUTATIONAL_QUANTUM_RESISTANT: 1,
    Level.INFORMATION_THEORETIC: 2,
}

_HOP_LEVELS = {
    Hop.UNREPORTED: Level.COMPUTATIONAL,
    Hop.TLS: Level.COMPUTATIONAL,
    Hop.TLS_HYBRID_PQ: Level.COMPUTATIONAL_QUANTUM_RESISTANT,
    Hop.LOCAL: Level.INFORMATION_THEORETIC,
    Hop.QKD: Level.INFORMATION_THEORETIC,
    Hop.QKD_TRUSTED_RELAY: Level.INFORMATION_THEORETIC,
}


def _weakest(*levels: Level) -> Level:
    return min(levels, key=lambda level: level.rank)


@dataclass(frozen=True)
class KeyPath:
    """The three hops of a message's keys (see the module docstring)."""

    link: Hop = Hop.UNREPORTED
    device: Hop = Hop.UNREPORTED
    notary: Hop = Hop.UNREPORTED

    def __post_init__(self) -> None:
        for name in ("link", "device", "notary"):
            object.__setattr__(self, name, Hop(getattr(self, name)))

    @property
    def code(self) -> int:
        """The ``uint32`` committed on-chain."""
        return self.link.code | self.device.code << 8 | self.notary.code << 16

    @classmethod
    def from_code(cls, code: int) -> KeyPath:
        if not 0 <= code < 1 << 24:
            raise ValueError("a key-path code has three bytes")
        return cls(
            link=Hop.from_code(code & 0xFF),
            device=Hop.from_code(code >> 8 & 0xFF),
            notary=Hop.from_code(code >> 16 & 0xFF),
        )

    @property
    def level(self) -> Level:
        """The weakest hop's level."""
        return _weakest(*(_HOP_LEVELS[hop] for hop in (self.link, self.device, self.notary)))

    @property
    def trusted_nodes(self) -> bool:
        """Whether relay nodes between the KMEs learned the key."""
        return self.link is Hop.QKD_TRUSTED_RELAY

    def to_dict(self) -> dict[str, str]:
        return {"link": self.link.value, "device": self.device.value, "notary": self.notary.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyPath:
        """Parse the receipt form; unknown keys or labels raise ``ValueError``."""
        if not isinstance(data, Mapping) or set(data) != {"link", "device", "notary"}:
            raise ValueError("a key path has exactly link, device and notary")
        return cls(link=Hop(data["link"]), device=Hop(data["device"]), notary=Hop(data["notary"]))


@dataclass(frozen=True)
class SecurityLevels:
    """Confidentiality and authenticity of one record, as derived."""

    confidentiality: Level
    authenticity: Level
    #: The key passed trusted relay nodes: they could read it (a qualifier of the levels).
    trusted_nodes: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidentiality": self.confidentiality.value,
            "authenticity": self.authenticity.value,
            "trusted_nodes": self.trusted_nodes,
        }


def derive_levels(mode: str, path: KeyPath) -> SecurityLevels:
    """The levels an envelope ``mode`` (``otp``, ``aead``, ``hybrid``) gives over ``path``.

    ``otp``: one-time pad and one-time Poly1305 are information-theoretic, so both levels
    are the path's. ``aead``: AES-256-GCM is computational (quantum-resistant: Grover
    leaves 128 bits), capped by the path. ``hybrid``: the key also rests on ML-KEM-768, so
    a classical path cannot lower it below quantum-resistant, and the cipher keeps it there.
    """
    path_level = path.level
    if mode == "otp":
        level = path_level
    elif mode == "aead":
        level = _weakest(Level.COMPUTATIONAL_QUANTUM_RESISTANT, path_level)
    elif mode == "hybrid":
        level = Level.COMPUTATIONAL_QUANTUM_RESISTANT
    else:
        raise ValueError(f"unknown envelope mode {mode!r}")
    return SecurityLevels(level, level, trusted_nodes=path.trusted_nodes)
