"""Admin endpoints (bearer token from ``<data_dir>/admin.token``), mirrored by the CLI."""

from __future__ import annotations

from fastapi import APIRouter, status

from notary.api.bounded import BoundedJSONRoute
from notary.api.convert import device_public, token_public
from notary.api.deps import AdminDep, ServiceDep
from notary.api.schemas import (
    AccessTokenCreate,
    AccessTokenIssued,
    AccessTokenPublic,
    DeviceCreate,
    DevicePublic,
    DigestApproval,
    Problem,
    Redeployment,
)
from notary.errors import InvalidRequest

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


@router.post(
    "/tokens",
    operation_id="create_access_token",
    status_code=status.HTTP_201_CREATED,
    response_model=AccessTokenIssued,
    responses={404: _PROBLEM, 422: _PROBLEM},
)
async def create_access_token(body: AccessTokenCreate, service: ServiceDep) -> AccessTokenIssued:
    """Issue an owner (one device) or auditor (every device) token; shown once."""
    if (body.role.value == "owner") != (body.device_id is not None):
        raise InvalidRequest("an owner token names exactly one device_id; an auditor token none")
    secret, row = await service.issue_access_token(
        role=body.role, device_id=body.device_id, label=body.label
    )
    return AccessTokenIssued(token=secret, **token_public(row).model_dump())


@router.get(
    "/tokens",
    operation_id="list_access_tokens",
    response_model=list[AccessTokenPublic],
)
async def list_access_tokens(service: ServiceDep) -> list[AccessTokenPublic]:
    """Every access token ever issued (handles, never the tokens)."""
    return [token_public(row) for row in await service.store.list_access_tokens()]


@router.post(
    "/tokens/{token_id}/revoke",
    operation_id="revoke_access_token",
    response_model=AccessTokenPublic,
    responses={404: _PROBLEM},
)
async def revoke_access_token(token_id: str, service: ServiceDep) -> AccessTokenPublic:
    """Revoke a token at once (its cookie sessions in the explorer end too)."""
    return token_public(await service.revoke_access_token(token_id))


@router.post(
    "/chain/redeploy",
    operation_id="redeploy_chain",
    response_model=Redeployment,
    responses={409: _PROBLEM, 503: _PROBLEM},
)
async def redeploy_chain(service: ServiceDep) -> Redeployment:
    """Deploy new contracts and anchor every record again (after a chain reset)."""
    plan = await service.redeploy_chain()
    chain = service.chain
    assert chain is not None
    return Redeployment(
        chain_id=chain.chain_id,
        registry=chain.registry_address,
        notary=chain.notary_address,
        batches=plan.batches,
        records=plan.records,
        device_events=plan.device_events,
    )
