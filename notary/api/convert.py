"""Stored rows to public schemas, field by field (nothing internal leaks by default)."""

from __future__ import annotations

from notary.api.schemas import AccessTokenPublic, DeviceEventPublic, DevicePublic
from notary.storage.base import AccessTokenRow, DeviceEvent, DeviceRow

__all__ = ["device_public", "token_public"]


def token_public(token: AccessTokenRow) -> AccessTokenPublic:
    return AccessTokenPublic(
        token_id=token.token_id,
        role=token.role,
        device_id=token.device_id,
        label=token.label,
        created_at=token.created_at,
        revoked_at=token.revoked_at,
    )


def device_public(device: DeviceRow, events: list[DeviceEvent]) -> DevicePublic:
    return DevicePublic(
        device_id=device.device_id,
        sae_id=device.sae_id,
        owner=device.owner,
        active=device.active,
        trusted=device.trusted,
        approved_firmware_digest=device.approved_digest,
        current_firmware_digest=device.current_digest,
        last_sequence=device.last_sequence,
        registered_at=device.registered_at,
        attestation_count=device.attestation_count,
        last_change_at=device.last_change_at,
        history=[
            DeviceEventPublic(
                kind=event.kind,
                firmware_digest=event.digest,
                at=event.at,
                record_id=event.record_id,
                chain_tx_hash=event.chain_tx_hash,
            )
            for event in events
        ],
    )
