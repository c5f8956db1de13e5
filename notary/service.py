"""The notary as a library: one object owning storage, keys, pipeline, chain and worker.

Everything that serves requests (the FastAPI app, the MQTT intake, the CLI's ``serve``) and
everything that embeds the notary (the demo, the benchmark, tests) builds a
:class:`NotaryService` and calls its methods; none of them touch storage or the KME
directly. Typical use::

    settings = NotarySettings(data_dir=path)
    service = NotaryService.open(settings, keys=my_key_source, chain=chain_client)
    await service.start()            # anchoring worker (if a chain), MQTT (if configured)
    accepted = await service.pipeline.submit(envelope_json)
    receipt = await service.receipt(accepted.record_id)
    await service.aclose()

The chain client is passed in rather than opened here because opening it needs the
signer's keystore password, which only the CLI (or the embedding program) can ask for.
The service never closes a chain client it was given.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from notary.anchoring import AnchorChain, AnchoringWorker, record_input
from notary.chain.merkle import MerkleTree, record_leaf
from notary.config import AnchorMode, NotarySettings, load_or_create_admin_token
from notary.errors import (
    DeviceNotFound,
    NotaryError,
    RecordNotFound,
    ServiceUnavailable,
)
from notary.keysource import CoalescingKeySource, KeySource, KMEKeySource
from notary.logging import log_event
from notary.metrics import NotaryMetrics
from notary.mqtt import MQTTIntake
from notary.partition import Partition
from notary.pipeline import IntakePipeline
from notary.receipts import AnchorProof, Receipt, build_receipt
from notary.storage import open_store
from notary.storage.base import BatchRow, DeviceEvent, DeviceRow, RecordRow, RecordStatus, Store
from qkd_channel.kme.client import AsyncKMEClient

__all__ = ["CheckResult", "NotaryService", "anchor_proofs", "kme_key_source"]

log = logging.getLogger("notary.service")


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one readiness probe.

    ``required`` checks decide readiness. The chain is reported but not required: while
    it is down, intake keeps filling the durable outbox, so the notary should keep
    receiving traffic rather than be taken out of a load balancer.
    """

    ok: bool
    detail: str
    required: bool = True


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


def anchor_proofs(
    batch: BatchRow, members: list[RecordRow], chain_id: int, contract: str
) -> dict[str, AnchorProof]:
    """The anchor section of every member's receipt (Merkle proofs computed once)."""
    assert batch.tx_hash is not None and batch.block_number is not None
    assert batch.block_hash is not None and batch.block_timestamp is not None
    leaves = {m.record_id: record_leaf(record_input(m)) for m in members}
    tree = MerkleTree(list(leaves.values())) if batch.mode is AnchorMode.MERKLE else None
    return {
        record_id: AnchorProof(
            method=batch.mode,
            chain_id=chain_id,
            contract=contract,
            tx_hash=batch.tx_hash,
            block_number=batch.block_number,
            block_hash=batch.block_hash,
            block_timestamp=batch.block_timestamp,
            batch_id=batch.batch_id,
            batch_size=len(members),
            leaf="0x" + leaf.hex(),
            batch_root=batch.root,
            proof=[] if tree is None else ["0x" + p.hex() for p in tree.proof(leaf)],
        )
        for record_id, leaf in leaves.items()
    }


