"""Key budget of a fleet: how much QKD key a fleet consumes, against what a link supplies.

A QKD link delivers secret key at a fixed rate into each KME's buffer; every message
spends some of it. Whether a deployment works is arithmetic, but the numbers are easy to
get wrong by an order of magnitude (an ``otp`` reading spends its whole length plus a MAC
key; an ``aead`` session spends 32 bytes for hundreds of readings), so ``qkd-notary plan``
does it and prints the headroom, the largest fleet the link can serve and, when the fleet
outruns the link, how long the buffer lasts.

Consumption per message, exactly as the device SDK spends it (``qkd_device``):

* ``otp``: ``len(document) + 32`` bytes (one-time pad and a one-time Poly1305 key), where
  the document is the sealed JSON (``qkd_device.records.build_document``) around a reading,
  with the ``key_delivery`` report the SDK adds (counted as ``"local"``, the longer value);
* ``aead`` and ``hybrid``: one 32-byte key per session; a session ends after
  ``session_messages`` messages or ``session_age_s`` seconds, whichever comes first (the
  SDK's defaults: 10,000 and 600 s). ``hybrid`` adds an ML-KEM encapsulation per session,
  which costs no QKD key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qkd_channel.envelope import MAC_KEY_BYTES, Mode
from qkd_device.records import build_document

__all__ = ["FleetPlan", "KeyBudget", "document_overhead", "plan_fleet"]

#: One QKD session key of the AEAD modes.
SESSION_KEY_BYTES = 32
#: The device SDK's session limits (``qkd_device.DeviceClient``'s defaults).
DEFAULT_SESSION_MESSAGES = 10_000
DEFAULT_SESSION_AGE_S = 600.0


def document_overhead() -> int:
    """Bytes the sealed document adds around a reading: what the SDK's own
    ``build_document`` produces for an empty reading (``{}``) with its key-delivery report,
    minus those two bytes."""
    return len(build_document("0" * 64, {}, key_delivery="local")) - 2


@dataclass(frozen=True, kw_only=True)
class FleetPlan:
    """What the fleet sends."""

    devices: int
    interval_s: float  #: seconds between two readings of one device
    reading_bytes: int  #: the telemetry JSON object's size
    mode: Mode
    session_messages: int = DEFAULT_SESSION_MESSAGES
    session_age_s: float = DEFAULT_SESSION_AGE_S

    def __post_init__(self) -> None:
        if self.devices < 1 or self.interval_s <= 0 or self.reading_bytes < 2:
            raise ValueError(
                "a fleet has at least one device, a positive interval and readings of at "
                "least 2 bytes (an empty JSON object)"
            )
        if self.session_messages < 1 or self.session_age_s <= 0:
            raise ValueError("session limits must be positive")

    @property
    def key_bytes_per_message(self) -> float:
        """QKD key one message spends (for the AEAD modes, its share of a session key)."""
        if self.mode is Mode.OTP:
            return document_overhead() + self.reading_bytes + MAC_KEY_BYTES
        per_session = min(self.session_messages, max(1.0, self.session_age_s / self.interval_s))
        return SESSION_KEY_BYTES / per_session

    @property
    def bits_per_second_per_device(self) -> float:
        return 8 * self.key_bytes_per_message / self.interval_s


@dataclass(frozen=True)
class KeyBudget:
    """Consumption against supply."""

    plan: FleetPlan
    supply_bits_per_s: float
    buffer_bits: int

    @property
    def consumption_bits_per_s(self) -> float:
        return self.plan.devices * self.plan.bits_per_second_per_device

    @property
    def headroom_bits_per_s(self) -> float:
        return self.supply_bits_per_s - self.consumption_bits_per_s

    @property
    def utilisation(self) -> float:
        """Consumption as a fraction of supply (above 1: the fleet outruns the link)."""
        return self.consumption_bits_per_s / self.supply_bits_per_s

    @property
    def largest_fleet(self) -> int:
        """The most devices of this kind the link serves indefinitely."""
        return math.floor(self.supply_bits_per_s / self.plan.bits_per_second_per_device)

    @property
    def buffer_lasts_s(self) -> float | None:
        """How long a full buffer lasts when consumption exceeds supply (``None``: forever)."""
        deficit = -self.headroom_bits_per_s
        return None if deficit <= 0 else self.buffer_bits / deficit

    @property
    def buffer_fills_s(self) -> float | None:
        """How long an empty buffer takes to fill while the fleet runs (``None``: never)."""
        return (
            None if self.headroom_bits_per_s <= 0 else self.buffer_bits / self.headroom_bits_per_s
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "devices": self.plan.devices,
            "interval_s": self.plan.interval_s,
            "reading_bytes": self.plan.reading_bytes,
            "mode": self.plan.mode.value,
            "key_bytes_per_message": self.plan.key_bytes_per_message,
            "consumption_bits_per_s": self.consumption_bits_per_s,
            "supply_bits_per_s": self.supply_bits_per_s,
            "headroom_bits_per_s": self.headroom_bits_per_s,
            "utilisation": self.utilisation,
            "largest_fleet": self.largest_fleet,
            "buffer_bits": self.buffer_bits,
            "buffer_lasts_s": self.buffer_lasts_s,
            "buffer_fills_s": self.buffer_fills_s,
        }


def plan_fleet(plan: FleetPlan, *, supply_bits_per_s: float, buffer_bits: int) -> KeyBudget:
    """The key budget of ``plan`` on a link delivering ``supply_bits_per_s``."""
    if supply_bits_per_s <= 0 or buffer_bits <= 0:
        raise ValueError("the link's key rate and buffer must be positive")
    return KeyBudget(plan, supply_bits_per_s, buffer_bits)
