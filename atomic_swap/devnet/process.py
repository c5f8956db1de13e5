"""Run ``qswap devnet`` as a child process (tests, benchmarks, demos) and stop it reliably."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx
from algosdk.v2client.algod import AlgodClient

from atomic_swap.devnet.chain import DISPENSER_FILE

__all__ = ["DevnetProcess", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevnetProcess:
    """A devnet child process; ``start()`` waits until it answers, ``stop()`` always reaps it."""

    def __init__(
        self, data_dir: Path, network_name: str, *, port: int | None = None, verbose: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.network_name = network_name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._verbose = verbose
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def token(self) -> str:
        return (self.data_dir / "algod.token").read_text().strip()

    @property
    def dispenser_file(self) -> Path:
        return self.data_dir / DISPENSER_FILE

    @property
    def client(self) -> AlgodClient:
        return AlgodClient(self.token, self.url)

    def start(self, timeout: float = 30.0) -> DevnetProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "atomic_swap", "devnet", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--network-name", self.network_name],
            stdout=subprocess.DEVNULL,
            stderr=None if self._verbose else subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"devnet exited with {self._proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("devnet did not become ready")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> DevnetProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
