# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Swaps driven through the ``qswap`` CLI: two devnet processes, two KME processes.

Alice initiates on network ``alpha`` (her SAE talks to KME A), Bob participates on network
``beta`` (KME B). If ``ALGOD_URL_A``/``ALGOD_URL_B`` (and ``ALGOD_TOKEN_A``/``_B``,
``QSWAP_FUNDER_A``/``_B`` account files holding funds there) are set, the full swap runs
against those nodes instead of the devnets.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from algosdk import transaction

from atomic_swap.accounts import load_account
from atomic_swap.audit import ContractState, read_htlc
from atomic_swap.htlc import send_group
from tests.atomic_swap.conftest import ALGO, KMELink, Node, qswap


@dataclass
class Parties:
    alice: dict[str, str]
    bob: dict[str, str]
    alice_address: str
    bob_address: str
    alpha: Node
    beta: Node


@pytest.fixture
def parties(tmp_path: Path, networks: tuple[Node, Node], kme_link: KMELink) -> Parties:
    return make_parties(tmp_path, networks, kme_link)


@pytest.fixture
def parties_own_clock(
    tmp_path: Path, own_networks: tuple[Node, Node], kme_link: KMELink
) -> Parties:
    return make_parties(tmp_path, own_networks, kme_link)


def make_parties(tmp_path: Path, networks: tuple[Node, Node], kme_link: KMELink) -> Parties:
    alpha, beta = networks
    addresses = {}
    envs = {}
    for name, sae, peer, end, home_net in (
        ("alice", "alice", "bob", "a", alpha),
        ("bob", "bob", "alice", "b", beta),
    ):
        account = tmp_path / f"{name}.account"
        addresses[name] = qswap("account", "new", str(account), env={}).stdout.strip()
        envs[name] = {
            "QSWAP_HOME": str(tmp_path / f"{name}-home"),
            "QSWAP_ACCOUNT": str(account),
            "ALGOD_URL": home_net.url,
            "ALGOD_TOKEN": home_net.token,
            **kme_link.sae_env(end, sae, peer),
        }
    # Both parties need funds on their own network and fees on the other one: one group per
    # network (the CLI's `account fund` is exercised by advance_clock below).
    for node, own, other in ((alpha, "alice", "bob"), (beta, "bob", "alice")):
        funder = load_account(node.funder)
        sp = node.client.suggested_params()
        pays = [
            transaction.PaymentTxn(funder.address, sp, addresses[own], 10 * ALGO),
            transaction.PaymentTxn(funder.address, sp, addresses[other], 1 * ALGO),
        ]
        send_group(node.client, pays, funder.private_key)
    bob_env = {
        **envs["bob"],
        "QSWAP_INITIATOR_ALGOD_URL": alpha.url,
        "QSWAP_INITIATOR_ALGOD_TOKEN": alpha.token,
    }
    return Parties(envs["alice"], bob_env, addresses["alice"], addresses["bob"], alpha, beta)


def balance(node: Node, address: str) -> int:
    info = node.client.account_info(address)
    assert isinstance(info, dict)
    return int(info["amount"])


