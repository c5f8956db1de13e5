"""The HTTP API over ASGI: status codes, problem+json bodies, admin auth, receipts,
operations endpoints, and property-based abuse of the intake endpoint."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute

from notary.api import create_app
from notary.api.bounded import BoundedJSONRoute
from notary.api.main import MAX_REQUEST_BODY_BYTES
from notary.keysource import InMemoryKeySource
from notary.service import NotaryService
from notary.storage.base import AccessRole
from notary.telemetry import payload_hash, record_salt
from tests.notary.conftest import FIRMWARE_A, FIRMWARE_B, SimDevice

PROBLEM = "application/problem+json"


def post(client: httpx.AsyncClient, body: bytes | str, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/telemetry",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )


def assert_problem(response: httpx.Response, status: int, reason: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["reason"] == reason
    assert body["type"] == f"urn:qkd-notary:problem:{reason}"
    assert body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]


async def test_accepted_envelope_gets_202_and_a_receipt(
    client: httpx.AsyncClient, device: SimDevice
) -> None:
    plaintext = device.plaintext({"temp_c": 22.25, "door": "closed"})
    env = device.seal(plaintext)
    response = await post(client, env.to_json())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted"
    assert body["device_id"] == "dev-a" and body["sequence"] == 1
    assert body["attestation"] == "first-digest"
    receipt = (await client.get(body["receipt_url"])).json()
    assert receipt["receipt_version"] == "qkd-notary-receipt/2"
    assert receipt["record_id"] == body["record_id"]
    assert receipt["status"] == "accepted"
    assert receipt["mode"] == "otp" and receipt["key_ids"] == list(env.key_ids)
    # The in-memory "KME" does not report its link and the device did not report its
    # delivery: nothing may be labelled stronger than the weakest unknown hop.
    assert receipt["key_path"] == {"link": "unreported", "device": "unreported", "notary": "local"}
    assert receipt["security"] == {
        "confidentiality": "computational",
        "authenticity": "computational",
        "trusted_nodes": False,
    }
    assert receipt["anchor"] is None and receipt["disclosure"] is None
    # The public receipt has no salt; the device derives it from its own keys.
    salt = record_salt(env, device.last_keys)
    assert receipt["payload_hash"] == payload_hash(salt, plaintext)


async def test_disclosure_only_with_a_token_that_covers_the_device(
    client: httpx.AsyncClient,
    service: NotaryService,
    device: SimDevice,
    device_b: SimDevice,
    admin_headers: dict[str, str],
) -> None:
    plaintext = device.plaintext({"kwh": 1234.5})
    env = device.seal(plaintext)
    url = (await post(client, env.to_json())).json()["receipt_url"]
    owner_a, _ = await service.issue_access_token(
        role=AccessRole.OWNER, device_id="dev-a", label="owner of a"
    )
    owner_b, _ = await service.issue_access_token(
        role=AccessRole.OWNER, device_id="dev-b", label="owner of b"
    )
    auditor, row = await service.issue_access_token(
        role=AccessRole.AUDITOR, device_id=None, label="auditor"
    )
    expected = {
        "salt": "0x" + record_salt(env, device.last_keys).hex(),
        "payload": plaintext.decode(),
    }
    for headers in (
        {"Authorization": f"Bearer {owner_a}"},
        {"Authorization": f"Bearer {auditor}"},
        admin_headers,
    ):
        answer = await client.get(url, headers=headers)
        assert answer.status_code == 200 and answer.json()["disclosure"] == expected
    other = await client.get(url, headers={"Authorization": f"Bearer {owner_b}"})
    assert other.status_code == 200 and other.json()["disclosure"] is None
    await service.revoke_access_token(row.token_id)
    for token in (auditor, "qkdn_" + "x" * 43, "garbage"):
        refused = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401 and refused.json()["reason"] == "access-denied"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        pytest.param(b"", 400, "malformed", id="empty"),
        pytest.param(b"{not json", 400, "malformed", id="not-json"),
        pytest.param(b'{"v": 2}', 400, "malformed", id="missing-fields"),
        # py-evm raises the recursion limit to 100,000: a deep body must not crash the
        # process in the JSON parser (this one fits the 64 KiB envelope limit).
        pytest.param(b"[" * 32_000 + b"]" * 32_000, 400, "malformed", id="nested-32000-deep"),
    ],
)
async def test_malformed_bodies_are_400(
    client: httpx.AsyncClient, body: bytes, status: int, reason: str
) -> None:
    assert_problem(await post(client, body), status, reason)


async def test_replay_is_409_naming_the_record(
    client: httpx.AsyncClient, device: SimDevice
) -> None:
    env = device.seal()
    first = await post(client, env.to_json())
    problem = assert_problem(await post(client, env.to_json()), 409, "replay")
    assert problem["record_id"] == first.json()["record_id"]


async def test_authentication_failures_look_identical(
    client: httpx.AsyncClient, device: SimDevice, device_b: SimDevice, key_source: InMemoryKeySource
) -> None:
    tampered = device.seal().to_dict()
    tampered["tag"] = base64.b64encode(bytes(16)).decode()
    foreign = device.seal(sender="dev-b").to_dict()
    ghost = SimDevice("ghost", "sae-ghost", key_source).seal().to_dict()
    bodies = []
    for env in (tampered, foreign, ghost):
        bodies.append(
            assert_problem(await post(client, json.dumps(env)), 401, "authentication-failed")
        )
    assert len({json.dumps(b, sort_keys=True) for b in bodies}) == 1


async def test_oversized_body_is_413_even_without_reading_it(
    client: httpx.AsyncClient, service: NotaryService
) -> None:
    big = b"x" * (service.settings.max_envelope_bytes + 1)
    assert_problem(await post(client, big), 413, "too-large")


async def test_schema_violation_is_422(client: httpx.AsyncClient, device: SimDevice) -> None:
    env = device.seal(b'{"telemetry": {}}')
    assert_problem(await post(client, env.to_json()), 422, "schema")


async def test_kme_down_is_503_with_retry_after(
    client: httpx.AsyncClient, device: SimDevice, key_source: InMemoryKeySource
) -> None:
    key_source.available = False
    response = await post(client, device.seal().to_json())
    body = assert_problem(response, 503, "kme-unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(response.headers["retry-after"])


async def test_admin_endpoints_require_the_token(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = {"device_id": "dev-new", "sae_id": "sae-new", "owner": "plant-3"}
    assert_problem(await client.post("/v1/admin/devices", json=body), 401, "admin-unauthorized")
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert_problem(
        await client.post("/v1/admin/devices", json=body, headers=wrong), 401, "admin-unauthorized"
    )
    created = await client.post("/v1/admin/devices", json=body, headers=admin_headers)
    assert created.status_code == 201, created.text
    assert created.json()["history"][0]["kind"] == "registered"
    again = await client.post("/v1/admin/devices", json=body, headers=admin_headers)
    assert_problem(again, 409, "device-exists")


@pytest.mark.parametrize("token", [None, "valid"])
async def test_a_deeply_nested_body_is_400_before_or_after_authentication(
    client: httpx.AsyncClient, admin_headers: dict[str, str], token: str | None
) -> None:
    """FastAPI parses a JSON body before the admin token is checked; nested 100,000 deep
    it would overflow the C stack under py-evm's recursion limit and kill the notary."""
    deep = b"[" * 100_000 + b"]" * 100_000
    headers = {"content-type": "application/json", **(admin_headers if token else {})}
    response = await client.post("/v1/admin/devices", content=deep, headers=headers)
    assert response.status_code == 400, response.text
    assert (await client.get("/healthz")).status_code == 200


