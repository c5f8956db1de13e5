"""Bad input and faults: unreachable nodes, reverts, wrong chains, races, slow blocks."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from notary.chain import ChainClient, ChainSettings, RecordInput, RetryPolicy
from notary.chain.deployment import DEPLOYMENT_FILE, Deployment, save_deployment
from notary.errors import (
    BatchTooLarge,
    ChainError,
    ChainMisconfigured,
    ChainReset,
    ChainUnavailable,
    TransactionNotConfirmed,
    TransactionReverted,
)
from tests.conftest import AnvilFactory, AnvilNode, free_port
from tests.notary.records import chain_record


class Sleeps:
    """Records backoff delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def fast_retry(sleeps: Sleeps | None = None, attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, initial_backoff_s=0.01, sleep=sleeps or Sleeps())


def rec(tag: str) -> RecordInput:
    return chain_record(tag, "fault-dev")


def open_on(
    node: AnvilNode, data_dir: Path, *, signer: LocalAccount | None = None, **options: object
) -> ChainClient:
    """A client on ``node``; where it deployed the contracts, ``fault-dev`` is registered
    (the contract records only registered devices)."""
    settings = ChainSettings(data_dir=data_dir, rpc_url=node.url, **options)  # type: ignore[arg-type]
    client = ChainClient.open(settings, signer or Account.from_key(node.dev_key))
    if settings.deploy and client.get_device("fault-dev") is None:
        client.register_device("fault-dev", sae_id="SAE-fault", owner=client.address)
    return client


#: The shared deployment's own key, so other tests' transactions never touch its nonces.
DEPLOYER: LocalAccount = Account.from_key(keccak(b"faults-deployer"))


@pytest.fixture(scope="module")
def deployed(anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainClient]:
    anvil.rpc("anvil_setBalance", [DEPLOYER.address, hex(10**21)])
    with open_on(anvil, tmp_path_factory.mktemp("faults"), signer=DEPLOYER) as client:
        yield client


# -- the node is not there ---------------------------------------------------------------


def test_unreachable_node_fails_after_bounded_retries_and_writes_nothing(tmp_path: Path) -> None:
    sleeps = Sleeps()
    data_dir = tmp_path / "data"
    settings = ChainSettings(
        data_dir=data_dir,
        rpc_url=f"http://127.0.0.1:{free_port()}",
        retry=fast_retry(sleeps, attempts=4),
        request_timeout_s=1,
    )
    with pytest.raises(ChainUnavailable, match="failed 4 times"):
        ChainClient.open(settings, Account.create())
    assert sleeps.delays == [0.01, 0.02, 0.04]  # exponential backoff between 4 attempts
    assert not data_dir.exists()


def test_retry_policy_recovers_from_transient_errors_only() -> None:
    failures = iter([requests.ConnectionError(), requests.Timeout()])

    def flaky() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "ok"

    sleeps = Sleeps()
    assert fast_retry(sleeps).run("flaky", flaky) == "ok"
    assert len(sleeps.delays) == 2

    def broken() -> None:
        raise ValueError("not a node problem")

    with pytest.raises(ValueError):
        fast_retry(sleeps).run("broken", broken)
    assert len(sleeps.delays) == 2  # no retry for a non-transient error


def test_node_down_mid_operation_then_back_with_its_state(
    anvil_factory: AnvilFactory, tmp_path: Path
) -> None:
    node = anvil_factory(state_file=tmp_path / "anvil-state.json")
    data_dir = tmp_path / "data"
    with open_on(node, data_dir, retry=fast_retry()) as client:
        first = client.record_batch([rec("before-outage")])
        node.stop()
        with pytest.raises(ChainUnavailable):
            client.record_batch([rec("during-outage")])
        node.start()
        after = client.record_batch([rec("after-outage")])  # same client, nonce resynced
        assert after.tx.block_number == first.tx.block_number + 1
    node.restart()
    with open_on(node, data_dir, deploy=False) as reopened:  # attaches from chain.json
        assert reopened.transaction_info(first.tx.tx_hash) == first.tx
        assert reopened.get_record(keccak(b"after-outage")) is not None
        assert reopened.get_record(keccak(b"during-outage")) is None


# -- the node is the wrong one -----------------------------------------------------------


def test_wrong_chain_id_is_refused(anvil: AnvilNode, tmp_path: Path) -> None:
    with pytest.raises(ChainMisconfigured, match=r"chain ID 31337.*chain ID 1 is configured"):
        open_on(anvil, tmp_path, chain_id=1)
    assert not (tmp_path / DEPLOYMENT_FILE).exists()


def test_deployment_file_of_another_chain_is_refused(
    anvil: AnvilNode, deployed: ChainClient, tmp_path: Path
) -> None:
    save_deployment(
        tmp_path,
        Deployment(chain_id=5, registry=deployed.registry_address, notary=deployed.notary_address),
    )
    with pytest.raises(ChainMisconfigured, match="belongs to chain ID 5"):
        open_on(anvil, tmp_path)


