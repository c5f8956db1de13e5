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
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import BlockNotFound
from web3.providers import HTTPProvider
from web3.types import FilterParams, TxReceipt

from notary.chain.artifacts import LEGACY_DIR, load_artifact
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
    ChainReset,
    InvalidChainInput,
    TransactionReverted,
)

__all__ = ["REDEPLOY_HINT", "ChainClient"]

log = logging.getLogger(__name__)

_NOTARY = load_artifact("TelemetryNotary")
_REGISTRY = load_artifact("DeviceRegistry")
_RECORD_STORED = _NOTARY.event_topic("RecordStored")
_RECORD_SKIPPED = _NOTARY.event_topic("RecordSkipped")
_RECORD_CONFLICT = _NOTARY.event_topic("RecordConflict")
_RECORD_REFUSED = _NOTARY.event_topic("RecordRefused")
_ROOT_ANCHORED = _NOTARY.event_topic("RootAnchored")
_FIRMWARE_ATTESTED = _REGISTRY.event_topic("FirmwareAttested")
_ATTESTATION_SKIPPED = _REGISTRY.event_topic("AttestationSkipped")
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
        genesis_hash: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """Use :meth:`open`; this constructor trusts its arguments."""
        self._tx = sender
        self._settings = settings
        self.chain_id = chain_id
        #: Hash of block 0 of the chain the client attached to.
        self.genesis_hash = genesis_hash
        self._registry = registry
        self._notary = notary
        self._on_close = on_close

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def open(
        cls, settings: ChainSettings, signer: LocalAccount, *, redeploy: bool = False
    ) -> ChainClient:
        """Connect, check the chain, then attach to (or deploy) the contracts.

        ``redeploy`` deploys new contracts even if ``chain.json`` names some (after a chain
        reset, or to migrate from a superseded build) and records them instead.
        """
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
            return cls._attach(w3, settings, signer, embedded, redeploy=redeploy)
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
        *,
        redeploy: bool,
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
        genesis = _genesis_hash(w3, settings)
        if redeploy:
            recorded = None
        elif recorded is not None and recorded.genesis_hash not in (None, genesis):
            raise ChainReset(
                f"the node's genesis block is {genesis}, but the contracts in "
                f"{settings.data_dir / 'chain.json'} were deployed on a chain with genesis "
                f"{recorded.genesis_hash}: the chain was reset; {REDEPLOY_HINT}"
            )
        registry = None if redeploy else settings.registry_address
        notary = None if redeploy else settings.notary_address
        registry = registry or (recorded.registry if recorded else None)
        notary = notary or (recorded.notary if recorded else None)
        if (registry is None) != (notary is None):
            raise ChainMisconfigured("configure both contract addresses or neither")
        reverts = RevertDecoder([_REGISTRY.abi, _NOTARY.abi])
        sender = TransactionSender(
            w3,
            settings,
            signer,
            chain_id=chain_id,
            reverts=reverts,
            estimate_gas=embedded is None,
        )
        if registry is None or notary is None:
            if not (settings.deploy or redeploy):
                raise ChainMisconfigured(
                    "no contract addresses configured and none recorded in the data "
                    "directory; deploy first or pass the addresses"
                )
            deployment = _deploy(w3, sender, chain_id, settings.admin_delay_s, genesis)
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
            registry=w3.eth.contract(address=to_checksum_address(registry), abi=_REGISTRY.abi),
            notary=w3.eth.contract(address=to_checksum_address(notary), abi=_NOTARY.abi),
            genesis_hash=genesis,
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

    @property
    def confirmations(self) -> int:
        """Blocks (the transaction's included) after which a transaction is final."""
        return self._settings.confirmations

    def block_hash(self, number: int) -> str | None:
        """The hash of block ``number`` on the node's chain now; ``None`` above the head."""
        w3 = self._notary.w3

        def fetch() -> str | None:
            try:
                return hex0x(w3.eth.get_block(number)["hash"])
            except BlockNotFound:
                return None

        return self._tx.rpc("eth_getBlockByNumber", fetch)

    def resync(self) -> None:
        """Re-read the signer's nonce from the node before the next transaction."""
        self._tx.resync()

    def check_identity(self) -> None:
        """Raise :class:`ChainReset` unless the node still serves our chain ID, genesis and
        contracts (a node replaced by another chain's behind the same URL included)."""
        w3 = self._notary.w3
        chain_id = int(self._tx.rpc("eth_chainId", lambda: w3.eth.chain_id))
        if chain_id != self.chain_id:
            raise ChainReset(
                f"the node now serves chain ID {chain_id}, not {self.chain_id}: another chain "
                f"behind the same node URL; fix the URL, or {REDEPLOY_HINT}"
            )
        genesis = _genesis_hash(w3, self._settings)
        if genesis != self.genesis_hash:
            raise ChainReset(
                f"the node's genesis block changed from {self.genesis_hash} to {genesis}: "
                f"the chain was reset; {REDEPLOY_HINT}"
            )
        _check_code(w3, self._tx, self.registry_address, self.notary_address)

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

    def attest_firmware(self, device_id: str, digest: bytes, sequence: int) -> AttestationOutcome:
        """``DeviceRegistry.attestFirmware`` (NOTARY_ROLE): the digest reported by the
        device's message ``sequence``. A repeat of the same attestation is a no-op."""
        args = [encode_device_id(device_id), bytes32(digest, "firmware digest"), sequence]
        receipt, info = self._call_registry("attestFirmware", args)
        for entry in self._logs(receipt, self._registry.address, _FIRMWARE_ATTESTED):
            _, changed, trusted = self._registry.w3.codec.decode(
                ["uint64", "bool", "bool"], bytes(entry["data"])
            )
            return AttestationOutcome(tx=info, changed=bool(changed), trusted=bool(trusted))
        if self._logs(receipt, self._registry.address, _ATTESTATION_SKIPPED):
            return AttestationOutcome(tx=info, changed=False, trusted=self.is_trusted(device_id))
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
        digest, sequence, attested_at, block_number, changed, trusted = raw
        return DeviceAttestation(
            digest=bytes(digest),
            sequence=int(sequence),
            attested_at=int(attested_at),
            block_number=int(block_number),
            changed=bool(changed),
            trusted=bool(trusted),
        )

    # -- records -----------------------------------------------------------------------

    def record_batch(self, records: Sequence[RecordInput]) -> BatchOutcome:
        """``TelemetryNotary.recordBatch`` (NOTARY_ROLE) in one transaction.

        Records already on-chain are skipped, not reverted, so resubmitting a batch whose
        first submission may have landed is safe; ``skipped`` lists them, ``conflicts``
        those stored before with other content, ``refused`` those of devices the registry
        does not hold as active. Payloads are published only if a record carries one.
        """
        if not records:
            raise InvalidChainInput("a batch needs at least one record")
        if len({r.record_id for r in records}) != len(records):
            raise InvalidChainInput("record IDs in a batch must be distinct")
        rows = [r.abi_row() for r in records]
        payloads = [r.payload for r in records] if any(r.payload for r in records) else []
        data = encode_call(self._notary, "recordBatch", [rows, payloads])
        receipt, info = self._tx.transact("recordBatch", self._notary.address, data)
        address = self._notary.address

        def topics(event: bytes, position: int) -> tuple[bytes, ...]:
            return tuple(
                bytes(entry["topics"][position]) for entry in self._logs(receipt, address, event)
            )

        conflicts = tuple(
            (bytes(entry["topics"][1]), decode_device_id(bytes(entry["topics"][2])))
            for entry in self._logs(receipt, address, _RECORD_CONFLICT)
        )
        return BatchOutcome(
            tx=info,
            recorded=topics(_RECORD_STORED, 2),
            skipped=topics(_RECORD_SKIPPED, 2),
            conflicts=conflicts,
            refused=topics(_RECORD_REFUSED, 2),
        )

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
        device, leaf, sequence, recorded_at, block_number, mode, published = raw
        if int(recorded_at) == 0:
            return None
        return OnChainRecord(
            record_id=record_id,
            device_id=decode_device_id(bytes(device)),
            sequence=int(sequence),
            leaf=bytes(leaf),
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

    def verify_inclusion(self, record: RecordInput, proof: Sequence[bytes], root: bytes) -> bool:
        """The contract's own check: ``root`` is anchored and ``proof`` leads from the
        leaf of ``record`` (computed by the contract) to it."""
        args = (record.abi_row(), [bytes32(p, "proof element") for p in proof], root)
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

    def transaction_exists(self, tx_hash: str) -> bool:
        """Whether the node has mined ``tx_hash`` (the reconciler's check of old events)."""
        return self._tx.receipt(tx_hash) is not None

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

    def begin_admin_transfer(self, new_admin: str) -> tuple[TxInfo, ...]:
        """Schedule handing the admin role of both contracts to ``new_admin`` (admin only).

        The contracts' ``AccessControlDefaultAdminRules`` refuse ``grantRole`` for the admin
        role: the new admin must :meth:`accept_admin_transfer` after the delay set at
        deployment, and the current admin can cancel until then.
        """
        if not is_address(new_admin):
            raise InvalidChainInput("new_admin must be an Ethereum address")
        return self._on_both("beginDefaultAdminTransfer", [to_checksum_address(new_admin)])

    def accept_admin_transfer(self) -> tuple[TxInfo, ...]:
        """Accept a scheduled admin transfer (as the new admin, once the delay passed)."""
        return self._on_both("acceptDefaultAdminTransfer", [])

    def cancel_admin_transfer(self) -> tuple[TxInfo, ...]:
        """Cancel a scheduled admin transfer (current admin)."""
        return self._on_both("cancelDefaultAdminTransfer", [])

    def admin_state(self) -> tuple[str, str | None, int, int]:
        """``(admin, pending admin or None, accept-after timestamp, delay in seconds)`` of
        the TelemetryNotary (the registry is kept in step by :meth:`begin_admin_transfer`)."""
        admin = to_checksum_address(self._view(self._notary, "defaultAdmin"))
        pending, schedule = self._view(self._notary, "pendingDefaultAdmin")
        delay = int(self._view(self._notary, "defaultAdminDelay"))
        pending_admin = None if int(pending, 16) == 0 else to_checksum_address(pending)
        return admin, pending_admin, int(schedule), delay

    def _on_both(self, function: str, args: list[Any]) -> tuple[TxInfo, ...]:
        infos = []
        for contract in (self._registry, self._notary):
            data = encode_call(contract, function, args)
            infos.append(self._tx.transact(function, contract.address, data)[1])
        return tuple(infos)

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
        if role is Role.ADMIN:
            raise InvalidChainInput(
                "the admin role moves only by the two-step, delayed transfer "
                "(begin_admin_transfer / accept_admin_transfer)"
            )
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


#: What an operator runs when the recorded contracts are gone or superseded.
REDEPLOY_HINT = "run `qkd-notary chain redeploy --re-anchor` (docs/receipts.md, 'Chain resets')"


def _check_code(w3: Web3, sender: TransactionSender, registry: str, notary: str) -> tuple[str, str]:
    """Both addresses must hold exactly our contracts' runtime code.

    No code at all means the chain lost the contracts (:class:`ChainReset`); the code of
    the previous build means a data directory from before receipts v2 (a migration).
    """
    checked = []
    for address, name in ((registry, "DeviceRegistry"), (notary, "TelemetryNotary")):
        if not is_address(address):
            raise ChainMisconfigured(f"{name} address {address!r} is not an address")
        address = to_checksum_address(address)
        code = _code_at(w3, sender, address)
        if not code:
            raise ChainReset(
                f"no contract code at the {name} address {address}: the chain was reset or "
                f"rolled back before the deployment; {REDEPLOY_HINT}"
            )
        if load_artifact(f"{name}-v1", LEGACY_DIR).matches_runtime_code(code):
            raise ChainMisconfigured(
                f"{name} at {address} is the previous build (receipts v1); this version "
                f"records every receipt claim on-chain: {REDEPLOY_HINT}"
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


def _genesis_hash(w3: Web3, settings: ChainSettings) -> str:
    return hex0x(settings.retry.run("eth_getBlockByNumber", lambda: w3.eth.get_block(0))["hash"])


def _deploy(
    w3: Web3, sender: TransactionSender, chain_id: int, admin_delay_s: int, genesis: str
) -> Deployment:
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

    registry, registry_info = deploy("DeviceRegistry", admin_delay_s, me, me, me)
    notary, notary_info = deploy("TelemetryNotary", admin_delay_s, me, me, registry)
    return Deployment(
        chain_id=chain_id,
        registry=registry,
        notary=notary,
        deployer=me,
        registry_tx=registry_info.tx_hash,
        notary_tx=notary_info.tx_hash,
        block_number=notary_info.block_number,
        genesis_hash=genesis,
    )
