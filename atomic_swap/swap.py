"""The cross-chain swap protocol (decred atomicswap's flow) on Algorand HTLC applications.

::

    initiator (network A)                         participant (network B)
    initiate: QKD keys, secret s, h = sha256(s)
              HTLC_A(h, to participant, T_A)  ── sealed offer ──▶  participate: open (kept),
                                                                   audit HTLC_A on A, refuse
                                                                   unsafe terms, HTLC_B(h, to
              redeem: open (kept), audit    ◀── sealed acceptance ── initiator, T_B well
              HTLC_B, claim it revealing s                         before T_A by the chains'
                                                                   own clocks)
                                                                   extract-secret from HTLC_B
                                                                   redeem HTLC_A with s
    refund HTLC_A after T_A                                        refund HTLC_B after T_B

Every step that changes the chain reports its transaction IDs through a :class:`Reporter`
and records the new :class:`~atomic_swap.store.SwapState` (fsynced) first, so an interrupted
swap can always be finished (``initiate --resume``, ``participate --resume``, ``redeem``) or
undone (``refund``, ``reclaim``). A swap has one HTLC per party: ``participate`` answers a
second offer for a swap it already answered (a resealed or replayed one) with the HTLC and
acceptance it already made, and refuses an offer reusing another swap's contract or hashlock.

Deadlines are only ever compared with the clock of the chain they live on: the time left on
each chain is its deadline minus that chain's latest block time. Comparing the two chains
needs their clocks to agree with ours within ``SafetyPolicy.max_clock_skew``; beyond that
``participate`` refuses, and within it the worst case is subtracted from the margin.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from algosdk.v2client.algod import AlgodClient
from pydantic import ValidationError

from atomic_swap import htlc
from atomic_swap.accounts import Account
from atomic_swap.audit import AuditReport, ContractState, OnChainHTLC, audit, read_htlc
from atomic_swap.errors import (
    AuditFailed,
    SwapError,
    SwapStateError,
    TransactionRejected,
    UnsafeTerms,
)
from atomic_swap.node import ChainClock, clock, get_json, latest_timestamp, network_of
from atomic_swap.sealing import TermsChannel
from atomic_swap.store import SwapRecord, SwapState, SwapStore
from atomic_swap.terms import Acceptance, Network, Offer

__all__ = [
    "DEFAULT_INITIATOR_LOCK",
    "Party",
    "Reporter",
    "SafetyPolicy",
    "extract_secret",
    "initiate",
    "latest_timestamp",
    "network_of",
    "participate",
    "reclaim",
    "redeem",
    "redeem_acceptance",
    "refund",
    "resume_initiate",
    "resume_participate",
]

HOUR = 3600
DEFAULT_INITIATOR_LOCK = 48 * HOUR
"""decred atomicswap's initiator lock; the participant's default is half of what is left."""


class Reporter(Protocol):
    """Where a swap step tells the operator what is happening."""

    def waiting(self, what: str) -> AbstractContextManager[None]:
        """Context around a wait for confirmation (a spinner in the CLI)."""
        ...

    def done(self, what: str, result: htlc.Submitted) -> None:
        """A confirmed state change, with its transaction IDs."""
        ...


class SilentReporter:
    """Reports nothing (library use, tests)."""

    def waiting(self, what: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def done(self, what: str, result: htlc.Submitted) -> None:
        return None


@dataclass(frozen=True)
class Party:
    """One side of a swap on one network: its account, node and local records."""

    account: Account
    client: AlgodClient
    store: SwapStore
    reporter: Reporter = field(default_factory=SilentReporter)


@dataclass(frozen=True)
class SafetyPolicy:
    """Time limits (seconds) a careful participant insists on.

    decred's atomicswap locks the initiator for 48 h and the participant for 24 h; these
    defaults accept that and refuse offers leaving the participant much less.
    """

    min_margin: int = 12 * HOUR
    """Our contract must expire at least this long before the initiator's (real time)."""
    min_lock: int = 12 * HOUR
    """Our HTLC must stay claimable at least this long (time for the initiator to redeem)."""
    max_lock: int = 48 * HOUR
    """Our funds are never locked longer than this, whatever the initiator's deadline."""
    max_clock_skew: int = 5 * 60
    """How far each chain's latest block time may be from our clock."""
    allow_asset_roles: bool = False
    """Accept an ASA whose freeze or clawback role is held by someone."""


