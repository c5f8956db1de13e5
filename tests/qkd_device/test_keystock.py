"""The SDK's in-memory key stock: properties of ``KeyStock`` and a client using it end to end.

What must hold: a key leaves the stock before it is used and is handed out once; the key
handed out covers the message; the surplus an envelope discards stays below the granule;
old keys are dropped, never used; nothing of the stock reaches the disk; the notary accepts
envelopes sealed with stocked keys (they are still bound to the device's SAE) and the
device's KME sees one ``enc_keys`` per ``key_stock`` messages.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qkd_channel.envelope import Mode, keys_needed
from qkd_channel.keys import QKDKey
from qkd_channel.kme.certs import sae_paths
from qkd_channel.kme.client import KMEClient
from qkd_device import DeviceClient, KeyStock
from qkd_device.core import KeyPlan
from qkd_device.keystock import GRANULE_BYTES
from tests.notary.sdk_stack import FIRMWARE, NOTARY_SAE, Stack, make_pki, running_stack
from tests.qkd_device.test_client import FAST

PLAN = KeyPlan(min_key_size=64, max_key_size=8 * 1024, max_key_per_request=16)


class FakeKME:
    """Deals distinct keys, ``number`` at a time, as ``enc_keys`` would (no I/O)."""

    def __init__(self) -> None:
        self.issued = 0

    def enc_keys(self, number: int, size_bits: int) -> list[QKDKey]:
        keys = []
        for _ in range(number):
            self.issued += 1
            material = self.issued.to_bytes(8, "big") * (size_bits // 64 + 1)
            keys.append(
                QKDKey(f"00000000-0000-4000-8000-{self.issued:012x}", material[: size_bits // 8])
            )
        return keys


def obtain(stock: KeyStock, kme: FakeKME, need: int, now: float) -> tuple[list[QKDKey], int]:
    """What a client does for one message: the stock first, else ``enc_keys`` calls."""
    keys = stock.take(need, PLAN, now)
    if keys is not None:
        return keys, 0
    fetched = [k for n, bits in stock.requests(need, PLAN) for k in kme.enc_keys(n, bits)]
    return stock.keep(fetched, need, PLAN, now), 1


@given(
    depth=st.integers(1, 16),
    needs=st.lists(st.integers(1, 1500), min_size=1, max_size=60),
)
def test_stocked_keys_are_handed_out_once_and_cover_each_message(
    depth: int, needs: list[int]
) -> None:
    stock, kme = KeyStock(depth, max_age_s=60), FakeKME()
    handed: list[str] = []
    calls = 0
    for n, need in enumerate(needs):
        before = len(stock)
        keys, called = obtain(stock, kme, need, now=float(n))
        if not called:
            assert len(stock) == before - 1  # removed from the stock as it is handed out
        calls += called
        handed += [k.key_id for k in keys]
        got = sum(len(k.material) for k in keys)
        assert got >= need
        if depth > 1 and 8 * need <= PLAN.max_key_size:
            assert len(keys) == 1 and got - need < GRANULE_BYTES
    assert len(handed) == len(set(handed))  # never the same key twice
    assert kme.issued == len(handed) + len(stock) + stock.dropped
    if depth == 1:
        assert len(stock) == 0 and calls == len(needs)


def test_a_stream_of_similar_readings_needs_one_request_per_depth() -> None:
    stock, kme = KeyStock(8, max_age_s=60), FakeKME()
    calls = sum(obtain(stock, kme, 170 + n % 3, now=0.0)[1] for n in range(80))
    assert calls == 10 and len(stock) == 0


def test_keys_older_than_the_maximum_age_are_dropped_not_used() -> None:
    stock, kme = KeyStock(4, max_age_s=30), FakeKME()
    first, _ = obtain(stock, kme, 100, now=0.0)
    assert len(stock) == 3
    assert stock.take(100, PLAN, now=29.0) is not None  # still fresh
    assert stock.take(100, PLAN, now=30.0) is None  # the last two are too old
    assert len(stock) == 0 and stock.dropped == 2 and stock.dropped_bytes == 2 * 16 * 7
    keys, called = obtain(stock, kme, 100, now=30.0)
    assert called == 1 and keys[0].key_id != first[0].key_id


def test_depth_and_age_are_validated() -> None:
    with pytest.raises(ValueError):
        KeyStock(0)
    with pytest.raises(ValueError):
        KeyStock(2, max_age_s=0)


class CountingKME(KMEClient):
    """A real KME client that counts its ``enc_keys`` requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enc_calls = 0
        self.delivered: list[QKDKey] = []

    def enc_keys(self, slave_sae_id: str, **kwargs: Any) -> list[QKDKey]:
        self.enc_calls += 1
        keys = super().enc_keys(slave_sae_id, **kwargs)
        self.delivered += keys
        return keys


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("stock-pki"))


@pytest.fixture
def stack(pki: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, pki, devices=2) as s:
        yield s


def counting_kme(stack: Stack, sae_id: str) -> CountingKME:
    cert, key = sae_paths(stack.pki, sae_id)
    return CountingKME(stack.kmes.urls["a"], cert=cert, key=key, ca=stack.pki / "ca.crt")


def test_client_with_a_stock_delivers_and_keeps_no_key_on_disk(
    stack: Stack, tmp_path: Path
) -> None:
    kme = counting_kme(stack, "sae-0")
    queue = tmp_path / "queue-0"
    with (
        kme,
        DeviceClient(
            "dev-0",
            kme=kme,
            notary=stack.notary_url,
            firmware_digest=FIRMWARE,
            queue_dir=queue,
            notary_sae_id=NOTARY_SAE,
            retry=FAST,
            key_stock=4,
        ) as dev,
    ):
        acks = [dev.send({"n": n}) for n in range(6)]
        on_disk = b"".join(p.read_bytes() for p in queue.rglob("*") if p.is_file())
        assert dev.stats.key_bytes_dropped == 0
    assert [a.sequence for a in acks] == [1, 2, 3, 4, 5, 6]
    assert kme.enc_calls == 2  # 4 keys, then 4 more: 2 left in the stock at close
    for key in kme.delivered:
        for form in (key.material, base64.b64encode(key.material), key.material.hex().encode()):
            assert form not in on_disk
    need = keys_needed(Mode.OTP, len(dev.document({"n": 0})))
    bucket = GRANULE_BYTES * -(-need // GRANULE_BYTES)  # each key: the need, rounded up
    assert dev.stats.key_bytes == 2 * 4 * bucket
    assert dev.stats.key_bytes_dropped == 2 * bucket
