# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The attacks of issue 12, each refused or survived, every balance checked to the microAlgo.

Alice initiates on ``alpha`` (KME A), Bob participates on ``beta`` (KME B), through the CLI
unless the attack needs a contract the CLI would never make (then Alice is in-process).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from algosdk import account, transaction

from atomic_swap import audit as audit_mod
from atomic_swap import htlc, swap
from atomic_swap.accounts import Account, load_account
from atomic_swap.audit import ContractState, audit, read_htlc
from atomic_swap.devnet.jig import compile_teal
from atomic_swap.errors import TransactionRejected
from atomic_swap.node import latest_timestamp
from atomic_swap.sealing import TermsChannel
from atomic_swap.store import SwapStore
from tests.atomic_swap.conftest import ALGO, KMELink, Node, qswap
from tests.atomic_swap.test_cli_swap import Parties, make_parties

MIN_FEE = 1000
ESCROW_MBR = htlc.ACCOUNT_MIN_BALANCE


@pytest.fixture
def p(tmp_path: Path, networks: tuple[Node, Node], kme_link: KMELink) -> Parties:
    return make_parties(tmp_path, networks, kme_link)


def bal(node: Node, address: str, asset_id: int = 0) -> int:
    info = node.client.account_info(address)
    assert isinstance(info, dict)
    if asset_id == 0:
        return int(info["amount"])
    return next((int(a["amount"]) for a in info["assets"] if a["asset-id"] == asset_id), 0)


def created_apps(node: Node, address: str) -> list[int]:
    info = node.client.account_info(address)
    assert isinstance(info, dict)
    return [int(a["id"]) for a in info["created-apps"]]


def alice(p: Parties) -> Account:
    return load_account(Path(p.alice["QSWAP_ACCOUNT"]))


def bob(p: Parties) -> Account:
    return load_account(Path(p.bob["QSWAP_ACCOUNT"]))


def alice_channel(p: Parties) -> TermsChannel:
    from qkd_channel.kme.client import KMEClient

    env = p.alice
    client = KMEClient(
        env["QSWAP_KME_URL"], cert=env["QSWAP_SAE_CERT"], key=env["QSWAP_SAE_KEY"],
        ca=env["QSWAP_KME_CA"],
    )  # fmt: skip
    return TermsChannel(
        client, SwapStore(Path(env["QSWAP_HOME"])), sae_id="alice", peer_sae_id="bob"
    )


def cli_initiate(p: Parties, out: Path, *extra: str, check: bool = True) -> Any:
    proc = qswap(
        "initiate", "--participant", p.bob_address, "--amount", str(3 * ALGO),
        "--want-amount", str(2 * ALGO), "--out", str(out), "--json", *extra, env=p.alice,
        check=check,
    )  # fmt: skip
    return json.loads(proc.stdout) if check else proc


