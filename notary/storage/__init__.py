"""Durable notary state behind one small interface: SQLite for one instance, PostgreSQL
for several instances sharing work. :func:`open_store` picks the backend from the URL."""

from __future__ import annotations

import logging

from notary.config import NotarySettings
from notary.logging import log_event
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
from notary.storage.postgres import PostgresStore, redact_url
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
    "PostgresStore",
    "RecordRow",
    "RecordStatus",
    "SQLiteStore",
    "Store",
    "open_store",
    "redact_url",
]

log = logging.getLogger("notary.storage")


def open_store(settings: NotarySettings) -> Store:
    """The store ``settings.database_url`` names (SQLite in the data directory if unset)."""
    if settings.uses_postgres:
        assert settings.database_url is not None
        store = PostgresStore(settings.database_url)
        log_event(log, logging.INFO, "storage opened", backend="postgresql", url=store.display_url)
        return store
    log_event(log, logging.INFO, "storage opened", backend="sqlite", path=str(settings.sqlite_path))
    return SQLiteStore(settings.sqlite_path)
