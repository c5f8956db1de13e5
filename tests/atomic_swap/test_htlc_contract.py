# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The HTLC program evaluated by go-algorand's AVM (through a real devnet process)."""

from __future__ import annotations

import hashlib
import os

import pytest
from algosdk import account, transaction
from algosdk.logic import get_application_address
from algosdk.v2client.algod import AlgodClient

from atomic_swap import htlc
from atomic_swap.audit import ContractState, latest_timestamp, read_htlc
from atomic_swap.errors import AuditFailed, TransactionRejected
from tests.atomic_swap.conftest import Devnet

ALGO = 1_000_000


def new_account(net: Devnet, algos: int = 10) -> tuple[str, str]:
    key, address = account.generate_account()
    dispenser = account.address_from_private_key(net.dispenser_key)
    pay = transaction.PaymentTxn(dispenser, net.client.suggested_params(), address, algos * ALGO)
    htlc.send_group(net.client, [pay], net.dispenser_key)
    return key, address


def balance(client: AlgodClient, address: str, asset_id: int = 0) -> int:
    info = client.account_info(address)
    assert isinstance(info, dict)
    if asset_id == 0:
        return int(info["amount"])
    return next((a["amount"] for a in info["assets"] if a["asset-id"] == asset_id), 0)


def deploy(
    net: Devnet, *, secret: bytes, seconds: int = 600, asset_id: int = 0, amount: int = 2 * ALGO
) -> tuple[int, htlc.HTLCTerms, tuple[str, str], tuple[str, str]]:
    sender = new_account(net)
    receiver = new_account(net, 1)
    terms = htlc.HTLCTerms(
        hashlock=htlc.hashlock_of(secret) if len(secret) == 32 else _sha(secret),
        receiver=receiver[1],
        refund_to=sender[1],
        deadline=latest_timestamp(net.client) + seconds,
        asset_id=asset_id,
        amount=amount,
    )
    created = htlc.create(net.client, sender[0], sender[1], terms)
    assert created.app_id is not None and created.app_id > 1000
    htlc.fund(net.client, sender[0], sender[1], created.app_id, terms)
    return created.app_id, terms, sender, receiver


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_claim_pays_receiver_closes_escrow_and_publishes_preimage(devnet: Devnet) -> None:
    secret = os.urandom(32)
    app_id, terms, sender, receiver = deploy(devnet, secret=secret)
    before_receiver = balance(devnet.client, receiver[1])
    before_sender = balance(devnet.client, sender[1])
    htlc.claim(devnet.client, receiver[0], receiver[1], app_id, terms, secret)
    # the receiver gets the amount minus the two fees it paid (its call + the inner payment)
    assert balance(devnet.client, receiver[1]) == before_receiver + terms.amount - 2000
    # the minimum-balance top-up goes back to the refund address
    assert balance(devnet.client, sender[1]) == before_sender + htlc.ACCOUNT_MIN_BALANCE
    assert balance(devnet.client, get_application_address(app_id)) == 0
    onchain = read_htlc(devnet.client, app_id)
    assert onchain.state is ContractState.CLAIMED
    assert onchain.preimage == secret


def test_wrong_preimage_is_rejected(devnet: Devnet) -> None:
    app_id, terms, _, receiver = deploy(devnet, secret=os.urandom(32))
    with pytest.raises(TransactionRejected, match="logic eval error"):
        htlc.claim(devnet.client, receiver[0], receiver[1], app_id, terms, os.urandom(32))
    assert read_htlc(devnet.client, app_id).funded


def test_secret_of_another_size_is_rejected_even_when_it_hashes_right(devnet: Devnet) -> None:
    short = os.urandom(16)
    app_id, terms, _, receiver = deploy(devnet, secret=short)
    with pytest.raises(TransactionRejected, match="logic eval error"):
        htlc.claim(devnet.client, receiver[0], receiver[1], app_id, terms, short)


def test_early_refund_is_rejected(devnet: Devnet) -> None:
    app_id, terms, sender, _ = deploy(devnet, secret=os.urandom(32))
    with pytest.raises(TransactionRejected, match="logic eval error"):
        htlc.refund(devnet.client, sender[0], sender[1], app_id, terms)
    assert read_htlc(devnet.client, app_id).state is ContractState.OPEN


def test_late_claim_is_rejected_and_refund_returns_everything(devnet: Devnet) -> None:
    net = devnet
    secret = os.urandom(32)
    app_id, terms, sender, receiver = deploy(net, secret=secret, seconds=60)
    net.set_offset(net.offset + 120)
    with pytest.raises(TransactionRejected, match="logic eval error"):
        htlc.claim(net.client, receiver[0], receiver[1], app_id, terms, secret)
    before = balance(net.client, sender[1])
    htlc.refund(net.client, sender[0], sender[1], app_id, terms)
    expected = before + terms.amount + htlc.ACCOUNT_MIN_BALANCE - 2000
    assert balance(net.client, sender[1]) == expected
    assert read_htlc(net.client, app_id).state is ContractState.REFUNDED


