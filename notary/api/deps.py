"""FastAPI dependencies: the service instance and the admin bearer-token guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from notary.errors import AdminUnauthorized
from notary.service import NotaryService

__all__ = ["AdminDep", "ServiceDep", "get_service", "require_admin"]

_bearer = HTTPBearer(auto_error=False, description="Token from <data_dir>/admin.token")


async def get_service(request: Request) -> NotaryService:
    # async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request.
    service: NotaryService = request.app.state.service
    return service


ServiceDep = Annotated[NotaryService, Depends(get_service)]


async def require_admin(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse the request unless it carries the admin token (compared in constant time)."""
    if credentials is None or not service.admin_token_matches(credentials.credentials):
        raise AdminUnauthorized("a valid admin bearer token is required")


AdminDep = Depends(require_admin)
