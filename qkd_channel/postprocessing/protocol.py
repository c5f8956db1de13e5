"""The whole post-processing of one block of raw key, as two drivers that talk to each other.

``run_alice`` and ``run_bob`` run in two threads or two processes (the two KMEs of a link),
joined by an :class:`~qkd_channel.postprocessing.authentication.AuthenticatedChannel`. The
drivers refuse an unauthenticated channel: without authentication QKD has no security.
Steps and who speaks::

    Alice: BLOCK_START (version, key design, block ID)
    sifting: Bob DETECTIONS, Alice SIFT
    estimation: [Alice SAMPLE,] Bob DISCLOSURE, Alice ESTIMATE -> abort if QBER > threshold
                (SAMPLE only in the signal-sampled design)       or nothing is certified
    error correction: Cascade (Bob asks, Alice answers)
    verification: Alice VERIFY, Bob VERDICT                    -> abort if tags differ
    length: both compute l from the decoy bounds, Cascade's disclosure and the tag
    privacy amplification: Alice PA_SEED (l, Toeplitz seed)

The authenticated channel checkpoints twice: after estimation (so a tampered run stops
before the expensive part) and at the very end; no key leaves a driver before the final
checkpoint has verified everything both ends received. Every decision that ends a block
(QBER, no secret key left, verification) is computed by both ends from the same
authenticated numbers, so both stop at the same point without
extra messages; a party that hits a malformed message sends ``ABORT`` so its peer stops
too. An aborted block delivers nothing: the drivers raise ``LinkAborted`` (or
``ChannelError`` when the channel itself failed) and return no key.

After a successful block the authentication pool is refilled first: the leading
``pool.deficit`` bytes of the new key go to
:meth:`~qkd_channel.postprocessing.authentication.AuthenticationKeyPool.replenish` at both
ends (Wegman-Carter key recycling), and only the rest is delivered. ``BlockResult.key`` is
that rest, identical at both ends, and ``block_id`` (chosen by Alice) names it at both,
so the KMEs can derive the same key IDs from it.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError, EstimationAborted, LinkAborted
from qkd_channel.link.finite_key import (
    LIM_EPSILON_TERMS,
    FiniteKeyBounds,
    KeyDesign,
    binary_entropy,
)
from qkd_channel.link.records import AliceRecord, BobRecord
from qkd_channel.postprocessing import messages
from qkd_channel.postprocessing.authentication import AuthenticatedChannel, Role
from qkd_channel.postprocessing.cascade import CascadeConfig, reconcile_alice, reconcile_bob
from qkd_channel.postprocessing.estimation import (
    Estimate,
    EstimationSettings,
    estimate_alice,
    estimate_bob,
    secret_key_length,
)
from qkd_channel.postprocessing.messages import AbortReason, Kind, Writer
from qkd_channel.postprocessing.privacy import RandomBytes, amplify_alice, amplify_bob
from qkd_channel.postprocessing.sifting import SiftedKey, sift_alice, sift_bob
from qkd_channel.postprocessing.verification import VerificationResult, verify_alice, verify_bob

__all__ = [
    "PROTOCOL_VERSION",
    "BlockResult",
    "BlockStats",
    "PostProcessingConfig",
    "run_alice",
    "run_bob",
]

PROTOCOL_VERSION = 2
Bits = npt.NDArray[np.uint8]

#: How BLOCK_START names the key design, so that two ends configured differently stop at
#: once instead of misreading each other's estimation messages.
_DESIGN_CODES = {KeyDesign.EFFICIENT: 1, KeyDesign.SIGNAL_SAMPLED: 2}


@dataclass(frozen=True)
class PostProcessingConfig:
    """Settings both ends must share (the KMEs of a link load the same values)."""

    estimation: EstimationSettings
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    #: Seconds to wait for each message of the peer.
    timeout: float = 60.0


@dataclass(frozen=True)
class BlockStats:
    """Public figures of one successful block (the same at both ends)."""

    block_id: uuid.UUID
    design: KeyDesign
    detections: int  #: Bob's detections before sifting
    sifted_bits: int  #: matched-basis detections (Z and X)
    sample_bits: int  #: Z bits sacrificed for the QBER estimate (signal-sampled design)
    qber: float  #: estimated QBER: the sample's, or the test basis's (efficient design)
    phase_error_bound: float  #: phi_Z, from the decoy bounds
    vacuum_events: float  #: s_Z0 lower bound (0 in the signal-sampled design)
    single_photon_events: float  #: s_Z1 lower bound
    reconciled_bits: int  #: key length entering error correction
    disclosed_ec_bits: int  #: parity bits Cascade disclosed
    verification_bits: int  #: public verification tag length
    secret_bits: int  #: privacy-amplified key length
    auth_key_bits: int  #: of those, fed back to the authentication pool
    delivered_bits: int  #: handed to the key store
    epsilon_sec: float
    epsilon_cor: float
    elapsed_seconds: float = field(compare=False)

    @property
    def bounds(self) -> FiniteKeyBounds:
        """What the block's counts certified (the input of the key-length formula)."""
        return FiniteKeyBounds(
            vacuum_events=self.vacuum_events,
            single_photon_events=self.single_photon_events,
            phase_error_rate=self.phase_error_bound,
            epsilon_terms=LIM_EPSILON_TERMS + (1 if self.sample_bits else 0),
        )

    @property
    def epsilon(self) -> float:
        """The block's security parameter: ``eps_sec``-secret plus ``eps_cor``-correct."""
        return self.epsilon_sec + self.epsilon_cor

    @property
    def efficiency(self) -> float:
        """Cascade disclosure over ``n h(QBER)`` with the *estimated* QBER."""
        limit = self.reconciled_bits * binary_entropy(self.qber)
        return self.disclosed_ec_bits / limit if limit else float("inf")