class NotaryService:
    """A running notary: intake pipeline, admin operations, receipts, readiness."""

    def __init__(
        self,
        settings: NotarySettings,
        *,
        store: Store,
        keys: KeySource,
        admin_token: str,
        chain: AnchorChain | None = None,
        metrics: NotaryMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.chain = chain
        self.metrics = metrics or NotaryMetrics()
        self._admin_token = admin_token.encode()
        self._clock = clock
        self.worker: AnchoringWorker | None = None
        if chain is not None:
            self.worker = AnchoringWorker(
                store,
                chain,
                mode=settings.anchor_mode,
                batch_size=settings.batch_size,
                max_latency_s=settings.batch_max_latency_s,
                publish_payloads=settings.store_payload_on_chain,
                metrics=self.metrics,
                clock=clock,
            )
        self.pipeline = IntakePipeline(
            store=store,
            keys=keys,
            notary_id=settings.notary_id,
            metrics=self.metrics,
            max_envelope_bytes=settings.max_envelope_bytes,
            aead_session_ttl_s=settings.aead_session_ttl_s,
            on_accepted=None if self.worker is None else self.worker.notify,
            clock=clock,
        )
        self.mqtt: MQTTIntake | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._proofs: dict[int, dict[str, AnchorProof]] = {}
        self._closed = False

    @classmethod
    def open(
        cls,
        settings: NotarySettings,
        *,
        keys: KeySource | None = None,
        chain: AnchorChain | None = None,
    ) -> NotaryService:
        """Open the store ``settings.database_url`` names (SQLite in the data directory by
        default) and the admin token; reach the KME the settings name unless a key source
        is given; anchor through ``chain`` if given."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings,
            store=open_store(settings),
            keys=keys if keys is not None else kme_key_source(settings),
            admin_token=load_or_create_admin_token(settings.data_dir),
            chain=chain,
        )

    async def start(self, *, anchoring: bool = True, mqtt: bool = True) -> None:
        """Start background work: the anchoring worker (when a chain is attached and
        ``anchoring``) and the MQTT intake (when ``settings.mqtt_host`` is set and ``mqtt``)."""
        if anchoring and self.worker is not None:
            self._tasks.append(asyncio.create_task(self.worker.run(self._stop)))
        if mqtt and self.settings.mqtt_host:
            self.mqtt = MQTTIntake(
                self.pipeline,
                host=self.settings.mqtt_host,
                port=self.settings.mqtt_port,
                client_id=self.settings.mqtt_client_id or f"qkd-notary-{self.settings.notary_id}",
                partition=(
                    Partition.parse(self.settings.mqtt_partition)
                    if self.settings.mqtt_partition
                    else None
                ),
                retry_after_s=self.settings.retry_after_s,
            )
            await self.mqtt.start()

    async def aclose(self) -> None:
        """Stop background work (in-flight MQTT messages finish, the worker finishes its
        current batch), then close the key source and the store."""
        if self._closed:
            return
        self._closed = True
        if self.mqtt is not None:
            await self.mqtt.stop()
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
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
        anchor = None
        if record.status is RecordStatus.ANCHORED and record.batch_id is not None:
            anchor = await self._anchor_proof(record)
        return build_receipt(record, anchor)

    async def _anchor_proof(self, record: RecordRow) -> AnchorProof:
        assert record.batch_id is not None
        proofs = self._proofs.get(record.batch_id)
        if proofs is None:
            batch = await self.store.get_batch(record.batch_id)
            if batch is None or self.chain is None:
                raise RecordNotFound(f"anchor of record {record.record_id} is not available")
            members = await self.store.batch_records(record.batch_id)
            proofs = anchor_proofs(batch, members, self.chain.chain_id, self.chain.notary_address)
            if len(self._proofs) > 256:  # anchored batches never change; keep a few
                self._proofs.pop(next(iter(self._proofs)))
            self._proofs[record.batch_id] = proofs
        return proofs[record.record_id]

    # -- operations ------------------------------------------------------------------
    async def readiness(self) -> dict[str, CheckResult]:
        """Probe storage (writable outbox) and the KME, concurrently, with a timeout."""
        checks = {
            "outbox": self._check_outbox(),
            "kme": self._check_kme(),
            "chain": self._check_chain(),
        }
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

    async def _check_chain(self) -> CheckResult:
        if self.chain is None:
            return CheckResult(False, "no chain attached: records stay in the outbox", False)
        try:
            head = await asyncio.wait_for(asyncio.to_thread(self.chain.block_number), timeout=5)
        except (NotaryError, TimeoutError) as exc:
            return CheckResult(False, type(exc).__name__, False)
        return CheckResult(True, f"chain {self.chain.chain_id} at block {head}", False)

    async def refresh_gauges(self) -> None:
        """Update gauges that are cheaper to read on scrape than to track continuously."""
        self.metrics.outbox_depth.set(await self.store.outbox_depth())
        sae_ids = sorted({d.sae_id for d in await self.store.list_devices() if d.active})
        # One status call per distinct SAE (hubs share one), all at once, bounded in time.
        results = await asyncio.gather(
            *(asyncio.wait_for(self.keys.stock(sae_id), timeout=2) for sae_id in sae_ids),
            return_exceptions=True,
        )
        for sae_id, stock in zip(sae_ids, results, strict=True):
            if isinstance(stock, int):
                self.metrics.key_stock.labels(sae_id).set(stock)
