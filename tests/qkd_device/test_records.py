"""Record identities on the device side: the same values as the notary's, pinned by the
known-answer vectors (docs/envelope-spec.md section 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import notary.telemetry
from qkd_channel.envelope import Envelope
from qkd_channel.hybrid import HybridKey, KEMPrivateKey
from qkd_channel.keys import QKDKey
from qkd_device import records

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
HYBRID = "envelope_hybrid_v1.json"


@pytest.mark.parametrize("name", ["envelope_otp_v1.json", "envelope_aead_v1.json", HYBRID])
def test_record_id_salt_and_payload_hash_match_the_vectors(name: str) -> None:
    vector = json.loads((VECTORS / name).read_text())
    keys = [QKDKey(k["key_ID"], bytes.fromhex(k["key_hex"])) for k in vector["keys"]]
    envelope = Envelope.from_bytes(bytes.fromhex(vector["envelope_hex"]))
    if name == HYBRID:  # the salt rests on the combined key (docs/envelope-spec.md 3.3, 7)
        notary_kem = KEMPrivateKey(bytes.fromhex(vector["kem"]["seed_hex"]))
        keys = [HybridKey.for_recipient(keys[0], envelope.kem_params, notary_kem)]
    derived = vector["derived"]
    assert (
        records.record_id(envelope.sender, envelope.sequence, envelope.key_ids)
        == derived["record_id"]
    )
    salt = records.record_salt(envelope, keys)
    assert salt.hex() == derived["record_salt_hex"]
    plaintext = bytes.fromhex(vector["plaintext_hex"])
    assert records.payload_hash(salt, plaintext) == derived["payload_hash"]


def test_keccak256_is_ethereums_not_sha3() -> None:
    empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert records.keccak256(b"").hex() == empty
    import hashlib

    assert hashlib.sha3_256(b"").hexdigest() != empty


def test_the_salt_depends_on_every_key_byte_and_on_the_header() -> None:
    vector = json.loads((VECTORS / "envelope_otp_v1.json").read_text())
    keys = [QKDKey(k["key_ID"], bytes.fromhex(k["key_hex"])) for k in vector["keys"]]
    envelope = Envelope.from_bytes(bytes.fromhex(vector["envelope_hex"]))
    salt = records.record_salt(envelope, keys)
    surplus_changed = [keys[0], QKDKey(keys[1].key_id, keys[1].material[:-1] + b"\x00")]
    assert records.record_salt(envelope, surplus_changed) != salt  # discarded bytes count too
    later = Envelope.from_dict({**vector["envelope_json"], "ts": 1})
    assert records.record_salt(later, keys) != salt


@pytest.mark.parametrize(
    ("digest", "telemetry", "error"),
    [
        ("F" * 64, {}, ValueError),
        ("f" * 63, {}, ValueError),
        ("f" * 64, [1], TypeError),
        ("f" * 64, {"x": float("nan")}, ValueError),
    ],
)
def test_documents_the_notary_would_refuse_are_refused_before_sealing(
    digest: str, telemetry: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        records.build_document(digest, telemetry)  # type: ignore[arg-type]


def test_the_document_is_canonical_and_the_notary_accepts_it() -> None:
    document = records.build_document("a" * 64, {"b": 1, "a": [1.5, "é"]})
    assert (
        document
        == b'{"firmware_digest":"' + b"a" * 64 + b'","telemetry":{"a":[1.5,"\\u00e9"],"b":1}}'
    )
    parsed = notary.telemetry.parse_document(document)
    assert parsed.telemetry == {"a": [1.5, "é"], "b": 1}


def test_the_server_uses_the_device_side_functions() -> None:
    for name in ("record_id", "record_salt", "payload_hash", "RECORD_SALT_LABEL", "DIGEST_PATTERN"):
        assert getattr(notary.telemetry, name) is getattr(records, name)
