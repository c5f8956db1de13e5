"""The post-quantum half of ``hybrid`` envelopes: ML-KEM-768 keys and the key combiner.

A ``hybrid`` envelope is an ``aead`` envelope whose AES-256-GCM key is not the QKD session
key itself but :func:`combine` of it with an ML-KEM-768 (NIST FIPS 203) shared secret that
the sender encapsulated to the recipient's published public key::

    key = HKDF-SHA256(ikm  = qkd_key (32 bytes) || kem_shared_secret (32 bytes),
                      salt = none,
                      info = "qkd-notary/hybrid-key/v1" || SHA-256(encapsulation key)
                             || kem_key_id || kem_ciphertext,
                      length = 32)

HKDF over the concatenation is a dual-PRF combiner: the output is pseudorandom as long as
*either* input is secret, so the messages stay confidential if the QKD key path holds (even
against a quantum computer) *or* ML-KEM holds (even if the QKD key leaked, say through a
recorded classical TLS hop). The recipient's key hash and the ciphertext in ``info`` bind
the key to the exact encapsulation, as hybrid KEM combiners do (X-Wing, the LAMPS
composite KEMs). ML-KEM authenticates nothing (anyone can encapsulate to a public key), so
the envelope's authenticity still rests on the QKD key alone (docs/security-levels.md).

The encapsulation travels in the envelope's mode-parameter field (its ``nonce``)::

    kem_key_id  8 bytes     first 8 bytes of SHA-256 of the recipient's encapsulation key
    kem_ct      1088 bytes  the ML-KEM-768 ciphertext
    gcm_nonce   12 bytes    as in aead

A sender encapsulates once per session (:meth:`HybridKey.for_sender`) and repeats the same
``kem_key_id || kem_ct`` in every envelope of the session, so each envelope can be opened on
its own; the recipient decapsulates (:meth:`HybridKey.for_recipient`, about 30 us).

ML-KEM comes from pyca/cryptography (``hazmat.primitives.asymmetric.mlkem``, which needs a
build whose OpenSSL or AWS-LC has ML-KEM: the PyPI wheels from version 47 on do). Private
keys are stored as PKCS#8 PEM holding the 64-byte FIPS 203 seed ``d || z`` (RFC 9935's seed
format), in files only their owner can read. PEM (de)serialisation is imported where it
is used: ``cryptography.hazmat.primitives.serialization`` loads every asymmetric algorithm
(about 10 ms), which a device that only seals never needs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qkd_channel.errors import EnvelopeRejected, KEMKeyError
from qkd_channel.keys import QKDKey

__all__ = [
    "HYBRID_KEY_LABEL",
    "KEM_CIPHERTEXT_BYTES",
    "KEM_KEY_ID_BYTES",
    "KEM_PARAMS_BYTES",
    "KEM_PUBLIC_KEY_BYTES",
    "KEM_SEED_BYTES",
    "HybridKey",
    "KEMPrivateKey",
    "KEMPublicKey",
    "combine",
    "ensure_key_pair",
    "public_key_path",
]

HYBRID_KEY_LABEL = b"qkd-notary/hybrid-key/v1"
KEM_PUBLIC_KEY_BYTES = 1184
KEM_CIPHERTEXT_BYTES = 1088
KEM_SEED_BYTES = 64
KEM_KEY_ID_BYTES = 8
#: The KEM part of a hybrid envelope's mode parameters: key ID, then ciphertext.
KEM_PARAMS_BYTES = KEM_KEY_ID_BYTES + KEM_CIPHERTEXT_BYTES
_QKD_KEY_BYTES = 32
_SHARED_SECRET_BYTES = 32


def _unsupported() -> KEMKeyError:
    return KEMKeyError(
        "this cryptography build cannot run ML-KEM-768 (its OpenSSL is too old); "
        "install the PyPI wheel of cryptography >= 47 for hybrid mode"
    )


class KEMPublicKey:
    """An ML-KEM-768 encapsulation key: what a recipient publishes and senders pin."""

    def __init__(self, raw: bytes) -> None:
        """``raw``: the 1184-byte encapsulation key (FIPS 203 ``ek``); checked by the
        library as FIPS 203 section 7.2 requires, ``ValueError`` if it is not one."""
        try:
            self._key = mlkem.MLKEM768PublicKey.from_public_bytes(bytes(raw))
        except UnsupportedAlgorithm:
            raise _unsupported() from None
        self.raw = bytes(raw)
        digest = hashlib.sha256(self.raw).digest()
        #: SHA-256 of the encapsulation key, bound into every hybrid key made with it.
        self.digest = digest
        #: The 8-byte ID a hybrid envelope names its recipient's key by.
        self.key_id = digest[:KEM_KEY_ID_BYTES]

    @property
    def fingerprint(self) -> str:
        """``sha256:`` and the hex SHA-256 of the raw encapsulation key: what an operator
        compares out of band before pinning the key in a device."""
        return "sha256:" + self.digest.hex()

    @classmethod
    def from_pem(cls, data: bytes) -> KEMPublicKey:
        """A ``PUBLIC KEY`` PEM block (SubjectPublicKeyInfo, RFC 9935); ``KEMKeyError`` if
        it is not an ML-KEM-768 public key."""
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_public_key(data)
        except UnsupportedAlgorithm:
            raise _unsupported() from None
        except ValueError:
            raise KEMKeyError("not a PEM public key") from None
        if not isinstance(key, mlkem.MLKEM768PublicKey):
            raise KEMKeyError("the public key is not an ML-KEM-768 key")
        return cls(key.public_bytes_raw())

    @classmethod
    def load(cls, path: Path | str) -> KEMPublicKey:
        """Read a PEM public key file (``KEMKeyError`` if missing or not ML-KEM-768)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KEMKeyError(f"cannot read the ML-KEM public key file: {exc.strerror}") from None
        return cls.from_pem(data)

    def to_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(
            self._key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def encapsulate(self) -> tuple[bytes, bytes]:
        """A fresh ``(shared_secret, ciphertext)`` pair (32 and 1088 bytes)."""
        shared, ciphertext = self._key.encapsulate()
        return bytes(shared), bytes(ciphertext)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KEMPublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"KEMPublicKey({self.fingerprint})"


class KEMPrivateKey:
    """An ML-KEM-768 decapsulation key (the notary's, or a swap party's). Never printed."""

    def __init__(self, seed: bytes) -> None:
        """``seed``: the 64-byte FIPS 203 key-generation seed ``d || z``."""
        if len(seed) != KEM_SEED_BYTES:
            raise ValueError("an ML-KEM seed is 64 bytes")
        try:
            self._key = mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes(seed))
        except UnsupportedAlgorithm:
            raise _unsupported() from None
        raw = self._key.public_key().public_bytes_raw()
        self.public_key = KEMPublicKey(bytes(raw))

    @classmethod
    def generate(cls) -> KEMPrivateKey:
        """A new key from the operating system's generator."""
        return cls(os.urandom(KEM_SEED_BYTES))

    @classmethod
    def load(cls, path: Path | str) -> KEMPrivateKey:
        """Read a key :meth:`save` wrote. Refused (``KEMKeyError``) if the file is missing,
        is not an ML-KEM-768 PKCS#8 key, or can be read by anyone but its owner."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise KEMKeyError(f"cannot read the ML-KEM private key file: {exc.strerror}") from None
        if mode & 0o077:
            raise KEMKeyError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(data, password=None)
        except UnsupportedAlgorithm:
            raise _unsupported() from None
        except (ValueError, TypeError):
            raise KEMKeyError(f"{path} is not an unencrypted PKCS#8 private key") from None
        if not isinstance(key, mlkem.MLKEM768PrivateKey):
            raise KEMKeyError(f"{path} does not hold an ML-KEM-768 key")
        return cls(key.private_bytes_raw())

    def save(self, path: Path | str) -> None:
        """Write the key as PKCS#8 PEM to a new file of mode 0600 (never over an old one)."""
        from cryptography.hazmat.primitives import serialization

        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """The 32-byte shared secret of ``ciphertext`` (FIPS 203 implicit rejection: a
        forged ciphertext yields an unrelated secret, not an error)."""
        return bytes(self._key.decapsulate(ciphertext))

    def __repr__(self) -> str:
        return f"KEMPrivateKey(public={self.public_key.fingerprint})"


