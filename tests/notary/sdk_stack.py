"""A real single-machine stack for SDK, CLI and reliability tests.

Two KMEs of one link (uvicorn, mutual TLS, real key buffers) filled with the same random
blocks as a QKD producer would, a notary serving HTTP from a thread on a free port with
its own KME-backed key source, and helpers to register devices through the admin API.
Nothing on the path from device to notary is simulated.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from notary.api import create_app
from notary.chain.artifacts import load_artifact
from notary.chain.deployment import load_deployment
from notary.config import NotarySettings, load_or_create_admin_token
from qkd_channel.kme.certs import issue_link_pki, sae_paths
from qkd_channel.kme.client import AsyncKMEClient, KMEClient
from qkd_channel.kme.config import KeyLimits
from tests.qkd_channel.conftest import KMEPair, start_pair

NOTARY_SAE = "notary"
FIRMWARE = "f" * 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_pki(directory: Path, devices: int = 4) -> Path:
    saes = [NOTARY_SAE, *(f"sae-{i}" for i in range(devices))]
    issue_link_pki(directory, kme_ids=["kme-a", "kme-b"], sae_ids=saes)
    return directory


class NotaryThread:
    """The notary's FastAPI app under uvicorn in a background thread (own event loop)."""

    def __init__(
        self, settings: NotarySettings, port: int, tls: dict[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.port = port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(settings=settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            **(tls or {}),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("notary failed to start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(20)


@dataclass
class Stack:
    """KME A (devices' side), KME B (the notary's side) and a notary configuration."""

    root: Path
    pki: Path
    kmes: KMEPair
    settings: NotarySettings
    port: int = field(default_factory=free_port)
    notary: NotaryThread | None = None
    _clients: list[KMEClient | AsyncKMEClient] = field(default_factory=list)

    @property
    def notary_url(self) -> str:
        return self.notary.url if self.notary is not None else f"http://127.0.0.1:{self.port}"

    def start_notary(self, *, tls: dict[str, Any] | None = None) -> NotaryThread:
        """Serve the notary in a thread; ``tls``: uvicorn's ``ssl_*`` options for HTTPS."""
        self.notary = NotaryThread(self.settings, self.port, tls)
        self.notary.start()
        return self.notary

    def stop_notary(self) -> None:
        if self.notary is not None:
            self.notary.stop()
            self.notary = None

    def admin_headers(self) -> dict[str, str]:
        token = load_or_create_admin_token(self.settings.data_dir)
        return {"Authorization": f"Bearer {token}"}

    def register(self, device_id: str, sae_id: str) -> None:
        response = httpx.post(
            f"{self.notary_url}/v1/admin/devices",
            json={"device_id": device_id, "sae_id": sae_id},
            headers=self.admin_headers(),
        )
        response.raise_for_status()

    def device_kme(self, sae_id: str) -> KMEClient:
        cert, key = sae_paths(self.pki, sae_id)
        kme = KMEClient(self.kmes.urls["a"], cert=cert, key=key, ca=self.pki / "ca.crt")
        self._clients.append(kme)
        return kme

    def async_device_kme(self, sae_id: str) -> AsyncKMEClient:
        cert, key = sae_paths(self.pki, sae_id)
        kme = AsyncKMEClient(self.kmes.urls["a"], cert=cert, key=key, ca=self.pki / "ca.crt")
        self._clients.append(kme)
        return kme

    def close(self) -> None:
        self.stop_notary()
        # Idle keep-alive connections would hold each KME's graceful shutdown for seconds.
        for kme in self._clients:
            if isinstance(kme, KMEClient):
                kme.close()
        self._clients.clear()
        for name in list(self.kmes.servers):
            self.kmes.stop(name)


def start_stack(
    root: Path,
    pki: Path,
    *,
    limits: KeyLimits | None = None,
    blocks: int = 8,
    block_bytes: int = 4096,
) -> Stack:
    """Start both KMEs with ``blocks`` shared random blocks; the notary is not started."""
    kmes = start_pair(pki, root, limits=limits or KeyLimits(buffer_bits=400_000))
    kmes.feed(blocks=blocks, nbytes=block_bytes)
    cert, key = sae_paths(pki, NOTARY_SAE)
    settings = NotarySettings(
        data_dir=root / "notary",
        notary_id="notary",
        kme_url=kmes.urls["b"],
        kme_cert=cert,
        kme_key=key,
        kme_ca=pki / "ca.crt",
        batch_max_latency_s=0.2,
    )
    return Stack(root, pki, kmes, settings)


@contextmanager
def running_stack(root: Path, pki: Path, *, devices: int = 0, **options: Any) -> Iterator[Stack]:
    """:func:`start_stack` (``options`` passed on), closed on exit; with ``devices``, also
    the notary and devices ``dev-0``... (SAEs ``sae-0``...) registered."""
    stack = start_stack(root, pki, **options)
    try:
        if devices:
            stack.start_notary()
            for index in range(devices):
                stack.register(f"dev-{index}", f"sae-{index}")
        yield stack
    finally:
        stack.close()


class NotaryProcess:
    """``qkd-notary serve`` as a real child process (for kill -9 and CLI tests)."""

    def __init__(self, stack: Stack, *, password: str, extra: tuple[str, ...] = ()) -> None:
        self.stack = stack
        self.password = password
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log = stack.root / "notary-process.log"

    def start(self, timeout_s: float = 60.0) -> None:
        s = self.stack.settings
        command = [
            str(Path(sys.executable).with_name("qkd-notary")),
            "serve",
            "--data-dir",
            str(s.data_dir),
            "--port",
            str(self.stack.port),
            "--kme-url",
            str(s.kme_url),
            "--kme-cert",
            str(s.kme_cert),
            "--kme-key",
            str(s.kme_key),
            "--kme-ca",
            str(s.kme_ca),
            "--batch-max-latency-s",
            str(s.batch_max_latency_s),
            *self.extra,
        ]
        env = {**os.environ, "QKD_NOTARY_KEYSTORE_PASSWORD": self.password}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"qkd-notary serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.stack.notary_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("qkd-notary serve did not become healthy")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, exactly like a crash or power loss."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def run_cli(*args: str, password: str | None = None, timeout_s: float = 120) -> tuple[int, str]:
    """Run ``qkd-notary ARGS`` as a process; return (exit code, stdout + stderr)."""
    env = dict(os.environ)
    if password is not None:
        env["QKD_NOTARY_KEYSTORE_PASSWORD"] = password
    done = subprocess.run(
        [str(Path(sys.executable).with_name("qkd-notary")), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def init_on_node(stack: Stack, rpc_url: str, password: str) -> None:
    """``qkd-notary init`` of the stack's data directory on a development node (funded)."""
    code, out = run_cli(
        "init",
        "--data-dir",
        str(stack.settings.data_dir),
        "--chain-rpc-url",
        rpc_url,
        "--fund-from-node-account",
        "10",
        password=password,
    )
    assert code == 0, out


_RECORD_STORED = "0x" + load_artifact("TelemetryNotary").event_topic("RecordStored").hex()


def record_stored_counts(rpc_url: str, data_dir: Path) -> Counter[str]:
    """How many ``RecordStored`` events the chain holds per record ID (exactly-once check)."""
    deployment = load_deployment(data_dir)
    assert deployment is not None
    logs = httpx.post(
        rpc_url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getLogs",
            "params": [
                {
                    "fromBlock": "0x0",
                    "toBlock": "latest",
                    "address": deployment.notary,
                    "topics": [_RECORD_STORED],
                }
            ],
        },
        timeout=30,
    ).json()["result"]
    return Counter(entry["topics"][2].lower() for entry in logs)
