"""Parameter estimation and the secret-key length, from measured data only.

Two jobs, both on what the two ends actually observed (never on simulator ground truth):

1. **QBER on a sacrificed sample.** The key is built from Z-basis detections of signal
   pulses (decoy and vacuum classes, and the X basis, only serve estimation). Alice picks
   a uniformly random subset of those key candidates (``sample_fraction`` of them),
   announces it, and Bob discloses his bits there; they leave the key. A QBER above the
   threshold (11 % by default, where one-way BB84 stops producing key) aborts the block.
2. **How much secret is left.** Bob also discloses his X-basis bits (never key), giving
   the X error counts per intensity class. Alice publishes every count; both ends then
   build the same :class:`~qkd_channel.link.statistics.DecoyCounts` and run the link
   package's finite-key decoy analysis (Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307
   (2014), adapted to a signal-only key: :func:`qkd_channel.link.analytic.finite_key_length`)
   for ``s1``, a lower bound on single-photon events among the signal Z detections, and
   ``phi``, an upper bound on their phase-error rate. The Z error counts are passed as
   zero there on purpose: the leakage of error correction is charged below with the
   number of bits Cascade really disclosed, not with a model's ``f_EC * h(QBER)``.

Removing the sample. ``s1`` and ``phi`` hold for all ``N`` signal Z detections; the key
keeps ``N - k`` of them after a uniformly random sample of ``k`` is removed. If ``S1 >= s1``
events are single-photon, the sample holds at most ``k S1 / N + d`` of them except with
probability ``eps`` (Hoeffding for sampling without replacement,
``d = sqrt(k/2 ln(1/eps))``), so the key keeps at least
``s1_key = s1 (1 - k/N) - d`` single-photon events, and since the sample can only remove
phase errors too, their phase-error rate is at most ``phi_key = phi S1 / (S1 - X) <=
phi / (1 - k/N - d/s1)``. The final length is

``l = floor(s1_key (1 - h(phi_key)) - leak_EC - leak_verify - 6 log2(22 / eps_sec))``

where the 22 failure events (Lim's 21 plus the sample) each get ``eps_sec / 22``, and
``leak_verify`` is the length of the public verification tag (128 bits, which exceeds
Lim's ``log2(2 / eps_cor)`` term for the ``eps_cor`` verification achieves).

Both ends compute the same numbers: every input is public and authenticated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qkd_channel.errors import ChannelError, EstimationAborted
from qkd_channel.link.analytic import binary_entropy, finite_key_length
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
_EPS_TERMS = 22  # Lim et al.'s 21 estimation/hashing terms plus the removed sample


@dataclass(frozen=True)
class EstimationSettings:
    """Source description and security targets shared by both ends."""

    link: LinkParameters  #: only the source settings (intensities, probabilities) are used
    sample_fraction: float = 0.1  #: share of key candidates sacrificed for the QBER
    qber_threshold: float = 0.11  #: abort above this sample QBER
    epsilon_sec: float = 1e-10  #: secrecy parameter of the final key

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_fraction < 1.0:
            raise ValueError("sample_fraction must lie strictly between 0 and 1")
        if not 0.0 < self.qber_threshold < 0.5:
            raise ValueError("qber_threshold must lie strictly between 0 and 0.5")
        if not 0.0 < self.epsilon_sec < 1.0:
            raise ValueError("epsilon_sec must lie strictly between 0 and 1")


@dataclass(frozen=True)
class Estimate:
    """One end's view after estimation: its remaining key bits and the public figures."""

    key: Bits = field(repr=False)  #: this end's signal Z bits, sample removed
    sample_size: int
    sample_errors: int
    counts: DecoyCounts  #: public per-class counts (Z error counts left at zero, see module)
    single_photon_events: float  #: s1_key, lower bound, in the kept key
    phase_error_rate: float  #: phi_key, upper bound, in the kept key

    @property
    def qber(self) -> float:
        """Error rate on the sacrificed sample."""
        return self.sample_errors / self.sample_size if self.sample_size else 0.0


