"""Mutual TLS for KMEs: SSL contexts, and the verified client certificate in the ASGI scope.

uvicorn does not put the peer certificate into the ASGI scope. :class:`MTLSHttpToolsProtocol`
adds it the way the ASGI TLS extension specifies (``scope["extensions"]["tls"]``, with
``client_cert_chain`` as PEM strings), so the application reads the caller's identity from
the certificate the TLS layer verified, per connection, and from nowhere else. It is
uvicorn's httptools protocol (the C parser; h11's pure-Python one cost a KME a large share
of its CPU per request).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from cryptography import x509
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from qkd_channel.httpio import client_ssl_context
from qkd_channel.kme.identity import Identity, identity_from_certificate

__all__ = [
    "MTLSHttpToolsProtocol",
    "client_ssl_context",
    "peer_identity",
    "server_ssl_context",
]

_Scope = MutableMapping[str, Any]
_ASGIApp = Callable[
    [_Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def server_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """A TLS >= 1.2 server context that demands a client certificate issued by ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # ETSI GS QKD 014 clause 5.1
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, object]:
    chain: list[str] = []
    name: str | None = None
    version: int | None = None
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            cert = x509.load_der_x509_certificate(der)
            chain.append(ssl.DER_cert_to_PEM_cert(der))
            name = cert.subject.rfc4514_string()
        version = _TLS_VERSIONS.get(ssl_object.version() or "")
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": version,
        "cipher_suite": None,
    }


class MTLSHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the ASGI TLS extension in every request scope."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._inner_app: _ASGIApp = self.app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = _tls_extension(transport.get_extra_info("ssl_object"))
        inner = self._inner_app

        async def app_with_tls(scope: _Scope, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = tls
            await inner(scope, receive, send)

        self.app = app_with_tls


def peer_identity(scope: _Scope) -> Identity | None:
    """The identity named by the verified client certificate of this request, if any."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return _identity_from_pem(chain[0])


@functools.lru_cache(maxsize=1024)
def _identity_from_pem(pem: str) -> Identity | None:
    """Parsing a certificate costs more than the rest of a small request; a client keeps
    presenting the same one, so the (pure) PEM-to-identity mapping is remembered."""
    return identity_from_certificate(x509.load_pem_x509_certificate(pem.encode()))
