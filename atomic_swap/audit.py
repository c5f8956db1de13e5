# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Read an HTLC back from the chain and check everything a counterparty could get wrong.

:func:`audit` is the one audit: ``participate`` runs it on the initiator's contract before
locking, ``redeem`` on the contract it is about to claim (the initiator before revealing the
secret), and ``qswap audit`` prints it. A contract passes only if

* its approval and clear programs are byte-identical to the committed ``htlc.teal`` and
  ``htlc_clear.teal`` (assembled locally, never by the counterparty's node);
* its global schema is exactly 4 uints + 4 byte slices, its local schema empty and it has
  no extra program pages (an under-sized schema makes every claim fail);
* its escrow account is the application's address, not rekeyed, and holds the amount (for
  an ASA: opted in, not frozen);
* for an ASA: the asset exists, is not frozen by default, and nobody but the zero address
  holds its freeze or clawback role (either could take the asset back out of the escrow or
  block the claim) unless the caller explicitly accepts that; manager, reserve, unit name
  and decimals are shown;
* its receiver, refund address, hashlock, deadline, asset and amount equal the agreed terms,
  it was created by the counterparty, and it is still open.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from algosdk.encoding import encode_address
from algosdk.logic import get_application_address
from algosdk.v2client.algod import AlgodClient

from atomic_swap.errors import AuditFailed
from atomic_swap.htlc import GLOBAL_BYTES, GLOBAL_INTS, HTLCTerms, approval_program, clear_program
from atomic_swap.node import clock, get_json, latest_timestamp

__all__ = [
    "AssetInfo",
    "AuditReport",
    "Check",
    "ContractState",
    "OnChainHTLC",
    "audit",
    "audit_htlc",
    "latest_timestamp",
    "read_htlc",
    "verify_htlc",
]


class ContractState(enum.IntEnum):
    """Lifecycle of an HTLC as recorded in its global ``state`` key."""

    OPEN = 0  # funds locked (or not yet funded); claim before / refund after the deadline
    CLAIMED = 1  # the receiver was paid; the preimage is in global state
    REFUNDED = 2  # the deadline passed and the funds went back to the refund address


@dataclass(frozen=True)
class AssetInfo:
    """An ASA's parameters as the chain reports them (role addresses ``None`` when zero)."""

    asset_id: int
    creator: str
    unit_name: str
    name: str
    decimals: int
    total: int
    default_frozen: bool
    manager: str | None
    reserve: str | None
    freeze: str | None
    clawback: str | None


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
    approval_ok: bool
    clear_ok: bool
    global_schema: tuple[int, int] = (GLOBAL_INTS, GLOBAL_BYTES)
    local_schema: tuple[int, int] = (0, 0)
    extra_pages: int = 0
    escrow_address: str = ""
    escrow_auth_addr: str | None = None
    escrow_frozen: bool = False
    escrow_opted_in: bool = True
    asset: AssetInfo | None = None

    @property
    def known_program(self) -> bool:
        return self.approval_ok and self.clear_ok

    @property
    def funded(self) -> bool:
        return self.state is ContractState.OPEN and self.escrow_balance >= self.terms.amount


@dataclass(frozen=True)
class Check:
    """One line of an audit: what was looked at, what the chain says, and whether it is safe."""

    name: str
    value: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class AuditReport:
    """Everything :func:`audit` found; :meth:`require_safe` raises on any problem."""

    onchain: OnChainHTLC
    chain_time: int
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {c.problem}" for c in self.checks if c.problem]

    @property
    def time_left(self) -> int:
        """Seconds until the deadline, by the chain's own latest block time."""
        return self.onchain.terms.deadline - self.chain_time

    def require_safe(self) -> None:
        if self.problems:
            raise AuditFailed(f"application {self.onchain.app_id}: " + "; ".join(self.problems))

    def to_json(self) -> dict[str, Any]:
        o = self.onchain
        t = o.terms
        return {
            "app_id": o.app_id,
            "safe": not self.problems,
            "problems": self.problems,
            "checks": [
                {"name": c.name, "value": c.value, "ok": c.ok, "problem": c.problem}
                for c in self.checks
            ],
            "creator": o.creator,
            "state": o.state.name.lower(),
            "hashlock": t.hashlock.hex(),
            "receiver": t.receiver,
            "refund_to": t.refund_to,
            "deadline": t.deadline,
            "chain_time": self.chain_time,
            "time_left": self.time_left,
            "asset_id": t.asset_id,
            "amount": t.amount,
            "escrow_address": o.escrow_address,
            "escrow_balance": o.escrow_balance,
            "funded": o.funded,
            "global_schema": {"uints": o.global_schema[0], "byte_slices": o.global_schema[1]},
            "local_schema": {"uints": o.local_schema[0], "byte_slices": o.local_schema[1]},
            "extra_program_pages": o.extra_pages,
            "asset": asdict(o.asset) if o.asset else None,
            "secret": o.preimage.hex() if o.preimage is not None else None,
        }