def secret_key_length(
    estimate: Estimate, *, leak_ec: int, leak_verify: int, epsilon_sec: float
) -> int:
    """Secure length of the privacy-amplified key (0 when nothing secret is left)."""
    s1, phi = estimate.single_photon_events, estimate.phase_error_rate
    if s1 <= 0.0 or phi >= 0.5:
        return 0
    length = (
        s1 * (1.0 - binary_entropy(phi))
        - leak_ec
        - leak_verify
        - 6.0 * math.log2(_EPS_TERMS / epsilon_sec)
    )
    return max(0, math.floor(length))


def _kept_bounds(
    counts: DecoyCounts, sample_size: int, settings: EstimationSettings
) -> tuple[float, float]:
    """``(s1_key, phi_key)`` for the key left after removing the sample (module docstring)."""
    eps_sec = settings.epsilon_sec
    whole = finite_key_length(
        counts, settings.link, epsilon_sec=eps_sec * 21 / _EPS_TERMS, epsilon_cor=0.5
    )
    s1, phi = whole.single_photon_events, whole.phase_error_upper
    total = counts.sifted_z[SIGNAL]
    if s1 <= 0.0 or total <= 0:
        return 0.0, 0.5
    drift = math.sqrt(sample_size / 2.0 * math.log(_EPS_TERMS / eps_sec))
    kept_share = 1.0 - sample_size / total
    s1_key = s1 * kept_share - drift
    denominator = kept_share - drift / s1
    if s1_key <= 0.0 or denominator <= 0.0:
        return 0.0, 0.5
    return s1_key, min(phi / denominator, 0.5)


def _tally(classes: Bits, mask: npt.NDArray[np.bool_]) -> Triple:
    counts = np.bincount(classes[mask], minlength=_CLASSES)
    return (float(counts[0]), float(counts[1]), float(counts[2]))


def _key_mask(sifted: SiftedKey) -> npt.NDArray[np.bool_]:
    mask: npt.NDArray[np.bool_] = (sifted.bases == BASIS_Z) & (sifted.classes == SIGNAL)
    return mask


def _finish(
    key_bits: Bits,
    sample: npt.NDArray[np.bool_],
    sample_errors: int,
    counts: DecoyCounts,
    settings: EstimationSettings,
) -> Estimate:
    sample_size = int(sample.sum())
    s1, phi = _kept_bounds(counts, sample_size, settings)
    estimate = Estimate(
        key=key_bits[~sample],
        sample_size=sample_size,
        sample_errors=sample_errors,
        counts=counts,
        single_photon_events=s1,
        phase_error_rate=phi,
    )
    if sample_size == 0 or estimate.qber > settings.qber_threshold:
        raise EstimationAborted("sample QBER above threshold", qber=estimate.qber)
    return estimate


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
    """Choose and announce the sample, compare Bob's disclosures, publish every count.

    ``pulses`` and ``clicks`` are Alice's per-class totals (pulses sent, pulses Bob
    detected). Raises ``EstimationAborted`` (at both ends, from the same public numbers)
    when the sample QBER exceeds the threshold.
    """
    key_mask = _key_mask(sifted)
    key_bits = sifted.bits[key_mask]
    size = math.ceil(settings.sample_fraction * len(key_bits))
    sample = np.zeros(len(key_bits), dtype=bool)
    sample[rng.choice(len(key_bits), size=size, replace=False)] = True
    channel.send(Writer(Kind.SAMPLE).bits(sample.view(np.uint8)).build())

    x_mask = sifted.bases == BASIS_X
    reader = messages.receive(channel, Kind.DISCLOSURE, timeout)
    bob_sample = reader.bits(expected=size)
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
    key_bits = sifted.bits[_key_mask(sifted)]
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
