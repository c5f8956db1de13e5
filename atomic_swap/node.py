# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Talking to an algod node: its network, its clock, and errors a user can act on.

Every read a swap step makes goes through :func:`call`, so a node that is down, refuses our
API token or answers garbage becomes one :class:`~atomic_swap.errors.ChainError` line (exit
code 5) instead of a traceback, and the step can simply be retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.error import URLError

from algosdk.error import AlgodHTTPError
from algosdk.v2client.algod import AlgodClient

from atomic_swap.errors import ChainError, SwapError
from atomic_swap.terms import Network

__all__ = ["ChainClock", "call", "clock", "get_json", "latest_timestamp", "network_of"]

T = TypeVar("T")


def call(what: str, action: Callable[[], T], *, missing: SwapError | None = None) -> T:
    """Run one node request; turn transport and HTTP failures into :class:`ChainError`.

    ``missing`` is raised instead when the node answers 404 (no such application...).
    """
    try:
        return action()
    except AlgodHTTPError as exc:
        if exc.code == 404 and missing is not None:
            raise missing from exc
        if exc.code == 401:
            raise ChainError(
                f"{what}: the node refused our API token (check --algod-token)"
            ) from exc
        raise ChainError(f"{what}: node error {exc.code}: {exc}") from exc
    except (URLError, OSError, ValueError) as exc:  # refused, reset, timeout, bad JSON
        raise ChainError(f"{what}: node unreachable or not an algod: {exc}") from exc


def _json(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ChainError("the node answered something other than a JSON object")
    return value


def get_json(
    what: str, action: Callable[[], Any], *, missing: SwapError | None = None
) -> dict[str, Any]:
    """:func:`call` for the SDK's JSON reads (typed ``dict | bytes`` by py-algorand-sdk)."""
    return _json(call(what, action, missing=missing))


def network_of(client: AlgodClient) -> Network:
    """The network a node serves, by genesis ID and hash."""
    info = _json(call("reading the node's genesis", client.versions))
    return Network(genesis_id=info["genesis_id"], genesis_hash=info["genesis_hash_b64"])


def latest_timestamp(client: AlgodClient) -> int:
    """Timestamp of the node's latest block: what ``global LatestTimestamp`` will compare."""
    return clock(client).timestamp


@dataclass(frozen=True)
class ChainClock:
    """A chain's own time, as its latest block states it, and how far it is from ours."""

    round: int
    timestamp: int
    skew: int
    """``timestamp`` minus our clock when read: positive if the chain runs ahead of us (or a
    dev-mode clock offset), negative if it runs behind (or has made no block lately)."""


def clock(client: AlgodClient) -> ChainClock:
    status = _json(call("reading the node's status", client.status))
    round_ = int(status["last-round"])
    block = _json(call(f"reading block {round_}", lambda: client.block_info(round_)))
    timestamp = int(block["block"].get("ts", 0))
    return ChainClock(round=round_, timestamp=timestamp, skew=timestamp - int(time.time()))
