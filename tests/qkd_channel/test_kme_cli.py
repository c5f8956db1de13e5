"""`qkd-kme certs`, `serve` and `status` as a user runs them: two KME processes, mutual TLS."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qkd_channel.errors import KMEUnavailable
from qkd_channel.kme.certs import sae_paths
from qkd_channel.kme.client import KMEClient
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.server import bind_socket
from qkd_channel.kme.store import KeyStore

BIN = Path(sys.executable).parent
QKD_KME = str(BIN / "qkd-kme")


def _free_port() -> int:
    with bind_socket() as sock:
        return int(sock.getsockname()[1])


class KMEProcess:
    def __init__(self, tmp: Path, pki: Path, name: str, end: str, port: int, peer: tuple[str, int]):
        self.name, self.end, self.port = name, end, port
        self.data_dir = tmp / name
        self.log = tmp / f"{name}.log"
        self.argv = [
            QKD_KME, "serve",
            "--data-dir", str(self.data_dir),
            "--kme-id", name,
            "--end", end,
            "--peer-id", peer[0],
            "--peer", f"https://127.0.0.1:{peer[1]}",
            "--listen", f"127.0.0.1:{port}",
            "--pki", str(pki),
            "--log-level", "debug",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def store(self) -> KeyStore:
        return KeyStore(self.data_dir, kme_id=self.name, end=LinkEnd(self.end))


def _client(pki: Path, port: int, sae: str) -> KMEClient:
    cert, key = sae_paths(pki, sae)
    return KMEClient(f"https://127.0.0.1:{port}", cert=cert, key=key, ca=pki / "ca.crt", timeout=5)


def _wait_ready(pki: Path, kme: KMEProcess, sae: str) -> None:
    deadline = time.monotonic() + 60
    with _client(pki, kme.port, sae) as client:
        while True:
            try:
                client.status("x")
                return
            except KMEUnavailable:
                assert kme.process is not None and kme.process.poll() is None, kme.log.read_text()
                assert time.monotonic() < deadline, "KME did not come up"
                time.sleep(0.1)


@pytest.fixture
def cli_pair(tmp_path: Path) -> Iterator[tuple[Path, KMEProcess, KMEProcess]]:
    pki = tmp_path / "pki"
    result = subprocess.run(
        [QKD_KME, "certs", "--out", str(pki), "--kme", "kme-a", "--kme", "kme-b",
         "--sae", "device-1", "--sae", "notary"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert str(pki / "sae-notary.key") in result.stdout.split()
    port_a, port_b = _free_port(), _free_port()
    a = KMEProcess(tmp_path, pki, "kme-a", "A", port_a, ("kme-b", port_b))
    b = KMEProcess(tmp_path, pki, "kme-b", "B", port_b, ("kme-a", port_a))
    try:
        a.start()
        b.start()
        _wait_ready(pki, a, "device-1")
        _wait_ready(pki, b, "notary")
        yield pki, a, b
    finally:
        a.stop()
        b.stop()


def test_two_kme_processes_agree_on_keys_across_a_restart(
    cli_pair: tuple[Path, KMEProcess, KMEProcess],
) -> None:
    pki, a, b = cli_pair
    material = bytes(range(256)) * 4
    for kme in (a, b):
        with kme.store() as store:
            store.add_block("round-0", material)

    status = subprocess.run(
        [QKD_KME, "status", "notary", "--url", f"https://127.0.0.1:{a.port}",
         "--cert", str(sae_paths(pki, "device-1")[0]), "--key", str(sae_paths(pki, "device-1")[1]),
         "--ca", str(pki / "ca.crt")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stored_key_count"] == 512 * 8 // 256

    with _client(pki, a.port, "device-1") as device:
        keys = device.enc_keys("notary", number=2)
    assert keys[0].material == material[:32]

    b.stop()  # the slave's KME goes down with the keys in its buffer ...
    b.start()
    _wait_ready(pki, b, "notary")
    with _client(pki, b.port, "notary") as notary:
        assert notary.dec_keys("device-1", [k.key_id for k in keys]) == keys  # ... and keeps them
    a.stop()
    b.stop()

    logs = a.log.read_text() + b.log.read_text()
    assert keys[0].key_id in logs and "enc_keys" in logs
    for key in keys:
        assert key.material.hex() not in logs
        assert base64.b64encode(key.material).decode() not in logs


def test_status_command_reports_errors_cleanly(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    subprocess.run(
        [QKD_KME, "certs", "--out", str(pki), "--sae", "device-1"], check=True, timeout=60,
        capture_output=True,
    )  # fmt: skip
    cert, key = sae_paths(pki, "device-1")
    result = subprocess.run(
        [QKD_KME, "status", "notary", "--url", f"https://127.0.0.1:{_free_port()}",
         "--cert", str(cert), "--key", str(key), "--ca", str(pki / "ca.crt")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "KME unreachable" in result.stderr
    assert "Traceback" not in result.stderr
