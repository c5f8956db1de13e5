"""Merkle trees and proofs: self-consistency, attacks, and agreement with OpenZeppelin's
own JavaScript ``StandardMerkleTree`` (installed from npm next to the contracts)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from notary.chain.merkle import MerkleTree, hash_pair, process_proof, record_leaf, verify_proof
from notary.chain.models import RecordInput, SecurityMode, encode_device_id
from notary.errors import InvalidChainInput, InvalidProof
from tests.notary.records import chain_record

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def make_record(i: int, *, mode: SecurityMode = SecurityMode.OTP) -> RecordInput:
    return chain_record(b"record" + i.to_bytes(4, "big"), f"device-{i % 7}", i, mode)


def test_record_leaf_is_double_keccak_of_abi_encoding() -> None:
    record = make_record(3, mode=SecurityMode.AEAD)
    encoded = encode(
        [
            "bytes32",
            "bytes32",
            "uint64",
            "bytes32",
            "uint8",
            "uint32",
            "bytes32",
            "bool",
            "uint64",
            "uint64",
        ],
        [
            record.record_id,
            encode_device_id(record.device_id),
            record.sequence,
            record.payload_hash,
            int(record.mode),
            record.key_path,
            record.firmware_digest,
            record.device_trusted,
            record.sent_at_ms,
            record.accepted_at_ms,
        ],
    )
    assert record_leaf(record) == keccak(keccak(encoded))


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": keccak(b"other")},
        {"device_id": "device-x"},
        {"sequence": 2},
        {"payload_hash": keccak(b"x")},
        {"mode": SecurityMode.AEAD},
        {"key_path": 0},
        {"firmware_digest": keccak(b"other firmware")},
        {"device_trusted": False},
        {"sent_at_ms": 1},
        {"accepted_at_ms": 1},
    ],
    ids=lambda change: next(iter(change)),
)
def test_leaf_commits_to_every_field(change: dict[str, object]) -> None:
    base = make_record(1)
    assert record_leaf(dataclasses.replace(base, **change)) != record_leaf(base)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=70))
def test_every_leaf_proves_against_the_root(size: int) -> None:
    tree = MerkleTree.of_records([make_record(i) for i in range(size)])
    for i in range(size):
        leaf = record_leaf(make_record(i))
        verify_proof(leaf, tree.proof(leaf), tree.root)
        assert process_proof(leaf, tree.proof(leaf)) == tree.root


def test_single_leaf_tree_has_the_leaf_as_root_and_an_empty_proof() -> None:
    leaf = record_leaf(make_record(0))
    tree = MerkleTree([leaf])
    assert tree.root == leaf
    assert tree.proof(leaf) == ()


def test_proof_for_one_leaf_does_not_prove_another() -> None:
    tree = MerkleTree.of_records([make_record(i) for i in range(9)])
    a, b = record_leaf(make_record(2)), record_leaf(make_record(5))
    with pytest.raises(InvalidProof):
        verify_proof(b, tree.proof(a), tree.root)


def test_flipped_proof_bit_is_rejected() -> None:
    tree = MerkleTree.of_records([make_record(i) for i in range(16)])
    leaf = record_leaf(make_record(11))
    proof = list(tree.proof(leaf))
    proof[1] = bytes([proof[1][0] ^ 1]) + proof[1][1:]
    with pytest.raises(InvalidProof):
        verify_proof(leaf, proof, tree.root)


def test_internal_node_cannot_be_passed_off_as_a_leaf() -> None:
    """Second-preimage attack: an inner node with a shortened proof must not verify as a
    record, because record leaves are double-hashed 320-byte encodings."""
    records = [make_record(i) for i in range(8)]
    tree = MerkleTree.of_records(records)
    leaf = record_leaf(records[0])
    proof = tree.proof(leaf)
    inner = hash_pair(leaf, proof[0])
    assert process_proof(inner, proof[1:]) == tree.root  # the raw tree allows it...
    assert inner not in {record_leaf(r) for r in records}  # ...no record hashes to it
    assert inner not in tree


def test_unknown_leaf_and_empty_or_duplicate_trees_are_refused() -> None:
    tree = MerkleTree.of_records([make_record(i) for i in range(3)])
    with pytest.raises(InvalidChainInput):
        tree.proof(record_leaf(make_record(99)))
    with pytest.raises(InvalidChainInput):
        MerkleTree([])
    leaf = record_leaf(make_record(1))
    with pytest.raises(InvalidChainInput):
        MerkleTree([leaf, leaf])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 100])
def test_root_and_proofs_match_openzeppelin_standard_merkle_tree(size: int) -> None:
    records = [make_record(i, mode=SecurityMode(1 + i % 2)) for i in range(size)]
    values = [
        [
            "0x" + r.record_id.hex(),
            "0x" + encode_device_id(r.device_id).hex(),
            str(r.sequence),
            "0x" + r.payload_hash.hex(),
            str(int(r.mode)),
            str(r.key_path),
            "0x" + r.firmware_digest.hex(),
            r.device_trusted,
            str(r.sent_at_ms),
            str(r.accepted_at_ms),
        ]
        for r in records
    ]
    script = """
const {StandardMerkleTree} = require('@openzeppelin/merkle-tree');
const values = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const types = ['bytes32', 'bytes32', 'uint64', 'bytes32', 'uint8', 'uint32', 'bytes32', 'bool',
  'uint64', 'uint64'];
const tree = StandardMerkleTree.of(values, types);
const proofs = values.map((_, i) => tree.getProof(i));
process.stdout.write(JSON.stringify({root: tree.root, proofs}));
"""
    result = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        cwd=CONTRACTS,
        check=True,
        timeout=60,
    )
    reference = json.loads(result.stdout)
    tree = MerkleTree.of_records(records)
    assert "0x" + tree.root.hex() == reference["root"]
    for record, proof in zip(records, reference["proofs"], strict=True):
        assert ["0x" + p.hex() for p in tree.proof(record_leaf(record))] == proof
