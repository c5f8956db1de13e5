# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The devnet's chain: ledger state, one block per submitted group, persisted in a directory.

Everything a transaction can change is decided by go-algorand's evaluator
(:mod:`atomic_swap.devnet.jig`); this module keeps what a node keeps around it: the round
counter and block headers, confirmed transactions with their apply data (inner transactions,
logs, created application IDs) for ``pending`` lookups, the set of committed transaction IDs
(the evaluator starts from a fresh database each block, so duplicate detection is ours), the
dev-mode clock offset, the transaction counter application and asset IDs come from (so an ID
is never reused), the network's own genesis ID and hash, and a dispenser account whose
mnemonic is stored in the data directory with mode 0600.

Each data directory is its own network: the genesis hash is drawn at random when the
directory is created and the genesis ID is ``NETWORK_NAME-v1``, so two devnets never accept
each other's transactions (signatures cover both fields).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from algosdk import account, encoding, mnemonic
from algosdk.transaction import GenericSignedTransaction

from atomic_swap.devnet.jig import FIRST_APP_ID, Genesis, JigEvaluator
from atomic_swap.devnet.storage import ChainStore
from atomic_swap.devnet.wire import block_txn_to_json, signed_txn_to_json
from atomic_swap.errors import DevnetRejected

__all__ = ["DISPENSER_FILE", "DevChain"]

DISPENSER_FILE = "dispenser.mnemonic"
STATE_FILE = "chain.sqlite3"
DISPENSER_MICROALGOS = 10**15
MAX_GROUP = 16


