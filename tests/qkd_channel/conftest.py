"""Fixtures for the KME tests: a PKI, and a pair of real KMEs (uvicorn, mutual TLS) in threads.

The key producer of a real deployment is replaced here by writing the same random blocks
into both KMEs' key buffers (the real :class:`KeyStore`, opened on each KME's data
directory, as a producer process would) — nothing in the KMEs is faked.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qkd_channel.kme.certs import issue_link_pki, kme_client_paths, kme_server_paths, sae_paths
from qkd_channel.kme.client import KMEClient
from qkd_channel.kme.config import KeyLimits, KMEConfig, LinkEnd, TLSFiles
from qkd_channel.kme.server import KMEServerThread, bind_socket
from qkd_channel.kme.store import KeyStore

SAE_IDS = ("device-1", "notary", "intruder", "auditor")


@pytest.fixture(scope="session")
def kme_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA + certificates for KMEs ``kme-a``/``kme-b`` and the SAEs of ``SAE_IDS``."""
    directory = tmp_path_factory.mktemp("pki")
    issue_link_pki(directory, kme_ids=["kme-a", "kme-b"], sae_ids=SAE_IDS)
    return directory


def kme_config(
    pki: Path,
    data_dir: Path,
    kme_id: str,
    end: LinkEnd,
    peer_id: str,
    peer_url: str,
    *,
    limits: KeyLimits | None = None,
    sae_ids: frozenset[str] | None = None,
) -> KMEConfig:
    server_cert, server_key = kme_server_paths(pki, kme_id)
    client_cert, client_key = kme_client_paths(pki, kme_id)
    return KMEConfig(
        kme_id=kme_id,
        end=end,
        peer_kme_id=peer_id,
        peer_url=peer_url,
        data_dir=data_dir,
        tls=TLSFiles(server_cert, server_key, client_cert, client_key, pki / "ca.crt"),
        limits=limits or KeyLimits(buffer_bits=200_000),
        sae_ids=sae_ids,
        peer_timeout=2.0,
    )


@dataclass
class KMEPair:
    """Two running KMEs of one link: ``a`` (link end A) and ``b`` (link end B)."""

    pki: Path
    configs: dict[str, KMEConfig]
    urls: dict[str, str]
    servers: dict[str, KMEServerThread] = field(default_factory=dict)

    def client(self, kme: str, sae_id: str, **kwargs: object) -> KMEClient:
        cert, key = sae_paths(self.pki, sae_id)
        return KMEClient(self.urls[kme], cert=cert, key=key, ca=self.pki / "ca.crt", **kwargs)  # type: ignore[arg-type]

    def store(self, kme: str) -> KeyStore:
        config = self.configs[kme]
        return KeyStore(config.data_dir, kme_id=config.kme_id, end=config.end)

    def feed(self, blocks: int = 1, nbytes: int = 1024) -> list[bytes]:
        """Give both KMEs the same ``blocks`` fresh random blocks; return their material."""
        materials = [secrets.token_bytes(nbytes) for _ in range(blocks)]
        # Distinct per block, shared by both ends; a real producer numbers its rounds.
        ids = [f"blk-{uuid.uuid4()}" for _ in materials]
        for name in ("a", "b"):
            with self.store(name) as store:
                for block_id, material in zip(ids, materials, strict=True):
                    store.add_block(block_id, material)
        return materials

    def start(self, name: str) -> None:
        host, port = self.urls[name].removeprefix("https://").split(":")
        self.servers[name] = KMEServerThread(self.configs[name], bind_socket(host, int(port)))
        self.servers[name].start()

    def stop(self, name: str) -> None:
        self.servers.pop(name).stop()


def start_pair(
    pki: Path,
    tmp_path: Path,
    *,
    limits: KeyLimits | None = None,
    sae_ids: dict[str, frozenset[str]] | None = None,
) -> KMEPair:
    socks = {name: bind_socket() for name in ("a", "b")}
    urls = {name: f"https://127.0.0.1:{s.getsockname()[1]}" for name, s in socks.items()}
    configs = {
        "a": kme_config(
            pki,
            tmp_path / "kme-a",
            "kme-a",
            LinkEnd.A,
            "kme-b",
            urls["b"],
            limits=limits,
            sae_ids=(sae_ids or {}).get("a"),
        ),
        "b": kme_config(
            pki,
            tmp_path / "kme-b",
            "kme-b",
            LinkEnd.B,
            "kme-a",
            urls["a"],
            limits=limits,
            sae_ids=(sae_ids or {}).get("b"),
        ),
    }
    pair = KMEPair(pki, configs, urls)
    for name, sock in socks.items():
        pair.servers[name] = KMEServerThread(configs[name], sock)
        pair.servers[name].start()
    return pair


@pytest.fixture
def kme_pair(kme_pki: Path, tmp_path: Path) -> Iterator[KMEPair]:
    """Two KMEs (A, B) with empty buffers, any CA-certified SAE admitted."""
    pair = start_pair(kme_pki, tmp_path)
    try:
        yield pair
    finally:
        for name in list(pair.servers):
            pair.stop(name)
