"""Notary benchmark (not a test): intake throughput, time to anchor, key consumption.

Everything runs as on a deployment: two ``qkd-kme serve`` processes, anvil, and
``qkd-notary serve`` as its own process; the load generator (this process) drives 50
concurrent devices through the SDK. Prints one summary line:

* ``e2e``: envelopes accepted per second over HTTP, 50 devices, each message's keys
  obtained with ``enc_keys`` from the device KME and fetched by the notary with
  ``dec_keys`` (the full path); device send queues live on tmpfs so the device-side
  ``fsync`` of this single load-generator process does not masquerade as notary cost;
* ``prefetched``: the same with keys obtained and envelopes sealed beforehand, so only
  the notary's work (HTTP, ``dec_keys``, MAC, decrypt, outbox) is timed;
* ``merkle``/``batch`` p50/p99: seconds from ``send`` to the receipt reading anchored,
  at a moderate load, per anchoring mode;
* ``key``: QKD key bytes consumed per message against the minimum (payload + 32);
* ``modes``: ``otp``, ``aead`` and ``hybrid`` side by side, each envelope sealed before the
  clock starts as the SDK seals it (``aead``/``hybrid``: one QKD key, and for ``hybrid``
  one ML-KEM-768 encapsulation, per session of ``--session-messages``, default 10: one
  reading a minute under the SDK's rotation limits): the CPU the notary and its KME spend
  per accepted envelope, the QKD key bytes per message, and ``open_us``, the CPU of the
  pipeline's cryptographic step alone (measured in this process: for ``hybrid``
  decapsulation and key combination, then the tag check, decryption and record salt),
  which is where the modes differ; the rest of the path (HTTP, storage) is the same.

Before the throughput phases every device sends one reading and the notary mirrors the
fleet's registrations and first attestations to the chain, so the figures describe the
steady state rather than a fleet's enrolment. ``--key-stock N`` makes the e2e devices
fetch ``N`` keys per ``enc_keys`` request (the SDK's in-memory key stock).

For the two throughput phases a second line gives the CPU time each process spent per
accepted envelope (notary, both KMEs, this load generator) next to the wall time: on a
shared machine the wall figure moves with the neighbours' load, the CPU figures much less.

Usage: ``python scripts/bench_notary.py [--devices 50] [--seconds 10] [--key-stock 1]
[--session-messages 10] [--phases e2e,prefetched,modes,latency]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import httpx

from notary.chain.anvil import AnvilNode
from notary.demo.infrastructure import NOTARY_SAE, KMEPair
from qkd_channel.envelope import AEADSession, Envelope, Mode, keys_needed, open_envelope, seal
from qkd_channel.hybrid import HybridKey, KEMPrivateKey, KEMPublicKey
from qkd_channel.keys import QKDKey
from qkd_channel.kme.certs import sae_paths
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.store import KeyStore
from qkd_device import AsyncDeviceClient, RetryPolicy
from qkd_device.records import build_document, record_salt

FIRMWARE = "ab" * 32
PASSWORD = "bench-only-password"
BIN = Path(sys.executable).parent


class CPUMeter:
    """CPU seconds (user + system, all threads) of named processes over one phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.used: dict[str, float] = {}  #: CPU seconds per process, after the phase

    def _read(self) -> dict[str, float]:
        out = {}
        for name, pid in self._pids.items():
            # Fields 14 and 15 of /proc/PID/stat (after the parenthesised command name).
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / self._ticks
        return out

    def __enter__(self) -> CPUMeter:
        self._start = self._read()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = self._read()
        self._wall = time.monotonic() - self._wall
        self.used = {name: end[name] - self._start[name] for name in end}

    def line(self, phase: str, envelopes: int) -> str:
        per = {name: 1000 * cpu / max(envelopes, 1) for name, cpu in self.used.items()}
        parts = " ".join(f"{name}={ms:.2f}" for name, ms in per.items())
        return (
            f"  {phase}: {envelopes} env in {self._wall:.1f}s wall; CPU ms/env {parts}"
            f" total={sum(per.values()):.2f}"
        )


def telemetry(n: int) -> dict[str, object]:
    return {"kwh": 1234.5 + n, "v": 229.7, "a": 4.21, "n": n}


