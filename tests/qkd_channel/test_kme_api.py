"""ETSI GS QKD 014 over two real KMEs (uvicorn threads, mutual TLS): delivery, refusals, attacks."""

from __future__ import annotations

import base64
import dataclasses
import logging
import secrets
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from qkd_channel.errors import KMERequestRejected, KMEUnauthorized, KMEUnavailable
from qkd_channel.kme.certs import issue_link_pki, kme_client_paths, kme_server_paths, sae_paths
from qkd_channel.kme.client import AsyncKMEClient, KMEClient
from qkd_channel.kme.config import KeyLimits, LinkEnd
from qkd_channel.kme.server import bind_socket
from tests.qkd_channel.conftest import KMEPair, start_pair

STATUS_FIELDS = {
    "source_KME_ID",
    "target_KME_ID",
    "master_SAE_ID",
    "slave_SAE_ID",
    "key_size",
    "stored_key_count",
    "max_key_count",
    "max_key_per_request",
    "max_key_size",
    "min_key_size",
    "max_SAE_ID_count",
}


def _raw(pair: KMEPair, kme: str, cert: Path, key: Path) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pair.pki / "ca.crt"))
    context.load_cert_chain(cert, key)
    return httpx.Client(base_url=pair.urls[kme], verify=context, timeout=10.0)


def _raw_sae(pair: KMEPair, kme: str, sae_id: str) -> httpx.Client:
    return _raw(pair, kme, *sae_paths(pair.pki, sae_id))


def _assert_etsi_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"message", "details"}
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    assert all(isinstance(d, dict) for d in body["details"])
    return body


def test_key_agreement_enc_on_a_dec_on_b(kme_pair: KMEPair) -> None:
    materials = kme_pair.feed(blocks=2, nbytes=1024)
    with kme_pair.client("a", "device-1") as device, kme_pair.client("b", "notary") as notary:
        keys = device.enc_keys("notary", number=3, size=512)
        assert [k.size_bits for k in keys] == [512] * 3
        assert len({k.key_id for k in keys}) == 3
        # The device's keys are the start of A's half of the first block.
        assert b"".join(k.material for k in keys) == materials[0][:192]
        assert notary.dec_keys("device-1", [k.key_id for k in keys]) == keys


def test_a_block_the_peer_kme_lost_stalls_allocation_once(
    kme_pair: KMEPair, caplog: pytest.LogCaptureFixture
) -> None:
    """A link block that reached only KME A (B stopped before storing it) is dropped by A
    as soon as B proves it moved past it, instead of refusing every enc_keys forever."""
    with kme_pair.store("a") as store:
        store.add_block("blk-lost", secrets.token_bytes(1024))
    materials = kme_pair.feed(blocks=1, nbytes=1024)
    with kme_pair.client("a", "device-1") as device, kme_pair.client("b", "notary") as notary:
        with caplog.at_level(logging.WARNING), pytest.raises(KMEUnavailable):
            device.enc_keys("notary", number=1, size=256)
        assert "never reached the peer KME" in caplog.text
        keys = device.enc_keys("notary", number=1, size=256)
        assert keys[0].material == materials[0][:32]
        assert notary.dec_keys("device-1", [keys[0].key_id]) == keys


