"""DeviceRegistry and TelemetryNotary behaviour, exercised through ChainClient on anvil."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_hash.auto import keccak

from notary.chain import (
    ChainClient,
    ChainSettings,
    MerkleTree,
    RecordInput,
    SecurityMode,
    record_leaf,
)
from notary.chain.merkle import hash_pair, process_proof
from notary.chain.models import encode_device_id
from notary.errors import InvalidChainInput, TransactionReverted
from tests.conftest import AnvilNode
from tests.notary.records import chain_record

V1, V2, V3 = keccak(b"fw-1"), keccak(b"fw-2"), keccak(b"fw-3")


@pytest.fixture(scope="module")
def client(anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainClient]:
    settings = ChainSettings(data_dir=tmp_path_factory.mktemp("logic"), rpc_url=anvil.url)
    with ChainClient.open(settings, Account.from_key(anvil.dev_key)) as chain:
        yield chain


def registered(client: ChainClient, *devices: str) -> None:
    """Register ``devices`` that are not yet: the contract records only active devices."""
    for device in devices:
        if client.get_device(device) is None:
            client.register_device(device, sae_id=f"SAE-{device}", owner=client.address)


def record(tag: str, device: str = "rec-device", sequence: int = 1, **kw: Any) -> RecordInput:
    return chain_record(tag, device, sequence, **kw)


@pytest.fixture(scope="module", autouse=True)
def devices(client: ChainClient) -> None:
    registered(client, "rec-device", "gas-dev", "dev-ü", *(f"idx-{i}" for i in range(4)))


# -- DeviceRegistry ----------------------------------------------------------------------


def test_first_digest_is_trusted_on_first_use(client: ChainClient) -> None:
    client.register_device("tofu", sae_id="SAE-tofu", owner=client.address)
    before = client.get_device("tofu")
    assert before is not None and not before.trusted and before.approved_firmware is None
    outcome = client.attest_firmware("tofu", V1, 1)
    assert outcome.trusted and not outcome.changed
    device = client.get_device("tofu")
    assert device is not None
    assert (device.approved_firmware, device.last_firmware) == (V1, V1)
    assert device.trusted and device.attestation_count == 1 and device.sae_id == "SAE-tofu"


def test_changed_digest_is_recorded_and_untrusts_until_reapproved(client: ChainClient) -> None:
    client.register_device("changer", sae_id="SAE-c", owner=client.address)
    client.attest_firmware("changer", V1, 1)
    changed = client.attest_firmware("changer", V2, 2)
    assert changed.changed and not changed.trusted
    assert not client.is_trusted("changer")
    assert client.attestation_count("changer") == 2
    second = client.get_attestation("changer", 1)
    assert (second.digest, second.sequence, second.changed, second.trusted) == (V2, 2, True, False)
    client.approve_firmware("changer", V2)
    assert client.is_trusted("changer")
    assert client.attestation_count("changer") == 2  # approval is not an attestation


def test_expected_digest_mismatch_is_untrusted_from_the_start(client: ChainClient) -> None:
    client.register_device("pinned", sae_id="SAE-p", owner=client.address, expected_firmware=V1)
    outcome = client.attest_firmware("pinned", V3, 1)
    assert not outcome.trusted and not outcome.changed
    device = client.get_device("pinned")
    assert device is not None and device.approved_firmware == V1 and not device.trusted


def test_preapproved_update_keeps_the_device_trusted(client: ChainClient) -> None:
    client.register_device("updater", sae_id="SAE-u", owner=client.address, expected_firmware=V1)
    client.attest_firmware("updater", V1, 1)
    client.approve_firmware("updater", V2)
    assert not client.is_trusted("updater")  # still on V1, which is no longer approved
    outcome = client.attest_firmware("updater", V2, 5)
    assert outcome.changed and outcome.trusted


def test_deactivated_device_is_untrusted_and_refuses_attestations(client: ChainClient) -> None:
    client.register_device("retired", sae_id="SAE-r", owner=client.address)
    client.attest_firmware("retired", V1, 1)
    client.deactivate_device("retired")
    device = client.get_device("retired")
    assert device is not None and not device.active and not device.trusted
    with pytest.raises(TransactionReverted, match=r"DeviceInactive\("):
        client.attest_firmware("retired", V1, 2)
    with pytest.raises(TransactionReverted, match=r"DeviceInactive\("):
        client.deactivate_device("retired")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(
            lambda c: c.register_device("dup", sae_id="S", owner=c.address),
            "DeviceAlreadyRegistered",
            id="register-twice",
        ),
        pytest.param(lambda c: c.attest_firmware("ghost", V1, 1), "UnknownDevice", id="unknown"),
        pytest.param(lambda c: c.attest_firmware("dup", b"\0" * 32, 1), "InvalidDigest", id="zero"),
        pytest.param(
            lambda c: c.register_device("z", sae_id="S", owner="0x" + "00" * 20),
            "InvalidOwner",
            id="zero-owner",
        ),
        pytest.param(lambda c: c.get_attestation("dup", 5), "AttestationIndexOutOfRange", id="idx"),
    ],
)
def test_registry_refuses_bad_input_with_a_decoded_reason(
    client: ChainClient, call: object, error: str
) -> None:
    if client.get_device("dup") is None:
        client.register_device("dup", sae_id="S", owner=client.address)
    with pytest.raises(TransactionReverted) as refused:
        call(client)  # type: ignore[operator]
    assert refused.value.revert_reason.startswith(error + "(")


def test_repeated_attestation_of_one_message_changes_nothing(client: ChainClient) -> None:
    """After a crash or a chain rollback the notary may send an attestation again."""
    registered(client, "repeat")
    client.attest_firmware("repeat", V1, 3)
    again = client.attest_firmware("repeat", V1, 3)
    assert again.trusted and not again.changed
    assert client.attestation_count("repeat") == 1
    client.attest_firmware("repeat", V1, 4)  # another message: a new entry
    assert client.attestation_count("repeat") == 2


def test_unregistered_device_reads_as_none(client: ChainClient) -> None:
    assert client.get_device("never-registered") is None
    assert not client.is_trusted("never-registered")


def test_device_ids_over_32_bytes_are_refused_before_any_transaction(client: ChainClient) -> None:
    with pytest.raises(InvalidChainInput):
        client.register_device("x" * 33, sae_id="S", owner=client.address)
    assert encode_device_id("é" * 16) == ("é" * 16).encode()  # 32 UTF-8 bytes fit


# -- TelemetryNotary: batches ------------------------------------------------------------


def test_batch_stores_every_field_readable_by_getter(client: ChainClient) -> None:
    batch = [record(f"b{i}", sequence=i, mode=SecurityMode(1 + i % 2)) for i in range(5)]
    outcome = client.record_batch(batch)
    assert outcome.recorded == tuple(r.record_id for r in batch)
    assert outcome.skipped == ()
    for original in batch:
        stored = client.get_record(original.record_id)
        assert stored is not None
        assert (stored.device_id, stored.sequence, stored.leaf, stored.mode) == (
            original.device_id,
            original.sequence,
            record_leaf(original),
            original.mode,
        )
        assert stored.block_number == outcome.tx.block_number
        assert stored.recorded_at == outcome.tx.block_timestamp
        assert not stored.payload_published


def test_records_of_interleaved_devices_read_back_their_own_device(client: ChainClient) -> None:
    """The contract stores each device ID once and a per-record index to it."""
    first = [record(f"dev-a{i}", device=f"idx-{i}", sequence=i) for i in range(3)]
    client.record_batch(first)
    second = [record(f"dev-b{i}", device=f"idx-{(i * 2) % 4}", sequence=10 + i) for i in range(8)]
    client.record_batch(second)
    for original in first + second:
        stored = client.get_record(original.record_id)
        assert stored is not None
        assert (stored.device_id, stored.sequence) == (original.device_id, original.sequence)


def test_a_record_of_a_known_device_costs_two_storage_writes(client: ChainClient) -> None:
    """Marginal gas of a record: two new slots (2 x 22,100) plus its event (every bound
    field, for indexers), calldata and the leaf hash.

    Gas is deterministic, so this pins the storage layout: a third slot per record (the
    device ID stored again, or a field outside the leaf) would add 22,100 and fail.
    """
    client.record_batch([record("gas-warm", device="gas-dev")])
    one = client.record_batch([record("gas-1", device="gas-dev")]).tx.gas_used
    batch = [record(f"gas-n{i}", device="gas-dev", sequence=i) for i in range(11)]
    eleven = client.record_batch(batch).tx.gas_used
    marginal = (eleven - one) / 10
    assert 2 * 22_100 < marginal < 2 * 22_100 + 12_000


def test_resubmitted_batch_skips_known_records_without_reverting(client: ChainClient) -> None:
    first = client.record_batch([record("d1"), record("d2")])
    again = client.record_batch([record("d2"), record("d3"), record("d1")])
    assert again.recorded == (keccak(b"d3"),)
    assert set(again.skipped) == {keccak(b"d1"), keccak(b"d2")}
    assert client.find_record_transaction(keccak(b"d1")) == first.tx
    stored = client.get_record(keccak(b"d1"))
    assert stored is not None and stored.block_number == first.tx.block_number


def test_records_of_unregistered_or_deactivated_devices_are_refused(client: ChainClient) -> None:
    registered(client, "soon-retired")
    client.deactivate_device("soon-retired")
    batch = [
        record("ok-1"),
        record("ghost-1", device="never-registered"),
        record("ret-1", device="soon-retired"),
    ]
    outcome = client.record_batch(batch)
    assert outcome.recorded == (keccak(b"ok-1"),)
    assert set(outcome.refused) == {keccak(b"ghost-1"), keccak(b"ret-1")}
    assert client.get_record(keccak(b"ghost-1")) is None
    assert client.get_record(keccak(b"ret-1")) is None


def test_conflicting_resubmission_keeps_the_stored_record_and_says_so(client: ChainClient) -> None:
    original = record("conflict", device="idx-1", sequence=7)
    client.record_batch([original])
    forged = record("conflict", device="idx-2", sequence=7, device_trusted=False)
    outcome = client.record_batch([forged])
    assert outcome.recorded == () and outcome.skipped == ()
    assert outcome.conflicts == ((original.record_id, "idx-1"),)  # the *stored* device
    stored = client.get_record(original.record_id)
    assert stored is not None and stored.leaf == record_leaf(original)
    assert stored.device_id == "idx-1"


def test_published_payload_is_flagged_and_emitted(client: ChainClient) -> None:
    outcome = client.record_batch([record("p1", payload=b'{"t": 21.5}'), record("p2")])
    assert len(outcome.recorded) == 2
    published = client.get_record(keccak(b"p1"))
    hidden = client.get_record(keccak(b"p2"))
    assert published is not None and published.payload_published
    assert hidden is not None and not hidden.payload_published


def test_malformed_record_reverts_the_whole_batch(client: ChainClient) -> None:
    good = record("m-good")
    bad = record("m-bad", record_id=b"\0" * 32)
    with pytest.raises(TransactionReverted, match=r"InvalidRecord\(index=1\)"):
        client.record_batch([good, bad])
    assert client.get_record(good.record_id) is None


def test_duplicate_ids_inside_one_batch_are_refused_locally(client: ChainClient) -> None:
    with pytest.raises(InvalidChainInput):
        client.record_batch([record("same"), record("same")])


def test_missing_record_reads_as_none(client: ChainClient) -> None:
    assert client.get_record(keccak(b"nothing")) is None
    assert client.find_record_transaction(keccak(b"nothing")) is None


# -- TelemetryNotary: Merkle anchoring ---------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_python_proofs_verify_in_the_contract(client: ChainClient, size: int) -> None:
    batch = [record(f"merkle-{size}-{i}", sequence=i) for i in range(size)]
    tree = MerkleTree.of_records(batch)
    outcome = client.anchor_root(
        tree.root,
        count=size,
        first_record_id=batch[0].record_id,
        last_record_id=batch[-1].record_id,
    )
    assert outcome.anchored
    for item in batch if size <= 7 else batch[::9]:
        leaf = record_leaf(item)
        assert client.verify_inclusion(item, tree.proof(leaf), tree.root)
    anchor = client.get_anchor(tree.root)
    assert anchor is not None and anchor.count == size
    assert (anchor.first_record_id, anchor.last_record_id) == (
        batch[0].record_id,
        batch[-1].record_id,
    )
    assert anchor.block_number == outcome.tx.block_number
    assert client.find_anchor_transaction(tree.root) == outcome.tx


def test_contract_leaf_hash_matches_python(client: ChainClient) -> None:
    item = record("leaf", device="dev-ü", sequence=2**64 - 1, mode=SecurityMode.AEAD)
    on_chain = client._tx.view(  # the auditor's "Read contract" call
        client._notary, "leafHash", item.abi_row()
    )
    assert bytes(on_chain) == record_leaf(item)


def test_forged_proofs_and_unanchored_roots_do_not_verify(client: ChainClient) -> None:
    batch = [record(f"forge-{i}") for i in range(8)]
    tree = MerkleTree.of_records(batch)
    client.anchor_root(
        tree.root, count=8, first_record_id=batch[0].record_id, last_record_id=batch[-1].record_id
    )
    leaf = record_leaf(batch[3])
    proof = list(tree.proof(leaf))
    assert client.verify_inclusion(batch[3], proof, tree.root)
    assert not client.verify_inclusion(record("not-in-batch"), proof, tree.root)
    assert not client.verify_inclusion(batch[3], proof[:-1], tree.root)
    assert not client.verify_inclusion(batch[3], [proof[0], proof[0], *proof[2:]], tree.root)
    forged = dataclasses.replace(batch[3], device_trusted=not batch[3].device_trusted)
    assert not client.verify_inclusion(forged, proof, tree.root)
    unanchored = MerkleTree.of_records([*batch, record("extra")])
    first = record_leaf(batch[0])
    assert not client.verify_inclusion(batch[0], unanchored.proof(first), unanchored.root)


def test_an_internal_node_cannot_pass_for_a_record(client: ChainClient) -> None:
    """verifyInclusion computes the leaf from record fields itself: an inner node of the
    tree, with the proof shortened to match, is not a record whose leaf it could be."""
    batch = [record(f"inner-{i}") for i in range(8)]
    tree = MerkleTree.of_records(batch)
    client.anchor_root(
        tree.root, count=8, first_record_id=batch[0].record_id, last_record_id=batch[-1].record_id
    )
    leaf = record_leaf(batch[0])
    proof = tree.proof(leaf)
    inner = hash_pair(leaf, proof[0])
    assert process_proof(inner, proof[1:]) == tree.root  # the bare tree would accept it
    posing = dataclasses.replace(batch[0], record_id=inner, payload_hash=inner)
    assert not client.verify_inclusion(posing, proof[1:], tree.root)


def test_anchoring_a_root_twice_is_an_idempotent_no_op(client: ChainClient) -> None:
    batch = [record("twice-a"), record("twice-b")]
    tree = MerkleTree.of_records(batch)
    ids = {"first_record_id": batch[0].record_id, "last_record_id": batch[1].record_id}
    first = client.anchor_root(tree.root, count=2, **ids)
    second = client.anchor_root(tree.root, count=2, **ids)
    assert first.anchored and not second.anchored
    anchor = client.get_anchor(tree.root)
    assert anchor is not None and anchor.block_number == first.tx.block_number


def test_anchor_refuses_zero_root_or_count(client: ChainClient) -> None:
    ids = {"first_record_id": keccak(b"a"), "last_record_id": keccak(b"b")}
    with pytest.raises(TransactionReverted, match=r"InvalidAnchor\("):
        client.anchor_root(b"\0" * 32, count=1, **ids)
    with pytest.raises(TransactionReverted, match=r"InvalidAnchor\("):
        client.anchor_root(keccak(b"r"), count=0, **ids)
