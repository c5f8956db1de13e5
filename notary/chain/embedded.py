"""The embedded chain: py-evm in-process, persisted in a SQLite file in the data directory.

eth-tester's ``PyEVMBackend`` keeps its chain in a ``MemoryDB``; a notary restart would
lose every block. Here the same py-evm ``MiningChain`` runs on :class:`SQLiteKeyValueStore`,
a py-evm ``BaseAtomicDB`` over one SQLite table. All writes go into one open SQLite
transaction that is committed right after each block is mined (eth-tester mines a block
per transaction), so the file is always at a block boundary: a crash loses at most the
block being built, never half of one, and every block whose receipt was handed out is on
disk (``synchronous=FULL``). Reopening the file continues from the stored canonical head.

web3 talks to the chain through :class:`SerializedTesterProvider`, an
``EthereumTesterProvider`` that serializes requests because py-evm is not thread-safe and
answers reverts the way real nodes do (JSON-RPC error 3 with the raw revert data), so the
chain client decodes custom errors identically for the embedded chain and for anvil/Besu.

Gas estimation runs the transaction once at the block gas limit and takes the gas it
consumed before refunds, which is exact for transactions that make no inner calls (all of
ours); anything with inner calls falls back to py-evm's binary search, whose fourteen-odd
executions per estimate would otherwise dominate the cost of a large batch.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from eth.abc import AtomicWriteBatchAPI, SignedTransactionAPI, StateAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB
from eth.estimators.gas import binary_gas_search_intrinsic_tolerance
from eth.exceptions import OutOfGas, Revert
from eth.exceptions import TransactionNotFound as EVMTransactionNotFound
from eth.typing import AccountDetails
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.state import PragueTransactionExecutor
from eth.vm.spoof import SpoofTransaction
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.main import (
    PyEVMBackend,
    _get_block_by_number,
    get_default_genesis_params,
)
from eth_tester.backends.pyevm.serializers import (
    serialize_transaction,
    serialize_transaction_receipt,
)
from eth_tester.exceptions import TransactionFailed, TransactionNotFound
from eth_typing import Address, BlockNumber, Hash32
from filelock import FileLock, Timeout
from lru import LRU
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS, static_return
from web3.types import RPCEndpoint, RPCResponse

from notary.chain.settings import DEFAULT_EMBEDDED_CHAIN_ID
from notary.errors import ChainMisconfigured, EmbeddedChainLocked

__all__ = [
    "EmbeddedChain",
    "PersistentPyEVMBackend",
    "SQLiteKeyValueStore",
    "SerializedTesterProvider",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FORMAT = "1"


class SQLiteKeyValueStore(BaseAtomicDB):
    """py-evm's key-value database on SQLite, committed explicitly at block boundaries.

    py-evm writes content-addressed trie nodes while it builds a block and the canonical
    head only when the block is persisted; :meth:`commit` makes both durable together.
    """

    #: Entries kept in the read cache (trie nodes are re-read constantly while executing).
    CACHE_ENTRIES = 200_000

    def __init__(self, path: Path) -> None:
        self._cache: LRU[bytes, bytes] = LRU(self.CACHE_ENTRIES)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._open = False

    def _begin(self) -> None:
        if not self._open:
            self._conn.execute("BEGIN")
            self._open = True

    def __getitem__(self, key: bytes) -> bytes:
        cached: bytes | None = self._cache.get(key)
        if cached is not None:
            return cached
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        value: bytes = row[0]
        self._cache[key] = value
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._begin()
        self._conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))
        self._cache[key] = value

    def __delitem__(self, key: bytes) -> None:
        self._begin()
        self._cache.pop(key, None)
        if self._conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 0:
            raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """py-evm's batch semantics; durability comes from the enclosing :meth:`commit`."""
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    def commit(self) -> None:
        """Make every write since the last commit durable, atomically."""
        if self._open:
            self._conn.execute("COMMIT")
            self._open = False

    def rollback(self) -> None:
        """Drop the writes of a block that was being built but never committed."""
        if self._open:
            self._conn.execute("ROLLBACK")
            self._open = False
            self._cache.clear()

    def get_meta(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._begin()
        self._conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def close(self) -> None:
        self.rollback()
        self._conn.close()


class RevertedWithData(TransactionFailed):  # type: ignore[misc]
    """An execution failure that keeps the raw revert data for the JSON-RPC answer."""

    def __init__(self, data: bytes, message: str) -> None:
        super().__init__(message)
        self.data = data


class GasExceedsAllowance(TransactionFailed):  # type: ignore[misc]
    """The transaction runs out of gas even at the block gas limit."""


def _reverted(error: BaseException) -> RevertedWithData:
    if isinstance(error, Revert) and error.args and isinstance(error.args[0], bytes):
        return RevertedWithData(error.args[0], "execution reverted")
    return RevertedWithData(b"", f"execution failed: {type(error).__name__}")


def single_run_gas_estimate(state: StateAPI, transaction: SignedTransactionAPI) -> int:
    """Gas a call-free transaction needs: what it consumes at the block gas limit."""
    probe = cast(
        SignedTransactionAPI, SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0)
    )
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(probe)
    finally:
        state.revert(snapshot)
    if computation.is_error:
        raise computation.error
    if computation.children:
        estimate: int = binary_gas_search_intrinsic_tolerance(state, transaction)
        return estimate
    consumed: int = state.gas_limit - computation.get_gas_remaining()
    # EIP-7623: a calldata-heavy transaction must carry at least the calldata floor.
    floor: int = PragueTransactionExecutor.calc_data_floor_gas(transaction, 0, 0)
    return max(consumed, floor)


