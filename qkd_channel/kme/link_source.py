"""The KME's key source: a simulated QKD link and its post-processing, between two KMEs.

:class:`SimulatedLinkSource` runs at both ends of a link. End A (Alice) listens on a link
port, end B (Bob) dials it; the two KMEs then run block after block, each end yielding
the same :class:`~qkd_channel.kme.source.KeyBlock`\\ s for its key buffer.

Two TCP connections join the ends, both under mutual TLS with the KME certificates when
an ``ssl.SSLContext`` is given:

* the **quantum channel** stand-in. The photons are simulated at end A (:func:`simulate`
  needs both ends' random choices and the eavesdropper in one place), and what Bob's
  detectors would have measured, his :class:`~qkd_channel.link.records.BobRecord`
  (detected pulse numbers, his bases and bits), is sent to B over this connection. It
  plays the part of the fibre, not of the classical channel: it carries nothing of
  Alice's, and nothing on it is trusted beyond what a detector would see;
* the **classical channel** of the post-processing, wrapped in the Wegman-Carter
  :class:`~qkd_channel.postprocessing.authentication.AuthenticatedChannel` keyed by the
  pre-shared authentication key both ends were given (``qkd-kme auth-key``). TLS adds
  transport privacy only; the protocol's authentication is the Wegman-Carter layer.

Each block is paced to at least ``duration_s / rate_multiplier`` of wall time (end A
holds its key back until then, and B cannot run ahead of A), where ``duration_s`` is how
long the link needs to send the block's pulses, so a KME fills its buffer at the link's
rate (or faster, for tests and demos). Blocks are sent and processed one after another:
when post-processing is slower than the link, it sets the pace. A block the post-processing
abandons (QBER too high, no secret key left, verification failed) is logged and skipped.
A lost connection or a message failing authentication abandons the run in progress (no
key from it) and the ends connect again, with backoff, continuing the same authentication
pool: a key retired by one end but never seen by the other is skipped, never reused.
Each end keeps that pool on disk (:mod:`~qkd_channel.postprocessing.pool_store`), so
restarting the KMEs resumes the link with the same pre-shared key too. Only an exhausted
pool ends the source (an attacker who keeps corrupting runs, or two pools whose contents
no longer match, gets there): then both ends need a fresh pre-shared key.

TLS checks only that the peer holds a certificate from the link's CA; who the peer is,
as far as the protocol's security goes, is settled by the Wegman-Carter key alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, TypeVar

import numpy as np

from qkd_channel.errors import (
    AuthenticationFailed,
    AuthenticationKeyExhausted,
    ChannelError,
    LinkAborted,
)
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.source import KeyBlock
from qkd_channel.link import (
    BRISTOL_CLAVIS2,
    AliceRecord,
    BobRecord,
    Eavesdropper,
    LinkParameters,
    simulate,
)
from qkd_channel.link.presets import LAB_LINK
from qkd_channel.postprocessing import (
    AuthenticatedChannel,
    AuthenticationKeyPool,
    BlockResult,
    EstimationSettings,
    PostProcessingConfig,
    Role,
    TCPChannel,
    TCPListener,
    run_alice,
    run_bob,
)
from qkd_channel.postprocessing.pool_store import PoolStore

__all__ = [
    "LAB_LINK",
    "LINK_PRESETS",
    "LinkSettings",
    "SimulatedLinkSource",
    "decode_bob_record",
    "encode_bob_record",
    "read_auth_key",
]

log = logging.getLogger(__name__)


#: Link descriptions selectable by name (``qkd-kme serve --link-preset``).
LINK_PRESETS: dict[str, LinkParameters] = {"bristol": BRISTOL_CLAVIS2, "lab": LAB_LINK}

_QUANTUM_MAGIC = b"QCH1"
_HEADER = struct.Struct(">4sQ")
_HELLO = {b"quantum": "quantum", b"classical": "classical"}
_R = TypeVar("_R", AliceRecord, BobRecord)
_POLL = 0.5  # seconds between checks for shutdown while waiting for the peer
_RECONNECT_MIN_S = 0.5  # first wait before reconnecting a lost link; doubles up to the max
_RECONNECT_MAX_S = 30.0


def encode_bob_record(record: BobRecord) -> bytes:
    """Bob's detections as one quantum-channel frame: magic, count, indices, bases, bits."""
    count = len(record.indices)
    return b"".join(
        (
            _HEADER.pack(_QUANTUM_MAGIC, count),
            np.asarray(record.indices, dtype=">i8").tobytes(),
            np.asarray(record.bases, dtype=np.uint8).tobytes(),
            np.asarray(record.bits, dtype=np.uint8).tobytes(),
        )
    )