def test_address_without_code_is_refused(
    anvil: AnvilNode, deployed: ChainClient, tmp_path: Path
) -> None:
    empty = Account.create().address
    with pytest.raises(ChainMisconfigured, match=f"no contract code .* {empty}"):
        open_on(anvil, tmp_path, registry_address=empty, notary_address=deployed.notary_address)


def test_address_with_foreign_code_is_refused(
    anvil: AnvilNode, deployed: ChainClient, tmp_path: Path
) -> None:
    notary = deployed.notary_address
    with pytest.raises(ChainMisconfigured, match="not this build of DeviceRegistry"):
        open_on(anvil, tmp_path, registry_address=notary, notary_address=notary)


def test_malformed_deployment_file_is_refused(anvil: AnvilNode, tmp_path: Path) -> None:
    (tmp_path / DEPLOYMENT_FILE).write_text(json.dumps({"format": "qkd-notary-deployment/1"}))
    with pytest.raises(ChainMisconfigured, match="not a valid deployment file"):
        open_on(anvil, tmp_path)


def test_attach_without_deployment_and_without_deploy_is_refused(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    with pytest.raises(ChainMisconfigured, match="deploy first"):
        open_on(anvil, tmp_path, deploy=False)


def test_second_open_attaches_instead_of_redeploying(anvil: AnvilNode, tmp_path: Path) -> None:
    with open_on(anvil, tmp_path) as first:
        addresses = (first.registry_address, first.notary_address)
    with open_on(anvil, tmp_path) as second:
        assert (second.registry_address, second.notary_address) == addresses


# -- transactions that go wrong ----------------------------------------------------------


def test_revert_mined_after_a_race_carries_its_reason(
    anvil_factory: AnvilFactory, tmp_path: Path
) -> None:
    """Two registrations of one device pass estimation; the second reverts on-chain."""
    node = anvil_factory()
    with open_on(node, tmp_path) as client:
        node.rpc("evm_setAutomine", [False])
        errors: list[BaseException] = []

        def register() -> None:
            try:
                client.register_device("raced", sae_id="SAE", owner=client.address)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=register) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = node.rpc("txpool_content")
            assert isinstance(pending, dict)
            if sum(len(v) for v in pending["pending"].values()) == 2:
                break
            time.sleep(0.02)
        node.rpc("evm_mine")
        for thread in threads:
            thread.join(timeout=10)
        assert len(errors) == 1
        error = errors[0]
        assert isinstance(error, TransactionReverted)
        assert error.revert_reason.startswith("DeviceAlreadyRegistered(")
        assert error.tx_hash is not None and error.tx_hash in str(error)


def test_concurrent_batches_get_distinct_consecutive_nonces(deployed: ChainClient) -> None:
    start = deployed.block_number()
    outcomes = []
    lock = threading.Lock()

    def send(i: int) -> None:
        outcome = deployed.record_batch([rec(f"concurrent-{i}-{j}") for j in range(3)])
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 6
    assert sorted(o.tx.block_number for o in outcomes) == list(range(start + 1, start + 7))
    assert sum(len(o.recorded) for o in outcomes) == 18


def test_nonce_taken_by_another_process_is_resynchronized(
    anvil: AnvilNode, deployed: ChainClient, tmp_path: Path
) -> None:
    deployed.record_batch([rec("warm-up")])  # the client now caches its next nonce
    addresses: dict[str, object] = {
        "registry_address": deployed.registry_address,
        "notary_address": deployed.notary_address,
    }
    with open_on(anvil, tmp_path, signer=DEPLOYER, **addresses) as other:
        other.record_batch([rec("other-process")])  # same key: uses that nonce
    with pytest.raises(ChainError, match="rejected"):
        deployed.record_batch([rec("stale-nonce")])
    assert deployed.record_batch([rec("stale-nonce")]).recorded == (keccak(b"stale-nonce"),)


def test_batch_over_the_block_gas_limit_is_refused(
    anvil_factory: AnvilFactory, tmp_path: Path
) -> None:
    node = anvil_factory(gas_limit=2_000_000)
    with open_on(node, tmp_path) as client:
        with pytest.raises(BatchTooLarge, match="split it"):
            client.record_batch([rec(f"big-{i}") for i in range(60)])
        assert len(client.record_batch([rec(f"small-{i}") for i in range(5)]).recorded) == 5


def test_unmined_transaction_times_out_with_its_hash(
    anvil_factory: AnvilFactory, tmp_path: Path
) -> None:
    node = anvil_factory()
    with open_on(node, tmp_path, receipt_timeout_s=0.5) as client:
        node.rpc("evm_setAutomine", [False])
        with pytest.raises(TransactionNotConfirmed) as pending:
            client.record_batch([rec("never-mined")])
        node.rpc("evm_mine")
        mined = client.transaction_info(pending.value.tx_hash)
        assert mined is not None  # it did land later: the hash was the right handle
        assert client.get_record(keccak(b"never-mined")) is not None


