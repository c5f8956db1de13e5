"""A party's local swap records: the secret, the terms, the contracts, and what happened.

One JSON file per swap under ``HOME/swaps`` (mode 0600: the initiator's file holds the secret
until it is revealed on chain), plus envelope sequence counters: the next sequence number we
send to each peer SAE and the highest one we accepted from it (replay protection).
"""

from __future__ import annotations

import enum
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from atomic_swap.errors import EnvelopeRefused, SwapStateError

__all__ = ["SwapRecord", "SwapState", "SwapStore"]


class SwapState(enum.StrEnum):
    """Lifecycle of a swap as one party sees it; :meth:`SwapRecord.advance` enforces it."""

    CREATED = "created"  # our HTLC exists but is not funded yet (``initiate --resume``)
    INITIATED = "initiated"  # initiator: HTLC funded, offer written
    PARTICIPATED = "participated"  # participant: counter-HTLC funded, acceptance written
    REDEEMED = "redeemed"  # we claimed the counterparty's HTLC
    REFUNDED = "refunded"  # we took our own HTLC back after its deadline


_ALLOWED = {
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
    own_app_id: int
    offer: dict[str, Any] | None = None
    acceptance: dict[str, Any] | None = None
    secret: str | None = None
    counter_app_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def advance(self, to: SwapState, event: dict[str, Any]) -> None:
        if to not in _ALLOWED[self.state]:
            raise SwapStateError(f"swap {self.swap_id} is {self.state}; cannot become {to}")
        self.state = to
        self.events.append({"state": str(to), **event})


class SwapStore:
    """Swap records and envelope counters in a directory owned by one party."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)  # holds unrevealed secrets
        (home / "swaps").mkdir(exist_ok=True, mode=0o700)
        self._lock = FileLock(str(home / ".lock"))

    def _write(self, path: Path, data: Any) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)

    def save(self, record: SwapRecord) -> None:
        with self._lock:
            self._write(self.home / "swaps" / f"{record.swap_id}.json", asdict(record))

    def load(self, swap_id: str) -> SwapRecord:
        try:
            canonical = str(uuid.UUID(swap_id))
        except ValueError:
            raise SwapStateError(f"malformed swap ID {swap_id!r}") from None
        path = self.home / "swaps" / f"{canonical}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SwapStateError(f"no local record of swap {swap_id} in {self.home}") from None
        data["state"] = SwapState(data["state"])
        return SwapRecord(**data)

    def find_by_app(self, app_id: int) -> SwapRecord | None:
        for record in self.all():
            if app_id in (record.own_app_id, record.counter_app_id):
                return record
        return None

    def all(self) -> list[SwapRecord]:
        records = []
        for path in sorted((self.home / "swaps").glob("*.json")):
            records.append(self.load(path.stem))
        return records

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
            self._write(self.home / "sequences.json", counters)
            return seq

    def accept_sequence(self, peer: str, sequence: int) -> None:
        """Record ``sequence`` from ``peer``; refuse it if not newer than the last accepted."""
        with self._lock:
            counters = self._counters()
            last = counters["received"].get(peer, 0)
            if sequence <= last:
                raise EnvelopeRefused(
                    f"replayed envelope: sequence {sequence} from {peer} is not newer than {last}"
                )
            counters["received"][peer] = sequence
            self._write(self.home / "sequences.json", counters)
