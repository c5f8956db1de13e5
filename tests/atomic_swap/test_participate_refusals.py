# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``qswap participate`` refuses offers that would put the participant's funds at risk.

Offers are made in-process (the initiator's side is not under test here); every refusal is
checked through the CLI: exit code, message, and that nothing was locked.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from algosdk import account, transaction

from atomic_swap import htlc, swap
from atomic_swap.accounts import Account, create_account_file, load_account
from atomic_swap.audit import latest_timestamp, read_htlc
from atomic_swap.devnet.jig import compile_teal
from atomic_swap.errors import TransactionRejected
from atomic_swap.sealing import TermsChannel
from atomic_swap.store import SwapState, SwapStore
from atomic_swap.terms import Offer
from tests.atomic_swap.conftest import ALGO, KMELink, Node, qswap


@dataclass
class Setup:
    alice: Account
    bob: Account
    alpha: Node
    beta: Node
    bob_env: dict[str, str]
    kme: KMELink
    tmp: Path

    def alice_channel(self, peer: str = "bob") -> TermsChannel:
        return TermsChannel(
            self.kme.client("a", "alice"),
            SwapStore(self.tmp / "alice-home"),
            sae_id="alice",
            peer_sae_id=peer,
        )

    def alice_party(self) -> swap.Party:
        return swap.Party(self.alice, self.alpha.client, SwapStore(self.tmp / "alice-home"))

    def participate(self, offer: str, *extra: str) -> subprocess.CompletedProcess[str]:
        path = self.tmp / f"offer-{uuid.uuid4()}.json"
        path.write_text(offer)
        return qswap(
            "participate", str(path), "--pay-amount", str(2 * ALGO), "--receive-amount",
            str(3 * ALGO), "--out", str(self.tmp / "acceptance.json"), *extra,
            env=self.bob_env, check=False,
        )  # fmt: skip

    def assert_nothing_locked(self) -> None:
        assert not (self.tmp / "acceptance.json").exists()
        info = self.beta.client.account_info(self.bob.address)
        assert isinstance(info, dict)
        assert info["amount"] == 10 * ALGO and not info["created-apps"]


def _balance(node: Node, address: str) -> int:
    info = node.client.account_info(address)
    assert isinstance(info, dict)
    return int(info["amount"])


def _fund(node: Node, addresses: list[str]) -> None:
    funder = account.address_from_private_key(_key(node.funder))
    sp = node.client.suggested_params()
    pays = [transaction.PaymentTxn(funder, sp, a, 10 * ALGO) for a in addresses]
    htlc.send_group(node.client, pays, _key(node.funder))


def _key(path: Path) -> str:
    return load_account(path).private_key


@pytest.fixture
def setup(tmp_path: Path, networks: tuple[Node, Node], kme_link: KMELink) -> Setup:
    alpha, beta = networks
    alice = create_account_file(tmp_path / "alice.account")
    bob = create_account_file(tmp_path / "bob.account")
    _fund(alpha, [alice.address])
    _fund(beta, [bob.address])
    bob_env = {
        "QSWAP_HOME": str(tmp_path / "bob-home"),
        "QSWAP_ACCOUNT": str(tmp_path / "bob.account"),
        "ALGOD_URL": beta.url,
        "ALGOD_TOKEN": beta.token,
        "QSWAP_INITIATOR_ALGOD_URL": alpha.url,
        "QSWAP_INITIATOR_ALGOD_TOKEN": alpha.token,
        **kme_link.sae_env("b", "bob", "alice"),
    }
    return Setup(alice, bob, alpha, beta, bob_env, kme_link, tmp_path)


def _offer(s: Setup, *, participant: str | None = None, lock: int = 48 * 3600) -> tuple[str, int]:
    _, envelope = swap.initiate(
        s.alice_party(), s.alice_channel(), participant=participant or s.bob.address,
        amount=3 * ALGO, asset_id=0, want_amount=2 * ALGO, want_asset_id=0,
        receive_address=s.alice.address, lock_seconds=lock,
    )  # fmt: skip
    return envelope, json.loads(envelope)["seq"]


def _handmade_offer(
    s: Setup, app_id: int, hashlock: bytes, deadline: int, recipient: str = "bob"
) -> str:
    network = swap.network_of(s.alpha.client)
    offer = Offer(
        swap_id=str(uuid.uuid4()), hashlock=hashlock.hex(), network=network,
        app_id=app_id, asset_id=0, amount=3 * ALGO, deadline=deadline, initiator=s.alice.address,
        participant=s.bob.address, want_asset_id=0, want_amount=2 * ALGO,
        receive_address=s.alice.address,
    )  # fmt: skip
    return s.alice_channel(peer=recipient).seal(offer)


def test_amount_mismatch_is_refused(setup: Setup) -> None:
    envelope, _ = _offer(setup)
    out = setup.participate(envelope, "--receive-amount", str(4 * ALGO))
    assert out.returncode == 4 and "amount mismatch" in out.stderr
    setup.assert_nothing_locked()


def test_offer_naming_another_receiver_is_refused(setup: Setup) -> None:
    _, elsewhere = account.generate_account()
    envelope, _ = _offer(setup, participant=elsewhere)
    out = setup.participate(envelope)
    assert out.returncode == 4 and "not us" in out.stderr
    setup.assert_nothing_locked()


def test_deadline_too_close_is_refused(setup: Setup) -> None:
    envelope, _ = _offer(setup, lock=20 * 3600)  # half of it (10 h) is under the 12 h minimum
    out = setup.participate(envelope)
    assert out.returncode == 4 and "refused" in out.stderr and "minimum" in out.stderr
    setup.assert_nothing_locked()


def test_unfunded_contract_is_refused(setup: Setup) -> None:
    secret = bytes(32)
    terms = htlc.HTLCTerms(
        hashlock=htlc.hashlock_of(secret), receiver=setup.bob.address,
        refund_to=setup.alice.address, deadline=latest_timestamp(setup.alpha.client) + 48 * 3600,
        asset_id=0, amount=3 * ALGO,
    )  # fmt: skip
    created = htlc.create(setup.alpha.client, setup.alice.private_key, setup.alice.address, terms)
    assert created.app_id is not None
    out = setup.participate(_handmade_offer(setup, created.app_id, terms.hashlock, terms.deadline))
    assert out.returncode == 4 and "not funded" in out.stderr
    setup.assert_nothing_locked()


def test_unknown_program_is_refused(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    # A look-alike whose claim skips the hashlock check: anyone could drain it, so the
    # participant's payment would be unprotected.
    source = (Path(htlc.__file__).parent / "htlc.teal").read_text()
    rigged = source.replace(
        '    sha256\n    byte "hashlock"\n    app_global_get\n    ==\n    assert\n', ""
    )
    assert rigged != source
    monkeypatch.setattr(htlc, "approval_program", lambda: compile_teal(rigged))
    secret = bytes(range(32))
    terms = htlc.HTLCTerms(
        hashlock=htlc.hashlock_of(secret), receiver=setup.bob.address,
        refund_to=setup.alice.address, deadline=latest_timestamp(setup.alpha.client) + 48 * 3600,
        asset_id=0, amount=3 * ALGO,
    )  # fmt: skip
    a = setup.alice
    created = htlc.create(setup.alpha.client, a.private_key, a.address, terms)
    assert created.app_id is not None
    htlc.fund(setup.alpha.client, a.private_key, a.address, created.app_id, terms)
    out = setup.participate(_handmade_offer(setup, created.app_id, terms.hashlock, terms.deadline))
    assert out.returncode == 4 and "unknown program" in out.stderr
    setup.assert_nothing_locked()


def test_replayed_offer_gets_the_same_htlc_not_a_second_one(setup: Setup) -> None:
    envelope, _ = _offer(setup)
    first = setup.participate(envelope, "--json")
    assert first.returncode == 0, first.stderr
    paid = json.loads(first.stdout)
    after_first = _balance(setup.beta, setup.bob.address)
    # Bob paid 2 ALGO + the escrow's 0.1 ALGO minimum balance + two fees, and holds the
    # application's minimum balance (0.1 + 4 x 0.0285 + 4 x 0.05 ALGO) against his account.
    assert after_first == 10 * ALGO - 2 * ALGO - 100_000 - 2000
    again = setup.participate(envelope, "--json")  # the same envelope, replayed
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["app_id"] == paid["app_id"]
    assert _balance(setup.beta, setup.bob.address) == after_first  # to the microAlgo
    info = setup.beta.client.account_info(setup.bob.address)
    assert isinstance(info, dict) and len(info["created-apps"]) == 1


def test_envelope_for_another_sae_is_refused(setup: Setup) -> None:
    # A genuine offer from Alice, sealed for Mallory, forwarded to Bob.
    envelope = _handmade_offer(setup, 1001, bytes(32), 2**40, recipient="mallory")
    out = setup.participate(envelope)
    assert out.returncode == 3 and "not for" in out.stderr
    setup.assert_nothing_locked()


def test_offer_with_forged_key_ids_is_refused(setup: Setup) -> None:
    envelope, _ = _offer(setup)
    doc = json.loads(envelope)
    doc["key_ids"] = [str(uuid.uuid4()) for _ in doc["key_ids"]]
    out = setup.participate(json.dumps(doc))
    assert out.returncode == 3 and "KME" in out.stderr
    setup.assert_nothing_locked()


def _alice_env(s: Setup) -> dict[str, str]:
    return {
        "QSWAP_HOME": str(s.tmp / "alice-home"),
        "QSWAP_ACCOUNT": str(s.tmp / "alice.account"),
        "ALGOD_URL": s.alpha.url,
        "ALGOD_TOKEN": s.alpha.token,
        **s.kme.sae_env("a", "alice", "bob"),
    }


def _initiate_beyond_means(s: Setup) -> str:
    """Alice offers 20 ALGO holding 10: the HTLC is created, its funding fails."""
    with pytest.raises(TransactionRejected, match="overspend"):
        swap.initiate(
            s.alice_party(), s.alice_channel(), participant=s.bob.address, amount=20 * ALGO,
            asset_id=0, want_amount=2 * ALGO, want_asset_id=0, receive_address=s.alice.address,
            lock_seconds=48 * 3600,
        )  # fmt: skip
    (record,) = SwapStore(s.tmp / "alice-home").all()
    assert record.state is SwapState.CREATED and record.secret
    return record.swap_id


def test_interrupted_initiation_is_finished_with_resume(setup: Setup) -> None:
    swap_id = _initiate_beyond_means(setup)
    _fund(setup.alpha, [setup.alice.address])  # +10 ALGO, twice
    _fund(setup.alpha, [setup.alice.address])
    offer = setup.tmp / "offer.json"
    qswap("initiate", "--resume", swap_id, "--out", str(offer), env=_alice_env(setup))
    record = SwapStore(setup.tmp / "alice-home").load(swap_id)
    assert record.state is SwapState.INITIATED
    assert read_htlc(setup.alpha.client, record.own_app_id).funded
    out = setup.participate(offer.read_text(), "--receive-amount", str(20 * ALGO))
    assert out.returncode == 0, out.stderr


def test_interrupted_initiation_is_undone_with_reclaim(setup: Setup) -> None:
    swap_id = _initiate_beyond_means(setup)
    record = SwapStore(setup.tmp / "alice-home").load(swap_id)
    info = setup.alpha.client.account_info(setup.alice.address)
    assert isinstance(info, dict) and info["min-balance"] > htlc.ACCOUNT_MIN_BALANCE
    qswap("reclaim", "--app-id", str(record.own_app_id), env=_alice_env(setup))
    info = setup.alpha.client.account_info(setup.alice.address)
    assert isinstance(info, dict) and info["min-balance"] == htlc.ACCOUNT_MIN_BALANCE
