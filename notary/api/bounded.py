"""JSON request bodies of the API: parsed with a nesting limit, never by ``json.loads``.

FastAPI parses a JSON body with ``json.loads`` before any dependency runs, so before the
admin token is checked. In the notary process that is a remote crash: py-evm and py_ecc
raise the recursion limit to 100,000, and ``json.loads`` of a body nested some 65,000
deep overflows the C stack (see :mod:`qkd_channel.boundedjson`). Every router of the
notary's app uses :class:`BoundedJSONRoute`, whose requests parse with
:func:`qkd_channel.boundedjson.loads`: an over-deep body is a 400 like any malformed one.
The size of any body is capped for the whole app by ``create_app`` (FastAPI's
``max_body_size``), so nobody can make the notary buffer an unbounded body either.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from qkd_channel import boundedjson

__all__ = ["BoundedJSONRequest", "BoundedJSONRoute"]


class BoundedJSONRequest(Request):
    """A request whose ``json()`` refuses documents nested deeper than 200 levels."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = boundedjson.loads(await self.body())
        return self._json


class BoundedJSONRoute(APIRoute):
    """An ``APIRoute`` that hands its endpoint a :class:`BoundedJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(BoundedJSONRequest(request.scope, request.receive))

        return bounded
