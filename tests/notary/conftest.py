"""Fixtures for the notary service tests: a real SQLite store, an in-process key buffer
with KME delivery rules, the FastAPI app over ASGI, and a helper that seals envelopes the
way a device does (keys deposited at the "KME" under the device's SAE, then sealed)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_hash.auto import keccak

from notary.api import create_app
from notary.chain.client import ChainClient
from notary.chain.retry import RetryPolicy
from notary.chain.settings import ChainSettings
from notary.config import NotarySettings
from notary.keysource import CoalescingKeySource, InMemoryKeySource, KeySource, KMEKeySource
from notary.service import NotaryService
from notary.storage.sqlite import SQLiteStore
from qkd_channel.envelope import Envelope, Mode, keys_needed, seal
from qkd_channel.hybrid import HybridKey, KEMPrivateKey, KEMPublicKey
from qkd_channel.keys import QKDKey
from tests.conftest import AnvilNode
from tests.notary.postgres_server import PostgresServer
from tests.qkd_channel.conftest import KMEPair, start_pair

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
ANVIL_SIGNER = Account.from_key(keccak(b"notary-tests-anvil-signer"))
NOTARY_ID = "notary"
FIRMWARE_A = "a" * 64
FIRMWARE_B = "b" * 64
#: The notary's ML-KEM-768 key in tests that use ``hybrid`` (fixed, so failures reproduce).
NOTARY_KEM = KEMPrivateKey(bytes(range(0x80, 0xC0)))


def fresh_keys(total_bytes: int, *, count: int = 1) -> list[QKDKey]:
    per_key = -(-total_bytes // count)
    return [QKDKey(str(uuid.uuid4()), os.urandom(per_key)) for _ in range(count)]


@dataclass
class SimDevice:
    """A device as the notary sees it from outside: an ID, an SAE, a firmware digest."""

    device_id: str
    sae_id: str
    keys: InMemoryKeySource = field(repr=False)
    firmware_digest: str = FIRMWARE_A
    sequence: int = 0
    #: Keys of the last envelope sealed (the device can derive its record's salt from them).
    last_keys: list[QKDKey] = field(default_factory=list, repr=False)

    def plaintext(self, telemetry: dict[str, Any] | None = None, **doc: Any) -> bytes:
        body: dict[str, Any] = {
            "firmware_digest": self.firmware_digest,
            "telemetry": telemetry if telemetry is not None else {"temp_c": 21.5},
        }
        body.update(doc)
        return json.dumps(body).encode()

    def seal(
        self,
        plaintext: bytes | None = None,
        *,
        mode: Mode = Mode.OTP,
        sequence: int | None = None,
        sender: str | None = None,
        recipient: str = NOTARY_ID,
        keys: list[QKDKey] | None = None,
        deposit_for: str | None = None,
        kem: KEMPublicKey | None = None,
    ) -> Envelope:
        """Seal like the SDK: fresh QKD keys (deposited for our SAE) and the next sequence;
        ``hybrid`` combines a fresh QKD key with an encapsulation to ``kem`` (default the
        tests' notary key) unless ``keys`` already holds a hybrid key."""
        data = self.plaintext() if plaintext is None else plaintext
        if keys is None:
            keys = fresh_keys(keys_needed(mode, len(data)))
            self.keys.deposit(deposit_for or self.sae_id, keys)
        if mode is Mode.HYBRID and not isinstance(keys[0], HybridKey):
            keys = [HybridKey.for_sender(keys[0], kem or NOTARY_KEM.public_key)]
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        self.last_keys = keys
        return seal(
            data,
            sender=sender or self.device_id,
            recipient=recipient,
            sequence=sequence,
            mode=mode,
            keys=keys,
        )


@pytest.fixture
def key_source() -> InMemoryKeySource:
    return InMemoryKeySource()


@pytest.fixture
def settings(tmp_path: Path) -> NotarySettings:
    return NotarySettings(data_dir=tmp_path / "notary", notary_id=NOTARY_ID)


def sqlite_service(
    settings: NotarySettings,
    keys: KeySource,
    chain: ChainClient | None = None,
    *,
    kem_key: KEMPrivateKey | None = None,
) -> NotaryService:
    """A notary on SQLite in ``settings.data_dir`` (created), with the tests' admin token
    (and ``kem_key`` for hybrid envelopes)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return NotaryService(
        settings,
        store=SQLiteStore(settings.sqlite_path),
        keys=keys,
        admin_token=ADMIN_TOKEN,
        chain=chain,
        kem_key=kem_key,
    )


@pytest.fixture
async def service(
    settings: NotarySettings, key_source: InMemoryKeySource
) -> AsyncIterator[NotaryService]:
    svc = sqlite_service(settings, key_source)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.aclose()


@pytest.fixture
async def client(service: NotaryService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://notary.test") as c:
        yield c


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def device(service: NotaryService, key_source: InMemoryKeySource) -> SimDevice:
    await service.register_device("dev-a", sae_id="sae-a", owner="ops")
    return SimDevice("dev-a", "sae-a", key_source)


@pytest.fixture
async def device_b(service: NotaryService, key_source: InMemoryKeySource) -> SimDevice:
    await service.register_device("dev-b", sae_id="sae-b", owner="ops")
    return SimDevice("dev-b", "sae-b", key_source)


MOSQUITTO = Path("/usr/sbin/mosquitto")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    host: str
    port: int


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto broker on a free loopback port, stopped after the test."""
    import socket
    import subprocess
    import time

    assert MOSQUITTO.exists(), "install mosquitto (make system-deps)"
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 10000\n"
    )
    proc = subprocess.Popen(
        [str(MOSQUITTO), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)
        yield Broker("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(scope="session")
def chain_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainClient]:
    """One embedded chain (py-evm, persisted in a temp dir) with freshly deployed
    contracts, shared by the tests of a session; tests use their own device IDs."""
    from eth_account import Account

    from notary.chain.settings import ChainSettings

    client = ChainClient.open(
        ChainSettings(data_dir=tmp_path_factory.mktemp("chain")), Account.create()
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def anvil_chain(node: AnvilNode, tmp_path: Path) -> Iterator[ChainClient]:
    """A chain client on the requesting module's anvil ``node``, signing as a funded
    ANVIL_SIGNER, giving up quickly on an unreachable node (outage tests)."""
    node.rpc("anvil_setBalance", [ANVIL_SIGNER.address, hex(10**21)])
    settings = ChainSettings(
        data_dir=tmp_path / "chain",
        rpc_url=node.url,
        retry=RetryPolicy(attempts=2, initial_backoff_s=0.05),
    )
    client = ChainClient.open(settings, ANVIL_SIGNER)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def anchored_service(
    tmp_path: Path, key_source: InMemoryKeySource, chain_client: ChainClient
) -> AsyncIterator[NotaryService]:
    """A notary attached to the embedded chain; tests drive its worker explicitly."""
    settings = NotarySettings(
        data_dir=tmp_path / "anchored", notary_id=NOTARY_ID, batch_size=4, batch_max_latency_s=0.2
    )
    svc = sqlite_service(settings, key_source, chain=chain_client)
    try:
        yield svc
    finally:
        await svc.aclose()


async def fleet(
    service: NotaryService, key_source: InMemoryKeySource, count: int
) -> list[SimDevice]:
    """``count`` freshly registered devices with IDs unique across the session's chain."""
    tag = uuid.uuid4().hex[:8]
    devices = []
    for i in range(count):
        device_id = f"t{tag}-{i}"
        await service.register_device(device_id, sae_id=f"sae-{device_id}")
        devices.append(SimDevice(device_id, f"sae-{device_id}", key_source))
    return devices


# -- real KMEs (qkd_channel's KME servers, mutual TLS) ----------------------------------
KME_SAE_IDS = ("notary", "sensor-1", "sensor-2", "hub")


@pytest.fixture(scope="session")
def notary_kme_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qkd_channel.kme.certs import issue_link_pki

    directory = tmp_path_factory.mktemp("notary-pki")
    issue_link_pki(directory, kme_ids=["kme-a", "kme-b"], sae_ids=KME_SAE_IDS)
    return directory


@pytest.fixture
def kme_link(notary_kme_pki: Path, tmp_path: Path) -> Iterator[KMEPair]:
    """KME A (devices' side) and KME B (the notary's side) of one link, fed with key."""
    pair = start_pair(notary_kme_pki, tmp_path)
    pair.feed(blocks=4, nbytes=4096)
    try:
        yield pair
    finally:
        for name in list(pair.servers):
            pair.stop(name)


def kme_key_source_for(pair: KMEPair, *, window_s: float = 0.002) -> CoalescingKeySource:
    """The notary's production key source: coalescing over ETSI 014 with mutual TLS."""
    from qkd_channel.kme.certs import sae_paths
    from qkd_channel.kme.client import AsyncKMEClient

    cert, key = sae_paths(pair.pki, "notary")
    client = AsyncKMEClient(pair.urls["b"], cert=cert, key=key, ca=pair.pki / "ca.crt", timeout=5)
    return CoalescingKeySource(KMEKeySource(client), window_s=window_s)


@dataclass
class KMEDevice:
    """A device whose keys come from KME A via enc_keys, as the SDK does."""

    device_id: str
    sae_id: str
    pair: KMEPair = field(repr=False)
    firmware_digest: str = FIRMWARE_A
    sequence: int = 0
    #: Keys of the last envelope sealed (the device can derive its record's salt from them).
    last_keys: list[QKDKey] = field(default_factory=list, repr=False)

    def seal(self, telemetry: dict[str, Any] | None = None, *, sender: str | None = None):  # type: ignore[no-untyped-def]
        body = {"firmware_digest": self.firmware_digest, "telemetry": telemetry or {"v": 1}}
        plaintext = json.dumps(body).encode()
        with self.pair.client("a", self.sae_id) as kme:
            keys = kme.enc_keys("notary", number=1, size=8 * keys_needed(Mode.OTP, len(plaintext)))
        self.sequence += 1
        self.last_keys = keys
        return seal(
            plaintext,
            sender=sender or self.device_id,
            recipient=NOTARY_ID,
            sequence=self.sequence,
            mode=Mode.OTP,
            keys=keys,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL cluster per session; tests take fresh databases from it."""
    with PostgresServer.started() as server:
        yield server
