# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Fixtures that run real ``qswap devnet`` processes (and stop them)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from algosdk.v2client.algod import AlgodClient

from atomic_swap.accounts import load_account
from atomic_swap.devnet.process import DevnetProcess, free_port
from qkd_channel.errors import KMEError
from qkd_channel.kme.client import KMEClient
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.store import KeyStore

QSWAP = [sys.executable, "-m", "atomic_swap"]
QKD_KME = [sys.executable, "-c", "from qkd_channel.cli import main; main()"]


def as_json(response: object) -> dict[str, Any]:
    """An AlgodClient JSON answer (typed ``dict | bytes`` by the SDK)."""
    assert isinstance(response, dict)
    return response


@dataclass
class Devnet:
    """A running devnet process, with the helpers tests need."""

    process: DevnetProcess

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def token(self) -> str:
        return self.process.token

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    @property
    def client(self) -> AlgodClient:
        return self.process.client

    @property
    def dispenser_key(self) -> str:
        return load_account(self.process.dispenser_file).private_key

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Algo-API-Token": self.token}

    @property
    def offset(self) -> int:
        r = httpx.get(f"{self.url}/v2/devmode/blocks/offset", headers=self.headers)
        r.raise_for_status()
        return int(r.json()["offset"])

    def set_offset(self, seconds: int) -> None:
        r = httpx.post(f"{self.url}/v2/devmode/blocks/offset/{seconds}", headers=self.headers)
        r.raise_for_status()

    def stop(self) -> None:
        self.process.stop()


def start_devnet(data_dir: Path, name: str) -> Devnet:
    verbose = bool(os.environ.get("QSWAP_TEST_DEBUG"))
    return Devnet(DevnetProcess(data_dir, name, verbose=verbose).start())


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    net = start_devnet(tmp_path_factory.mktemp("devnet"), "unit")
    try:
        yield net
    finally:
        net.stop()


# -- two real KME processes (qkd-kme serve) of one simulated QKD link ----------------------

SAE_IDS = ("alice", "bob", "mallory")


@dataclass
class KMELink:
    pki: Path
    urls: dict[str, str]
    data_dirs: dict[str, Path]
    procs: list[subprocess.Popen[bytes]]

    def sae_env(self, end: str, sae_id: str, peer_sae_id: str) -> dict[str, str]:
        return {
            "QSWAP_KME_URL": self.urls[end],
            "QSWAP_SAE_CERT": str(self.pki / f"sae-{sae_id}.crt"),
            "QSWAP_SAE_KEY": str(self.pki / f"sae-{sae_id}.key"),
            "QSWAP_KME_CA": str(self.pki / "ca.crt"),
            "QSWAP_SAE_ID": sae_id,
            "QSWAP_PEER_SAE_ID": peer_sae_id,
        }

    def client(self, end: str, sae_id: str) -> KMEClient:
        return KMEClient(
            self.urls[end],
            cert=self.pki / f"sae-{sae_id}.crt",
            key=self.pki / f"sae-{sae_id}.key",
            ca=self.pki / "ca.crt",
        )

    def feed(self, blocks: int = 4, nbytes: int = 8192) -> None:
        """Deliver identical key blocks to both ends, as the link's post-processing would."""
        material = [secrets.token_bytes(nbytes) for _ in range(blocks)]
        ids = [f"blk-{uuid.uuid4()}" for _ in material]
        for end, kme_id in (("a", "kme-a"), ("b", "kme-b")):
            link_end = LinkEnd.A if end == "a" else LinkEnd.B
            with KeyStore(self.data_dirs[end], kme_id=kme_id, end=link_end) as store:
                for block_id, block in zip(ids, material, strict=True):
                    store.add_block(block_id, block)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_kme_link(root: Path) -> KMELink:
    pki = root / "pki"
    args = ["certs", "--out", str(pki), "--kme", "kme-a", "--kme", "kme-b"]
    for sae in SAE_IDS:
        args += ["--sae", sae]
    subprocess.run([*QKD_KME, *args], check=True, capture_output=True)
    ports = {"a": free_port(), "b": free_port()}
    urls = {end: f"https://127.0.0.1:{port}" for end, port in ports.items()}
    dirs = {end: root / f"kme-{end}" for end in ports}
    procs = []
    for end, peer in (("a", "b"), ("b", "a")):
        procs.append(
            subprocess.Popen(
                [
                    *QKD_KME,
                    "serve",
                    "--data-dir",
                    str(dirs[end]),
                    "--kme-id",
                    f"kme-{end}",
                    "--end",
                    end.upper(),
                    "--peer-id",
                    f"kme-{peer}",
                    "--peer",
                    urls[peer],
                    "--listen",
                    f"127.0.0.1:{ports[end]}",
                    "--pki",
                    str(pki),
                    "--log-level",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=None if os.environ.get("QSWAP_TEST_DEBUG") else subprocess.DEVNULL,
            )
        )
    link = KMELink(pki, urls, dirs, procs)
    deadline = time.monotonic() + 30
    for end, sae in (("a", "alice"), ("b", "bob")):
        while True:
            if any(p.poll() is not None for p in procs):
                link.stop()
                raise RuntimeError("a KME process exited during start-up")
            try:
                with link.client(end, sae) as client:
                    client.status("bob" if sae == "alice" else "alice")
                break
            except KMEError:
                if time.monotonic() > deadline:
                    link.stop()
                    raise RuntimeError("KME did not become ready") from None
                time.sleep(0.2)
    return link


@pytest.fixture(scope="session")
def kme_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KMELink]:
    link = start_kme_link(tmp_path_factory.mktemp("kme"))
    try:
        # 128 KiB per direction: every envelope the suite seals (about 1 KiB each) fits.
        link.feed(blocks=16, nbytes=16384)
        yield link
    finally:
        link.stop()


