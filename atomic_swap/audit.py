# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Read an HTLC back from the chain and check it against the terms a party expects.

This is what ``participate`` does before locking its own funds, and what the initiator does
before revealing the secret: the program must be byte-identical to the committed source
(assembled locally), every term must match, and the escrow must actually hold the amount.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Any

from algosdk.encoding import encode_address
from algosdk.error import AlgodHTTPError
from algosdk.logic import get_application_address
from algosdk.v2client.algod import AlgodClient

from atomic_swap.errors import AuditFailed, ChainError
from atomic_swap.htlc import HTLCTerms, approval_program

__all__ = ["ContractState", "OnChainHTLC", "latest_timestamp", "read_htlc", "verify_htlc"]


class ContractState(enum.IntEnum):
    """Lifecycle of an HTLC as recorded in its global ``state`` key."""

    OPEN = 0  # funds locked (or not yet funded); claim before / refund after the deadline
    CLAIMED = 1  # the receiver was paid; the preimage is in global state
    REFUNDED = 2  # the deadline passed and the funds went back to the refund address


@dataclass(frozen=True)
class OnChainHTLC:
    """An HTLC as the chain reports it."""

    app_id: int
    creator: str
    terms: HTLCTerms
    state: ContractState
    preimage: bytes | None
    escrow_balance: int
    """Units of the swapped asset held by the application account (microalgos for ALGO)."""
    known_program: bool

    @property
    def funded(self) -> bool:
        return self.state is ContractState.OPEN and self.escrow_balance >= self.terms.amount


def read_htlc(client: AlgodClient, app_id: int) -> OnChainHTLC:
    """Fetch application ``app_id`` and decode its HTLC state."""
    try:
        app: dict[str, Any] = client.application_info(app_id)  # type: ignore[assignment]
        escrow: dict[str, Any] = client.account_info(get_application_address(app_id))  # type: ignore[assignment]
    except AlgodHTTPError as exc:
        if exc.code == 404:
            raise AuditFailed(f"application {app_id} does not exist on this network") from exc
        raise ChainError(f"node error reading application {app_id}: {exc}") from exc
    params = app["params"]
    known = base64.b64decode(params["approval-program"]) == approval_program()
    gs = _global_state(params.get("global-state", []))
    try:
        terms = HTLCTerms(
            hashlock=_bytes(gs, "hashlock"),
            receiver=encode_address(_bytes(gs, "receiver")),
            refund_to=encode_address(_bytes(gs, "refund_to")),
            deadline=_uint(gs, "deadline"),
            asset_id=_uint(gs, "asset"),
            amount=_uint(gs, "amount"),
        )
        state = ContractState(_uint(gs, "state"))
    except (KeyError, ValueError) as exc:
        raise AuditFailed(f"application {app_id} is not an HTLC: {exc}") from exc
    if terms.asset_id == 0:
        balance = int(escrow.get("amount", 0))
    else:
        holdings = {a["asset-id"]: a["amount"] for a in escrow.get("assets", [])}
        balance = int(holdings.get(terms.asset_id, 0))
    preimage = gs.get("preimage")
    return OnChainHTLC(
        app_id=app_id,
        creator=params["creator"],
        terms=terms,
        state=state,
        preimage=preimage if isinstance(preimage, bytes) else None,
        escrow_balance=balance,
        known_program=known,
    )


def verify_htlc(onchain: OnChainHTLC, expected: HTLCTerms, *, creator: str | None = None) -> None:
    """Raise :class:`AuditFailed` naming every way ``onchain`` differs from ``expected``."""
    problems = []
    if not onchain.known_program:
        problems.append("unknown program (not the committed htlc.teal)")
    for field in ("hashlock", "receiver", "refund_to", "deadline", "asset_id", "amount"):
        got, want = getattr(onchain.terms, field), getattr(expected, field)
        if got != want:
            shown = (got.hex(), want.hex()) if isinstance(got, bytes) else (got, want)
            problems.append(f"{field} is {shown[0]}, expected {shown[1]}")
    if creator is not None and onchain.creator != creator:
        problems.append(f"created by {onchain.creator}, expected {creator}")
    if onchain.state is not ContractState.OPEN:
        problems.append(f"already {onchain.state.name.lower()}")
    elif not onchain.funded:
        problems.append(
            f"not funded: escrow holds {onchain.escrow_balance}, needs {onchain.terms.amount}"
        )
    if problems:
        raise AuditFailed(f"application {onchain.app_id}: " + "; ".join(problems))


def latest_timestamp(client: AlgodClient) -> int:
    """Timestamp of the node's latest block: what ``global LatestTimestamp`` will compare."""
    status: dict[str, Any] = client.status()  # type: ignore[assignment]
    block: dict[str, Any] = client.block_info(status["last-round"])  # type: ignore[assignment]
    return int(block["block"].get("ts", 0))


def _global_state(entries: list[dict[str, Any]]) -> dict[str, bytes | int]:
    out: dict[str, bytes | int] = {}
    for entry in entries:
        key = base64.b64decode(entry["key"]).decode(errors="replace")
        value = entry["value"]
        out[key] = base64.b64decode(value["bytes"]) if value["type"] == 1 else int(value["uint"])
    return out


def _bytes(gs: dict[str, bytes | int], key: str) -> bytes:
    value = gs[key]
    if not isinstance(value, bytes):
        raise ValueError(f"{key} is not a byte string")
    return value


def _uint(gs: dict[str, bytes | int], key: str) -> int:
    value = gs[key]
    if not isinstance(value, int):
        raise ValueError(f"{key} is not an integer")
    return value