def cli_participate(
    p: Parties, offer: Path, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return qswap(
        "participate", str(offer), "--pay-amount", str(2 * ALGO), "--receive-amount",
        str(3 * ALGO), "--out", str(out), "--json", *extra, env=p.bob, check=False,
    )  # fmt: skip


def handmade_offer(p: Parties, app_id: int, terms: htlc.HTLCTerms, **changes: Any) -> str:
    offer = swap.Offer(
        swap_id=str(uuid.uuid4()),
        hashlock=terms.hashlock.hex(), network=swap.network_of(p.alpha.client), app_id=app_id,
        asset_id=terms.asset_id, amount=terms.amount, deadline=terms.deadline,
        initiator=p.alice_address, participant=p.bob_address, want_asset_id=0,
        want_amount=2 * ALGO, receive_address=p.alice_address, **changes,
    )  # fmt: skip
    return alice_channel(p).seal(offer)


def raw_create(
    node: Node, who: Account, terms: htlc.HTLCTerms, *, ints: int = 4, byte_slices: int = 4,
    pages: int = 0, approval: bytes | None = None,
) -> htlc.Submitted:  # fmt: skip
    """What ``htlc.create`` sends, with the schema, pages and program an attacker picks."""
    txn = transaction.ApplicationCreateTxn(
        who.address, node.client.suggested_params(), transaction.OnComplete.NoOpOC,
        approval or htlc.approval_program(), htlc.clear_program(),
        transaction.StateSchema(num_uints=ints, num_byte_slices=byte_slices),
        transaction.StateSchema(num_uints=0, num_byte_slices=0),
        app_args=[terms.hashlock, htlc._addr_bytes(terms.receiver),
                  htlc._addr_bytes(terms.refund_to), terms.deadline.to_bytes(8, "big"),
                  terms.asset_id.to_bytes(8, "big"), terms.amount.to_bytes(8, "big")],
        extra_pages=pages,
    )  # fmt: skip
    return htlc.send_group(node.client, [txn], who.private_key)


def alice_terms(p: Parties, secret: bytes = bytes(range(32)), asset_id: int = 0) -> htlc.HTLCTerms:
    return htlc.HTLCTerms(
        hashlock=htlc.hashlock_of(secret), receiver=p.bob_address, refund_to=p.alice_address,
        deadline=latest_timestamp(p.alpha.client) + 48 * 3600, asset_id=asset_id,
        amount=3 * ALGO,
    )  # fmt: skip


def pre_fix_program() -> bytes:
    """``htlc.teal`` as it was before the contract checked its own schema at creation."""
    source = (Path(htlc.__file__).parent / "htlc.teal").read_text()
    start = source.index("    txn GlobalNumUint\n")
    end = source.index("    byte 0x088101\n    ==\n    assert\n") + len(
        "    byte 0x088101\n    ==\n    assert\n"
    )
    return compile_teal(source[:start] + source[end:])


# -- 1 and 2: a contract nobody can claim ----------------------------------------------


@pytest.mark.parametrize(
    ("shape", "why"),
    [
        pytest.param({"byte_slices": 3}, "global schema", id="undersized-schema"),
        pytest.param({"pages": 1}, "extra program pages", id="extra-pages"),
    ],
)
def test_contract_with_a_wrong_shape_cannot_be_created(
    p: Parties, shape: dict[str, int], why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = alice(p)
    before = bal(p.alpha, a.address)
    # The committed program refuses to exist with another schema or extra pages...
    with pytest.raises(TransactionRejected, match="logic eval error"):
        raw_create(p.alpha, a, alice_terms(p), **shape)
    assert bal(p.alpha, a.address) == before and created_apps(p.alpha, a.address) == []
    # ...and the audit refuses it on its own: deploy the program as it was before the fix
    # (which accepted any schema) and let the audit take it for the committed one.
    old = pre_fix_program()
    terms = alice_terms(p)
    created = raw_create(p.alpha, a, terms, approval=old, **shape)
    assert created.app_id is not None
    htlc.fund(p.alpha.client, a.private_key, a.address, created.app_id, terms)
    monkeypatch.setattr(audit_mod, "approval_program", lambda: old)
    report = audit(p.alpha.client, created.app_id, terms, creator=a.address)
    assert [c.name for c in report.checks if not c.ok] == [why]
    # Through the CLI (the real committed program): refused, and Bob locks nothing.
    offer = p.alice["QSWAP_HOME"] + "-offer.json"
    Path(offer).write_text(handmade_offer(p, created.app_id, terms))
    b_before = bal(p.beta, p.bob_address)
    out = cli_participate(p, Path(offer), Path(offer + ".acc"))
    assert out.returncode == 4 and why in out.stderr and "unknown program" in out.stderr
    assert bal(p.beta, p.bob_address) == b_before and created_apps(p.beta, p.bob_address) == []


# -- 3: an ASA the initiator can take back ---------------------------------------------


@pytest.mark.parametrize("role", ["clawback", "freeze"])
def test_asa_with_a_clawback_or_freeze_holder_is_refused_unless_allowed(
    p: Parties, tmp_path: Path, role: str
) -> None:
    a = alice(p)
    make = transaction.AssetCreateTxn(
        a.address, p.alpha.client.suggested_params(), total=10**12, default_frozen=False,
        unit_name="USDq", asset_name="test dollar", decimals=6, manager=a.address,
        **{role: a.address},
    )  # fmt: skip
    made = htlc.send_group(p.alpha.client, [make], a.private_key)
    info = p.alpha.client.pending_transaction_info(made.txids[0])
    assert isinstance(info, dict)
    asset_id = int(info["asset-index"])
    # The role survives later blocks (the devnet used to mangle it after one).
    p.alpha.advance_clock(1, p.alice)
    asset = p.alpha.client.asset_info(asset_id)
    assert isinstance(asset, dict) and asset["params"][role] == a.address
    _, envelope = swap.initiate(
        swap.Party(a, p.alpha.client, SwapStore(Path(p.alice["QSWAP_HOME"]))), alice_channel(p),
        participant=p.bob_address, amount=5_000_000, asset_id=asset_id, want_amount=2 * ALGO,
        want_asset_id=0, receive_address=p.alice_address, lock_seconds=48 * 3600,
    )  # fmt: skip
    offer = tmp_path / "offer.json"
    offer.write_text(envelope)
    b_before = bal(p.beta, p.bob_address)
    args = ("--receive-amount", "5000000", "--receive-asset", str(asset_id))
    out = cli_participate(p, offer, tmp_path / "acc.json", *args)
    assert out.returncode == 4 and f"asset {role}" in out.stderr
    assert "--allow-asset-roles" in out.stderr
    assert bal(p.beta, p.bob_address) == b_before and created_apps(p.beta, p.bob_address) == []
    shown = qswap("audit", "--app-id", str(_offer_app(p)), "--json", env=p.alice, check=False)
    report = json.loads(shown.stdout)
    assert report["asset"]["unit_name"] == "USDq" and report["asset"]["decimals"] == 6
    assert report["asset"][role] == a.address and shown.returncode == 4
    # With the explicit flag Bob accepts the risk knowingly, and locks exactly once.
    ok = cli_participate(p, offer, tmp_path / "acc.json", *args, "--allow-asset-roles")
    assert ok.returncode == 0, ok.stderr
    assert bal(p.beta, p.bob_address) == b_before - 2 * ALGO - ESCROW_MBR - 2 * MIN_FEE


def _offer_app(p: Parties) -> int:
    (record,) = SwapStore(Path(p.alice["QSWAP_HOME"])).all()
    assert record.own_app_id is not None
    return record.own_app_id


# -- 4: the same swap offered twice ----------------------------------------------------


def test_resealed_offer_gets_the_existing_htlc_and_the_swap_completes_once(
    p: Parties, tmp_path: Path
) -> None:
    first = cli_initiate(p, tmp_path / "offer1.json")
    app_a, swap_id = first["app_id"], first["swap_id"]
    a0_alpha, b0_beta = bal(p.alpha, p.alice_address), bal(p.beta, p.bob_address)
    a0_beta, b0_alpha = bal(p.beta, p.alice_address), bal(p.alpha, p.bob_address)
    out1 = cli_participate(p, tmp_path / "offer1.json", tmp_path / "acc1.json")
    assert out1.returncode == 0, out1.stderr
    app_b = json.loads(out1.stdout)["app_id"]
    # `initiate --resume` legitimately reseals (new keys, new sequence): by ID prefix.
    second = qswap("initiate", "--resume", swap_id[:8], "--out", str(tmp_path / "offer2.json"),
                   "--json", env=p.alice)  # fmt: skip
    assert json.loads(second.stdout)["app_id"] == app_a
    assert (tmp_path / "offer1.json").read_text() != (tmp_path / "offer2.json").read_text()
    out2 = cli_participate(p, tmp_path / "offer2.json", tmp_path / "acc2.json")
    assert out2.returncode == 0, out2.stderr
    assert json.loads(out2.stdout)["app_id"] == app_b  # the same HTLC, not a second one
    assert created_apps(p.beta, p.bob_address) == [app_b]
    assert bal(p.beta, p.bob_address) == b0_beta - 2 * ALGO - ESCROW_MBR - 2 * MIN_FEE
    # The swap settles once: Alice claims B, Bob claims A, nothing else is left to take.
    qswap("redeem", str(tmp_path / "acc2.json"), "--algod-url", p.beta.url,
          "--algod-token", p.beta.token, env=p.alice)  # fmt: skip
    secret = qswap("extract-secret", "--app-id", str(app_b), env=p.bob).stdout.strip()
    qswap("redeem", "--app-id", str(app_a), "--secret", secret, "--algod-url", p.alpha.url,
          "--algod-token", p.alpha.token, env=p.bob)  # fmt: skip
    assert bal(p.beta, p.alice_address) == a0_beta + 2 * ALGO - 2 * MIN_FEE
    assert bal(p.alpha, p.bob_address) == b0_alpha + 3 * ALGO - 2 * MIN_FEE
    assert bal(p.alpha, p.alice_address) == a0_alpha + ESCROW_MBR  # HTLC_A's top-up back
    # An offer reusing HTLC_A under a new swap ID is refused outright.
    terms = read_htlc(p.alpha.client, app_a).terms
    reuse = tmp_path / "offer3.json"
    reuse.write_text(handmade_offer(p, app_a, terms))
    out3 = cli_participate(p, reuse, tmp_path / "acc3.json")
    assert out3.returncode == 4 and "already used by swap" in out3.stderr


# -- 5: a wrong node token, then the retry --------------------------------------------


def test_wrong_node_token_then_retry_without_the_kme(p: Parties, tmp_path: Path) -> None:
    init = cli_initiate(p, tmp_path / "offer.json")
    out = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json")
    app_b = json.loads(out.stdout)["app_id"]
    before = bal(p.beta, p.alice_address)
    wrong = qswap("redeem", str(tmp_path / "acc.json"), "--algod-url", p.beta.url,
                  "--algod-token", "b" * 64, env=p.alice, check=False)  # fmt: skip
    assert wrong.returncode == 5 and "API token" in wrong.stderr
    assert init["swap_id"] in wrong.stderr and "--resume" not in wrong.stderr
    assert read_htlc(p.beta.client, app_b).preimage is None
    # The retry opens the kept acceptance: no KME settings at all this time.
    no_kme = {
        k: v
        for k, v in p.alice.items()
        if not k.startswith(("QSWAP_KME", "QSWAP_SAE", "QSWAP_PEER"))
    }
    retry = qswap("redeem", str(tmp_path / "acc.json"), "--algod-url", p.beta.url,
                  "--algod-token", p.beta.token, "--json", env=no_kme)  # fmt: skip
    result = json.loads(retry.stdout)
    assert result["secret"] == init["secret"] and result["hashlock"] == init["hashlock"]
    assert bal(p.beta, p.alice_address) == before + 2 * ALGO - 2 * MIN_FEE


def test_node_down_then_retry(p: Parties, tmp_path: Path) -> None:
    cli_initiate(p, tmp_path / "offer.json")
    b_before = bal(p.beta, p.bob_address)
    down = qswap("participate", str(tmp_path / "offer.json"), "--pay-amount", str(2 * ALGO),
                 "--receive-amount", str(3 * ALGO), "--out", str(tmp_path / "acc.json"),
                 env={**p.bob, "ALGOD_URL": "http://127.0.0.1:9"}, check=False)  # fmt: skip
    assert down.returncode == 5 and "unreachable" in down.stderr
    assert bal(p.beta, p.bob_address) == b_before
    again = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json")
    assert again.returncode == 0, again.stderr
    assert bal(p.beta, p.bob_address) == b_before - 2 * ALGO - ESCROW_MBR - 2 * MIN_FEE


# -- 6: deadlines on two clocks --------------------------------------------------------


def test_clock_skew_between_the_chains(
    tmp_path: Path, own_networks: tuple[Node, Node], kme_link: KMELink
) -> None:
    p = make_parties(tmp_path, own_networks, kme_link)
    p.alpha.advance_clock(10 * 3600, p.alice)  # chain A's clock runs 10 h ahead
    init = cli_initiate(p, tmp_path / "offer.json", "--lock", "30h")
    b_before = bal(p.beta, p.bob_address)
    skewed = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json", "--lock", "28h")
    assert skewed.returncode == 4 and "ahead of our clock" in skewed.stderr
    assert bal(p.beta, p.bob_address) == b_before and created_apps(p.beta, p.bob_address) == []
    # Tolerating the skew, the lock is still judged by each chain's own clock: 28 h on B
    # against 30 h left on A leaves 2 h, not the 12 h margin (the old absolute comparison
    # saw 12 h: A's deadline is 10 h later in A's timestamps).
    tolerant = ("--max-clock-skew", "11h")
    late = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json", "--lock", "28h",
                           *tolerant)  # fmt: skip
    assert late.returncode == 4 and "expire only" in late.stderr
    assert bal(p.beta, p.bob_address) == b_before
    ok = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json", *tolerant)
    assert ok.returncode == 0, ok.stderr
    acc = json.loads(ok.stdout)
    left_a = init["deadline"] - latest_timestamp(p.alpha.client)
    left_b = acc["deadline"] - latest_timestamp(p.beta.client)
    assert 14 * 3600 <= left_b <= left_a // 2 + 60  # half of A's time left, by B's clock
    assert bal(p.beta, p.bob_address) == b_before - 2 * ALGO - ESCROW_MBR - 2 * MIN_FEE


# -- 7: one network's transaction on the other -----------------------------------------


def test_cross_network_replay_is_refused(p: Parties, tmp_path: Path) -> None:
    a = alice(p)
    versions = [httpx.get(f"{n.url}/versions").json() for n in (p.alpha, p.beta)]
    assert versions[0]["genesis_hash_b64"] != versions[1]["genesis_hash_b64"]
    assert versions[0]["genesis_id"] != versions[1]["genesis_id"]
    # Alice has funds on both networks; a payment she signed for alpha is replayed on beta.
    _, sink = account.generate_account()
    pay = transaction.PaymentTxn(a.address, p.alpha.client.suggested_params(), sink, ALGO)
    before = bal(p.beta, a.address)
    with pytest.raises(TransactionRejected, match="genesis"):
        htlc.send_group(p.beta.client, [pay], a.private_key)
    assert bal(p.beta, a.address) == before and bal(p.beta, sink) == 0
    htlc.send_group(p.alpha.client, [pay], a.private_key)  # where it belongs: accepted
    assert bal(p.alpha, sink) == ALGO
    # An offer naming alpha, audited against beta's node, is refused before anything else.
    cli_initiate(p, tmp_path / "offer.json")
    b_before = bal(p.beta, p.bob_address)
    out = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json",
                          "--initiator-algod-url", p.beta.url,
                          "--initiator-algod-token", p.beta.token)  # fmt: skip
    assert out.returncode == 4 and "names network" in out.stderr
    assert bal(p.beta, p.bob_address) == b_before


