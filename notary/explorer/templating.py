"""The Jinja2 environment of the explorer: package templates, autoescaping always on.

Autoescaping is forced for every template (not chosen by file extension), so a device ID
or a pasted receipt containing markup is shown as text, never interpreted.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import jinja2
from starlette.templating import Jinja2Templates

from notary.receipts.build import record_key_path
from notary.storage.base import RecordRow
from qkd_channel.security_levels import SecurityLevels, derive_levels

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "shorten", "templates"]

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")


def _utc(timestamp: float | None) -> str:
    """Unix seconds as an ISO-like UTC string."""
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def shorten(value: str | None, keep: int = 10) -> str:
    """``0x1234abcd…89ef`` for long hex strings; anything shorter unchanged."""
    if value is None:
        return "-"
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-6:]}"


def _levels(record: RecordRow) -> SecurityLevels:
    """A stored record's security levels, derived from its mode and key path as in its
    receipt (never stored, so never out of step with the derivation)."""
    return derive_levels(record.mode, record_key_path(record))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _utc
    env.filters["short"] = shorten
    env.filters["levels"] = _levels
    env.globals["inf"] = math.inf
    return env


templates = Jinja2Templates(env=_environment())
