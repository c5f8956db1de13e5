#!/usr/bin/env python3
"""Benchmark (not a test): what the device install and sealing cost a device, per mode.

Prints one line::

    device: import_ms=A packages=B wheel_kb=C seal_us otp/aead/hybrid/ecdh=D/E/F/G
            wire_bytes otp/aead/hybrid/ecdh=H/I/J/K key_bytes otp/aead/hybrid=L/M/N

for a 64-byte reading:

* ``import_ms``: median of 5 cold imports (a fresh interpreter each, ``python -I``) of the
  SDK's whole public API, in a fresh venv that holds only the device install (the project
  wheel without extras, dependencies pinned by ``requirements.lock``);
* ``packages``: the distributions in that venv besides pip (the venv is made without pip,
  so every one counts: the project itself and what it pulled in);
* ``wheel_kb``: the wheel's size;
* ``seal_us``: CPU time per message to seal and serialise (binary form), per-session costs
  spread over the session length (below);
* ``wire_bytes``: the binary envelope per message, per-session bytes spread likewise;
* ``key_bytes``: QKD key material per message.

Session length: an ``aead`` session key is rotated after ``aead_max_messages`` messages or
``aead_max_age_s`` seconds (the ``DeviceClient`` defaults, 10,000 and 600 s), whichever
comes first; at one reading every ``--interval-s`` seconds (default 60, a typical meter)
that is 10 messages. ``ecdh`` is the classical baseline on the same schedule, with
pyca/cryptography: per session an ephemeral ECDH P-256 exchange with the notary's static
key and HKDF-SHA256 to a 32-byte key, its 65-byte public key sent once; per message
AES-256-GCM exactly as ``aead`` seals (same code, same header). ``hybrid`` is ``aead`` on the
same schedule plus, per session, an ML-KEM-768 encapsulation to the notary's key and the
HKDF combination (``qkd_channel.hybrid``); every one of its envelopes carries the
encapsulation (1096 bytes), so each opens on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from qkd_channel.envelope import AEADSession, Mode, keys_needed, seal
from qkd_channel.hybrid import HybridKey, KEMPrivateKey
from qkd_channel.keys import QKDKey
from qkd_device import DeviceClient

ROOT = Path(__file__).resolve().parents[1]
READING_BYTES = 64
#: What the import probe loads: every public name of the SDK.
IMPORT_PROBE = (
    "import time\n"
    "t = time.perf_counter()\n"
    "import qkd_device\n"
    "[getattr(qkd_device, name) for name in qkd_device.__all__]\n"
    "print((time.perf_counter() - t) * 1000)\n"
)


def build_wheel(out: Path) -> Path:
    """The project wheel, built from a copy of the sources (the work tree stays clean)."""
    source = out / "src"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for tree in ("qkd_channel", "qkd_device", "notary", "atomic_swap", "contracts/build"):
        shutil.copytree(
            ROOT / tree,
            source / tree,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("qkd_notary-*.whl")
    return wheel


def device_venv(wheel: Path, where: Path) -> Path:
    """A venv without pip holding the wheel's base install (no extras), pinned by the lock
    file; returns its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    lock = ROOT / "requirements.lock"
    subprocess.run([*pip, "-c", str(lock), str(wheel)], check=True, capture_output=True)
    return python


def distributions(python: Path) -> list[str]:
    probe = (
        "import importlib.metadata as m\n"
        "print(*sorted(d.metadata['Name'] for d in m.distributions()))"
    )
    done = subprocess.run([str(python), "-I", "-c", probe], check=True, capture_output=True)
    return [name for name in done.stdout.decode().split() if name != "pip"]


def import_ms(python: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [str(python), "-I", "-c", IMPORT_PROBE], check=True, capture_output=True, cwd="/"
        )
        times.append(float(done.stdout))
    return statistics.median(times)


