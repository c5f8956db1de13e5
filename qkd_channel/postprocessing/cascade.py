"""Cascade error reconciliation as a two-party protocol over a classical channel.

Bob drives: he asks Alice for the parities of sub-blocks of her key and flips his own bits
until every parity he has asked for matches. Alice only answers; her key is the reference
and never changes. The schedule is the "Cascade opt. (8)" variant of Martinez-Mateo,
Pacher, Peev, Ciurana and Martin, *Demystifying the information reconciliation protocol
Cascade* (QIC 15, 2015): block sizes from the estimated QBER, 14 passes, every pass over a
fresh random permutation agreed through a seed Bob sends in the first message. On top of
the textbook protocol:

* **Full cascade effect.** A bit fixed in one pass flips the parity of the block holding
  it in every other started pass; each block that turns odd is searched again.
* **Nothing disclosed twice.** Alice's key never changes, so every sub-block parity she has
  revealed (and every one that follows from a parent and a sibling) is cached and reused
  when a later cascade step searches the same block again.
* **Inferred parities are not sent.** The parity of the right half follows from the parent
  and the left half; a one-bit block needs no question; in pass 2 and later the last
  top-level block follows from the whole-key parity that pass 1 revealed.
* **Lock-step, batched search.** All searches that cannot interfere run together: one
  message per tree level carries every query, and new searches join as soon as a block
  turns odd. Blocks are picked smallest first and a block waits while it shares a bit
  with a block being searched, the order a sequential implementation would use, so
  batching costs no extra disclosure. The block parities of passes 1-3 are asked for
  together (they are fixed by Alice's key, so asking early costs nothing), then those of
  the remaining passes together.
* **Cheap late passes.** Passes 4+ (two half-key blocks) split the key by one random bit
  per position instead of a shuffle; a half is only ordered for a search if it turns odd.

Messages: see :mod:`qkd_channel.postprocessing.cascade_wire`. ``CascadeStats.exchanges``
counts request/answer pairs (the same at both ends).

Every correction is made at a position where Bob's and Alice's bits really differ (each
search runs against a snapshot of Bob's key and ends on a single bit whose parity
differs), so Cascade never adds an error; it can only leave an even number of errors
hidden in every block it looked at. Those are caught by the verification hash that
follows in the post-processing chain.

Leakage accounting: ``disclosed_bits`` counts exactly the parity bits Alice sent. Bob
never sends parities (only ranges), so this is the whole leakage to subtract before
privacy amplification.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError
from qkd_channel.postprocessing import cascade_wire as wire

if TYPE_CHECKING:
    from qkd_channel.postprocessing.channel import ClassicalChannel

__all__ = [
    "CascadeConfig",
    "CascadeStats",
    "binary_entropy",
    "pass_layout",
    "reconcile_alice",
    "reconcile_bob",
]

Bits = npt.NDArray[np.uint8]
_IntArray = npt.NDArray[np.int64]

_MIN_QBER = 1e-5
#: A pass with at most this many blocks is searched one block at a time (see _resolve).
_WIDE_PASS_BLOCKS = 4


def binary_entropy(p: float) -> float:
    """Shannon binary entropy h(p) in bits; 0 at p = 0 and p = 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def pass_layout(
    seed: int, pass_index: int, key_bits: int, block_size: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """The public block structure of one pass: ``(perm, edges)``.

    Block ``b`` of the pass is key bits ``perm[edges[b]:edges[b + 1]]`` in that order (the
    order the binary search bisects). Both parties derive it from the seed Bob sends in
    ``START``.
    """
    if _is_halves(pass_index, key_bits, block_size):
        upper = _upper_half(_halves_source(seed, key_bits), pass_index)
        return _halves_perm(upper), _halves_edges(upper)
    perm, _, edges = _shuffled(seed, pass_index, key_bits, block_size)
    return perm, edges


def _is_halves(pass_index: int, key_bits: int, block_size: int) -> bool:
    return pass_index > 0 and -(-key_bits // block_size) == 2


def _shuffled(
    seed: int, pass_index: int, key_bits: int, block_size: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """An ordinary pass: shuffle, cut into equal blocks. ``(perm, block_of, edges)`` where
    ``block_of[i]`` is the block holding key bit ``i``."""
    rng = np.random.Generator(np.random.SFC64([seed, pass_index]))
    perm = np.arange(key_bits, dtype=np.int32)
    rng.shuffle(perm)
    block_of = np.empty(key_bits, dtype=np.int32)
    block_of[perm] = np.arange(key_bits, dtype=np.int32) // block_size
    edges = np.append(np.arange(0, key_bits, block_size, dtype=np.int64), key_bits)
    return perm, block_of, edges


# A pass of two halves (the cheap late checks) splits the key by a fresh random bit per
# position instead of a shuffle: as random a split, at a fraction of the cost on megabit
# keys. Bit ``pass_index`` of one shared random word per position is that pass's bit.
def _halves_source(seed: int, key_bits: int) -> npt.NDArray[np.uint64]:
    rng = np.random.SFC64([seed, wire.MAX_PASSES])
    words: npt.NDArray[np.uint64] = rng.random_raw(key_bits)
    return words


def _upper_half(source: npt.NDArray[np.uint64], pass_index: int) -> npt.NDArray[np.bool_]:
    return ((source >> np.uint64(pass_index)) & np.uint64(1)).astype(bool)


def _halves_perm(upper: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
    return np.concatenate((np.flatnonzero(~upper), np.flatnonzero(upper))).astype(np.int32)


def _halves_edges(upper: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    return np.array([0, upper.size - np.count_nonzero(upper), upper.size], dtype=np.int64)


def _halves_parities(key: Bits, upper: npt.NDArray[np.bool_]) -> Bits:
    whole = np.count_nonzero(key) & 1
    top = np.count_nonzero(key & upper) & 1
    return np.array([whole ^ top, top], dtype=np.uint8)


def _block_parities(permuted: Bits, edges: npt.NDArray[np.int64]) -> Bits:
    """Parity of every block ``permuted[edges[b]:edges[b + 1]]`` (empty blocks give 0)."""
    prefix = np.zeros(permuted.size + 1, dtype=np.uint8)
    np.bitwise_xor.accumulate(permuted, out=prefix[1:])
    parities: Bits = prefix[edges[1:]] ^ prefix[edges[:-1]]
    return parities


@dataclass(frozen=True)
class CascadeConfig:
    """Tunable knobs; the defaults are the published "opt. (8)" schedule.

    Block size of pass 1 is ``2**ceil(a)`` with ``a = log2(1/qber) - 0.5``, pass 2
    ``2**ceil((a + 12) / 2)``, pass 3 ``third_block_size``, later passes half the key (the
    cheapest check for the few errors left). Sizes never shrink and never exceed half the
    key.
    """

    passes: int = 14
    third_block_size: int = 4096
    #: Passes whose block parities are asked for together at the start (the rest follow
    #: together once these are resolved): fewer round trips, same disclosure.
    concurrent_passes: int = 3
    #: Seconds to wait for each message from the peer before giving up with ChannelError.
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.passes <= wire.MAX_PASSES:
            raise ValueError(f"passes must be in 1..{wire.MAX_PASSES}")
        if self.third_block_size < 1 or self.concurrent_passes < 1 or self.timeout <= 0:
            raise ValueError("third_block_size, concurrent_passes and timeout must be positive")

    def block_sizes(self, key_bits: int, qber: float) -> tuple[int, ...]:
        """Top-level block size of every pass for a key of ``key_bits`` bits."""
        alpha = math.log2(1.0 / max(qber, _MIN_QBER)) - 0.5
        half = max(1, (key_bits + 1) // 2)
        wanted = [2 ** math.ceil(alpha), 2 ** math.ceil((alpha + 12.0) / 2.0)]
        wanted.append(self.third_block_size)
        sizes: list[int] = []
        for index in range(self.passes):
            size = wanted[index] if index < len(wanted) else half
            previous = sizes[-1] if sizes else 1
            sizes.append(min(max(size, previous), half))
        return tuple(sizes)


@dataclass(frozen=True)
class CascadeStats:
    """What one run of Cascade cost; each party computes its own copy.

    ``disclosed_bits`` is the same number on both sides (Alice counts what she sent, Bob what
    he received). ``corrected_bits`` is known to Bob only (``None`` at Alice).
    """

    key_bits: int
    qber: float
    seed: int
    block_sizes: tuple[int, ...]
    disclosed_bits: int
    exchanges: int
    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    corrected_bits: int | None
    elapsed_seconds: float = field(compare=False)

    @property
    def efficiency(self) -> float:
        """f = disclosed / (n h(qber)); 1.0 is the Shannon limit, ``inf`` if h(qber) = 0."""
        limit = self.key_bits * binary_entropy(self.qber)
        return self.disclosed_bits / limit if limit > 0 else math.inf


def reconcile_alice(
    channel: ClassicalChannel,
    key: npt.NDArray[np.uint8],
    *,
    qber: float,
    seed: int | None = None,
    config: CascadeConfig = CascadeConfig(),
) -> CascadeStats:
    """Answer Bob's parity questions until he says ``DONE``; ``key`` is not modified.

    ``qber`` is the parameter-estimation figure (used only for the efficiency figure on
    this side). If ``seed`` is given it is the pre-agreed permutation seed and Bob's must
    match; with ``None`` Alice accepts the seed Bob announces.
    """
    bits = _check_key(key, qber)
    return _Alice(channel, bits, qber, seed, config).run()


def reconcile_bob(
    channel: ClassicalChannel,
    key: npt.NDArray[np.uint8],
    *,
    qber: float,
    seed: int | None = None,
    config: CascadeConfig = CascadeConfig(),
) -> tuple[Bits, CascadeStats]:
    """Run Cascade as the driving party; returns Bob's corrected key and the run's stats.

    ``key`` is not modified. ``seed`` fixes the permutations (a fresh random 64-bit seed
    when ``None``); it is sent to Alice in the first message.
    """
    bits = _check_key(key, qber)
    if seed is None:
        seed = secrets.randbits(64)
    if not 0 <= seed < 1 << 64:
        raise ValueError("seed must fit in 64 bits")
    return _Bob(channel, bits.copy(), qber, seed, config).run()


def _check_key(key: npt.NDArray[np.uint8], qber: float) -> Bits:
    array = np.asarray(key)
    if array.ndim != 1 or array.size == 0 or array.size > wire.MAX_KEY_BITS:
        raise ValueError(f"key must be a 1-D bit array of 1..{wire.MAX_KEY_BITS} bits")
    if array.dtype.kind not in "biu" or (array.size and int(array.max()) > 1):
        raise ValueError("key must hold bits (0 or 1)")
    if not 0.0 <= qber < 0.5:
        raise ValueError("qber must be in [0, 0.5)")
    return array.astype(np.uint8, copy=False)


class _Link:
    """Counts traffic and turns every failure into :class:`ChannelError` (with a peer abort)."""

    def __init__(self, channel: ClassicalChannel, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout
        self.sent = self.received = self.bytes_sent = self.bytes_received = 0

    def send(self, message: bytes) -> None:
        self._channel.send(message)
        self.sent += 1
        self.bytes_sent += len(message)

    def receive(self) -> bytes:
        message = self._channel.receive(timeout=self._timeout)
        self.received += 1
        self.bytes_received += len(message)
        if message[:1] == wire.MessageType.ABORT.value:
            raise ChannelError(f"cascade: peer aborted ({wire.decode_abort(message)})")
        return message

    def abort(self, reason: wire.AbortReason) -> None:
        """Tell the peer we are giving up (best effort: the channel may be what failed)."""
        try:
            self._channel.send(wire.encode_abort(reason))
        except Exception:
            pass


class _Alice:
    """The passive side: per pass, a prefix-parity table of the permuted key answers any
    range parity in O(1). Tables are built on the first query that needs them (the late
    half-key passes usually get none)."""

    def __init__(
        self,
        channel: ClassicalChannel,
        key: Bits,
        qber: float,
        seed: int | None,
        config: CascadeConfig,
    ) -> None:
        self._link = _Link(channel, config.timeout)
        self._key = key
        self._qber = qber
        self._agreed_seed = seed
        self._disclosed = 0
        self._exchanges = 0
        self._block_sizes: list[int] = []
        self._tabled: list[bool] = []
        self._halves: npt.NDArray[np.uint64] | None = None

    def run(self) -> CascadeStats:
        started = time.perf_counter()
        try:
            start = self._expect_start()
            prefix = np.empty((start.passes, self._key.size + 1), dtype=np.uint8)
            while True:
                message = self._link.receive()
                kind = wire.message_type(message)
                if kind is wire.MessageType.DONE and len(message) == 1:
                    break
                if kind is wire.MessageType.PASS:
                    answer = self._answer_pass(wire.decode_pass(message), start)
                elif kind is wire.MessageType.QUERY:
                    query = wire.decode_query(
                        message, key_bits=self._key.size, passes_started=len(self._block_sizes)
                    )
                    for index in np.unique(query.passes).tolist():
                        self._ensure_table(index, start.seed, prefix)
                    answer = prefix[query.passes, query.starts] ^ prefix[query.passes, query.ends]
                else:
                    raise ChannelError("cascade: unexpected message")
                self._link.send(wire.encode_parities(answer))
                self._disclosed += answer.size
                self._exchanges += 1
        except ChannelError as exc:
            self._link.abort(_reason_of(exc))
            raise
        return CascadeStats(
            key_bits=self._key.size,
            qber=self._qber,
            seed=start.seed,
            block_sizes=tuple(self._block_sizes),
            disclosed_bits=self._disclosed,
            exchanges=self._exchanges,
            messages_sent=self._link.sent,
            messages_received=self._link.received,
            bytes_sent=self._link.bytes_sent,
            bytes_received=self._link.bytes_received,
            corrected_bits=None,
            elapsed_seconds=time.perf_counter() - started,
        )

    def _expect_start(self) -> wire.Start:
        message = self._link.receive()
        if wire.message_type(message) is not wire.MessageType.START:
            raise ChannelError("cascade: expected START")
        start = wire.decode_start(message)
        if start.version != wire.VERSION:
            raise _Abort(wire.AbortReason.VERSION, "cascade: unsupported protocol version")
        if start.key_bits != self._key.size:
            raise _Abort(wire.AbortReason.KEY_LENGTH, "cascade: key lengths differ")
        if self._agreed_seed is not None and start.seed != self._agreed_seed:
            raise _Abort(wire.AbortReason.SEED, "cascade: permutation seed differs")
        return start

    def _answer_pass(self, request: wire.PassRequest, start: wire.Start) -> Bits:
        index, size, n = request.pass_index, request.block_size, self._key.size
        if index != len(self._block_sizes) or index >= start.passes:
            raise ChannelError("cascade: PASS out of order")
        if size > n or (request.omit_last and index == 0):
            raise ChannelError("cascade: PASS out of range")
        self._block_sizes.append(size)
        self._tabled.append(False)
        if _is_halves(index, n, size):
            parities = _halves_parities(self._key, _upper_half(self._halves_source(start), index))
        else:
            perm, _, edges = _shuffled(start.seed, index, n, size)
            parities = _block_parities(self._key[perm], edges)
        return parities[:-1] if request.omit_last else parities

    def _halves_source(self, start: wire.Start) -> npt.NDArray[np.uint64]:
        if self._halves is None:
            self._halves = _halves_source(start.seed, self._key.size)
        return self._halves

    def _ensure_table(self, index: int, seed: int, prefix: npt.NDArray[np.uint8]) -> None:
        if self._tabled[index]:
            return
        perm, _ = pass_layout(seed, index, self._key.size, self._block_sizes[index])
        prefix[index, 0] = 0
        np.bitwise_xor.accumulate(self._key[perm], out=prefix[index, 1:])
        self._tabled[index] = True


class _Abort(ChannelError):
    """A protocol violation with a specific reason code for the peer."""

    def __init__(self, reason: wire.AbortReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _reason_of(exc: ChannelError) -> wire.AbortReason:
    return exc.reason if isinstance(exc, _Abort) else wire.AbortReason.MALFORMED


class _Bob:
    """The driving side. State per started pass ``j``: the permutation, the block of every
    key bit, the block edges, Alice's block parities and Bob's current block parities."""

    def __init__(
        self, channel: ClassicalChannel, key: Bits, qber: float, seed: int, config: CascadeConfig
    ) -> None:
        self._link = _Link(channel, config.timeout)
        self._key = key
        self._n = key.size
        self._qber = qber
        self._seed = seed
        sizes = config.block_sizes(self._n, qber)
        # With one bit there is one block whatever the pass: later passes say nothing new.
        self._sizes = sizes if self._n > 1 else sizes[:1]
        self._first_stage = min(config.concurrent_passes, len(self._sizes))
        self._perm = np.empty((len(self._sizes), self._n), dtype=np.int32)
        self._block_of = np.empty((len(self._sizes), self._n), dtype=np.int32)
        self._edges: list[_IntArray] = []
        self._has_perm: list[bool] = []
        self._halves: npt.NDArray[np.uint64] | None = None
        self._alice_parity: list[Bits] = []
        self._bob_parity: list[Bits] = []
        # Alice's parity of tree nodes (pass, start, end) already revealed or inferred.
        self._known: dict[int, int] = {}
        self._disclosed = 0
        self._exchanges = 0
        self._corrected = 0

    def run(self) -> tuple[Bits, CascadeStats]:
        started = time.perf_counter()
        try:
            self._link.send(wire.encode_start(self._n, self._seed, len(self._sizes)))
            for stage in (range(self._first_stage), range(self._first_stage, len(self._sizes))):
                if len(stage):
                    self._start_passes(stage)
                    self._resolve()
            self._link.send(wire.encode_done())
        except ChannelError as exc:
            self._link.abort(_reason_of(exc))
            raise
        stats = CascadeStats(
            key_bits=self._n,
            qber=self._qber,
            seed=self._seed,
            block_sizes=self._sizes,
            disclosed_bits=self._disclosed,
            exchanges=self._exchanges,
            messages_sent=self._link.sent,
            messages_received=self._link.received,
            bytes_sent=self._link.bytes_sent,
            bytes_received=self._link.bytes_received,
            corrected_bits=self._corrected,
            elapsed_seconds=time.perf_counter() - started,
        )
        return self._key, stats

    def _receive_parities(self, expected: int) -> Bits:
        answer = wire.decode_parities(self._link.receive(), expected)
        self._disclosed += expected
        self._exchanges += 1
        return answer

    def _start_passes(self, indices: range) -> None:
        """Ask for the top-level block parities of several passes in one round trip.

        Alice's parities never change, so asking for later passes before earlier ones are
        resolved costs nothing extra; it lets the search below work on all of them at once.
        """
        for index in indices:
            size = self._sizes[index]
            if _is_halves(index, self._n, size):
                if self._halves is None:
                    self._halves = _halves_source(self._seed, self._n)
                upper = _upper_half(self._halves, index)
                self._block_of[index] = upper
                self._edges.append(_halves_edges(upper))
                self._bob_parity.append(_halves_parities(self._key, upper))
                self._has_perm.append(False)
            else:
                perm, block_of, edges = _shuffled(self._seed, index, self._n, size)
                self._perm[index], self._block_of[index] = perm, block_of
                self._edges.append(edges)
                self._bob_parity.append(_block_parities(self._key[perm], edges))
                self._has_perm.append(True)
            self._link.send(wire.encode_pass(index, size, omit_last=index > 0))
        for index in indices:
            blocks = self._edges[index].size - 1
            alice = self._receive_parities(blocks - (index > 0))
            if index > 0:  # the last block follows from the whole-key parity of pass 1
                whole_key = int(np.bitwise_xor.reduce(self._alice_parity[0]))
                alice = np.append(alice, whole_key ^ int(np.bitwise_xor.reduce(alice)))
            self._alice_parity.append(alice.astype(np.uint8))

    def _ensure_perm(self, index: int) -> None:
        if not self._has_perm[index]:
            self._perm[index] = _halves_perm(self._block_of[index].astype(bool))
            self._has_perm[index] = True

    def _resolve(self) -> None:
        """Search odd blocks until every started pass has only even blocks.

        Searches run in lock-step, one tree level per round trip, and new ones join as soon
        as a block turns odd. Invariant: the root blocks of the running searches are
        pairwise disjoint, so a fix made by one never lands inside another's block and
        every search keeps bisecting a range with an odd number of errors. New searches
        are picked smallest block first and a block waits while it shares a bit with a
        running search (a fix there may make it even), which is the order a sequential
        Cascade would use. A block of a wide pass (a few huge blocks) overlaps nearly
        everything, so it is searched alone, when nothing else is running.
        """
        lock = {
            index: np.zeros(edges.size - 1, dtype=np.int32)
            for index, edges in enumerate(self._edges)
            if edges.size - 1 > _WIDE_PASS_BLOCKS
        }
        empty = np.empty(0, dtype=np.int64)
        passes, roots, starts, ends, alice = empty, empty, empty, empty, empty
        alone = False
        while True:
            if not alone:
                new = self._start_searches(lock, idle=passes.size == 0)
                if new is not None:
                    alone = int(new[0][0]) not in lock
                    passes = np.concatenate((passes, new[0]))
                    roots = np.concatenate((roots, new[1]))
                    starts = np.concatenate((starts, self._edges_of(new[0], new[1])))
                    ends = np.concatenate((ends, self._edges_of(new[0], new[1] + 1)))
                    alice = np.concatenate((alice, new[2]))
            if passes.size == 0:
                return
            self._descend(passes, starts, ends, alice)
            done = ends - starts == 1
            if not done.any():
                continue
            errors = self._perm[passes[done], starts[done]]
            self._key[errors] ^= 1
            self._corrected += errors.size
            for index, parity in enumerate(self._bob_parity):
                np.bitwise_xor.at(parity, self._block_of[index, errors], 1)
            if alone:
                alone = False
            else:
                self._lock_blocks(lock, passes[done], roots[done], -1)
            keep = ~done
            passes, roots, starts = passes[keep], roots[keep], starts[keep]
            ends, alice = ends[keep], alice[keep]

    def _edges_of(self, passes: _IntArray, blocks: _IntArray) -> _IntArray:
        out = np.empty(passes.size, dtype=np.int64)
        for index in np.unique(passes).tolist():
            rows = passes == index
            out[rows] = self._edges[index][blocks[rows]]
        return out

    def _start_searches(
        self, lock: dict[int, npt.NDArray[np.int32]], *, idle: bool
    ) -> tuple[_IntArray, _IntArray, _IntArray] | None:
        """``(passes, blocks, alice parities)`` of the odd blocks to search now, or None."""
        picked: list[tuple[int, _IntArray]] = []
        for index, counts in lock.items():
            parity = self._bob_parity[index]
            odd = np.flatnonzero((parity != self._alice_parity[index]) & (counts == 0))
            if odd.size:
                picked.append((index, odd))
                self._lock_blocks(lock, np.full(odd.size, index, dtype=np.int64), odd, 1)
        if not picked and idle:
            for index, parity in enumerate(self._bob_parity):
                odd = np.flatnonzero(parity != self._alice_parity[index])
                if index not in lock and odd.size:
                    self._ensure_perm(index)
                    picked.append((index, odd[:1]))
                    break
        if not picked:
            return None
        passes = np.concatenate([np.full(odd.size, index, dtype=np.int64) for index, odd in picked])
        blocks = np.concatenate([odd for _, odd in picked]).astype(np.int64)
        alice = np.concatenate(
            [self._alice_parity[index][odd].astype(np.int64) for index, odd in picked]
        )
        return passes, blocks, alice

    def _lock_blocks(
        self,
        lock: dict[int, npt.NDArray[np.int32]],
        passes: _IntArray,
        blocks: _IntArray,
        step: int,
    ) -> None:
        """Add ``step`` to the lock count of every block (narrow passes) sharing a bit."""
        starts = self._edges_of(passes, blocks)
        ends = self._edges_of(passes, blocks + 1)
        members = self._perm[np.repeat(passes, ends - starts), _ranges(starts, ends)]
        for index, counts in lock.items():
            hits = np.bincount(self._block_of[index, members], minlength=counts.size)
            counts += step * hits.astype(np.int32)

    def _descend(
        self, passes: _IntArray, starts: _IntArray, ends: _IntArray, alice: _IntArray
    ) -> None:
        """Move every search down its tree: through halves whose parity Alice has already
        revealed for free, then one level more with one round trip for the rest.

        ``alice`` is Alice's parity of each current range; the arrays are updated in place.
        """
        stride = self._n + 1
        asked = False
        while True:
            active = np.flatnonzero(ends - starts > 1)
            if active.size == 0:
                return
            p, s, e, a = passes[active], starts[active], ends[active], alice[active]
            m = (s + e) // 2
            left_keys = ((p * stride + s) * stride + m).tolist()
            known = self._known
            left = np.fromiter((known.get(k, -1) for k in left_keys), np.int64, len(left_keys))
            missing = np.flatnonzero(left < 0)
            if missing.size:
                if asked:
                    # Keep one round trip per call so new searches can join in between.
                    step = left >= 0
                    if not step.any():
                        return
                    active, p, s, e, a, m, left = (x[step] for x in (active, p, s, e, a, m, left))
                else:
                    asked = True
                    self._link.send(wire.encode_query(p[missing], s[missing], m[missing]))
                    answer = self._receive_parities(missing.size).astype(np.int64)
                    left[missing] = answer
                    right_keys = (p[missing] * stride + m[missing]) * stride + e[missing]
                    asked_keys = [left_keys[i] for i in missing.tolist()]
                    known.update(zip(asked_keys, answer.tolist(), strict=True))
                    known.update(
                        zip(right_keys.tolist(), (answer ^ a[missing]).tolist(), strict=True)
                    )
            bob_left = self._range_parity(p, s, m)
            go_left = left != bob_left
            ends[active] = np.where(go_left, m, e)
            starts[active] = np.where(go_left, s, m)
            alice[active] = np.where(go_left, left, a ^ left)

    def _range_parity(self, passes: _IntArray, starts: _IntArray, ends: _IntArray) -> _IntArray:
        """Bob's current parity of ``key[perm_pass[start:end]]`` for every range."""
        positions = _ranges(starts, ends)
        owners = np.repeat(passes, ends - starts)
        values = self._key[self._perm[owners, positions]]
        offsets = np.concatenate(([0], np.cumsum(ends - starts)[:-1]))
        parities: _IntArray = np.add.reduceat(values, offsets).astype(np.int64) & 1
        return parities


def _ranges(starts: _IntArray, ends: _IntArray) -> _IntArray:
    """Concatenation of ``arange(start, end)`` for every (non-empty) range."""
    lengths = ends - starts
    offsets = np.cumsum(lengths) - lengths
    positions: _IntArray = np.arange(int(lengths.sum()), dtype=np.int64)
    positions += np.repeat(starts - offsets, lengths)
    return positions