# -- the rest of the issue -------------------------------------------------------------


def test_redeem_by_app_id_keeps_the_amount_and_deadline_checks(p: Parties, tmp_path: Path) -> None:
    init = cli_initiate(p, tmp_path / "offer.json")
    secret = bytes.fromhex(init["secret"])
    # Bob does not participate honestly: he makes his own HTLC on beta with Alice's
    # hashlock paying her 1 µALGO and expiring in 15 minutes, and asks her to claim it.
    b = bob(p)
    bait = htlc.HTLCTerms(
        hashlock=htlc.hashlock_of(secret), receiver=p.alice_address, refund_to=b.address,
        deadline=latest_timestamp(p.beta.client) + 900, asset_id=0, amount=1,
    )  # fmt: skip
    created = htlc.create(p.beta.client, b.private_key, b.address, bait)
    assert created.app_id is not None
    htlc.fund(p.beta.client, b.private_key, b.address, created.app_id, bait)
    before = bal(p.beta, p.alice_address)
    out = qswap("redeem", "--app-id", str(created.app_id), "--algod-url", p.beta.url,
                "--algod-token", p.beta.token, env=p.alice, check=False)  # fmt: skip
    assert out.returncode == 7 and "no local swap has application" in out.stderr
    assert read_htlc(p.beta.client, created.app_id).preimage is None  # secret kept
    assert bal(p.beta, p.alice_address) == before


