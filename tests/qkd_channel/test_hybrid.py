"""``hybrid`` envelopes: the ML-KEM-768 step, its known-answer vector re-derived by an
independent FIPS 203 implementation, and the attacks a combiner must withstand."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
import uuid
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from kyber_py.ml_kem import ML_KEM_768

import qkd_channel.envelope as envelope_module
from qkd_channel.envelope import (
    AEADSession,
    Envelope,
    Mode,
    derive_secret,
    keys_needed,
    open_envelope,
    seal,
)
from qkd_channel.errors import EnvelopeRejected, KEMKeyError
from qkd_channel.hybrid import (
    KEM_CIPHERTEXT_BYTES,
    KEM_PARAMS_BYTES,
    HybridKey,
    KEMPrivateKey,
    KEMPublicKey,
    combine,
)
from qkd_channel.keys import QKDKey

VECTOR = Path(__file__).resolve().parents[1] / "vectors" / "envelope_hybrid_v1.json"
NOTARY_KEM = KEMPrivateKey(bytes(range(100, 164)))


def qkd_key() -> QKDKey:
    return QKDKey(str(uuid.uuid4()), os.urandom(32))


def sealed(plaintext: bytes = b'{"temp_c": 21.5}', *, key: QKDKey | None = None) -> Envelope:
    hybrid = HybridKey.for_sender(key or qkd_key(), NOTARY_KEM.public_key)
    return AEADSession(hybrid).seal(plaintext, sender="device-7", recipient="notary", sequence=9)


def opened_by_notary(env: Envelope, key: QKDKey) -> bytes:
    recipient_key = HybridKey.for_recipient(key, env.kem_params, NOTARY_KEM)
    return open_envelope(env, [recipient_key], expected_recipient="notary").plaintext


# --- the known-answer vector --------------------------------------------------------------


def _vector() -> dict[str, object]:
    data: dict[str, object] = json.loads(VECTOR.read_text())
    return data


def test_vector_kem_values_are_reproduced_by_an_independent_ml_kem() -> None:
    """kyber-py (pure Python FIPS 203) derives the same key pair from the seed and, from
    the fixed encapsulation randomness m, the same ciphertext and shared secret; pyca's
    decapsulation agrees. Nothing in the vector is taken on trust."""
    kem = _vector()["kem"]
    assert isinstance(kem, dict)
    seed = bytes.fromhex(kem["seed_hex"])
    ek, _ = ML_KEM_768.key_derive(seed)
    assert ek.hex() == kem["public_key_hex"]
    shared, ciphertext = ML_KEM_768._encaps_internal(ek, bytes.fromhex(kem["encaps_m_hex"]))
    assert ciphertext.hex() == kem["ciphertext_hex"]
    assert shared.hex() == kem["shared_secret_hex"]
    private = KEMPrivateKey(seed)
    assert private.public_key.raw == ek
    assert private.public_key.fingerprint == "sha256:" + kem["public_key_sha256"]
    assert private.public_key.key_id.hex() == kem["key_id_hex"]
    assert private.decapsulate(ciphertext) == shared


def test_vector_hybrid_key_and_ciphertext_follow_the_spec_step_by_step() -> None:
    """Recomputed from docs/envelope-spec.md section 3.3 with pyca primitives, not through
    the code under test."""
    vector = _vector()
    kem, (key,) = vector["kem"], vector["keys"]  # type: ignore[misc]
    assert isinstance(kem, dict) and isinstance(key, dict)
    params = bytes.fromhex(kem["key_id_hex"] + kem["ciphertext_hex"])
    info = b"qkd-notary/hybrid-key/v1" + bytes.fromhex(kem["public_key_sha256"]) + params
    ikm = bytes.fromhex(key["key_hex"]) + bytes.fromhex(kem["shared_secret_hex"])
    hybrid = HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(ikm)
    assert hybrid.hex() == vector["hybrid_key_hex"]
    wire = bytes.fromhex(str(vector["envelope_hex"]))
    env = Envelope.from_bytes(wire)
    nonce = bytes.fromhex(str(vector["nonce_hex"]))
    assert env.nonce == params + nonce and env.kem_params == params
    header = env.header_bytes()
    assert wire.startswith(header) and len(header) == 1167  # spec section 9
    body = AESGCM(hybrid).encrypt(nonce, bytes.fromhex(str(vector["plaintext_hex"])), header)
    assert body == env.ciphertext + env.tag


def test_vector_reseals_byte_for_byte_and_opens_in_both_forms() -> None:
    vector = _vector()
    kem, (key,) = vector["kem"], vector["keys"]  # type: ignore[misc]
    assert isinstance(kem, dict) and isinstance(key, dict)
    private = KEMPrivateKey(bytes.fromhex(kem["seed_hex"]))
    qkd = QKDKey(key["key_ID"], bytes.fromhex(key["key_hex"]))
    params = bytes.fromhex(kem["key_id_hex"] + kem["ciphertext_hex"])
    hybrid = combine(qkd, bytes.fromhex(kem["shared_secret_hex"]), params, private.public_key)
    nonce = bytes.fromhex(str(vector["nonce_hex"]))
    with mock.patch.object(envelope_module.os, "urandom", lambda n: nonce):
        env = seal(
            bytes.fromhex(str(vector["plaintext_hex"])),
            sender="device-7",
            recipient="notary",
            sequence=44,
            mode=Mode.HYBRID,
            keys=[hybrid],
            timestamp_ms=1_700_000_001_000,
        )
    assert env.to_bytes().hex() == vector["envelope_hex"]
    assert env.to_dict() == vector["envelope_json"]
    for parsed in (env, Envelope.from_json(json.dumps(vector["envelope_json"]))):
        notary_key = HybridKey.for_recipient(qkd, parsed.kem_params, private)
        assert notary_key.material.hex() == vector["hybrid_key_hex"]
        assert open_envelope(parsed, [notary_key]).plaintext.hex() == vector["plaintext_hex"]


# --- sealing and opening ------------------------------------------------------------------


def test_a_hybrid_session_seals_many_envelopes_each_opening_on_its_own() -> None:
    key = qkd_key()
    session = AEADSession(HybridKey.for_sender(key, NOTARY_KEM.public_key), max_messages=3)
    assert session.mode is Mode.HYBRID and session.key_id == key.key_id
    envs = [
        session.seal(f"reading {i}".encode(), sender="d", recipient="notary", sequence=i)
        for i in range(3)
    ]
    assert len({e.kem_params for e in envs}) == 1  # one encapsulation per session
    assert len({e.gcm_nonce for e in envs}) == 3  # a fresh GCM nonce per message
    assert all(e.nonce == e.kem_params + e.gcm_nonce for e in envs)
    for i, env in reversed(list(enumerate(envs))):  # any order, any one alone
        wire = Envelope.from_bytes(env.to_bytes())
        assert opened_by_notary(wire, key) == f"reading {i}".encode()
    assert keys_needed(Mode.HYBRID, 10_000) == 32
    assert session.expired()


def test_each_session_encapsulates_afresh() -> None:
    key = qkd_key()
    first = HybridKey.for_sender(key, NOTARY_KEM.public_key)
    second = HybridKey.for_sender(key, NOTARY_KEM.public_key)
    assert first.kem_params != second.kem_params and first.material != second.material


def test_the_record_salt_rests_on_the_hybrid_key_on_both_sides() -> None:
    key = qkd_key()
    sender_key = HybridKey.for_sender(key, NOTARY_KEM.public_key)
    env = AEADSession(sender_key).seal(b"x", sender="d", recipient="notary", sequence=1)
    recipient_key = HybridKey.for_recipient(key, env.kem_params, NOTARY_KEM)
    label = b"qkd-notary/record-salt/v1"
    assert derive_secret(env, [sender_key], label=label) == derive_secret(
        env, [recipient_key], label=label
    )
    with pytest.raises(ValueError):  # the bare QKD key would make it rest on QKD alone
        derive_secret(env, [key], label=label)


# --- attacks ------------------------------------------------------------------------------


def test_the_qkd_key_alone_does_not_open_a_hybrid_envelope() -> None:
    """A harvested QKD key (say, from a recorded classical TLS hop) is not enough: without
    the ML-KEM secret every guess at the combined key fails."""
    key = qkd_key()
    env = sealed(key=key)
    with pytest.raises(EnvelopeRejected):
        open_envelope(env, [key])  # used as an aead key
    for guess in (bytes(32), os.urandom(32)):
        forged_key = combine(key, guess, env.kem_params, NOTARY_KEM.public_key)
        with pytest.raises(EnvelopeRejected) as info:
            open_envelope(env, [forged_key])
        assert info.value.reason == "bad-tag"


def test_the_ml_kem_key_alone_does_not_open_a_hybrid_envelope() -> None:
    env = sealed()
    stolen = QKDKey(env.key_ids[0], os.urandom(32))  # right ID, wrong material
    with pytest.raises(EnvelopeRejected) as info:
        opened_by_notary(env, stolen)
    assert info.value.reason == "bad-tag"


@pytest.mark.parametrize("where", [0, 1087], ids=["first", "last"])
def test_a_forged_kem_ciphertext_is_rejected(where: int) -> None:
    key = qkd_key()
    env = sealed(key=key)
    forged = bytearray(env.nonce)
    forged[8 + where] ^= 0x01
    tampered = dataclasses.replace(env, nonce=bytes(forged))
    with pytest.raises(EnvelopeRejected) as info:
        opened_by_notary(tampered, key)
    assert info.value.reason == "bad-tag"  # implicit rejection: a wrong key, then the tag


def test_a_substituted_encapsulation_is_rejected() -> None:
    """An attacker who encapsulates to the notary himself knows that secret, but not the
    QKD key, and the original tag does not cover his ciphertext."""
    key = qkd_key()
    env = sealed(key=key)
    _, ciphertext = NOTARY_KEM.public_key.encapsulate()
    params = NOTARY_KEM.public_key.key_id + ciphertext
    swapped = dataclasses.replace(env, nonce=params + env.nonce[-12:])
    with pytest.raises(EnvelopeRejected):
        opened_by_notary(swapped, key)


def test_an_envelope_for_another_notary_key_is_refused_before_decapsulation() -> None:
    key = qkd_key()
    other = KEMPrivateKey.generate()
    env = AEADSession(HybridKey.for_sender(key, other.public_key)).seal(
        b"x", sender="d", recipient="notary", sequence=1
    )
    with pytest.raises(EnvelopeRejected) as info:
        opened_by_notary(env, key)
    assert info.value.reason == "unknown-kem-key"


def test_a_downgrade_from_hybrid_to_aead_fails() -> None:
    """Relabelled aead (the KEM part dropped so the envelope parses): the receiver opens it
    with the bare QKD key under another header, and the tag fails."""
    key = qkd_key()
    env = sealed(key=key)
    gcm_nonce = base64.b64encode(env.nonce[-12:]).decode()
    downgraded = Envelope.from_dict({**env.to_dict(), "mode": "aead", "nonce": gcm_nonce})
    with pytest.raises(EnvelopeRejected) as info:
        open_envelope(downgraded, [key])
    assert info.value.reason == "bad-tag"


def test_an_aead_envelope_relabelled_hybrid_fails() -> None:
    key = qkd_key()
    env = AEADSession(key).seal(b"x", sender="d", recipient="notary", sequence=1)
    _, ciphertext = NOTARY_KEM.public_key.encapsulate()
    upgraded = dataclasses.replace(
        env, mode=Mode.HYBRID, nonce=NOTARY_KEM.public_key.key_id + ciphertext + env.nonce
    )
    with pytest.raises(EnvelopeRejected):
        opened_by_notary(Envelope.from_bytes(upgraded.to_bytes()), key)


def test_keys_of_one_mode_never_serve_the_other() -> None:
    key = qkd_key()
    hybrid = HybridKey.for_sender(key, NOTARY_KEM.public_key)
    with pytest.raises(ValueError):
        seal(b"x", sender="d", recipient="n", sequence=1, mode=Mode.HYBRID, keys=[key])
    with pytest.raises(ValueError):
        seal(b"x", sender="d", recipient="n", sequence=1, mode=Mode.AEAD, keys=[hybrid])
    aead_env = AEADSession(key).seal(b"x", sender="d", recipient="n", sequence=1)
    same_id = HybridKey(key.key_id, key.material, hybrid.kem_params)
    with pytest.raises(EnvelopeRejected) as info:
        open_envelope(aead_env, [same_id])
    assert info.value.reason == "wrong-key"
    with pytest.raises(ValueError):  # a hybrid key is never combined again
        combine(hybrid, bytes(32), hybrid.kem_params, NOTARY_KEM.public_key)


@pytest.mark.parametrize("length", [0, 12, KEM_PARAMS_BYTES, KEM_PARAMS_BYTES + 13])
def test_mode_parameters_of_the_wrong_length_are_malformed(length: int) -> None:
    env = sealed()
    with pytest.raises(EnvelopeRejected):
        Envelope.from_dict({**env.to_dict(), "nonce": base64.b64encode(bytes(length)).decode()})


def test_the_recipient_refuses_a_short_qkd_key() -> None:
    env = sealed()
    with pytest.raises(EnvelopeRejected) as info:
        HybridKey.for_recipient(QKDKey(env.key_ids[0], bytes(16)), env.kem_params, NOTARY_KEM)
    assert info.value.reason == "wrong-key-size"
    assert KEM_CIPHERTEXT_BYTES == 1088


# --- key files ----------------------------------------------------------------------------


def test_a_private_key_file_is_owner_only_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "kem.key"
    key = KEMPrivateKey.generate()
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    loaded = KEMPrivateKey.load(path)
    assert loaded.public_key == key.public_key
    shared, ciphertext = key.public_key.encapsulate()
    assert loaded.decapsulate(ciphertext) == shared
    with pytest.raises(FileExistsError):
        key.save(path)  # never overwrites a key devices may have pinned
    assert "PRIVATE" not in repr(loaded) and key.public_key.fingerprint in repr(loaded)


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kem.key"
    KEMPrivateKey.generate().save(path)
    path.chmod(0o640)
    with pytest.raises(KEMKeyError, match="chmod 600"):
        KEMPrivateKey.load(path)


def test_other_key_files_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "ec.key"
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(KEMKeyError, match="ML-KEM-768"):
        KEMPrivateKey.load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(KEMKeyError, match="PKCS#8"):
        KEMPrivateKey.load(path)
    with pytest.raises(KEMKeyError, match="cannot read"):
        KEMPrivateKey.load(tmp_path / "missing.key")
    public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KEMKeyError, match="ML-KEM-768"):
        KEMPublicKey.from_pem(public)


def test_the_public_key_round_trips_through_pem_with_its_fingerprint() -> None:
    public = NOTARY_KEM.public_key
    again = KEMPublicKey.from_pem(public.to_pem())
    assert again == public and again.fingerprint == public.fingerprint
    assert public.to_pem().startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ValueError):
        KEMPublicKey(public.raw[:-1])