def test_get_forms_of_enc_keys_and_dec_keys(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    with _raw_sae(kme_pair, "a", "device-1") as device, _raw_sae(kme_pair, "b", "notary") as notary:
        enc = device.get("/api/v1/keys/notary/enc_keys", params={"number": 2, "size": 128})
        assert enc.status_code == 200
        container = enc.json()
        assert set(container) == {"keys"}
        assert all(set(k) == {"key_ID", "key"} for k in container["keys"])
        first = container["keys"][0]
        assert len(base64.b64decode(first["key"])) == 16
        dec = notary.get("/api/v1/keys/device-1/dec_keys", params={"key_ID": first["key_ID"]})
        assert dec.status_code == 200
        assert dec.json() == {"keys": [first]}
        # Defaults: one key of the default size.
        default = device.get("/api/v1/keys/notary/enc_keys").json()["keys"]
        assert len(default) == 1 and len(base64.b64decode(default[0]["key"])) == 32


def test_status_object_has_exactly_the_standard_fields(kme_pair: KMEPair) -> None:
    kme_pair.feed(blocks=1, nbytes=1024)
    with _raw_sae(kme_pair, "a", "device-1") as device:
        body = device.get("/api/v1/keys/notary/status").json()
    assert set(body) == STATUS_FIELDS
    assert body["source_KME_ID"] == "kme-a" and body["target_KME_ID"] == "kme-b"
    assert body["master_SAE_ID"] == "device-1" and body["slave_SAE_ID"] == "notary"
    assert body["stored_key_count"] == 512 * 8 // 256  # A owns half of the 1024-byte block
    with kme_pair.client("a", "device-1") as client:
        status = client.status("notary")
    assert status.stored_key_count == body["stored_key_count"]
    assert status.max_key_count == KeyLimits(buffer_bits=200_000).max_key_count
    # Fed by hand, not by a link: the KME claims nothing about what fills its buffer.
    assert status.status_extension is None


def test_key_is_delivered_once_and_gone_from_both_ends(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    with kme_pair.client("a", "device-1") as device, kme_pair.client("b", "notary") as notary:
        key = device.enc_keys("notary")[0]
        assert notary.dec_keys("device-1", [key.key_id]) == [key]
        with pytest.raises(KMERequestRejected) as info:
            notary.dec_keys("device-1", [key.key_id])
        assert "already delivered" in info.value.message
    for name in ("a", "b"):
        with kme_pair.store(name) as store:
            assert store.held_key_ids() == []
    # The master's KME never keeps a copy: its own SAEs cannot fetch the key either.
    with kme_pair.client("a", "notary") as wrong_side, pytest.raises(KMERequestRejected):
        wrong_side.dec_keys("device-1", [key.key_id])


def test_sae_x_cannot_fetch_keys_meant_for_sae_y(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    with kme_pair.client("a", "device-1") as device:
        key = device.enc_keys("notary")[0]
    with kme_pair.client("b", "intruder") as intruder, pytest.raises(KMEUnauthorized):
        intruder.dec_keys("device-1", [key.key_id])
    # The failed attempt consumed nothing: the entitled slave still gets the key.
    with kme_pair.client("b", "notary") as notary:
        assert notary.dec_keys("device-1", [key.key_id]) == [key]


def test_dec_keys_with_the_wrong_master_is_refused(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    with kme_pair.client("a", "device-1") as device:
        key = device.enc_keys("notary")[0]
    with kme_pair.client("b", "notary") as notary:
        with pytest.raises(KMEUnauthorized):
            notary.dec_keys("auditor", [key.key_id])
        assert notary.dec_keys("device-1", [key.key_id]) == [key]


def test_one_refused_key_id_fails_the_whole_request(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    with kme_pair.client("a", "device-1") as device:
        mine = device.enc_keys("notary")[0]
        theirs = device.enc_keys("auditor")[0]
    with kme_pair.client("b", "notary") as notary:
        with pytest.raises(KMEUnauthorized):
            notary.dec_keys("device-1", [mine.key_id, theirs.key_id])
        assert notary.dec_keys("device-1", [mine.key_id]) == [mine]


def test_additional_slaves_each_get_the_key_once(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    with kme_pair.client("a", "device-1") as device:
        key = device.enc_keys("notary", additional_slave_sae_ids=["auditor"])[0]
    for slave in ("notary", "auditor"):
        with kme_pair.client("b", slave) as client:
            assert client.dec_keys("device-1", [key.key_id]) == [key]
            with pytest.raises(KMERequestRejected):
                client.dec_keys("device-1", [key.key_id])


def test_both_ends_can_be_master_without_sharing_bits(kme_pair: KMEPair) -> None:
    kme_pair.feed(blocks=1, nbytes=64)
    with kme_pair.client("a", "device-1") as on_a, kme_pair.client("b", "notary") as on_b:
        from_a = on_a.enc_keys("notary", number=1, size=256)[0]
        from_b = on_b.enc_keys("device-1", number=1, size=256)[0]
        assert from_a.material != from_b.material
        assert on_b.dec_keys("device-1", [from_a.key_id]) == [from_a]
        assert on_a.dec_keys("notary", [from_b.key_id]) == [from_b]


def test_empty_buffer_answers_503_with_stock(kme_pair: KMEPair) -> None:
    with _raw_sae(kme_pair, "a", "device-1") as device:
        response = device.post("/api/v1/keys/notary/enc_keys", json={"number": 1})
    body = _assert_etsi_error(response, 503)
    assert body["details"][0]["stored_key_count"] == 0
    assert response.headers["Retry-After"] == "1"
    kme_pair.feed(blocks=1, nbytes=64)  # 256 bits for end A: one key of 256 bits, not two
    with kme_pair.client("a", "device-1") as client:
        with pytest.raises(KMEUnavailable) as info:
            client.enc_keys("notary", number=2)
        assert info.value.stock == 1
        assert info.value.retry_after == 1.0
        assert len(client.enc_keys("notary", number=1)) == 1
        assert client.status("notary").stored_key_count == 0


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        pytest.param("POST", "enc_keys", {"number": 1, "size": 100}, id="size-not-multiple-of-8"),
        pytest.param("POST", "enc_keys", {"number": 0}, id="number-zero"),
        pytest.param("POST", "enc_keys", {"number": -3}, id="number-negative"),
        pytest.param("POST", "enc_keys", {"number": 10**9}, id="number-huge"),
        pytest.param("POST", "enc_keys", {"number": "2"}, id="number-as-string"),
        pytest.param("POST", "enc_keys", {"number": True}, id="number-as-bool"),
        pytest.param("POST", "enc_keys", {"size": 8}, id="size-below-min"),
        pytest.param("POST", "enc_keys", {"size": 10**7}, id="size-above-max"),
        pytest.param("POST", "enc_keys", {"nummber": 1}, id="unknown-field"),
        pytest.param("POST", "enc_keys", b'{"number": 1', id="bad-json"),
        pytest.param("POST", "enc_keys", [1, 2], id="json-not-an-object"),
        pytest.param(
            "POST",
            "enc_keys",
            {"extension_mandatory": [{"abc_route_type": "direct"}]},
            id="unsupported-mandatory-extension",
        ),
        pytest.param(
            "POST",
            "enc_keys",
            {"additional_slave_SAE_IDs": ["a", "b", "c", "d", "e"]},
            id="too-many-slaves",
        ),
        pytest.param(
            "POST", "enc_keys", {"additional_slave_SAE_IDs": ["notary"]}, id="duplicate-slave"
        ),
        pytest.param("GET", "enc_keys?size=abc", None, id="get-size-not-integer"),
        pytest.param("GET", "enc_keys?number=0", None, id="get-number-zero"),
        pytest.param("POST", "dec_keys", {"key_IDs": [{"key_ID": "not-a-uuid"}]}, id="bad-uuid"),
        pytest.param("POST", "dec_keys", {"key_IDs": []}, id="no-key-ids"),
        pytest.param("POST", "dec_keys", {"key_ID": str(uuid.uuid4())}, id="wrong-shape"),
        pytest.param(
            "POST", "dec_keys", {"key_IDs": [{"key_ID": str(uuid.uuid4())}]}, id="unknown-key-id"
        ),
        pytest.param("GET", "dec_keys", None, id="get-missing-key-id"),
        pytest.param("GET", "dec_keys?key_ID=xyz", None, id="get-bad-uuid"),
    ],
)
def test_malformed_requests_get_400_with_the_standard_body(
    kme_pair: KMEPair, method: str, path: str, payload: object
) -> None:
    kme_pair.feed()
    sae = "device-1"
    url = f"/api/v1/keys/{'notary' if path.startswith('enc') else sae}/{path}"
    caller = "device-1" if path.startswith("enc") else "notary"
    kme = "a" if path.startswith("enc") else "b"
    with _raw_sae(kme_pair, kme, caller) as client:
        if isinstance(payload, bytes):
            response = client.request(
                method, url, content=payload, headers={"content-type": "application/json"}
            )
        else:
            response = client.request(method, url, json=payload)
    _assert_etsi_error(response, 400)
    # A refused request consumes no key material.
    with kme_pair.store("a") as store:
        assert store.available_bits(LinkEnd.A) == 512 * 8


def test_invalid_sae_id_in_path_is_400(kme_pair: KMEPair) -> None:
    with _raw_sae(kme_pair, "a", "device-1") as client:
        _assert_etsi_error(client.get("/api/v1/keys/bad%20id/status"), 400)
        _assert_etsi_error(client.get("/api/v1/keys/notary/nothing-here"), 404)


def test_client_certificate_from_a_foreign_ca_is_refused_at_handshake(
    kme_pair: KMEPair, tmp_path: Path
) -> None:
    rogue = tmp_path / "rogue"
    issue_link_pki(rogue, kme_ids=[], sae_ids=["notary"])  # same name, other CA
    with _raw(kme_pair, "b", *sae_paths(rogue, "notary")) as client, pytest.raises(httpx.HTTPError):
        client.get("/api/v1/keys/device-1/status")


def test_connection_without_client_certificate_is_refused(kme_pair: KMEPair) -> None:
    context = ssl.create_default_context(cafile=str(kme_pair.pki / "ca.crt"))
    with (
        httpx.Client(base_url=kme_pair.urls["a"], verify=context) as client,
        pytest.raises(httpx.HTTPError),
    ):
        client.get("/api/v1/keys/notary/status")


def test_server_certificate_is_not_accepted_as_a_client_certificate(kme_pair: KMEPair) -> None:
    """EKU separation: a KME's serverAuth-only certificate cannot open a client session."""
    with (
        _raw(kme_pair, "b", *kme_server_paths(kme_pair.pki, "kme-a")) as client,
        pytest.raises(httpx.HTTPError),
    ):
        client.post("/internal/v1/key_allocations", json={})


def test_kme_certificate_cannot_act_as_an_sae(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    with _raw(kme_pair, "a", *kme_client_paths(kme_pair.pki, "kme-b")) as client:
        _assert_etsi_error(client.get("/api/v1/keys/notary/status"), 401)
        _assert_etsi_error(client.post("/api/v1/keys/notary/enc_keys", json={}), 401)


def test_sae_certificate_cannot_use_the_kme_sync_api(kme_pair: KMEPair) -> None:
    kme_pair.feed(blocks=1, nbytes=64)
    forged = {
        "source_KME_ID": "kme-a",
        "source_end": "A",
        "keys": [
            {
                "key_ID": str(uuid.uuid4()),
                "master_SAE_ID": "intruder",
                "slave_SAE_IDs": ["intruder"],
                "segments": [{"block_ID": "x", "offset": 0, "length": 8}],
            }
        ],
    }
    with _raw_sae(kme_pair, "b", "intruder") as client:
        _assert_etsi_error(client.post("/internal/v1/key_allocations", json=forged), 401)
    # The peer KME's certificate is accepted; a KME certificate with another ID is not.
    with _raw(kme_pair, "b", *kme_client_paths(kme_pair.pki, "kme-b")) as client:
        _assert_etsi_error(client.post("/internal/v1/key_allocations", json=forged), 401)
    with kme_pair.store("b") as store:
        assert store.held_key_ids() == []


def test_peer_unreachable_is_503_and_spends_no_key(kme_pair: KMEPair) -> None:
    kme_pair.feed(blocks=1, nbytes=64)
    kme_pair.stop("b")
    with kme_pair.client("a", "device-1") as device:
        with pytest.raises(KMEUnavailable) as info:
            device.enc_keys("notary")
        assert "unreachable" in info.value.message
        assert info.value.stock == 1
        kme_pair.start("b")
        key = device.enc_keys("notary")[0]
    with kme_pair.client("b", "notary") as notary:
        assert notary.dec_keys("device-1", [key.key_id]) == [key]


def test_restart_keeps_keys_and_pool(kme_pair: KMEPair) -> None:
    kme_pair.feed(blocks=1, nbytes=256)
    with kme_pair.client("a", "device-1") as device:
        key = device.enc_keys("notary")[0]
        before = device.status("notary").stored_key_count
    for name in ("a", "b"):
        kme_pair.stop(name)
        kme_pair.start(name)
    with kme_pair.client("b", "notary") as notary:
        assert notary.dec_keys("device-1", [key.key_id]) == [key]
    with kme_pair.client("a", "device-1") as device:
        assert device.status("notary").stored_key_count == before


def test_sae_not_attached_to_the_kmes_is_refused(kme_pki: Path, tmp_path: Path) -> None:
    attached = {"a": frozenset({"device-1"}), "b": frozenset({"notary"})}
    pair = start_pair(kme_pki, tmp_path, sae_ids=attached)
    try:
        pair.feed()
        with pair.client("a", "intruder") as intruder, pytest.raises(KMEUnauthorized):
            intruder.enc_keys("notary")
        with pair.client("a", "device-1") as device:
            with pytest.raises(KMERequestRejected) as info:
                device.enc_keys("auditor")  # not attached to KME B
            assert "not attached" in info.value.message
            assert device.status("notary").stored_key_count == 16  # nothing burned
    finally:
        for name in list(pair.servers):
            pair.stop(name)


def test_kmes_configured_as_the_same_link_end_refuse_to_allocate(
    kme_pki: Path, tmp_path: Path
) -> None:
    pair = start_pair(kme_pki, tmp_path)
    try:
        # Reconfigure B as a second end A: it would carve the same bits as A.
        pair.stop("b")
        config = pair.configs["b"]
        pair.configs["b"] = dataclasses.replace(config, end=LinkEnd.A, data_dir=tmp_path / "b2")
        pair.start("b")
        pair.feed()
        with pair.client("a", "device-1") as device, pytest.raises(KMEUnavailable):
            device.enc_keys("notary")
        with pair.store("b") as store:
            assert store.held_key_ids() == []
    finally:
        for name in list(pair.servers):
            pair.stop(name)


async def test_async_client_round_trip(kme_pair: KMEPair) -> None:
    kme_pair.feed()
    pki = kme_pair.pki
    device_cert, device_key = sae_paths(pki, "device-1")
    notary_cert, notary_key = sae_paths(pki, "notary")
    async with (
        AsyncKMEClient(
            kme_pair.urls["a"], cert=device_cert, key=device_key, ca=pki / "ca.crt"
        ) as device,
        AsyncKMEClient(
            kme_pair.urls["b"], cert=notary_cert, key=notary_key, ca=pki / "ca.crt"
        ) as notary,
    ):
        status = await device.status("notary")
        keys = await device.enc_keys("notary", number=2)
        assert await notary.dec_keys("device-1", [k.key_id for k in keys]) == keys
        assert (await device.status("notary")).stored_key_count == status.stored_key_count - 2
        with pytest.raises(KMERequestRejected):
            await notary.dec_keys("device-1", [keys[0].key_id])


def test_unreachable_kme_is_kme_unavailable(kme_pki: Path) -> None:
    cert, key = sae_paths(kme_pki, "device-1")
    with (
        KMEClient(
            "https://127.0.0.1:9", cert=cert, key=key, ca=kme_pki / "ca.crt", timeout=2.0
        ) as client,
        pytest.raises(KMEUnavailable),
    ):
        client.status("notary")


def test_no_key_material_in_logs(kme_pair: KMEPair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    materials = kme_pair.feed(blocks=1, nbytes=256)
    with kme_pair.client("a", "device-1") as device, kme_pair.client("b", "notary") as notary:
        keys = device.enc_keys("notary", number=3)
        notary.dec_keys("device-1", [k.key_id for k in keys[:2]])
        with pytest.raises(KMEUnauthorized):
            notary.dec_keys("intruder", [keys[2].key_id])
        with pytest.raises(KMEUnavailable):
            device.enc_keys("notary", number=100)
    text = caplog.text
    assert keys[0].key_id in text  # the logs do say what happened
    for key in keys:
        for encoding in (key.material.hex(), base64.b64encode(key.material).decode()):
            assert encoding not in text
    for chunk in range(0, len(materials[0]), 16):
        assert materials[0][chunk : chunk + 16].hex() not in text


def test_listening_socket_is_tcp_so_asyncio_disables_nagle() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only for proto == IPPROTO_TCP;
    without it every in-process KME answer waited ~40 ms for a delayed ACK."""
    with bind_socket() as sock:
        assert sock.proto == socket.IPPROTO_TCP
