"""The KME's rules: who may ask for what, request limits, and the enc_keys/dec_keys flows.

Requests are served in batches (:mod:`qkd_channel.kme.batching`), like a database group
commit. ``enc_keys`` requests that arrive while an allocation is in flight are carved
together in one store transaction and confirmed with the peer KME in one round trip; each is
still answered only after the peer has confirmed its keys, and a batch the peer refuses is
put back and retried request by request, so one bad request cannot fail its neighbours.
``dec_keys`` requests share one store transaction, each all-or-nothing on its own.

HTTP-free: it raises ``KMERequestRejected`` (400), ``KMEUnauthorized`` (401),
``KMEUnavailable`` (503) and ``KeyStoreError`` (peer sync conflicts), which the API layer maps
to the standard error body in one place.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio.to_thread

from qkd_channel.errors import (
    KeyStoreError,
    KMERequestRejected,
    KMEUnauthorized,
    KMEUnavailable,
)
from qkd_channel.keys import QKDKey
from qkd_channel.kme.batching import Batcher, Pending
from qkd_channel.kme.config import KMEConfig
from qkd_channel.kme.identity import Identity, Role, validate_entity_id
from qkd_channel.kme.peer import PeerLink, SyncOutcome, SyncResult
from qkd_channel.kme.schemas import AllocationRequest, Status
from qkd_channel.kme.store import KeyAllocation, KeyOrder, KeyStore, Reservation, Segment

__all__ = ["RETRY_AFTER_SECONDS", "KeyManager"]

log = logging.getLogger(__name__)

#: What a 503 asks callers to wait before trying again.
RETRY_AFTER_SECONDS = 1.0

#: At most this many keys are carved and sent to the peer in one allocation batch.
MAX_BATCH_KEYS = 512

_T = TypeVar("_T")


async def _in_thread(func: Callable[..., _T], *args: Any) -> _T:
    """SQLite calls block (fsync); keep them off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args))


_Allocation = Pending[KeyOrder, list[QKDKey]]
_Delivery = Pending[tuple[str, str, tuple[str, ...]], list[QKDKey]]


def _interrupted() -> KMEUnavailable:
    return KMEUnavailable("request interrupted, try again", retry_after=RETRY_AFTER_SECONDS)


