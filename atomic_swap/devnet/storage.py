"""The devnet's data directory database: one SQLite transaction per block.

Block headers and confirmed transactions are rows (looked up by round / transaction ID), so
a block costs the same whatever the chain's length; the ledger state the evaluator needs
(accounts, applications, assets, boxes) is one msgpack value rewritten with each block.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgpack

__all__ = ["ChainStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS headers (rnd INTEGER PRIMARY KEY, header BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS txns (txid TEXT PRIMARY KEY, rnd INTEGER NOT NULL, record BLOB NOT NULL);
"""


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class ChainStore:
    """Durable chain state; every method is atomic and thread-safe."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def meta(self, name: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else _unpack(row[0])

    def set_meta(self, **values: Any) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            for name, value in values.items():
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, _pack(value))
                )

    def commit_block(
        self, header: dict[str, Any], records: dict[str, dict[str, Any]], **meta: Any
    ) -> None:
        """Store a block's header, its transactions and the new metadata, all or nothing."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO headers (rnd, header) VALUES (?, ?)", (header["rnd"], _pack(header))
            )
            self._db.executemany(
                "INSERT INTO txns (txid, rnd, record) VALUES (?, ?, ?)",
                [(txid, header["rnd"], _pack(rec)) for txid, rec in records.items()],
            )
            for name, value in meta.items():
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, _pack(value))
                )

    def header(self, round_: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT header FROM headers WHERE rnd = ?", (round_,)).fetchone()
        return None if row is None else dict(_unpack(row[0]))

    def transaction(self, txid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM txns WHERE txid = ?", (txid,)).fetchone()
        return None if row is None else dict(_unpack(row[0]))

    def close(self) -> None:
        with self._lock:
            self._db.close()
