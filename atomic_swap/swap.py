"""The cross-chain swap protocol (decred atomicswap's flow) on Algorand HTLC applications.

::

    initiator (network A)                         participant (network B)
    initiate: secret s, h = sha256(s)
              HTLC_A(h, to participant, T_A)  ── sealed offer ──▶  participate: open, audit
                                                                   HTLC_A on A, refuse unsafe
                                                                   terms, HTLC_B(h, to
              redeem: open, audit HTLC_B,   ◀── sealed acceptance ── initiator, T_B < T_A)
              claim HTLC_B revealing s
                                                                   extract-secret from HTLC_B
                                                                   redeem HTLC_A with s
    refund HTLC_A after T_A                                        refund HTLC_B after T_B

Every step that changes the chain reports its transaction IDs through a :class:`Reporter`
and records the new :class:`~atomic_swap.store.SwapState`, so an interrupted swap can always
be finished (``initiate --resume``, ``redeem``) or undone (``refund``).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from algosdk.v2client.algod import AlgodClient

from atomic_swap import htlc
from atomic_swap.accounts import Account
from atomic_swap.audit import ContractState, OnChainHTLC, latest_timestamp, read_htlc, verify_htlc
from atomic_swap.errors import AuditFailed, SwapStateError, TransactionRejected, UnsafeTerms
from atomic_swap.sealing import TermsChannel
from atomic_swap.store import SwapRecord, SwapState, SwapStore
from atomic_swap.terms import Acceptance, Network, Offer

__all__ = [
    "Party",
    "Reporter",
    "SafetyPolicy",
    "extract_secret",
    "initiate",
    "network_of",
    "participate",
    "reclaim",
    "redeem",
    "redeem_acceptance",
    "refund",
    "resume_initiate",
    "resume_participate",
]


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
    """Time margins (seconds) a careful participant insists on; decred uses 48 h / 24 h."""

    min_margin: int = 3600
    """Our deadline must fall at least this long before the initiator's."""
    min_lock: int = 3600
    """Our HTLC must stay claimable at least this long (time for the initiator to redeem)."""


def network_of(client: AlgodClient) -> Network:
    """The network a node serves, by genesis ID and hash."""
    info: dict[str, Any] = client.versions()  # type: ignore[assignment]
    return Network(genesis_id=info["genesis_id"], genesis_hash=info["genesis_hash_b64"])


def _step(party: Party, what: str, action: Callable[[], htlc.Submitted]) -> htlc.Submitted:
    with party.reporter.waiting(what):
        result = action()
    party.reporter.done(what, result)
    return result


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
    """Make the secret, create and fund HTLC_A, and return the sealed offer."""
    secret = secrets.token_bytes(htlc.SECRET_BYTES)
    hashlock = htlc.hashlock_of(secret)
    me = party.account
    terms = htlc.HTLCTerms(
        hashlock=hashlock,
        receiver=participant,
        refund_to=me.address,
        deadline=latest_timestamp(party.client) + lock_seconds,
        asset_id=asset_id,
        amount=amount,
    )
    created = _step(
        party,
        "create HTLC",
        lambda: htlc.create(party.client, me.private_key, me.address, terms),
    )
    assert created.app_id is not None  # htlc.create raises otherwise
    offer = Offer(
        swap_id=str(uuid.uuid4()),
        hashlock=hashlock.hex(),
        network=network_of(party.client),
        app_id=created.app_id,
        asset_id=asset_id,
        amount=amount,
        deadline=terms.deadline,
        initiator=me.address,
        participant=participant,
        want_asset_id=want_asset_id,
        want_amount=want_amount,
        receive_address=receive_address,
    )
    record = SwapRecord(
        swap_id=offer.swap_id,
        role="initiator",
        state=SwapState.CREATED,
        hashlock=offer.hashlock,
        own_app_id=created.app_id,
        offer=offer.model_dump(),
        secret=secret.hex(),
        events=[{"state": "created", "txids": list(created.txids)}],
    )
    party.store.save(record)  # the secret is on disk before any funds move
    return resume_initiate(party, channel, record.swap_id)


