"""Durable notary state behind one small interface (SQLite now, PostgreSQL pluggable)."""

from notary.storage.base import (
    AcceptOutcome,
    BatchRow,
    BatchStatus,
    ConsumedKey,
    DeviceEvent,
    DeviceEventKind,
    DeviceRow,
    NewRecord,
    RecordRow,
    RecordStatus,
    Store,
)
from notary.storage.sqlite import SQLiteStore

__all__ = [
    "AcceptOutcome",
    "BatchRow",
    "BatchStatus",
    "ConsumedKey",
    "DeviceEvent",
    "DeviceEventKind",
    "DeviceRow",
    "NewRecord",
    "RecordRow",
    "RecordStatus",
    "SQLiteStore",
    "Store",
]
