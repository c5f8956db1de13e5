"""Parameter estimation and the secret-key length, from measured data only.

Both ends work on what they actually observed (never on simulator ground truth), and the
bounds come from :func:`qkd_channel.link.finite_key.certify`, the same code the analytic
model uses. What the key is depends on the :class:`~qkd_channel.link.finite_key.KeyDesign`:

**Efficient BB84** (``KeyDesign.EFFICIENT``, the default; Lim, Curty, Walenta, Xu,
Zbinden, PRA 89, 022307 (2014)). The key is every key-basis (Z) detection, of every
intensity class. Bob discloses his test-basis (X) bits, never key; Alice publishes the X
error counts per class; both ends bound the vacuum events ``s_0``, the single-photon
events ``s_1`` and their phase-error rate ``phi`` of the key. Nothing is sacrificed: the
key basis's own error rate is never estimated, it is paid for by error correction, whose
disclosure is charged bit for bit. The test basis's error rate serves only as an early
abort and to size Cascade's first pass.

**Signal key with a sacrificed sample** (``KeyDesign.SIGNAL_SAMPLED``, the first design,
kept for comparison). The key is the Z detections of signal pulses; Alice picks a
uniformly random ``sample_fraction`` of them, Bob discloses his bits there, and they leave
the key; its QBER is the abort test. The bounds are Lim-style (22 failure events, the
sample being the 22nd).

Either way the block is abandoned (``EstimationAborted``, at both ends, from the same
public numbers) when the estimated QBER exceeds the threshold or the bounds certify no
secret at all. The final length is Lim et al.'s eq. (1) with what the protocol really
disclosed::

    l = floor(s_0 + s_1 (1 - h(phi)) - leak_EC - leak_verify - 6 log2(terms / eps_sec))

``leak_verify`` is the public verification tag (128 bits), more than Lim's
``log2(2 / eps_cor)`` for the ``eps_cor`` verification achieves. Every input is public
and authenticated, so both ends compute the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError, EstimationAborted
from qkd_channel.link.finite_key import FiniteKeyBounds, KeyDesign, certify, secret_length
from qkd_channel.link.parameters import SIGNAL, LinkParameters
from qkd_channel.link.statistics import DecoyCounts
from qkd_channel.postprocessing import messages
from qkd_channel.postprocessing.channel import ClassicalChannel
from qkd_channel.postprocessing.messages import Kind, Reader, Writer
from qkd_channel.postprocessing.sifting import BASIS_X, BASIS_Z, SiftedKey

__all__ = [
    "Estimate",
    "EstimationSettings",
    "estimate_alice",
    "estimate_bob",
    "secret_key_length",
]

Bits = npt.NDArray[np.uint8]
Triple = tuple[float, float, float]

_CLASSES = 3


@dataclass(frozen=True)
class EstimationSettings:
    """Source description, protocol design and security targets shared by both ends."""

    link: LinkParameters  #: only the source settings (intensities, probabilities) are used
    design: KeyDesign = KeyDesign.EFFICIENT
    sample_fraction: float = 0.1  #: share of key candidates sacrificed (signal-sampled only)
    qber_threshold: float = 0.11  #: abort above this estimated QBER
    epsilon_sec: float = 1e-10  #: secrecy parameter of the final key

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_fraction < 1.0:
            raise ValueError("sample_fraction must lie strictly between 0 and 1")
        if not 0.0 < self.qber_threshold < 0.5:
            raise ValueError("qber_threshold must lie strictly between 0 and 0.5")
        if not 0.0 < self.epsilon_sec < 1.0:
            raise ValueError("epsilon_sec must lie strictly between 0 and 1")

    @property
    def sampled(self) -> bool:
        """Whether this design sacrifices a sample of the key for the QBER."""
        return self.design is KeyDesign.SIGNAL_SAMPLED


@dataclass(frozen=True)
class Estimate:
    """One end's view after estimation: its remaining key bits and the public figures."""

    key: Bits = field(repr=False)  #: this end's key bits (sample removed, if any)
    counts: DecoyCounts  #: public per-class counts (Z error counts left at zero: unknown)
    qber: float  #: the sample's error rate, or the test basis's (efficient design)
    sample_size: int  #: key candidates sacrificed (0 in the efficient design)
    bounds: FiniteKeyBounds  #: what the counts certify about ``key``

    @property
    def vacuum_events(self) -> float:
        """s_0: lower bound on vacuum events in the key."""
        return self.bounds.vacuum_events

    @property
    def single_photon_events(self) -> float:
        """s_1: lower bound on single-photon events in the key."""
        return self.bounds.single_photon_events

    @property
    def phase_error_rate(self) -> float:
        """phi: upper bound on the phase-error rate of the key's single-photon events."""
        return self.bounds.phase_error_rate


def secret_key_length(
    estimate: Estimate, *, leak_ec: int, leak_verify: int, epsilon_sec: float
) -> int:
    """Secure length of the privacy-amplified key (0 when nothing secret is left)."""
    return secret_length(
        estimate.bounds, leak_ec=leak_ec, leak_verify=leak_verify, epsilon_sec=epsilon_sec
    )


def _tally(classes: Bits, mask: npt.NDArray[np.bool_]) -> Triple:
    counts = np.bincount(classes[mask], minlength=_CLASSES)
    return (float(counts[0]), float(counts[1]), float(counts[2]))


