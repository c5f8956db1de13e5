"""``qkd-notary`` as an operator and an auditor use it: real processes, anvil, real KMEs.

The operator initialises a data directory on anvil, serves, registers a device and manages
its trust; the device sends through the SDK; the auditor verifies receipts against the
node only, and a tampered receipt is refused with exit code 1 and a one-line reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from notary.cli import main
from qkd_channel.hybrid import KEMPublicKey
from qkd_device import DeliveryRejected, DeviceClient, RetryPolicy
from qkd_device.records import build_document
from tests.conftest import AnvilFactory, AnvilNode
from tests.notary.sdk_stack import (
    FIRMWARE,
    NotaryProcess,
    Stack,
    make_pki,
    run_cli,
    start_stack,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("cli-pki"))


@pytest.fixture(scope="module")
def served(
    pki: Path, tmp_path_factory: pytest.TempPathFactory, anvil_factory: AnvilFactory
) -> Iterator[tuple[Stack, NotaryProcess, AnvilNode]]:
    """One initialised notary on anvil, shared by the module's tests (distinct devices)."""
    stack = start_stack(tmp_path_factory.mktemp("cli-stack"), pki)
    node = anvil_factory()
    data_dir = str(stack.settings.data_dir)
    code, out = run_cli(
        "init",
        "--data-dir",
        data_dir,
        "--chain-rpc-url",
        node.url,
        "--fund-from-node-account",
        "10",
        password=PASSWORD,
    )
    assert code == 0, out
    notary = NotaryProcess(stack, password=PASSWORD, extra=("--chain-rpc-url", node.url))
    try:
        notary.start()
        yield stack, notary, node
    finally:
        notary.stop()
        stack.close()
        node.stop()


