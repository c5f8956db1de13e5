"""The authentication key pool on disk, so that no restart ever reuses a Wegman-Carter key.

An :class:`~qkd_channel.postprocessing.authentication.AuthenticationKeyPool` built from
the pre-shared key file starts at the file's first byte. Were a KME simply restarted with
the same file, its first checkpoint would reuse a one-time Poly1305 key that already
tagged a transcript the attacker saw, and two tags under one key give the attacker what
one-time authentication exists to deny. A :class:`PoolStore` therefore keeps the pool's
state in the KME's data directory and writes it, durably, on every change *before* the
change takes effect: a key is retired on disk before its tag leaves the process, and
replenishing key is on disk before it can key anything.

Restarting with the same pre-shared key resumes where the pool stopped. When both ends
stopped in step (between blocks) the link carries on; after a crash in the middle of a
block the ends' key positions may differ, which the channel's skip-forward rule absorbs
(a checkpoint may name a key ahead of the receiver's, never behind). Were the ends'
pools to differ in content (one end crashed between a block's last checkpoint and its
replenishment), a later checkpoint fails authentication and the link stops: safe, but it
needs a fresh pre-shared key.

A *new* pre-shared key replaces the pool; the old key's fingerprint (SHA-256) is kept so
that it can never be loaded again. The file holds secret key material: mode 0600, like
the pre-shared key file itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from qkd_channel.errors import ChannelError
from qkd_channel.postprocessing.authentication import AuthenticationKeyPool, PoolState

__all__ = ["PoolStore", "RetiredAuthenticationKey"]

_FORMAT = 1


class RetiredAuthenticationKey(ChannelError):
    """The pre-shared key given was already used up by this KME and replaced."""


class PoolStore:
    """The pool state file of one link end (``<data_dir>/link-auth.state``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open_pool(self, initial_key: bytes) -> AuthenticationKeyPool:
        """The pool for ``initial_key``: resumed from the file, or new (and saved) when
        this key was never used here. A retired key is refused."""
        fingerprint = hashlib.sha256(initial_key).hexdigest()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = self._read()
        retired: list[str] = list(document.get("retired", [])) if document else []
        if fingerprint in retired:
            raise RetiredAuthenticationKey(
                "this pre-shared authentication key was already used by this link end; "
                "generate a fresh one (qkd-kme auth-key) for both ends"
            )
        if document is not None and document["fingerprint"] == fingerprint:
            saver = self._saver(fingerprint, retired)
            try:
                return AuthenticationKeyPool.resume(
                    PoolState.from_json(document["pool"]), on_change=saver
                )
            except ValueError as exc:
                raise self._damaged(exc) from None
        if document is not None:
            retired.append(document["fingerprint"])
        pool = AuthenticationKeyPool(initial_key, on_change=self._saver(fingerprint, retired))
        self._write(fingerprint, retired, pool.snapshot())
        return pool

    def _saver(self, fingerprint: str, retired: list[str]) -> Any:
        def save(state: PoolState) -> None:
            self._write(fingerprint, retired, state)

        return save

    def _read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return None
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != _FORMAT:
                raise ValueError("unknown format")
            names = [document.get("fingerprint"), *document.get("retired", ())]
            if not all(isinstance(n, str) and len(n) == 64 for n in names):
                raise ValueError("key fingerprints are 64 hex digits")
            if not isinstance(document.get("pool"), dict):
                raise ValueError("no pool")
            return document
        except (ValueError, TypeError) as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: Exception) -> ChannelError:
        return ChannelError(f"unreadable authentication pool state {self.path}: {exc}")

    def _write(self, fingerprint: str, retired: list[str], state: PoolState) -> None:
        document = {
            "format": _FORMAT,
            "fingerprint": fingerprint,
            "retired": retired,
            "pool": state.to_json(),
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