class KeyManager:
    """One KME: its configuration, its key buffer and its link to the peer KME."""

    def __init__(
        self,
        config: KMEConfig,
        store: KeyStore,
        peer: PeerLink,
        *,
        key_path: Mapping[str, Any] | None = None,
    ) -> None:
        """``key_path``: what feeds the key buffer, reported in every Status
        (:func:`~qkd_channel.kme.source.reported_key_path`); ``None`` claims nothing."""
        self.config = config
        self.key_path = None if key_path is None else dict(key_path)
        self.store = store
        self.peer = peer
        # Allocations from this end's half go one batch at a time, so that a reservation the
        # peer refused can be put back without disturbing a later one.
        self._allocations: Batcher[KeyOrder, list[QKDKey]] = Batcher(
            self._allocate,
            interrupted=_interrupted,
            max_weight=MAX_BATCH_KEYS,
            weight=lambda order: len(order.sizes_bits),
        )
        self._deliveries: Batcher[tuple[str, str, tuple[str, ...]], list[QKDKey]] = Batcher(
            self._deliver,
            interrupted=_interrupted,
            max_weight=MAX_BATCH_KEYS,
            weight=lambda request: len(request[2]),
        )

    # -- who is asking ----------------------------------------------------------------------

    def _require_sae(self, caller: Identity | None) -> str:
        if caller is None or caller.role is not Role.SAE:
            raise KMEUnauthorized("an SAE client certificate is required")
        allowed = self.config.sae_ids
        if allowed is not None and caller.entity_id not in allowed:
            raise KMEUnauthorized(f"SAE {caller.entity_id} is not attached to this KME")
        return caller.entity_id

    def _require_peer_kme(self, caller: Identity | None) -> None:
        if caller != Identity(Role.KME, self.config.peer_kme_id):
            raise KMEUnauthorized("only the peer KME may use this interface")

    @staticmethod
    def _sae_id(value: str, what: str) -> str:
        try:
            return validate_entity_id(value)
        except ValueError:
            raise KMERequestRejected(f"{what} is not a valid SAE ID") from None

    # -- ETSI GS QKD 014 --------------------------------------------------------------------

    def stock(self) -> int:
        """Keys of the default size this KME can still hand to a master SAE."""
        return self.store.available_bits(self.config.end) // self.config.limits.key_size

    async def status(self, caller: Identity | None, slave_sae_id: str) -> Status:
        master = self._require_sae(caller)
        slave = self._sae_id(slave_sae_id, "slave_SAE_ID")
        limits = self.config.limits
        stock = await _in_thread(self.stock)
        return Status(
            source_KME_ID=self.config.kme_id,
            target_KME_ID=self.config.peer_kme_id,
            master_SAE_ID=master,
            slave_SAE_ID=slave,
            key_size=limits.key_size,
            stored_key_count=min(stock, limits.max_key_count),
            max_key_count=limits.max_key_count,
            max_key_per_request=limits.max_key_per_request,
            max_key_size=limits.max_key_size,
            min_key_size=limits.min_key_size,
            max_SAE_ID_count=limits.max_sae_id_count,
            status_extension=None if self.key_path is None else {"key_path": self.key_path},
        )

    def _check_key_request(
        self,
        master: str,
        slaves: Sequence[str],
        number: int,
        size: int,
        extension_mandatory: Sequence[dict[str, Any]],
    ) -> None:
        limits = self.config.limits
        if extension_mandatory:
            names = sorted({name for ext in extension_mandatory for name in ext})
            raise KMERequestRejected(
                "not all extension_mandatory parameters are supported",
                [{"extension_mandatory_unsupported": names}],
            )
        if not 1 <= number <= limits.max_key_per_request:
            raise KMERequestRejected(
                f"number must be between 1 and max_key_per_request ({limits.max_key_per_request})"
            )
        if size % 8:
            raise KMERequestRejected("size shall be a multiple of 8")
        if not limits.min_key_size <= size <= limits.max_key_size:
            raise KMERequestRejected(
                f"size must be between min_key_size ({limits.min_key_size}) "
                f"and max_key_size ({limits.max_key_size})"
            )
        if len(slaves) - 1 > limits.max_sae_id_count:
            raise KMERequestRejected(
                f"at most {limits.max_sae_id_count} additional_slave_SAE_IDs are supported"
            )
        if len(set(slaves)) != len(slaves) or master in slaves:
            raise KMERequestRejected("slave SAE IDs must be distinct and differ from the master")

    async def enc_keys(
        self,
        caller: Identity | None,
        slave_sae_id: str,
        *,
        number: int | None = None,
        size: int | None = None,
        additional_slave_sae_ids: Sequence[str] = (),
        extension_mandatory: Sequence[dict[str, Any]] = (),
    ) -> list[QKDKey]:
        """Carve keys for ``caller`` (master) and ``slave_sae_id``; confirm with the peer first."""
        master = self._require_sae(caller)
        slaves = [self._sae_id(slave_sae_id, "slave_SAE_ID")]
        slaves += [self._sae_id(s, "additional_slave_SAE_IDs") for s in additional_slave_sae_ids]
        number = 1 if number is None else number
        size = self.config.limits.key_size if size is None else size
        self._check_key_request(master, slaves, number, size, extension_mandatory)
        keys = await self._allocations.submit(KeyOrder(master, tuple(slaves), (size,) * number))
        log.info(
            "enc_keys: %d key(s) of %d bits for master %s, slaves %s: %s",
            number,
            size,
            master,
            ",".join(slaves),
            ",".join(k.key_id for k in keys),
        )
        return keys

    async def _allocate(self, batch: list[_Allocation]) -> None:
        """Carve, confirm with the peer, and answer every request of ``batch``."""
        try:
            reservation = await _in_thread(self.store.reserve_orders, [p.item for p in batch])
        except KeyStoreError as exc:
            if exc.reason != "insufficient":
                for p in batch:
                    p.settle(error=exc)
            elif len(batch) > 1:  # the smaller requests may still fit on their own
                for p in batch:
                    await self._allocations.run_batch([p])
            else:
                bits = sum(batch[0].item.sizes_bits)
                batch[0].settle(
                    error=await self._unavailable("not enough key material", requested_bits=bits)
                )
            return
        result = await self.peer.send_allocations(reservation.allocations)
        if result.outcome is not SyncOutcome.COMMITTED:
            if result.outcome is SyncOutcome.REFUSED and len(batch) > 1:
                # The peer recorded nothing; find out which request it objects to.
                await _in_thread(self.store.release, reservation)
                for p in batch:
                    await self._allocations.run_batch([p])
                return
            try:
                await self._settle_failed_sync(reservation, result)
            except (KMERequestRejected, KMEUnavailable) as exc:
                for p in batch:
                    p.settle(error=exc)
            return
        keys = iter(reservation.keys)
        for p in batch:
            p.settle([next(keys) for _ in p.item.sizes_bits])

    async def _settle_failed_sync(self, reservation: Reservation, result: SyncResult) -> None:
        """Put bits back if the peer provably recorded nothing, then raise the caller's error."""
        if result.outcome is SyncOutcome.UNKNOWN:
            log.warning(
                "peer KME sync outcome unknown; burning %d reserved bits",
                sum(k.size_bits for k in reservation.keys),
            )
            raise await self._unavailable("peer KME did not confirm the key allocation")
        await _in_thread(self.store.release, reservation)
        if result.outcome is SyncOutcome.NOT_SENT:
            raise await self._unavailable("peer KME unreachable")
        error = result.error
        reason = next((d.get("reason") for d in (error.details if error else [])), None)
        if result.status_code == 400 and error is not None:
            raise KMERequestRejected(f"peer KME refused: {error.message}", error.details)
        if reason == "unknown_block":
            await self._forget_block_the_peer_lost(error.details if error else [])
            raise await self._unavailable("key material not yet synchronised with the peer KME")
        log.error("peer KME refused an allocation (HTTP %s, %s)", result.status_code, reason)
        raise await self._unavailable("peer KME refused the key allocation")

    async def _forget_block_the_peer_lost(self, details: list[dict[str, Any]]) -> None:
        """After ``unknown_block``: drop the block here if the peer has moved past it."""
        detail = details[0] if details else {}
        lost, newest = detail.get("block_id"), detail.get("newest_block")
        if not (isinstance(lost, str) and isinstance(newest, str)):
            return
        dropped = await _in_thread(self.store.drop_block_lost_by_peer, lost, newest)
        if dropped:
            log.warning(
                "link block %s never reached the peer KME, which holds the later block %s; "
                "dropped its %d unused bits",
                lost,
                newest,
                dropped,
            )

    async def _unavailable(
        self, message: str, *, requested_bits: int | None = None
    ) -> KMEUnavailable:
        stock = await _in_thread(self.stock)
        detail: dict[str, object] = {
            "stored_key_count": stock,
            "key_size": self.config.limits.key_size,
        }
        if requested_bits is not None:
            detail["requested_bits"] = requested_bits
        return KMEUnavailable(message, [detail], stock=stock, retry_after=RETRY_AFTER_SECONDS)

    async def dec_keys(
        self, caller: Identity | None, master_sae_id: str, key_ids: Sequence[str]
    ) -> list[QKDKey]:
        """Hand the keys named by ``key_ids`` to ``caller`` if it is their slave; once."""
        slave = self._require_sae(caller)
        master = self._sae_id(master_sae_id, "master_SAE_ID")
        if not 1 <= len(key_ids) <= self.config.limits.max_key_per_request:
            raise KMERequestRejected(
                f"between 1 and {self.config.limits.max_key_per_request} key_IDs per request"
            )
        canonical: list[str] = []
        for key_id in key_ids:
            try:
                canonical.append(str(uuid.UUID(key_id)))
            except ValueError:
                raise KMERequestRejected("key_ID is not a UUID", [{"key_ID": key_id}]) from None
        if len(set(canonical)) != len(canonical):
            raise KMERequestRejected("duplicate key_ID in request")
        keys = await self._deliveries.submit((slave, master, tuple(canonical)))
        log.info("dec_keys: %d key(s) from master %s to slave %s", len(keys), master, slave)
        return keys

    async def _deliver(self, batch: list[_Delivery]) -> None:
        """Take the keys of every request of ``batch`` in one store transaction."""
        outcomes = await _in_thread(self.store.take_keys_batch, [p.item for p in batch])
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not isinstance(outcome, KeyStoreError):
                pending.settle(outcome)
            elif outcome.reason == "not_entitled":
                pending.settle(
                    error=KMEUnauthorized(
                        "the caller is not the slave SAE of these keys for this master SAE"
                    )
                )
            else:
                pending.settle(
                    error=KMERequestRejected(
                        "unknown key_ID (never allocated, or already delivered)"
                    )
                )

    # -- KME-to-KME -------------------------------------------------------------------------

    async def accept_allocations(self, caller: Identity | None, request: AllocationRequest) -> None:
        """Record keys the peer carved from its half (peer side of ``enc_keys``)."""
        self._require_peer_kme(caller)
        if request.source_KME_ID != self.config.peer_kme_id:
            raise KMEUnauthorized("source_KME_ID does not match the peer's certificate")
        if request.source_end != self.config.end.other.value:
            # Both KMEs configured as the same link end would carve the same bits.
            raise KeyStoreError("both KMEs claim the same link end", reason="end_mismatch")
        allowed = self.config.sae_ids
        allocations: list[KeyAllocation] = []
        for item in request.keys:
            for sae in item.slave_SAE_IDs:
                self._sae_id(sae, "slave_SAE_ID")
                if allowed is not None and sae not in allowed:
                    raise KMERequestRejected(
                        f"slave SAE {sae} is not attached to KME {self.config.kme_id}"
                    )
            try:
                key_id = str(uuid.UUID(item.key_ID))
            except ValueError:
                raise KMERequestRejected("key_ID is not a UUID") from None
            allocations.append(
                KeyAllocation(
                    key_id,
                    self._sae_id(item.master_SAE_ID, "master_SAE_ID"),
                    tuple(item.slave_SAE_IDs),
                    tuple(Segment(s.block_ID, s.offset, s.length) for s in item.segments),
                )
            )
        await _in_thread(self.store.apply_peer_allocations, allocations)
        log.info(
            "recorded %d key(s) allocated by peer KME %s", len(allocations), request.source_KME_ID
        )
