"""The three command lines follow one set of conventions (``qkd_channel.clikit``): every
option has its ``<TOOL>_<FLAG>`` variable and shows it, defaults are shown, ``--version``
answers, ``--help`` imports none of the heavy libraries, and Ctrl-C ends with exit 130
and no traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from qkd_channel.clikit import ALIASES, env_name

BIN = Path(sys.executable).parent
TOOLS = {
    "qkd-kme": ("qkd_channel.cli", "QKD_KME"),
    "qkd-notary": ("notary.cli", "QKD_NOTARY"),
    "qswap": ("atomic_swap.cli", "QSWAP"),
}


def _commands(
    group: click.Group, ctx: click.Context, path: str
) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{path} {name} does not load"
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command), f"{path} {name}")


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_option_has_the_rule_variable_and_shows_it(tool: str) -> None:
    module, prefix = TOOLS[tool]
    main = __import__(module, fromlist=["main"]).main
    seen: dict[str, str] = {}
    checked = 0
    for path, command in _commands(main, click.Context(main), tool):
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("help", "version"):
                continue
            expected = env_name(prefix, param)
            assert param.envvar == [expected, *ALIASES.get(expected, ())], (path, param.opts)
            assert param.show_envvar, (path, param.opts)
            # One option, one variable: the same flag means the same thing everywhere.
            long = next(o for o in param.opts if o.startswith("--"))
            assert seen.setdefault(long, expected) == expected
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_version_and_fast_help(tool: str) -> None:
    version = subprocess.run(
        [str(BIN / tool), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.returncode == 0 and version.stdout.startswith(f"{tool}, version ")
    # --help must not pay for web3, py-evm, FastAPI or numpy: list what it imported.
    module, _ = TOOLS[tool]
    probe = (
        "import sys\n"
        f"from {module} import main\n"
        "try:\n    main.main(['--help'], prog_name='x')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('web3', 'eth', 'fastapi', 'numpy', 'scipy', 'algosdk')"
        " if m in sys.modules)\n"
        "print('HEAVY', ','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert "HEAVY \n" in done.stdout or done.stdout.rstrip().endswith("HEAVY"), done.stdout


def test_help_shows_defaults() -> None:
    done = subprocess.run(
        [str(BIN / "qkd-notary"), "plan", "--help"], capture_output=True, text=True, timeout=60
    )
    text = " ".join(done.stdout.split())
    assert "env var: QKD_NOTARY_BUFFER_BITS; default: 1000000" in text


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP server that accepts and never answers: a command talking to it just waits."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_ctrl_c_exits_130_without_a_traceback(tool: str, blackhole: str, tmp_path: Path) -> None:
    """Each tool waiting on a server that never answers, interrupted."""
    if tool == "qkd-notary":
        command = [
            "receipt",
            "verify",
            "0x" + "ab" * 32,
            "--notary",
            blackhole,
            "--rpc-url",
            blackhole,
        ]
    elif tool == "qkd-kme":
        assert _tool("qkd-kme", "certs", "--out", str(tmp_path), "--sae", "dev").returncode == 0
        command = [
            "status", "notary", "--url", blackhole.replace("http", "https"),
            "--cert", str(tmp_path / "sae-dev.crt"), "--key", str(tmp_path / "sae-dev.key"),
            "--ca", str(tmp_path / "ca.crt"),
        ]  # fmt: skip
    else:
        account = tmp_path / "account.json"
        assert _tool("qswap", "account", "new", str(account)).returncode == 0
        command = ["account", "show", str(account), "--algod-url", blackhole]
    process = subprocess.Popen(
        [str(BIN / tool), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell running the suite in the background ignores SIGINT, and children inherit
        # that: give the tool the default handler, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3.0)  # past the imports, into the call that waits
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    assert "Traceback" not in out + err and err.strip().endswith("interrupted")
