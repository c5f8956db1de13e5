"""The chain layer: the notary's contracts on an embedded or JSON-RPC EVM chain.

Pipeline code uses only this package's API, never web3 directly:

* :class:`ChainClient` (``ChainClient.open(ChainSettings(...), signer)``) for devices,
  records, Merkle anchors and roles;
* :mod:`notary.chain.merkle` for trees and proofs that the contract verifies;
* :mod:`notary.chain.keystore` for the encrypted signing key.
"""

from notary.chain.client import ChainClient
from notary.chain.keystore import create_keystore, load_signer, read_password
from notary.chain.merkle import MerkleTree, process_proof, record_leaf, verify_proof
from notary.chain.models import (
    AnchorOutcome,
    AttestationOutcome,
    BatchOutcome,
    DeviceAttestation,
    DeviceInfo,
    OnChainAnchor,
    OnChainRecord,
    RecordInput,
    Role,
    SecurityMode,
    TxInfo,
    decode_device_id,
    encode_device_id,
)
from notary.chain.retry import RetryPolicy
from notary.chain.settings import DEFAULT_EMBEDDED_CHAIN_ID, ChainSettings

__all__ = [
    "DEFAULT_EMBEDDED_CHAIN_ID",
    "AnchorOutcome",
    "AttestationOutcome",
    "BatchOutcome",
    "ChainClient",
    "ChainSettings",
    "DeviceAttestation",
    "DeviceInfo",
    "MerkleTree",
    "OnChainAnchor",
    "OnChainRecord",
    "RecordInput",
    "RetryPolicy",
    "Role",
    "SecurityMode",
    "TxInfo",
    "create_keystore",
    "decode_device_id",
    "encode_device_id",
    "load_signer",
    "process_proof",
    "read_password",
    "record_leaf",
    "verify_proof",
]
