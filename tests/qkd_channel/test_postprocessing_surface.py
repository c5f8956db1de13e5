"""The package's exported surface is deliberate: every name exists and nothing extra leaks."""

from __future__ import annotations

import qkd_channel.postprocessing as postprocessing


def test_exports_are_exactly_the_public_api() -> None:
    assert sorted(postprocessing.__all__) == [
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
    for name in postprocessing.__all__:
        assert getattr(postprocessing, name) is not None