def _chain_class(chain_id: int) -> type[MiningChain]:
    """A post-merge Prague chain with a constant gas limit, like eth-tester's own."""

    class EmbeddedNotaryChain(MiningChain):
        vm_configuration = ((BlockNumber(0), PragueVM),)
        gas_estimator = staticmethod(single_run_gas_estimate)

        def create_header_from_parent(self, parent_header: Any, **header_params: Any) -> Any:
            header_params["gas_limit"] = parent_header.gas_limit
            return super().create_header_from_parent(parent_header, **header_params)

        def get_transaction_builder(self) -> Any:
            return self.get_vm().get_transaction_builder()

    EmbeddedNotaryChain.chain_id = chain_id
    return EmbeddedNotaryChain


class PersistentPyEVMBackend(PyEVMBackend):  # type: ignore[misc]
    """eth-tester's py-evm backend on a :class:`SQLiteKeyValueStore`.

    It holds no unlocked accounts: the notary signs transactions itself and sends them raw.
    """

    def __init__(
        self,
        store: SQLiteKeyValueStore,
        *,
        chain_id: int | None,
        genesis_alloc: Mapping[Address, int],
        gas_limit: int,
    ) -> None:
        """Open the chain in ``store``, or create it (``chain_id`` or the default).

        ``chain_id=None`` accepts whatever chain the store holds.
        """
        self._store = store
        self.account_keys = ()
        stored_id = store.get_meta("chain_id")
        if stored_id is not None and chain_id is not None and int(stored_id) != chain_id:
            raise ChainMisconfigured(
                f"the embedded chain was created with chain ID {stored_id}, "
                f"but chain ID {chain_id} is configured"
            )
        if stored_id is not None:
            self.chain = _chain_class(int(stored_id))(store)
        else:
            chain_id = DEFAULT_EMBEDDED_CHAIN_ID if chain_id is None else chain_id
            params = get_default_genesis_params({"gas_limit": gas_limit})
            state: dict[Address, AccountDetails] = {
                address: {"balance": wei, "nonce": 0, "code": b"", "storage": {}}
                for address, wei in genesis_alloc.items()
            }
            genesis = _chain_class(chain_id).from_genesis(store, params, state)
            self.chain = cast(MiningChain, genesis)
            store.set_meta("format", _FORMAT)
            store.set_meta("chain_id", str(chain_id))
            store.commit()

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        raise ChainMisconfigured("a persistent embedded chain is never reset to genesis")

    def mine_blocks(self, num_blocks: int = 1, coinbase: bytes = b"\x00" * 20) -> Any:
        hashes = super().mine_blocks(num_blocks, coinbase)
        self._store.commit()
        return hashes

    def send_raw_transaction(self, raw_transaction: bytes) -> Any:
        """Apply a transaction only if it succeeds: a failing one is refused, never mined.

        The notary gives its embedded-chain transactions the block gas limit instead of
        estimating first (see :class:`~notary.chain.transactions.TransactionSender`), so
        this is where a revert or an oversized batch is caught: the pending block is put
        back as it was and the error is raised with what an estimate would have reported.
        Each transaction thus runs through the EVM once, not twice; for a 500-record
        ``recordBatch`` that run is most of the cost of the transaction.
        """
        pending = self.chain.header
        builder = self.chain.get_vm().get_transaction_builder()
        transaction = builder.decode(raw_transaction)
        _, _, computation = self.chain.apply_transaction(transaction)
        if computation.is_error:
            self.chain.header = pending
            if isinstance(computation.error, OutOfGas):
                raise GasExceedsAllowance(
                    f"gas required exceeds allowance ({transaction.gas})"
                ) from computation.error
            raise _reverted(computation.error) from computation.error
        return transaction.hash

    def _locate(self, transaction_hash: bytes) -> tuple[Any, Any, int]:
        """Find a mined transaction through py-evm's hash index instead of a block scan."""
        try:
            number, index = self.chain.chaindb.get_transaction_index(Hash32(transaction_hash))
        except EVMTransactionNotFound as exc:
            raise TransactionNotFound(f"no transaction {transaction_hash.hex()}") from exc
        block = self.chain.get_canonical_block_by_number(number)
        return block, block.transactions[index], index

    def estimate_gas(self, transaction: Any, block_number: Any = "latest") -> Any:
        try:
            return super().estimate_gas(transaction, block_number)
        except OutOfGas as exc:
            limit = self.chain.get_block().header.gas_limit
            raise GasExceedsAllowance(f"gas required exceeds allowance ({limit})") from exc
        except TransactionFailed as exc:
            cause = exc.args[0] if exc.args else exc
            raise _reverted(cause if isinstance(cause, BaseException) else exc) from exc

    def call(self, transaction: Any, block_number: Any = "latest") -> Any:
        """eth-tester's ``call``, raising the raw revert data instead of its repr.

        It runs in py-evm's costless state (base fee 0), as geth runs ``eth_call``: with
        ``gas_price=0`` the caller needs no balance for gas (``/rpc`` callers are unfunded).
        """
        defaulted = dict(transaction)
        defaulted.setdefault("gas", self._max_available_gas())
        unsigned = self._get_normalized_and_unsigned_evm_transaction(defaulted, block_number)
        spoofed = cast(SignedTransactionAPI, SpoofTransaction(unsigned, from_=transaction["from"]))
        header = _get_block_by_number(self.chain, block_number).header
        with self.chain.get_vm(at_header=header).in_costless_state() as state:
            computation = state.apply_transaction(spoofed)
        if computation.is_error:
            raise _reverted(computation.error)
        return computation.output

    def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
        block, transaction, index = self._locate(transaction_hash)
        return serialize_transaction(block, transaction, index, False)

    def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
        block, transaction, index = self._locate(transaction_hash)
        receipts = block.get_receipts(self.chain.chaindb)
        vm = self.chain.get_vm()
        return serialize_transaction_receipt(block, receipts, transaction, index, False, vm)