def cli(stack: Stack, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, [*args, "--notary", stack.notary_url, "--data-dir", str(stack.settings.data_dir)]
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_operator_and_auditor_flow(
    served: tuple[Stack, NotaryProcess, AnvilNode], tmp_path: Path
) -> None:
    stack, _, node = served
    code, out = cli(stack, "device", "register", "dev-0", "--sae", "sae-0", "--owner", "plant-7")
    assert code == 0 and "dev-0" in out
    code, out = cli(stack, "device", "list", "--json")
    assert code == 0 and [d["device_id"] for d in json.loads(out)] == ["dev-0"]

    with DeviceClient(
        "dev-0",
        kme=stack.device_kme("sae-0"),
        notary=stack.notary_url,
        firmware_digest=FIRMWARE,
        queue_dir=tmp_path / "q",
    ) as dev:
        ack = dev.send({"temp_c": 22.25})
        anchored = dev.wait_anchored(ack, timeout=60, poll_s=0.2)
    assert anchored.anchor is not None and anchored.anchor["chain_id"] == node.chain_id
    assert anchored.payload_hash == ack.payload_hash  # the device computed it itself

    payload = tmp_path / "payload.json"
    payload.write_bytes(dev.document({"temp_c": 22.25}))
    # The auditor gets a token from the operator, which unlocks the salt and the reading.
    token = tmp_path / "auditor.token"
    code, out = cli(
        stack, "token", "issue", "--role", "auditor", "--label", "auditor", "--out", str(token)
    )
    assert code == 0 and token.stat().st_mode & 0o777 == 0o600, out
    code, out = run_cli(
        "receipt",
        "verify",
        ack.record_id,
        "--notary",
        stack.notary_url,
        "--token-file",
        str(token),
        "--rpc-url",
        node.url,
        "--payload-file",
        str(payload),
    )
    assert code == 0, out
    assert "receipt valid" in out and "payload" in out
    code, out = run_cli(
        "receipt",
        "verify",
        ack.record_id,
        "--notary",
        stack.notary_url,
        "--rpc-url",
        node.url,
        "--json",
    )
    report = json.loads(out)
    assert code == 0 and report["result"] == "valid" and report["verified"] is True
    assert {f["field"]: f["outcome"] for f in report["fields"]}["device_trusted"] == (
        "verified on-chain"
    )

    forged = dict(anchored.document)
    forged["sequence"] += 1  # claims another message than the one anchored
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(json.dumps(forged))
    code, out = run_cli(
        "receipt", "verify", ack.record_id, "--file", str(forged_file), "--rpc-url", node.url
    )
    assert code == 1 and "FORGED" in out and "Traceback" not in out

    payload.write_bytes(build_document(FIRMWARE, {"temp_c": 99.0}))
    code, out = run_cli(
        "receipt",
        "verify",
        ack.record_id,
        "--notary",
        stack.notary_url,
        "--token-file",
        str(token),
        "--rpc-url",
        node.url,
        "--payload-file",
        str(payload),
    )
    assert code == 1 and "payload-hash" in out

    new_digest = "1" * 64
    code, out = cli(stack, "device", "approve", "dev-0", new_digest, "--json")
    assert code == 0 and json.loads(out)["approved_firmware_digest"] == new_digest
    code, out = cli(stack, "device", "deactivate", "dev-0", "--json")
    assert code == 0 and json.loads(out)["active"] is False
    with (
        DeviceClient(
            "dev-0",
            kme=stack.device_kme("sae-0"),
            notary=stack.notary_url,
            firmware_digest=FIRMWARE,
            queue_dir=tmp_path / "q",
            retry=RetryPolicy(deadline_s=2),
        ) as dev,
        pytest.raises(DeliveryRejected) as info,
    ):
        dev.send({"temp_c": 1.0})
    assert info.value.status == 401
    code, out = cli(stack, "device", "show", "dev-0")
    assert code == 0 and "first-digest" in out and "deactivated" in out


def test_init_makes_an_ml_kem_key_that_serve_opens_hybrid_envelopes_with(
    served: tuple[Stack, NotaryProcess, AnvilNode], tmp_path: Path
) -> None:
    stack, _, node = served
    settings = stack.settings
    assert oct(settings.kem_key_path.stat().st_mode & 0o777) == "0o600"
    code, out = run_cli("kem-key", "show", "--data-dir", str(settings.data_dir))
    assert code == 0, out
    fingerprint = out.split()[1]
    code, pem = run_cli("kem-key", "show", "--pem", "--data-dir", str(settings.data_dir))
    pinned = KEMPublicKey.from_pem(pem.encode())
    assert pinned.fingerprint == fingerprint  # what the operator compares out of band
    assert pinned == KEMPublicKey.load(settings.kem_public_key_path)
    code, out = cli(stack, "device", "register", "dev-3", "--sae", "sae-3")
    assert code == 0, out
    with DeviceClient(
        "dev-3",
        kme=stack.device_kme("sae-3"),
        notary=stack.notary_url,
        firmware_digest=FIRMWARE,
        queue_dir=tmp_path / "q",
        mode="hybrid",
        notary_kem_key=pinned,
    ) as dev:
        ack = dev.send({"kwh": 3.5})
    assert ack.mode.value == "hybrid"
    # init again: the key is kept (devices pinned it), never silently replaced.
    code, out = run_cli(
        "init", "--data-dir", str(settings.data_dir), "--chain-rpc-url", node.url,
        password=PASSWORD,
    )  # fmt: skip
    assert "existing" in out and KEMPublicKey.load(settings.kem_public_key_path) == pinned


def test_user_errors_are_one_line_and_non_zero(
    served: tuple[Stack, NotaryProcess, AnvilNode], tmp_path: Path
) -> None:
    stack, _, _ = served
    code, out = cli(stack, "device", "approve", "dev-x", "not-a-digest")
    assert code == 1 and "422" in out
    code, out = cli(stack, "device", "show", "nobody")
    assert code == 1 and "404" in out
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["device", "list", "--notary", stack.notary_url, "--data-dir", str(tmp_path / "none")],
    )
    assert result.exit_code == 1 and "no admin token" in result.output
    result = runner.invoke(
        main,
        [
            "device",
            "register",
            "d",
            "--sae",
            "s",
            "--notary",
            stack.notary_url,
            "--token-file",
            str(_write(tmp_path / "bad.token", "wrong")),
        ],
    )
    assert result.exit_code == 1 and "401" in result.output
    result = runner.invoke(main, ["device", "list", "--notary", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    result = runner.invoke(
        main,
        ["receipt", "verify", "0x" + "00" * 32, "--notary", stack.notary_url, "--rpc-url", "x"],
    )
    assert result.exit_code == 2 and "no record" in result.output
    for outcome in (result,):
        assert "Traceback" not in outcome.output


def test_serve_refuses_incomplete_configuration_without_traceback(tmp_path: Path) -> None:
    code, out = run_cli("serve", "--data-dir", str(tmp_path / "d"), password="x")
    assert code == 1 and "kme_url" in out and "Traceback" not in out
    code, out = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--port", "99999")
    assert code != 0 and "Traceback" not in out
    code, out = run_cli(
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--kme-url",
        "https://127.0.0.1:1",
        "--kme-cert",
        "c",
        "--kme-key",
        "k",
        "--kme-ca",
        "a",
        password="x",
    )
    assert code == 1 and "Traceback" not in out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