# -- helpers ---------------------------------------------------------------------------


def _step(party: Party, what: str, action: Callable[[], htlc.Submitted]) -> htlc.Submitted:
    with party.reporter.waiting(what):
        result = action()
    party.reporter.done(what, result)
    return result


@contextlib.contextmanager
def _resumable(swap_id: str, command: str) -> Iterator[None]:
    """Any failure inside names the swap in full and the command that carries it on."""
    try:
        yield
    except SwapError as exc:
        exc.add_note(f"swap {swap_id} is saved; carry on with: {command}")
        exc.swap_id = swap_id  # type: ignore[attr-defined]
        exc.resume = command  # type: ignore[attr-defined]
        raise


def _net(network: Network | dict[str, str]) -> dict[str, str]:
    return network.model_dump() if isinstance(network, Network) else dict(network)


def _check_clock(name: str, chain: ChainClock, policy: SafetyPolicy) -> None:
    if abs(chain.skew) > policy.max_clock_skew:
        direction = "ahead of" if chain.skew > 0 else "behind"
        raise UnsafeTerms(
            f"offer refused: {name}'s latest block time is {abs(chain.skew)} s {direction} our "
            f"clock (tolerated: {policy.max_clock_skew} s), so its deadline cannot be compared "
            f"with the other chain's; if the chain is merely idle, make a block and retry"
        )


def _find_own_htlc(party: Party, hashlock: bytes) -> int | None:
    """An open HTLC of ours with this hashlock (made by a run that died before saving it)."""
    me = party.account.address
    info = get_json("reading our account", lambda: party.client.account_info(me))
    for app in info.get("created-apps", []):
        for entry in app.get("params", {}).get("global-state", []):
            if (
                base64.b64decode(entry["key"]) == b"hashlock"
                and base64.b64decode(entry["value"].get("bytes", "")) == hashlock
            ):
                return int(app["id"])
    return None


# -- initiator -------------------------------------------------------------------------


def initiate(
    party: Party,
    channel: TermsChannel,
    *,
    participant: str,
    amount: int,
    asset_id: int,
    want_amount: int,
    want_asset_id: int,
    receive_address: str,
    lock_seconds: int,
) -> tuple[SwapRecord, str]:
    """Get QKD keys, make the secret, create and fund HTLC_A, and return the sealed offer.

    The keys come first: a KME that is down or out of key fails the command before any
    funds move. Every failure after the record is saved names the swap ID in full and the
    ``initiate --resume`` command that finishes it.
    """
    if lock_seconds <= 0:
        raise UnsafeTerms("the lock must be positive")
    network = network_of(party.client)
    me = party.account
    secret = secrets.token_bytes(htlc.SECRET_BYTES)
    hashlock = htlc.hashlock_of(secret)
    try:
        draft = Offer(
            swap_id=str(uuid.uuid4()),
            hashlock=hashlock.hex(),
            network=network,
            app_id=2**64 - 1,  # the longest an app ID can print: the keys cover the real offer
            asset_id=asset_id,
            amount=amount,
            deadline=2**64 - 1,
            initiator=me.address,
            participant=participant,
            want_asset_id=want_asset_id,
            want_amount=want_amount,
            receive_address=receive_address,
        )
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors())
        raise UnsafeTerms(f"invalid swap terms ({fields}): nothing was locked") from exc
    reserved = channel.reserve(len(draft.model_dump_json().encode()))
    record = SwapRecord(
        swap_id=draft.swap_id,
        role="initiator",
        state=SwapState.PENDING,
        hashlock=draft.hashlock,
        own_app_id=None,
        offer=draft.model_dump(),
        secret=secret.hex(),
        own_network=_net(network),
        lock_seconds=lock_seconds,
        events=[{"state": "pending"}],
    )
    party.store.save(record)  # the secret is on disk before anything reaches the chain
    with _resumable(record.swap_id, f"qswap initiate --resume {record.swap_id}"):
        record = _advance_initiator(party, record)
        offer = Offer.model_validate(record.offer)
        return record, channel.seal(offer, reserved)


