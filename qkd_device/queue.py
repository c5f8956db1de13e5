"""The device's persistent send queue: sealed envelopes survive a power cycle unchanged.

Why a queue of *sealed* envelopes and not of telemetry: the keys an envelope consumed were
handed out once by the device's KME and are gone from it. Re-sealing the same reading after
a crash would spend new keys and produce a second record; resending the very same bytes is
harmless instead, because the notary answers a byte-identical resend with ``409 replay``
naming the record it already made (record IDs are derived from authenticated header fields).

Layout of the queue directory (one per device)::

    state.json            {"device_id": ..., "next_sequence": N}
    pending/<seq>.json    {"record_id": "0x...", "envelope": {...JSON form...},
                           "plaintext": "<base64>", "origin": "0x..." | null,
                           "salt": "<base64>"}
    rejected/<seq>.json   the same, plus the notary's final answer (dead letters)
    .lock                 held by the one client object using the directory

Every write is atomic and durable: a temporary file is written and ``fsync``\\ ed, renamed
over the target, and the directory is ``fsync``\\ ed, so after power loss each file is
either the old or the new version. The sequence counter is persisted *before* the envelope
using that number is sealed, so a crash can leave a gap in the sequence (harmless: the
notary only needs it to rise) but never reuses a number.

The plaintext is kept next to its envelope for one purpose: if the notary crashed after it
had fetched (and so spent) the envelope's keys but before it stored the record, the resend
is refused as unauthenticated, and the only way not to lose the reading is to seal it again
under fresh keys (see :func:`qkd_device.core.judge`). The queue directory therefore holds
unsent readings in the clear, like any sensor buffer, and is created with mode 0700. The
record's salt (derived from the envelope's keys, which are spent after sealing) is kept
beside them for the same reason: so the device can check its receipt after a restart.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from qkd_channel.envelope import Envelope
from qkd_channel.errors import EnvelopeRejected
from qkd_device.errors import QueueError

__all__ = ["QueuedEnvelope", "SendQueue"]

_STATE = "state.json"
_ENTRY = re.compile(r"^(\d{20})\.json$")


@dataclass(frozen=True)
class QueuedEnvelope:
    """A sealed envelope waiting to be delivered, and the record ID it will become."""

    envelope: Envelope
    record_id: str
    plaintext: bytes = field(repr=False, default=b"")
    #: Record ID of the first envelope of this reading when this one re-seals it.
    origin: str | None = None
    #: The record's secret salt (``qkd_device.records.record_salt``); empty if unknown.
    salt: bytes = field(repr=False, default=b"")

    @property
    def reading_id(self) -> str:
        """Stable across a re-seal: the record ID of the reading's first envelope."""
        return self.origin or self.record_id

    @property
    def sequence(self) -> int:
        return self.envelope.sequence

    def body(self) -> bytes:
        """The exact bytes sent on every attempt (the JSON transport form)."""
        return self.envelope.to_json().encode()


