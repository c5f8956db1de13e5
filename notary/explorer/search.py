"""What the explorer's search box means: full identifiers, and the shortened hashes the
explorer itself prints.

The pages show long hashes as ``0x1234abcd…89ef`` (see ``templating.shorten``), so an auditor
copies exactly that. A query is read as one of:

* a device ID (exact, then as the start of device IDs);
* ``0x`` + 64 hex digits: a record ID, a transaction hash or a block hash;
* a shortened hash: ``0x`` + at least :data:`MIN_PREFIX_DIGITS` hex digits, optionally
  followed by ``…`` (or ``...``) and the hash's last hex digits;
* digits: a block number.

A shortened hash is looked up among what the notary stored (record IDs, the transactions
that anchored batches or mirrored device events, the blocks holding them), then among the
transactions and hashes of the newest :data:`RECENT_BLOCKS` blocks; an older foreign
transaction has to be searched by its full hash, and the "nothing matches" page says so.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import quote

from notary.explorer.chain_view import ChainView
from notary.service import NotaryService
from notary.storage.base import HashKind, RecordBrowser

__all__ = ["MIN_PREFIX_DIGITS", "RECENT_BLOCKS", "HashPattern", "Hit", "find"]

#: Fewer hex digits than this match too much to be a useful search.
MIN_PREFIX_DIGITS = 6
#: Newest blocks scanned for a shortened hash the notary did not store.
RECENT_BLOCKS = 128
#: Candidates shown when a shortened hash or device prefix is ambiguous.
MAX_HITS = 20

_FULL = re.compile(r"^0x[0-9a-f]{64}$")
_SHORT = re.compile(rf"^(0x[0-9a-f]{{{MIN_PREFIX_DIGITS},64}})(?:(?:…|\.\.\.)([0-9a-f]{{1,58}}))?$")

_PAGES: dict[HashKind, str] = {
    "record": "/explorer/records/",
    "transaction": "/explorer/tx/",
    "block": "/explorer/blocks/",
}


@dataclass(frozen=True)
class Hit:
    """One thing a query names: its kind, full identifier and explorer page."""

    kind: str
    identifier: str
    url: str


@dataclass(frozen=True)
class HashPattern:
    """A possibly shortened 32-byte hash: its leading ``0x…`` digits and trailing digits."""

    head: str
    tail: str = ""

    @classmethod
    def parse(cls, query: str) -> HashPattern | None:
        """The pattern ``query`` spells (case-insensitive), or ``None`` if it is no hash."""
        match = _SHORT.match(query.lower())
        if match is None:
            return None
        head, tail = match.group(1), match.group(2) or ""
        if len(head) + len(tail) > 66:
            return None
        return cls(head, tail)

    @property
    def complete(self) -> bool:
        return not self.tail and _FULL.match(self.head) is not None

    def matches(self, value: str) -> bool:
        value = value.lower()
        return len(value) == 66 and value.startswith(self.head) and value.endswith(self.tail)


async def find(query: str, service: NotaryService) -> list[Hit]:
    """Every page ``query`` may name, best first; one hit means the query is unambiguous."""
    query = query.strip()
    if not query:
        return []
    if await service.store.get_device(query) is not None:
        return [_device_hit(query)]
    pattern = HashPattern.parse(query)
    chain = ChainView.of(service.chain)
    if pattern is not None and pattern.complete:
        return await _full_hash(pattern.head, service, chain)
    if pattern is not None:
        return await _short_hash(pattern, service, chain)
    if query.isascii() and query.isdigit() and chain is not None:
        if int(query) <= await asyncio.to_thread(chain.head):
            return [Hit("block", str(int(query)), f"{_PAGES['block']}{int(query)}")]
        return []
    devices = await service.store.list_devices()
    return [_device_hit(d.device_id) for d in devices if d.device_id.startswith(query)][:MAX_HITS]


def _device_hit(device_id: str) -> Hit:
    return Hit("device", device_id, f"/explorer/devices/{quote(device_id, safe='')}")


def _hash_hit(kind: HashKind, value: str) -> Hit:
    return Hit(kind, value, _PAGES[kind] + value)


async def _full_hash(key: str, service: NotaryService, chain: ChainView | None) -> list[Hit]:
    if await service.store.get_record(key) is not None:
        return [_hash_hit("record", key)]
    if chain is not None:
        if await asyncio.to_thread(chain.transaction, key) is not None:
            return [_hash_hit("transaction", key)]
        if await asyncio.to_thread(chain.block, key) is not None:
            return [_hash_hit("block", key)]
    return []


async def _short_hash(
    pattern: HashPattern, service: NotaryService, chain: ChainView | None
) -> list[Hit]:
    found: dict[str, Hit] = {}
    store = service.store
    if isinstance(store, RecordBrowser):
        for kind, value in await store.hashes_with_prefix(pattern.head, MAX_HITS * 4):
            if pattern.matches(value):
                found.setdefault(value, _hash_hit(kind, value))
    if not found and chain is not None:
        blocks = await asyncio.to_thread(chain.latest_blocks, RECENT_BLOCKS)
        for block in blocks:
            if pattern.matches(block.hash):
                found.setdefault(block.hash, _hash_hit("block", block.hash))
            for tx_hash in block.tx_hashes:
                if pattern.matches(tx_hash):
                    found.setdefault(tx_hash, _hash_hit("transaction", tx_hash))
    return list(found.values())[:MAX_HITS]
