# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``qswap devnet`` speaks enough of algod's v2 API for AlgodClient, and behaves like a node."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import httpx
import pytest
from algosdk import account, transaction
from algosdk.atomic_transaction_composer import AccountTransactionSigner
from algosdk.encoding import encode_address
from algosdk.error import AlgodHTTPError
from algosdk.logic import get_application_address
from algosdk.v2client.algod import AlgodClient

from atomic_swap import htlc
from atomic_swap.devnet.jig import compile_teal
from atomic_swap.errors import TransactionRejected
from tests.atomic_swap.conftest import Devnet, as_json, start_devnet

ALGO = 1_000_000


def _signed_payment(
    net: Devnet, amount: int = ALGO, **overrides: int
) -> transaction.SignedTransaction:
    sp = net.client.suggested_params()
    for name, value in overrides.items():
        setattr(sp, name, value)
    sender = account.address_from_private_key(net.dispenser_key)
    _, receiver = account.generate_account()
    txn = transaction.PaymentTxn(sender, sp, receiver, amount)
    signed = AccountTransactionSigner(net.dispenser_key).sign_transactions([txn], [0])[0]
    assert isinstance(signed, transaction.SignedTransaction)
    return signed


def test_api_token_is_required_except_for_health_and_versions(devnet: Devnet) -> None:
    assert httpx.get(f"{devnet.url}/health").status_code == 200
    versions = httpx.get(f"{devnet.url}/versions").json()
    assert versions["genesis_id"] and versions["genesis_hash_b64"]
    assert httpx.get(f"{devnet.url}/v2/status").status_code == 401
    wrong = AlgodClient("b" * 64, devnet.url)
    with pytest.raises(AlgodHTTPError) as err:
        wrong.status()
    assert err.value.code == 401


def test_one_block_per_group_and_pending_info(devnet: Devnet) -> None:
    before = as_json(devnet.client.status())["last-round"]
    stxn = _signed_payment(devnet)
    txid = devnet.client.send_transaction(stxn)
    info = as_json(transaction.wait_for_confirmation(devnet.client, txid, 4))
    assert info["confirmed-round"] == before + 1
    assert info["txn"]["txn"]["amt"] == ALGO and info["txn"]["txn"]["type"] == "pay"
    assert as_json(devnet.client.status())["last-round"] == before + 1


def test_resubmitting_a_confirmed_transaction_is_refused(devnet: Devnet) -> None:
    stxn = _signed_payment(devnet)
    devnet.client.send_transaction(stxn)
    with pytest.raises(AlgodHTTPError, match="already in ledger"):
        devnet.client.send_transaction(stxn)


def test_transaction_outside_its_validity_window_is_refused(devnet: Devnet) -> None:
    now = as_json(devnet.client.status())["last-round"]
    stxn = _signed_payment(devnet, first=now + 50, last=now + 60)
    with pytest.raises(AlgodHTTPError, match="txn dead"):
        devnet.client.send_transaction(stxn)


def test_bad_signature_is_refused_by_the_evaluator(devnet: Devnet) -> None:
    stxn = _signed_payment(devnet)
    stxn.signature = base64.b64encode(bytes(64)).decode()
    with pytest.raises(AlgodHTTPError) as err:
        devnet.client.send_transaction(stxn)
    assert err.value.code == 400


def test_malformed_body_is_a_client_error(devnet: Devnet) -> None:
    r = httpx.post(f"{devnet.url}/v2/transactions", content=b"\xc1garbage", headers=devnet.headers)
    assert r.status_code == 400 and r.json()["message"]


def test_overspend_is_refused(devnet: Devnet) -> None:
    key, address = account.generate_account()
    txn = transaction.PaymentTxn(address, devnet.client.suggested_params(), address, 1)
    with pytest.raises(Exception, match="overspend"):
        htlc.send_group(devnet.client, [txn], key)


def test_wait_for_block_after_returns_when_a_block_arrives(devnet: Devnet) -> None:
    current = as_json(devnet.client.status())["last-round"]
    timer = threading.Timer(0.5, lambda: devnet.client.send_transaction(_signed_payment(devnet)))
    timer.start()
    try:
        status = as_json(devnet.client.status_after_block(current))
    finally:
        timer.join()
    assert status["last-round"] > current


