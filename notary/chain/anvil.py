"""Run the anvil node installed from npm (``@foundry-rs/anvil-linux-amd64``, pinned in
``contracts/package-lock.json``) for development, tests and benchmarks.

The process binds port 0 itself and the port it got is read from its "Listening on" line,
so no other process can take the port between choosing and binding it; a restart binds
the same port again (the URL stays valid). With ``state_file`` it dumps its chain there on
a graceful stop and loads it again on :meth:`AnvilNode.restart`.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from notary.errors import ChainMisconfigured, ChainUnavailable

__all__ = [
    "ANVIL_BINARY",
    "ANVIL_CHAIN_ID",
    "ANVIL_DEV_KEY",
    "AnvilNode",
    "foundry_binary",
    "free_port",
]


def foundry_binary(name: str) -> Path:
    """Where ``make node-deps`` installs Foundry's ``name`` (``anvil``, ``cast``) from npm."""
    package = f"@foundry-rs/{name}-linux-amd64"
    return Path(__file__).resolve().parents[2] / "contracts/node_modules" / package / "bin" / name


ANVIL_BINARY = foundry_binary("anvil")
#: anvil's first dev account (from its public default mnemonic): for tests only.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_CHAIN_ID = 31337
_LISTENING = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class AnvilNode:
    """One anvil process; ``url`` stays the same across :meth:`restart`."""

    def __init__(
        self,
        *,
        chain_id: int = ANVIL_CHAIN_ID,
        gas_limit: int = 60_000_000,
        state_file: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if not ANVIL_BINARY.is_file():
            raise ChainMisconfigured(f"{ANVIL_BINARY} missing: run `make node-deps`")
        self.chain_id = chain_id
        self.gas_limit = gas_limit
        self.state_file = state_file
        self.extra_args = extra_args
        #: The port anvil bound (0 until the first start picks one).
        self.port = 0
        self.dev_key = ANVIL_DEV_KEY
        self._process: subprocess.Popen[bytes] | None = None
        self._logs: Path | None = None  #: where the running process's stdout goes

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("anvil has not been started: no port yet")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        """Start (the first time on a port the OS picks) and wait until it answers."""
        command = [
            str(ANVIL_BINARY),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--gas-limit",
            str(self.gas_limit),
            "--accounts",
            "2",
            *self.extra_args,
        ]
        if self.state_file is not None:
            command += ["--state", str(self.state_file)]
        self._logs = Path(tempfile.mkdtemp(prefix="anvil-"))
        log = self._logs / "stdout.log"
        with log.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise ChainUnavailable(f"anvil exited at start-up: {stderr}")
            if not self.port:
                found = _LISTENING.search(log.read_text(errors="replace"))
                self.port = int(found.group(1)) if found else 0
            if self.port and self.rpc("eth_chainId") is not None:
                return
            time.sleep(0.05)
        self.stop()
        raise ChainUnavailable(f"anvil did not answer on port {self.port} within {timeout_s}s")

    def stop(self) -> None:
        """Stop gracefully (SIGINT makes anvil dump ``state_file``), then wait."""
        self._end(graceful=True)

    def kill(self) -> None:
        """SIGKILL: the node dies without dumping its state (a crash)."""
        self._end(graceful=False)

    def _end(self, *, graceful: bool) -> None:
        process, self._process = self._process, None
        if process is not None:
            if graceful and process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            if process.stderr is not None:
                process.stderr.close()
        if self._logs is not None:
            shutil.rmtree(self._logs, ignore_errors=True)
            self._logs = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def rpc(self, method: str, params: list[object] | None = None) -> object | None:
        """One raw JSON-RPC call; ``None`` if the node does not answer."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        result: object | None = answer.get("result")
        return result