def test_initiate_gets_its_keys_before_locking_funds(p: Parties, tmp_path: Path) -> None:
    before = bal(p.alpha, p.alice_address)
    cli_initiate(p, tmp_path / "offer.json")  # the KME works: funds are locked
    locked = bal(p.alpha, p.alice_address)
    assert locked == before - 3 * ALGO - ESCROW_MBR - 2 * MIN_FEE
    down = qswap("initiate", "--participant", p.bob_address, "--amount", str(3 * ALGO),
                 "--want-amount", str(2 * ALGO), "--out", str(tmp_path / "o2.json"),
                 env={**p.alice, "QSWAP_KME_URL": "https://127.0.0.1:9"}, check=False)  # fmt: skip
    assert down.returncode == 3 and "KME" in down.stderr
    assert bal(p.alpha, p.alice_address) == locked  # nothing locked, not even a fee


def test_failure_after_locking_names_the_swap_and_the_resume_command(
    p: Parties, tmp_path: Path
) -> None:
    out = qswap("initiate", "--participant", p.bob_address, "--amount", str(50 * ALGO),
                "--want-amount", str(2 * ALGO), "--lock", "2h30m", "--out",
                str(tmp_path / "offer.json"), "--json", env=p.alice, check=False)  # fmt: skip
    assert out.returncode == 5 and "overspend" in out.stderr
    (record,) = SwapStore(Path(p.alice["QSWAP_HOME"])).all()
    assert f"qswap initiate --resume {record.swap_id}" in out.stderr
    failure = json.loads(out.stdout)
    assert failure["swap_id"] == record.swap_id and failure["exit_code"] == 5
    assert failure["resume"] == f"qswap initiate --resume {record.swap_id}"
    # status shows the full ID, and the 8-character prefix is accepted by --resume.
    status = qswap("status", env=p.alice)
    assert record.swap_id in status.stderr
    qswap("account", "fund", p.alice["QSWAP_ACCOUNT"], "--algos", "45", "--from",
          str(p.alpha.funder), "--algod-url", p.alpha.url, "--algod-token", p.alpha.token,
          env={})  # fmt: skip
    resumed = qswap("initiate", "--resume", record.swap_id[:8], "--out",
                    str(tmp_path / "offer.json"), "--json", env=p.alice)  # fmt: skip
    assert json.loads(resumed.stdout)["state"] == "initiated"
    terms = read_htlc(p.alpha.client, record.own_app_id or 0).terms
    assert terms.deadline - latest_timestamp(p.alpha.client) <= 2 * 3600 + 30 * 60