def _advance_initiator(party: Party, record: SwapRecord) -> SwapRecord:
    """Create (if needed) and fund (if needed) the initiator's HTLC."""
    me = party.account
    assert record.offer is not None
    if network_of(party.client).genesis_hash != (record.own_network or {}).get("genesis_hash"):
        raise SwapStateError(
            f"this node serves another network than swap {record.swap_id}'s "
            f"({(record.own_network or {}).get('genesis_id')}); give that network's node"
        )
    if record.state is SwapState.PENDING:
        hashlock = bytes.fromhex(record.hashlock)
        app_id = _find_own_htlc(party, hashlock)
        offer = dict(record.offer)
        if app_id is None:
            deadline = latest_timestamp(party.client) + int(record.lock_seconds or 0)
            terms = htlc.HTLCTerms(
                hashlock=hashlock,
                receiver=offer["participant"],
                refund_to=me.address,
                deadline=deadline,
                asset_id=offer["asset_id"],
                amount=offer["amount"],
            )
            created = _step(
                party,
                "create HTLC",
                lambda: htlc.create(party.client, me.private_key, me.address, terms),
            )
            assert created.app_id is not None  # htlc.create raises otherwise
            app_id, txids = created.app_id, list(created.txids)
        else:
            deadline = read_htlc(party.client, app_id).terms.deadline
            txids = []
        record.offer = Offer.model_validate(
            {**offer, "app_id": app_id, "deadline": deadline}
        ).model_dump()
        record.own_app_id = app_id
        record.advance(SwapState.CREATED, {"txids": txids, "app_id": app_id})
        party.store.save(record)
    if record.state is SwapState.CREATED:
        offer_model = Offer.model_validate(record.offer)
        terms = _offer_terms(offer_model)
        funded = _step(
            party,
            "fund HTLC",
            lambda: htlc.fund(party.client, me.private_key, me.address, offer_model.app_id, terms),
        )
        record.advance(SwapState.INITIATED, {"txids": list(funded.txids)})
        party.store.save(record)
    elif record.state is not SwapState.INITIATED:
        raise SwapStateError(f"swap {record.swap_id} is already {record.state}")
    return record


def resume_initiate(party: Party, channel: TermsChannel, swap_id: str) -> tuple[SwapRecord, str]:
    """Finish an interrupted ``initiate`` (create/fund as needed) and (re)seal the offer.

    A resealed offer uses new keys and a new sequence number; the participant answers it
    with the HTLC it already made for this swap, if any.
    """
    record = party.store.load(swap_id)
    if record.role != "initiator" or record.offer is None:
        raise SwapStateError(f"swap {swap_id} was not initiated here")
    if record.state not in (SwapState.PENDING, SwapState.CREATED, SwapState.INITIATED):
        raise SwapStateError(f"swap {record.swap_id} is already {record.state}")
    with _resumable(record.swap_id, f"qswap initiate --resume {record.swap_id}"):
        draft = Offer.model_validate({**record.offer, "app_id": 2**64 - 1, "deadline": 2**64 - 1})
        reserved = channel.reserve(len(draft.model_dump_json().encode()))
        record = _advance_initiator(party, record)
        return record, channel.seal(Offer.model_validate(record.offer), reserved)


def _offer_terms(offer: Offer) -> htlc.HTLCTerms:
    return htlc.HTLCTerms(
        hashlock=bytes.fromhex(offer.hashlock),
        receiver=offer.participant,
        refund_to=offer.initiator,
        deadline=offer.deadline,
        asset_id=offer.asset_id,
        amount=offer.amount,
    )


def _acceptance_terms(acceptance: Acceptance) -> htlc.HTLCTerms:
    return htlc.HTLCTerms(
        hashlock=bytes.fromhex(acceptance.hashlock),
        receiver=acceptance.receive_address,
        refund_to=acceptance.participant,
        deadline=acceptance.deadline,
        asset_id=acceptance.asset_id,
        amount=acceptance.amount,
    )


