"""Key management entities: ETSI GS QKD 014 v1.1.1 over mutual TLS, for one QKD link.

SAEs use :class:`KMEClient` / :class:`AsyncKMEClient`. Operators run ``qkd-kme serve``
(:func:`~qkd_channel.kme.server.serve`) and make certificates with ``qkd-kme certs``
(:func:`~qkd_channel.kme.certs.issue_link_pki`). Key producers plug in as a
:class:`KeySource`.

The names are imported on first use (PEP 562): a device imports the client, which needs
only the base install, without loading the server side (FastAPI, the key store, the link
simulation), which needs the ``server`` and ``sim`` extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qkd_channel.lazy import lazy_exports

if TYPE_CHECKING:
    from qkd_channel.kme.client import AsyncKMEClient, KeyStatus, KMEClient
    from qkd_channel.kme.config import KeyLimits, KMEConfig, LinkEnd, TLSFiles
    from qkd_channel.kme.source import KeyBlock, KeySource
    from qkd_channel.kme.store import KeyStore

__all__ = [
    "AsyncKMEClient",
    "KMEClient",
    "KMEConfig",
    "KeyBlock",
    "KeyLimits",
    "KeySource",
    "KeyStatus",
    "KeyStore",
    "LinkEnd",
    "TLSFiles",
]

_HOMES = {
    "AsyncKMEClient": "qkd_channel.kme.client",
    "KMEClient": "qkd_channel.kme.client",
    "KeyStatus": "qkd_channel.kme.client",
    "KMEConfig": "qkd_channel.kme.config",
    "KeyLimits": "qkd_channel.kme.config",
    "LinkEnd": "qkd_channel.kme.config",
    "TLSFiles": "qkd_channel.kme.config",
    "KeyBlock": "qkd_channel.kme.source",
    "KeySource": "qkd_channel.kme.source",
    "KeyStore": "qkd_channel.kme.store",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
