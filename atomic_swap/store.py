"""A party's local swap records: the secret, the terms, the contracts, and what happened.

Everything lives in the party's swap home (mode 0700), each file written whole, fsynced and
renamed into place (the directory fsynced too), so a crash or power cut leaves either the old
or the new version:

* ``swaps/SWAP_ID.json`` — one record per swap (the initiator's holds the secret until it is
  revealed on chain). A record names the network of each of its contracts, so a contract is
  found by **(genesis hash, application ID)**: two networks may well hand out the same ID.
* ``terms/SHA256.json`` — the terms of every sealed envelope we opened, by the envelope's
  digest. The KME hands each key out once, so without this an opened offer or acceptance
  could not be opened again: with it, any later step can be retried without the KME.
* ``sequences.json`` — the next envelope sequence number we send to each peer SAE and the
  highest one we accepted from it (replay protection).
"""

from __future__ import annotations

import enum
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from atomic_swap.errors import EnvelopeRefused, SwapStateError

__all__ = ["SwapRecord", "SwapState", "SwapStore", "write_private"]


class SwapState(enum.StrEnum):
    """Lifecycle of a swap as one party sees it; :meth:`SwapRecord.advance` enforces it."""

    PENDING = "pending"  # terms fixed (initiator: secret made), no contract of ours yet
    CREATED = "created"  # our HTLC exists but is not funded yet (``--resume`` funds it)
    INITIATED = "initiated"  # initiator: HTLC funded, offer written
    PARTICIPATED = "participated"  # participant: counter-HTLC funded, acceptance written
    REDEEMED = "redeemed"  # we claimed the counterparty's HTLC
    REFUNDED = "refunded"  # we took our own HTLC back after its deadline


_ALLOWED = {
    SwapState.PENDING: {SwapState.CREATED},
    SwapState.CREATED: {SwapState.INITIATED, SwapState.PARTICIPATED},
    SwapState.INITIATED: {SwapState.REDEEMED, SwapState.REFUNDED},
    SwapState.PARTICIPATED: {SwapState.REDEEMED, SwapState.REFUNDED},
    SwapState.REDEEMED: set(),
    SwapState.REFUNDED: set(),
}


@dataclass
class SwapRecord:
    """What one party remembers about one swap."""

    swap_id: str
    role: str  # "initiator" or "participant"
    state: SwapState
    hashlock: str
    own_app_id: int | None
    offer: dict[str, Any] | None = None
    acceptance: dict[str, Any] | None = None
    secret: str | None = None
    counter_app_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    own_network: dict[str, str] | None = None
    """Genesis ID and hash of the network our HTLC lives on."""
    counter_network: dict[str, str] | None = None
    """Genesis ID and hash of the network the counterparty's HTLC lives on."""
    lock_seconds: int | None = None
    """Initiator: the lock asked for, applied when the HTLC is created."""

    def advance(self, to: SwapState, event: dict[str, Any]) -> None:
        if to not in _ALLOWED[self.state]:
            raise SwapStateError(f"swap {self.swap_id} is {self.state}; cannot become {to}")
        self.state = to
        self.events.append({"state": str(to), **event})

    def holds(self, genesis_hash: str, app_id: int) -> str | None:
        """``"own"`` or ``"counter"`` if this swap has application ``app_id`` on that network."""
        for side, app, network in (
            ("own", self.own_app_id, self.own_network),
            ("counter", self.counter_app_id, self.counter_network),
        ):
            if app == app_id and network is not None and network["genesis_hash"] == genesis_hash:
                return side
        return None


