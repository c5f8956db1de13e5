"""A small PKI for a KME pair: one CA, KME server and client certificates, SAE certificates.

Everything is EC P-256 with SHA-256 signatures. The layout written by
:func:`issue_link_pki` (``ca.key`` is kept so more SAEs can be added later)::

    DIR/ca.crt  DIR/ca.key
    DIR/kme-<ID>.crt  DIR/kme-<ID>.key                  TLS server (serverAuth)
    DIR/kme-<ID>-client.crt  DIR/kme-<ID>-client.key    client of the peer KME (clientAuth)
    DIR/sae-<ID>.crt  DIR/sae-<ID>.key                  SAE client (clientAuth)

Private keys are written with mode 0600 (created that way, never widened afterwards).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qkd_channel.kme.identity import Identity, Role, identity_urn, validate_entity_id

__all__ = [
    "DEFAULT_SERVER_HOSTS",
    "CertificateAuthority",
    "LinkPKI",
    "issue_link_pki",
    "kme_client_paths",
    "kme_server_paths",
    "sae_paths",
]

DEFAULT_SERVER_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")

_CA_DAYS = 3650
_LEAF_DAYS = 397  # the CA/Browser Forum ceiling for leaf certificates; renewal is cheap
_CLOCK_SKEW = dt.timedelta(minutes=5)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qkd-notary"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(tmp, 0o600)  # O_CREAT honours the umask only by narrowing; be explicit anyway
    os.replace(tmp, path)


def _write_certificate(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA that every KME and SAE of a deployment trusts."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(
        cls, name: str = "qkd-notary KME CA", *, now: dt.datetime | None = None
    ) -> CertificateAuthority:
        """A fresh self-signed CA (path length 0: it signs leaves only)."""
        now = now or dt.datetime.now(dt.UTC)
        key = _new_key()
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Load a CA written by :meth:`save`."""
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return cls(cert, key)

    def save(self, cert_path: Path, key_path: Path) -> None:
        _write_certificate(cert_path, self.certificate)
        _write_private_key(key_path, self.private_key)

    def issue(
        self,
        identity: Identity,
        *,
        server_hosts: Sequence[str] = (),
        client: bool = True,
        days: int = _LEAF_DAYS,
        now: dt.datetime | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for ``identity``.

        ``server_hosts`` (DNS names or IP addresses) make it a TLS server certificate;
        ``client`` makes it a TLS client certificate. The subject CN is the entity ID and a
        ``urn:qkd:<role>:<ID>`` URI SAN states the role, which is what the KME checks.
        """
        if not server_hosts and not client:
            raise ValueError("a certificate must be good for server or client authentication")
        now = now or dt.datetime.now(dt.UTC)
        key = _new_key()
        public = key.public_key()
        alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity_urn(identity))]
        for host in server_hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        usages: list[x509.ObjectIdentifier] = []
        if server_hosts:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        ca_public = self.private_key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(identity.entity_id))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,  # ECDHE-ECDSA handshakes sign with the leaf key
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .sign(self.private_key, hashes.SHA256())
        )
        return cert, key


def kme_server_paths(directory: Path, kme_id: str) -> tuple[Path, Path]:
    """(certificate, key) paths of a KME's TLS server certificate."""
    return directory / f"kme-{kme_id}.crt", directory / f"kme-{kme_id}.key"


def kme_client_paths(directory: Path, kme_id: str) -> tuple[Path, Path]:
    """(certificate, key) paths of the certificate a KME presents to its peer."""
    return directory / f"kme-{kme_id}-client.crt", directory / f"kme-{kme_id}-client.key"


def sae_paths(directory: Path, sae_id: str) -> tuple[Path, Path]:
    """(certificate, key) paths of an SAE's client certificate."""
    return directory / f"sae-{sae_id}.crt", directory / f"sae-{sae_id}.key"


@dataclass(frozen=True)
class LinkPKI:
    """Where :func:`issue_link_pki` wrote everything."""

    directory: Path
    ca_certificate: Path
    written: tuple[Path, ...]


def issue_link_pki(
    directory: Path,
    *,
    kme_ids: Iterable[str],
    sae_ids: Iterable[str] = (),
    server_hosts: Sequence[str] = DEFAULT_SERVER_HOSTS,
    days: int = _LEAF_DAYS,
) -> LinkPKI:
    """Write a CA (or reuse the one already in ``directory``) and certificates for the entities.

    Reusing an existing CA lets an operator add SAEs later without re-issuing the KMEs.
    """
    kme_list = [validate_entity_id(k) for k in kme_ids]
    sae_list = [validate_entity_id(s) for s in sae_ids]
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert_path, ca_key_path = directory / "ca.crt", directory / "ca.key"
    written: list[Path] = []
    if ca_cert_path.exists() and ca_key_path.exists():
        ca = CertificateAuthority.load(ca_cert_path, ca_key_path)
    else:
        ca = CertificateAuthority.create()
        ca.save(ca_cert_path, ca_key_path)
        written += [ca_cert_path, ca_key_path]

    def emit(paths: tuple[Path, Path], identity: Identity, hosts: Sequence[str]) -> None:
        cert, key = ca.issue(identity, server_hosts=hosts, client=not hosts, days=days)
        _write_private_key(paths[1], key)
        _write_certificate(paths[0], cert)
        written.extend(paths)

    for kme_id in kme_list:
        kme = Identity(Role.KME, kme_id)
        emit(kme_server_paths(directory, kme_id), kme, server_hosts)
        emit(kme_client_paths(directory, kme_id), kme, ())
    for sae_id in sae_list:
        emit(sae_paths(directory, sae_id), Identity(Role.SAE, sae_id), ())
    return LinkPKI(directory, ca_cert_path, tuple(written))