def test_compile_matches_the_local_assembler(devnet: Devnet) -> None:
    source = (Path(htlc.__file__).parent / "htlc.teal").read_text()
    result = devnet.client.compile(source)
    assert base64.b64decode(result["result"]) == compile_teal(source)
    with pytest.raises(AlgodHTTPError):
        devnet.client.compile("#pragma version 8\nnot_an_opcode\n")


def test_inner_transactions_and_logs_are_reported(devnet: Devnet) -> None:
    key, address = account.generate_account()
    htlc.send_group(
        devnet.client,
        [transaction.PaymentTxn(account.address_from_private_key(devnet.dispenser_key),
                                devnet.client.suggested_params(), address, 5 * ALGO)],
        devnet.dispenser_key,
    )  # fmt: skip
    program = compile_teal(
        '#pragma version 8\ntxn ApplicationID\nbz ok\nbyte "hello"\nlog\n'
        "itxn_begin\nint pay\nitxn_field TypeEnum\ntxn Sender\nitxn_field Receiver\n"
        "int 1000\nitxn_field Amount\nint 0\nitxn_field Fee\nitxn_submit\nok:\nint 1\n"
    )
    empty = transaction.StateSchema(0, 0)
    create = transaction.ApplicationCreateTxn(
        address, devnet.client.suggested_params(), 0, program, program, empty, empty
    )
    app_id = htlc.send_group(devnet.client, [create], key).app_id
    assert app_id is not None and app_id > 1000
    fund = transaction.PaymentTxn(
        address, devnet.client.suggested_params(), get_application_address(app_id), ALGO
    )
    htlc.send_group(devnet.client, [fund], key)
    sp = devnet.client.suggested_params()
    sp.fee, sp.flat_fee = 2000, True
    call = transaction.ApplicationNoOpTxn(address, sp, app_id)
    result = htlc.send_group(devnet.client, [call], key)
    info = as_json(devnet.client.pending_transaction_info(result.txids[0]))
    assert base64.b64decode(info["logs"][0]) == b"hello"
    inner = info["inner-txns"][0]["txn"]["txn"]
    assert inner["type"] == "pay" and inner["amt"] == 1000 and inner["rcv"] == address


