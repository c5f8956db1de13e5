"""Merkle trees of records, laid out exactly like OpenZeppelin's ``StandardMerkleTree``.

Leaf of a record (``TelemetryNotary.leafHash``)::

    keccak256(keccak256(abi.encode(bytes32 recordId, bytes32 deviceId, uint64 sequence,
                                   bytes32 payloadHash, uint8 mode, uint32 keyPath,
                                   bytes32 firmwareDigest, bool deviceTrusted,
                                   uint64 sentAtMs, uint64 acceptedAtMs)))

The inner hash is over ten 32-byte ABI words, one per claim a receipt makes about the
record; hashing twice means no 64-byte internal node can be passed off as a leaf (and the
contract's ``verifyInclusion`` computes the leaf from the fields itself). Internal nodes
are ``keccak256(min(a, b) || max(a, b))`` (sorted pairs), which is what
``MerkleProof.verify`` checks, so a proof is just the list of sibling hashes from the leaf
up. The tree is the one ``@openzeppelin/merkle-tree`` builds
(leaves sorted by hash, stored as a complete binary tree in an array), so its JavaScript
library and this module agree on roots and proofs for the same leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.auto import keccak

from notary.chain.models import RecordInput, bytes32, encode_device_id
from notary.errors import InvalidChainInput, InvalidProof

__all__ = ["MerkleTree", "hash_pair", "process_proof", "record_leaf", "verify_proof"]


def record_leaf(record: RecordInput) -> bytes:
    """The Merkle leaf of a record (see the module docstring)."""
    encoded = b"".join(
        (
            record.record_id,
            encode_device_id(record.device_id),
            record.sequence.to_bytes(32, "big"),
            record.payload_hash,
            int(record.mode).to_bytes(32, "big"),
            record.key_path.to_bytes(32, "big"),
            record.firmware_digest,
            int(record.device_trusted).to_bytes(32, "big"),
            record.sent_at_ms.to_bytes(32, "big"),
            record.accepted_at_ms.to_bytes(32, "big"),
        )
    )
    return keccak(keccak(encoded))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's ``Hashes.commutativeKeccak256``."""
    return keccak(a + b) if a < b else keccak(b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf``."""
    node = bytes32(leaf, "leaf")
    for sibling in proof:
        node = hash_pair(node, bytes32(sibling, "proof element"))
    return node


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`InvalidProof` unless ``proof`` leads from ``leaf`` to ``root``."""
    if process_proof(leaf, proof) != bytes32(root, "root"):
        raise InvalidProof("the proof does not lead from the leaf to the root")


class MerkleTree:
    """A tree over distinct 32-byte leaves; proofs by leaf value."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise InvalidChainInput("a Merkle tree needs at least one leaf")
        ordered = sorted(bytes32(leaf, "leaf") for leaf in leaves)
        count = len(ordered)
        nodes: list[bytes] = [b""] * (2 * count - 1)
        for i, leaf in enumerate(ordered):
            nodes[len(nodes) - 1 - i] = leaf
        for i in range(len(nodes) - 1 - count, -1, -1):
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2])
        self._nodes = nodes
        self._position = {leaf: len(nodes) - 1 - i for i, leaf in enumerate(ordered)}
        if len(self._position) != count:
            raise InvalidChainInput("Merkle leaves must be distinct")

    @classmethod
    def of_records(cls, records: Sequence[RecordInput]) -> MerkleTree:
        return cls([record_leaf(record) for record in records])

    @property
    def root(self) -> bytes:
        return self._nodes[0]

    def __len__(self) -> int:
        return len(self._position)

    def __contains__(self, leaf: object) -> bool:
        return leaf in self._position

    def proof(self, leaf: bytes) -> tuple[bytes, ...]:
        """Sibling hashes from ``leaf`` up to (not including) the root."""
        try:
            index = self._position[leaf]
        except KeyError:
            raise InvalidChainInput("the leaf is not in this tree") from None
        siblings = []
        while index > 0:
            sibling = index - 1 if index % 2 == 0 else index + 1
            siblings.append(self._nodes[sibling])
            index = (index - 1) // 2
        return tuple(siblings)
