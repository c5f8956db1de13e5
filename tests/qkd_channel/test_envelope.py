"""Sealed envelopes: round trips, the documented layout, and attacks that must all fail."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd_channel.envelope import (
    AEADSession,
    Envelope,
    Mode,
    OneTimePad,
    derive_secret,
    keys_needed,
    open_envelope,
    seal,
)
from qkd_channel.errors import EnvelopeRejected, KeyMaterialExhausted, SessionExpired
from qkd_channel.keys import QKDKey

VECTORS = Path(__file__).parent.parent / "vectors" / "envelope_otp_v1.json"


def make_keys(total_bytes: int, *, count: int = 1, seed: int = 0) -> list[QKDKey]:
    """Deterministic distinct keys holding ``total_bytes`` between them."""
    per_key = -(-total_bytes // count)
    keys = []
    for i in range(count):
        material = bytes((seed * 131 + i * 17 + j * 7 + 1) % 256 for j in range(per_key))
        keys.append(QKDKey(str(uuid.UUID(int=seed * 1000 + i + 1)), material))
    return keys


def seal_otp(plaintext: bytes, keys: list[QKDKey], **overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "sender": "device-7",
        "recipient": "notary",
        "sequence": 42,
        "mode": Mode.OTP,
        "keys": keys,
        "timestamp_ms": 1_700_000_000_000,
    }
    fields.update(overrides)
    return seal(plaintext, **fields)  # type: ignore[arg-type]


def test_otp_round_trip_across_several_keys() -> None:
    plaintext = b'{"temp": 21.5, "fw": "abc"}'
    keys = make_keys(keys_needed(Mode.OTP, len(plaintext)), count=3)
    env = seal_otp(plaintext, keys)
    opened = open_envelope(env, keys, expected_sender="device-7", expected_recipient="notary")
    assert opened.plaintext == plaintext
    assert opened.mode is Mode.OTP
    assert env.key_ids == tuple(k.key_id for k in keys)
    assert env.ciphertext != plaintext


def test_otp_consumes_mac_key_then_pad_in_documented_order() -> None:
    plaintext = bytes(range(10))
    (key,) = make_keys(keys_needed(Mode.OTP, len(plaintext)))
    env = seal_otp(plaintext, [key])
    pad = key.material[32 : 32 + len(plaintext)]
    assert env.ciphertext == bytes(p ^ k for p, k in zip(plaintext, pad, strict=True))


def test_known_answer_vector_is_stable() -> None:
    """The committed vector pins the byte layout: a format change must bump the version."""
    vector = json.loads(VECTORS.read_text())
    keys = [QKDKey(k["key_ID"], bytes.fromhex(k["key_hex"])) for k in vector["keys"]]
    env = seal_otp(bytes.fromhex(vector["plaintext_hex"]), keys)
    assert env.to_bytes().hex() == vector["envelope_hex"]
    assert open_envelope(Envelope.from_bytes(env.to_bytes()), keys).plaintext == bytes.fromhex(
        vector["plaintext_hex"]
    )


def test_aead_round_trip_and_nonce_freshness() -> None:
    (key,) = make_keys(32)
    session = AEADSession(key)
    first = session.seal(b"hello", sender="d", recipient="n", sequence=1)
    second = session.seal(b"hello", sender="d", recipient="n", sequence=2)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    assert open_envelope(second, [key]).plaintext == b"hello"


def test_derived_secret_is_shared_by_both_ends_and_unique_per_envelope_and_label() -> None:
    session = AEADSession(make_keys(32)[0])
    first = session.seal(b"a", sender="device-7", recipient="notary", sequence=1)
    second = session.seal(b"a", sender="device-7", recipient="notary", sequence=2)
    key = make_keys(32)
    one = derive_secret(first, key, label=b"test/one")
    assert one == derive_secret(Envelope.from_bytes(first.to_bytes()), key, label=b"test/one")
    assert len(one) == 32
    assert one != derive_secret(second, key, label=b"test/one")
    assert one != derive_secret(first, key, label=b"test/two")
    other_material = QKDKey(key[0].key_id, bytes(32))
    assert one != derive_secret(first, [other_material], label=b"test/one")


def test_derived_secret_needs_every_key_the_header_names_and_a_label() -> None:
    keys = make_keys(keys_needed(Mode.OTP, 4), count=2)
    env = seal_otp(b"abcd", keys)
    with pytest.raises(KeyMaterialExhausted):
        derive_secret(env, keys[:1], label=b"test")
    with pytest.raises(ValueError, match="label"):
        derive_secret(env, keys, label=b"")


def test_aead_session_refuses_use_after_message_limit() -> None:
    (key,) = make_keys(32)
    session = AEADSession(key, max_messages=2)
    session.seal(b"a", sender="d", recipient="n", sequence=1)
    session.seal(b"b", sender="d", recipient="n", sequence=2)
    with pytest.raises(SessionExpired):
        session.seal(b"c", sender="d", recipient="n", sequence=3)


def test_aead_session_refuses_use_after_age_limit() -> None:
    (key,) = make_keys(32)
    now = [0.0]
    session = AEADSession(key, max_age_s=10, clock=lambda: now[0])
    session.seal(b"a", sender="d", recipient="n", sequence=1)
    now[0] = 10.0
    with pytest.raises(SessionExpired):
        session.seal(b"b", sender="d", recipient="n", sequence=2)


def test_seal_refuses_too_little_key_material() -> None:
    keys = make_keys(keys_needed(Mode.OTP, 100) - 1)
    with pytest.raises(KeyMaterialExhausted):
        seal_otp(bytes(100), keys)


def test_one_time_pad_never_hands_out_bytes_twice() -> None:
    pad = OneTimePad(make_keys(64))
    first = pad.take(32)
    second = pad.take(32)
    assert first != second
    with pytest.raises(KeyMaterialExhausted):
        pad.take(1)
    pad.finish()
    with pytest.raises(KeyMaterialExhausted):
        pad.take(0)


def test_key_material_never_appears_in_repr() -> None:
    (key,) = make_keys(40)
    env = seal_otp(b"secret", [key])
    assert key.material.hex() not in repr(key)
    assert env.ciphertext.hex() not in repr(env)


@pytest.mark.parametrize("mode", [Mode.OTP, Mode.AEAD], ids=["otp", "aead"])
def test_every_single_bit_flip_is_rejected(mode: Mode) -> None:
    """Flip each bit of the binary envelope in turn: none may open or crash."""
    plaintext = b"t=21.5"
    keys = make_keys(keys_needed(mode, len(plaintext)))
    env = seal_otp(plaintext, keys, mode=mode)
    wire = env.to_bytes()
    for bit in range(len(wire) * 8):
        mutated = bytearray(wire)
        mutated[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(EnvelopeRejected):
            open_envelope(Envelope.from_bytes(bytes(mutated)), keys)


def test_wrong_key_is_rejected() -> None:
    keys = make_keys(64, seed=1)
    other = [QKDKey(keys[0].key_id, make_keys(64, seed=2)[0].material)]
    env = seal_otp(b"payload", keys)
    with pytest.raises(EnvelopeRejected) as info:
        open_envelope(env, other)
    assert info.value.reason == "bad-tag"


def test_missing_key_is_rejected_as_unknown() -> None:
    env = seal_otp(b"payload", make_keys(64, seed=1))
    with pytest.raises(EnvelopeRejected) as info:
        open_envelope(env, make_keys(64, seed=9))
    assert info.value.reason == "unknown-key"


def test_sender_substitution_is_caught_by_the_tag() -> None:
    """Device B cannot reuse device A's envelope by rewriting the sender field."""
    keys = make_keys(64)
    env = seal_otp(b"payload", keys, sender="device-A")
    forged = Envelope.from_dict({**env.to_dict(), "sender": "device-B"})
    with pytest.raises(EnvelopeRejected):
        open_envelope(forged, keys)


