"""The device install as a device gets it: the project wheel without extras, in a clean
venv (dependencies pinned by requirements.lock), talking to a running notary.

The wheel and venv are built by the same functions ``scripts/bench_device.py`` measures
with, so the benchmark's venv is the one these tests prove works.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from qkd_channel.extras import EXIT_MISSING_EXTRA
from qkd_channel.kme.certs import sae_paths
from tests.notary.sdk_stack import FIRMWARE, NOTARY_SAE, Stack, make_pki, running_stack

ROOT = Path(__file__).resolve().parents[2]
#: What the device install may pull in (the project itself included): at most 8.
DEVICE_PACKAGES = {
    "cffi",
    "cryptography",
    "filelock",
    "paho-mqtt",
    "pycparser",
    "qkd-notary",
    "safe-pysha3",
    "urllib3",
}
#: Modules of the server side that must not load on a device.
SERVER_MODULES = ("notary", "atomic_swap", "pydantic", "httpx", "aiohttp", "web3", "numpy")


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_device", ROOT / "scripts/bench_device.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def device_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bench = _bench()
    root = tmp_path_factory.mktemp("device-install")
    python: Path = bench.device_venv(bench.build_wheel(root / "wheel"), root / "venv")
    return python


def run(python: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", *args], capture_output=True, text=True, timeout=120, cwd="/", **kwargs
    )  # type: ignore[call-overload, no-any-return]


def test_the_device_install_is_eight_packages_and_no_server(device_python: Path) -> None:
    bench = _bench()
    assert set(bench.distributions(device_python)) == DEVICE_PACKAGES
    probe = (
        "import sys, qkd_device\n"
        "[getattr(qkd_device, name) for name in qkd_device.__all__]\n"
        f"print([m for m in {SERVER_MODULES!r} if m in sys.modules or "
        "any(k.startswith(m + '.') for k in sys.modules)])\n"
        "print('asyncio' in sys.modules, 'paho' in sys.modules)\n"
    )
    done = run(device_python, "-c", probe)
    assert done.returncode == 0, done.stderr
    server, lazy = done.stdout.splitlines()
    assert server == "[]"
    assert lazy == "False False"  # a blocking HTTP device loads neither asyncio nor paho


@pytest.mark.parametrize(
    ("command", "extras"),
    [("qkd-notary", "server,chain"), ("qkd-kme", "server,sim"), ("qswap", "swap")],
)
def test_commands_whose_extra_is_missing_say_which_to_install(
    device_python: Path, command: str, extras: str
) -> None:
    done = subprocess.run(
        [str(device_python.with_name(command)), "--help"], capture_output=True, text=True
    )
    assert done.returncode == EXIT_MISSING_EXTRA
    assert f"pip install 'qkd-notary[{extras}]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pki = make_pki(tmp_path_factory.mktemp("wheel-pki"), devices=2)
    with running_stack(tmp_path_factory.mktemp("wheel-stack"), pki, devices=2) as s:
        yield s


def test_qkd_device_from_the_wheel_sends_a_reading_to_a_running_notary(
    device_python: Path, stack: Stack, tmp_path: Path
) -> None:
    cert, key = sae_paths(stack.pki, "sae-0")
    options = {
        "--device": "dev-0",
        "--kme": stack.kmes.urls["a"],
        "--cert": str(cert),
        "--key": str(key),
        "--ca": str(stack.pki / "ca.crt"),
        "--notary": stack.notary_url,
        "--notary-sae": NOTARY_SAE,
        "--firmware-digest": FIRMWARE,
        "--queue": str(tmp_path / "queue"),
    }
    done = subprocess.run(
        [
            str(device_python.with_name("qkd-device")),
            *("--json", "send", '{"from": "wheel"}'),
            *(part for option in options.items() for part in option),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sent = json.loads(done.stdout)
    assert sent["sequence"] == 1 and sent["record_id"].startswith("0x")


def test_the_asyncio_sdk_runs_on_worker_threads_without_aiohttp(
    device_python: Path, stack: Stack, tmp_path: Path
) -> None:
    """No aiohttp on a device: the asyncio clients (KME and notary) use urllib3 in threads."""
    cert, key = sae_paths(stack.pki, "sae-1")
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from qkd_device import AsyncDeviceClient, AsyncKMEClient

        async def main():
            kme = AsyncKMEClient({stack.kmes.urls["a"]!r}, cert={str(cert)!r},
                                 key={str(key)!r}, ca={str(stack.pki / "ca.crt")!r})
            async with kme, AsyncDeviceClient(
                "dev-1", kme=kme, notary={stack.notary_url!r}, firmware_digest={FIRMWARE!r},
                queue_dir={str(tmp_path / "aq")!r}, notary_sae_id={NOTARY_SAE!r},
            ) as device:
                acks = await asyncio.gather(*(device.send({{"n": n}}) for n in range(4)))
            print(sorted(a.sequence for a in acks), "aiohttp" in sys.modules)

        asyncio.run(main())
        """
    )
    done = run(device_python, "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[1,", "2,", "3,", "4]", "False"]