def test_audit_piped_shows_the_whole_secret(p: Parties, tmp_path: Path) -> None:
    init = cli_initiate(p, tmp_path / "offer.json")
    out = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json")
    app_b = json.loads(out.stdout)["app_id"]
    qswap("redeem", str(tmp_path / "acc.json"), "--algod-url", p.beta.url,
          "--algod-token", p.beta.token, env=p.alice)  # fmt: skip
    shown = qswap("audit", "--app-id", str(app_b), "--algod-url", p.beta.url,
                  "--algod-token", p.beta.token, env=p.alice)  # fmt: skip
    assert init["secret"] in shown.stderr and init["hashlock"] in shown.stderr
    assert "…" not in shown.stderr
    assert "global schema" in shown.stderr and init["swap_id"] in shown.stderr
    data = json.loads(qswap("audit", "--app-id", str(app_b), "--json", "--algod-url", p.beta.url,
                            "--algod-token", p.beta.token, env=p.bob).stdout)  # fmt: skip
    assert data["secret"] == init["secret"] and data["state"] == "claimed"
    assert data["global_schema"] == {"uints": 4, "byte_slices": 4}


def test_records_are_keyed_by_network_and_app_id(
    tmp_path: Path, own_networks: tuple[Node, Node], kme_link: KMELink
) -> None:
    # Two fresh devnets hand out the same application IDs: Alice's HTLC on alpha and Bob's
    # on beta get the same number, and every step still finds the right contract.
    p = make_parties(tmp_path, own_networks, kme_link)
    init = cli_initiate(p, tmp_path / "offer.json")
    out = cli_participate(p, tmp_path / "offer.json", tmp_path / "acc.json", "--lock", "13h")
    app_b = json.loads(out.stdout)["app_id"]
    assert app_b == init["app_id"]  # the collision the old records could not tell apart
    p.beta.advance_clock(13 * 3600 + 60, p.bob)
    before = bal(p.beta, p.bob_address)
    refunded = qswap("refund", "--app-id", str(app_b), "--json", env=p.bob)
    assert json.loads(refunded.stdout)["swap_id"] == init["swap_id"]
    assert bal(p.beta, p.bob_address) == before + 2 * ALGO + ESCROW_MBR - 2 * MIN_FEE
    status = json.loads(qswap("status", "--json", env=p.bob).stdout)["swaps"][0]
    assert status["state"] == "refunded" and status["own_htlc_state"] == "refunded"
    assert read_htlc(p.alpha.client, init["app_id"]).state is ContractState.OPEN
