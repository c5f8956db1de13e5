"""``<data_dir>/chain.json``: where the contracts of this notary live.

Written once, atomically (temporary file + rename), after both contracts are deployed
and confirmed, so a failed start never leaves a half-written deployment behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_utils.address import is_address, to_checksum_address

from notary.errors import ChainMisconfigured

__all__ = ["DEPLOYMENT_FILE", "Deployment", "load_deployment", "save_deployment"]

DEPLOYMENT_FILE = "chain.json"
_FORMAT = "qkd-notary-deployment/1"


@dataclass(frozen=True)
class Deployment:
    """Addresses (EIP-55) of the notary's contracts on one chain."""

    chain_id: int
    registry: str
    notary: str
    deployer: str | None = None
    registry_tx: str | None = None
    notary_tx: str | None = None
    block_number: int | None = None
    #: Hash of block 0 when the contracts were deployed: a node with another genesis
    #: (a reset development chain reuses the chain ID) no longer holds them.
    genesis_hash: str | None = None


def load_deployment(data_dir: Path) -> Deployment | None:
    """The recorded deployment, ``None`` if there is none; malformed files refuse to load."""
    path = data_dir / DEPLOYMENT_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text("utf-8"))
        if document.pop("format") != _FORMAT:
            raise ValueError("unknown format")
        deployment = Deployment(**document)
        if not (is_address(deployment.registry) and is_address(deployment.notary)):
            raise ValueError("bad address")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ChainMisconfigured(f"{path} is not a valid deployment file: {exc}") from exc
    return Deployment(
        **{
            **asdict(deployment),
            "registry": to_checksum_address(deployment.registry),
            "notary": to_checksum_address(deployment.notary),
        }
    )


def save_deployment(data_dir: Path, deployment: Deployment) -> Path:
    """Write ``chain.json`` atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEPLOYMENT_FILE
    text = json.dumps({"format": _FORMAT, **asdict(deployment)}, indent=2) + "\n"
    fd, scratch = tempfile.mkstemp(dir=data_dir, prefix=".chain.json.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return path