def supply_by_hand(kmes: KMEPair, blocks: int, block_bytes: int) -> None:
    """Identical key blocks straight into both KMEs' buffers, as post-processing would
    deliver them: this measures the notary, so the link's key rate must not bound it."""
    stores = [
        KeyStore(kmes.workdir / name, kme_id=name, end=end)
        for name, end in (("kme-a", LinkEnd.A), ("kme-b", LinkEnd.B))
    ]
    try:
        for _ in range(blocks):
            block_id, material = f"blk-{uuid.uuid4()}", secrets.token_bytes(block_bytes)
            for store in stores:
                store.add_block(block_id, material)
    finally:
        for store in stores:
            store.close()


class Notary:
    """``qkd-notary init`` + ``serve`` on anvil, in a data directory of its own."""

    def __init__(self, root: Path, kmes: KMEPair, rpc_url: str, mode: str, port: int) -> None:
        self.data_dir = root / f"notary-{mode}"
        self.url = f"http://127.0.0.1:{port}"
        cert, key = sae_paths(kmes.pki, NOTARY_SAE)
        env = {
            **os.environ,
            "QKD_NOTARY_KEYSTORE_PASSWORD": PASSWORD,
            "QKD_NOTARY_LOG_LEVEL": "WARNING",
        }
        subprocess.run(
            [
                BIN / "qkd-notary",
                "init",
                "--data-dir",
                self.data_dir,
                "--chain-rpc-url",
                rpc_url,
                "--fund-from-node-account",
                "100",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        log = (root / f"notary-{mode}.log").open("ab")
        self.process = subprocess.Popen(
            [
                BIN / "qkd-notary",
                "serve",
                "--data-dir",
                self.data_dir,
                "--port",
                str(port),
                "--kme-url",
                kmes.urls["kme-b"],
                "--kme-cert",
                cert,
                "--kme-key",
                key,
                "--kme-ca",
                kmes.pki / "ca.crt",
                "--chain-rpc-url",
                rpc_url,
                "--anchor-mode",
                mode,
                "--batch-size",
                "256",
                "--batch-max-latency-s",
                "0.5",
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("notary did not start") from None
            time.sleep(0.1)
        token = (self.data_dir / "admin.token").read_text().strip()
        self.admin = {"Authorization": f"Bearer {token}"}

    def register(self, devices: list[str]) -> None:
        with httpx.Client(base_url=self.url, headers=self.admin) as http:
            for d in devices:
                http.post(
                    "/v1/admin/devices", json={"device_id": d, "sae_id": f"sae-{d}"}
                ).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Fleet:
    """One SDK client per device, each with its own KME client (closed together)."""

    def __init__(
        self,
        kmes: KMEPair,
        notary: Notary,
        devices: list[str],
        queues: Path,
        first_sequence: int = 1,
        key_stock: int = 1,
    ) -> None:
        self.kmes = [kmes.device_kme(f"sae-{d}") for d in devices]
        self.clients = [
            AsyncDeviceClient(
                d,
                kme=kme,
                notary=notary.url,
                firmware_digest=FIRMWARE,
                queue_dir=queues / d,
                notary_sae_id=NOTARY_SAE,
                retry=RetryPolicy(initial_s=0.05, max_s=1.0, deadline_s=60),
                first_sequence=first_sequence,
                key_stock=key_stock,
            )
            for d, kme in zip(devices, self.kmes, strict=True)
        ]

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
        for kme in self.kmes:
            await kme.aclose()


async def e2e(
    kmes: KMEPair,
    notary: Notary,
    devices: list[str],
    seconds: float,
    queues: Path,
    meter: CPUMeter,
    key_stock: int,
) -> tuple[float, float, int]:
    """Accepted/s through the SDK (KME round trips included); key bytes per message;
    number of envelopes accepted."""
    fleet = Fleet(kmes, notary, devices, queues, first_sequence=2, key_stock=key_stock)
    sent = 0
    stop_at = time.monotonic() + seconds

    async def run(c: AsyncDeviceClient) -> None:
        nonlocal sent
        n = 0
        while time.monotonic() < stop_at:
            await c.send(telemetry(n))
            n += 1
            sent += 1

    with meter:
        start = time.monotonic()
        await asyncio.gather(*(run(c) for c in fleet.clients))
        elapsed = time.monotonic() - start
    await fleet.aclose()  # drops what is left in the key stocks
    # Every key obtained was used by one message or was left in a stock at the end.
    used = sum(c.stats.key_bytes - c.stats.key_bytes_dropped for c in fleet.clients)
    return sent / elapsed, used / max(sent, 1), sent


async def enrol(
    kmes: KMEPair, notary: Notary, devices: list[str], queues: Path, timeout_s: float = 120
) -> None:
    """Before any clock starts: each device sends its first reading (sequence 1, its first
    firmware attestation) and the notary mirrors the registrations and attestations to the
    DeviceRegistry. The throughput figures describe the steady state, not a fleet's
    one-off enrolment (two registry transactions per device)."""
    fleet = Fleet(kmes, notary, devices, queues)
    await asyncio.gather(*(c.send(telemetry(-1)) for c in fleet.clients))
    await fleet.aclose()
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=notary.url, timeout=30) as http:
        while True:
            unmirrored = 0
            for d in devices:
                history = (await http.get(f"/v1/devices/{d}")).json()["history"]
                unmirrored += sum(event["chain_tx_hash"] is None for event in history)
            if not unmirrored:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{unmirrored} device events not on-chain in time")
            await asyncio.sleep(0.5)


async def seal_fleet(
    kmes: KMEPair,
    devices: list[str],
    per_device: int,
    *,
    mode: Mode = Mode.OTP,
    session_messages: int = 1,
    first_sequence: int = 10**9,
    notary_kem: KEMPublicKey | None = None,
) -> tuple[dict[str, list[bytes]], int]:
    """Envelopes sealed before any clock starts, keys obtained from KME A as the SDK would
    (``otp``: fresh keys per message; ``aead``/``hybrid``: one key per session); the JSON
    bodies per device, and the QKD key bytes obtained."""
    sealed: dict[str, list[bytes]] = {}
    key_bytes = 0
    for d in devices:
        kme = kmes.device_kme(f"sae-{d}")
        out = []
        session: AEADSession | None = None
        for i in range(per_device):
            plaintext = build_document(FIRMWARE, telemetry(i), key_delivery="local")
            sequence = first_sequence + i
            if mode is Mode.OTP:
                keys = await kme.enc_keys(
                    NOTARY_SAE, size=8 * keys_needed(Mode.OTP, len(plaintext))
                )
                key_bytes += sum(len(k.material) for k in keys)
                env = seal(
                    plaintext, sender=d, recipient="notary", sequence=sequence, mode=mode,
                    keys=keys,
                )  # fmt: skip
            else:
                if session is None or i % session_messages == 0:
                    (key,) = await kme.enc_keys(NOTARY_SAE, size=256)
                    key_bytes += len(key.material)
                    if mode is Mode.HYBRID:
                        assert notary_kem is not None
                        key = HybridKey.for_sender(key, notary_kem)
                    session = AEADSession(key)
                env = session.seal(plaintext, sender=d, recipient="notary", sequence=sequence)
            out.append(env.to_json().encode())
        await kme.aclose()
        sealed[d] = out
    return sealed, key_bytes


async def post_all(notary: Notary, sealed: dict[str, list[bytes]], meter: CPUMeter) -> float:
    """POST every device's envelopes in order, the devices concurrently; accepted/s.

    One kept-alive connection per device, as 50 real devices would hold. aiohttp rather
    than httpx: this load generator shares the two cores with the notary, and an httpx
    request costs it several times the CPU.
    """
    connector = aiohttp.TCPConnector(limit=len(sealed))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        url = f"{notary.url}/v1/telemetry"
        headers = {"Content-Type": "application/json"}

        async def run(d: str) -> int:
            ok = 0
            for body in sealed[d]:
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    ok += r.status == 202
            return ok

        with meter:
            start = time.monotonic()
            accepted = sum(await asyncio.gather(*(run(d) for d in sealed)))
            elapsed = time.monotonic() - start
    total = sum(len(bodies) for bodies in sealed.values())
    if accepted != total:
        raise RuntimeError(f"only {accepted} of {total} pre-sealed envelopes accepted")
    return accepted / elapsed


async def prefetched(
    kmes: KMEPair, notary: Notary, devices: list[str], per_device: int, meter: CPUMeter
) -> float:
    """Accepted/s with keys fetched and envelopes sealed before the clock starts."""
    sealed, _ = await seal_fleet(kmes, devices, per_device)
    return await post_all(notary, sealed, meter)


def open_us(mode: Mode, session_messages: int, n: int = 2000) -> float:
    """CPU per envelope of the pipeline's cryptographic step, in this process: for
    ``hybrid`` decapsulation and key combination (every envelope: the notary caches the
    QKD session key, not the combined key), then ``open_envelope`` and the record salt."""
    notary_kem = KEMPrivateKey.generate()
    plaintext = build_document(FIRMWARE, telemetry(0), key_delivery="local")
    work: list[tuple[Envelope, list[QKDKey]]] = []
    session: AEADSession | None = None
    qkd: QKDKey | None = None
    for i in range(n):
        if mode is Mode.OTP:
            keys = [QKDKey(str(uuid.uuid4()), os.urandom(keys_needed(mode, len(plaintext))))]
            env = seal(plaintext, sender="d", recipient="notary", sequence=i, mode=mode, keys=keys)
            work.append((env, keys))
            continue
        if session is None or i % session_messages == 0:
            qkd = QKDKey(str(uuid.uuid4()), os.urandom(32))
            key = HybridKey.for_sender(qkd, notary_kem.public_key) if mode is Mode.HYBRID else qkd
            session = AEADSession(key)
        assert qkd is not None
        work.append((session.seal(plaintext, sender="d", recipient="notary", sequence=i), [qkd]))
    started = time.process_time()
    for env, keys in work:
        if env.mode is Mode.HYBRID:
            keys = [HybridKey.for_recipient(keys[0], env.kem_params, notary_kem)]
        open_envelope(env, keys, expected_sender="d", expected_recipient="notary")
        record_salt(env, keys)
    return (time.process_time() - started) / n * 1e6


async def modes(
    kmes: KMEPair,
    notary: Notary,
    devices: list[str],
    per_device: int,
    session_messages: int,
    pids: dict[str, int],
) -> tuple[dict[Mode, dict[str, float]], dict[Mode, float], dict[Mode, float], int]:
    """Per mode: CPU seconds per process over its intake, key bytes per message, crypto
    us per envelope; and the envelopes each mode sent. The modes run twice, in the order
    otp, aead, hybrid, hybrid, aead, otp, so a warming (or cooling) notary does not favour
    whichever mode comes last."""
    notary_kem = KEMPublicKey.load(notary.data_dir / "kem-mlkem768.key.pub")
    trio = (Mode.OTP, Mode.AEAD, Mode.HYBRID)
    used: dict[Mode, dict[str, float]] = {m: dict.fromkeys(pids, 0.0) for m in trio}
    key_bytes = dict.fromkeys(trio, 0)
    for run, mode in enumerate((*trio, *reversed(trio))):
        sealed, spent = await seal_fleet(
            kmes, devices, per_device, mode=mode, session_messages=session_messages,
            first_sequence=(3 + run) * 10**9, notary_kem=notary_kem,
        )  # fmt: skip
        meter = CPUMeter(pids)
        await post_all(notary, sealed, meter)
        for name, seconds in meter.used.items():
            used[mode][name] += seconds
        key_bytes[mode] += spent
    envelopes = 2 * len(devices) * per_device
    key_per_msg = {m: key_bytes[m] / envelopes for m in trio}
    crypto = {m: open_us(m, session_messages) for m in trio}
    return used, key_per_msg, crypto, envelopes


async def time_to_anchor(
    kmes: KMEPair, notary: Notary, devices: list[str], per_device: int, queues: Path
) -> tuple[float, float]:
    """p50/p99 seconds from send() to the receipt reading ``anchored``."""
    fleet = Fleet(kmes, notary, devices, queues, first_sequence=2 * 10**9)
    started: dict[str, float] = {}
    anchored: dict[str, float] = {}

    async def run(c: AsyncDeviceClient) -> None:
        for n in range(per_device):
            t0 = time.monotonic()
            ack = await c.send(telemetry(n))
            started[ack.record_id] = t0
            await asyncio.sleep(0.2)

    async def poll(http: httpx.AsyncClient, done: asyncio.Event) -> None:
        while not (done.is_set() and len(anchored) == len(started)):
            for rid in [r for r in started if r not in anchored]:
                if (await http.get(f"/v1/records/{rid}")).json()["status"] == "anchored":
                    anchored[rid] = time.monotonic()
            await asyncio.sleep(0.05)

    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=notary.url, timeout=30) as http:
        poller = asyncio.create_task(poll(http, done))
        await asyncio.gather(*(run(c) for c in fleet.clients))
        done.set()
        await asyncio.wait_for(poller, 120)
    await fleet.aclose()
    latencies = sorted(anchored[r] - started[r] for r in started)
    return statistics.median(latencies), latencies[
        min(len(latencies) - 1, int(0.99 * len(latencies)))
    ]


PHASES = ("e2e", "prefetched", "modes", "latency")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--prefetched-per-device", type=int, default=40)
    parser.add_argument(
        "--key-stock",
        type=int,
        default=1,
        help="e2e: keys per enc_keys request, kept in the SDK's in-memory stock (default 1)",
    )
    parser.add_argument(
        "--session-messages",
        type=int,
        default=10,
        help="modes: messages per aead/hybrid session (default 10: a reading a minute)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated subset of " + ",".join(PHASES) + " (default: all)",
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    if not phases <= set(PHASES):
        parser.error(f"unknown phase(s): {','.join(sorted(phases - set(PHASES)))}")
    root = Path(tempfile.mkdtemp(prefix="bench-notary-"))
    queues = Path(
        tempfile.mkdtemp(
            prefix="bench-queues-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
    )
    names = [f"d{i:02d}" for i in range(args.devices)]
    kmes = KMEPair(root, [f"sae-{d}" for d in names], buffer_bits=400_000_000, link=False)
    anvil = AnvilNode()
    notaries: list[Notary] = []
    summary = [f"bench_notary: devices={args.devices} key_stock={args.key_stock}"]
    cpu_lines: list[str] = []
    try:
        kmes.start()
        supply_by_hand(kmes, blocks=160, block_bytes=64 * 1024)  # 10 MiB shared, 5 MiB per link end
        anvil.start()
        merkle = Notary(root, kmes, anvil.url, "merkle", 18_481)
        notaries.append(merkle)
        merkle.register(names)
        if phases & {"e2e", "prefetched", "modes"}:
            await enrol(kmes, merkle, names, queues / "enrol")
        pids = {
            "notary": merkle.process.pid,
            "kme-a": kmes.processes[0].pid,
            "kme-b": kmes.processes[1].pid,
            "client": os.getpid(),
        }
        if "e2e" in phases:
            meter = CPUMeter(pids)
            rate, key_per_msg, sent = await e2e(
                kmes, merkle, names, args.seconds, queues / "e2e", meter, args.key_stock
            )
            minimum = len(build_document(FIRMWARE, telemetry(0))) + 32
            summary += [
                f"e2e={rate:.0f} env/s",
                f"key={key_per_msg:.1f} B/msg (minimum {minimum} B = payload+32)",
            ]
            cpu_lines.append(meter.line("e2e", sent))
        if "prefetched" in phases:
            meter = CPUMeter(pids)
            rate = await prefetched(kmes, merkle, names, args.prefetched_per_device, meter)
            summary.append(f"prefetched={rate:.0f} env/s")
            cpu_lines.append(meter.line("prefetched", args.devices * args.prefetched_per_device))
        if "modes" in phases:
            used, key_per_msg, crypto, envelopes = await modes(
                kmes, merkle, names, args.prefetched_per_device, args.session_messages, pids
            )
            trio = (Mode.OTP, Mode.AEAD, Mode.HYBRID)

            def cpu_ms(mode: Mode, *names: str) -> float:
                return 1000 * sum(used[mode][n] for n in names) / envelopes

            summary.append(
                "modes otp/aead/hybrid: cpu_ms/env notary+kme_b="
                + "/".join(f"{cpu_ms(m, 'notary', 'kme-b'):.2f}" for m in trio)
                + " key_B/msg="
                + "/".join(f"{key_per_msg[m]:.1f}" for m in trio)
                + " open_us="
                + "/".join(f"{crypto[m]:.0f}" for m in trio)
                + f" (session={args.session_messages})"
            )
            cpu_lines += [
                f"  modes {m.value}: {envelopes} env; CPU ms/env "
                + " ".join(f"{n}={cpu_ms(m, n):.2f}" for n in pids)
                for m in trio
            ]
        if "latency" in phases:
            m50, m99 = await time_to_anchor(kmes, merkle, names, 4, queues / "lat-merkle")
            merkle.stop()
            batch = Notary(root, kmes, anvil.url, "batch", 18_482)
            notaries.append(batch)
            batch.register(names)
            b50, b99 = await time_to_anchor(kmes, batch, names, 4, queues / "lat-batch")
            summary.append(
                f"merkle_anchor_p50={m50:.2f}s p99={m99:.2f}s"
                f" batch_anchor_p50={b50:.2f}s p99={b99:.2f}s"
            )
    except BaseException:
        print(f"bench_notary failed; logs kept in {root}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(root, ignore_errors=True)
    finally:
        for n in notaries:
            if n.process.poll() is None:
                n.stop()
        anvil.stop()
        kmes.stop()
        shutil.rmtree(queues, ignore_errors=True)
    print(" ".join(summary))
    for line in cpu_lines:
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