def read_htlc(client: AlgodClient, app_id: int) -> OnChainHTLC:
    """Fetch application ``app_id``, its escrow account and asset, and decode its state."""
    what = f"reading application {app_id}"
    gone = AuditFailed(f"application {app_id} does not exist on this network")
    app = get_json(what, lambda: client.application_info(app_id), missing=gone)
    escrow_address = get_application_address(app_id)
    escrow = get_json(what, lambda: client.account_info(escrow_address))
    params = app["params"]
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
    asset = None
    frozen, opted_in = False, True
    if terms.asset_id == 0:
        balance = int(escrow.get("amount", 0))
    else:
        holdings = {a["asset-id"]: a for a in escrow.get("assets", [])}
        holding = holdings.get(terms.asset_id)
        opted_in = holding is not None
        balance = int(holding["amount"]) if holding else 0
        frozen = bool(holding.get("is-frozen", False)) if holding else False
        asset = read_asset(client, terms.asset_id)
    gsch = params.get("global-state-schema", {})
    lsch = params.get("local-state-schema", {})
    preimage = gs.get("preimage")
    return OnChainHTLC(
        app_id=app_id,
        creator=params["creator"],
        terms=terms,
        state=state,
        preimage=preimage if isinstance(preimage, bytes) else None,
        escrow_balance=balance,
        approval_ok=base64.b64decode(params["approval-program"]) == approval_program(),
        clear_ok=base64.b64decode(params.get("clear-state-program", "")) == clear_program(),
        global_schema=(int(gsch.get("num-uint", 0)), int(gsch.get("num-byte-slice", 0))),
        local_schema=(int(lsch.get("num-uint", 0)), int(lsch.get("num-byte-slice", 0))),
        extra_pages=int(params.get("extra-program-pages", 0)),
        escrow_address=escrow_address,
        escrow_auth_addr=escrow.get("auth-addr") or None,
        escrow_frozen=frozen,
        escrow_opted_in=opted_in,
        asset=asset,
    )


def read_asset(client: AlgodClient, asset_id: int) -> AssetInfo | None:
    """An ASA's parameters, or ``None`` if it does not exist."""
    gone = AuditFailed(f"asset {asset_id} does not exist")
    try:
        info = get_json(
            f"reading asset {asset_id}", lambda: client.asset_info(asset_id), missing=gone
        )
    except AuditFailed:
        return None
    p = info["params"]

    def role(name: str) -> str | None:
        value = p.get(name)
        return value if value and value != _ZERO_ADDRESS else None

    return AssetInfo(
        asset_id=asset_id,
        creator=p.get("creator", ""),
        unit_name=p.get("unit-name", ""),
        name=p.get("name", ""),
        decimals=int(p.get("decimals", 0)),
        total=int(p.get("total", 0)),
        default_frozen=bool(p.get("default-frozen", False)),
        manager=role("manager"),
        reserve=role("reserve"),
        freeze=role("freeze"),
        clawback=role("clawback"),
    )


_ZERO_ADDRESS = encode_address(bytes(32))


