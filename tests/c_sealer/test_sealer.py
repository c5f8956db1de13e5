"""The C reference sealer (c_sealer/): built with gcc against Debian's mbedTLS, byte for
byte equal to the known-answer vectors, opened by the Python side, and accepted by a
running notary with keys from a real KME."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qkd_channel.envelope import Envelope, Mode, keys_needed, open_envelope
from qkd_channel.keys import QKDKey
from qkd_device.records import record_id
from tests.notary.sdk_stack import FIRMWARE, NOTARY_SAE, Stack, make_pki, running_stack

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "c_sealer"
VECTORS = ROOT / "tests" / "vectors"


def build(out: Path, *make_vars: str) -> Path:
    """``make CC=gcc`` into ``out`` (-Werror: a compiler warning fails the build)."""
    assert shutil.which("gcc"), "install gcc and libmbedtls-dev (make system-deps)"
    built = subprocess.run(
        ["make", "-C", str(SOURCES), "CC=gcc", f"OUT={out}", *make_vars],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out / "qkd_seal"


@pytest.fixture(scope="module")
def sealer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("c-sealer"))


def seal(
    sealer: Path, *args: str, plaintext: bytes = b"", json_form: bool = False
) -> subprocess.CompletedProcess[bytes]:
    command = [str(sealer), *(["-j"] if json_form else []), *args]
    return subprocess.run(command, input=plaintext, capture_output=True, timeout=30)


def key_spec(keys: list[QKDKey]) -> str:
    return ",".join(f"{k.key_id}:{k.material.hex()}" for k in keys)


def vector(name: str) -> tuple[dict[str, object], list[QKDKey], list[str]]:
    """The vector, its keys, and the sealer's arguments that must reproduce it."""
    data = json.loads((VECTORS / name).read_text())
    keys = [QKDKey(k["key_ID"], bytes.fromhex(k["key_hex"])) for k in data["keys"]]  # type: ignore[attr-defined]
    env = data["envelope_json"]
    assert isinstance(env, dict)
    args = [env["mode"], env["sender"], env["recipient"], str(env["seq"]), str(env["ts"])]
    args.append(key_spec(keys))
    if "nonce_hex" in data:
        args.append(str(data["nonce_hex"]))
    return data, keys, args


@pytest.mark.parametrize("name", ["envelope_otp_v1.json", "envelope_aead_v1.json"])
def test_binary_and_json_forms_match_the_vectors_byte_for_byte(sealer: Path, name: str) -> None:
    data, _, args = vector(name)
    plaintext = bytes.fromhex(str(data["plaintext_hex"]))
    binary = seal(sealer, *args, plaintext=plaintext)
    assert binary.returncode == 0, binary.stderr
    assert binary.stdout.hex() == data["envelope_hex"]
    as_json = seal(sealer, *args, plaintext=plaintext, json_form=True)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == data["envelope_json"]


