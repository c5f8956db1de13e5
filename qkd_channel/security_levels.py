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

Who reports what: the KME says what feeds its key buffer in its ETSI GS QKD 014 Status
(the vendor field ``status_extension``, read by :func:`link_hop_of_status`); each SAE says
how it reaches its own KME (:func:`delivery_hop_of`, from the URL its KME client connects
to). This module imports only the standard library, so a device can use it.

The path travels on-chain as one ``uint32`` (:meth:`KeyPath.code`): byte 0 the link,
byte 1 the device hop, byte 2 the notary hop, each a :class:`Hop` code.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Hop",
    "KeyPath",
    "Level",
    "SecurityLevels",
    "delivery_hop_of",
    "derive_levels",
    "link_hop_of_status",
]


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


#: The hops that describe the link between two KMEs (what a KME may report).
_LINK_HOPS = frozenset({Hop.QKD, Hop.QKD_TRUSTED_RELAY})


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
    leaves 128 bits), capped by the path.

    ``hybrid``: the AES-256-GCM key is HKDF over the QKD key *and* an ML-KEM-768 shared
    secret, so its confidentiality holds if either does; ML-KEM is quantum-resistant, so a
    classical path cannot lower it below that. Authenticity is another matter: anyone can
    encapsulate to the notary's public key, so a valid tag proves only knowledge of the QKD
    key, and authenticity stays the ``aead`` one, capped by the path.
    """
    path_level = path.level
    aead_level = _weakest(Level.COMPUTATIONAL_QUANTUM_RESISTANT, path_level)
    if mode == "otp":
        confidentiality = authenticity = path_level
    elif mode == "aead":
        confidentiality = authenticity = aead_level
    elif mode == "hybrid":
        confidentiality, authenticity = Level.COMPUTATIONAL_QUANTUM_RESISTANT, aead_level
    else:
        raise ValueError(f"unknown envelope mode {mode!r}")
    return SecurityLevels(confidentiality, authenticity, trusted_nodes=path.trusted_nodes)


def delivery_hop_of(kme_url: str) -> Hop:
    """How keys from the KME at ``kme_url`` reach the SAE that connects there.

    A loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) never crosses a network:
    ``local``. Anything else is TLS (the KME API is HTTPS with mutual TLS), whose classical
    key exchange a future quantum computer could break from a recording: ``tls``. Never
    ``tls-hybrid-pq``: Python's ``ssl`` module here links OpenSSL 3.0, which cannot
    negotiate a hybrid ML-KEM group, so no client in this project offers one. A host name
    other than ``localhost`` counts as a network even if it resolves to this machine: the
    rule can only under-claim. (A loopback port forwarded to a remote KME would defeat it;
    a deployment that does that must not call it local.)
    """
    host = urlsplit(kme_url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return Hop.LOCAL if loopback else Hop.TLS


def link_hop_of_status(extension: Any) -> Hop:
    """The link hop a KME reports in its Status ``status_extension``, else ``unreported``.

    The KME reports ``{"key_path": {"link": "qkd"}}`` when a direct QKD link feeds its key
    buffer, ``{"key_path": {"link": "qkd-trusted-relay", "relay_path": [...]}}`` for keys
    relayed through trusted nodes, and nothing when it has no link source. Anything else
    (absent, malformed, a hop that is not a link kind) is ``unreported``: a report can
    lower a label by its absence but never raise one by being garbled.
    """
    if not isinstance(extension, Mapping):
        return Hop.UNREPORTED
    key_path = extension.get("key_path")
    link = key_path.get("link") if isinstance(key_path, Mapping) else None
    if not isinstance(link, str):
        return Hop.UNREPORTED
    try:
        hop = Hop(link)
    except ValueError:
        return Hop.UNREPORTED
    return hop if hop in _LINK_HOPS else Hop.UNREPORTED
