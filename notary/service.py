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

from notary.access import PUBLIC, Viewer, new_access_token, token_hash
from notary.anchoring import AnchorChain, AnchoringWorker, record_input
from notary.chain.client import ChainClient
from notary.chain.deployment import Deployment, load_deployment
from notary.chain.merkle import MerkleTree, record_leaf
from notary.chain_source import ChainSource
from notary.config import AnchorMode, NotarySettings, load_kem_key, load_or_create_admin_token
from notary.errors import (
    AccessDenied,
    ChainMisconfigured,
    ChainReset,
    ChainUnavailable,
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
from notary.redeploy import ReanchorPlan, requeue_everything
from notary.stock_watch import StockWatch
from notary.storage import open_store
from notary.storage.base import (
    AccessRole,
    AccessTokenRow,
    BatchRow,
    DeviceEvent,
    DeviceRow,
    RecordRow,
    RecordStatus,
    Store,
)
from qkd_channel.hybrid import KEMPrivateKey
from qkd_channel.kme.client import AsyncKMEClient
from qkd_channel.security_levels import delivery_hop_of

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
        KMEKeySource(client, delivery_hop=delivery_hop_of(settings.kme_url)),
        window_s=settings.kme_coalesce_ms / 1000,
        max_keys=settings.kme_max_keys_per_request,
    )