def decode_bob_record(frame: bytes) -> BobRecord:
    """Inverse of :func:`encode_bob_record`; ``ChannelError`` on any malformed frame."""
    if len(frame) < _HEADER.size:
        raise ChannelError("malformed quantum-channel frame")
    magic, count = _HEADER.unpack_from(frame)
    if magic != _QUANTUM_MAGIC or len(frame) != _HEADER.size + 10 * count:
        raise ChannelError("malformed quantum-channel frame")
    body = memoryview(frame)[_HEADER.size :]
    indices = np.frombuffer(body[: 8 * count], dtype=">i8").astype(np.int64)
    bases = np.frombuffer(body[8 * count : 9 * count], dtype=np.uint8).copy()
    bits = np.frombuffer(body[9 * count :], dtype=np.uint8).copy()
    if count and (
        bases.max() > 1 or bits.max() > 1 or indices.min() < 0 or np.any(np.diff(indices) <= 0)
    ):
        raise ChannelError("malformed quantum-channel frame")
    return BobRecord(indices=indices, bases=bases, bits=bits)


@dataclass(frozen=True)
class LinkSettings:
    """What both ends agree on: the link, the block size and (end A only) the pacing."""

    link: LinkParameters
    pulses_per_block: int
    rate_multiplier: float = 1.0  #: >1 runs the link faster than real time
    eavesdropper: Eavesdropper | None = None  #: on the simulated fibre, at end A
    timeout: float = 60.0  #: per post-processing message

    def __post_init__(self) -> None:
        if self.pulses_per_block <= 0:
            raise ValueError("pulses_per_block must be positive")
        if not self.rate_multiplier > 0:
            raise ValueError("rate_multiplier must be positive")