def test_state_survives_a_restart_and_secrets_are_private(tmp_path: Path) -> None:
    net = start_devnet(tmp_path, "persist")
    try:
        for name in ("dispenser.mnemonic", "algod.token"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
        stxn = _signed_payment(net, 7 * ALGO)
        net.client.send_transaction(stxn)
        receiver = stxn.transaction.dictify()["rcv"]
        receiver = encode_address(receiver)
        round_ = as_json(net.client.status())["last-round"]
    finally:
        net.stop()
    again = start_devnet(tmp_path, "persist")
    try:
        assert as_json(again.client.status())["last-round"] == round_
        assert as_json(again.client.account_info(receiver))["amount"] == 7 * ALGO
        assert (
            as_json(again.client.pending_transaction_info(stxn.get_txid()))["confirmed-round"]
            == round_
        )
    finally:
        again.stop()


def test_data_dir_of_another_network_is_refused(tmp_path: Path) -> None:
    start_devnet(tmp_path, "one").stop()
    with pytest.raises(RuntimeError, match="exited"):
        start_devnet(tmp_path, "two")


def test_boxes_persist_across_unrelated_blocks_and_can_be_deleted(devnet: Devnet) -> None:
    key, address = account.generate_account()
    dispenser = account.address_from_private_key(devnet.dispenser_key)
    pay = transaction.PaymentTxn(dispenser, devnet.client.suggested_params(), address, 5 * ALGO)
    htlc.send_group(devnet.client, [pay], devnet.dispenser_key)
    program = compile_teal(
        '#pragma version 8\ntxn ApplicationID\nbz ok\ntxna ApplicationArgs 0\nbyte "put"\n==\n'
        'bnz put\ntxna ApplicationArgs 0\nbyte "del"\n==\nbnz del\n'
        'byte "b"\nbox_get\nassert\nlog\nb ok\n'
        'put:\nbyte "b"\nbyte "value"\nbox_put\nb ok\n'
        'del:\nbyte "b"\nbox_del\nassert\nok:\nint 1\n'
    )
    empty = transaction.StateSchema(0, 0)
    create = transaction.ApplicationCreateTxn(
        address, devnet.client.suggested_params(), 0, program, program, empty, empty
    )
    app_id = htlc.send_group(devnet.client, [create], key).app_id
    assert app_id is not None
    fund = transaction.PaymentTxn(
        address, devnet.client.suggested_params(), get_application_address(app_id), ALGO
    )
    htlc.send_group(devnet.client, [fund], key)

    def call(arg: bytes) -> htlc.Submitted:
        sp = devnet.client.suggested_params()
        txn = transaction.ApplicationNoOpTxn(address, sp, app_id, [arg], boxes=[(0, b"b")])
        return htlc.send_group(devnet.client, [txn], key)

    call(b"put")
    devnet.client.send_transaction(_signed_payment(devnet))  # a block that does not touch it
    got = call(b"get")
    info = as_json(devnet.client.pending_transaction_info(got.txids[0]))
    assert base64.b64decode(info["logs"][0]) == b"value"
    call(b"del")
    with pytest.raises(TransactionRejected):
        call(b"get")


def test_minimum_balance_counts_the_state_schema_of_created_apps(devnet: Devnet) -> None:
    key, address = account.generate_account()
    dispenser = account.address_from_private_key(devnet.dispenser_key)
    pay = transaction.PaymentTxn(dispenser, devnet.client.suggested_params(), address, ALGO)
    htlc.send_group(devnet.client, [pay], devnet.dispenser_key)
    program = compile_teal("#pragma version 8\nint 1\n")
    create = transaction.ApplicationCreateTxn(
        address, devnet.client.suggested_params(), 0, program, program,
        transaction.StateSchema(4, 4), transaction.StateSchema(0, 0),
    )  # fmt: skip
    htlc.send_group(devnet.client, [create], key)
    info = as_json(devnet.client.account_info(address))
    locked = 100_000 + 100_000 + 4 * 28_500 + 4 * 50_000
    assert info["min-balance"] == locked
    # 1 ALGO - 2 fees - 0.6 ALGO would leave 0.398 ALGO, under the 0.514 ALGO locked.
    spend = transaction.PaymentTxn(address, devnet.client.suggested_params(), dispenser, 600_000)
    with pytest.raises(TransactionRejected, match="balance"):
        htlc.send_group(devnet.client, [spend], key)
    small = transaction.PaymentTxn(address, devnet.client.suggested_params(), dispenser, 400_000)
    htlc.send_group(devnet.client, [small], key)


def test_each_devnet_is_its_own_network(tmp_path: Path, devnet: Devnet) -> None:
    other = start_devnet(tmp_path, "other")
    try:
        mine, theirs = (httpx.get(f"{n.url}/versions").json() for n in (devnet, other))
        assert mine["genesis_id"] == "unit-v1" and theirs["genesis_id"] == "other-v1"
        assert mine["genesis_hash_b64"] != theirs["genesis_hash_b64"]
        params = as_json(httpx.get(f"{other.url}/v2/transactions/params", headers=other.headers)
                         .json())  # fmt: skip
        assert params["genesis-hash"] == theirs["genesis_hash_b64"]
        block = as_json(other.client.block_info(1))["block"]
        assert block["gh"] == theirs["genesis_hash_b64"] and block["gen"] == "other-v1"
        # A payment signed for `unit`, with a validity window both chains are in, is refused
        # by `other` (and would be by the evaluator itself: the block names other's genesis).
        sp = devnet.client.suggested_params()
        sp.first, sp.last = 1, 1000
        dispenser = account.address_from_private_key(devnet.dispenser_key)
        _, receiver = account.generate_account()
        pay = transaction.PaymentTxn(dispenser, sp, receiver, ALGO)
        signed = AccountTransactionSigner(devnet.dispenser_key).sign_transactions([pay], [0])
        with pytest.raises(AlgodHTTPError, match="genesis hash"):
            other.client.send_transactions(signed)
        # The same genesis hash with another genesis ID is refused too.
        sp2 = other.client.suggested_params()
        sp2.gen = "unit-v1"
        other_key = other.dispenser_key
        bad = transaction.PaymentTxn(account.address_from_private_key(other_key), sp2, receiver, 1)
        with pytest.raises(TransactionRejected, match="genesis ID"):
            htlc.send_group(other.client, [bad], other_key)
    finally:
        other.stop()
    # The genesis is the data directory's: a restart keeps it.
    again = start_devnet(tmp_path, "other")
    try:
        assert httpx.get(f"{again.url}/versions").json() == theirs
    finally:
        again.stop()


def test_application_ids_are_never_reused(devnet: Devnet) -> None:
    key, address = account.generate_account()
    dispenser = account.address_from_private_key(devnet.dispenser_key)
    pay = transaction.PaymentTxn(dispenser, devnet.client.suggested_params(), address, 5 * ALGO)
    htlc.send_group(devnet.client, [pay], devnet.dispenser_key)
    program = compile_teal("#pragma version 8\nint 1\n")
    empty = transaction.StateSchema(0, 0)

    def create(pages: int = 0) -> int:
        txn = transaction.ApplicationCreateTxn(
            address, devnet.client.suggested_params(), 0, program, program, empty, empty,
            extra_pages=pages,
        )  # fmt: skip
        app_id = htlc.send_group(devnet.client, [txn], key).app_id
        assert app_id is not None
        return app_id

    first = create()
    delete = transaction.ApplicationDeleteTxn(address, devnet.client.suggested_params(), first)
    htlc.send_group(devnet.client, [delete], key)
    second = create(pages=1)
    assert second > first
    devnet.client.send_transaction(_signed_payment(devnet))  # a block that does not touch it
    params = as_json(devnet.client.application_info(second))["params"]
    assert params["extra-program-pages"] == 1
    assert base64.b64decode(params["clear-state-program"]) == program
    info = as_json(devnet.client.account_info(address))
    assert info["min-balance"] == 100_000 + 100_000 + 100_000  # account + app + extra page


def test_asset_roles_survive_blocks(devnet: Devnet) -> None:
    key, address = account.generate_account()
    _, reserve = account.generate_account()
    dispenser = account.address_from_private_key(devnet.dispenser_key)
    pay = transaction.PaymentTxn(dispenser, devnet.client.suggested_params(), address, 5 * ALGO)
    htlc.send_group(devnet.client, [pay], devnet.dispenser_key)
    make = transaction.AssetCreateTxn(
        address, devnet.client.suggested_params(), total=1000, default_frozen=False,
        unit_name="ROLE", asset_name="roles", decimals=2, manager=address, reserve=reserve,
        freeze=dispenser, clawback=address,
    )  # fmt: skip
    made = htlc.send_group(devnet.client, [make], key)
    asset_id = as_json(devnet.client.pending_transaction_info(made.txids[0]))["asset-index"]
    for _ in range(2):
        devnet.client.send_transaction(_signed_payment(devnet))
    params = as_json(devnet.client.asset_info(asset_id))["params"]
    assert (params["manager"], params["reserve"], params["freeze"], params["clawback"]) == (
        address,
        reserve,
        dispenser,
        address,
    )
    # ...and keep working: the clawback address can move the asset without the holder.
    optin = transaction.AssetOptInTxn(dispenser, devnet.client.suggested_params(), asset_id)
    htlc.send_group(devnet.client, [optin], devnet.dispenser_key)
    give = transaction.AssetTransferTxn(
        address, devnet.client.suggested_params(), dispenser, 10, asset_id
    )
    htlc.send_group(devnet.client, [give], key)
    take = transaction.AssetTransferTxn(
        address, devnet.client.suggested_params(), address, 4, asset_id, revocation_target=dispenser
    )
    htlc.send_group(devnet.client, [take], key)
    holdings = as_json(devnet.client.account_info(dispenser))["assets"]
    assert next(a["amount"] for a in holdings if a["asset-id"] == asset_id) == 6
