"""Shared fixtures: a real anvil node from npm (``@foundry-rs/anvil-linux-amd64``).

``anvil_factory`` starts nodes (:class:`notary.chain.anvil.AnvilNode`) on free loopback
ports and stops every one of them at the end of the session; ``anvil`` is a module-scoped
node for tests that only need "some JSON-RPC chain". A node started with ``state_file``
dumps its chain there on a graceful stop and loads it on :meth:`AnvilNode.restart`, for
restart and reliability tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notary.chain.anvil import ANVIL_CHAIN_ID, ANVIL_DEV_KEY, AnvilNode, free_port

__all__ = ["ANVIL_CHAIN_ID", "ANVIL_DEV_KEY", "AnvilFactory", "AnvilNode", "free_port"]


class AnvilFactory:
    """Starts anvil nodes and remembers them so that teardown stops every one."""

    def __init__(self) -> None:
        self._nodes: list[AnvilNode] = []

    def __call__(self, **options: object) -> AnvilNode:
        node = AnvilNode(**options)  # type: ignore[arg-type]
        self._nodes.append(node)
        node.start()
        return node

    def stop_all(self) -> None:
        for node in self._nodes:
            node.stop()


@pytest.fixture(scope="session")
def anvil_factory() -> Iterator[AnvilFactory]:
    factory = AnvilFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def anvil(anvil_factory: AnvilFactory) -> Iterator[AnvilNode]:
    """A running anvil node shared by one test module."""
    node = anvil_factory()
    try:
        yield node
    finally:
        node.stop()
