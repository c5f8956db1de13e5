"""The KME PKI: certificate profiles, private key file modes, identities read back."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qkd_channel.kme.certs import (
    CertificateAuthority,
    issue_link_pki,
    kme_client_paths,
    kme_server_paths,
    sae_paths,
)
from qkd_channel.kme.identity import Identity, Role, identity_from_certificate


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    issue_link_pki(
        directory,
        kme_ids=["A", "B"],
        sae_ids=["dev-1"],
        server_hosts=["localhost", "127.0.0.1", "kme.example"],
    )
    return directory


def test_every_private_key_is_private(pki: Path) -> None:
    keys = sorted(pki.glob("*.key"))
    assert len(keys) == 1 + 2 * 2 + 1  # CA, two files per KME, one SAE
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key.name


def test_ca_profile(pki: Path) -> None:
    ca = _load(pki / "ca.crt")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"


def test_kme_server_certificate_profile(pki: Path) -> None:
    ca = _load(pki / "ca.crt")
    cert = _load(kme_server_paths(pki, "A")[0])
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "kme.example"}
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 390 <= validity.days <= 398


@pytest.mark.parametrize(
    ("paths", "identity"),
    [
        pytest.param(lambda d: kme_client_paths(d, "B"), Identity(Role.KME, "B"), id="kme-client"),
        pytest.param(lambda d: sae_paths(d, "dev-1"), Identity(Role.SAE, "dev-1"), id="sae"),
    ],
)
def test_client_certificates_name_role_and_id(pki: Path, paths, identity: Identity) -> None:  # type: ignore[no-untyped-def]
    cert = _load(paths(pki)[0])
    cert.verify_directly_issued_by(_load(pki / "ca.crt"))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity.entity_id
    assert identity_from_certificate(cert) == identity


def test_rerun_reuses_the_ca_and_adds_saes(pki: Path) -> None:
    before = (pki / "ca.crt").read_bytes()
    written = issue_link_pki(pki, kme_ids=[], sae_ids=["dev-2"]).written
    assert (pki / "ca.crt").read_bytes() == before
    assert set(written) == set(sae_paths(pki, "dev-2"))
    _load(sae_paths(pki, "dev-2")[0]).verify_directly_issued_by(_load(pki / "ca.crt"))


@pytest.mark.parametrize("bad", ["", "../x", "a b", "x" * 129, "-lead"])
def test_unusable_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        issue_link_pki(tmp_path, kme_ids=[], sae_ids=[bad])


def test_identity_rules_for_foreign_certificates() -> None:
    ca = CertificateAuthority.create()
    cert, _ = ca.issue(Identity(Role.SAE, "x"), client=True)
    assert identity_from_certificate(cert) == Identity(Role.SAE, "x")
    # CN only (a simpler PKI): an SAE, never a KME.
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kme-b")]))
        .issuer_name(ca.certificate.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(1)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    plain = builder.sign(ca.private_key, hashes.SHA256())
    assert identity_from_certificate(plain) == Identity(Role.SAE, "kme-b")
    # Two role claims: ambiguous, names nobody.
    both = builder.add_extension(
        x509.SubjectAlternativeName(
            [
                x509.UniformResourceIdentifier("urn:qkd:sae:x"),
                x509.UniformResourceIdentifier("urn:qkd:kme:x"),
            ]
        ),
        critical=False,
    ).sign(ca.private_key, hashes.SHA256())
    assert identity_from_certificate(both) is None
