"""Physical description of a decoy-state BB84 link with weak coherent pulses.

One frozen value object feeds both the analytic key-rate model and the photon-level
simulation, so the two can never disagree about what link they describe. The field names
follow the literature (Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005)): fibre attenuation in
dB/km, Bob's detection efficiency ``eta_det``, background yield ``Y0``, misalignment
``e_det``, error-correction inefficiency ``f_EC``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from qkd_channel.errors import LinkParameterError

__all__ = ["DECOY", "SIGNAL", "VACUUM", "LinkParameters"]

SIGNAL = 0
"""Index of the signal intensity class (the class the key is extracted from)."""
DECOY = 1
"""Index of the weak decoy intensity class."""
VACUUM = 2
"""Index of the (near-)vacuum decoy intensity class."""


@dataclass(frozen=True, kw_only=True)
class LinkParameters:
    """A fibre link, its source and its receiver.

    Losses are split the way link budgets are written: fibre attenuation times length plus
    an ``extra_loss_db`` for connectors, switches and splices. ``detector_efficiency`` is
    Bob's whole receiver (internal optics times detector quantum efficiency), which is how
    Ma et al. quote ``eta_Bob``; it is *not* part of the "total loss" figure that operators
    quote for a link.

    ``dark_count_probability`` is ``Y0``: the probability, per pulse, that Bob's detection
    system registers a click with no light from Alice (both detectors together). The
    simulation splits it evenly over the two detectors.

    ``dead_time_s`` models gated InGaAs APDs that, after any click, blind *both* detectors
    for a fixed time (a common countermeasure to detector-dependent dead-time attacks). It
    saturates the detection rate at short distances, which is what makes commercial
    Clavis2-class systems lose less than proportionally to transmittance at low loss.

    The key is taken from Z-basis detections (of every class in the efficient design, of
    signal pulses only in the first one); the X basis serves parameter estimation.
    ``z_basis_probability`` may be biased (efficient BB84, Lo-Chau-Ardehali) and is used
    by Alice and Bob alike.
    """

    fibre_loss_db_per_km: float
    length_km: float = 0.0
    extra_loss_db: float = 0.0
    detector_efficiency: float
    dark_count_probability: float
    misalignment_error: float
    intensities: tuple[float, float, float]
    intensity_probabilities: tuple[float, float, float]
    z_basis_probability: float = 0.5
    pulse_rate_hz: float
    error_correction_efficiency: float
    dead_time_s: float = 0.0

    def __post_init__(self) -> None:
        _check_nonnegative("fibre_loss_db_per_km", self.fibre_loss_db_per_km)
        _check_nonnegative("length_km", self.length_km)
        _check_nonnegative("extra_loss_db", self.extra_loss_db)
        _check_unit_interval("detector_efficiency", self.detector_efficiency, open_low=True)
        _check_unit_interval("dark_count_probability", self.dark_count_probability, open_high=True)
        _check_finite("misalignment_error", self.misalignment_error)
        if not 0.0 <= self.misalignment_error <= 0.5:
            raise LinkParameterError(
                f"misalignment_error must lie in [0, 0.5], got {self.misalignment_error}"
            )
        self._check_intensities()
        _check_unit_interval(
            "z_basis_probability", self.z_basis_probability, open_low=True, open_high=True
        )
        _check_finite("pulse_rate_hz", self.pulse_rate_hz)
        if self.pulse_rate_hz <= 0.0:
            raise LinkParameterError(f"pulse_rate_hz must be positive, got {self.pulse_rate_hz}")
        _check_finite("error_correction_efficiency", self.error_correction_efficiency)
        if self.error_correction_efficiency < 1.0:
            raise LinkParameterError(
                "error_correction_efficiency must be >= 1 (1 is the Shannon limit), got "
                f"{self.error_correction_efficiency}"
            )
        _check_nonnegative("dead_time_s", self.dead_time_s)

    def _check_intensities(self) -> None:
        if len(self.intensities) != 3 or len(self.intensity_probabilities) != 3:
            raise LinkParameterError(
                "intensities and intensity_probabilities must each hold three values "
                "(signal, decoy, vacuum)"
            )
        for value in (*self.intensities, *self.intensity_probabilities):
            _check_finite("intensities/intensity_probabilities", value)
        signal, decoy, vacuum = self.intensities
        if not signal > decoy > vacuum >= 0.0:
            raise LinkParameterError(
                f"intensities must satisfy signal > decoy > vacuum >= 0, got {self.intensities}"
            )
        # Needed by the vacuum+weak decoy bound on Y1 (Ma et al. 2005, Lim et al. 2014).
        if not signal > decoy + vacuum:
            raise LinkParameterError(
                f"the signal intensity must exceed decoy + vacuum, got {self.intensities}"
            )
        if any(p <= 0.0 for p in self.intensity_probabilities):
            raise LinkParameterError(
                "every intensity class needs a positive probability, got "
                f"{self.intensity_probabilities}"
            )
        if not math.isclose(sum(self.intensity_probabilities), 1.0, abs_tol=1e-9):
            raise LinkParameterError(
                f"intensity_probabilities must sum to 1, got {sum(self.intensity_probabilities)}"
            )

    @property
    def total_loss_db(self) -> float:
        """Channel loss between Alice and Bob's receiver: fibre plus extra losses."""
        return self.fibre_loss_db_per_km * self.length_km + self.extra_loss_db

    @property
    def channel_transmittance(self) -> float:
        """Probability that a photon survives the channel, ``10^(-loss/10)``."""
        return float(10.0 ** (-self.total_loss_db / 10.0))

    @property
    def transmittance(self) -> float:
        """Overall ``eta``: probability a photon leaving Alice is registered by Bob."""
        return self.channel_transmittance * self.detector_efficiency

    @property
    def x_basis_probability(self) -> float:
        """Probability of choosing the X (diagonal) basis."""
        return 1.0 - self.z_basis_probability

    @property
    def dark_count_per_detector(self) -> float:
        """Per-detector dark-count probability ``p_d`` with ``1 - (1 - p_d)^2 = Y0``."""
        return 1.0 - math.sqrt(1.0 - self.dark_count_probability)

    @property
    def dead_time_pulses(self) -> int:
        """Number of pulse slots both detectors stay blind after a click."""
        return round(self.dead_time_s * self.pulse_rate_hz)

    def at_total_loss(self, loss_db: float) -> LinkParameters:
        """The same hardware behind a channel of exactly ``loss_db`` total loss.

        The loss is booked as extra loss on a zero-length fibre, so the result no longer
        says how it splits between fibre and components (which the model does not need).
        """
        return replace(self, length_km=0.0, extra_loss_db=loss_db)

    def at_length(self, length_km: float) -> LinkParameters:
        """The same hardware and extra losses over ``length_km`` of fibre."""
        return replace(self, length_km=length_km)


def _check_finite(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise LinkParameterError(f"{name} must be a finite number, got {value!r}")


def _check_nonnegative(name: str, value: float) -> None:
    _check_finite(name, value)
    if value < 0.0:
        raise LinkParameterError(f"{name} must be >= 0, got {value}")


def _check_unit_interval(
    name: str, value: float, *, open_low: bool = False, open_high: bool = False
) -> None:
    _check_finite(name, value)
    low_ok = value > 0.0 if open_low else value >= 0.0
    high_ok = value < 1.0 if open_high else value <= 1.0
    if not (low_ok and high_ok):
        low = "(0" if open_low else "[0"
        high = "1)" if open_high else "1]"
        raise LinkParameterError(f"{name} must lie in {low}, {high}, got {value}")