def write_private(path: Path, data: Any) -> None:
    """Write JSON to ``path`` (mode 0600) durably: temp file, fsync, rename, fsync the dir."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_PREFIX = re.compile(r"^[0-9a-f-]{4,36}$")


class SwapStore:
    """Swap records, opened terms and envelope counters in a directory owned by one party."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)  # holds unrevealed secrets
        for sub in ("swaps", "terms"):
            (home / sub).mkdir(exist_ok=True, mode=0o700)
        self._lock = FileLock(str(home / ".lock"))

    def save(self, record: SwapRecord) -> None:
        with self._lock:
            write_private(self.home / "swaps" / f"{record.swap_id}.json", asdict(record))

    def resolve(self, swap_id: str) -> str:
        """The full swap ID for ``swap_id`` or a unique prefix of one (4+ characters)."""
        wanted = swap_id.strip().lower()
        try:
            return str(uuid.UUID(wanted))
        except ValueError:
            pass
        if not _PREFIX.match(wanted):
            raise SwapStateError(f"malformed swap ID {swap_id!r}")
        matches = [
            p.stem for p in (self.home / "swaps").glob("*.json") if p.stem.startswith(wanted)
        ]
        if not matches:
            raise SwapStateError(f"no local record of swap {swap_id} in {self.home}")
        if len(matches) > 1:
            raise SwapStateError(
                f"swap ID prefix {swap_id} is ambiguous: " + ", ".join(sorted(matches))
            )
        return matches[0]

    def load(self, swap_id: str) -> SwapRecord:
        canonical = self.resolve(swap_id)
        path = self.home / "swaps" / f"{canonical}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SwapStateError(f"no local record of swap {swap_id} in {self.home}") from None
        data["state"] = SwapState(data["state"])
        known = set(SwapRecord.__dataclass_fields__)
        return SwapRecord(**{k: v for k, v in data.items() if k in known})

    def get(self, swap_id: str) -> SwapRecord | None:
        """The record of ``swap_id`` (a full ID) if we have one."""
        if not (self.home / "swaps" / f"{swap_id}.json").exists():
            return None
        return self.load(swap_id)

    def find_by_app(self, genesis_hash: str, app_id: int) -> tuple[SwapRecord, str] | None:
        """The swap holding application ``app_id`` on the network with ``genesis_hash``."""
        for record in self.all():
            side = record.holds(genesis_hash, app_id)
            if side is not None:
                return record, side
        return None

    def all(self) -> list[SwapRecord]:
        return [self.load(p.stem) for p in sorted((self.home / "swaps").glob("*.json"))]

    # -- opened envelopes ----------------------------------------------------------------

    def opened_terms(self, digest: str) -> dict[str, Any] | None:
        """What an envelope with this digest opened to, if we opened it before."""
        path = self.home / "terms" / f"{digest}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def keep_terms(self, digest: str, opened: dict[str, Any]) -> None:
        with self._lock:
            write_private(self.home / "terms" / f"{digest}.json", opened)

    # -- envelope sequence numbers ---------------------------------------------------------

    def _counters(self) -> dict[str, dict[str, int]]:
        path = self.home / "sequences.json"
        if not path.exists():
            return {"sent": {}, "received": {}}
        data: dict[str, dict[str, int]] = json.loads(path.read_text())
        return data

    def next_sequence(self, peer: str) -> int:
        """Reserve the next sequence number for an envelope to ``peer``."""
        with self._lock:
            counters = self._counters()
            seq = counters["sent"].get(peer, 0) + 1
            counters["sent"][peer] = seq
            write_private(self.home / "sequences.json", counters)
            return seq

    def check_sequence(self, peer: str, sequence: int) -> None:
        """Refuse ``sequence`` from ``peer`` if it is not newer than the last accepted."""
        last = self._counters()["received"].get(peer, 0)
        if sequence <= last:
            raise EnvelopeRefused(
                f"replayed envelope: sequence {sequence} from {peer} is not newer than {last}"
            )

    def accept_sequence(self, peer: str, sequence: int) -> None:
        """Record ``sequence`` from ``peer``; refuse it if not newer than the last accepted."""
        with self._lock:
            self.check_sequence(peer, sequence)
            counters = self._counters()
            counters["received"][peer] = sequence
            write_private(self.home / "sequences.json", counters)
