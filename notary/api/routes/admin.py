"""Admin endpoints (bearer token from ``<data_dir>/admin.token``), mirrored by the CLI."""

from __future__ import annotations

from fastapi import APIRouter, status

from notary.api.bounded import BoundedJSONRoute
from notary.api.convert import device_public
from notary.api.deps import AdminDep, ServiceDep
from notary.api.schemas import DeviceCreate, DevicePublic, DigestApproval, Problem

__all__ = ["router"]

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}

router = APIRouter(
    route_class=BoundedJSONRoute,
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[AdminDep],
    responses={401: _PROBLEM},
)


@router.post(
    "/devices",
    operation_id="create_device",
    status_code=status.HTTP_201_CREATED,
    response_model=DevicePublic,
    responses={409: _PROBLEM},
)
async def create_device(body: DeviceCreate, service: ServiceDep) -> DevicePublic:
    """Register a device with its SAE ID and, optionally, its expected firmware digest."""
    await service.register_device(
        body.device_id,
        sae_id=body.sae_id,
        owner=body.owner,
        expected_digest=body.expected_firmware_digest,
    )
    device, events = await service.device(body.device_id)
    return device_public(device, events)


@router.post(
    "/devices/{device_id}/approve",
    operation_id="approve_device_firmware",
    response_model=DevicePublic,
    responses={404: _PROBLEM},
)
async def approve_device_firmware(
    device_id: str, body: DigestApproval, service: ServiceDep
) -> DevicePublic:
    """Approve a firmware digest; the device is trusted again once it runs it."""
    await service.approve_firmware(device_id, body.firmware_digest)
    device, events = await service.device(device_id)
    return device_public(device, events)


@router.post(
    "/devices/{device_id}/deactivate",
    operation_id="deactivate_device",
    response_model=DevicePublic,
    responses={404: _PROBLEM},
)
async def deactivate_device(device_id: str, service: ServiceDep) -> DevicePublic:
    """Deactivate a device: its envelopes are refused from now on."""
    await service.deactivate_device(device_id)
    device, events = await service.device(device_id)
    return device_public(device, events)