# -- the two networks of a swap ------------------------------------------------------------

ALGO = 1_000_000


@dataclass
class Node:
    url: str
    token: str
    funder: Path

    @property
    def client(self) -> AlgodClient:
        return AlgodClient(self.token, self.url)

    def advance_clock(self, seconds: int, party: dict[str, str]) -> None:
        """Move the dev-mode clock forward (sandbox API) and make a block carrying it."""
        url = f"{self.url}/v2/devmode/blocks/offset"
        headers = {"X-Algo-API-Token": self.token}
        offset = httpx.get(url, headers=headers).json()["offset"]
        httpx.post(f"{url}/{offset + seconds}", headers=headers).raise_for_status()
        qswap(
            "account", "fund", party["QSWAP_ACCOUNT"], "--algos", "0.001",
            "--from", party["QSWAP_ACCOUNT"], "--algod-url", self.url, "--algod-token",
            self.token, env={},
        )  # fmt: skip


@pytest.fixture(scope="session")
def networks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    if os.environ.get("ALGOD_URL_A") and os.environ.get("ALGOD_URL_B"):
        yield tuple(  # type: ignore[misc]
            Node(os.environ[f"ALGOD_URL_{x}"], os.environ.get(f"ALGOD_TOKEN_{x}", "a" * 64),
                 Path(os.environ[f"QSWAP_FUNDER_{x}"]))
            for x in "AB"
        )  # fmt: skip
        return
    nets = [start_devnet(tmp_path_factory.mktemp(n), n) for n in ("alpha", "beta")]
    try:
        yield tuple(  # type: ignore[misc]
            Node(n.url, n.token, n.data_dir / "dispenser.mnemonic") for n in nets
        )
    finally:
        for n in nets:
            n.stop()


@pytest.fixture
def own_networks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """Two devnets for one test: for tests that move a chain's clock (it never goes back)."""
    nets = [start_devnet(tmp_path_factory.mktemp(n), n) for n in ("alpha", "beta")]
    try:
        yield tuple(  # type: ignore[misc]
            Node(n.url, n.token, n.data_dir / "dispenser.mnemonic") for n in nets
        )
    finally:
        for n in nets:
            n.stop()


def qswap(
    *args: str, env: dict[str, str], check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*QSWAP, *args], env={**os.environ, **env}, capture_output=True, text=True,
        input=stdin, timeout=120,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"qswap {args[0]} exited {proc.returncode}: {proc.stderr}")
    return proc
