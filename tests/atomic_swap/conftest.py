# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Fixtures that run real ``qswap devnet`` processes (and stop them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from algosdk import mnemonic
from algosdk.v2client.algod import AlgodClient

QSWAP = [sys.executable, "-m", "atomic_swap"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Devnet:
    url: str
    token: str
    data_dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def client(self) -> AlgodClient:
        return AlgodClient(self.token, self.url)

    @property
    def dispenser_key(self) -> str:
        return str(mnemonic.to_private_key((self.data_dir / "dispenser.mnemonic").read_text()))

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Algo-API-Token": self.token}

    @property
    def offset(self) -> int:
        r = httpx.get(f"{self.url}/v2/devmode/blocks/offset", headers=self.headers)
        r.raise_for_status()
        return int(r.json()["offset"])

    def set_offset(self, seconds: int) -> None:
        r = httpx.post(
            f"{self.url}/v2/devmode/blocks/offset/{seconds}",
            headers=self.headers,
        )
        r.raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_devnet(data_dir: Path, name: str) -> Devnet:
    port = free_port()
    proc = subprocess.Popen(
        [*QSWAP, "devnet", "--port", str(port), "--data-dir", str(data_dir),
         "--network-name", name],
        stdout=subprocess.DEVNULL,
        stderr=None if os.environ.get("QSWAP_TEST_DEBUG") else subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"devnet exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                token = (data_dir / "algod.token").read_text().strip()
                return Devnet(url, token, data_dir, proc)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("devnet did not become ready")


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = start_devnet(tmp_path_factory.mktemp("devnet"), "unit")
    try:
        yield net
    finally:
        net.stop()


__all__ = ["QSWAP", "Devnet", "free_port", "start_devnet"]