def public_key_path(private_key_path: Path) -> Path:
    """Where :func:`ensure_key_pair` writes the public half: ``<private key path>.pub``."""
    return private_key_path.with_name(private_key_path.name + ".pub")


def ensure_key_pair(path: Path) -> tuple[KEMPublicKey, bool]:
    """The public half of the ML-KEM key at ``path``, the pair generated first if there is
    no key there (``True`` then). The public key is (re)written beside it as PEM
    (:func:`public_key_path`), for senders to pin. An existing key is never replaced:
    senders pinned it."""
    if path.exists():
        public, created = KEMPrivateKey.load(path).public_key, False
    else:
        key = KEMPrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        key.save(path)
        public, created = key.public_key, True
    published = public_key_path(path)
    if created or not published.exists():
        published.write_bytes(public.to_pem())
    return public, created


@dataclass(frozen=True)
class HybridKey(QKDKey):
    """The AES-256-GCM key of a hybrid session: :func:`combine` of a 32-byte QKD key and an
    ML-KEM-768 shared secret.

    It carries the QKD key's ID (the ID the envelope header names, so the recipient knows
    which key to fetch from its KME) and the KEM part of the mode parameters it was made
    with (``kem_key_id || kem_ct``), which every envelope sealed under it repeats. Made by
    :meth:`for_sender` or :meth:`for_recipient`, or by :func:`combine` from known parts.
    """

    kem_params: bytes = field(repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.material) != 32 or len(self.kem_params) != KEM_PARAMS_BYTES:
            raise ValueError("a hybrid key is 32 bytes made with one ML-KEM-768 encapsulation")

    @property
    def kem_key_id(self) -> bytes:
        return self.kem_params[:KEM_KEY_ID_BYTES]

    @classmethod
    def for_sender(cls, qkd_key: QKDKey, recipient: KEMPublicKey) -> HybridKey:
        """Encapsulate a fresh secret to ``recipient`` and combine it with ``qkd_key``."""
        shared, ciphertext = recipient.encapsulate()
        return combine(qkd_key, shared, recipient.key_id + ciphertext, recipient)

    @classmethod
    def for_recipient(
        cls, qkd_key: QKDKey, kem_params: bytes, private_key: KEMPrivateKey
    ) -> HybridKey:
        """The key an envelope carrying ``kem_params`` was sealed under, as its recipient
        computes it. ``EnvelopeRejected`` if the envelope names another recipient key or
        the QKD key is not 256 bits (decapsulation itself never fails: a forged ciphertext
        gives a wrong key, and the GCM tag then fails)."""
        public = private_key.public_key
        if len(kem_params) != KEM_PARAMS_BYTES:
            raise EnvelopeRejected("malformed")
        if not hmac.compare_digest(kem_params[:KEM_KEY_ID_BYTES], public.key_id):
            raise EnvelopeRejected("unknown-kem-key")
        if len(qkd_key.material) != _QKD_KEY_BYTES or isinstance(qkd_key, HybridKey):
            raise EnvelopeRejected("wrong-key-size")
        shared = private_key.decapsulate(kem_params[KEM_KEY_ID_BYTES:])
        return combine(qkd_key, shared, kem_params, public)


def combine(
    qkd_key: QKDKey, shared_secret: bytes, kem_params: bytes, recipient: KEMPublicKey
) -> HybridKey:
    """The hybrid key (module docstring): HKDF-SHA256 over ``qkd_key || shared_secret``.

    The low-level step both ends run; known-answer vectors call it with fixed inputs.
    """
    if len(qkd_key.material) != _QKD_KEY_BYTES or isinstance(qkd_key, HybridKey):
        raise ValueError("hybrid mode combines exactly one 256-bit QKD key")
    if len(shared_secret) != _SHARED_SECRET_BYTES:
        raise ValueError("an ML-KEM-768 shared secret is 32 bytes")
    if len(kem_params) != KEM_PARAMS_BYTES or kem_params[:KEM_KEY_ID_BYTES] != recipient.key_id:
        raise ValueError("the KEM parameters must name the recipient's key")
    info = HYBRID_KEY_LABEL + recipient.digest + kem_params
    material = HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(
        qkd_key.material + shared_secret
    )
    return HybridKey(qkd_key.key_id, material, kem_params)
