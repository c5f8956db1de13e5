"""The notary's only door to the chain: typed calls to DeviceRegistry and TelemetryNotary.

Transaction policy (retries, gas, nonces, confirmations) lives in
:class:`~notary.chain.transactions.TransactionSender`; I/O lives in web3's provider
(embedded py-evm or HTTP JSON-RPC).

:meth:`ChainClient.open` deploys or attaches: it refuses to start on a wrong chain ID or
when a configured address holds no code or code other than our contracts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import Address
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.providers import HTTPProvider
from web3.types import FilterParams, TxReceipt

from notary.chain.artifacts import load_artifact
from notary.chain.calldata import encode_call
from notary.chain.deployment import Deployment, load_deployment, save_deployment
from notary.chain.embedded import EmbeddedChain
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
    bytes32,
    decode_device_id,
    encode_device_id,
)
from notary.chain.reverts import RevertDecoder
from notary.chain.settings import ChainSettings
from notary.chain.transactions import TransactionSender, hex0x
from notary.errors import (
    ChainError,
    ChainMisconfigured,
    InvalidChainInput,
    TransactionReverted,
)

__all__ = ["ChainClient"]

log = logging.getLogger(__name__)

_RECORD_STORED = keccak(text="RecordStored(bytes32,bytes32,uint64,bytes32,uint8)")
_RECORD_SKIPPED = keccak(text="RecordSkipped(bytes32,bytes32)")
_ROOT_ANCHORED = keccak(text="RootAnchored(bytes32,uint64,bytes32,bytes32)")
_FIRMWARE_ATTESTED = keccak(text="FirmwareAttested(bytes32,bytes32,bool,bool)")
_ZERO32 = b"\x00" * 32


class ChainClient:
    """Typed access to the notary's contracts for one signing account."""

    def __init__(
        self,
        *,
        sender: TransactionSender,
        settings: ChainSettings,
        chain_id: int,
        registry: Contract,
        notary: Contract,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """Use :meth:`open`; this constructor trusts its arguments."""
        self._tx = sender
        self._settings = settings
        self.chain_id = chain_id
        self._registry = registry
        self._notary = notary
        self._on_close = on_close

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def open(cls, settings: ChainSettings, signer: LocalAccount) -> ChainClient:
        """Connect, check the chain, then attach to (or deploy) the contracts."""
        embedded: EmbeddedChain | None = None
        if settings.embedded:
            balance = settings.embedded_genesis_balance_wei
            embedded = EmbeddedChain(
                settings.data_dir / "chain",
                chain_id=settings.chain_id,
                genesis_alloc={Address(bytes.fromhex(signer.address[2:])): balance},
                gas_limit=settings.embedded_gas_limit,
            )
            w3 = Web3(embedded.provider)
        else:
            provider = HTTPProvider(
                settings.rpc_url,
                request_kwargs={"timeout": settings.request_timeout_s},
                exception_retry_configuration=None,
            )
            w3 = Web3(provider)
        try:
            return cls._attach(w3, settings, signer, embedded)
        except BaseException:
            if embedded is not None:
                embedded.close()
            raise

    @classmethod
    def _attach(
        cls,
        w3: Web3,
        settings: ChainSettings,
        signer: LocalAccount,
        embedded: EmbeddedChain | None,
    ) -> ChainClient:
        chain_id = int(settings.retry.run("eth_chainId", lambda: w3.eth.chain_id))
        if settings.chain_id is not None and chain_id != settings.chain_id:
            raise ChainMisconfigured(
                f"the node reports chain ID {chain_id}, but chain ID {settings.chain_id} "
                "is configured; refusing to start"
            )
        recorded = load_deployment(settings.data_dir)
        if recorded is not None and recorded.chain_id != chain_id:
            raise ChainMisconfigured(
                f"{settings.data_dir / 'chain.json'} belongs to chain ID {recorded.chain_id}, "
                f"but the node reports chain ID {chain_id}; refusing to start"
            )
        registry = settings.registry_address or (recorded.registry if recorded else None)
        notary = settings.notary_address or (recorded.notary if recorded else None)
        if (registry is None) != (notary is None):
            raise ChainMisconfigured("configure both contract addresses or neither")
        registry_artifact = load_artifact("DeviceRegistry")
        notary_artifact = load_artifact("TelemetryNotary")
        reverts = RevertDecoder([registry_artifact.abi, notary_artifact.abi])
        sender = TransactionSender(
            w3,
            settings,
            signer,
            chain_id=chain_id,
            reverts=reverts,
            estimate_gas=embedded is None,
        )
        if registry is None or notary is None:
            if not settings.deploy:
                raise ChainMisconfigured(
                    "no contract addresses configured and none recorded in the data "
                    "directory; deploy first or pass the addresses"
                )
            deployment = _deploy(w3, sender, chain_id)
            save_deployment(settings.data_dir, deployment)
            log.info(
                "deployed DeviceRegistry at %s and TelemetryNotary at %s on chain %d",
                deployment.registry,
                deployment.notary,
                chain_id,
            )
            registry, notary = deployment.registry, deployment.notary
        else:
            registry, notary = _check_code(w3, sender, registry, notary)
        return cls(
            sender=sender,
            settings=settings,
            chain_id=chain_id,
            registry=w3.eth.contract(
                address=to_checksum_address(registry), abi=registry_artifact.abi
            ),
            notary=w3.eth.contract(address=to_checksum_address(notary), abi=notary_artifact.abi),
            on_close=embedded.close if embedded is not None else None,
        )

    def close(self) -> None:
        """Release the embedded chain (no-op for a JSON-RPC node)."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- identity ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The signing account (EIP-55)."""
        return self._tx.address

    @property
    def registry_address(self) -> str:
        return str(self._registry.address)

    @property
    def notary_address(self) -> str:
        return str(self._notary.address)

    @property
    def embedded(self) -> bool:
        return self._settings.embedded

    @property
    def w3(self) -> Web3:
        """The node connection, for read-only inspection (explorer pages, receipt checks).

        Requests on the embedded chain are serialized by its provider, so readers in other
        threads are safe next to the anchoring worker.
        """
        return self._notary.w3

    @property
    def block_gas_limit(self) -> int:
        return self._tx.block_gas_limit

    def block_number(self) -> int:
        """The node's head block number (a cheap liveness probe)."""
        w3 = self._notary.w3
        return int(self._tx.rpc("eth_blockNumber", lambda: w3.eth.block_number))

    # -- devices -----------------------------------------------------------------------

    def register_device(
        self,
        device_id: str,
        *,
        sae_id: str,
        owner: str,
        expected_firmware: bytes | None = None,
    ) -> TxInfo:
        """``DeviceRegistry.registerDevice`` (OPERATOR_ROLE)."""
        if not is_address(owner):
            raise InvalidChainInput("owner must be an Ethereum address")
        expected = _ZERO32 if expected_firmware is None else bytes32(expected_firmware, "digest")
        args = [encode_device_id(device_id), sae_id, to_checksum_address(owner), expected]
        return self._call_registry("registerDevice", args)[1]

    def attest_firmware(self, device_id: str, digest: bytes) -> AttestationOutcome:
        """``DeviceRegistry.attestFirmware`` (NOTARY_ROLE)."""
        args = [encode_device_id(device_id), bytes32(digest, "firmware digest")]
        receipt, info = self._call_registry("attestFirmware", args)
        for entry in self._logs(receipt, self._registry.address, _FIRMWARE_ATTESTED):
            changed, trusted = self._registry.w3.codec.decode(
                ["bool", "bool"], bytes(entry["data"])
            )
            return AttestationOutcome(tx=info, changed=bool(changed), trusted=bool(trusted))
        raise ChainError(f"attestFirmware transaction {info.tx_hash} emitted no attestation")

    def approve_firmware(self, device_id: str, digest: bytes) -> TxInfo:
        """``DeviceRegistry.approveFirmware`` (OPERATOR_ROLE)."""
        args = [encode_device_id(device_id), bytes32(digest, "firmware digest")]
        return self._call_registry("approveFirmware", args)[1]

    def deactivate_device(self, device_id: str) -> TxInfo:
        """``DeviceRegistry.deactivateDevice`` (OPERATOR_ROLE)."""
        return self._call_registry("deactivateDevice", [encode_device_id(device_id)])[1]

    def get_device(self, device_id: str) -> DeviceInfo | None:
        """The registry's view of a device; ``None`` if it was never registered."""
        raw_id = encode_device_id(device_id)
        try:
            device = self._view(self._registry, "getDevice", raw_id)
        except TransactionReverted as exc:
            if exc.revert_reason.startswith("UnknownDevice("):
                return None
            raise
        trusted = bool(self._view(self._registry, "isTrusted", raw_id))
        sae_id, owner, approved, last, registered_at, last_change, count, active = device
        return DeviceInfo(
            device_id=device_id,
            sae_id=str(sae_id),
            owner=to_checksum_address(owner),
            approved_firmware=None if bytes(approved) == _ZERO32 else bytes(approved),
            last_firmware=None if bytes(last) == _ZERO32 else bytes(last),
            registered_at=int(registered_at),
            last_change_at=int(last_change),
            attestation_count=int(count),
            active=bool(active),
            trusted=trusted,
        )

    def is_trusted(self, device_id: str) -> bool:
        return bool(self._view(self._registry, "isTrusted", encode_device_id(device_id)))

    def attestation_count(self, device_id: str) -> int:
        return int(self._view(self._registry, "attestationCount", encode_device_id(device_id)))

    def get_attestation(self, device_id: str, index: int) -> DeviceAttestation:
        """Entry ``index`` (0 = first) of the device's attestation history."""
        raw = self._view(self._registry, "getAttestation", encode_device_id(device_id), index)
        digest, attested_at, block_number, changed, trusted = raw
        return DeviceAttestation(
            digest=bytes(digest),
            attested_at=int(attested_at),
            block_number=int(block_number),
            changed=bool(changed),
            trusted=bool(trusted),
        )

    # -- records -----------------------------------------------------------------------

    def record_batch(self, records: Sequence[RecordInput]) -> BatchOutcome:
        """``TelemetryNotary.recordBatch`` (NOTARY_ROLE) in one transaction.

        Records already on-chain are skipped, not reverted, so resubmitting a batch whose
        first submission may have landed is safe; ``skipped`` lists them. Payloads are
        published only if at least one record carries one.
        """
        if not records:
            raise InvalidChainInput("a batch needs at least one record")
        if len({r.record_id for r in records}) != len(records):
            raise InvalidChainInput("record IDs in a batch must be distinct")
        rows = [
            (r.record_id, encode_device_id(r.device_id), r.sequence, r.payload_hash, int(r.mode))
            for r in records
        ]
        payloads = [r.payload for r in records] if any(r.payload for r in records) else []
        data = encode_call(self._notary, "recordBatch", [rows, payloads])
        receipt, info = self._tx.transact("recordBatch", self._notary.address, data)
        recorded = tuple(
            bytes(entry["topics"][2])
            for entry in self._logs(receipt, self._notary.address, _RECORD_STORED)
        )
        skipped = tuple(
            bytes(entry["topics"][2])
            for entry in self._logs(receipt, self._notary.address, _RECORD_SKIPPED)
        )
        return BatchOutcome(tx=info, recorded=recorded, skipped=skipped)

    def anchor_root(
        self, root: bytes, *, count: int, first_record_id: bytes, last_record_id: bytes
    ) -> AnchorOutcome:
        """``TelemetryNotary.anchorRoot`` (NOTARY_ROLE); idempotent for a known root."""
        args = [
            bytes32(root, "root"),
            count,
            bytes32(first_record_id, "record ID"),
            bytes32(last_record_id, "record ID"),
        ]
        data = encode_call(self._notary, "anchorRoot", args)
        receipt, info = self._tx.transact("anchorRoot", self._notary.address, data)
        anchored = any(self._logs(receipt, self._notary.address, _ROOT_ANCHORED))
        return AnchorOutcome(tx=info, root=root, anchored=anchored)

    def get_record(self, record_id: bytes) -> OnChainRecord | None:
        """``TelemetryNotary.getRecord``; ``None`` if the record is not on-chain."""
        raw = self._view(self._notary, "getRecord", bytes32(record_id, "record ID"))
        device, payload_hash, sequence, recorded_at, block_number, mode, published = raw
        if int(recorded_at) == 0:
            return None
        return OnChainRecord(
            record_id=record_id,
            device_id=decode_device_id(bytes(device)),
            sequence=int(sequence),
            payload_hash=bytes(payload_hash),
            mode=SecurityMode(int(mode)),
            recorded_at=int(recorded_at),
            block_number=int(block_number),
            payload_published=bool(published),
        )

    def get_anchor(self, root: bytes) -> OnChainAnchor | None:
        """``TelemetryNotary.getAnchor``; ``None`` if the root is not anchored."""
        raw = self._view(self._notary, "getAnchor", bytes32(root, "root"))
        first, last, count, anchored_at, block_number = raw
        if int(anchored_at) == 0:
            return None
        return OnChainAnchor(
            root=root,
            count=int(count),
            first_record_id=bytes(first),
            last_record_id=bytes(last),
            anchored_at=int(anchored_at),
            block_number=int(block_number),
        )

    def verify_inclusion(self, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
        """The contract's own check: ``root`` is anchored and ``proof`` leads to it."""
        args = (bytes32(leaf, "leaf"), [bytes32(p, "proof element") for p in proof], root)
        return bool(self._view(self._notary, "verifyInclusion", *args))

    def find_record_transaction(self, record_id: bytes) -> TxInfo | None:
        """The transaction that stored ``record_id`` (from its ``RecordStored`` event)."""
        record = self.get_record(record_id)
        if record is None:
            return None
        return self._find_event(_RECORD_STORED, 2, record_id, record.block_number)

    def find_anchor_transaction(self, root: bytes) -> TxInfo | None:
        """The transaction that anchored ``root`` (from its ``RootAnchored`` event)."""
        anchor = self.get_anchor(root)
        if anchor is None:
            return None
        return self._find_event(_ROOT_ANCHORED, 1, root, anchor.block_number)

    def _find_event(self, topic: bytes, position: int, value: bytes, block: int) -> TxInfo | None:
        topics: list[str | None] = [hex0x(topic), None, None][: position + 1]
        topics[position] = hex0x(value)
        query: FilterParams = {
            "address": self._notary.address,
            "fromBlock": block,
            "toBlock": block,
            "topics": topics,
        }
        w3 = self._notary.w3
        entries = self._tx.rpc("eth_getLogs", lambda: w3.eth.get_logs(query))
        for entry in entries:
            return self.transaction_info(hex0x(entry["transactionHash"]))
        return None

    def transaction_info(self, tx_hash: str) -> TxInfo | None:
        """A mined transaction's block coordinates; ``None`` if the node does not know it."""
        receipt = self._tx.receipt(tx_hash)
        return None if receipt is None else self._tx.info(receipt)

    # -- roles -------------------------------------------------------------------------

    def grant_role(self, role: Role, account: str) -> tuple[TxInfo, ...]:
        """Grant ``role`` on every contract that has it (admin only)."""
        return self._role_call("grantRole", role, account)

    def revoke_role(self, role: Role, account: str) -> tuple[TxInfo, ...]:
        """Revoke ``role`` on every contract that has it (admin only)."""
        return self._role_call("revokeRole", role, account)

    def has_role(self, role: Role, account: str) -> bool:
        """Whether ``account`` holds ``role`` on every contract that has it."""
        account = to_checksum_address(account)
        return all(
            bool(self._view(contract, "hasRole", role.value, account))
            for contract in self._role_contracts(role)
        )

    def _role_contracts(self, role: Role) -> tuple[Contract, ...]:
        return (self._registry,) if role is Role.OPERATOR else (self._registry, self._notary)

    def _role_call(self, function: str, role: Role, account: str) -> tuple[TxInfo, ...]:
        if not is_address(account):
            raise InvalidChainInput("account must be an Ethereum address")
        args = [role.value, to_checksum_address(account)]
        infos = []
        for contract in self._role_contracts(role):
            data = encode_call(contract, function, args)
            infos.append(self._tx.transact(function, contract.address, data)[1])
        return tuple(infos)

    # -- plumbing ----------------------------------------------------------------------

    def _view(self, contract: Contract, function: str, *args: Any) -> Any:
        return self._tx.view(contract, function, *args)

    def _call_registry(self, function: str, args: list[Any]) -> tuple[TxReceipt, TxInfo]:
        data = encode_call(self._registry, function, args)
        return self._tx.transact(function, self._registry.address, data)

    @staticmethod
    def _logs(receipt: TxReceipt, address: str, topic: bytes) -> list[Any]:
        return [
            entry
            for entry in receipt["logs"]
            if entry["address"] == address
            and entry["topics"]
            and bytes(entry["topics"][0]) == topic
        ]


def _check_code(w3: Web3, sender: TransactionSender, registry: str, notary: str) -> tuple[str, str]:
    """Both addresses must hold exactly our contracts' runtime code."""
    checked = []
    for address, name in ((registry, "DeviceRegistry"), (notary, "TelemetryNotary")):
        if not is_address(address):
            raise ChainMisconfigured(f"{name} address {address!r} is not an address")
        address = to_checksum_address(address)
        code = _code_at(w3, sender, address)
        if not code:
            raise ChainMisconfigured(
                f"no contract code at the configured {name} address {address}: wrong chain, "
                "or the chain was reset; refusing to start"
            )
        if not load_artifact(name).matches_runtime_code(code):
            raise ChainMisconfigured(
                f"the code at {address} is not this build of {name}; refusing to start"
            )
        checked.append(address)
    return checked[0], checked[1]


def _code_at(w3: Web3, sender: TransactionSender, address: str) -> bytes:
    checksummed = to_checksum_address(address)
    return bytes(sender.rpc("eth_getCode", lambda: w3.eth.get_code(checksummed)))


def _deploy(w3: Web3, sender: TransactionSender, chain_id: int) -> Deployment:
    """Deploy both contracts; the signer gets every role on both."""
    me = sender.address

    def deploy(name: str, *args: Any) -> tuple[str, TxInfo]:
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = HexBytes(factory.constructor(*args).data_in_transaction)
        receipt, info = sender.transact(f"deploy {name}", None, data)
        created = receipt["contractAddress"]
        if created is None:
            raise ChainError(f"deploying {name} created no contract")
        return to_checksum_address(created), info

    registry, registry_info = deploy("DeviceRegistry", me, me, me)
    notary, notary_info = deploy("TelemetryNotary", me, me, registry)
    return Deployment(
        chain_id=chain_id,
        registry=registry,
        notary=notary,
        deployer=me,
        registry_tx=registry_info.tx_hash,
        notary_tx=notary_info.tx_hash,
        block_number=notary_info.block_number,
    )