def test_claim_by_a_third_party_still_pays_the_stored_receiver(devnet: Devnet) -> None:
    secret = os.urandom(32)
    app_id, terms, _, receiver = deploy(devnet, secret=secret)
    thief = new_account(devnet, 1)
    # The thief knows the secret (it is public once revealed elsewhere) and names itself.
    redirected = htlc.HTLCTerms(**{**terms.__dict__, "receiver": thief[1]})
    with pytest.raises(TransactionRejected):
        # the program pays the stored receiver, which the thief did not list: unavailable
        htlc.claim(devnet.client, thief[0], thief[1], app_id, redirected, secret)
    before = balance(devnet.client, receiver[1])
    htlc.claim(devnet.client, thief[0], thief[1], app_id, terms, secret)
    assert balance(devnet.client, receiver[1]) == before + terms.amount
    assert balance(devnet.client, thief[1]) < 1 * ALGO


def test_double_claim_is_rejected(devnet: Devnet) -> None:
    secret = os.urandom(32)
    app_id, terms, _, receiver = deploy(devnet, secret=secret)
    htlc.claim(devnet.client, receiver[0], receiver[1], app_id, terms, secret)
    with pytest.raises(TransactionRejected, match="logic eval error"):
        htlc.claim(devnet.client, receiver[0], receiver[1], app_id, terms, secret)


@pytest.mark.parametrize(
    "on_complete",
    [
        pytest.param(transaction.OnComplete.DeleteApplicationOC, id="delete"),
        pytest.param(transaction.OnComplete.UpdateApplicationOC, id="update"),
        pytest.param(transaction.OnComplete.OptInOC, id="optin"),
        pytest.param(transaction.OnComplete.CloseOutOC, id="closeout"),
    ],
)
def test_lifecycle_calls_are_rejected(devnet: Devnet, on_complete: transaction.OnComplete) -> None:
    app_id, _, sender, _ = deploy(devnet, secret=os.urandom(32))
    program = htlc.approval_program() if on_complete.name.startswith("Update") else None
    call = transaction.ApplicationCallTxn(
        sender[1], devnet.client.suggested_params(), app_id, on_complete,
        approval_program=program, clear_program=htlc.clear_program() if program else None,
    )  # fmt: skip
    with pytest.raises(TransactionRejected):
        htlc.send_group(devnet.client, [call], sender[0])
    assert read_htlc(devnet.client, app_id).funded


def test_asset_swap_claim_transfers_the_asset(devnet: Devnet) -> None:
    issuer = new_account(devnet)
    make = transaction.AssetCreateTxn(
        issuer[1], devnet.client.suggested_params(), total=10**9, default_frozen=False,
        unit_name="USDq", asset_name="test dollar", manager=issuer[1], decimals=6,
    )  # fmt: skip
    htlc.send_group(devnet.client, [make], issuer[0])
    info = devnet.client.account_info(issuer[1])
    assert isinstance(info, dict)
    asset_id = info["created-assets"][0]["index"]
    secret = os.urandom(32)
    sender = new_account(devnet)
    receiver = new_account(devnet, 1)
    for who in (sender, receiver):
        optin = transaction.AssetOptInTxn(who[1], devnet.client.suggested_params(), asset_id)
        htlc.send_group(devnet.client, [optin], who[0])
    give = transaction.AssetTransferTxn(
        issuer[1], devnet.client.suggested_params(), sender[1], 5_000_000, asset_id
    )
    htlc.send_group(devnet.client, [give], issuer[0])
    terms = htlc.HTLCTerms(
        hashlock=htlc.hashlock_of(secret), receiver=receiver[1], refund_to=sender[1],
        deadline=latest_timestamp(devnet.client) + 600, asset_id=asset_id, amount=3_000_000,
    )  # fmt: skip
    created = htlc.create(devnet.client, sender[0], sender[1], terms)
    assert created.app_id is not None
    htlc.fund(devnet.client, sender[0], sender[1], created.app_id, terms)
    assert read_htlc(devnet.client, created.app_id).funded
    htlc.claim(devnet.client, receiver[0], receiver[1], created.app_id, terms, secret)
    assert balance(devnet.client, receiver[1], asset_id) == 3_000_000
    assert balance(devnet.client, sender[1], asset_id) == 2_000_000
    assert balance(devnet.client, get_application_address(created.app_id)) == 0


def test_creator_deletes_a_settled_htlc_to_free_its_minimum_balance(devnet: Devnet) -> None:
    secret = os.urandom(32)
    app_id, terms, sender, receiver = deploy(devnet, secret=secret)
    htlc.claim(devnet.client, receiver[0], receiver[1], app_id, terms, secret)
    with pytest.raises(TransactionRejected):  # only the creator may delete
        htlc.delete(devnet.client, receiver[0], receiver[1], app_id)
    info = devnet.client.account_info(sender[1])
    assert isinstance(info, dict) and info["min-balance"] > htlc.ACCOUNT_MIN_BALANCE
    htlc.delete(devnet.client, sender[0], sender[1], app_id)
    info = devnet.client.account_info(sender[1])
    assert isinstance(info, dict)
    assert info["min-balance"] == htlc.ACCOUNT_MIN_BALANCE and not info["created-apps"]
    with pytest.raises(AuditFailed, match="does not exist"):
        read_htlc(devnet.client, app_id)


def test_funded_htlc_cannot_be_deleted_even_by_its_creator(devnet: Devnet) -> None:
    app_id, _, sender, _ = deploy(devnet, secret=os.urandom(32))
    with pytest.raises(TransactionRejected, match="logic eval error"):
        htlc.delete(devnet.client, sender[0], sender[1], app_id)
    assert read_htlc(devnet.client, app_id).funded