def test_expected_sender_and_recipient_are_enforced() -> None:
    keys = make_keys(64)
    env = seal_otp(b"payload", keys)
    with pytest.raises(EnvelopeRejected) as info:
        open_envelope(env, keys, expected_sender="device-8")
    assert info.value.reason == "wrong-sender"
    with pytest.raises(EnvelopeRejected) as info:
        open_envelope(env, keys, expected_recipient="someone-else")
    assert info.value.reason == "wrong-recipient"


def test_mode_downgrade_is_rejected() -> None:
    """Relabelling an aead envelope as otp (or back) cannot pass the tag check."""
    (key,) = make_keys(32)
    env = seal_otp(b"x" * 8, [key], mode=Mode.AEAD)
    as_otp = {**env.to_dict(), "mode": "otp", "nonce": ""}
    with pytest.raises(EnvelopeRejected):
        open_envelope(Envelope.from_dict(as_otp), [key])


def test_rejection_message_does_not_reveal_the_reason() -> None:
    keys = make_keys(64)
    env = seal_otp(b"payload", keys)
    tampered = Envelope.from_dict({**env.to_dict(), "seq": 43})
    with pytest.raises(EnvelopeRejected) as bad_tag:
        open_envelope(tampered, keys)
    with pytest.raises(EnvelopeRejected) as unknown:
        open_envelope(env, make_keys(64, seed=5))
    assert str(bad_tag.value) == str(unknown.value) == "envelope rejected"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("[]", id="array"),
        pytest.param('{"v": 1}', id="missing-fields"),
        pytest.param("not json", id="not-json"),
    ],
)
def test_malformed_json_is_rejected(text: str) -> None:
    with pytest.raises(EnvelopeRejected):
        Envelope.from_json(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("v", 2, id="future-version"),
        pytest.param("v", True, id="bool-version"),
        pytest.param("mode", "rot13", id="unknown-mode"),
        pytest.param("seq", -1, id="negative-sequence"),
        pytest.param("seq", 1 << 64, id="sequence-overflow"),
        pytest.param("key_ids", [], id="no-keys"),
        pytest.param("key_ids", ["not-a-uuid"], id="bad-uuid"),
        pytest.param("tag", "AAAA", id="short-tag"),
        pytest.param("ct", "%%%", id="bad-base64"),
        pytest.param("sender", "", id="empty-sender"),
        pytest.param("sender", "x" * 200, id="long-sender"),
    ],
)
def test_malformed_fields_are_rejected(field: str, value: object) -> None:
    env = seal_otp(b"payload", make_keys(64))
    with pytest.raises(EnvelopeRejected):
        Envelope.from_dict({**env.to_dict(), field: value})