async def test_any_body_above_the_app_limit_is_413(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    huge = b"[" + b"0," * (MAX_REQUEST_BODY_BYTES // 2) + b"0]"
    headers = {"content-type": "application/json", **admin_headers}
    response = await client.post("/v1/admin/devices", content=huge, headers=headers)
    assert response.status_code == 413, response.text


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # FastAPI's lazy include
        if included is not None:
            yield from _api_routes(included.routes)


def test_every_route_parses_json_with_the_nesting_limit(service: NotaryService) -> None:
    routes = list(_api_routes(create_app(service).routes))
    assert len(routes) > 20
    assert [r.path for r in routes if not isinstance(r, BoundedJSONRoute)] == []


async def test_admin_validation_errors_are_problems(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    bad = {"device_id": "has space", "sae_id": "s"}
    assert_problem(
        await client.post("/v1/admin/devices", json=bad, headers=admin_headers), 422, "validation"
    )


async def test_device_lifecycle_over_http(
    client: httpx.AsyncClient, device: SimDevice, admin_headers: dict[str, str]
) -> None:
    await post(client, device.seal().to_json())
    device.firmware_digest = FIRMWARE_B
    changed = (await post(client, device.seal().to_json())).json()
    assert changed["attestation"] == "digest-changed" and not changed["device_trusted"]
    shown = (await client.get("/v1/devices/dev-a")).json()
    assert not shown["trusted"] and shown["current_firmware_digest"] == FIRMWARE_B
    assert [h["kind"] for h in shown["history"]] == ["registered", "first-digest", "digest-changed"]
    approved = await client.post(
        "/v1/admin/devices/dev-a/approve",
        json={"firmware_digest": FIRMWARE_B},
        headers=admin_headers,
    )
    assert approved.status_code == 200 and approved.json()["trusted"]
    off = await client.post("/v1/admin/devices/dev-a/deactivate", headers=admin_headers)
    assert off.status_code == 200 and not off.json()["active"]
    assert_problem(await post(client, device.seal().to_json()), 401, "authentication-failed")
    listed = (await client.get("/v1/devices")).json()
    assert [d["device_id"] for d in listed] == ["dev-a"]
    assert listed[0]["approved_firmware_digest"] == FIRMWARE_B
    assert FIRMWARE_A in {h["firmware_digest"] for h in listed[0]["history"]}


async def test_unknown_device_record_and_route_are_404_problems(
    client: httpx.AsyncClient,
) -> None:
    assert_problem(await client.get("/v1/devices/nobody"), 404, "device-not-found")
    assert_problem(await client.get("/v1/records/0x" + "00" * 32), 404, "record-not-found")
    assert_problem(await client.get("/v1/nothing-here"), 404, "not-found")


async def test_health_readiness_and_metrics(
    client: httpx.AsyncClient, device: SimDevice, key_source: InMemoryKeySource
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"]
    checks = ready.json()["checks"]
    assert set(checks) == {"outbox", "kme", "chain"}
    # No chain attached: reported, but intake into the outbox still works.
    assert not checks["chain"]["ok"] and not checks["chain"]["required"]
    await post(client, device.seal().to_json())
    await post(client, b"garbage")
    device.seal()  # deposits one key set that stays in stock
    metrics = (await client.get("/metrics")).text
    assert 'notary_envelopes_accepted_total{channel="http",mode="otp"} 1.0' in metrics
    assert 'notary_envelopes_rejected_total{channel="http",reason="malformed"} 1.0' in metrics
    assert "notary_outbox_depth 1.0" in metrics
    assert 'notary_kme_key_stock{sae_id="sae-a"} 1.0' in metrics
    key_source.available = False
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503
    assert not not_ready.json()["checks"]["kme"]["ok"]


async def test_openapi_operation_ids_are_stable(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert ids >= {
        "submit_telemetry",
        "read_record",
        "list_devices",
        "read_device",
        "create_device",
        "approve_device_firmware",
        "deactivate_device",
        "read_health",
        "read_readiness",
        "read_metrics",
    }
    accepted = spec["paths"]["/v1/telemetry"]["post"]["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"]["$ref"].endswith("TelemetryAccepted")
    body = spec["paths"]["/v1/telemetry"]["post"]["requestBody"]["content"]
    assert "application/json" in body and "application/octet-stream" in body
    # Stored-row internals never appear in public schemas; the plaintext only in the
    # disclosure section that owners and auditors get.
    schemas = dict(spec["components"]["schemas"])
    assert '"payload"' in json.dumps(schemas.pop("Disclosure"))
    public = json.dumps(schemas)
    assert "envelope_digest" not in public and '"payload"' not in public
    assert ids >= {"create_access_token", "list_access_tokens", "revoke_access_token"}


FUZZ = {
    "max_examples": 60,
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}

_b64 = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
_tag = st.binary(min_size=15, max_size=17).map(lambda b: base64.b64encode(b).decode())
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        _json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "v": st.integers(-1, 3),
                "mode": st.sampled_from(["otp", "aead", "xor", ""]),
                "sender": st.text(max_size=10),
                "recipient": st.sampled_from(["notary", "x"]),
                "seq": st.integers(-5, 2**65),
                "ts": st.integers(-5, 2**65),
                "key_ids": st.lists(st.uuids().map(str), max_size=3),
                "nonce": st.sampled_from(["", "AAAAAAAAAAAAAAAA", "%%"]),
                "ct": _b64,
                "tag": st.binary(min_size=15, max_size=17).map(
                    lambda b: base64.b64encode(b).decode()
                ),
            }
        ).map(lambda d: json.dumps(d).encode()),
    )
)
async def test_arbitrary_bodies_never_crash_or_reach_the_outbox(
    client: httpx.AsyncClient, service: NotaryService, device: SimDevice, body: bytes
) -> None:
    response = await post(client, body)
    assert response.status_code in {400, 401, 413, 422}, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert await service.store.outbox_depth() == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_any_single_bit_flip_in_the_binary_envelope_is_refused(
    client: httpx.AsyncClient, service: NotaryService, device: SimDevice, data: st.DataObject
) -> None:
    raw = bytearray(device.seal().to_bytes())
    position = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[position // 8] ^= 1 << (position % 8)
    response = await post(client, bytes(raw), **{"Content-Type": "application/octet-stream"})
    assert response.status_code in {400, 401}, response.text
    assert await service.store.outbox_depth() == 0
