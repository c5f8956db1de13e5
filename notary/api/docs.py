"""``/docs``: Swagger UI for the notary's OpenAPI document, served from the package.

FastAPI's default page loads Swagger UI from a CDN, so an operator on an isolated network
(or offline) got a blank page. The files (Swagger UI 5, which reads OpenAPI 3.1) come from
the pinned ``fastapi-offline`` distribution and are served under ``/docs/static``; ReDoc
(also CDN-only) is not offered.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from notary.api.bounded import BoundedJSONRoute

__all__ = ["install_docs"]

SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` with its own, local files."""
    app.mount("/docs/static", StaticFiles(directory=SWAGGER_DIR), name="swagger-ui")
    router = APIRouter(include_in_schema=False, route_class=BoundedJSONRoute)

    @router.get("/docs")
    async def read_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon.png",
        )

    app.include_router(router)
