"""Which optional parts of the install a command needs, and the message when one is missing.

``pip install qkd-notary`` is the device install (the envelope, the KME client, the device
SDK and ``qkd-device``). The servers and tools are behind extras::

    server   the HTTP services and their CLIs: FastAPI/uvicorn, pydantic, click, aiohttp...
    chain    the EVM side of the notary: web3, the embedded py-evm chain
    sim      the simulated QKD link: numpy, scipy, ducc0, matplotlib
    swap     the Algorand atomic-swap tool (includes server)
    all      everything (what ``make demo`` and ``make test`` install)

A console script whose extra is missing prints which one to install and exits with
:data:`EXIT_MISSING_EXTRA`, instead of a ``ModuleNotFoundError`` traceback. The check looks
for marker modules with ``importlib.util.find_spec``: it imports nothing itself.
"""

from __future__ import annotations

import importlib
import sys
from importlib.util import find_spec

__all__ = [
    "EXIT_MISSING_EXTRA",
    "EXTRAS",
    "MissingExtra",
    "exit_unless_installed",
    "launch",
    "require",
]

#: Exit status of a command run without the extra it needs (2 is a usage error, 1 a
#: user error, so a script can tell "install something" apart from both).
EXIT_MISSING_EXTRA = 3
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

#: Modules whose presence shows an extra is installed.
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("fastapi", "uvicorn", "pydantic", "click", "aiohttp", "httpx"),
    "chain": ("web3", "eth_tester", "eth_account"),
    "sim": ("numpy", "scipy", "ducc0"),
    "swap": ("algosdk", "algojig", "msgpack"),
}


class MissingExtra(Exception):
    """A command needs an optional part of the install that is not there."""

    def __init__(self, command: str, extras: list[str]) -> None:
        spec = ",".join(extras)
        super().__init__(
            f"{command} needs the {' and '.join(repr(e) for e in extras)} "
            f"extra{'s' if len(extras) > 1 else ''} of qkd-notary: "
            f"pip install 'qkd-notary[{spec}]'"
        )
        self.extras = extras


def require(command: str, *extras: str) -> None:
    """Raise ``MissingExtra`` naming every one of ``extras`` that is not installed."""
    missing = [e for e in extras if any(find_spec(m) is None for m in EXTRAS[e])]
    if missing:
        raise MissingExtra(command, missing)


def exit_unless_installed(command: str, *extras: str) -> None:
    """In a command: one line on stderr and exit :data:`EXIT_MISSING_EXTRA` if an extra is
    missing (a subcommand that needs more than its console script, like ``demo``)."""
    try:
        require(command, *extras)
    except MissingExtra as exc:
        print(f"Error: {exc}", file=sys.stderr)  # noqa: T201 - a console script's one line
        raise SystemExit(EXIT_MISSING_EXTRA) from None


def launch(command: str, extras: tuple[str, ...], target: str) -> None:
    """Run the console script ``target`` (``module:function``) if ``extras`` are there.

    Ctrl-C while the tool is still importing ends like Ctrl-C in the tool itself: one line,
    exit 130, no traceback.
    """
    exit_unless_installed(command, *extras)
    module, _, function = target.partition(":")
    try:
        getattr(importlib.import_module(module), function)()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201 - a console script's one line
        raise SystemExit(EXIT_INTERRUPTED) from None