class DevChain:
    """A single-node Algorand chain in dev mode: each accepted group is its own block."""

    def __init__(
        self,
        data_dir: Path,
        *,
        network_name: str,
        clock: Callable[[], float] = time.time,
        evaluator: JigEvaluator | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.network_name = network_name
        self._clock = clock
        self._cond = threading.Condition()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._store = ChainStore(data_dir / STATE_FILE)
        name = self._store.meta("network_name")
        if name is None:
            self._genesis()
        elif name != network_name:
            raise DevnetRejected(f"data directory belongs to network {name!r}")
        self._round: int = self._store.meta("round")
        self._offset: int = self._store.meta("offset")
        self._ledger: dict[str, Any] = self._store.meta("ledger")
        self._dispenser: str = self._store.meta("dispenser")
        if self._store.meta("genesis_hash") is None:  # a data directory from before v1 genesis
            self._store.set_meta(**_new_genesis(network_name, self._dispenser))
        self.genesis = Genesis(self._store.meta("genesis_id"), self._store.meta("genesis_hash"))
        self._evaluator = evaluator or JigEvaluator(self.genesis, binary_dir=data_dir)
        self._txn_counter: int = self._store.meta("txn_counter") or _counter_floor(self._ledger)
        self.last_block_time = self._clock()

    # -- genesis -----------------------------------------------------------------------

    def _genesis(self) -> None:
        key, address = account.generate_account()
        mpath = self.data_dir / DISPENSER_FILE
        fd = os.open(mpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(mnemonic.from_private_key(key) + "\n")
        ledger = {
            "accounts": {
                address: {
                    "address": address,
                    "local_states": {},
                    "balances": {0: [DISPENSER_MICROALGOS, False]},
                }
            },
            "apps": {},
            "global_states": {},
            "assets": {},
            "boxes": {},
        }
        self._store.commit_block(
            {"rnd": 1, "ts": int(self._clock()), "txns": []},
            {},
            network_name=self.network_name,
            round=1,
            offset=0,
            ledger=ledger,
            dispenser=address,
            txn_counter=FIRST_APP_ID,
            **_new_genesis(self.network_name, address),
        )

    # -- reads -------------------------------------------------------------------------

    @property
    def round(self) -> int:
        return self._round

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def dispenser(self) -> str:
        return self._dispenser

    @property
    def genesis_id(self) -> str:
        return self.genesis.genesis_id

    @property
    def genesis_hash_b64(self) -> str:
        return base64.b64encode(self.genesis.genesis_hash).decode()

    def set_offset(self, seconds: int) -> None:
        """Dev-mode clock offset: later blocks are stamped ``now + seconds`` (sandbox API)."""
        with self._cond:
            self._store.set_meta(offset=int(seconds))
            self._offset = int(seconds)

    def now(self) -> int:
        return int(self._clock()) + self.offset

    def header(self, round_: int) -> dict[str, Any] | None:
        return self._store.header(round_)

    def transaction(self, txid: str) -> dict[str, Any] | None:
        return self._store.transaction(txid)

    def wait_for_round_after(self, round_: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.round > round_, timeout=timeout)

    def account(self, address: str) -> dict[str, Any]:
        """Account record in algod's JSON shape (``/v2/accounts/{address}``)."""
        acct = self._ledger["accounts"].get(address)
        ledger = self._ledger
        if acct is None:
            acct = {"balances": {0: [0, False]}, "local_states": {}}
        amount = acct["balances"].get(0, [0, False])[0]
        assets = [
            {"asset-id": aid, "amount": bal[0], "is-frozen": bool(bal[1])}
            for aid, bal in sorted(acct["balances"].items())
            if aid
        ]
        created_apps = [
            self.application(app_id)
            for app_id, app in sorted(ledger["apps"].items())
            if app["creator"] == address
        ]
        created_assets = [
            {"index": aid, "params": self._asset_params(aid)}
            for aid, params in sorted(ledger["assets"].items())
            if params.get("creator") == address
        ]
        local = [
            {"id": app_id, "key-value": _tkv(state)}
            for app_id, state in sorted(acct["local_states"].items())
        ]
        mine = [a for a in ledger["apps"].values() if a["creator"] == address]
        opted = [ledger["apps"][app_id] for app_id in acct["local_states"]]
        schema_ints = sum(a["global_ints"] for a in mine) + sum(a["local_ints"] for a in opted)
        schema_bytes = sum(a["global_bytes"] for a in mine) + sum(a["local_bytes"] for a in opted)
        extra_pages = sum(a.get("extra_pages", 0) for a in mine)
        min_balance = (
            100_000
            + 100_000 * (len(assets) + len(created_apps) + len(local) + extra_pages)
            + 28_500 * schema_ints
            + 50_000 * schema_bytes
            if amount
            else 0
        )
        result: dict[str, Any] = {
            "address": address,
            "amount": amount,
            "amount-without-pending-rewards": amount,
            "min-balance": min_balance,
            "pending-rewards": 0,
            "rewards": 0,
            "reward-base": 0,
            "round": self.round,
            "status": "Offline",
            "assets": assets,
            "created-apps": created_apps,
            "created-assets": created_assets,
            "apps-local-state": local,
            "total-apps-opted-in": len(local),
            "total-assets-opted-in": len(assets),
            "total-created-apps": len(created_apps),
            "total-created-assets": len(created_assets),
            "sig-type": "sig",
        }
        if acct.get("auth_addr"):
            result["auth-addr"] = acct["auth_addr"]
        return result

    def application(self, app_id: int) -> dict[str, Any] | None:
        """Application record in algod's JSON shape (``/v2/applications/{id}``)."""
        ledger = self._ledger
        app = ledger["apps"].get(app_id)
        if app is None:
            return None
        return {
            "id": app_id,
            "params": {
                "creator": app["creator"],
                "approval-program": _b64(app["approval_program_bytecode"]),
                "clear-state-program": _b64(app.get("clear_program_bytecode", b"\x06\x81\x01")),
                "global-state": _tkv(ledger["global_states"].get(app_id, {})),
                "global-state-schema": {
                    "num-uint": app["global_ints"],
                    "num-byte-slice": app["global_bytes"],
                },
                "local-state-schema": {
                    "num-uint": app["local_ints"],
                    "num-byte-slice": app["local_bytes"],
                },
                "extra-program-pages": app.get("extra_pages", 0),
            },
        }

    def asset(self, asset_id: int) -> dict[str, Any] | None:
        if asset_id not in self._ledger["assets"]:
            return None
        return {"index": asset_id, "params": self._asset_params(asset_id)}

    def _asset_params(self, asset_id: int) -> dict[str, Any]:
        p = self._ledger["assets"][asset_id]
        out: dict[str, Any] = {
            "creator": p.get("creator"),
            "total": p.get("total", 0),
            "decimals": p.get("decimals", 0),
            "default-frozen": bool(p.get("default_frozen", False)),
        }
        for key, name in (("unit_name", "unit-name"), ("name", "name"), ("url", "url")):
            val = p.get(key)
            if isinstance(val, bytes):
                out[name] = val.decode(errors="replace")
        for key in ("manager", "reserve", "freeze", "clawback"):
            if p.get(key):
                out[key] = p[key]
        return out

    # -- writes ------------------------------------------------------------------------

    def submit(self, raw: bytes) -> str:
        """Evaluate concatenated signed transactions as one block; return the first txid."""
        stxns = _decode_stxns(raw)
        if not stxns:
            raise DevnetRejected("empty transaction body")
        if len(stxns) > MAX_GROUP:
            raise DevnetRejected(f"a group holds at most {MAX_GROUP} transactions")
        with self._cond:
            round_ = self.round + 1
            txids: list[str] = [s.get_txid() for s in stxns]
            for stxn, txid in zip(stxns, txids, strict=True):
                txn = stxn.transaction
                if self._store.transaction(txid) is not None:
                    raise DevnetRejected(f"transaction already in ledger: {txid}")
                if txn.genesis_hash != self.genesis_hash_b64:
                    raise DevnetRejected(
                        f"transaction {txid}: genesis hash {txn.genesis_hash} is not this "
                        f"network's ({self.genesis_hash_b64}, {self.genesis_id})"
                    )
                if txn.genesis_id and txn.genesis_id != self.genesis_id:
                    raise DevnetRejected(
                        f"transaction {txid}: genesis ID {txn.genesis_id!r} is not this "
                        f"network's ({self.genesis_id!r})"
                    )
                if not txn.first_valid_round <= round_ <= txn.last_valid_round:
                    raise DevnetRejected(
                        f"transaction {txid}: txn dead: round {round_} outside of "
                        f"{txn.first_valid_round}--{txn.last_valid_round}"
                    )
            previous = self._store.header(self.round)
            assert previous is not None  # every round up to the current one has a header
            timestamp = max(self.now(), int(previous["ts"]))
            result, new_ledger = self._evaluator.evaluate(
                self._ledger,
                stxns,
                round_=round_,
                prev_timestamp=timestamp,
                txn_counter=self._txn_counter,
            )
            block = result.block
            counter = max(int(block.get(b"tc", 0)), self._txn_counter)
            records: dict[str, dict[str, Any]] = {}
            for stxn, txid, in_block in zip(stxns, txids, block.get(b"txns", []), strict=False):
                record = block_txn_to_json(in_block)
                record["txn"] = signed_txn_to_json(stxn)
                record["confirmed-round"] = round_
                record["pool-error"] = ""
                if b"apid" in in_block:
                    record["application-index"] = in_block[b"apid"]
                if b"caid" in in_block:
                    record["asset-index"] = in_block[b"caid"]
                records[txid] = record
            header = {"rnd": round_, "ts": timestamp, "txns": list(records)}
            self._store.commit_block(
                header, records, round=round_, ledger=new_ledger, txn_counter=counter
            )
            self._ledger, self._round, self._txn_counter = new_ledger, round_, counter
            self.last_block_time = self._clock()
            self._cond.notify_all()
            return txids[0]


def _new_genesis(network_name: str, dispenser: str) -> dict[str, Any]:
    """A new network's genesis ID and (random, so unique) genesis hash."""
    seed = b"qswap-devnet/genesis/v1" + network_name.encode() + dispenser.encode()
    digest = hashlib.new("sha512_256", seed + secrets.token_bytes(32)).digest()
    return {"genesis_id": f"{network_name}-v1", "genesis_hash": digest}


def _counter_floor(ledger: dict[str, Any]) -> int:
    """The next free ID of a data directory written before the counter was kept."""
    ids: list[int] = [*ledger["apps"], *ledger["assets"]]
    return max([FIRST_APP_ID - 1, *ids]) + 1


def _decode_stxns(raw: bytes) -> list[GenericSignedTransaction]:
    """Split a body of concatenated msgpack signed transactions (what ``algod`` accepts)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(raw)
    out: list[GenericSignedTransaction] = []
    try:
        for obj in unpacker:
            out.append(encoding.msgpack_decode(base64.b64encode(msgpack.packb(obj)).decode()))
    except Exception as exc:  # algosdk raises bare exceptions for malformed input
        raise DevnetRejected("malformed signed transaction") from exc
    return out


def _tkv(state: dict[Any, Any]) -> list[dict[str, Any]]:
    out = []
    for key, val in sorted(state.items()):
        k = key if isinstance(key, bytes) else str(key).encode()
        if isinstance(val, bytes):
            value = {"type": 1, "bytes": _b64(val), "uint": 0}
        else:
            value = {"type": 2, "bytes": "", "uint": int(val)}
        out.append({"key": _b64(k), "value": value})
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
