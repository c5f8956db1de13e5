"""The demo's single-machine deployment: PKI, two KME processes, the notary, the chain.

Everything is the production code path: ``qkd-kme serve`` processes speaking ETSI GS QKD
014 over mutual TLS, a :class:`~notary.service.NotaryService` behind its HTTP server with
the embedded chain (persisted in the work directory) and a keystore-held signing key.

Key supply: the KMEs' buffers receive identical secret-key blocks at both link ends, the
way a QKD post-processing pair delivers them (:meth:`KeyStore.add_block` on each KME's own
database, which the KME processes share through SQLite). :class:`KMEPair` writes those
blocks; the link simulation itself is ``qkd_channel.link``/``postprocessing``.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from notary.chain.client import ChainClient
from notary.chain.keystore import create_keystore, load_signer
from notary.chain.settings import ChainSettings
from notary.config import AnchorMode, NotarySettings
from notary.server import NotaryServer
from notary.service import NotaryService
from qkd_channel.kme.certs import issue_link_pki, sae_paths
from qkd_channel.kme.client import AsyncKMEClient
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.store import KeyStore

__all__ = ["NOTARY_SAE", "KMEPair", "start_notary"]

NOTARY_SAE = "notary"
_KMES = {"kme-a": LinkEnd.A, "kme-b": LinkEnd.B}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("a KME process did not start") from None
            time.sleep(0.05)


@dataclass
class KMEPair:
    """Two ``qkd-kme serve`` processes of one link: A serves the devices, B the notary."""

    workdir: Path
    sae_ids: list[str]
    buffer_bits: int = 4_000_000
    pki: Path = field(init=False)
    urls: dict[str, str] = field(init=False, default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)

    def start(self) -> None:
        self.pki = self.workdir / "pki"
        issue_link_pki(self.pki, kme_ids=list(_KMES), sae_ids=[NOTARY_SAE, *self.sae_ids])
        ports = {name: _free_port() for name in _KMES}
        self.urls = {name: f"https://127.0.0.1:{port}" for name, port in ports.items()}
        qkd_kme = str(Path(sys.executable).with_name("qkd-kme"))
        for name, end in _KMES.items():
            peer = "kme-b" if name == "kme-a" else "kme-a"
            log = (self.workdir / f"{name}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [
                        qkd_kme,
                        "serve",
                        "--data-dir",
                        str(self.workdir / name),
                        "--kme-id",
                        name,
                        "--end",
                        end.value,
                        "--peer-id",
                        peer,
                        "--peer",
                        self.urls[peer],
                        "--listen",
                        f"127.0.0.1:{ports[name]}",
                        "--pki",
                        str(self.pki),
                        "--buffer-bits",
                        str(self.buffer_bits),
                        "--log-level",
                        "warning",
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
            log.close()
        for name, process in zip(_KMES, self.processes, strict=True):
            _wait_port(ports[name], process, 30)

    def supply(self, blocks: int, block_bytes: int) -> int:
        """Deliver ``blocks`` identical secret-key blocks to both buffers; return bits."""
        stores = [
            KeyStore(self.workdir / name, kme_id=name, end=end) for name, end in _KMES.items()
        ]
        try:
            for _ in range(blocks):
                block_id, material = f"blk-{uuid.uuid4()}", secrets.token_bytes(block_bytes)
                for store in stores:
                    store.add_block(block_id, material)
        finally:
            for store in stores:
                store.close()
        return 8 * blocks * block_bytes

    def device_kme(self, sae_id: str) -> AsyncKMEClient:
        cert, key = sae_paths(self.pki, sae_id)
        return AsyncKMEClient(self.urls["kme-a"], cert=cert, key=key, ca=self.pki / "ca.crt")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def start_notary(
    workdir: Path,
    kmes: KMEPair,
    *,
    anchor_mode: AnchorMode,
    batch_size: int = 64,
    batch_max_latency_s: float = 0.5,
) -> tuple[NotaryServer, ChainClient]:
    """Notary with the embedded chain (contracts deployed on first start) behind HTTP."""
    data_dir = workdir / "notary"
    data_dir.mkdir(parents=True, exist_ok=True)
    cert, key = sae_paths(kmes.pki, NOTARY_SAE)
    settings = NotarySettings(
        data_dir=data_dir,
        notary_id="notary",
        kme_url=kmes.urls["kme-b"],
        kme_cert=cert,
        kme_key=key,
        kme_ca=kmes.pki / "ca.crt",
        anchor_mode=anchor_mode,
        batch_size=batch_size,
        batch_max_latency_s=batch_max_latency_s,
        port=0,
    )
    password = secrets.token_urlsafe(24)  # the demo's keystore lives only as long as its dir
    keystore = data_dir / "keystore.json"
    create_keystore(keystore, password)
    signer = load_signer(keystore, password)
    chain = ChainClient.open(ChainSettings(data_dir=data_dir, deploy=True), signer)
    try:
        service = NotaryService.open(settings, chain=chain)
        server = NotaryServer(service, host="127.0.0.1", port=0)
        await server.start()
    except BaseException:
        chain.close()
        raise
    return server, chain
