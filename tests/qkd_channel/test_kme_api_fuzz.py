"""Arbitrary request bodies never crash the KME: every answer is 200 or a standard error body.

Runs the real application in-process (no sockets) with the caller's certificate placed in
the ASGI TLS extension exactly as :class:`~qkd_channel.kme.tls.MTLSHttpToolsProtocol` does.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkd_channel.kme.api import create_app
from qkd_channel.kme.certs import sae_paths
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.store import KeyStore
from tests.qkd_channel.conftest import kme_config

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
enc_bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "number": json_values | st.integers(-5, 200),
            "size": json_values | st.integers(-64, 70_000),
            "additional_slave_SAE_IDs": json_values | st.lists(st.text(max_size=10), max_size=6),
            "extension_mandatory": json_values,
            "extension_optional": json_values,
        },
    )
    | json_values
)
dec_bodies = (
    st.fixed_dictionaries(
        {
            "key_IDs": json_values
            | st.lists(st.fixed_dictionaries({"key_ID": json_values | st.uuids().map(str)}))
        }
    )
    | json_values
)


class AppClient:
    """Synchronous calls into the in-process app, whose lifespan runs in a portal thread."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, client: httpx.AsyncClient):
        self._portal, self._client = portal, client

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            return await self._client.post(url, **kwargs)

        return self._portal.call(call)


@pytest.fixture(scope="module")
def app_client(kme_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppClient]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    config = kme_config(kme_pki, data_dir, "kme-a", LinkEnd.A, "kme-b", "https://127.0.0.1:9")
    with KeyStore(data_dir, kme_id="kme-a", end=LinkEnd.A) as store:
        store.add_block("blk-0", bytes(4096))
    pem = sae_paths(kme_pki, "device-1")[0].read_text()
    app = create_app(config)

    async def with_certificate(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})["tls"] = {"client_cert_chain": [pem]}
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=with_certificate)
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        client = httpx.AsyncClient(transport=transport, base_url="https://kme")
        try:
            yield AppClient(portal, client)
        finally:
            portal.call(client.aclose)


def _assert_answer(response: Any) -> None:
    assert response.status_code in {200, 400, 401, 503}, response.text
    if response.status_code != 200:
        body = response.json()
        assert set(body) == {"message", "details"}
        assert isinstance(body["details"], list)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=enc_bodies)
def test_enc_keys_answers_every_body_with_the_standard_shapes(
    app_client: AppClient, body: Any
) -> None:
    _assert_answer(app_client.post("/api/v1/keys/notary/enc_keys", json=body))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=dec_bodies)
def test_dec_keys_answers_every_body_with_the_standard_shapes(
    app_client: AppClient, body: Any
) -> None:
    response = app_client.post("/api/v1/keys/device-2/dec_keys", json=body)
    _assert_answer(response)
    assert response.status_code != 200  # nothing was ever allocated for this KME's SAEs


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=64), path=st.sampled_from(["enc_keys", "dec_keys"]))
def test_arbitrary_bytes_are_a_400_not_a_crash(
    app_client: AppClient, raw: bytes, path: str
) -> None:
    response = app_client.post(
        f"/api/v1/keys/notary/{path}", content=raw, headers={"content-type": "application/json"}
    )
    _assert_answer(response)
