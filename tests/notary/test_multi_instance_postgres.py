"""Two real ``qkd-notary serve`` processes sharing one PostgreSQL, one anvil chain, one
signing key and one KME link.

Devices seal with keys from their KME and send to both instances at once; some envelopes
are raced to both instances simultaneously; midway, the instance leading anchoring is
killed with SIGKILL and the devices fail over to the other. Afterwards: every record
answered 202 is anchored exactly once on-chain (one ``RecordStored`` event each, and
receipts verified against the node), nothing in the shared outbox is left behind or put on
the chain twice, each raced envelope got exactly one 202, the survivor took the lead
within seconds, and the database password appears in neither instance's log.

The figures of the run (counts, timings) are written to ``multi-instance-figures.json``
in the test's directory and printed (``pytest -s``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from web3 import Web3

from notary.receipts import verify_receipt
from qkd_channel.envelope import Mode, keys_needed, seal
from qkd_channel.kme.config import KeyLimits
from tests.conftest import AnvilFactory
from tests.notary.postgres_server import PostgresServer
from tests.notary.sdk_stack import (
    FIRMWARE,
    NotaryProcess,
    Stack,
    free_port,
    init_on_node,
    make_pki,
    record_stored_counts,
    running_stack,
)

PASSWORD = "multi-instance"
DEVICES = 8
MESSAGES = 24  # per device; every fourth one is raced to both instances
RACE_EVERY = 4


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("multi-pki"), devices=DEVICES)


@pytest.fixture
def stack(pki: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, pki, limits=KeyLimits(buffer_bits=4_000_000), blocks=32) as s:
        yield s


@dataclass
class Fleet:
    """Devices sending sealed envelopes to two instances, failing over when one dies."""

    stack: Stack
    urls: list[str]
    alive: list[bool] = field(default_factory=lambda: [True, True])
    acked: dict[str, bytes] = field(default_factory=dict)  # record ID -> plaintext
    races: list[tuple[int, ...]] = field(default_factory=list)  # statuses of raced sends
    refusals: Counter[str] = field(default_factory=Counter)
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, http: httpx.Client, target: int, envelope: bytes) -> httpx.Response | None:
        try:
            return http.post(
                f"{self.urls[target]}/v1/telemetry",
                content=envelope,
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError:
            with self.lock:
                self.alive[target] = False
                self.transport_errors += 1
            return None

    def run_device(self, index: int) -> None:
        kme = self.stack.device_kme(f"sae-{index}")
        sequence = 0
        with httpx.Client(timeout=15) as http, ThreadPoolExecutor(2) as both:
            for n in range(MESSAGES):
                body = {"firmware_digest": FIRMWARE, "telemetry": {"device": index, "n": n}}
                plaintext = json.dumps(body).encode()
                keys = kme.enc_keys(
                    "notary", number=1, size=8 * keys_needed(Mode.OTP, len(plaintext))
                )
                sequence += 1
                envelope = (
                    seal(
                        plaintext,
                        sender=f"dev-{index}",
                        recipient="notary",
                        sequence=sequence,
                        mode=Mode.OTP,
                        keys=keys,
                    )
                    .to_json()
                    .encode()
                )
                if n % RACE_EVERY == RACE_EVERY - 1 and all(self.alive):
                    racing = [both.submit(self.send, http, t, envelope) for t in (0, 1)]
                    answers = [r.result() for r in racing]
                else:
                    live = [t for t in (n % 2, 1 - n % 2) if self.alive[t]]
                    answers = [self.send(http, live[0], envelope)]
                self._note(answers, plaintext, raced=len(answers) == 2)

    def _note(self, answers: list[httpx.Response | None], plaintext: bytes, raced: bool) -> None:
        with self.lock:
            for answer in answers:
                if answer is None:
                    continue
                if answer.status_code == 202:
                    self.acked[answer.json()["record_id"]] = plaintext
                else:
                    self.refusals[f"{answer.status_code} {answer.json()['reason']}"] += 1
            if raced and all(a is not None for a in answers):
                self.races.append(tuple(sorted(a.status_code for a in answers if a is not None)))


def lead_pid(admin: psycopg.Connection[Any]) -> int | None:
    """PID of the notary process whose session holds the anchoring lead (from its
    ``application_name``, ``qkd-notary <host>:<pid>``)."""
    row = admin.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted"
    ).fetchone()
    return None if row is None else int(str(row[0]).rsplit(":", 1)[1])


def wait_for(condition: object, timeout_s: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < timeout_s, f"{what}: not reached in {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.slow
def test_two_instances_share_postgres_and_survive_the_leader_dying(
    stack: Stack,
    tmp_path: Path,
    postgres_server: PostgresServer,
    anvil_factory: AnvilFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    phases: dict[str, float] = {}
    mark = time.monotonic()
    node = anvil_factory()
    init_on_node(stack, node.url, PASSWORD)
    phases["init_s"] = time.monotonic() - mark
    # The second instance: its own data directory with the same signer and contracts.
    dir_b = tmp_path / "notary-b"
    dir_b.mkdir(mode=0o700)
    for name in ("keystore.json", "chain.json", "admin.token"):
        (dir_b / name).write_bytes((stack.settings.data_dir / name).read_bytes())
    (tmp_path / "b").mkdir()
    stack_b = dataclasses.replace(
        stack,
        root=tmp_path / "b",
        settings=stack.settings.model_copy(update={"data_dir": dir_b}),
        port=free_port(),
    )
    extra = ("--chain-rpc-url", node.url, "--anchor-mode", "batch", "--batch-size", "8")
    with postgres_server.database() as url:
        # From the environment, not a flag: a password must not show up in `ps`.
        monkeypatch.setenv("QKD_NOTARY_DATABASE_URL", url)
        notaries = [
            NotaryProcess(stack, password=PASSWORD, extra=extra),
            NotaryProcess(stack_b, password=PASSWORD, extra=extra),
        ]
        admin = psycopg.connect(postgres_server.admin_url(url.rsplit("/", 1)[1]), autocommit=True)
        try:
            mark = time.monotonic()
            with ThreadPoolExecutor(2) as starting:
                list(starting.map(lambda p: p.start(), notaries))
            phases["start_both_s"] = time.monotonic() - mark
            for i in range(DEVICES):
                stack.register(f"dev-{i}", f"sae-{i}")
            fleet = Fleet(stack, [stack.notary_url, stack_b.notary_url])
            figures = run_and_kill_leader(fleet, notaries, admin)
            survivor = next(p for p in notaries if p.process and p.process.poll() is None)
            started = time.monotonic()
            wait_all_anchored(survivor.stack.notary_url, set(fleet.acked), timeout_s=90)
            figures["last_ack_to_all_anchored_s"] = round(time.monotonic() - started, 2)
            stored = {
                str(r[0]): int(r[1])
                for r in admin.execute("SELECT record_id, batch_id FROM records").fetchall()
            }
            pending = admin.execute(
                "SELECT count(*) FROM records WHERE status <> 'anchored'"
            ).fetchone()
            batches = admin.execute("SELECT count(*) FROM batches").fetchone()
            mark = time.monotonic()
            check_receipts(survivor.stack.notary_url, node.url, fleet.acked)
            phases["receipts_s"] = time.monotonic() - mark
        finally:
            admin.close()
            for notary in notaries:
                notary.stop()
    # No record answered 202 is lost; none is on the chain twice; nothing else is there.
    counts = record_stored_counts(node.url, stack.settings.data_dir)
    assert set(fleet.acked) <= set(stored) == set(counts)
    assert set(counts.values()) == {1}
    assert pending == (0,)
    # Each envelope raced to both instances was accepted exactly once.
    assert fleet.races and all(r[0] == 202 and r[1] in (401, 409) for r in fleet.races)
    # Every envelope got its 202 unless the instance it went to was killed under it.
    assert len(fleet.acked) >= DEVICES * MESSAGES - fleet.transport_errors
    for notary in notaries:
        assert postgres_server.app_password not in notary.log.read_text()
    figures.update(
        {k: round(v, 2) for k, v in phases.items()},
        records_stored=len(stored),
        records_acked_202=len(fleet.acked),
        batches=batches[0] if batches else None,
        raced_envelopes=len(fleet.races),
        race_outcomes=dict(Counter(f"{a}+{b}" for a, b in fleet.races)),
        refusals=dict(fleet.refusals),
        transport_errors_at_kill=fleet.transport_errors,
    )
    (tmp_path / "multi-instance-figures.json").write_text(json.dumps(figures, indent=2))
    print("multi-instance figures:", json.dumps(figures))


def run_and_kill_leader(
    fleet: Fleet,
    notaries: list[NotaryProcess],
    admin: psycopg.Connection[Any],
) -> dict[str, object]:
    """Run the fleet; once half the messages are acknowledged, SIGKILL the leader."""
    started = time.monotonic()
    pids = {p.process.pid: p for p in notaries if p.process is not None}
    wait_for(lambda: lead_pid(admin) in pids, 30, "an instance takes the anchoring lead")
    with ThreadPoolExecutor(DEVICES) as devices:
        running = [devices.submit(fleet.run_device, i) for i in range(DEVICES)]
        wait_for(lambda: len(fleet.acked) >= DEVICES * MESSAGES // 2, 120, "half acknowledged")
        leader_pid = lead_pid(admin)
        assert leader_pid in pids
        anchored_before = admin.execute(
            "SELECT count(*) FROM records WHERE status = 'anchored'"
        ).fetchone()
        acked_at_kill = len(fleet.acked)
        os.kill(leader_pid, 9)
        killed = time.monotonic()
        pids[leader_pid].process.wait(10)  # type: ignore[union-attr]
        survivor_pid = next(pid for pid in pids if pid != leader_pid)
        wait_for(lambda: lead_pid(admin) == survivor_pid, 30, "the survivor leads")
        takeover_s = time.monotonic() - killed
        for future in running:
            future.result()
    return {
        "devices": DEVICES,
        "messages_per_device": MESSAGES,
        "acked_at_kill": acked_at_kill,
        "anchored_at_kill": anchored_before[0] if anchored_before else None,
        "kill_to_survivor_lead_s": round(takeover_s, 2),
        "intake_wall_s": round(time.monotonic() - started, 2),
        "intake_per_s": round(len(fleet.acked) / (time.monotonic() - started), 1),
    }


def wait_all_anchored(url: str, record_ids: set[str], timeout_s: float) -> None:
    pending = set(record_ids)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=10) as http:
        while pending and time.monotonic() < deadline:
            for record_id in list(pending):
                if http.get(f"/v1/records/{record_id}").json()["status"] == "anchored":
                    pending.discard(record_id)
            time.sleep(0.2)
    assert not pending, f"{len(pending)} acknowledged record(s) never anchored"


def check_receipts(notary_url: str, rpc_url: str, acked: dict[str, bytes]) -> None:
    """Receipts of a sample of records, verified on the node with their payloads."""
    auditor = Web3(Web3.HTTPProvider(rpc_url))
    with httpx.Client(base_url=notary_url, timeout=10) as http:
        for record_id in sorted(acked)[:: max(1, len(acked) // 12)]:
            receipt = http.get(f"/v1/records/{record_id}").json()
            verify_receipt(receipt, auditor, payload=acked[record_id])