def test_node_lost_while_waiting_reports_the_pending_hash(
    anvil_factory: AnvilFactory, tmp_path: Path
) -> None:
    node = anvil_factory()
    with open_on(node, tmp_path, retry=fast_retry()) as client:
        node.rpc("evm_setAutomine", [False])
        threading.Timer(0.5, node.stop).start()
        with pytest.raises(TransactionNotConfirmed, match="unreachable") as lost:
            client.record_batch([rec("in-flight")])
        assert lost.value.tx_hash.startswith("0x") and len(lost.value.tx_hash) == 66


def test_confirmations_wait_for_blocks_on_top(anvil_factory: AnvilFactory, tmp_path: Path) -> None:
    node = anvil_factory()
    open_on(node, tmp_path).close()  # deploy (with one confirmation)
    with open_on(node, tmp_path, confirmations=3) as client:
        timer = threading.Timer(0.3, lambda: node.rpc("anvil_mine", [2]))
        timer.start()
        started = time.monotonic()
        outcome = client.record_batch([rec("confirmed")])
        timer.join()
        assert time.monotonic() - started >= 0.3
        assert client.block_number() >= outcome.tx.block_number + 2


def test_send_lost_in_transit_is_not_resent_once_the_node_has_it(
    deployed: ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node got the transaction but the answer was lost: the retry asks first and
    does not send again, so exactly one transaction lands."""
    w3 = deployed._notary.w3
    real_send = w3.eth.send_raw_transaction
    calls: list[bytes] = []

    def lossy(raw: bytes) -> object:
        calls.append(raw)
        real_send(raw)
        raise requests.ConnectionError("answer lost")

    monkeypatch.setattr(w3.eth, "send_raw_transaction", lossy)
    start = deployed.block_number()
    outcome = deployed.record_batch([rec("lost-answer")])
    assert len(calls) == 1
    assert outcome.tx.block_number == start + 1 == deployed.block_number()


def test_send_that_never_gets_through_reports_the_hash(
    deployed: ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    w3 = deployed._notary.w3

    def down(raw: bytes) -> object:
        raise requests.ConnectionError("refused")

    monkeypatch.setattr(w3.eth, "send_raw_transaction", down)
    fast = dataclasses.replace(deployed._tx._settings, retry=fast_retry())
    monkeypatch.setattr(deployed._tx, "_settings", fast)
    with pytest.raises(TransactionNotConfirmed, match="may or may not have arrived") as unsent:
        deployed.record_batch([rec("never-sent")])
    monkeypatch.undo()
    assert deployed.transaction_info(unsent.value.tx_hash) is None
    # The nonce was not burnt: the next batch goes through.
    assert deployed.record_batch([rec("never-sent")]).recorded == (keccak(b"never-sent"),)


def test_nonce_is_resynced_after_a_transaction_the_node_lost(
    anvil_factory: AnvilFactory, tmp_path: Path
) -> None:
    """A sent transaction that never gets mined (dropped, or lost in a rollback) must not
    leave a cached nonce behind: the next transaction would sit behind the gap forever."""
    node = anvil_factory()
    with open_on(node, tmp_path, receipt_timeout_s=0.5, dropped_after_s=0.3) as client:
        node.rpc("evm_setAutomine", [False])
        with pytest.raises(TransactionNotConfirmed):
            client.record_batch([rec("lost-to-the-node")])
        node.rpc("anvil_dropAllTransactions")
        node.rpc("evm_setAutomine", [True])
        started = time.monotonic()
        outcome = client.record_batch([rec("after-the-loss")])
        assert time.monotonic() - started < 5
        assert outcome.recorded == (keccak(b"after-the-loss"),)
        assert client.get_record(keccak(b"lost-to-the-node")) is None


def test_a_dropped_transaction_is_given_up_without_waiting_for_the_timeout(
    anvil_factory: AnvilFactory, tmp_path: Path
) -> None:
    node = anvil_factory()
    with open_on(node, tmp_path, receipt_timeout_s=60, dropped_after_s=0.5) as client:
        node.rpc("evm_setAutomine", [False])
        threading.Timer(0.2, lambda: node.rpc("anvil_dropAllTransactions")).start()
        started = time.monotonic()
        with pytest.raises(TransactionNotConfirmed, match="neither mined nor pending"):
            client.record_batch([rec("dropped")])
        assert time.monotonic() - started < 10


def test_a_node_that_changed_chains_is_a_reset(anvil_factory: AnvilFactory, tmp_path: Path) -> None:
    """Same URL, another chain: another chain ID, or the same ID with another genesis."""
    node = anvil_factory(state_file=tmp_path / "state.json")
    with open_on(node, tmp_path / "data") as client:
        client.check_identity()  # as deployed
        node.kill()
        node.chain_id = 999
        node.start()
        with pytest.raises(ChainReset, match="chain ID 999"):
            client.check_identity()
        node.kill()
        node.chain_id = client.chain_id
        node.state_file = None
        node.start()  # the right chain ID, an empty chain
        with pytest.raises(ChainReset, match=r"genesis|no contract code"):
            client.check_identity()