@dataclass(frozen=True)
class BlockResult:
    """The key one block produced and what it cost."""

    key: bytes = field(repr=False)
    stats: BlockStats


def run_alice(
    channel: AuthenticatedChannel,
    record: AliceRecord,
    config: PostProcessingConfig,
    *,
    random_bytes: RandomBytes = os.urandom,
) -> BlockResult:
    """Alice's side: she chooses the block ID, the sample, and every hashing seed."""
    _require_role(channel, Role.ALICE)
    started = time.perf_counter()
    timeout = config.timeout
    rng = np.random.default_rng(int.from_bytes(random_bytes(32), "big"))
    block_id = uuid.UUID(bytes=random_bytes(16), version=4)
    try:
        design = _DESIGN_CODES[config.estimation.design]
        start = Writer(Kind.BLOCK_START).u8(PROTOCOL_VERSION).u8(design).raw(block_id.bytes)
        channel.send(start.build())
        sifted = sift_alice(channel, record, timeout=timeout)
        assert sifted.detections_per_class is not None  # always set at Alice
        estimate = estimate_alice(
            channel,
            sifted,
            config.estimation,
            pulses=_pulses_per_class(record),
            clicks=sifted.detections_per_class,
            rng=rng,
            timeout=timeout,
        )
        channel.checkpoint(timeout)
        cascade = reconcile_alice(channel, estimate.key, qber=estimate.qber, config=config.cascade)
        verified = verify_alice(channel, estimate.key, timeout=timeout, random_bytes=random_bytes)
        length = _final_length(estimate, cascade.disclosed_bits, verified, config)
        final = amplify_alice(channel, estimate.key, length, random_bytes=random_bytes)
        channel.checkpoint(timeout)
    except ChannelError:
        messages.send_abort(channel, AbortReason.PROTOCOL)
        raise
    return _deliver(
        channel,
        block_id,
        sifted,
        estimate,
        cascade.disclosed_bits,
        verified,
        final,
        started,
        config,
    )