class SerializedTesterProvider(EthereumTesterProvider):
    """An ``EthereumTesterProvider`` that runs one request at a time (py-evm is not
    thread-safe, and the notary's anchoring worker and API readers share the chain)."""

    def __init__(self, tester: EthereumTester, *, chain_id: int) -> None:
        # web3's tester endpoints answer a fixed chain ID; ours answer the configured one.
        endpoints = {namespace: dict(methods) for namespace, methods in API_ENDPOINTS.items()}
        endpoints["eth"]["chainId"] = static_return(chain_id)
        endpoints["net"]["version"] = static_return(str(chain_id))
        super().__init__(tester, api_endpoints=endpoints)
        self._lock = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._lock:
            try:
                return super().make_request(method, params)
            except TransactionFailed as exc:
                # web3's tester provider re-raises a plain TransactionFailed; ours is
                # in its context.
                if _find_cause(exc, GasExceedsAllowance) is not None:
                    return _error_response({"code": -32000, "message": str(exc)})
                reverted = _find_cause(exc, RevertedWithData)
                if reverted is None:
                    raise
                data = "0x" + reverted.data.hex()
                return _error_response({"code": 3, "message": str(reverted), "data": data})


def _error_response(error: dict[str, Any]) -> RPCResponse:
    """A JSON-RPC error answer, shaped like geth's/anvil's."""
    return cast(RPCResponse, {"jsonrpc": "2.0", "id": 0, "error": error})


_Cause = TypeVar("_Cause", bound=BaseException)


def _find_cause(exc: BaseException | None, kind: type[_Cause]) -> _Cause | None:
    """The first exception of ``kind`` in ``exc``'s cause/context chain."""
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class EmbeddedChain:
    """The embedded chain of one data directory, owned by one process at a time."""

    DB_NAME = "embedded-chain.sqlite3"

    def __init__(
        self,
        directory: Path,
        *,
        chain_id: int | None,
        genesis_alloc: Mapping[Address, int],
        gas_limit: int,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(directory / (self.DB_NAME + ".lock"), timeout=0)
        try:
            self._lock.acquire()
        except Timeout as exc:
            raise EmbeddedChainLocked(
                f"the embedded chain in {directory} is open in another process"
            ) from exc
        try:
            self._store = SQLiteKeyValueStore(directory / self.DB_NAME)
            backend = PersistentPyEVMBackend(
                self._store, chain_id=chain_id, genesis_alloc=genesis_alloc, gas_limit=gas_limit
            )
        except BaseException:
            self._lock.release()
            raise
        tester = EthereumTester(backend=backend)
        self.provider = SerializedTesterProvider(tester, chain_id=backend.chain.chain_id)

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / cls.DB_NAME).is_file()

    def close(self) -> None:
        """Release the file and the process lock; uncommitted (unmined) work is dropped."""
        with self.provider._lock:
            self._store.close()
        self._lock.release()
