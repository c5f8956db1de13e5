"""Structured logs: one JSON object per line, and no key material or token in them."""

from __future__ import annotations

import base64
import io
import json
import logging

import httpx

from notary.logging import JSONFormatter, configure_logging, log_event
from tests.notary.conftest import ADMIN_TOKEN, SimDevice, fresh_keys


def test_formatter_emits_json_and_redacts_secret_looking_fields() -> None:
    record = logging.LogRecord("notary.x", logging.INFO, __file__, 1, "hello %s", ("w",), None)
    record.fields = {"device_id": "d1", "admin_token": "s3cret", "key_material": "00ff"}
    line = json.loads(JSONFormatter().format(record))
    assert line["msg"] == "hello w" and line["level"] == "INFO" and line["device_id"] == "d1"
    assert line["admin_token"] == "[redacted]" and line["key_material"] == "[redacted]"


async def test_a_busy_session_logs_no_secret(
    client: httpx.AsyncClient, device: SimDevice, admin_headers: dict[str, str]
) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG")
    logger = logging.getLogger("notary")
    handler = logger.handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    try:
        keys = fresh_keys(300)
        device.keys.deposit(device.sae_id, keys)
        env = device.seal(keys=keys)
        await client.post("/v1/telemetry", content=env.to_json())
        await client.post("/v1/telemetry", content=env.to_json())  # replay
        await client.post("/v1/telemetry", content=b"{bad")
        await client.post(
            "/v1/admin/devices", json={"device_id": "x1", "sae_id": "s"}, headers=admin_headers
        )
        await client.post("/v1/admin/devices", json={"device_id": "x2", "sae_id": "s"})
        log_event(logger, logging.INFO, "probe", reason="end")
    finally:
        handler.setStream(previous)
        logger.removeHandler(handler)  # leave logging as other tests expect it
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(line.get("msg") == "envelope accepted" for line in lines)
    assert any(line.get("reason") == "malformed" for line in lines)
    text = stream.getvalue()
    assert ADMIN_TOKEN not in text
    for key in keys:
        assert key.material.hex() not in text
        assert base64.b64encode(key.material).decode() not in text
    assert base64.b64encode(env.ciphertext).decode() not in text
