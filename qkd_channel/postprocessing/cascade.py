"""Cascade error reconciliation as a two-party protocol over a classical channel.

Bob drives: he asks Alice for the parities of sub-blocks of her key and flips his own bits
until every parity he has asked for matches. Alice only answers; her key is the reference
and never changes. The schedule follows "Cascade opt. (8)" of Martinez-Mateo, Pacher,
Peev, Ciurana and Martin, *Demystifying the information reconciliation protocol Cascade*
(QIC 15, 2015): block sizes from the estimated QBER, 14 passes, every pass over a fresh
random permutation agreed through a seed Bob sends in the first message; pass 2 uses
smaller blocks than opt. (8) to cut round trips (see :class:`CascadeConfig`). On top of
the textbook protocol:

* **Full cascade effect.** A bit fixed in one pass flips the parity of the block holding
  it in every other pass; each block that turns odd is searched again.
* **Nothing disclosed twice.** Alice's key never changes, so every sub-block parity she has
  revealed (and every one that follows from a parent and a sibling) is kept in a tree
  cache and reused when a later cascade step searches the same block again.
* **Inferred parities are not sent.** The parity of the right half follows from the parent
  and the left half; a one-bit block needs no question; in pass 2 and later the last
  top-level block follows from the whole-key parity that pass 1 revealed.
* **Lock-step search of all passes.** The block parities of all passes are asked for in
  the first round trip (Cascade discloses them whatever happens). Then every running
  binary search, of any pass, moves one tree level per round trip, all of them in one
  ``QUERY``; searches join as soon as their block turns odd, in the order a sequential
  Cascade would use where it matters (see ``_Bob._start_searches``). About 150 round
  trips reconcile 10^5 bits at 2 % QBER (one search at a time would take ~14,000: 2,000
  errors, ~7 levels each).
* **Cheap late passes.** Passes 4+ (two half-key blocks) split the key by one random bit
  per position instead of a shuffle; a half is only ordered for a search if it turns odd.

Messages: see :mod:`qkd_channel.postprocessing.cascade_wire`. ``CascadeStats.exchanges``
counts request/answer pairs (the same at both ends).

Every correction is made at a position where Bob's and Alice's bits really differ (a
search compares Alice's parities with a snapshot of Bob's key that stays exact for its
range, stops if a fix lands there, and ends on a single bit whose parity differs), so
Cascade never adds an error; it can only leave an even number of errors hidden in every
block it looked at. Those are caught by the verification hash that follows in the
post-processing chain.

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
from qkd_channel.link.finite_key import binary_entropy
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
#: Passes whose searches start as soon as their blocks turn odd (see _Bob._start_searches).
_EARLY_PASSES = 2
#: A pass-2 block waits while running pass-1 searches are expected to fix more of its bits.
_PRESSURE = 0.5


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
    perm, edges = _shuffled(seed, pass_index, key_bits, block_size)
    return perm, edges


def _is_halves(pass_index: int, key_bits: int, block_size: int) -> bool:
    return pass_index > 0 and -(-key_bits // block_size) == 2


def _shuffled(
    seed: int, pass_index: int, key_bits: int, block_size: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """An ordinary pass: shuffle, cut into equal blocks. ``(perm, edges)``."""
    rng = np.random.Generator(np.random.SFC64([seed, pass_index]))
    perm = np.arange(key_bits, dtype=np.int32)
    rng.shuffle(perm)
    edges = np.append(np.arange(0, key_bits, block_size, dtype=np.int64), key_bits)
    return perm, edges


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
    """Tunable knobs of the block schedule.

    Block size of pass 1 is ``2**ceil(a)`` with ``a = log2(1/qber) - 0.5`` (as in the
    published "opt. (8)" schedule), pass 2 ``second_block_factor`` times that but at least
    ``second_block_min``, pass 3 ``third_block_size``, later passes half the key (the
    cheapest check for the few errors left). Sizes never shrink and never exceed half the
    key.

    Pass 2 is where this departs from opt. (8), which uses ``2**ceil((a + 12) / 2)`` (512
    at 2 % QBER, 8x pass 1). After pass 1 the errors left sit in pairs inside pass-1
    blocks, and each pair is found by a chain of searches that alternate between passes 1
    and 2, one after the other; with large pass-2 blocks few chains run at once and the
    longest one sets the number of round trips. Blocks of twice the pass-1 size start
    many more chains: at 2 % QBER on 10^5-bit keys 150 round trips instead of 720, for
    about 1 % more disclosure (measured with scripts/bench_cascade.py;
    ``second_block_factor=8`` gives opt. (8)'s 512 at 2 %).
    """

    passes: int = 14
    second_block_factor: int = 2
    second_block_min: int = 64
    third_block_size: int = 4096
    #: Seconds to wait for each message from the peer before giving up with ChannelError.
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.passes <= wire.MAX_PASSES:
            raise ValueError(f"passes must be in 1..{wire.MAX_PASSES}")
        if min(self.second_block_factor, self.second_block_min, self.third_block_size) < 1:
            raise ValueError("block sizes must be positive")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    def block_sizes(self, key_bits: int, qber: float) -> tuple[int, ...]:
        """Top-level block size of every pass for a key of ``key_bits`` bits."""
        alpha = math.log2(1.0 / max(qber, _MIN_QBER)) - 0.5
        half = max(1, (key_bits + 1) // 2)
        first = 2 ** math.ceil(alpha)
        second = max(self.second_block_factor * first, self.second_block_min)
        wanted = [first, second, self.third_block_size]
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
    range parity in O(1). Tables of the shuffled passes are built when their ``PASS``
    arrives (they will be searched), those of the half-key passes on the first query that
    needs them (usually none)."""

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
                    answer = self._answer_pass(wire.decode_pass(message), start, prefix)
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

    def _answer_pass(
        self, request: wire.PassRequest, start: wire.Start, prefix: npt.NDArray[np.uint8]
    ) -> Bits:
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
            # Searches will query this pass: build its table now, from the same shuffle.
            perm, edges = _shuffled(start.seed, index, n, size)
            table = self._table(index, perm, prefix)
            parities = table[edges[1:]] ^ table[edges[:-1]]
        return parities[:-1] if request.omit_last else parities

    def _halves_source(self, start: wire.Start) -> npt.NDArray[np.uint64]:
        if self._halves is None:
            self._halves = _halves_source(start.seed, self._key.size)
        return self._halves

    def _ensure_table(self, index: int, seed: int, prefix: npt.NDArray[np.uint8]) -> None:
        if not self._tabled[index]:
            perm, _ = pass_layout(seed, index, self._key.size, self._block_sizes[index])
            self._table(index, perm, prefix)

    def _table(
        self, index: int, perm: npt.NDArray[np.int32], prefix: npt.NDArray[np.uint8]
    ) -> Bits:
        """Fill and return row ``index`` of ``prefix``: prefix parities of the permuted key."""
        table: Bits = prefix[index]
        table[0] = 0
        np.bitwise_xor.accumulate(self._key[perm], out=table[1:])
        self._tabled[index] = True
        return table


class _Abort(ChannelError):
    """A protocol violation with a specific reason code for the peer."""

    def __init__(self, reason: wire.AbortReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _reason_of(exc: ChannelError) -> wire.AbortReason:
    return exc.reason if isinstance(exc, _Abort) else wire.AbortReason.MALFORMED


# Rows of a search-state array, one column per running binary search: the pass and block
# searched, the current range [start, end) in the pass's permuted order, Alice's parity
# of that range, its heap node number, the tree-cache slot of the block's node 0, and
# where the block's snapshot prefix starts (minus the block start) in _Bob._snapshot.
_PASS, _BLOCK, _START, _END, _ALICE, _NODE, _SLOT0, _SHIFT = range(8)
_ROWS = 8


class _Bob:
    """The driving side. State per pass ``j``: the permutation, the block of every key bit,
    the block edges, Alice's block parities and Bob's current block parities; plus the
    tree cache of every sub-block parity Alice has revealed and the running searches."""

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
        self._halves_rows = [
            index for index, size in enumerate(self._sizes) if _is_halves(index, self._n, size)
        ]
        narrow = len(self._sizes) - len(self._halves_rows)
        # Rows are filled as needed: np.empty leaves untouched rows uncommitted.
        self._perm = np.empty((len(self._sizes), self._n), dtype=np.int32)
        self._block_of = np.empty((narrow, self._n), dtype=np.int32)
        self._edges: list[_IntArray] = []
        self._has_perm: list[bool] = []
        self._halves: npt.NDArray[np.uint64] | None = None
        self._alice_parity: list[Bits] = []
        self._bob_parity: list[Bits] = []
        # Half-key passes come last; their parities are rows of one array (views in
        # _bob_parity) so that a fix updates all of them in one step.
        self._halves_parity = np.zeros((len(self._halves_rows), 2), dtype=np.uint8)
        self._halves_shifts = np.array(self._halves_rows, dtype=np.uint64)
        self._fixed = np.zeros(self._n, dtype=bool)  # scratch for _holds_any
        self._ever_fixed = np.zeros(self._n, dtype=bool)  # bits corrected so far
        self._snapshot = _Buffer()
        self._disclosed = 0
        self._exchanges = 0
        self._corrected = 0

    def run(self) -> tuple[Bits, CascadeStats]:
        started = time.perf_counter()
        try:
            self._link.send(wire.encode_start(self._n, self._seed, len(self._sizes)))
            self._start_passes()
            self._resolve(_TreeCache(self._edges))
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

    def _start_passes(self) -> None:
        """Ask for the top-level block parities of every pass in one round trip.

        Cascade discloses every pass's block parities whatever happens, and Alice's never
        change, so asking for all of them first costs nothing and lets searches of
        several passes run at the same time.
        """
        for index, size in enumerate(self._sizes):
            if _is_halves(index, self._n, size):
                if self._halves is None:
                    self._halves = _halves_source(self._seed, self._n)
                upper = _upper_half(self._halves, index)
                self._edges.append(_halves_edges(upper))
                row = self._halves_parity[len(self._bob_parity) - len(self._block_of)]
                row[:] = _halves_parities(self._key, upper)
                self._bob_parity.append(row)
                self._has_perm.append(False)
            else:
                perm, edges = _shuffled(self._seed, index, self._n, size)
                self._perm[index] = perm
                # block_of[i]: the block holding key bit i.
                self._block_of[index, perm] = np.arange(self._n, dtype=np.int32) // size
                self._edges.append(edges)
                self._bob_parity.append(_block_parities(self._key[perm], edges))
                self._has_perm.append(True)
            self._link.send(wire.encode_pass(index, size, omit_last=index > 0))
        for index, edges in enumerate(self._edges):
            alice = self._receive_parities(edges.size - 1 - (index > 0))
            if index > 0:  # the last block follows from the whole-key parity of pass 1
                whole_key = int(np.bitwise_xor.reduce(self._alice_parity[0]))
                alice = np.append(alice, whole_key ^ int(np.bitwise_xor.reduce(alice)))
            self._alice_parity.append(alice.astype(np.uint8))
        self._alice_halves = np.array(
            [self._alice_parity[index] for index in self._halves_rows], dtype=np.uint8
        ).reshape(-1, 2)

    def _ensure_perm(self, index: int) -> None:
        if not self._has_perm[index]:
            assert self._halves is not None  # only half-key passes lack a permutation
            self._perm[index] = _halves_perm(_upper_half(self._halves, index))
            self._has_perm[index] = True

    def _resolve(self, tree: _TreeCache) -> None:
        """Search odd blocks until every pass has only even blocks.

        All running searches move down their trees in lock-step, one level (one round
        trip) at a time; new searches join as soon as a fix makes a block odd. A search
        compares Alice's parities with a snapshot of Bob's key taken when it started,
        which stays exact for its current range until a fix lands there; the fixes of one
        step are applied together and every search whose range holds one of them stops
        (its block is searched again if it is still odd). So every search ends on a bit
        whose value differs from Alice's and each fix removes a real error, even where
        searches overlap.
        """
        running = np.empty((_ROWS, 0), dtype=np.int64)
        changed = True
        while True:
            if changed:
                running = np.concatenate((running, self._start_searches(running, tree)), axis=1)
            if running.shape[1] == 0:
                return
            running, finished = self._descend(running, tree)
            changed = finished.shape[1] > 0
            if changed:
                errors = np.unique(self._perm[finished[_PASS], finished[_START]])
                self._correct(errors)
                running = running[:, ~self._holds_any(running, errors)]

    def _start_searches(self, running: _IntArray, tree: _TreeCache) -> _IntArray:
        """State columns for the odd blocks to start searching now (maybe none).

        The order is a sequential Cascade's, smallest blocks first, relaxed only where the
        two orders would rarely differ. An odd block of pass 1 always starts. One of pass
        2 waits while the running pass-1 searches are expected to fix more than
        ``_PRESSURE`` of its bits (the sum over those searches of overlap / range size),
        since such a fix may make it even: at the start that holds every pass-2 block back
        until pass 1 is done, later it lets the independent chains of corrections run
        side by side. Pass 3 waits until no pass-1 or pass-2 search runs, a half-key
        block until no search runs at all (it overlaps everything).
        """
        picked: list[_IntArray] = []
        lower = np.empty((_ROWS, 0), dtype=np.int64)
        for index in range(len(self._block_of)):
            odd = self._odd_blocks(index, running)
            if index >= _EARLY_PASSES:
                # The third pass: only once passes 1 and 2 have no search running.
                if odd.size and not picked and not (running[_PASS] < index).any():
                    picked.append(self._columns(index, odd, tree))
                if odd.size or picked:
                    return self._stack(picked)
                continue
            if odd.size and lower.shape[1]:
                odd = odd[self._pressure(index, lower)[odd] < _PRESSURE]
            if odd.size:
                picked.append(self._columns(index, odd, tree))
                lower = np.concatenate((lower, picked[-1]), axis=1)
            lower = np.concatenate((lower, running[:, running[_PASS] == index]), axis=1)
        if picked or running.shape[1] or not self._halves_rows:
            return self._stack(picked)
        odd_rows = np.flatnonzero((self._halves_parity != self._alice_halves).any(axis=1))
        if odd_rows.size:
            index = self._halves_rows[int(odd_rows[0])]
            self._ensure_perm(index)
            picked.append(self._columns(index, self._odd_blocks(index, running), tree))
        return self._stack(picked)

    def _odd_blocks(self, index: int, running: _IntArray) -> _IntArray:
        """Blocks of pass ``index`` whose parities differ and that no running search is on."""
        differ = self._bob_parity[index] != self._alice_parity[index]
        if running.shape[1]:
            differ[running[_BLOCK, running[_PASS] == index]] = False
        odd: _IntArray = np.flatnonzero(differ)
        return odd

    @staticmethod
    def _stack(columns: list[_IntArray]) -> _IntArray:
        return np.concatenate([np.empty((_ROWS, 0), dtype=np.int64), *columns], axis=1)

    def _pressure(self, index: int, searches: _IntArray) -> npt.NDArray[np.float64]:
        """Expected number of fixes ``searches`` will make in each block of pass ``index``."""
        starts, ends = searches[_START], searches[_END]
        lengths = ends - starts
        members = self._perm[np.repeat(searches[_PASS], lengths), _ranges(starts, ends)]
        weights = np.repeat(1.0 / lengths, lengths)
        blocks = self._edges[index].size - 1
        expected = np.bincount(self._block_of[index, members], weights=weights, minlength=blocks)
        return np.asarray(expected, dtype=np.float64)

    def _columns(self, index: int, blocks: _IntArray, tree: _TreeCache) -> _IntArray:
        """New search-state columns for ``blocks`` of pass ``index``, with their snapshot."""
        edges = self._edges[index]
        starts, ends = edges[blocks], edges[blocks + 1]
        lengths = ends - starts
        bits = self._key[self._perm[index, _ranges(starts, ends)]]
        prefix = np.zeros(bits.size + 1, dtype=np.uint8)
        np.bitwise_xor.accumulate(bits, out=prefix[1:])
        offset = self._snapshot.append(prefix)
        state = np.empty((_ROWS, blocks.size), dtype=np.int64)
        state[_PASS] = index
        state[_BLOCK] = blocks
        state[_START] = starts
        state[_END] = ends
        state[_ALICE] = self._alice_parity[index][blocks]
        state[_NODE] = 1
        state[_SLOT0] = tree.bases(index, blocks)
        state[_SHIFT] = offset + np.cumsum(lengths) - lengths - starts
        return state

    def _descend(self, state: _IntArray, tree: _TreeCache) -> tuple[_IntArray, _IntArray]:
        """Move every search down its tree: through nodes whose parity Alice has already
        revealed, for free, then one level more with one round trip for all the rest.
        Returns ``(still running, finished on one bit)``."""
        finished: list[_IntArray] = []
        snapshot = self._snapshot.array
        asked = False
        while True:
            done = state[_END] - state[_START] == 1
            if done.any():
                finished.append(state[:, done])
                state = state[:, ~done]
            if asked or state.shape[1] == 0:
                return state, self._stack(finished)
            mid = (state[_START] + state[_END]) >> 1
            slots = state[_SLOT0] + 2 * state[_NODE]
            left = tree.lookup(slots).astype(np.int64)
            known = left < 2
            if not known.any():
                self._link.send(wire.encode_query(state[_PASS], state[_START], mid))
                left = self._receive_parities(mid.size).astype(np.int64)
                tree.store(slots, left, state[_ALICE])
                known[:] = asked = True
            step = state if asked else state[:, known]
            if not asked:
                mid, left = mid[known], left[known]
            shift, starts = step[_SHIFT], step[_START]
            go_left = left != (snapshot[shift + mid] ^ snapshot[shift + starts])
            step[_NODE] = 2 * step[_NODE] + ~go_left
            step[_ALICE] = np.where(go_left, left, step[_ALICE] ^ left)
            step[_START] = np.where(go_left, starts, mid)
            step[_END] = np.where(go_left, mid, step[_END])
            if not asked:
                state[:, known] = step

    def _holds_any(self, state: _IntArray, errors: _IntArray) -> npt.NDArray[np.bool_]:
        """For each search, whether its current range holds one of the key bits ``errors``."""
        lengths = state[_END] - state[_START]
        members = self._perm[np.repeat(state[_PASS], lengths), _ranges(state[_START], state[_END])]
        self._fixed[errors] = True
        hit = self._fixed[members]
        self._fixed[errors] = False
        owners = np.repeat(np.arange(lengths.size), lengths)
        held: npt.NDArray[np.bool_] = np.bincount(owners[hit], minlength=lengths.size) > 0
        return held

    def _correct(self, errors: _IntArray) -> None:
        """Flip Bob's bits at ``errors`` and the parity of every block holding one.

        A fix makes a bit equal to Alice's, so with parities of one real key no bit is
        ever fixed twice. A second fix means the parities contradict each other (a
        tampered answer, caught by authentication only at the next checkpoint): stop,
        rather than flip bits back and forth for ever.
        """
        if self._ever_fixed[errors].any():
            raise ChannelError("cascade: Alice's parities contradict each other")
        self._ever_fixed[errors] = True
        self._key[errors] ^= 1
        self._corrected += errors.size
        for index, block_of in enumerate(self._block_of):
            flips = np.bincount(block_of[errors], minlength=self._bob_parity[index].size)
            self._bob_parity[index] ^= (flips & 1).astype(np.uint8)
        if self._halves is not None:
            # Bit j of the xor of the fixed bits' words: parity of the fixes in pass j's
            # upper half.
            word = np.bitwise_xor.reduce(self._halves[errors])
            in_upper = ((word >> self._halves_shifts) & np.uint64(1)).astype(np.uint8)
            self._halves_parity[:, 1] ^= in_upper
            self._halves_parity[:, 0] ^= in_upper ^ np.uint8(errors.size & 1)


class _Buffer:
    """A growable uint8 array (amortised doubling) for the searches' snapshot prefixes."""

    def __init__(self) -> None:
        self._data = np.empty(1 << 16, dtype=np.uint8)
        self._size = 0

    @property
    def array(self) -> Bits:
        return self._data

    def append(self, values: Bits) -> int:
        """Store ``values``; returns the offset they start at."""
        offset = self._size
        end = offset + values.size
        if end > self._data.size:
            grown = np.empty(max(end, 2 * self._data.size), dtype=np.uint8)
            grown[:offset] = self._data[:offset]
            self._data = grown
        self._data[offset:end] = values
        self._size = end
        return offset


class _TreeCache:
    """Alice's parity of every search-tree node she has revealed (or that follows from one).

    The binary search splits a range ``[start, end)`` at ``(start + end) // 2``, so the
    nodes of one block's tree have heap numbers (root 1, children ``2h`` and ``2h + 1``)
    below ``2 * 2**ceil(log2(block size))``: each block gets that many slots of one flat
    array, pass after pass. Slots hold parity + 1, so the zero pages ``np.zeros`` hands
    out mean "unknown": slots of blocks never searched (most blocks of the late half-key
    passes) are never touched and cost no memory.
    """

    def __init__(self, edges: list[_IntArray]) -> None:
        widths = [2 << (int(np.diff(e).max()) - 1).bit_length() for e in edges]
        spans = [w * (e.size - 1) for w, e in zip(widths, edges, strict=True)]
        self._offset = np.cumsum([0, *spans[:-1]], dtype=np.int64).tolist()
        self._width = widths
        self._state = np.zeros(sum(spans), dtype=np.uint8)

    def bases(self, index: int, blocks: _IntArray) -> _IntArray:
        """Slot of node 0 of each block of pass ``index``: node ``h`` is at ``base + h``."""
        bases: _IntArray = self._offset[index] + blocks * self._width[index]
        return bases

    def lookup(self, slots: _IntArray) -> Bits:
        """Alice's parity at each slot, 255 where it is not known."""
        parities: Bits = self._state[slots] - np.uint8(1)
        return parities

    def store(self, left_slots: _IntArray, left: _IntArray, parent: _IntArray) -> None:
        """Record revealed left halves and the right halves they imply (parent xor left)."""
        self._state[left_slots] = left + 1
        self._state[left_slots + 1] = (left ^ parent) + 1


def _ranges(starts: _IntArray, ends: _IntArray) -> _IntArray:
    """Concatenation of ``arange(start, end)`` for every (non-empty) range."""
    lengths = ends - starts
    offsets = np.cumsum(lengths) - lengths
    positions: _IntArray = np.arange(int(lengths.sum()), dtype=np.int64)
    positions += np.repeat(starts - offsets, lengths)
    return positions
