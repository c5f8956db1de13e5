"""``GET /v1/devices`` and ``GET /v1/devices/{device_id}``: public device information."""

from __future__ import annotations

from fastapi import APIRouter

from notary.api.bounded import BoundedJSONRoute
from notary.api.convert import device_public
from notary.api.deps import ServiceDep
from notary.api.schemas import DevicePublic, Problem

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["devices"], route_class=BoundedJSONRoute)


@router.get("/devices", operation_id="list_devices", response_model=list[DevicePublic])
async def list_devices(service: ServiceDep) -> list[DevicePublic]:
    """All registered devices with their trust status and history."""
    out = []
    for device in await service.devices():
        _, events = await service.device(device.device_id)
        out.append(device_public(device, events))
    return out


@router.get(
    "/devices/{device_id}",
    operation_id="read_device",
    response_model=DevicePublic,
    responses={404: {"model": Problem, "content": {"application/problem+json": {}}}},
)
async def read_device(device_id: str, service: ServiceDep) -> DevicePublic:
    """Registration, trust status and attestation history of one device."""
    device, events = await service.device(device_id)
    return device_public(device, events)