def run_bob(
    channel: AuthenticatedChannel,
    record: BobRecord,
    config: PostProcessingConfig,
) -> BlockResult:
    """Bob's side: he announces detections, discloses samples and drives Cascade."""
    _require_role(channel, Role.BOB)
    started = time.perf_counter()
    timeout = config.timeout
    try:
        reader = messages.receive(channel, Kind.BLOCK_START, timeout)
        version = reader.u8()
        design = reader.u8()
        block_id = uuid.UUID(bytes=reader.raw(16))
        reader.end()
        if version != PROTOCOL_VERSION:
            raise ChannelError("unsupported post-processing protocol version")
        if design != _DESIGN_CODES[config.estimation.design]:
            raise ChannelError("the two ends are configured for different key designs")
        sifted = sift_bob(channel, record, timeout=timeout)
        estimate = estimate_bob(channel, sifted, config.estimation, timeout=timeout)
        channel.checkpoint(timeout)
        corrected, cascade = reconcile_bob(
            channel, estimate.key, qber=estimate.qber, config=config.cascade
        )
        verified = verify_bob(channel, corrected, timeout=timeout)
        length = _final_length(estimate, cascade.disclosed_bits, verified, config)
        final, announced = amplify_bob(channel, corrected, timeout=timeout)
        if announced != length:
            messages.send_abort(channel, AbortReason.LENGTH_MISMATCH)
            raise LinkAborted("the two ends computed different final key lengths")
        channel.checkpoint(timeout)
    except ChannelError:
        messages.send_abort(channel, AbortReason.PROTOCOL)
        raise
    return _deliver(
        channel,
        block_id,
        sifted,
        estimate,
        cascade.disclosed_bits,
        verified,
        final,
        started,
        config,
    )


def _pulses_per_class(record: AliceRecord) -> tuple[float, float, float]:
    sent = np.bincount(record.intensities, minlength=3)
    return (float(sent[0]), float(sent[1]), float(sent[2]))


def _require_role(channel: AuthenticatedChannel, role: Role) -> None:
    if not isinstance(channel, AuthenticatedChannel):
        raise TypeError("post-processing needs an AuthenticatedChannel")
    if channel.role is not role:
        raise ValueError(f"this driver is for {role.name}, the channel is {channel.role.name}")


def _final_length(
    estimate: Estimate, disclosed: int, verified: VerificationResult, config: PostProcessingConfig
) -> int:
    """Secure key length, rounded down to whole bytes; aborts when nothing is left."""
    length = secret_key_length(
        estimate,
        leak_ec=disclosed,
        leak_verify=verified.disclosed_bits,
        epsilon_sec=config.estimation.epsilon_sec,
    )
    length -= length % 8
    if length == 0:
        raise EstimationAborted("no secret key left in this block", qber=estimate.qber)
    return length


def _deliver(
    channel: AuthenticatedChannel,
    block_id: uuid.UUID,
    sifted: SiftedKey,
    estimate: Estimate,
    disclosed: int,
    verified: VerificationResult,
    final: Bits,
    started: float,
    config: PostProcessingConfig,
) -> BlockResult:
    key = np.packbits(final).tobytes()
    refill = min(channel.pool.deficit, len(key))
    channel.pool.replenish(key[:refill])
    delivered = key[refill:]
    stats = BlockStats(
        block_id=block_id,
        design=config.estimation.design,
        detections=sifted.detections,
        sifted_bits=len(sifted),
        sample_bits=estimate.sample_size,
        qber=estimate.qber,
        phase_error_bound=estimate.phase_error_rate,
        vacuum_events=estimate.vacuum_events,
        single_photon_events=estimate.single_photon_events,
        reconciled_bits=len(estimate.key),
        disclosed_ec_bits=disclosed,
        verification_bits=verified.disclosed_bits,
        secret_bits=len(final),
        auth_key_bits=8 * refill,
        delivered_bits=8 * len(delivered),
        epsilon_sec=config.estimation.epsilon_sec,
        epsilon_cor=verified.failure_probability,
        elapsed_seconds=time.perf_counter() - started,
    )
    return BlockResult(key=delivered, stats=stats)