def redeem_acceptance(
    party: Party,
    channel: TermsChannel,
    envelope: str,
    *,
    min_time_left: int = 600,
    allow_asset_roles: bool = False,
) -> htlc.Submitted:
    """Open the acceptance, audit HTLC_B against our offer, and claim it with the secret.

    The acceptance is opened (and kept) before anything reaches a node, so a failure later
    (wrong token, node down) is retried with the same command without the KME.
    """
    acceptance = channel.open(envelope)
    if not isinstance(acceptance, Acceptance):
        raise UnsafeTerms("expected an acceptance, got an offer")
    record = party.store.load(acceptance.swap_id)
    if record.role != "initiator" or record.secret is None or record.offer is None:
        raise SwapStateError(f"swap {acceptance.swap_id} was not initiated here")
    offer = Offer.model_validate(record.offer)
    problems = []
    if acceptance.hashlock != offer.hashlock:
        problems.append("hashlock differs from our offer")
    if acceptance.receive_address != offer.receive_address:
        problems.append("pays a different receive address")
    if acceptance.asset_id != offer.want_asset_id or acceptance.amount != offer.want_amount:
        problems.append(
            f"pays {acceptance.amount} of asset {acceptance.asset_id}, we asked "
            f"{offer.want_amount} of asset {offer.want_asset_id}"
        )
    if problems:
        raise UnsafeTerms("acceptance refused: " + "; ".join(problems))
    if record.acceptance is None:
        record.acceptance = acceptance.model_dump()
        record.counter_app_id = acceptance.app_id
        record.counter_network = _net(acceptance.network)
        party.store.save(record)
    elif Acceptance.model_validate(record.acceptance) != acceptance:
        raise UnsafeTerms(
            f"acceptance refused: swap {record.swap_id} was already accepted with HTLC "
            f"{record.counter_app_id}; this one names HTLC {acceptance.app_id}"
        )
    with _resumable(record.swap_id, f"qswap redeem --app-id {acceptance.app_id}"):
        return _claim(
            party,
            record,
            "counter",
            min_time_left=min_time_left,
            allow_asset_roles=allow_asset_roles,
        )


# -- participant -----------------------------------------------------------------------