class SendQueue:
    """Sequence counter and FIFO of sealed envelopes for one device, on disk.

    Only one ``SendQueue`` may hold a directory at a time (an OS file lock, released by the
    kernel if the process dies), so two clients can never hand out the same sequence. That
    is also why the pending entries are read from disk once, when the queue is opened, and
    then mirrored in memory: nobody else writes the directory while this object holds it.
    """

    def __init__(self, directory: Path, *, device_id: str, first_sequence: int = 1) -> None:
        self.directory = Path(directory)
        self.device_id = device_id
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("pending", "rejected"):
            (self.directory / sub).mkdir(exist_ok=True, mode=0o700)
        self._lock = FileLock(self.directory / ".lock", thread_local=False)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise QueueError(f"send queue {self.directory} is in use by another client") from None
        try:
            self._next, self._pending = self._load(first_sequence)
        except BaseException:
            self._lock.release()
            raise

    def _load(self, first_sequence: int) -> tuple[int, dict[int, QueuedEnvelope]]:
        """The sequence counter and the pending entries, by sequence."""
        path = self.directory / _STATE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = {"device_id": self.device_id, "next_sequence": first_sequence}
            _atomic_write(path, state)
        except ValueError:
            raise QueueError(f"{path} is not valid JSON") from None
        if state.get("device_id") != self.device_id:
            raise QueueError(f"send queue {self.directory} belongs to another device")
        next_sequence = state.get("next_sequence")
        if not isinstance(next_sequence, int) or next_sequence < 0:
            raise QueueError(f"{path} holds no valid sequence counter")
        folder = self.directory / "pending"
        entries = (_decode(folder / n) for n in os.listdir(folder) if _ENTRY.match(n))
        pending = {item.sequence: item for item in entries}
        # A pending entry above the counter means the counter file is older than the entry
        # (it cannot be, given the write order, but never trust it to hand out a used number).
        highest = max(pending, default=-1)
        return max(next_sequence, highest + 1), pending

    @property
    def next_sequence(self) -> int:
        return self._next

    def reserve_sequence(self) -> int:
        """Durably take the next sequence number; it is never handed out again."""
        sequence = self._next
        _atomic_write(
            self.directory / _STATE, {"device_id": self.device_id, "next_sequence": sequence + 1}
        )
        self._next = sequence + 1
        return sequence

    def put(self, item: QueuedEnvelope) -> None:
        """Persist a sealed envelope before its first delivery attempt."""
        if item.envelope.sender != self.device_id:
            raise QueueError("envelope sender differs from the queue's device")
        _atomic_write(self._entry("pending", item.sequence), _encode(item))
        self._pending[item.sequence] = item

    def pending(self) -> list[QueuedEnvelope]:
        """Envelopes not yet delivered, oldest (lowest sequence) first."""
        return [self._pending[sequence] for sequence in sorted(self._pending)]

    def rejected(self) -> list[dict[str, Any]]:
        """Dead letters, oldest first (for diagnostics): each stored entry (envelope,
        record ID, plaintext, salt) with the notary's ``answer``; ``QueueError`` if one is
        corrupt."""
        folder = self.directory / "rejected"
        out = []
        for name in sorted(n for n in os.listdir(folder) if _ENTRY.match(n)):
            try:
                entry = json.loads((folder / name).read_text(encoding="utf-8"))
                valid = (
                    isinstance(entry["answer"], dict)
                    and isinstance(entry["record_id"], str)
                    and isinstance(entry["envelope"], dict)
                )
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                raise QueueError(f"dead letter {name} is corrupt")
            out.append(entry)
        return out

    def done(self, item: QueuedEnvelope) -> None:
        """The notary holds the record: drop the entry."""
        path = self._entry("pending", item.sequence)
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        self._pending.pop(item.sequence, None)

    def dead_letter(self, item: QueuedEnvelope, answer: dict[str, Any]) -> None:
        """The notary refused the envelope for good: keep it aside with the answer."""
        record = {**_encode(item), "answer": answer}
        _atomic_write(self._entry("rejected", item.sequence), record)
        self.done(item)

    def close(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def _entry(self, folder: str, sequence: int) -> Path:
        return self.directory / folder / f"{sequence:020d}.json"


def _encode(item: QueuedEnvelope) -> dict[str, Any]:
    return {
        "record_id": item.record_id,
        "envelope": item.envelope.to_dict(),
        "plaintext": base64.b64encode(item.plaintext).decode("ascii"),
        "origin": item.origin,
        "salt": base64.b64encode(item.salt).decode("ascii"),
    }


def _decode(path: Path) -> QueuedEnvelope:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        origin = raw.get("origin")
        return QueuedEnvelope(
            Envelope.from_dict(raw["envelope"]),
            str(raw["record_id"]),
            base64.b64decode(raw.get("plaintext", ""), validate=True),
            str(origin) if origin is not None else None,
            base64.b64decode(raw.get("salt", ""), validate=True),
        )
    except (ValueError, KeyError, TypeError, EnvelopeRejected):  # incl. bad base64
        raise QueueError(f"queue entry {path.name} is corrupt") from None


def _atomic_write(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    data = json.dumps(obj, separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