@pytest.mark.parametrize("size", [0, 1, 16, 63, 64, 65, 1000, 30_000])
@pytest.mark.parametrize("count", [1, 3])
def test_otp_envelopes_open_in_python_whatever_the_size_and_key_split(
    sealer: Path, size: int, count: int
) -> None:
    plaintext = bytes((7 * i + 3) % 256 for i in range(size))
    need = keys_needed(Mode.OTP, size) + 5  # a surplus the envelope must discard
    per_key = -(-need // count)
    keys = [
        QKDKey(str(uuid.uuid4()), bytes((i * 31 + j) % 256 for j in range(per_key)))
        for i in range(count)
    ]
    done = seal(sealer, "otp", "capteur-é", "notary", "7", "1", key_spec(keys), plaintext=plaintext)
    assert done.returncode == 0, done.stderr
    opened = open_envelope(Envelope.from_bytes(done.stdout), keys, expected_sender="capteur-é")
    assert opened.plaintext == plaintext


def test_json_strings_are_escaped(sealer: Path) -> None:
    key = QKDKey(str(uuid.uuid4()), bytes(range(40)))
    sender = 'dev"\\\n1'
    done = seal(sealer, "otp", sender, "notary", "1", "2", key_spec([key]), json_form=True)
    assert done.returncode == 0, done.stderr
    parsed = Envelope.from_json(done.stdout)
    assert parsed.sender == sender
    assert open_envelope(parsed, [key]).plaintext == b""


KEY = "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"
NONCE = "00" * 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["otp", "d", "n", "1", "1", f"{KEY}:" + "00" * 33], "otp needs", id="otp-short"
        ),
        pytest.param(
            ["aead", "d", "n", "1", "1", f"{KEY}:" + "00" * 16, NONCE],
            "exactly one",
            id="aead-16-byte-key",
        ),
        pytest.param(
            ["aead", "d", "n", "1", "1", f"{KEY}:{'00' * 32},{KEY[:-1]}9:{'00' * 32}", NONCE],
            "exactly one",
            id="aead-two-keys",
        ),
        pytest.param(
            ["otp", "d", "n", "1", "1", f"{KEY}:{'00' * 40},{KEY}:{'00' * 40}"],
            "distinct",
            id="duplicate-key-ids",
        ),
        pytest.param(
            ["otp", "d" * 129, "n", "1", "1", f"{KEY}:{'00' * 40}"], "1-128", id="long-sender"
        ),
        pytest.param(
            ["otp", "é" * 128, "n", "1", "1", f"{KEY}:{'00' * 40}"], "1-128", id="256-bytes"
        ),
        pytest.param(["otp", "", "n", "1", "1", f"{KEY}:{'00' * 40}"], "1-128", id="empty-sender"),
        pytest.param(
            ["aead", "d", "n", "1", "1", f"{KEY}:{'00' * 32}", "00" * 11],
            "24 hex",
            id="short-nonce",
        ),
        pytest.param(
            ["otp", "d", "n", "1", "1", f"{KEY}:{'00' * 40}", NONCE],
            "otp none",
            id="otp-with-nonce",
        ),
        pytest.param(
            ["otp", "d", "n", "18446744073709551616", "1", f"{KEY}:00"],
            "64-bit",
            id="sequence-overflow",
        ),
        pytest.param(["otp", "d", "n", "-1", "1", f"{KEY}:00"], "64-bit", id="negative-sequence"),
        pytest.param(["otp", "d", "n", "1", "1", "not-a-uuid:00"], "UUID:HEX", id="bad-uuid"),
        pytest.param(["otp", "d", "n", "1", "1", f"{KEY}:0g"], "UUID:HEX", id="bad-hex"),
        pytest.param(["xor", "d", "n", "1", "1", f"{KEY}:00"], "otp or aead", id="unknown-mode"),
        pytest.param(["otp", "d", "n"], "usage", id="too-few-arguments"),
    ],
)
def test_bad_input_is_refused_with_exit_2_and_no_output(
    sealer: Path, args: list[str], message: str
) -> None:
    done = seal(sealer, *args, plaintext=b"{}")
    assert done.returncode == 2
    assert done.stdout == b""
    assert message in done.stderr.decode()
    assert "00" * 8 not in done.stderr.decode()  # no key material in the message