class SimulatedLinkSource:
    """A :class:`~qkd_channel.kme.source.KeySource` fed by a simulated link between two KMEs.

    End A gives ``listen`` (host, port) and a server ``ssl_context`` (which should demand
    the peer's client certificate); end B gives ``peer`` and a client ``ssl_context``.
    ``auth_key`` is the pre-shared Wegman-Carter key, the same bytes at both ends.
    ``auth_state`` is where this end keeps its authentication pool between runs (see
    :mod:`~qkd_channel.postprocessing.pool_store`): without it, a restart with the same
    key would reuse one-time authentication keys, so only tests leave it out.
    """

    #: What the KME reports in its Status about the key this source gives it: one direct
    #: QKD link between the two KMEs (:func:`~qkd_channel.kme.source.reported_key_path`).
    key_path: ClassVar[Mapping[str, str]] = MappingProxyType({"link": "qkd"})

    def __init__(
        self,
        end: LinkEnd,
        settings: LinkSettings,
        auth_key: bytes,
        *,
        listen: tuple[str, int] | None = None,
        peer: tuple[str, int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        auth_state: Path | None = None,
    ) -> None:
        if (end is LinkEnd.A) != (listen is not None) or (end is LinkEnd.B) != (peer is not None):
            raise ValueError("end A needs listen=(host, port), end B needs peer=(host, port)")
        self._end = end
        self._settings = settings
        self._pool = (
            AuthenticationKeyPool(auth_key)
            if auth_state is None
            else PoolStore(auth_state).open_pool(auth_key)
        )
        self._listen = listen
        self._peer = peer
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._config = PostProcessingConfig(
            EstimationSettings(settings.link), timeout=settings.timeout
        )
        self._stop = threading.Event()
        self._channels: list[TCPChannel] = []
        self._listener: TCPListener | None = None
        self._exhausted = False

    async def blocks(self) -> AsyncIterator[KeyBlock]:
        """Connect to the peer end, then yield each block both ends agreed on, until the
        consumer stops or the authentication pool runs dry. A lost connection (or a failed
        authentication: an abandoned run) is retried with backoff on fresh connections;
        the pool carries on, so no authentication key is used twice. One run per
        instance."""
        if self._stop.is_set():
            raise RuntimeError("this link source has already run")
        try:
            if self._end is LinkEnd.A:
                assert self._listen is not None
                self._listener = TCPListener(*self._listen, ssl_context=self._ssl)
            delay = _RECONNECT_MIN_S
            while not self._stop.is_set():
                try:
                    quantum, classical = await asyncio.to_thread(self._connect)
                except ChannelError as exc:  # only when stopped meanwhile
                    log.info("link not connected (%s)", exc)
                    return
                async for block in self._session(quantum, classical):
                    delay = _RECONNECT_MIN_S
                    yield block
                self._close_channels()
                if self._stop.is_set() or self._exhausted:
                    return
                log.info("reconnecting the link in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, _RECONNECT_MAX_S)
        finally:
            self._close()

    async def _session(self, quantum: TCPChannel, classical: TCPChannel) -> AsyncIterator[KeyBlock]:
        """Blocks over one pair of connections, until they fail."""
        channel = AuthenticatedChannel(
            classical, self._pool, Role.ALICE if self._end is LinkEnd.A else Role.BOB
        )
        run_block = self._alice_block if self._end is LinkEnd.A else self._bob_block
        while True:
            started = time.monotonic()
            try:
                result, pace = await asyncio.to_thread(run_block, quantum, channel)
            except AuthenticationKeyExhausted as exc:
                log.error("link stopped (%s); a fresh pre-shared key is needed", exc)
                self._exhausted = True
                return
            except AuthenticationFailed as exc:
                # Tampering, or pools out of step: the run is abandoned (its raw key never
                # released); retrying burns pool keys, so a persistent cause ends in
                # exhaustion, never in reuse.
                log.error("link message failed authentication (%s); run abandoned", exc)
                return
            except ChannelError as exc:
                log.warning("link connection lost (%s)", exc)
                return
            # A block's key cannot exist before the link has sent its last pulse.
            await asyncio.sleep(max(0.0, pace - (time.monotonic() - started)))
            if result is not None and result.key:
                log.info(
                    "link block %s: QBER %.4f, %d secret bits, %d delivered",
                    result.stats.block_id,
                    result.stats.qber,
                    result.stats.secret_bits,
                    result.stats.delivered_bits,
                )
                yield KeyBlock(str(result.stats.block_id), result.key)

    def _connect(self) -> tuple[TCPChannel, TCPChannel]:
        """Open (end B) or accept (end A) the quantum and the classical connection."""
        found: dict[str, TCPChannel] = {}
        while len(found) < 2:
            if self._stop.is_set():
                raise ChannelError("link source stopped")
            if self._end is LinkEnd.A:
                assert self._listener is not None
                try:
                    channel = self._listener.accept(timeout=_POLL)
                except ChannelError:
                    continue
                self._channels.append(channel)
                try:
                    name = _HELLO.get(channel.receive(timeout=self._settings.timeout))
                except ChannelError:
                    name = None
                if name is None or name in found:
                    log.warning("dropped a link connection that did not introduce itself")
                    channel.close()
                    continue
            else:
                assert self._peer is not None
                name = "quantum" if "quantum" not in found else "classical"
                try:
                    channel = TCPChannel.connect(
                        *self._peer,
                        ssl_context=self._ssl,
                        server_hostname=self._server_hostname,
                        timeout=self._settings.timeout,
                    )
                except ChannelError:
                    self._stop.wait(_POLL)  # end A not up yet
                    continue
                self._channels.append(channel)
                channel.send(name.encode())
            found[name] = channel
        log.info("link end %s connected to its peer", self._end.value)
        return found["quantum"], found["classical"]

    def _alice_block(
        self, quantum: TCPChannel, channel: AuthenticatedChannel
    ) -> tuple[BlockResult | None, float]:
        """Send one block over the simulated fibre, then post-process it as Alice."""
        settings = self._settings
        run = simulate(
            settings.link,
            settings.pulses_per_block,
            rng=np.random.default_rng(),
            eavesdropper=settings.eavesdropper,
        )
        quantum.send(encode_bob_record(run.bob))  # the fibre: Bob's detections only
        return _abandon_aborted(run_alice, channel, run.alice, self._config), (
            run.duration_s / settings.rate_multiplier
        )

    def _bob_block(
        self, quantum: TCPChannel, channel: AuthenticatedChannel
    ) -> tuple[BlockResult | None, float]:
        """Take Bob's detections off the simulated fibre, then post-process them as Bob.

        End A paces the link; B simply follows, so it adds no delay of its own.
        """
        record = decode_bob_record(quantum.receive())
        return _abandon_aborted(run_bob, channel, record, self._config), 0.0

    def _close_channels(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()

    def _close(self) -> None:
        """Unblock and release everything (also wakes a worker thread stuck in receive)."""
        self._stop.set()
        self._close_channels()
        if self._listener is not None:
            self._listener.close()


def _abandon_aborted(
    driver: Callable[[AuthenticatedChannel, _R, PostProcessingConfig], BlockResult],
    channel: AuthenticatedChannel,
    record: _R,
    config: PostProcessingConfig,
) -> BlockResult | None:
    """Run one end's driver; an abandoned block is logged (no key material) and skipped."""
    try:
        return driver(channel, record, config)
    except LinkAborted as exc:
        log.warning("link block abandoned: %s", type(exc).__name__)
        return None


def read_auth_key(path: os.PathLike[str] | str) -> bytes:
    """The pre-shared authentication key file's bytes, checked for a usable length."""
    with open(path, "rb") as handle:
        key = handle.read()
    AuthenticationKeyPool(key)  # validates: a positive multiple of 64 bytes
    return key
