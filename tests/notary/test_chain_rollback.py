"""The chain goes backwards, is reset, or is down at start: real `qkd-notary serve`
processes, real KMEs, anvil killed with SIGKILL and restarted from an older state dump or
empty. Nothing the notary calls "anchored" may stay lost, and nothing may be called
anchored that is not."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from notary.receipts import verify_receipt
from qkd_device import DeviceClient
from tests.conftest import AnvilFactory, AnvilNode
from tests.notary.sdk_stack import (
    FIRMWARE,
    NotaryProcess,
    Stack,
    init_on_node,
    make_pki,
    run_cli,
    running_stack,
)

PASSWORD = "rollback"
DEVICES = 2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("rollback-pki"), devices=DEVICES)


@pytest.fixture
def stack(pki: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, pki, blocks=16) as s:
        yield s


def serve(stack: Stack, node: AnvilNode, mode: str = "merkle") -> NotaryProcess:
    extra = (
        "--chain-rpc-url",
        node.url,
        "--anchor-mode",
        mode,
        "--batch-size",
        "4",
        "--reconcile-interval-s",
        "0.5",
    )
    notary = NotaryProcess(stack, password=PASSWORD, extra=extra)
    notary.start()
    return notary


def send(stack: Stack, root: Path, per_device: int) -> list[str]:
    """Readings from each device through the SDK; the record IDs the notary accepted."""
    ids = []
    for i in range(DEVICES):
        with DeviceClient(
            f"dev-{i}",
            kme=stack.device_kme(f"sae-{i}"),
            notary=stack.notary_url,
            firmware_digest=FIRMWARE,
            queue_dir=root / f"queue-{i}",
        ) as device:
            ids += [device.send({"n": n}).record_id for n in range(per_device)]
    return ids


def receipts(stack: Stack, record_ids: list[str]) -> list[dict[str, object]]:
    with httpx.Client(base_url=stack.notary_url, timeout=10) as http:
        return [http.get(f"/v1/records/{rid}").json() for rid in record_ids]


def wait_until(condition: object, timeout_s: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s}s"
        time.sleep(0.2)
    return time.monotonic() - started


def all_anchored(stack: Stack, record_ids: list[str]) -> bool:
    return all(r["status"] == "anchored" for r in receipts(stack, record_ids))


def verify_all(stack: Stack, node: AnvilNode, record_ids: list[str]) -> None:
    auditor = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 10}))
    for receipt in receipts(stack, record_ids):
        assert verify_receipt(receipt, auditor).verified


def readiness(stack: Stack) -> tuple[int, dict[str, object]]:
    answer = httpx.get(f"{stack.notary_url}/readyz", timeout=10)
    return answer.status_code, answer.json()["checks"]["chain"]


def metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"{stack.notary_url}/metrics", timeout=10).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return 0.0 if found is None else float(found.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["merkle", "batch"])
def test_a_rollback_to_an_older_dump_is_anchored_again_without_a_restart(
    stack: Stack, tmp_path: Path, anvil_factory: AnvilFactory, mode: str
) -> None:
    node = anvil_factory(state_file=tmp_path / "anvil.json")
    init_on_node(stack, node.url, PASSWORD)
    notary = serve(stack, node, mode)
    try:
        for i in range(DEVICES):
            stack.register(f"dev-{i}", f"sae-{i}")
        early = send(stack, tmp_path, 3)
        wait_until(lambda: all_anchored(stack, early), 60, "first anchoring")
        node.stop()  # graceful: the dump holds everything so far
        older = tmp_path / "older.json"
        shutil.copy(tmp_path / "anvil.json", older)
        node.start()
        late = send(stack, tmp_path, 3)
        wait_until(lambda: all_anchored(stack, late), 60, "second anchoring")
        lost_before = metric(stack, "notary_records_lost_by_chain_total")
        # Crash, and come back from the older dump: the late batches' blocks are gone.
        node.kill()
        node.state_file = older
        node.start()
        took = wait_until(
            lambda: metric(stack, "notary_records_lost_by_chain_total") > lost_before,
            30,
            "the notary noticing the rollback",
        )
        took += wait_until(lambda: all_anchored(stack, early + late), 60, "re-anchoring")
        assert took < 60
        verify_all(stack, node, early + late)
        assert metric(stack, "notary_records_reanchored_total") >= len(late)
        log = notary.log.read_text()
        assert "the chain lost anchored batches" in log
        print(f"rollback ({mode}): lost batches re-anchored and verified {took:.1f} s after")
    finally:
        notary.stop()


@pytest.mark.slow
@pytest.mark.parametrize("notary_state", ["running", "stopped"])
def test_a_reset_chain_turns_readyz_red_until_redeploy_re_anchors_everything(
    stack: Stack, tmp_path: Path, anvil_factory: AnvilFactory, notary_state: str
) -> None:
    node = anvil_factory()
    init_on_node(stack, node.url, PASSWORD)
    notary = serve(stack, node)
    try:
        for i in range(DEVICES):
            stack.register(f"dev-{i}", f"sae-{i}")
        before = send(stack, tmp_path, 2)
        wait_until(lambda: all_anchored(stack, before), 60, "first anchoring")
        assert readiness(stack)[0] == 200
        node.kill()
        node.state_file = None
        node.start()  # same port, an empty chain with another genesis
        took = wait_until(lambda: readiness(stack)[0] == 503, 20, "readyz turning red")
        _, chain = readiness(stack)
        assert "chain reset" in str(chain["detail"]) and chain["required"] is True
        during = send(stack, tmp_path, 1)  # intake goes on
        time.sleep(1.5)
        assert not any(r["status"] == "anchored" for r in receipts(stack, during))
        log = notary.log.read_text()
        assert log.count("chain reset: anchoring stopped") == 1  # one clear line
        # The operator funds the notary's account on the new chain and redeploys.
        signer = json.loads((stack.settings.data_dir / "keystore.json").read_text())["address"]
        node.rpc("anvil_setBalance", ["0x" + signer.removeprefix("0x"), hex(10**21)])
        if notary_state == "stopped":
            notary.stop()
        code, out = run_cli(
            "chain",
            "redeploy",
            "--re-anchor",
            "--data-dir",
            str(stack.settings.data_dir),
            "--chain-rpc-url",
            node.url,
            "--notary",
            stack.notary_url,
            password=PASSWORD,
        )
        assert code == 0 and "redeployed" in out, out
        assert ("by the notary" in out) == (notary_state == "running")
        if notary_state == "stopped":
            notary.start()
        wait_until(lambda: all_anchored(stack, before + during), 60, "re-anchoring")
        verify_all(stack, node, before + during)
        assert readiness(stack)[0] == 200
        print(f"reset noticed by /readyz {took:.1f} s after the chain came back empty")
    finally:
        notary.stop()


@pytest.mark.slow
def test_the_notary_starts_with_its_chain_node_down_and_anchors_once_it_is_up(
    stack: Stack, tmp_path: Path, anvil_factory: AnvilFactory
) -> None:
    node = anvil_factory(state_file=tmp_path / "anvil.json")
    init_on_node(stack, node.url, PASSWORD)
    node.stop()
    notary = serve(stack, node)
    try:
        status, chain = readiness(stack)
        assert status == 200 and chain["ok"] is False and chain["required"] is False
        assert "degraded" in str(chain["detail"]) or "connecting" in str(chain["detail"])
        for i in range(DEVICES):
            stack.register(f"dev-{i}", f"sae-{i}")
        accepted = send(stack, tmp_path, 2)
        assert all(r["status"] == "accepted" for r in receipts(stack, accepted))
        explorer = httpx.get(f"{stack.notary_url}/explorer/", timeout=10)
        assert explorer.status_code == 200
        node.start()
        wait_until(lambda: all_anchored(stack, accepted), 90, "anchoring after the outage")
        verify_all(stack, node, accepted)
        assert readiness(stack)[1]["ok"] is True
    finally:
        notary.stop()