def session_length(interval_s: float) -> int:
    defaults = inspect.signature(DeviceClient).parameters
    max_messages = defaults["aead_max_messages"].default
    max_age_s = defaults["aead_max_age_s"].default
    return max(1, min(int(max_messages), int(max_age_s // interval_s)))


def cpu_us(work: Callable[[], object], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        work()
    return (time.process_time() - started) / n * 1e6


def _key(nbytes: int) -> QKDKey:
    return QKDKey(str(uuid.uuid4()), os.urandom(nbytes))


class OTPDevice:
    """Fresh QKD keys for every message (obtained beforehand: the KME's work, not sealing)."""

    def __init__(self, messages: int) -> None:
        self.keys = iter([_key(keys_needed(Mode.OTP, READING_BYTES)) for _ in range(messages)])
        self.sent = 0

    def seal(self, reading: bytes) -> bytes:
        self.sent += 1
        return seal(
            reading, sender="meter-7", recipient="notary", sequence=self.sent, mode=Mode.OTP,
            keys=[next(self.keys)],
        ).to_bytes()  # fmt: skip


class AEADDevice:
    """A QKD session key from the KME (no key exchange on the device), rotated per session;
    in ``hybrid`` combined with a fresh ML-KEM-768 encapsulation to the notary's key."""

    def __init__(self, session: int, messages: int, *, hybrid: bool = False) -> None:
        self.session, self.sent = session, 0
        self.keys = iter([_key(32) for _ in range(messages // session + 1)])
        self.notary_kem = KEMPrivateKey.generate().public_key if hybrid else None
        self.current = self._session()

    def _session(self) -> AEADSession:
        key = next(self.keys)
        if self.notary_kem is not None:
            return AEADSession(HybridKey.for_sender(key, self.notary_kem))
        return AEADSession(key)

    def seal(self, reading: bytes) -> bytes:
        if self.sent and self.sent % self.session == 0:
            self.current = self._session()
        self.sent += 1
        return self.current.seal(
            reading, sender="meter-7", recipient="notary", sequence=self.sent
        ).to_bytes()


class ECDHDevice:
    """The classical baseline: an ECDH P-256 exchange per session instead of a QKD key,
    then exactly the ``aead`` sealing, so the difference is what the key exchange costs."""

    def __init__(self, session: int) -> None:
        self.session, self.sent = session, 0
        self.notary_public = ec.generate_private_key(ec.SECP256R1()).public_key()
        self.current: AEADSession | None = None

    def seal(self, reading: bytes) -> bytes:
        if self.current is None or self.sent % self.session == 0:
            ephemeral = ec.generate_private_key(ec.SECP256R1())
            shared = ephemeral.exchange(ec.ECDH(), self.notary_public)
            hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"qkd-notary/ecdh-bench")
            self.current = AEADSession(QKDKey(str(uuid.uuid4()), hkdf.derive(shared)))
        self.sent += 1
        return self.current.seal(
            reading, sender="meter-7", recipient="notary", sequence=self.sent
        ).to_bytes()


#: A minimal HTTP/1.1 server (uvicorn, in its own process) for the asyncio HTTP comparison.
_ECHO_SERVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""


def async_http_cpu_us(requests: int = 2000, concurrency: int = 20) -> dict[str, float]:
    """Client CPU per ``POST`` of each asyncio HTTP face (``-v`` only; needs the server
    extra for aiohttp and uvicorn): what running the urllib3 pool in worker threads costs a
    device, or a hub, against aiohttp."""
    import asyncio
    import socket

    from qkd_channel.httpio import AiohttpAsyncHTTP, ThreadedAsyncHTTP

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)

        async def measure(face: Any) -> float:
            async def worker(n: int) -> None:
                for _ in range(n):
                    await face.request(
                        "POST", "/v1/telemetry", b"{}", {"Content-Type": "application/json"}
                    )

            await worker(10)  # connections open, threads started
            started = time.process_time()
            await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
            spent = time.process_time() - started
            await face.aclose()
            return spent / requests * 1e6

        return {
            "threads": asyncio.run(measure(ThreadedAsyncHTTP(url, concurrency=concurrency))),
            "aiohttp": asyncio.run(measure(AiohttpAsyncHTTP(url))),
        }
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval-s", type=float, default=60.0, help="seconds between readings")
    parser.add_argument("--messages", type=int, default=5000, help="messages timed per mode")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the details too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp) / "wheel")
        python = device_venv(wheel, Path(tmp) / "venv")
        packages = distributions(python)
        imported = import_ms(python)
        wheel_kb = wheel.stat().st_size / 1024

    reading = os.urandom(READING_BYTES)
    session = session_length(args.interval_s)
    otp, aead = OTPDevice(args.messages + 1), AEADDevice(session, args.messages + 1)
    hybrid = AEADDevice(session, args.messages + 1, hybrid=True)
    ecdh = ECDHDevice(session)
    seal_us = {
        "otp": cpu_us(lambda: otp.seal(reading), args.messages),
        "aead": cpu_us(lambda: aead.seal(reading), args.messages),
        "hybrid": cpu_us(lambda: hybrid.seal(reading), args.messages),
        "ecdh": cpu_us(lambda: ecdh.seal(reading), args.messages),
    }
    wire = {
        "otp": len(otp.seal(reading)),
        "aead": len(aead.seal(reading)),
        "hybrid": len(hybrid.seal(reading)),  # the encapsulation rides in every envelope
        "ecdh": len(ecdh.seal(reading)) + 65 / session,  # the ephemeral key, once a session
    }
    key_bytes = {
        "otp": keys_needed(Mode.OTP, READING_BYTES),
        "aead": 32 / session,
        "hybrid": 32 / session,
    }

    def row(values: dict[str, float], modes: tuple[str, ...], digits: int) -> str:
        return "/".join(
            f"{values[m]:.{digits}f}".rstrip("0").rstrip(".") if m in values else "-" for m in modes
        )

    four = ("otp", "aead", "hybrid", "ecdh")
    if args.verbose:
        print(f"# venv packages: {', '.join(packages)}")
        print(f"# session: {session} messages (one reading every {args.interval_s:g} s)")
        cost = async_http_cpu_us()
        print(
            f"# asyncio HTTP client CPU per request (20 in flight, local uvicorn): "
            f"worker threads {cost['threads']:.0f} us, aiohttp {cost['aiohttp']:.0f} us"
        )
    print(
        f"device: import_ms={imported:.0f} packages={len(packages)} wheel_kb={wheel_kb:.0f} "
        f"seal_us otp/aead/hybrid/ecdh={row(seal_us, four, 1)} "
        f"wire_bytes otp/aead/hybrid/ecdh={row(wire, four, 1)} "
        f"key_bytes otp/aead/hybrid={row(key_bytes, ('otp', 'aead', 'hybrid'), 1)}"
    )


if __name__ == "__main__":
    main()