def test_duplicate_key_ids_are_rejected() -> None:
    """Naming one key twice would make the pad repeat: refused at parse time."""
    env = seal_otp(b"payload", make_keys(64, count=2))
    dup = {**env.to_dict(), "key_ids": [env.key_ids[0], env.key_ids[0]]}
    with pytest.raises(EnvelopeRejected):
        Envelope.from_dict(dup)


@settings(max_examples=150, deadline=None)
@given(
    plaintext=st.binary(max_size=512),
    mode=st.sampled_from([Mode.OTP, Mode.AEAD]),
    sequence=st.integers(min_value=0, max_value=(1 << 64) - 1),
    key_count=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_round_trip_through_both_wire_forms(
    plaintext: bytes, mode: Mode, sequence: int, key_count: int, seed: int
) -> None:
    count = key_count if mode is Mode.OTP else 1
    keys = make_keys(keys_needed(mode, len(plaintext)), count=count, seed=seed)
    env = seal_otp(plaintext, keys, mode=mode, sequence=sequence)
    for parsed in (Envelope.from_json(env.to_json()), Envelope.from_bytes(env.to_bytes())):
        assert parsed == env
        assert open_envelope(parsed, keys).plaintext == plaintext


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_parser_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    try:
        Envelope.from_bytes(data)
    except EnvelopeRejected:
        pass


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), xor=st.integers(min_value=1, max_value=255))
def test_any_byte_change_in_an_otp_envelope_is_rejected(position: int, xor: int) -> None:
    keys = make_keys(keys_needed(Mode.OTP, 40), count=2)
    wire = bytearray(seal_otp(bytes(40), keys).to_bytes())
    wire[position % len(wire)] ^= xor
    with pytest.raises(EnvelopeRejected):
        open_envelope(Envelope.from_bytes(bytes(wire)), keys)


AEAD_VECTOR = VECTORS.with_name("envelope_aead_v1.json")


@pytest.mark.parametrize("path", [VECTORS, AEAD_VECTOR], ids=["otp", "aead"])
def test_vectors_parse_open_and_round_trip_in_both_forms(path: Path) -> None:
    vector = json.loads(path.read_text())
    keys = [QKDKey(k["key_ID"], bytes.fromhex(k["key_hex"])) for k in vector["keys"]]
    binary = Envelope.from_bytes(bytes.fromhex(vector["envelope_hex"]))
    from_json = Envelope.from_json(json.dumps(vector["envelope_json"]))
    assert binary == from_json
    assert binary.to_dict() == vector["envelope_json"]
    assert binary.to_bytes().hex() == vector["envelope_hex"]
    assert open_envelope(from_json, keys).plaintext == bytes.fromhex(vector["plaintext_hex"])


def test_aead_vector_is_aes_256_gcm_over_the_documented_header() -> None:
    """Recomputed with pyca's AESGCM from the spec's description, not through seal()."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    vector = json.loads(AEAD_VECTOR.read_text())
    envelope = Envelope.from_bytes(bytes.fromhex(vector["envelope_hex"]))
    (key,) = vector["keys"]
    nonce = bytes.fromhex(vector["nonce_hex"])
    header = bytes.fromhex(vector["envelope_hex"])[:71]  # docs/envelope-spec.md section 9
    assert envelope.header_bytes() == header and envelope.nonce == nonce
    sealed = AESGCM(bytes.fromhex(key["key_hex"])).encrypt(
        nonce, bytes.fromhex(vector["plaintext_hex"]), header
    )
    assert sealed == envelope.ciphertext + envelope.tag