def test_address_and_undefined_behaviour_sanitizers_find_nothing(tmp_path: Path) -> None:
    checked = build(tmp_path, "CFLAGS=-O1 -g -fsanitize=address,undefined -fno-sanitize-recover")
    runs = []
    for name in ("envelope_otp_v1.json", "envelope_aead_v1.json"):
        data, _, args = vector(name)
        plaintext = bytes.fromhex(str(data["plaintext_hex"]))
        runs += [(args, plaintext, False, 0), (args, plaintext, True, 0)]
    keys = [QKDKey(str(uuid.uuid4()), bytes(range(256)) * 40) for _ in range(3)]
    runs.append((["otp", "d", "n", "1", "1", key_spec(keys)], b"x" * 30_000, True, 0))
    runs.append((["otp", "d", "n", "1", "1", f"{KEY}:{'00' * 33}"], b"{}", False, 2))
    runs.append((["aead", "d", "n", "1", "1", f"{KEY}:{'00' * 31}", NONCE], b"", False, 2))
    for args, plaintext, json_form, code in runs:
        done = seal(checked, *args, plaintext=plaintext, json_form=json_form)
        assert done.returncode == code, done.stderr.decode()[-2000:]
        assert b"Sanitizer" not in done.stderr and b"runtime error" not in done.stderr


def test_the_specs_walkthrough_runs_verbatim_and_reproduces_the_otp_vector() -> None:
    spec = (ROOT / "docs" / "envelope-spec.md").read_text()
    (block,) = re.findall(r"```sh\n(.*?)```", spec, re.DOTALL)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data, _, _ = vector("envelope_otp_v1.json")
    assert done.stdout == data["envelope_hex"]


def test_the_sealer_stays_under_400_lines() -> None:
    lines = sum(len(p.read_text().splitlines()) for p in SOURCES.glob("*.[ch]"))
    assert lines < 400, lines


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pki = make_pki(tmp_path_factory.mktemp("c-sealer-pki"), devices=1)
    with running_stack(tmp_path_factory.mktemp("c-sealer-stack"), pki, devices=1) as s:
        yield s


#: Sequence numbers must rise per device; the tests below share one device.
SEQUENCES = itertools.count(1)


def c_sealed(sealer: Path, stack: Stack, mode: Mode, form: str) -> tuple[bytes, str]:
    """An envelope of ``dev-0`` sealed by the C sealer with fresh keys from the device's
    KME, and the record ID it must become."""
    sequence = next(SEQUENCES)
    plaintext = json.dumps({"firmware_digest": FIRMWARE, "telemetry": {"c": form}}).encode()
    keys = stack.device_kme("sae-0").enc_keys(
        NOTARY_SAE, size=8 * keys_needed(mode, len(plaintext))
    )
    args = [mode.value, "dev-0", "notary", str(sequence), "1700000000000", key_spec(keys)]
    if mode is Mode.AEAD:
        args.append(os.urandom(12).hex())
    done = seal(sealer, *args, plaintext=plaintext, json_form=form == "json")
    assert done.returncode == 0, done.stderr
    return done.stdout, record_id("dev-0", sequence, [k.key_id for k in keys])


def post(stack: Stack, body: bytes, form: str) -> httpx.Response:
    content_type = "application/json" if form == "json" else "application/octet-stream"
    return httpx.post(
        f"{stack.notary_url}/v1/telemetry", content=body, headers={"Content-Type": content_type}
    )


@pytest.mark.parametrize("mode", [Mode.OTP, Mode.AEAD])
@pytest.mark.parametrize("form", ["binary", "json"])
def test_the_notary_accepts_c_sealed_envelopes_and_refuses_a_tampered_one(
    sealer: Path, stack: Stack, mode: Mode, form: str
) -> None:
    victim, _ = c_sealed(sealer, stack, mode, form)
    parsed = Envelope.from_json(victim) if form == "json" else Envelope.from_bytes(victim)
    flipped = bytearray(parsed.ciphertext)
    flipped[0] ^= 0x01
    tampered = dataclasses.replace(parsed, ciphertext=bytes(flipped))
    tampered_body = tampered.to_json().encode() if form == "json" else tampered.to_bytes()
    refused = post(stack, tampered_body, form)
    assert refused.status_code == 401, refused.text

    body, expected_record = c_sealed(sealer, stack, mode, form)
    answer = post(stack, body, form)
    assert answer.status_code == 202, answer.text
    assert answer.json()["record_id"] == expected_record