def initiate(p: Parties, tmp_path: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    offer = tmp_path / "offer.json"
    qswap(
        "initiate", "--participant", p.bob_address, "--amount", str(3 * ALGO),
        "--want-amount", str(2 * ALGO), "--out", str(offer), *extra, env=p.alice,
    )  # fmt: skip
    record = json.loads(next(Path(p.alice["QSWAP_HOME"], "swaps").glob("*.json")).read_text())
    return offer, record


def participate(
    p: Parties, offer: Path, out: Path, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return qswap(
        "participate", str(offer), "--pay-amount", str(2 * ALGO),
        "--receive-amount", str(3 * ALGO), "--out", str(out), *extra, env=p.bob, check=check,
    )  # fmt: skip


def pin_each_others_kem_keys(p: Parties, tmp_path: Path) -> dict[str, Path]:
    """Each party makes its ML-KEM key; the other pins the public half (by file, as it
    would after comparing fingerprints)."""
    pins = {}
    for name, env in (("alice", p.alice), ("bob", p.bob)):
        made = json.loads(qswap("kem-key", "new", "--json", env=env).stdout)
        assert made["created"] and made["fingerprint"].startswith("sha256:")
        pins[name] = tmp_path / f"{name}-kem.pub"
        pins[name].write_text(qswap("kem-key", "show", "--pem", env=env).stdout)
        assert qswap("kem-key", "show", env=env).stdout.strip() == made["fingerprint"]
    return pins


def test_full_swap_through_the_cli(parties: Parties, tmp_path: Path) -> None:
    """Hybrid terms both ways (the walkthrough in docs/atomic-swap.md runs otp)."""
    p = parties
    pins = pin_each_others_kem_keys(p, tmp_path)
    offer, record = initiate(p, tmp_path, "--peer-kem-key", str(pins["bob"]))
    assert json.loads(offer.read_text())["mode"] == "hybrid"
    app_a = int(record["own_app_id"])
    assert "ciphertext" not in offer.read_text() or p.bob_address not in offer.read_text()
    assert p.bob_address not in offer.read_text()  # the terms travel encrypted

    audit = qswap("audit", "--app-id", str(app_a), env=p.alice)
    assert "committed htlc.teal" in audit.stderr and "yes" in audit.stderr

    acceptance = tmp_path / "acceptance.json"
    out = participate(p, offer, acceptance, "--peer-kem-key", str(pins["alice"]))
    assert "audited HTLC" in out.stderr
    assert json.loads(acceptance.read_text())["mode"] == "hybrid"
    bob_record = json.loads(next(Path(p.bob["QSWAP_HOME"], "swaps").glob("*.json")).read_text())
    app_b = int(bob_record["own_app_id"])

    alice_before = balance(p.beta, p.alice_address)
    redeem = qswap("redeem", str(acceptance), "--algod-url", p.beta.url,
                   "--algod-token", p.beta.token, env=p.alice)  # fmt: skip
    assert f"claim HTLC {app_b}" in redeem.stderr and "tx " in redeem.stderr
    assert balance(p.beta, p.alice_address) == alice_before + 2 * ALGO - 2000

    secret = qswap("extract-secret", "--app-id", str(app_b), env=p.bob).stdout.strip()
    assert secret == record["secret"]

    # Alice cannot use the secret to take the contract she made for Bob.
    wrong = qswap("redeem", "--app-id", str(app_a), "--secret", secret, env=p.alice, check=False)
    assert wrong.returncode == 4 and "not us" in wrong.stderr

    bob_before = balance(p.alpha, p.bob_address)
    qswap("redeem", "--app-id", str(app_a), "--secret", secret, "--algod-url", p.alpha.url,
          "--algod-token", p.alpha.token, env=p.bob)  # fmt: skip
    assert balance(p.alpha, p.bob_address) == bob_before + 3 * ALGO - 2000
    assert read_htlc(p.alpha.client, app_a).state is ContractState.CLAIMED

    status = qswap("status", env=p.alice)
    assert "redeemed" in status.stderr
    status = qswap("status", env=p.bob)
    assert "redeemed" in status.stderr

    # Both settled contracts are deleted by their creators to free the minimum balance.
    qswap("reclaim", "--app-id", str(app_a), env=p.alice)
    qswap("reclaim", "--app-id", str(app_b), env=p.bob)
    gone = qswap("audit", "--app-id", str(app_b), env=p.bob, check=False)
    assert gone.returncode == 4 and "does not exist" in gone.stderr


def test_participant_refunds_when_initiator_disappears(
    parties_own_clock: Parties, tmp_path: Path
) -> None:
    p = parties_own_clock
    offer, record = initiate(p, tmp_path)
    acceptance = tmp_path / "acceptance.json"
    participate(p, offer, acceptance, "--lock", "1h", "--min-lock", "1h")
    bob_record = json.loads(next(Path(p.bob["QSWAP_HOME"], "swaps").glob("*.json")).read_text())
    app_b = int(bob_record["own_app_id"])
    # Alice never redeems. Bob cannot take his funds back before his deadline...
    early = qswap("refund", "--app-id", str(app_b), env=p.bob, check=False)
    assert early.returncode == 7 and "deadline" in early.stderr
    # ...but can after it.
    p.beta.advance_clock(3700, p.bob)
    before = balance(p.beta, p.bob_address)
    qswap("refund", "--app-id", str(app_b), env=p.bob)
    assert balance(p.beta, p.bob_address) == before + 2 * ALGO + 100_000 - 2000
    # Alice, back after her own deadline, refunds hers too.
    p.alpha.advance_clock(48 * 3600 + 100, p.alice)
    qswap("refund", "--app-id", str(record["own_app_id"]), env=p.alice)
    assert read_htlc(p.alpha.client, int(record["own_app_id"])).state is ContractState.REFUNDED
    assert "refunded" in qswap("status", env=p.bob).stderr


def test_offer_altered_in_transit_is_refused(parties: Parties, tmp_path: Path) -> None:
    p = parties
    offer, _ = initiate(p, tmp_path)
    envelope = json.loads(offer.read_text())
    ct = bytearray(base64.b64decode(envelope["ct"]))
    ct[10] ^= 0x01  # flip one bit of the sealed terms
    envelope["ct"] = base64.b64encode(bytes(ct)).decode()
    offer.write_text(json.dumps(envelope))
    before = balance(p.beta, p.bob_address)
    out = participate(p, offer, tmp_path / "acc.json", check=False)
    assert out.returncode == 3 and "authentication" in out.stderr
    assert balance(p.beta, p.bob_address) == before  # nothing was locked
    assert not list(Path(p.bob["QSWAP_HOME"], "swaps").glob("*.json"))


def test_initiator_keeps_the_secret_from_a_contract_about_to_expire(
    parties: Parties, tmp_path: Path
) -> None:
    p = parties
    offer, _ = initiate(p, tmp_path)
    acceptance = tmp_path / "acceptance.json"
    participate(p, offer, acceptance, "--lock", "20m", "--min-lock", "10m")
    bob_record = json.loads(next(Path(p.bob["QSWAP_HOME"], "swaps").glob("*.json")).read_text())
    out = qswap("redeem", str(acceptance), "--algod-url", p.beta.url, "--algod-token",
                p.beta.token, "--min-time-left", "30m", env=p.alice, check=False)  # fmt: skip
    assert out.returncode == 4 and "not revealing the secret" in out.stderr
    onchain = read_htlc(p.beta.client, int(bob_record["own_app_id"]))
    assert onchain.state is ContractState.OPEN and onchain.preimage is None