def _recorded_deployment(settings: NotarySettings) -> Deployment | None:
    """The contracts named in ``chain.json`` (receipts can name them while the node is
    down); ``None`` when there is no readable record."""
    try:
        return load_deployment(settings.data_dir)
    except ChainMisconfigured:
        return None


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
        chain_source: ChainSource | None = None,
        metrics: NotaryMetrics | None = None,
        clock: Callable[[], float] = time.time,
        kem_key: KEMPrivateKey | None = None,
    ) -> None:
        """``chain``: an open client to anchor through; or ``chain_source``: opened in the
        background by :meth:`start` (the node may be down), re-opened on redeployment.
        ``kem_key``: the ML-KEM-768 key ``hybrid`` envelopes are sealed to (none: refused)."""
        self.settings = settings
        self.store = store
        self.keys = keys
        self.metrics = metrics or NotaryMetrics()
        self._admin_token = admin_token.encode()
        self._clock = clock
        self.chain: AnchorChain | None = None
        self.worker: AnchoringWorker | None = None
        #: Why no chain is attached, while none is ("connecting: ...", or a reset).
        self.chain_problem: str | None = "no chain attached: records stay in the outbox"
        #: A missing chain that makes the notary unready (a reset), not merely degraded.
        self.chain_problem_blocking = False
        self.pipeline = IntakePipeline(
            store=store,
            keys=keys,
            notary_id=settings.notary_id,
            metrics=self.metrics,
            max_envelope_bytes=settings.max_envelope_bytes,
            aead_session_ttl_s=settings.aead_session_ttl_s,
            clock=clock,
            kem_key=kem_key,
        )
        #: What devices pin for ``hybrid`` (``None``: this notary refuses hybrid envelopes).
        self.kem_public_key = None if kem_key is None else kem_key.public_key
        self.mqtt: MQTTIntake | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._anchoring = False
        self._proofs: dict[tuple[int, str], dict[str, AnchorProof]] = {}
        self._deployment = _recorded_deployment(settings)
        #: Estimates when each device SAE's key stock runs out (warns ahead of it).
        self.stock_watch = StockWatch(warn_below_s=settings.key_stock_warn_s, clock=clock)
        self._chain_source = chain_source
        self._owned_chain: ChainClient | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._closed = False
        if chain is not None:
            if chain_source is not None and isinstance(chain, ChainClient):
                self._owned_chain = chain  # opened from the source: closed with the service
            self.attach_chain(chain)

    @classmethod
    def open(
        cls,
        settings: NotarySettings,
        *,
        keys: KeySource | None = None,
        chain: AnchorChain | None = None,
        chain_source: ChainSource | None = None,
    ) -> NotaryService:
        """Open the store ``settings.database_url`` names (SQLite in the data directory by
        default), the admin token and the ML-KEM key if there is one; reach the KME the
        settings name unless a key source is given; anchor through ``chain`` if given."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        kem_key = load_kem_key(settings)  # before opening anything: a bad key file refuses
        return cls(
            settings,
            store=open_store(settings),
            keys=keys if keys is not None else kme_key_source(settings),
            admin_token=load_or_create_admin_token(settings.data_dir),
            chain=chain,
            chain_source=chain_source,
            kem_key=kem_key,
        )

    def attach_chain(self, chain: AnchorChain) -> None:
        """Anchor through ``chain`` from now on (at start, or once a chain that was down at
        start is reachable, or after a redeployment): a fresh worker, started at once if
        the service already runs its background work."""
        self.chain = chain
        self.chain_problem = None
        self.chain_problem_blocking = False
        self._proofs.clear()
        self.worker = AnchoringWorker(
            self.store,
            chain,
            mode=self.settings.anchor_mode,
            batch_size=self.settings.batch_size,
            max_latency_s=self.settings.batch_max_latency_s,
            publish_payloads=self.settings.store_payload_on_chain,
            metrics=self.metrics,
            reconcile_interval_s=self.settings.reconcile_interval_s,
            clock=self._clock,
        )
        self.pipeline.on_accepted = self.worker.notify
        if self._anchoring:
            self._start_worker()

    def _start_worker(self) -> None:
        assert self.worker is not None
        self._worker_task = asyncio.create_task(self.worker.run(self._stop))
        self._tasks.append(self._worker_task)

    def detach_chain(self, problem: str, *, blocking: bool) -> AnchorChain | None:
        """Stop using the chain (it is replaced, or gone); the worker stops after its
        current step. Returns the detached chain for its owner to close."""
        chain, self.chain = self.chain, None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.pipeline.on_accepted = None
        self.chain_problem = problem
        self.chain_problem_blocking = blocking
        return chain

    async def _connect_chain(self, *, max_backoff_s: float = 30.0) -> None:
        """Open the chain in the background until it works (or the service stops).

        A node that is down is a degraded start (``/readyz`` says so, intake goes on); a
        chain that lost our contracts is a reset (``/readyz`` red until an operator
        redeploys); any other misconfiguration is reported the same way and retried, as
        the node may be fixed under us.
        """
        assert self._chain_source is not None
        backoff = 0.5
        while not self._stop.is_set() and self.chain is None:
            try:
                client = await asyncio.to_thread(self._chain_source.open)
            except ChainUnavailable as exc:
                self.chain_problem = f"degraded: chain node unreachable ({exc})"
                self.chain_problem_blocking = False
            except ChainMisconfigured as exc:
                if self.chain_problem != str(exc):
                    log_event(log, logging.ERROR, "chain not usable", error=str(exc))
                self.chain_problem = str(exc)
                self.chain_problem_blocking = True
                self.metrics.chain_reset.set(int(isinstance(exc, ChainReset)))
            else:
                if self._stop.is_set():
                    client.close()
                    return
                self._owned_chain = client
                self.metrics.chain_reset.set(0)
                self.attach_chain(client)
                log_event(log, logging.INFO, "chain attached", chain_id=client.chain_id)
                return
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=backoff)
            except TimeoutError:
                backoff = min(max_backoff_s, backoff * 2)

    async def redeploy_chain(self) -> ReanchorPlan:
        """Deploy new contracts and anchor every record and device event in them again
        (after a chain reset, or to migrate from a superseded build)."""
        if self._chain_source is None:
            raise ChainMisconfigured(
                "this notary was given an open chain; stop it and run "
                "`qkd-notary chain redeploy --re-anchor`"
            )
        self.detach_chain("redeploying the contracts", blocking=True)
        if self._worker_task is not None:
            # Its current step ends (a send may be under way) before the chain goes.
            await asyncio.gather(self._worker_task, return_exceptions=True)
            self._worker_task = None
        if self._owned_chain is not None:
            self._owned_chain.close()
            self._owned_chain = None
        try:
            client = await asyncio.to_thread(self._chain_source.redeploy)
        except BaseException:
            if self._anchoring:
                self._tasks.append(asyncio.create_task(self._connect_chain()))
            raise
        plan = await requeue_everything(self.store)
        self._deployment = _recorded_deployment(self.settings)
        self._owned_chain = client
        self.metrics.chain_reset.set(0)
        self.attach_chain(client)
        log_event(
            log,
            logging.WARNING,
            "contracts redeployed: anchoring everything again",
            registry=client.registry_address,
            notary=client.notary_address,
            batches=plan.batches,
            records=plan.records,
            device_events=plan.device_events,
        )
        return plan

    async def start(self, *, anchoring: bool = True, mqtt: bool = True) -> None:
        """Start background work: the anchoring worker (when a chain is attached and
        ``anchoring``) and the MQTT intake (when ``settings.mqtt_host`` is set and ``mqtt``)."""
        self._anchoring = anchoring
        if anchoring and self.worker is not None:
            self._start_worker()
        if self._chain_source is not None and self.chain is None:
            self.chain_problem = "connecting to the chain node"
            self._tasks.append(asyncio.create_task(self._connect_chain()))
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
        if self._owned_chain is not None:
            self._owned_chain.close()
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
    async def receipt(self, record_id: str, *, viewer: Viewer = PUBLIC) -> Receipt:
        """The current receipt of a record (raises ``RecordNotFound``); with the salt and
        the plaintext when ``viewer`` may see this device's readings."""
        record = await self.store.get_record(record_id.lower())
        if record is None:
            raise RecordNotFound(f"no record {record_id}")
        anchor = None
        if record.status is RecordStatus.ANCHORED and record.batch_id is not None:
            anchor = await self._anchor_proof(record)
        return build_receipt(record, anchor, disclose=viewer.may_read(record.device_id))

    async def viewer(self, bearer: str | None) -> Viewer:
        """Who presents ``bearer``: the admin, an owner or auditor token, or the public
        (no token). A token that is unknown, revoked or malformed raises ``AccessDenied``."""
        if bearer is None:
            return PUBLIC
        if self.admin_token_matches(bearer):
            return Viewer(label="admin", everything=True)
        token = await self.store.find_access_token(token_hash(bearer))
        if token is None or token.revoked_at is not None:
            raise AccessDenied("unknown or revoked access token")
        return Viewer(label=token.label, token=token)

    async def issue_access_token(
        self, *, role: AccessRole, device_id: str | None, label: str
    ) -> tuple[str, AccessTokenRow]:
        """A new bearer token (returned once, stored only as its SHA-256) and its row."""
        if (role is AccessRole.OWNER) != (device_id is not None):
            raise ValueError("an owner token names exactly one device; an auditor token none")
        secret = new_access_token()
        row = await self.store.create_access_token(
            token_hash(secret), role=role, device_id=device_id, label=label, now=self._clock()
        )
        log_event(log, logging.INFO, "access token issued", token_id=row.token_id, role=role)
        return secret, row

    async def revoke_access_token(self, token_id: str) -> AccessTokenRow:
        row = await self.store.revoke_access_token(token_id, now=self._clock())
        log_event(log, logging.INFO, "access token revoked", token_id=token_id)
        return row

    async def _anchor_proof(self, record: RecordRow) -> AnchorProof | None:
        """The anchor section of an anchored record (``None`` if no chain is known)."""
        assert record.batch_id is not None
        batch = await self.store.get_batch(record.batch_id)
        target = self._anchor_target()
        if batch is None or batch.tx_hash is None or target is None:
            return None
        # A batch's proofs change only if a rollback sends it to another block (possibly
        # with the very same transaction, signed again with the same nonce).
        key = (batch.batch_id, f"{batch.tx_hash}@{batch.block_hash}")
        proofs = self._proofs.get(key)
        if proofs is None:
            members = await self.store.batch_records(record.batch_id)
            proofs = anchor_proofs(batch, members, *target)
            if len(self._proofs) > 256:
                self._proofs.pop(next(iter(self._proofs)))
            self._proofs[key] = proofs
        return proofs.get(record.record_id)

    def _anchor_target(self) -> tuple[int, str] | None:
        """Chain ID and TelemetryNotary address of the evidence: the attached chain's, or
        the deployment recorded in the data directory while the node is down."""
        if self.chain is not None:
            return self.chain.chain_id, self.chain.notary_address
        if self._deployment is not None:
            return self._deployment.chain_id, self._deployment.notary
        return None

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
        """Degraded (reported, not required) while the node is away: intake goes on and
        the outbox waits. Unready (required) once the chain lost our contracts: receipts
        would otherwise keep pointing at evidence that is gone."""
        if self.chain is None or self.worker is None:
            problem = self.chain_problem or "no chain attached"
            return CheckResult(False, problem, self.chain_problem_blocking)
        reset = self.worker.reconciler.reset_reason
        if reset is not None:
            return CheckResult(False, f"chain reset: {reset}", True)
        try:
            head = await asyncio.wait_for(asyncio.to_thread(self.chain.block_number), timeout=5)
        except (NotaryError, TimeoutError) as exc:
            return CheckResult(False, f"degraded: {type(exc).__name__}", False)
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
                depletion = self.stock_watch.observe(sae_id, stock)
                self.metrics.key_stock_depletion.labels(sae_id).set(depletion)
