"""Key management entities: ETSI GS QKD 014 v1.1.1 over mutual TLS, for one QKD link.

SAEs use :class:`KMEClient` / :class:`AsyncKMEClient`. Operators run ``qkd-kme serve``
(:func:`~qkd_channel.kme.server.serve`) and make certificates with ``qkd-kme certs``
(:func:`~qkd_channel.kme.certs.issue_link_pki`). Key producers plug in as a
:class:`KeySource`.
"""

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
