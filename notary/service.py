"""The notary as a library: one object owning storage, keys, pipeline, chain and worker.

Everything that serves requests (the FastAPI app, the MQTT intake, the CLI's ``serve``) and
everything that embeds the notary (the demo, the benchmark, tests) builds a
:class:`NotaryService` and calls its methods; none of them touch storage or the KME
directly. Typical use::

    settings = NotarySettings(data_dir=path)
    service = NotaryService.open(settings, keys=my_key_source, chain=my_chain)
    await service.start()            # starts the anchoring worker if a chain is attached
    accepted = await service.pipeline.submit(envelope_json)
    receipt = await service.receipt(accepted.record_id)
    await service.aclose()
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from notary.config import NotarySettings, load_or_create_admin_token
from notary.errors import (
    DeviceNotFound,
    NotaryError,
    RecordNotFound,
    ServiceUnavailable,
)
from notary.keysource import CoalescingKeySource, KeySource, KMEKeySource
from notary.logging import log_event
from notary.metrics import NotaryMetrics
from notary.pipeline import IntakePipeline
from notary.receipts import Receipt, build_receipt
from notary.storage.base import DeviceEvent, DeviceRow, Store
from notary.storage.sqlite import SQLiteStore
from qkd_channel.kme.client import AsyncKMEClient

__all__ = ["CheckResult", "NotaryService", "kme_key_source"]

log = logging.getLogger("notary.service")


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one readiness probe."""

    ok: bool
    detail: str


def kme_key_source(settings: NotarySettings) -> KeySource:
    """The KME-backed key source the settings describe (mutual TLS, coalesced)."""
    if not (settings.kme_url and settings.kme_cert and settings.kme_key and settings.kme_ca):
        raise ValueError("kme_url, kme_cert, kme_key and kme_ca are required to reach a KME")
    client = AsyncKMEClient(
        settings.kme_url,
        cert=settings.kme_cert,
        key=settings.kme_key,
        ca=settings.kme_ca,
        timeout=settings.kme_timeout_s,
    )
    return CoalescingKeySource(
        KMEKeySource(client),
        window_s=settings.kme_coalesce_ms / 1000,
        max_keys=settings.kme_max_keys_per_request,
    )


class NotaryService:
    """A running notary: intake pipeline, admin operations, receipts, readiness."""

    def __init__(
        self,
        settings: NotarySettings,
        *,
        store: Store,
        keys: KeySource,
        admin_token: str,
        metrics: NotaryMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.metrics = metrics or NotaryMetrics()
        self._admin_token = admin_token.encode()
        self._clock = clock
        self.pipeline = IntakePipeline(
            store=store,
            keys=keys,
            notary_id=settings.notary_id,
            metrics=self.metrics,
            max_envelope_bytes=settings.max_envelope_bytes,
            aead_session_ttl_s=settings.aead_session_ttl_s,
            clock=clock,
        )
        self._closed = False

    @classmethod
    def open(cls, settings: NotarySettings, *, keys: KeySource | None = None) -> NotaryService:
        """Open the data directory's store and token; reach the KME the settings name
        unless a key source is given."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings,
            store=SQLiteStore(settings.sqlite_path),
            keys=keys if keys is not None else kme_key_source(settings),
            admin_token=load_or_create_admin_token(settings.data_dir),
        )

    async def start(self) -> None:
        """Start background work (the anchoring worker, when a chain is attached)."""

    async def aclose(self) -> None:
        """Stop background work, then close the key source and the store."""
        if self._closed:
            return
        self._closed = True
        await self.keys.aclose()
        await self.store.aclose()

    # -- admin -----------------------------------------------------------------------
    def admin_token_matches(self, presented: str) -> bool:
        """Constant-time comparison with the token from ``<data_dir>/admin.token``."""
        return hmac.compare_digest(presented.encode(), self._admin_token)

    async def register_device(
        self,
        device_id: str,
        *,
        sae_id: str,
        owner: str = "",
        expected_digest: str | None = None,
    ) -> DeviceRow:
        device = await self.store.create_device(
            device_id,
            sae_id=sae_id,
            owner=owner,
            expected_digest=expected_digest,
            now=self._clock(),
        )
        log_event(log, logging.INFO, "device registered", device_id=device_id, sae_id=sae_id)
        return device

    async def approve_firmware(self, device_id: str, digest: str) -> DeviceRow:
        device = await self.store.approve_digest(device_id, digest, now=self._clock())
        self.pipeline.forget_device(device_id)
        log_event(log, logging.INFO, "firmware approved", device_id=device_id, digest=digest)
        return device

    async def deactivate_device(self, device_id: str) -> DeviceRow:
        device = await self.store.deactivate_device(device_id, now=self._clock())
        self.pipeline.forget_device(device_id)
        log_event(log, logging.INFO, "device deactivated", device_id=device_id)
        return device

    async def device(self, device_id: str) -> tuple[DeviceRow, list[DeviceEvent]]:
        """A device and its attestation history (raises ``DeviceNotFound``)."""
        device = await self.store.get_device(device_id)
        if device is None:
            raise DeviceNotFound(f"no device {device_id!r}")
        return device, await self.store.device_events(device_id)

    async def devices(self) -> list[DeviceRow]:
        return await self.store.list_devices()

    # -- records ---------------------------------------------------------------------
    async def receipt(self, record_id: str) -> Receipt:
        """The current receipt of a record (raises ``RecordNotFound``)."""
        record = await self.store.get_record(record_id.lower())
        if record is None:
            raise RecordNotFound(f"no record {record_id}")
        return build_receipt(record, None)

    # -- operations ------------------------------------------------------------------
    async def readiness(self) -> dict[str, CheckResult]:
        """Probe storage (writable outbox) and the KME, concurrently, with a timeout."""
        checks = {"outbox": self._check_outbox(), "kme": self._check_kme()}
        results = await asyncio.gather(*checks.values())
        return dict(zip(checks, results, strict=True))

    async def _check_outbox(self) -> CheckResult:
        try:
            await asyncio.wait_for(self.store.ping(), timeout=5)
            depth = await self.store.outbox_depth()
        except (NotaryError, TimeoutError) as exc:
            return CheckResult(False, type(exc).__name__)
        return CheckResult(True, f"writable, {depth} record(s) waiting")

    async def _check_kme(self) -> CheckResult:
        devices = await self.store.list_devices()
        probe = devices[0].sae_id if devices else self.settings.notary_id
        try:
            stock = await asyncio.wait_for(self.keys.stock(probe), timeout=5)
        except (ServiceUnavailable, TimeoutError) as exc:
            return CheckResult(False, type(exc).__name__)
        return CheckResult(True, "reachable" if stock is None else f"reachable, stock {stock}")

    async def refresh_gauges(self) -> None:
        """Update gauges that are cheaper to read on scrape than to track continuously."""
        self.metrics.outbox_depth.set(await self.store.outbox_depth())
        for device in await self.store.list_devices():
            if not device.active:
                continue
            try:
                stock = await asyncio.wait_for(self.keys.stock(device.sae_id), timeout=2)
            except (ServiceUnavailable, TimeoutError):
                continue
            if stock is not None:
                self.metrics.key_stock.labels(device.sae_id).set(stock)