def audit(
    client: AlgodClient,
    app_id: int,
    expected: HTLCTerms | None = None,
    *,
    creator: str | None = None,
    allow_asset_roles: bool = False,
    require_open: bool = True,
) -> AuditReport:
    """Read HTLC ``app_id`` and check it; see the module text for what is checked.

    ``expected`` (the agreed terms) and ``creator`` are compared when given; without them
    only the contract itself (program, schema, pages, escrow, asset) is judged.
    ``require_open`` makes a settled or unfunded contract a problem (what a party about to
    lock or claim needs); ``qswap audit`` shows those as facts instead.
    """
    onchain = read_htlc(client, app_id)
    chain_time = clock(client).timestamp
    report = AuditReport(onchain=onchain, chain_time=chain_time)
    add = report.checks.append
    o, t = onchain, onchain.terms
    add(Check(
        "approval program", "committed htlc.teal" if o.approval_ok else "UNKNOWN",
        None if o.approval_ok else "unknown program (not the committed htlc.teal)",
    ))  # fmt: skip
    add(Check(
        "clear program", "committed htlc_clear.teal" if o.clear_ok else "UNKNOWN",
        None if o.clear_ok else "unknown clear program (not the committed one)",
    ))  # fmt: skip
    want_schema = (GLOBAL_INTS, GLOBAL_BYTES)
    add(Check(
        "global schema", f"{o.global_schema[0]} uints, {o.global_schema[1]} byte slices",
        None if o.global_schema == want_schema else
        f"is {o.global_schema[0]} uints + {o.global_schema[1]} byte slices, the contract needs "
        f"exactly {want_schema[0]} + {want_schema[1]} (a claim could never store the preimage)",
    ))  # fmt: skip
    add(Check("local schema", f"{o.local_schema[0]} uints, {o.local_schema[1]} byte slices",
              None if o.local_schema == (0, 0) else "must be empty"))  # fmt: skip
    add(Check("extra program pages", str(o.extra_pages),
              None if o.extra_pages == 0 else "must be 0 (the program fits one page)"))  # fmt: skip
    add(Check(
        "creator", o.creator,
        None if creator is None or o.creator == creator else f"expected {creator}",
    ))  # fmt: skip
    add(Check("state", o.state.name.lower(),
              None if not require_open or o.state is ContractState.OPEN
              else f"already {o.state.name.lower()}"))  # fmt: skip
    rekeyed = f" (rekeyed to {o.escrow_auth_addr})" if o.escrow_auth_addr else ""
    add(Check(
        "escrow", o.escrow_address + rekeyed,
        "the application account is rekeyed" if rekeyed else None,
    ))  # fmt: skip
    _compare(report, expected)
    unit = "µALGO" if t.asset_id == 0 else (o.asset.unit_name if o.asset else "units")
    funded_problem = None
    if require_open and o.state is ContractState.OPEN and not o.funded:
        funded_problem = f"not funded: escrow holds {o.escrow_balance}, needs {t.amount}"
    add(Check("escrow holds", f"{o.escrow_balance} {unit}", funded_problem))
    if t.asset_id:
        _check_asset(report, allow_asset_roles)
    left = report.time_left
    add(Check("deadline", f"{t.deadline} ({left:+d} s from the chain's latest block)"))
    if o.preimage is not None:
        add(Check("secret", o.preimage.hex()))
    return report


def _compare(report: AuditReport, expected: HTLCTerms | None) -> None:
    t = report.onchain.terms
    for name, label in (
        ("hashlock", "hashlock"),
        ("receiver", "receiver"),
        ("refund_to", "refund to"),
        ("asset_id", "asset"),
        ("amount", "amount"),
        ("deadline", "deadline (agreed)"),
    ):
        got = getattr(t, name)
        shown = got.hex() if isinstance(got, bytes) else str(got)
        if name == "asset_id":
            shown = "ALGO (0)" if got == 0 else f"ASA {got}"
        problem = None
        if expected is not None:
            want = getattr(expected, name)
            if got != want:
                want_shown = want.hex() if isinstance(want, bytes) else str(want)
                problem = f"is {shown}, expected {want_shown}"
        if name == "deadline" and expected is None:
            continue  # shown with the time left below
        report.checks.append(Check(label, shown, problem))


def _check_asset(report: AuditReport, allow_roles: bool) -> None:
    o = report.onchain
    a = o.asset
    add = report.checks.append
    if a is None:
        add(Check("asset", f"ASA {o.terms.asset_id}", "the asset does not exist"))
        return
    add(Check("asset unit", f"{a.unit_name or '-'} ({a.name or 'no name'}), {a.decimals} decimals"))
    add(Check("asset manager", a.manager or "none (zero address)"))
    add(Check("asset reserve", a.reserve or "none (zero address)"))
    for role, holder in (("freeze", a.freeze), ("clawback", a.clawback)):
        problem = None
        if holder is not None and not allow_roles:
            what = (
                "freeze the escrow or the receiver" if role == "freeze" else "take the asset back"
            )
            problem = f"{holder} can {what}; refused unless you pass --allow-asset-roles"
        add(Check(f"asset {role}", holder or "none (zero address)", problem))
    if a.default_frozen:
        why = "new holdings (the receiver's) start frozen"
        if not a.freeze:
            why += " and nobody can unfreeze them"
        add(Check("asset default-frozen", "yes", None if a.freeze and allow_roles else why))
    add(Check("escrow opted in", "yes" if o.escrow_opted_in else "no"))
    if o.escrow_frozen:
        add(
            Check(
                "escrow holding", "frozen", "the escrow's holding is frozen: no claim can pay out"
            )
        )


audit_htlc = audit
"""The package-level name of :func:`audit` (``atomic_swap.audit`` is this module)."""


def verify_htlc(onchain: OnChainHTLC, expected: HTLCTerms, *, creator: str | None = None) -> None:
    """Compare an already-read HTLC with agreed terms (kept for library callers).

    Prefer :func:`audit`, which also checks schema, pages, escrow and asset roles.
    """
    problems = []
    if not onchain.known_program:
        problems.append("unknown program (not the committed htlc.teal)")
    for name in ("hashlock", "receiver", "refund_to", "deadline", "asset_id", "amount"):
        got, want = getattr(onchain.terms, name), getattr(expected, name)
        if got != want:
            shown = (got.hex(), want.hex()) if isinstance(got, bytes) else (got, want)
            problems.append(f"{name} is {shown[0]}, expected {shown[1]}")
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
