"""Structured JSON logs, one object per line, with no secrets in them.

Log calls pass context as ``extra={"fields": {...}}``; only those fields and the message are
emitted. Key material never reaches a log call (``QKDKey`` hides it from ``repr``), tokens
are never passed, and as a last line of defence any field whose name looks secret is
replaced by ``"[redacted]"``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JSONFormatter", "configure_logging", "log_event"]

_SECRET_MARKERS = ("key_material", "material", "token", "secret", "password", "private")


class JSONFormatter(logging.Formatter):
    """Render a record as one JSON object: time, level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                secret = any(marker in name.lower() for marker in _SECRET_MARKERS)
                entry[name] = "[redacted]" if secret else value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """Send the ``notary`` loggers to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger("notary")
    logger.setLevel(level.upper())
    if not any(isinstance(h.formatter, JSONFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        logger.addHandler(handler)
    logger.propagate = False


def log_event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log ``message`` with structured ``fields`` (see :class:`JSONFormatter`)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": fields})
