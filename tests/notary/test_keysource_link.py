"""The notary learns each pair's link from its KME's Status, caches it, asks again, and
never guesses: whatever the KME does not (or cannot) report is ``unreported``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from notary.keysource import CoalescingKeySource, KMEKeySource
from qkd_channel.errors import KMEUnauthorized, KMEUnavailable
from qkd_channel.kme.client import KeyStatus
from qkd_channel.security_levels import Hop

STATUS = KeyStatus("kme-b", "kme-a", "notary", "dev-sae", 256, 10, 100, 128, 65536, 64, 4)


class StatusOnlyKME:
    """Answers Status like a KME would; counts the requests."""

    def __init__(self, extension: Any = None) -> None:
        self.extension = extension
        self.failure: Exception | None = None
        self.asked: list[str] = []
        self.delay_s = 0.0

    async def status(self, slave_sae_id: str) -> KeyStatus:
        self.asked.append(slave_sae_id)
        await asyncio.sleep(self.delay_s)
        if self.failure is not None:
            raise self.failure
        return dataclasses.replace(STATUS, status_extension=self.extension)

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def source(kme: StatusOnlyKME, clock: Clock) -> KMEKeySource:
    return KMEKeySource(kme, clock=clock)  # type: ignore[arg-type]


async def test_a_reported_link_is_learnt_per_pair_and_cached() -> None:
    kme, clock = StatusOnlyKME({"key_path": {"link": "qkd"}}), Clock()
    keys = source(kme, clock)
    assert await keys.link_hop("dev-sae") is Hop.QKD
    assert await keys.link_hop("dev-sae") is Hop.QKD
    assert await keys.link_hop("hub-sae") is Hop.QKD
    assert kme.asked == ["dev-sae", "hub-sae"]  # one Status request per SAE pair
    kme.extension = {"key_path": {"link": "qkd-trusted-relay", "relay_path": ["kme-r"]}}
    clock.now += KMEKeySource.LINK_REPORT_TTL_S + 1
    assert await keys.link_hop("dev-sae") is Hop.QKD_TRUSTED_RELAY  # refreshed
    assert kme.asked == ["dev-sae", "hub-sae", "dev-sae"]


@pytest.mark.parametrize(
    "extension",
    [None, {"key_path": {"link": "tls"}}, {"key_path": {}}, "qkd"],
    ids=["silent", "not-a-link", "empty", "garbled"],
)
async def test_a_kme_that_reports_no_link_yields_unreported(extension: Any) -> None:
    keys = source(StatusOnlyKME(extension), Clock())
    assert await keys.link_hop("dev-sae") is Hop.UNREPORTED


@pytest.mark.parametrize(
    "failure",
    [KMEUnavailable("down"), KMEUnauthorized("not attached")],
    ids=["unreachable", "refused"],
)
async def test_a_kme_that_cannot_be_asked_yields_unreported_and_is_asked_again_later(
    failure: Exception,
) -> None:
    kme, clock = StatusOnlyKME({"key_path": {"link": "qkd"}}), Clock()
    kme.failure = failure
    keys = source(kme, clock)
    assert await keys.link_hop("dev-sae") is Hop.UNREPORTED
    assert await keys.link_hop("dev-sae") is Hop.UNREPORTED
    assert len(kme.asked) == 1  # not once per envelope while the KME is down
    kme.failure = None
    clock.now += KMEKeySource.LINK_RETRY_S + 1
    assert await keys.link_hop("dev-sae") is Hop.QKD


async def test_concurrent_envelopes_share_one_status_request() -> None:
    kme = StatusOnlyKME({"key_path": {"link": "qkd"}})
    kme.delay_s = 0.05
    keys = CoalescingKeySource(source(kme, Clock()))
    hops = await asyncio.gather(*(keys.link_hop("dev-sae") for _ in range(10)))
    assert hops == [Hop.QKD] * 10
    assert kme.asked == ["dev-sae"]