def participate(
    party: Party,
    initiator_client: AlgodClient,
    channel: TermsChannel,
    envelope: str,
    *,
    pay_amount: int,
    pay_asset_id: int,
    receive_amount: int,
    receive_asset_id: int,
    policy: SafetyPolicy,
    lock_seconds: int | None = None,
) -> tuple[SwapRecord, str]:
    """Open the offer, audit HTLC_A on-chain, refuse unsafe terms, create and fund HTLC_B.

    Idempotent per swap ID: an offer for a swap we already answered (replayed, or resealed
    by ``initiate --resume``) gets the HTLC and acceptance we already made, never a second
    HTLC.
    """
    offer = channel.open(envelope)
    if not isinstance(offer, Offer):
        raise UnsafeTerms("expected an offer, got an acceptance")
    existing = party.store.get(offer.swap_id)
    if existing is not None:
        if existing.role != "participant" or existing.offer is None:
            raise SwapStateError(f"swap {offer.swap_id} was initiated here, not offered to us")
        if Offer.model_validate(existing.offer) != offer:
            raise UnsafeTerms(
                f"offer refused: we already answered swap {offer.swap_id} with HTLC "
                f"{existing.own_app_id}, for other terms than this offer's"
            )
        return resume_participate(party, initiator_client, channel, offer.swap_id, policy=policy)
    for other in party.store.all():
        if other.hashlock == offer.hashlock:
            raise UnsafeTerms(
                f"offer refused: its hashlock is already used by swap {other.swap_id} "
                "(one secret would claim both)"
            )
        if other.holds(offer.network.genesis_hash, offer.app_id):
            raise UnsafeTerms(
                f"offer refused: HTLC {offer.app_id} already backs swap {other.swap_id}"
            )
    me = party.account
    problems = []
    if offer.participant != me.address:
        problems.append(f"receiver on the initiator's chain is {offer.participant}, not us")
    if (offer.amount, offer.asset_id) != (receive_amount, receive_asset_id):
        problems.append(
            f"amount mismatch: offer locks {offer.amount} of asset {offer.asset_id}, we expect "
            f"{receive_amount} of asset {receive_asset_id}"
        )
    if (offer.want_amount, offer.want_asset_id) != (pay_amount, pay_asset_id):
        problems.append(
            f"amount mismatch: offer wants {offer.want_amount} of asset {offer.want_asset_id}, "
            f"we agreed to pay {pay_amount} of asset {pay_asset_id}"
        )
    if lock_seconds is not None and lock_seconds > policy.max_lock:
        problems.append(f"--lock {lock_seconds} s is over --max-lock {policy.max_lock} s")
    if problems:
        raise UnsafeTerms("offer refused: " + "; ".join(problems))
    if offer.network != network_of(initiator_client):
        raise UnsafeTerms(
            f"offer refused: the offer names network {offer.network.genesis_id} "
            f"({offer.network.genesis_hash}), the initiator node given serves another"
        )
    our_network = network_of(party.client)
    if our_network == offer.network:
        raise UnsafeTerms("offer refused: both contracts would be on the same network")
    _audit_offer(initiator_client, offer, policy)
    clock_a = clock(initiator_client)
    clock_b = clock(party.client)
    _check_clock("the initiator's chain", clock_a, policy)
    _check_clock("our chain", clock_b, policy)
    left_a = offer.deadline - clock_a.timestamp  # by chain A's own clock
    # Chain A's latest block may be older than it looks (an idle chain): with both clocks
    # within the tolerated skew of ours, it is at most this much older, and A's deadline
    # that much nearer in real time. (Our own chain being behind only helps.)
    slack = policy.max_clock_skew - clock_a.skew
    lock = lock_seconds if lock_seconds is not None else min(left_a // 2, policy.max_lock)
    if lock < policy.min_lock:
        raise UnsafeTerms(
            f"offer refused: our lock would be {lock} s, under the minimum {policy.min_lock} s "
            f"(the initiator's contract has {left_a} s left on its chain)"
        )
    margin = left_a - lock - slack
    if margin < policy.min_margin:
        raise UnsafeTerms(
            f"offer refused: our contract would expire only {margin} s before the "
            f"initiator's (its {left_a} s left on its chain, our lock {lock} s, {slack} s "
            f"allowed for clock skew); we need {policy.min_margin} s to redeem after the "
            "secret is revealed"
        )
    acceptance = Acceptance(
        swap_id=offer.swap_id,
        hashlock=offer.hashlock,
        network=our_network,
        app_id=2**64 - 1,  # placeholder until our HTLC exists
        asset_id=pay_asset_id,
        amount=pay_amount,
        deadline=clock_b.timestamp + lock,
        participant=me.address,
        receive_address=offer.receive_address,
    )
    record = SwapRecord(
        swap_id=offer.swap_id,
        role="participant",
        state=SwapState.PENDING,
        hashlock=offer.hashlock,
        own_app_id=None,
        offer=offer.model_dump(),
        acceptance=acceptance.model_dump(),
        counter_app_id=offer.app_id,
        own_network=_net(our_network),
        counter_network=_net(offer.network),
        events=[{"state": "pending"}],
    )
    party.store.save(record)
    return resume_participate(party, initiator_client, channel, offer.swap_id, policy=policy)


def _audit_offer(client: AlgodClient, offer: Offer, policy: SafetyPolicy) -> AuditReport:
    report = audit(
        client,
        offer.app_id,
        _offer_terms(offer),
        creator=offer.initiator,
        allow_asset_roles=policy.allow_asset_roles,
    )
    try:
        report.require_safe()
    except AuditFailed as exc:
        raise UnsafeTerms(f"offer refused: initiator's contract fails the audit: {exc}") from exc
    return report


def resume_participate(
    party: Party,
    initiator_client: AlgodClient,
    channel: TermsChannel,
    swap_id: str,
    *,
    policy: SafetyPolicy | None = None,
) -> tuple[SwapRecord, str]:
    """Create/fund our HTLC_B as needed (after re-auditing HTLC_A); (re)seal the acceptance."""
    policy = policy or SafetyPolicy()
    record = party.store.load(swap_id)
    if record.role != "participant" or record.offer is None or record.acceptance is None:
        raise SwapStateError(f"swap {swap_id} was not accepted here")
    offer = Offer.model_validate(record.offer)
    me = party.account
    with _resumable(record.swap_id, f"qswap participate --resume {record.swap_id}"):
        if record.state in (SwapState.PENDING, SwapState.CREATED):
            # The initiator's contract could have been refunded since we last looked.
            _audit_offer(initiator_client, offer, policy)
        if record.state is SwapState.PENDING:
            draft = Acceptance.model_validate(record.acceptance)
            app_id = _find_own_htlc(party, bytes.fromhex(record.hashlock))
            txids: list[str] = []
            if app_id is None:
                time_left = draft.deadline - latest_timestamp(party.client)
                if time_left < policy.min_lock:
                    raise UnsafeTerms(
                        f"not creating our HTLC: its agreed deadline is only {time_left} s away"
                    )
                terms = _acceptance_terms(draft)
                created = _step(
                    party,
                    "create HTLC",
                    lambda: htlc.create(party.client, me.private_key, me.address, terms),
                )
                assert created.app_id is not None
                app_id, txids = created.app_id, list(created.txids)
            record.acceptance = Acceptance.model_validate(
                {**record.acceptance, "app_id": app_id}
            ).model_dump()
            record.own_app_id = app_id
            record.advance(SwapState.CREATED, {"txids": txids, "app_id": app_id})
            party.store.save(record)
        acceptance = Acceptance.model_validate(record.acceptance)
        if record.state is SwapState.CREATED:
            terms = _acceptance_terms(acceptance)
            funded = _step(
                party,
                "fund HTLC",
                lambda: htlc.fund(
                    party.client, me.private_key, me.address, acceptance.app_id, terms
                ),
            )
            record.advance(SwapState.PARTICIPATED, {"txids": list(funded.txids)})
            party.store.save(record)
        elif record.state is not SwapState.PARTICIPATED:
            raise SwapStateError(f"swap {record.swap_id} is already {record.state}")
        return record, channel.seal(acceptance)


# -- both ------------------------------------------------------------------------------


def extract_secret(client: AlgodClient, app_id: int) -> bytes:
    """The preimage a claim revealed in HTLC ``app_id`` (checked against its hashlock)."""
    onchain = read_htlc(client, app_id)
    if onchain.state is not ContractState.CLAIMED or onchain.preimage is None:
        raise SwapStateError(f"application {app_id} has not been claimed; no secret yet")
    if hashlib.sha256(onchain.preimage).digest() != onchain.terms.hashlock:
        raise AuditFailed(f"application {app_id} holds a preimage that does not match its hash")
    return onchain.preimage


def redeem(
    party: Party,
    app_id: int,
    secret: bytes | None = None,
    *,
    min_time_left: int = 600,
    allow_asset_roles: bool = False,
) -> htlc.Submitted:
    """Claim the counterparty's HTLC ``app_id`` of one of our swaps, with ``secret``.

    The contract is audited against the terms of our local swap record (found by this
    node's genesis hash and ``app_id``): amount, asset, receiver, deadline and hashlock
    must be the agreed ones. The initiator (whose secret is not public yet) also keeps it
    from a contract expiring within ``min_time_left``; the secret defaults to ours.
    """
    network = network_of(party.client)
    found = party.store.find_by_app(network.genesis_hash, app_id)
    if found is None:
        raise SwapStateError(
            f"no local swap has application {app_id} on network {network.genesis_id}; "
            "redeem claims only contracts of swaps made with this swap home"
        )
    record, side = found
    if side != "counter":
        raise UnsafeTerms(
            f"application {app_id} is our own contract: it pays the other party, not us"
        )
    if secret is None:
        if record.secret is None:
            raise SwapStateError("give the secret (qswap extract-secret on the other network)")
        secret = bytes.fromhex(record.secret)
    return _claim(
        party,
        record,
        "counter",
        secret=secret,
        min_time_left=min_time_left,
        allow_asset_roles=allow_asset_roles,
    )


def _claim(
    party: Party,
    record: SwapRecord,
    side: str,
    *,
    secret: bytes | None = None,
    min_time_left: int,
    allow_asset_roles: bool,
) -> htlc.Submitted:
    network = network_of(party.client)
    if (
        record.counter_network is None
        or record.counter_network["genesis_hash"] != network.genesis_hash
    ):
        raise SwapStateError(
            f"swap {record.swap_id}'s counterparty contract is on network "
            f"{(record.counter_network or {}).get('genesis_id')}, "
            f"this node serves {network.genesis_id}"
        )
    if record.role == "initiator":
        assert record.acceptance is not None and record.offer is not None
        acceptance = Acceptance.model_validate(record.acceptance)
        expected = _acceptance_terms(acceptance)
        creator = acceptance.participant
        reveals = True
    else:
        assert record.offer is not None
        offer = Offer.model_validate(record.offer)
        expected = _offer_terms(offer)
        creator = offer.initiator
        reveals = False
    if secret is None:
        assert record.secret is not None
        secret = bytes.fromhex(record.secret)
    app_id = record.counter_app_id
    assert app_id is not None
    if party.account.address != expected.receiver:
        raise UnsafeTerms(f"application {app_id} pays {expected.receiver}, not us")
    if htlc.hashlock_of(secret) != expected.hashlock:
        raise UnsafeTerms(f"the secret does not match application {app_id}'s hashlock")
    report = audit(
        party.client, app_id, expected, creator=creator, allow_asset_roles=allow_asset_roles
    )
    report.require_safe()
    time_left = report.time_left
    if reveals and time_left < min_time_left:
        raise UnsafeTerms(
            f"not revealing the secret: the participant's contract expires in {time_left} s "
            f"by its chain's clock (minimum {min_time_left} s)"
        )
    if time_left <= 0:
        raise UnsafeTerms(
            f"application {app_id}'s deadline passed {-time_left} s ago on its chain; "
            "it can only be refunded now"
        )
    me = party.account
    terms = report.onchain.terms
    result = _step(
        party,
        f"claim HTLC {app_id}",
        lambda: htlc.claim(party.client, me.private_key, me.address, app_id, terms, secret),
    )
    _record(party.store, network, app_id, SwapState.REDEEMED, result)
    return dataclasses.replace(result, app_id=app_id)


def refund(party: Party, app_id: int) -> htlc.Submitted:
    """Take back our HTLC ``app_id`` after its deadline."""
    onchain = read_htlc(party.client, app_id)
    _require_open(onchain)
    me = party.account
    try:
        result = _step(
            party,
            f"refund HTLC {app_id}",
            lambda: htlc.refund(party.client, me.private_key, me.address, app_id, onchain.terms),
        )
    except TransactionRejected as exc:
        chain_time = latest_timestamp(party.client)
        if chain_time < onchain.terms.deadline:
            raise SwapStateError(
                f"the contract refused the refund: its deadline {onchain.terms.deadline} is "
                f"{onchain.terms.deadline - chain_time} s after the chain's latest block time"
            ) from exc
        raise
    _record(party.store, network_of(party.client), app_id, SwapState.REFUNDED, result)
    return dataclasses.replace(result, app_id=app_id)


def reclaim(party: Party, app_id: int) -> htlc.Submitted:
    """Delete our own HTLC once it holds nothing (unfunded, claimed or refunded).

    This undoes a ``create`` whose funding never happened and, after settlement, releases the
    minimum balance (0.1 ALGO + state schema) the application holds against its creator.
    """
    onchain = read_htlc(party.client, app_id)
    me = party.account
    if onchain.creator != me.address:
        raise SwapStateError(f"application {app_id} was created by {onchain.creator}, not us")
    if onchain.state is ContractState.OPEN and onchain.escrow_balance:
        raise SwapStateError(f"application {app_id} still holds funds: redeem or refund first")
    result = _step(
        party,
        f"delete HTLC {app_id}",
        lambda: htlc.delete(party.client, me.private_key, me.address, app_id),
    )
    return dataclasses.replace(result, app_id=app_id)


def _require_open(onchain: OnChainHTLC) -> None:
    if onchain.state is not ContractState.OPEN:
        raise SwapStateError(
            f"application {onchain.app_id} is already {onchain.state.name.lower()}"
        )
    if not onchain.known_program:
        raise AuditFailed(f"application {onchain.app_id} does not run the committed HTLC program")


def _record(
    store: SwapStore, network: Network, app_id: int, state: SwapState, result: htlc.Submitted
) -> None:
    """Note a settled contract in its swap's record (by network and app ID); never raises
    for a transition the record does not expect: the chain already says what happened."""
    found = store.find_by_app(network.genesis_hash, app_id)
    if found is None:
        return
    record, _ = found
    event = {"app_id": app_id, "txids": list(result.txids), "round": result.round}
    try:
        record.advance(state, event)
    except SwapStateError:
        record.events.append({"state": str(state), "note": "recorded late", **event})
    store.save(record)