def resume_initiate(party: Party, channel: TermsChannel, swap_id: str) -> tuple[SwapRecord, str]:
    """Fund a created HTLC_A (if not yet funded) and (re)write the sealed offer."""
    record = party.store.load(swap_id)
    if record.role != "initiator" or record.offer is None:
        raise SwapStateError(f"swap {swap_id} was not initiated here")
    offer = Offer.model_validate(record.offer)
    if record.state is SwapState.CREATED:
        terms = _offer_terms(offer)
        me = party.account
        funded = _step(
            party,
            "fund HTLC",
            lambda: htlc.fund(party.client, me.private_key, me.address, offer.app_id, terms),
        )
        record.advance(SwapState.INITIATED, {"txids": list(funded.txids)})
        party.store.save(record)
    elif record.state is not SwapState.INITIATED:
        raise SwapStateError(f"swap {swap_id} is already {record.state}")
    return record, channel.seal(offer)


def _offer_terms(offer: Offer) -> htlc.HTLCTerms:
    return htlc.HTLCTerms(
        hashlock=bytes.fromhex(offer.hashlock),
        receiver=offer.participant,
        refund_to=offer.initiator,
        deadline=offer.deadline,
        asset_id=offer.asset_id,
        amount=offer.amount,
    )


def redeem_acceptance(
    party: Party, channel: TermsChannel, envelope: str, *, min_time_left: int = 600
) -> htlc.Submitted:
    """Open the acceptance, audit HTLC_B against our offer, and claim it with the secret.

    The secret is refused to a contract that expires within ``min_time_left`` seconds: a
    claim that reaches the network but lands after the deadline fails on chain, yet has
    already shown the secret to everyone, and the participant could then both refund HTLC_B
    and claim HTLC_A.
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
    if acceptance.network != network_of(party.client):
        problems.append("names a different network than this node's")
    if problems:
        raise UnsafeTerms("acceptance refused: " + "; ".join(problems))
    expected = htlc.HTLCTerms(
        hashlock=bytes.fromhex(offer.hashlock),
        receiver=offer.receive_address,
        refund_to=acceptance.participant,
        deadline=acceptance.deadline,
        asset_id=offer.want_asset_id,
        amount=offer.want_amount,
    )
    verify_htlc(
        read_htlc(party.client, acceptance.app_id), expected, creator=acceptance.participant
    )
    time_left = acceptance.deadline - latest_timestamp(party.client)
    if time_left < min_time_left:
        raise UnsafeTerms(
            f"not revealing the secret: the participant's contract expires in {time_left} s "
            f"(minimum {min_time_left} s)"
        )
    record.acceptance = acceptance.model_dump()
    record.counter_app_id = acceptance.app_id
    party.store.save(record)
    return redeem(party, acceptance.app_id, bytes.fromhex(record.secret))


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
    """Open the offer, audit HTLC_A on-chain, refuse unsafe terms, create and fund HTLC_B."""
    offer = channel.open(envelope)
    if not isinstance(offer, Offer):
        raise UnsafeTerms("expected an offer, got an acceptance")
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
    if offer.network != network_of(initiator_client):
        problems.append("the offer names a different network than the initiator node given")
    if problems:
        raise UnsafeTerms("offer refused: " + "; ".join(problems))
    try:
        verify_htlc(
            read_htlc(initiator_client, offer.app_id), _offer_terms(offer), creator=offer.initiator
        )
    except AuditFailed as exc:
        raise UnsafeTerms(f"offer refused: initiator's contract fails the audit: {exc}") from exc

    now_a = latest_timestamp(initiator_client)
    now_b = latest_timestamp(party.client)
    remaining = offer.deadline - now_a
    lock = lock_seconds if lock_seconds is not None else remaining // 2
    deadline = now_b + lock
    if lock < policy.min_lock:
        raise UnsafeTerms(
            f"offer refused: our lock would be {lock} s, under the minimum {policy.min_lock} s "
            f"(the initiator's contract expires in {remaining} s)"
        )
    if offer.deadline - deadline < policy.min_margin:
        raise UnsafeTerms(
            f"offer refused: our deadline would be only {offer.deadline - deadline} s before the "
            f"initiator's; we need {policy.min_margin} s to redeem after the secret is revealed"
        )
    terms = htlc.HTLCTerms(
        hashlock=bytes.fromhex(offer.hashlock),
        receiver=offer.receive_address,
        refund_to=me.address,
        deadline=deadline,
        asset_id=pay_asset_id,
        amount=pay_amount,
    )
    created = _step(
        party, "create HTLC", lambda: htlc.create(party.client, me.private_key, me.address, terms)
    )
    assert created.app_id is not None
    acceptance = Acceptance(
        swap_id=offer.swap_id,
        hashlock=offer.hashlock,
        network=network_of(party.client),
        app_id=created.app_id,
        asset_id=pay_asset_id,
        amount=pay_amount,
        deadline=deadline,
        participant=me.address,
        receive_address=offer.receive_address,
    )
    record = SwapRecord(
        swap_id=offer.swap_id,
        role="participant",
        state=SwapState.CREATED,
        hashlock=offer.hashlock,
        own_app_id=created.app_id,
        offer=offer.model_dump(),
        acceptance=acceptance.model_dump(),
        counter_app_id=offer.app_id,
        events=[{"state": "created", "txids": list(created.txids)}],
    )
    party.store.save(record)
    return resume_participate(party, initiator_client, channel, offer.swap_id)


def resume_participate(
    party: Party, initiator_client: AlgodClient, channel: TermsChannel, swap_id: str
) -> tuple[SwapRecord, str]:
    """Fund a created HTLC_B (after re-auditing HTLC_A) if needed; (re)seal the acceptance."""
    record = party.store.load(swap_id)
    if record.role != "participant" or record.offer is None or record.acceptance is None:
        raise SwapStateError(f"swap {swap_id} was not accepted here")
    offer = Offer.model_validate(record.offer)
    acceptance = Acceptance.model_validate(record.acceptance)
    if record.state is SwapState.CREATED:
        # The initiator's contract could have been refunded since we last looked.
        onchain = read_htlc(initiator_client, offer.app_id)
        try:
            verify_htlc(onchain, _offer_terms(offer), creator=offer.initiator)
        except AuditFailed as exc:
            raise UnsafeTerms(f"not funding: initiator's contract fails the audit: {exc}") from exc
        terms = htlc.HTLCTerms(
            hashlock=bytes.fromhex(acceptance.hashlock),
            receiver=acceptance.receive_address,
            refund_to=acceptance.participant,
            deadline=acceptance.deadline,
            asset_id=acceptance.asset_id,
            amount=acceptance.amount,
        )
        me = party.account
        funded = _step(
            party,
            "fund HTLC",
            lambda: htlc.fund(party.client, me.private_key, me.address, acceptance.app_id, terms),
        )
        record.advance(SwapState.PARTICIPATED, {"txids": list(funded.txids)})
        party.store.save(record)
    elif record.state is not SwapState.PARTICIPATED:
        raise SwapStateError(f"swap {swap_id} is already {record.state}")
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


def redeem(party: Party, app_id: int, secret: bytes) -> htlc.Submitted:
    """Claim HTLC ``app_id`` (paying its stored receiver) with ``secret``."""
    onchain = read_htlc(party.client, app_id)
    _require_open(onchain)
    if onchain.terms.receiver != party.account.address:
        raise UnsafeTerms(f"application {app_id} pays {onchain.terms.receiver}, not us")
    if htlc.hashlock_of(secret) != onchain.terms.hashlock:
        raise UnsafeTerms(f"the secret does not match application {app_id}'s hashlock")
    me = party.account
    result = _step(
        party,
        f"claim HTLC {app_id}",
        lambda: htlc.claim(party.client, me.private_key, me.address, app_id, onchain.terms, secret),
    )
    _record(party.store, app_id, SwapState.REDEEMED, result)
    return result


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
    _record(party.store, app_id, SwapState.REFUNDED, result)
    return result


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
    return _step(
        party,
        f"delete HTLC {app_id}",
        lambda: htlc.delete(party.client, me.private_key, me.address, app_id),
    )


def _require_open(onchain: OnChainHTLC) -> None:
    if onchain.state is not ContractState.OPEN:
        raise SwapStateError(
            f"application {onchain.app_id} is already {onchain.state.name.lower()}"
        )
    if not onchain.known_program:
        raise AuditFailed(f"application {onchain.app_id} does not run the committed HTLC program")


def _record(store: SwapStore, app_id: int, state: SwapState, result: htlc.Submitted) -> None:
    record = store.find_by_app(app_id)
    if record is not None:
        record.advance(
            state, {"app_id": app_id, "txids": list(result.txids), "round": result.round}
        )
        store.save(record)
