"""Simulated decoy-state BB84 link: parameters, analytic key rates, photon-level Monte Carlo.

Two levels of description share one :class:`LinkParameters`: ``analytic`` gives secret key
rates (asymptotic GLLP with vacuum + weak decoy bounds, and finite-key rates from the bound
of Lim et al. 2014 in ``finite_key``, which the post-processing runs too) versus loss and
distance; ``simulate`` produces the raw bits and bases each end holds, the parties' choices
drawn from the OS generator, optionally with an eavesdropper on the quantum channel.
``estimate_key_rate`` closes the loop: it certifies a rate from a simulated run's own
statistics, the way Alice and Bob would. ``tomamichel2012`` and ``lim2014`` reproduce the
published numbers the bound is compared with (``docs/finite-key.md``).
"""

from qkd_channel.link.analytic import (
    DecoyBounds,
    FiniteKeyRate,
    KeyRate,
    asymptotic_key_rate,
    decoy_bounds,
    estimate_key_rate,
    finite_key_length,
    finite_key_rate,
    key_rate_from_observation,
    secret_key_rate,
)
from qkd_channel.link.channel import Eavesdropper, Photons, fibre
from qkd_channel.link.eavesdroppers import BeamSplitting, InterceptResend, PhotonNumberSplitting
from qkd_channel.link.finite_key import (
    EpsilonTerm,
    FiniteKeyBounds,
    KeyDesign,
    binary_entropy,
    certify,
    epsilon_budget,
    secret_length,
)
from qkd_channel.link.parameters import DECOY, SIGNAL, VACUUM, LinkParameters
from qkd_channel.link.presets import (
    BRISTOL_CLAVIS2,
    BRISTOL_MEASUREMENTS,
    GYS_2005,
    bristol_clavis2,
)
from qkd_channel.link.records import AliceRecord, BobRecord, LinkRun
from qkd_channel.link.simulation import simulate
from qkd_channel.link.statistics import (
    DecoyCounts,
    DecoyObservation,
    count_run,
    expected_counts,
    expected_observation,
    observation_from_arrivals,
)

__all__ = [
    "BRISTOL_CLAVIS2",
    "BRISTOL_MEASUREMENTS",
    "DECOY",
    "GYS_2005",
    "SIGNAL",
    "VACUUM",
    "AliceRecord",
    "BeamSplitting",
    "BobRecord",
    "DecoyBounds",
    "DecoyCounts",
    "DecoyObservation",
    "Eavesdropper",
    "EpsilonTerm",
    "FiniteKeyBounds",
    "FiniteKeyRate",
    "InterceptResend",
    "KeyDesign",
    "KeyRate",
    "LinkParameters",
    "LinkRun",
    "PhotonNumberSplitting",
    "Photons",
    "asymptotic_key_rate",
    "binary_entropy",
    "bristol_clavis2",
    "certify",
    "count_run",
    "decoy_bounds",
    "epsilon_budget",
    "estimate_key_rate",
    "expected_counts",
    "expected_observation",
    "fibre",
    "finite_key_length",
    "finite_key_rate",
    "key_rate_from_observation",
    "observation_from_arrivals",
    "secret_key_rate",
    "secret_length",
    "simulate",
]
