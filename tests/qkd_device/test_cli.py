"""``qkd-device`` as a firmware engineer uses it: a real process against real KMEs, a real
notary (HTTP and MQTT intake) and a real Mosquitto; exit codes as documented."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notary.config import create_kem_key
from qkd_channel.kme.certs import sae_paths
from qkd_device.cli import ExitCode
from qkd_device.records import build_document, payload_hash
from tests.conftest import AnvilFactory
from tests.notary.conftest import Broker
from tests.notary.sdk_stack import (
    FIRMWARE,
    NOTARY_SAE,
    NotaryProcess,
    Stack,
    init_on_node,
    make_pki,
    running_stack,
    start_stack,
)

PASSWORD = "device cli test keystore"

QKD_DEVICE = Path(sys.executable).with_name("qkd-device")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("device-cli-pki"), devices=3)


@pytest.fixture
def stack(pki: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, pki, devices=2) as s:
        yield s


def device_env(stack: Stack, device: str = "dev-0", sae: str = "sae-0") -> dict[str, str]:
    """The connection settings as environment variables (the documented naming rule)."""
    cert, key = sae_paths(stack.pki, sae)
    return {
        "QKD_DEVICE_ID": device,
        "QKD_DEVICE_KME": stack.kmes.urls["a"],
        "QKD_DEVICE_CERT": str(cert),
        "QKD_DEVICE_KEY": str(key),
        "QKD_DEVICE_CA": str(stack.pki / "ca.crt"),
        "QKD_DEVICE_NOTARY_SAE": NOTARY_SAE,
        "QKD_DEVICE_FIRMWARE_DIGEST": FIRMWARE,
        "QKD_DEVICE_QUEUE": str(stack.root / f"queue-{device}"),
        "QKD_DEVICE_TIMEOUT": "5",
    }


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 90
) -> tuple[int, str, str]:
    done = subprocess.run(
        [str(QKD_DEVICE), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_help_and_version_answer_without_importing_the_sdk() -> None:
    code, out, _ = run("--help")
    assert code == 0 and all(c in out for c in ("send", "keys", "queue", "130 interrupted"))
    code, out, _ = run("send", "--help")
    assert code == 0 and "QKD_DEVICE_ID" in out and "QKD_DEVICE_KME" in out
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("qkd-device ")
    probe = "import sys, qkd_device.cli; print(sorted(m for m in sys.modules if 'qkd_device' in m))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.stdout.strip() == "['qkd_device', 'qkd_device.cli']", loaded.stderr


def test_send_delivers_a_reading_whose_receipt_commits_to_the_devices_own_payload_hash(
    stack: Stack,
) -> None:
    env = device_env(stack)
    code, out, err = run(
        "--json", "send", '{"temp_c": 21.5}', "--notary", stack.notary_url, env=env
    )
    assert code == ExitCode.OK, err
    sent = json.loads(out)
    assert sent["device_id"] == "dev-0" and sent["sequence"] == 1 and sent["mode"] == "otp"
    assert "salt" not in sent  # a secret: only with --show-salt
    receipt = httpx.get(f"{stack.notary_url}/v1/records/{sent['record_id']}").json()
    assert receipt["payload_hash"] == sent["payload_hash"]

    code, out, err = run(
        "--json",
        "send",
        "--notary",
        stack.notary_url,
        "--mode",
        "aead",
        "--show-salt",
        env=env,
        stdin='{"temp_c": 21.75}',
    )
    assert code == ExitCode.OK, err
    second = json.loads(out)
    assert second["sequence"] == 2 and second["mode"] == "aead"
    assert second["key_delivery"] == "local"  # the KME is on loopback: never left the host
    document = build_document(FIRMWARE, {"temp_c": 21.75}, key_delivery="local")
    assert payload_hash(bytes.fromhex(second["salt"][2:]), document) == second["payload_hash"]


def test_send_in_hybrid_mode_pins_the_notarys_ml_kem_key(stack: Stack) -> None:
    stack.stop_notary()
    public, _ = create_kem_key(stack.settings)  # what qkd-notary init does
    stack.start_notary()
    env = device_env(stack)
    pinned = str(stack.settings.kem_public_key_path)
    code, out, err = run(
        "--json", "send", '{"kwh": 7}', "--notary", stack.notary_url, "--mode", "hybrid",
        "--notary-kem-key", pinned, env=env,
    )  # fmt: skip
    assert code == ExitCode.OK, err
    sent = json.loads(out)
    receipt = httpx.get(f"{stack.notary_url}/v1/records/{sent['record_id']}").json()
    assert receipt["mode"] == "hybrid" and receipt["payload_hash"] == sent["payload_hash"]
    assert receipt["security"]["confidentiality"] == "computational, quantum-resistant"
    assert len(public.fingerprint) == len("sha256:") + 64
    # No pinned key, or something that is not one: a usage error, nothing sealed or sent.
    for extra in ((), ("--notary-kem-key", str(stack.pki / "ca.crt"))):
        code, out, err = run(
            "--json", "send", "{}", "--notary", stack.notary_url, "--mode", "hybrid", *extra,
            env=env,
        )  # fmt: skip
        assert code == ExitCode.USAGE, err
    assert notary_device_sequence(stack, "dev-0") == 1


def notary_device_sequence(stack: Stack, device: str) -> int:
    answer = httpx.get(f"{stack.notary_url}/v1/devices/{device}").json()
    return int(answer["last_sequence"])


@pytest.fixture(scope="module")
def anchoring(
    pki: Path, tmp_path_factory: pytest.TempPathFactory, anvil_factory: AnvilFactory
) -> Iterator[Stack]:
    """``qkd-notary serve`` as a process, anchoring on anvil; device dev-9 registered."""
    stack = start_stack(tmp_path_factory.mktemp("device-cli-anchoring"), pki)
    node = anvil_factory()
    notary = NotaryProcess(stack, password=PASSWORD, extra=("--chain-rpc-url", node.url))
    try:
        init_on_node(stack, node.url, PASSWORD)
        notary.start()
        stack.register("dev-9", "sae-2")
        yield stack
    finally:
        notary.stop()
        stack.close()
        node.stop()


def test_wait_anchored_returns_the_receipt_once_it_is_on_chain(anchoring: Stack) -> None:
    env = device_env(anchoring, device="dev-9", sae="sae-2")
    code, out, err = run(
        "--json",
        "send",
        '{"kwh": 7}',
        "--notary",
        anchoring.notary_url,
        "--wait-anchored",
        "90",
        env=env,
    )
    assert code == ExitCode.OK, out + err
    sent = json.loads(out)
    receipt = sent["receipt"]
    assert receipt["status"] == "anchored" and receipt["payload_hash_matches"] is True
    assert receipt["tx_hash"].startswith("0x") and receipt["block_number"] >= 1


def test_human_output_and_the_firmware_image_option(stack: Stack, tmp_path: Path) -> None:
    env = device_env(stack)
    del env["QKD_DEVICE_FIRMWARE_DIGEST"]
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\x7fELF firmware 1.4.2")
    code, out, err = run(
        "send", '{"v": 1}', "--notary", stack.notary_url, "--firmware", str(image), env=env
    )
    assert code == ExitCode.OK, err
    assert "record_id: 0x" in out and "payload_hash: 0x" in out and "attestation:" in out


def test_keys_status_shows_the_stock_shared_with_the_notary(stack: Stack) -> None:
    code, out, err = run("--json", "keys", "status", env=device_env(stack))
    assert code == ExitCode.OK, err
    status = json.loads(out)
    assert status["slave_sae_id"] == NOTARY_SAE and status["stored_key_count"] > 0


def test_a_notary_outage_leaves_the_reading_queued_and_flush_delivers_it(stack: Stack) -> None:
    env = device_env(stack)
    url = stack.notary_url
    stack.stop_notary()
    code, out, _ = run("--json", "send", '{"n": 1}', "--notary", url, env=env)
    assert code == ExitCode.PENDING
    assert json.loads(out)["error"] == "delivery-pending"

    code, out, err = run("--json", "queue", "show", env=env)
    assert code == ExitCode.OK, err
    shown = json.loads(out)
    assert [p["sequence"] for p in shown["pending"]] == [1] and shown["next_sequence"] == 2
    assert "plaintext" not in out and "salt" not in out

    stack.start_notary()
    code, out, err = run("--json", "queue", "flush", "--notary", url, env=env)
    assert code == ExitCode.OK, err
    (delivered,) = json.loads(out)["delivered"]
    assert delivered["record_id"] == shown["pending"][0]["record_id"]
    assert delivered["payload_hash"] is not None  # the salt survived in the queue
    code, out, _ = run("--json", "queue", "show", env=env)
    assert json.loads(out)["pending"] == []


def test_a_device_the_notary_does_not_know_is_refused_and_kept_as_a_dead_letter(
    stack: Stack,
) -> None:
    env = device_env(stack, device="stranger", sae="sae-2")
    code, out, _ = run("--json", "send", '{"n": 1}', "--notary", stack.notary_url, env=env)
    assert code == ExitCode.REFUSED
    assert json.loads(out)["exit_code"] == ExitCode.REFUSED
    code, out, _ = run("--json", "queue", "show", env=env)
    (dead,) = json.loads(out)["rejected"]
    assert dead["status"] == 401 and dead["sequence"] == 1


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        pytest.param(["send", "{not json"], None, "not JSON", id="bad-json"),
        pytest.param(["send", "[1, 2]"], None, "JSON object", id="not-an-object"),
        pytest.param(["send", '{"x": NaN}'], None, "not JSON", id="nan"),
        pytest.param(["send", "-"], "", "not JSON", id="empty-stdin"),
        pytest.param(["send", "{}", "--firmware-digest", "abc"], None, "firmware", id="digest"),
        pytest.param(["send", "{}", "--notary", "ftp://x"], None, "not an http", id="url"),
        pytest.param(["send", "{}", "--cert", "/nonexistent"], None, "--cert", id="cert"),
    ],
)
def test_bad_input_is_a_usage_error_with_one_line_and_no_key_spent(
    stack: Stack, args: list[str], stdin: str | None, message: str
) -> None:
    env = device_env(stack)
    if "--notary" not in args:
        args = [*args, "--notary", stack.notary_url]
    kme = stack.device_kme("sae-0")
    before = kme.status(NOTARY_SAE).stored_key_count
    code, _, err = run(*args, env=env, stdin=stdin)
    assert code == ExitCode.USAGE
    assert message in err and len(err.strip().splitlines()) == 1
    assert kme.status(NOTARY_SAE).stored_key_count == before


def test_missing_options_are_named_with_their_environment_variables() -> None:
    code, out, _ = run("--json", "send", "{}", env={"QKD_DEVICE_KME": "", "QKD_DEVICE_ID": "d"})
    assert code == ExitCode.USAGE
    error = json.loads(out)
    assert error["error"] == "usage"
    assert "--kme (QKD_DEVICE_KME)" in error["detail"] and "QKD_DEVICE_ID" not in error["detail"]


def test_send_over_mqtt_through_the_notarys_intake(stack: Stack, mosquitto: Broker) -> None:
    stack.stop_notary()
    stack.settings = stack.settings.model_copy(
        update={"mqtt_host": mosquitto.host, "mqtt_port": mosquitto.port}
    )
    stack.start_notary()
    env = device_env(stack)
    notary = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    code, out, err = run(
        "--json",
        "send",
        '{"over": "mqtt"}',
        "--notary",
        notary,
        env=env,
    )
    assert code == ExitCode.OK, err
    sent = json.loads(out)
    assert sent["sequence"] == 1 and sent["attestation"] == "first-digest"
    receipt = httpx.get(f"{stack.notary_url}/v1/records/{sent['record_id']}").json()
    assert receipt["payload_hash"] == sent["payload_hash"]


def test_ctrl_c_exits_130_and_the_sealed_reading_stays_queued(stack: Stack) -> None:
    """A notary that accepts the connection and never answers; Ctrl-C mid-delivery."""
    env = {**device_env(stack), "QKD_DEVICE_TIMEOUT": "60"}
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = subprocess.Popen(
            [str(QKD_DEVICE), "send", '{"n": 1}', "--notary", url],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A shell running the suite in the background ignores SIGINT, and children
            # inherit that: give the tool the default handler, as a terminal would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        silent.settimeout(60)
        connection, _ = silent.accept()  # the envelope is sealed and queued by now
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        connection.close()
    assert process.returncode == ExitCode.INTERRUPTED
    assert "interrupted" in err and "Traceback" not in err
    _, out, _ = run("--json", "queue", "show", env=env)
    assert [p["sequence"] for p in json.loads(out)["pending"]] == [1]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"state.json": '{"device_id": "someone-else", "next_sequence": 3}'}, "another device"),
        (
            {
                "state.json": '{"device_id": "dev-0", "next_sequence": 3}',
                "rejected/00000000000000000001.json": "{not json",
            },
            "corrupt",
        ),
        (
            {
                "state.json": '{"device_id": "dev-0", "next_sequence": 3}',
                "pending/00000000000000000002.json": '{"record_id": "0x00"}',
            },
            "corrupt",
        ),
    ],
    ids=["foreign", "corrupt-dead-letter", "corrupt-pending"],
)
def test_an_unusable_queue_is_exit_6_without_a_traceback(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    queue = tmp_path / "queue"
    for name, text in files.items():
        (queue / name).parent.mkdir(parents=True, exist_ok=True)
        (queue / name).write_text(text)
    code, out, _ = run("--json", "queue", "show", "--device", "dev-0", "--queue", str(queue))
    assert code == ExitCode.QUEUE
    assert message in json.loads(out)["detail"]
