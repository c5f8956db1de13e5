"""The demo's single-machine deployment: PKI, two linked KME processes, the notary, the chain.

Everything is the production code path: ``qkd-kme serve`` processes speaking ETSI GS QKD
014 over mutual TLS, a :class:`~notary.service.NotaryService` behind its HTTP server with
the embedded chain (persisted in the work directory) and a keystore-held signing key.

Key supply: every bit the KMEs hand out comes from the simulated QKD link the two
``qkd-kme serve`` processes run between themselves (``--link-listen``/``--link-peer``, the
lab preset, a pre-shared Wegman-Carter key from ``qkd-kme auth-key``): end A simulates the
fibre and Alice's post-processing, end B Bob's, and each fills its own buffer. The link is
accelerated so a demo does not wait on photon time; on a small machine the
post-processing, not the pacing, then sets the key rate.

Key paths: KME B (the notary's) is reached on loopback. KME A (the devices') listens on
loopback and, when this host has a network address, on that address too, so part of the
fleet can reach it the way a meter in the field would: across a network, over TLS. The
records show the difference in their security levels (``docs/security-levels.md``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from notary.chain.client import ChainClient
from notary.chain.keystore import create_keystore, load_signer
from notary.chain.settings import ChainSettings
from notary.config import AnchorMode, NotarySettings, create_kem_key
from notary.errors import KeysUnavailable
from notary.server import NotaryServer
from notary.service import NotaryService
from qkd_channel.kme.certs import DEFAULT_SERVER_HOSTS, issue_link_pki, sae_paths
from qkd_channel.kme.client import AsyncKMEClient
from qkd_channel.kme.config import LinkEnd

__all__ = [
    "LINK_PRESET",
    "NOTARY_SAE",
    "PULSES_PER_BLOCK",
    "RATE_MULTIPLIER",
    "KMEPair",
    "LinkReport",
    "network_address",
    "start_notary",
]

NOTARY_SAE = "notary"
_KMES = {"kme-a": LinkEnd.A, "kme-b": LinkEnd.B}

#: The simulated link. 4e6 lab pulses leave ~60 kbit of secret key per block; 0.8 s of
#: photon time, cut to 8 ms by the multiplier so only the post-processing sets the pace.
LINK_PRESET = "lab"
PULSES_PER_BLOCK = 4_000_000
RATE_MULTIPLIER = 100.0

# What end A logs for every block it delivers (qkd_channel.kme.link_source); no key in it.
_BLOCK_LINE = re.compile(r"link block \S+: QBER ([0-9.]+), \d+ secret bits, (\d+) delivered")


@dataclass(frozen=True)
class LinkReport:
    """What the simulated link delivered to each KME over the demo, from end A's log."""

    blocks: int
    delivered_bits: int
    qbers: tuple[float, ...]

    @property
    def mean_qber(self) -> float | None:
        return sum(self.qbers) / len(self.qbers) if self.qbers else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def network_address() -> str | None:
    """This host's IPv4 address on its default route, or ``None`` when it has none.

    A UDP socket "connected" to a documentation address (RFC 5737) sends nothing; the
    kernel only picks the source address it would use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    parsed = ipaddress.ip_address(address)
    return None if parsed.is_loopback or parsed.is_unspecified else address


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
    """Two ``qkd-kme serve`` processes joined by a simulated QKD link: A serves the devices,
    B the notary. ``buffer_bits`` caps each KME's buffer: the link pauses once it is full.

    ``link=False`` starts the KMEs without the link, serving only key already in their
    buffers (``scripts/bench_notary.py`` measures the notary, not the link, that way).

    ``network_host``: an address of this host on a network (:func:`network_address`); KME
    A then also answers there (``network_url``), for devices that reach it over TLS
    across a network rather than on loopback.
    """

    workdir: Path
    sae_ids: list[str]
    buffer_bits: int = 4_000_000
    link: bool = True
    network_host: str | None = None
    pki: Path = field(init=False)
    urls: dict[str, str] = field(init=False, default_factory=dict)
    network_url: str | None = field(init=False, default=None)
    processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)

    def start(self) -> None:
        self.pki = self.workdir / "pki"
        hosts = (*DEFAULT_SERVER_HOSTS, *([self.network_host] if self.network_host else []))
        issue_link_pki(
            self.pki,
            kme_ids=list(_KMES),
            sae_ids=[NOTARY_SAE, *self.sae_ids],
            server_hosts=hosts,
        )
        ports = {name: _free_port() for name in _KMES}
        self.urls = {name: f"https://127.0.0.1:{port}" for name, port in ports.items()}
        listen = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        if self.network_host is not None:
            # Every address of the host (mutual TLS admits only this PKI's SAEs), so the
            # fleet can come on loopback or across the network.
            listen["kme-a"] = f"0.0.0.0:{ports['kme-a']}"
            self.network_url = f"https://{self.network_host}:{ports['kme-a']}"
        qkd_kme = str(Path(sys.executable).with_name("qkd-kme"))
        link_args = self._link_args(qkd_kme) if self.link else {name: [] for name in _KMES}
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
                        listen[name],
                        "--pki",
                        str(self.pki),
                        "--buffer-bits",
                        str(self.buffer_bits),
                        *link_args[name],
                        "--log-level",
                        "info" if self.link else "warning",  # link lines feed link_report
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
            log.close()
        for name, process in zip(_KMES, self.processes, strict=True):
            _wait_port(ports[name], process, 30)

    def _link_args(self, qkd_kme: str) -> dict[str, list[str]]:
        """Each KME's ``serve`` options for its end of the link, with a fresh shared key."""
        auth_key = self.workdir / "link-auth.key"  # pre-shared by both ends, as on a real link
        auth_key.unlink(missing_ok=True)  # a rerun in the same workdir starts a new link
        subprocess.run(
            [qkd_kme, "auth-key", "--out", str(auth_key)], check=True, capture_output=True
        )
        link = f"127.0.0.1:{_free_port()}"
        common = [
            "--auth-key-file",
            str(auth_key),
            "--link-preset",
            LINK_PRESET,
            "--pulses-per-block",
            str(PULSES_PER_BLOCK),
            "--rate-multiplier",
            str(RATE_MULTIPLIER),
        ]
        return {"kme-a": ["--link-listen", link, *common], "kme-b": ["--link-peer", link, *common]}

    async def wait_for_key(
        self, bits: int, on_progress: Callable[[int], None], timeout_s: float = 180.0
    ) -> None:
        """Wait until end A can serve ``bits`` of key to a device, as its ETSI status says.

        ``on_progress`` gets the stocked bits after every poll. Raises ``KeysUnavailable``
        if a KME process exits or the link has not stocked enough within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        async with self.device_kme(self.sae_ids[0]) as kme:
            while True:
                status = await kme.status(NOTARY_SAE)
                stocked = status.stored_key_count * status.key_size
                on_progress(min(stocked, bits))
                if stocked >= bits:
                    return
                if any(p.poll() is not None for p in self.processes):
                    raise KeysUnavailable("a KME process exited before the link stocked key")
                if time.monotonic() > deadline:
                    raise KeysUnavailable(
                        f"the QKD link stocked {stocked} of {bits} bits in {timeout_s:.0f} s"
                    )
                await asyncio.sleep(0.5)

    def link_report(self) -> LinkReport:
        """Blocks, bits and QBERs end A logged as delivered (read after :meth:`stop`)."""
        found = _BLOCK_LINE.findall((self.workdir / "kme-a.log").read_text(errors="replace"))
        return LinkReport(
            blocks=len(found),
            delivered_bits=sum(int(bits) for _, bits in found),
            qbers=tuple(float(qber) for qber, _ in found),
        )

    def device_kme(self, sae_id: str, *, over_network: bool = False) -> AsyncKMEClient:
        """A device's client of KME A: on loopback, or across the network when asked and
        the host has a network address."""
        cert, key = sae_paths(self.pki, sae_id)
        url = self.network_url if over_network and self.network_url else self.urls["kme-a"]
        return AsyncKMEClient(url, cert=cert, key=key, ca=self.pki / "ca.crt")

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
    """Notary with the embedded chain (contracts deployed on first start) and an ML-KEM
    key (as ``qkd-notary init`` makes) behind HTTP."""
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
    create_kem_key(settings)
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
