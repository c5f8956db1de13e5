"""The public surface of ``qkd_channel.kme`` is deliberate: the notary and swap tool use it."""

from __future__ import annotations

import inspect

import qkd_channel.kme as kme
from qkd_channel.kme.client import AsyncKMEClient, KMEClient


def test_exported_names() -> None:
    assert sorted(kme.__all__) == sorted(
        [
            "AsyncKMEClient",
            "KMEClient",
            "KMEConfig",
            "KeyBlock",
            "KeyLimits",
            "KeySource",
            "KeyStatus",
            "KeyStore",
            "LinkEnd",
            "TLSFiles",
        ]
    )
    for name in kme.__all__:
        assert getattr(kme, name) is not None


def test_sync_and_async_clients_are_twins() -> None:
    for method in ("status", "enc_keys", "dec_keys"):
        sync = inspect.signature(getattr(KMEClient, method))
        async_ = inspect.signature(getattr(AsyncKMEClient, method))
        assert list(sync.parameters) == list(async_.parameters)
        assert inspect.iscoroutinefunction(getattr(AsyncKMEClient, method))
    assert list(inspect.signature(KMEClient).parameters) == [
        "base_url",
        "cert",
        "key",
        "ca",
        "timeout",
    ]
    assert list(inspect.signature(KMEClient.enc_keys).parameters) == [
        "self",
        "slave_sae_id",
        "number",
        "size",
        "additional_slave_sae_ids",
    ]
