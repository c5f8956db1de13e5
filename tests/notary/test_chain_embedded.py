"""The embedded chain: py-evm on SQLite in the data directory survives restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from web3 import Web3

from notary.chain import (
    DEFAULT_EMBEDDED_CHAIN_ID,
    ChainClient,
    ChainSettings,
    MerkleTree,
    RecordInput,
    SecurityMode,
    record_leaf,
)
from notary.chain.artifacts import load_artifact
from notary.chain.embedded import EmbeddedChain
from notary.errors import (
    BatchTooLarge,
    ChainMisconfigured,
    EmbeddedChainLocked,
    TransactionReverted,
)
from tests.notary.records import chain_record

SIGNER: LocalAccount = Account.from_key(keccak(b"embedded-test-signer"))


def rec(tag: str, sequence: int = 1) -> RecordInput:
    return chain_record(tag, "emb-device", sequence, SecurityMode.AEAD)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded")


@pytest.fixture(scope="module")
def client(data_dir: Path) -> Iterator[ChainClient]:
    chain = ChainClient.open(ChainSettings(data_dir=data_dir), SIGNER)
    chain.register_device("emb-device", sae_id="SAE-emb", owner=chain.address)
    try:
        yield chain
    finally:
        chain.close()


def test_first_open_creates_the_chain_and_records_the_deployment(
    client: ChainClient, data_dir: Path
) -> None:
    assert client.embedded and client.chain_id == DEFAULT_EMBEDDED_CHAIN_ID
    deployment = json.loads((data_dir / "chain.json").read_text())
    assert deployment["chain_id"] == DEFAULT_EMBEDDED_CHAIN_ID
    assert (deployment["registry"], deployment["notary"]) == (
        client.registry_address,
        client.notary_address,
    )
    assert (data_dir / "chain" / EmbeddedChain.DB_NAME).is_file()


def test_record_restart_and_read_back_the_same_receipt(tmp_path: Path) -> None:
    client = ChainClient.open(ChainSettings(data_dir=tmp_path), SIGNER)
    client.register_device("emb-device", sae_id="SAE-emb", owner=client.address)
    client.attest_firmware("emb-device", keccak(b"fw"), 1)
    batch = [rec(f"persist-{i}", i) for i in range(3)]
    outcome = client.record_batch(batch)
    tree = MerkleTree.of_records([rec(f"tree-{i}", i) for i in range(5)])
    anchored = client.anchor_root(
        tree.root, count=5, first_record_id=keccak(b"tree-0"), last_record_id=keccak(b"tree-4")
    )
    head = client.block_number()
    client.close()

    with ChainClient.open(ChainSettings(data_dir=tmp_path, deploy=False), SIGNER) as reopened:
        assert reopened.registry_address == client.registry_address
        assert reopened.block_number() == head
        assert reopened.transaction_info(outcome.tx.tx_hash) == outcome.tx
        assert reopened.transaction_info(anchored.tx.tx_hash) == anchored.tx
        assert reopened.find_record_transaction(batch[1].record_id) == outcome.tx
        stored = reopened.get_record(batch[2].record_id)
        assert stored is not None and stored.sequence == 2 and stored.mode is SecurityMode.AEAD
        leaf = record_leaf(rec("tree-3", 3))
        assert reopened.verify_inclusion(rec("tree-3", 3), tree.proof(leaf), tree.root)
        device = reopened.get_device("emb-device")
        assert device is not None and device.trusted and device.attestation_count == 1
        # The chain keeps growing from where it stopped, with the nonce the node reports.
        more = reopened.record_batch([rec("after-restart")])
        assert more.tx.block_number == head + 1
        assert reopened.record_batch(batch).skipped == tuple(r.record_id for r in batch)


def test_blocks_link_up_after_a_restart(tmp_path: Path) -> None:
    with ChainClient.open(ChainSettings(data_dir=tmp_path), SIGNER) as first:
        first.register_device("emb-device", sae_id="SAE-emb", owner=first.address)
        first.record_batch([rec("link-1")])
    with ChainClient.open(ChainSettings(data_dir=tmp_path), SIGNER) as client:
        client.record_batch([rec("link-2")])
        w3: Web3 = client._notary.w3
        head = w3.eth.block_number
        assert head == 5  # two deployments, a registration and two batches
        for number in range(1, head + 1):
            block, parent = w3.eth.get_block(number), w3.eth.get_block(number - 1)
            assert block["parentHash"] == parent["hash"]


def test_second_open_of_the_same_data_dir_is_refused(data_dir: Path, client: ChainClient) -> None:
    with pytest.raises(EmbeddedChainLocked):
        ChainClient.open(ChainSettings(data_dir=data_dir), SIGNER)


def test_reopening_with_another_chain_id_is_refused(tmp_path: Path) -> None:
    with ChainClient.open(ChainSettings(data_dir=tmp_path, chain_id=777), SIGNER) as chain:
        assert chain.chain_id == 777
    with pytest.raises(ChainMisconfigured, match="chain ID 777"):
        ChainClient.open(ChainSettings(data_dir=tmp_path, chain_id=778), SIGNER)
    # The refusal released the lock; without a configured ID the stored one is used.
    with ChainClient.open(ChainSettings(data_dir=tmp_path), SIGNER) as again:
        assert again.chain_id == 777


def test_reverts_on_the_embedded_chain_carry_decoded_custom_errors(client: ChainClient) -> None:
    with pytest.raises(TransactionReverted, match=r"UnknownDevice\(deviceId=0x6e6f"):
        client.attest_firmware("nobody", keccak(b"fw"), 1)


def test_a_failing_transaction_is_refused_without_being_mined(client: ChainClient) -> None:
    """The sender skips the estimate on the embedded chain; the node itself must then
    refuse a reverting or oversized transaction and leave no trace of it."""
    head, nonce = (
        client.block_number(),
        client.w3.eth.get_transaction_count(client.w3.to_checksum_address(client.address)),
    )
    with pytest.raises(TransactionReverted, match="UnknownDevice"):
        client.attest_firmware("nobody", keccak(b"fw"), 1)
    too_many = [rec(f"huge-{i}", i) for i in range(client.block_gas_limit // 40_000)]
    with pytest.raises(BatchTooLarge):
        client.record_batch(too_many)
    assert client.block_number() == head
    assert (
        client.w3.eth.get_transaction_count(client.w3.to_checksum_address(client.address)) == nonce
    )
    assert client.get_record(too_many[0].record_id) is None
    outcome = client.record_batch([rec("after-refusals", 1)])  # nonces still line up
    assert outcome.tx.block_number == head + 1


def test_estimated_gas_is_enough_and_not_wasteful(client: ChainClient) -> None:
    """eth_estimateGas (served to /rpc callers) gives enough gas and barely more: the
    registry call forwards 63/64 of the gas left (EIP-150), so the estimate is a few
    hundred gas above what is used, never below."""
    batch = [rec(f"gas-{i}", i) for i in range(20)]
    contract = client.w3.eth.contract(abi=load_artifact("TelemetryNotary").abi)
    rows = [r.abi_row() for r in batch]
    calldata = contract.encode_abi("recordBatch", args=[rows, []])
    estimate = client.w3.eth.estimate_gas(
        {"from": client.address, "to": client.notary_address, "data": calldata}
    )
    outcome = client.record_batch(batch)
    assert len(outcome.recorded) == 20
    assert outcome.tx.gas_used <= estimate <= outcome.tx.gas_used * 1.01
    # 2 new storage slots per record (2 x 22,100 gas), its event, and once per batch the
    # registry lookup and the device's index.
    per_record = outcome.tx.gas_used / 20
    assert 44_200 < per_record < 62_000
