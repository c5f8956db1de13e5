"""Post-processing of raw QKD key as a two-party protocol over a classical channel.

``run_alice``/``run_bob`` drive one block through sifting, estimation, Cascade,
verification and privacy amplification over an ``AuthenticatedChannel`` that wraps an
``InMemoryChannel`` (two threads) or a ``TCPChannel`` (two KME processes).
"""

from qkd_channel.postprocessing.authentication import (
    AuthenticatedChannel,
    AuthenticationKeyPool,
    Role,
)
from qkd_channel.postprocessing.cascade import (
    CascadeConfig,
    CascadeStats,
    reconcile_alice,
    reconcile_bob,
)
from qkd_channel.postprocessing.channel import ClassicalChannel, InMemoryChannel
from qkd_channel.postprocessing.estimation import EstimationSettings
from qkd_channel.postprocessing.privacy import toeplitz_hash
from qkd_channel.postprocessing.protocol import (
    BlockResult,
    BlockStats,
    PostProcessingConfig,
    run_alice,
    run_bob,
)
from qkd_channel.postprocessing.tcp import TCPChannel, TCPListener

__all__ = [
    "AuthenticatedChannel",
    "AuthenticationKeyPool",
    "BlockResult",
    "BlockStats",
    "CascadeConfig",
    "CascadeStats",
    "ClassicalChannel",
    "EstimationSettings",
    "InMemoryChannel",
    "PostProcessingConfig",
    "Role",
    "TCPChannel",
    "TCPListener",
    "reconcile_alice",
    "reconcile_bob",
    "run_alice",
    "run_bob",
    "toeplitz_hash",
]
