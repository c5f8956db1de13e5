"""Who is on the other end of a TLS connection: an SAE or a KME, and its ID.

Identity is read from the verified client certificate, never from anything the caller
sends in a request. Certificates made by ``qkd-kme certs`` carry a URI subject-alternative
name ``urn:qkd:sae:<ID>`` or ``urn:qkd:kme:<ID>`` that states the role as well as the ID, so a
KME's client certificate can never be mistaken for an SAE's (or the reverse). For
interoperability with simpler PKIs a certificate without such a URI is taken as an SAE
whose ID is its subject common name; it can never act as a KME.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = [
    "ENTITY_ID_PATTERN",
    "Identity",
    "Role",
    "identity_from_certificate",
    "identity_urn",
    "validate_entity_id",
]

#: SAE and KME IDs: they appear in URL paths, file names and certificate names.
ENTITY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_URN_PREFIX = "urn:qkd:"


class Role(enum.Enum):
    """The kind of entity a certificate speaks for."""

    SAE = "sae"  # a secure application entity: asks for keys through ETSI GS QKD 014
    KME = "kme"  # a key management entity: talks to its peer KME over the internal API


@dataclass(frozen=True)
class Identity:
    """An authenticated entity: its role and its ID."""

    role: Role
    entity_id: str


def validate_entity_id(entity_id: str) -> str:
    """Return ``entity_id`` unchanged, or raise ``ValueError`` if it is not a usable ID."""
    if not ENTITY_ID_PATTERN.fullmatch(entity_id):
        raise ValueError(
            "an SAE/KME ID is 1-128 characters of letters, digits, '.', '_' or '-' "
            "and starts with a letter or digit"
        )
    return entity_id


def identity_urn(identity: Identity) -> str:
    """The URI subject-alternative name that states ``identity`` in a certificate."""
    return f"{_URN_PREFIX}{identity.role.value}:{identity.entity_id}"


def identity_from_certificate(cert: x509.Certificate) -> Identity | None:
    """The identity a (already verified) certificate speaks for, or ``None`` if it names none.

    A certificate with more than one ``urn:qkd:`` URI is ambiguous and names nobody.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        uris = []
    claims = [u[len(_URN_PREFIX) :] for u in uris if u.startswith(_URN_PREFIX)]
    if len(claims) > 1:
        return None
    if claims:
        role_text, _, entity_id = claims[0].partition(":")
        try:
            role = Role(role_text)
        except ValueError:
            return None
        if not ENTITY_ID_PATTERN.fullmatch(entity_id):
            return None
        return Identity(role, entity_id)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    common_name = names[0].value
    if not isinstance(common_name, str) or not ENTITY_ID_PATTERN.fullmatch(common_name):
        return None
    return Identity(Role.SAE, common_name)