def _key_mask(sifted: SiftedKey, settings: EstimationSettings) -> npt.NDArray[np.bool_]:
    mask: npt.NDArray[np.bool_] = sifted.bases == BASIS_Z
    if settings.sampled:
        mask &= sifted.classes == SIGNAL
    return mask


def _finish(
    key_bits: Bits,
    sample: npt.NDArray[np.bool_],
    sample_errors: int,
    counts: DecoyCounts,
    settings: EstimationSettings,
) -> Estimate:
    """Bounds, abort decisions and the kept key: the same at both ends."""
    sample_size = int(sample.sum())
    link = settings.link
    bounds = certify(
        counts,
        link.intensities,
        link.intensity_probabilities,
        design=settings.design,
        epsilon_sec=settings.epsilon_sec,
        sample_size=sample_size,
    )
    if settings.sampled:
        qber = sample_errors / sample_size if sample_size else 0.5
    else:
        tested = sum(counts.sifted_x)
        qber = sum(counts.errors_x) / tested if tested else 0.5
    if qber > settings.qber_threshold:
        raise EstimationAborted("estimated QBER above threshold", qber=qber)
    if bounds.certifies_nothing:
        raise EstimationAborted("the decoy bounds certify no secret in this block", qber=qber)
    return Estimate(
        key=key_bits[~sample], counts=counts, qber=qber, sample_size=sample_size, bounds=bounds
    )


def _write_triple(writer: Writer, values: Triple) -> None:
    for value in values:
        writer.u64(int(value))


def _read_triple(reader: Reader) -> Triple:
    return (float(reader.u64()), float(reader.u64()), float(reader.u64()))


def estimate_alice(
    channel: ClassicalChannel,
    sifted: SiftedKey,
    settings: EstimationSettings,
    *,
    pulses: Triple,
    clicks: Triple,
    rng: np.random.Generator,
    timeout: float | None,
) -> Estimate:
    """Choose and announce the sample (if any), compare Bob's disclosures, publish counts.

    ``pulses`` and ``clicks`` are Alice's per-class totals (pulses sent, pulses Bob
    detected). ``rng`` picks the sample: it is public once announced and only has to be
    independent of what Eve did on the channel, which it is (drawn after the quantum
    phase). Raises ``EstimationAborted`` (at both ends) when the block is hopeless.
    """
    key_mask = _key_mask(sifted, settings)
    key_bits = sifted.bits[key_mask]
    sample = np.zeros(len(key_bits), dtype=bool)
    if settings.sampled:
        size = math.ceil(settings.sample_fraction * len(key_bits))
        sample[rng.choice(len(key_bits), size=size, replace=False)] = True
        channel.send(Writer(Kind.SAMPLE).bits(sample.view(np.uint8)).build())

    x_mask = sifted.bases == BASIS_X
    reader = messages.receive(channel, Kind.DISCLOSURE, timeout)
    bob_sample = reader.bits(expected=int(sample.sum()))
    bob_x = reader.bits(expected=int(x_mask.sum()))
    reader.end()

    sample_errors = int(np.count_nonzero(key_bits[sample] != bob_sample))
    x_wrong = np.zeros(len(sifted), dtype=bool)
    x_wrong[x_mask] = sifted.bits[x_mask] != bob_x
    counts = DecoyCounts(
        pulses=pulses,
        clicks=clicks,
        sifted_z=_tally(sifted.classes, sifted.bases == BASIS_Z),
        errors_z=(0.0, 0.0, 0.0),
        sifted_x=_tally(sifted.classes, x_mask),
        errors_x=_tally(sifted.classes, x_wrong),
    )
    writer = Writer(Kind.ESTIMATE).u64(sample_errors)
    for triple in (counts.pulses, counts.clicks, counts.errors_x):
        _write_triple(writer, triple)
    channel.send(writer.build())
    return _finish(key_bits, sample, sample_errors, counts, settings)


def estimate_bob(
    channel: ClassicalChannel,
    sifted: SiftedKey,
    settings: EstimationSettings,
    *,
    timeout: float | None,
) -> Estimate:
    """Disclose the sampled and X-basis bits, receive Alice's counts, compute the bounds."""
    key_bits = sifted.bits[_key_mask(sifted, settings)]
    sample = np.zeros(len(key_bits), dtype=bool)
    if settings.sampled:
        reader = messages.receive(channel, Kind.SAMPLE, timeout)
        sample = reader.bits(expected=len(key_bits)).astype(bool)
        reader.end()
    x_mask = sifted.bases == BASIS_X
    channel.send(Writer(Kind.DISCLOSURE).bits(key_bits[sample]).bits(sifted.bits[x_mask]).build())

    reader = messages.receive(channel, Kind.ESTIMATE, timeout)
    sample_errors = reader.u64()
    pulses, clicks, x_errors = _read_triple(reader), _read_triple(reader), _read_triple(reader)
    reader.end()
    sifted_x = _tally(sifted.classes, x_mask)
    if sample_errors > int(sample.sum()) or any(
        e > n for e, n in zip(x_errors, sifted_x, strict=True)
    ):
        raise ChannelError("malformed post-processing message")
    counts = DecoyCounts(
        pulses=pulses,
        clicks=clicks,
        sifted_z=_tally(sifted.classes, sifted.bases == BASIS_Z),
        errors_z=(0.0, 0.0, 0.0),
        sifted_x=sifted_x,
        errors_x=x_errors,
    )
    return _finish(key_bits, sample, sample_errors, counts, settings)
