"""Explorer pages over ASGI: status codes, escaping, 404s, on-chain verification of
genuine and tampered receipts, decoded events, search, and that browsing changes nothing."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import notary.explorer
from notary.anchoring import AnchoringWorker
from notary.api import create_app
from notary.chain.client import ChainClient
from notary.config import AnchorMode
from notary.errors import NotaryError
from notary.explorer.routes import SESSION_COOKIE
from notary.explorer.stats import per_minute
from notary.explorer.templating import shorten
from notary.explorer.verification import CHECK_DESCRIPTIONS
from notary.keysource import InMemoryKeySource
from notary.receipts import RECEIPT_CHECKS
from notary.service import NotaryService
from notary.stock_watch import StockWatch
from qkd_channel.keys import QKDKey
from qkd_channel.security_levels import Hop
from tests.notary.conftest import ADMIN_TOKEN, SimDevice, fleet

XSS_ID = "<script>alert(1)</script>"


@dataclass
class Explored:
    client: httpx.AsyncClient
    service: NotaryService
    chain: ChainClient
    devices: list[SimDevice]
    record_ids: list[str]


@pytest.fixture
def key_source() -> InMemoryKeySource:
    """Keys reported as coming over a QKD link, straight to the notary (no network)."""
    return InMemoryKeySource(link_hop=Hop.QKD)


#: How each of the two devices says it got its keys: the first on its KME's host, the
#: second over TLS across a network.
DELIVERY = ("local", "tls")


async def _populate(
    service: NotaryService, keys: InMemoryKeySource, chain: ChainClient, mode: AnchorMode
) -> tuple[list[SimDevice], list[str]]:
    devices = await fleet(service, keys, 2)
    record_ids: list[str] = []
    for dev in devices * 2:
        delivery = DELIVERY[devices.index(dev)]
        sealed = dev.seal(dev.plaintext({"kwh": 1.5, "n": len(record_ids)}, key_delivery=delivery))
        record_ids.append((await service.pipeline.submit(sealed.to_json().encode())).record_id)
    await AnchoringWorker(service.store, chain, mode=mode, batch_size=8).drain()
    return devices, record_ids


@asynccontextmanager
async def _explore(
    service: NotaryService, keys: InMemoryKeySource, chain: ChainClient, mode: AnchorMode
) -> AsyncIterator[Explored]:
    devices, record_ids = await _populate(service, keys, chain, mode)
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://notary.test") as client:
        yield Explored(client, service, chain, devices, record_ids)


@pytest.fixture
async def explored(
    anchored_service: NotaryService, key_source: InMemoryKeySource, chain_client: ChainClient
) -> AsyncIterator[Explored]:
    """Two devices, four records anchored in batch mode, and a client for the pages."""
    async with _explore(anchored_service, key_source, chain_client, AnchorMode.BATCH) as e:
        yield e


@pytest.fixture(params=[AnchorMode.BATCH, AnchorMode.MERKLE], ids=["batch", "merkle"])
async def explored_any_mode(
    request: pytest.FixtureRequest,
    anchored_service: NotaryService,
    key_source: InMemoryKeySource,
    chain_client: ChainClient,
) -> AsyncIterator[Explored]:
    """As ``explored``, once per anchoring mode."""
    async with _explore(anchored_service, key_source, chain_client, request.param) as e:
        yield e


async def _receipt(client: httpx.AsyncClient, record_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/records/{record_id}")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _check_results(html: str) -> dict[str, str]:
    """``{check name: result}`` from a rendered checks table."""
    rows = re.findall(
        r'data-check="([a-z-]+)">.*?<td class="result">([^<]+)</td>', html, flags=re.S
    )
    return dict(rows)


async def test_every_page_renders_with_security_headers(explored: Explored) -> None:
    c = explored.client
    receipt = await _receipt(c, explored.record_ids[0])
    anchor = receipt["anchor"]
    pages = [
        "/explorer/",
        "/explorer/devices",
        f"/explorer/devices/{explored.devices[0].device_id}",
        f"/explorer/records/{explored.record_ids[0]}",
        "/explorer/verify",
        "/explorer/blocks",
        f"/explorer/blocks/{anchor['block_number']}",
        f"/explorer/blocks/{anchor['block_hash']}",
        f"/explorer/tx/{anchor['tx_hash']}",
        "/explorer/static/explorer.css",
    ]
    for page in pages:
        response = await c.get(page)
        assert response.status_code == 200, page
        # No secrets: the admin token, and no plaintext (the device sent {"kwh": 1.5, ...}).
        assert ADMIN_TOKEN not in response.text and '"kwh"' not in response.text, page
    response = await c.get("/explorer/")
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    root = await c.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/explorer/"


async def test_dashboard_shows_outbox_rates_blocks_and_records(explored: Explored) -> None:
    html = (await explored.client.get("/explorer/")).text
    assert re.search(r'id="outbox-depth">0<', html)  # everything was anchored
    head = explored.chain.block_number()
    assert f'href="/explorer/blocks/{head}"' in html
    last_tx = (await _receipt(explored.client, explored.record_ids[-1]))["anchor"]["tx_hash"]
    assert f'href="/explorer/tx/{last_tx}"' in html  # latest blocks list their transactions
    # The four records were accepted within the current minute window.
    counts = [int(n) for n in re.findall(r'<td class="num">(\d+)\+?</td>\s*<td><meter', html)]
    assert len(counts) == 10 and sum(counts) >= 4
    for record_id in explored.record_ids:
        assert f"/explorer/records/{record_id}" in html


async def test_device_page_shows_timeline_chain_history_and_records(explored: Explored) -> None:
    device = explored.devices[0]
    html = (await explored.client.get(f"/explorer/devices/{device.device_id}")).text
    assert 'data-kind="registered"' in html and 'data-kind="first-digest"' in html
    assert "pending" not in html.split('id="timeline"')[1].split("</table>")[0]  # mirrored
    onchain = html.split('id="onchain-attestations"')[1].split("</table>")[0]
    assert device.firmware_digest[:12] in onchain
    records = html.split('id="device-records"')[1].split("</table>")[0]
    assert records.count("/explorer/records/") == 2  # its two records, not the other's
    devices = (await explored.client.get("/explorer/devices")).text
    assert devices.count('class="badge trusted"') == 2


@pytest.mark.parametrize(
    ("index", "level"),
    [(0, "information-theoretic"), (1, "computational")],
    ids=["local", "tls"],
)
async def test_device_and_record_pages_show_the_derived_security_levels(
    explored: Explored, index: int, level: str
) -> None:
    """otp over a reported QKD link: information-theoretic only when the device's hop
    never crossed a network; the pages show what the receipt derives, nothing stronger."""
    device = explored.devices[index]
    html = (await explored.client.get(f"/explorer/devices/{device.device_id}")).text
    records = html.split('id="device-records"')[1].split("</table>")[0]
    shown = re.findall(r'<td class="security">([^<]+)</td>', records)
    assert shown == [f"{level} / {level}"] * 2
    record_id = explored.record_ids[index]
    receipt = await _receipt(explored.client, record_id)
    assert receipt["key_path"] == {"link": "qkd", "device": DELIVERY[index], "notary": "local"}
    assert receipt["security"]["confidentiality"] == level
    page = (await explored.client.get(f"/explorer/records/{record_id}")).text
    assert f"confidentiality {level}; authenticity {level}" in page


async def test_verify_onchain_passes_every_applicable_check(explored_any_mode: Explored) -> None:
    explored = explored_any_mode
    for record_id in explored.record_ids:
        html = (
            await explored.client.get(f"/explorer/records/{record_id}?verify_onchain=true")
        ).text
        assert "VERIFIED" in html and "FAILED" not in html
        results = _check_results(html)
        assert list(results) == list(RECEIPT_CHECKS)
        merkle = (await _receipt(explored.client, record_id))["anchor"]["method"] == "merkle"
        expected_na = set() if merkle else {"proof"}
        assert {k for k, v in results.items() if v == "n/a"} == expected_na
        assert all(v == "passed" for k, v in results.items() if k not in expected_na)
        assert results["payload-hash"] == "passed"  # the notary's stored plaintext


def _tamper_payload_hash(doc: dict[str, Any]) -> None:
    h = doc["payload_hash"]
    doc["payload_hash"] = h[:-1] + ("0" if h[-1] != "0" else "1")


def _tamper_tx(doc: dict[str, Any]) -> None:
    doc["anchor"]["tx_hash"] = "0x" + "ab" * 32


def _tamper_block(doc: dict[str, Any]) -> None:
    doc["anchor"]["block_timestamp"] += 1


def _tamper_sequence(doc: dict[str, Any]) -> None:
    doc["sequence"] += 1


@pytest.mark.parametrize(
    ("tamper", "failed"),
    [
        pytest.param(_tamper_payload_hash, "leaf", id="payload-hash"),
        pytest.param(_tamper_sequence, "record-id", id="sequence"),
        pytest.param(_tamper_tx, "transaction", id="tx-hash"),
        pytest.param(_tamper_block, "block", id="block-timestamp"),
    ],
)
async def test_pasted_tampered_receipt_fails_at_the_right_check(
    explored: Explored, tamper: Any, failed: str
) -> None:
    c = explored.client
    genuine = await _receipt(c, explored.record_ids[1])
    ok = await c.post("/explorer/verify", data={"receipt": json.dumps(genuine)})
    assert ok.status_code == 200 and "VERIFIED" in ok.text
    tamper(genuine)
    response = await c.post("/explorer/verify", data={"receipt": json.dumps(genuine)})
    assert response.status_code == 200
    assert "VERIFIED" not in response.text and "FAILED" in response.text
    assert f'id="failed-check">{failed}<' in response.text
    results = _check_results(response.text)
    assert results[failed] == "failed"
    later = RECEIPT_CHECKS[RECEIPT_CHECKS.index(failed) + 1 :]
    assert all(results[name] in {"not reached", "n/a"} for name in later)


@pytest.mark.parametrize(
    ("field", "value"),
    [("tx_hash", "0xzz"), ("block_hash", "0x1234"), ("contract", "0xnot-an-address")],
)
async def test_pasted_receipt_with_malformed_anchor_fails_not_unavailable(
    explored: Explored, field: str, value: str
) -> None:
    """A malformed coordinate is a bad receipt (FAILED, format), not an unreachable node."""
    document = await _receipt(explored.client, explored.record_ids[0])
    document["anchor"][field] = value
    response = await explored.client.post(
        "/explorer/verify", data={"receipt": json.dumps(document)}
    )
    assert response.status_code == 200
    assert 'id="failed-check">format<' in response.text


async def test_pasted_receipt_with_wrong_plaintext_fails_payload_hash(explored: Explored) -> None:
    genuine = await _receipt(explored.client, explored.record_ids[0])
    full = await explored.client.get(
        f"/v1/records/{explored.record_ids[0]}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    salt = full.json()["disclosure"]["salt"]
    device = explored.devices[0]
    right = device.plaintext({"kwh": 1.5, "n": 0}, key_delivery=DELIVERY[0])
    form = {"receipt": json.dumps(genuine), "payload": right.decode(), "salt": salt}
    response = await explored.client.post("/explorer/verify", data=form)
    assert "VERIFIED" in response.text and _check_results(response.text)["payload-hash"] == "passed"
    form["payload"] = right.decode().replace("1.5", "9.5")
    response = await explored.client.post("/explorer/verify", data=form)
    assert 'id="failed-check">payload-hash<' in response.text


async def test_pasted_garbage_is_a_format_failure_and_is_escaped(explored: Explored) -> None:
    response = await explored.client.post(
        "/explorer/verify", data={"receipt": '{"x": "<img src=x onerror=alert(1)>"}'}
    )
    assert response.status_code == 200
    assert 'id="failed-check">format<' in response.text
    assert "<img src=x" not in response.text and "&lt;img src=x" in response.text


async def test_transaction_and_block_pages_decode_notary_events(
    explored_any_mode: Explored,
) -> None:
    explored = explored_any_mode
    receipt = await _receipt(explored.client, explored.record_ids[0])
    anchor = receipt["anchor"]
    html = (await explored.client.get(f"/explorer/tx/{anchor['tx_hash']}")).text
    if anchor["method"] == "batch":
        assert "TelemetryNotary.recordBatch" in html
        assert html.count('data-event="RecordStored"') == 4
        assert f'href="/explorer/devices/{receipt["device_id"]}"' in html
        assert f'href="/explorer/records/{receipt["record_id"]}"' in html
    else:
        assert "TelemetryNotary.anchorRoot" in html
        assert html.count('data-event="RootAnchored"') == 1
        assert anchor["batch_root"] in html
    block = (await explored.client.get(f"/explorer/blocks/{anchor['block_number']}")).text
    assert anchor["tx_hash"] in block and "data-event=" in block


async def test_registry_transactions_decode_device_events(explored: Explored) -> None:
    device = explored.devices[0]
    _, events = await explored.service.device(device.device_id)
    registered = next(e for e in events if e.kind.value == "registered")
    assert registered.chain_tx_hash is not None
    html = (await explored.client.get(f"/explorer/tx/{registered.chain_tx_hash}")).text
    assert "DeviceRegistry.registerDevice" in html and 'data-event="DeviceRegistered"' in html
    assert f'href="/explorer/devices/{device.device_id}"' in html


async def test_search_finds_each_kind_and_reports_unknown(explored: Explored) -> None:
    c = explored.client
    receipt = await _receipt(c, explored.record_ids[0])
    anchor = receipt["anchor"]
    device = explored.devices[1].device_id
    expected = {
        receipt["record_id"]: f"/explorer/records/{receipt['record_id']}",
        receipt["record_id"]
        .upper()
        .replace("0X", "0x"): f"/explorer/records/{receipt['record_id']}",
        anchor["tx_hash"]: f"/explorer/tx/{anchor['tx_hash']}",
        str(anchor["block_number"]): f"/explorer/blocks/{anchor['block_number']}",
        anchor["block_hash"]: f"/explorer/blocks/{anchor['block_hash']}",
        f"  {device} ": f"/explorer/devices/{device}",
    }
    for query, target in expected.items():
        response = await c.get("/explorer/search", params={"q": query}, follow_redirects=False)
        assert response.status_code == 303, query
        assert response.headers["location"] == target
    for unknown in ["0x" + "12" * 32, "99999999", "no-such-device", XSS_ID, ""]:
        response = await c.get("/explorer/search", params={"q": unknown})
        assert response.status_code == 404, unknown
        assert 'id="not-found"' in response.text
        assert "<script>alert" not in response.text


async def test_search_takes_hashes_as_the_pages_shorten_them(explored: Explored) -> None:
    """An auditor copies ``0x1234abcd…89ef`` off a page: the search resolves it (and its
    ASCII ``...`` spelling, its head alone, any case) to the one page it names."""
    c = explored.client
    receipt = await _receipt(c, explored.record_ids[0])
    anchor = receipt["anchor"]
    record_page = f"/explorer/records/{receipt['record_id']}"
    expected = {
        shorten(receipt["record_id"]): record_page,
        shorten(receipt["record_id"]).replace("…", "..."): record_page,
        receipt["record_id"][:12].upper().replace("0X", "0x"): record_page,
        shorten(anchor["tx_hash"]): f"/explorer/tx/{anchor['tx_hash']}",
        shorten(anchor["block_hash"]): f"/explorer/blocks/{anchor['block_hash']}",
    }
    # A block the notary never stored (the one holding a device's registration) is found
    # among the newest blocks.
    _, events = await explored.service.device(explored.devices[0].device_id)
    registered = next(e for e in events if e.kind.value == "registered")
    assert registered.chain_tx_hash is not None
    info = explored.chain.transaction_info(registered.chain_tx_hash)
    assert info is not None
    expected[shorten(info.block_hash)] = f"/explorer/blocks/{info.block_hash}"
    for query, target in expected.items():
        response = await c.get("/explorer/search", params={"q": query}, follow_redirects=False)
        assert (response.status_code, response.headers.get("location")) == (303, target), query

    # The page's own rendering carries the short form the search takes back.
    html = (await c.get(record_page)).text
    assert shorten(anchor["tx_hash"]) in html

    # A wrong tail, a prefix too short to mean anything: nothing matches, and the page says
    # what search takes.
    wrong_tail = receipt["record_id"][:12] + "…" + ("0" if receipt["record_id"][-1] != "0" else "1")
    for query in [wrong_tail, receipt["record_id"][:6], "0x…" + receipt["record_id"][-6:]]:
        response = await c.get("/explorer/search", params={"q": query})
        assert response.status_code == 404, query
        assert "shortened as these pages show it" in response.text


async def test_search_lists_candidates_when_a_prefix_is_ambiguous(explored: Explored) -> None:
    c = explored.client
    ids = [d.device_id for d in explored.devices]
    prefix = ids[0].rsplit("-", 1)[0] + "-"  # the fleet's shared tag
    response = await c.get("/explorer/search", params={"q": prefix}, follow_redirects=False)
    assert response.status_code == 200
    hits = re.findall(r'class="search-hit"><td>device</td><td><a href="([^"]+)"', response.text)
    assert sorted(hits) == sorted(f"/explorer/devices/{i}" for i in ids)
    one = await c.get("/explorer/search", params={"q": ids[1]}, follow_redirects=False)
    assert one.headers["location"] == f"/explorer/devices/{ids[1]}"


async def test_unknown_things_are_html_404s(explored: Explored) -> None:
    for page in [
        "/explorer/records/0x" + "00" * 32,
        "/explorer/records/nonsense",
        "/explorer/devices/ghost",
        "/explorer/tx/0x" + "00" * 32,
        "/explorer/tx/not-a-hash",
        "/explorer/blocks/99999999",
        "/explorer/blocks/latest",
    ]:
        response = await explored.client.get(page)
        assert response.status_code == 404, page
        assert response.headers["content-type"].startswith("text/html")
        assert 'id="not-found"' in response.text


async def test_browsing_changes_nothing(explored: Explored) -> None:
    c = explored.client
    head = explored.chain.block_number()
    receipt = await _receipt(c, explored.record_ids[0])
    before = (await explored.service.store.outbox_depth(), receipt)
    for page in [
        "/explorer/",
        f"/explorer/records/{explored.record_ids[0]}?verify_onchain=true",
        f"/explorer/devices/{explored.devices[0].device_id}",
        "/explorer/blocks",
    ]:
        assert (await c.get(page)).status_code == 200
    await c.post("/explorer/verify", data={"receipt": json.dumps(receipt)})
    assert explored.chain.block_number() == head
    assert (
        await explored.service.store.outbox_depth(),
        await _receipt(c, receipt["record_id"]),
    ) == before


async def test_markup_in_a_device_id_is_shown_as_text(
    anchored_service: NotaryService, key_source: InMemoryKeySource, chain_client: ChainClient
) -> None:
    await anchored_service.register_device(XSS_ID, sae_id="sae-xss", owner="<b>owner</b>")
    device = SimDevice(XSS_ID, "sae-xss", key_source)
    accepted = await anchored_service.pipeline.submit(device.seal().to_json().encode())
    await AnchoringWorker(anchored_service.store, chain_client, mode=AnchorMode.BATCH).drain()
    transport = httpx.ASGITransport(app=create_app(anchored_service))
    async with httpx.AsyncClient(transport=transport, base_url="http://notary.test") as c:
        tx = (await c.get(f"/v1/records/{accepted.record_id}")).json()["anchor"]["tx_hash"]
        search = await c.get("/explorer/search", params={"q": XSS_ID}, follow_redirects=False)
        assert search.status_code == 303
        pages = [
            "/explorer/",
            "/explorer/devices",
            search.headers["location"],
            f"/explorer/records/{accepted.record_id}",
            f"/explorer/tx/{tx}",
        ]
        for page in pages:
            response = await c.get(page)
            assert response.status_code == 200, page
            assert "<script>alert(1)" not in response.text, page
            assert "<b>owner" not in response.text, page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text, page


async def test_without_a_chain_pages_say_so(
    service: NotaryService, device: SimDevice, client: httpx.AsyncClient
) -> None:
    accepted = await service.pipeline.submit(device.seal().to_json().encode())
    dashboard = await client.get("/explorer/")
    assert dashboard.status_code == 200 and "no chain attached" in dashboard.text
    assert re.search(r'id="outbox-depth">1<', dashboard.text)
    record = await client.get(f"/explorer/records/{accepted.record_id}?verify_onchain=true")
    assert record.status_code == 200 and 'id="not-anchored"' in record.text
    assert (await client.get("/explorer/blocks")).status_code == 404
    receipt = (await client.get(f"/v1/records/{accepted.record_id}")).json()
    pasted = await client.post("/explorer/verify", data={"receipt": json.dumps(receipt)})
    assert pasted.status_code == 503 and "no chain attached" in pasted.text


async def test_verify_form_with_extra_fields_is_a_format_failure(explored: Explored) -> None:
    body = "&".join(f"f{i}=x" for i in range(10))
    response = await explored.client.post(
        "/explorer/verify",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and 'id="failed-check">format<' in response.text


@given(
    now=st.floats(min_value=1e9, max_value=2e9),
    offsets=st.lists(st.floats(min_value=0, max_value=1200), max_size=50),
)
def test_per_minute_counts_exactly_the_times_in_its_window(
    now: float, offsets: list[float]
) -> None:
    times = [now - o for o in offsets]
    rates = per_minute(times, now=now, minutes=10)
    assert len(rates) == 10
    assert [r.start for r in rates] == sorted(r.start for r in rates)
    window_start = rates[0].start
    assert sum(r.count for r in rates) == sum(1 for t in times if t >= window_start)
    assert rates[-1].start <= now < rates[-1].start + 60


def test_templates_and_static_files_ship_in_the_package() -> None:
    """Every template and static file matches the package-data globs of pyproject.toml,
    so ``pip install .`` installs a working explorer."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    config = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    root = Path(notary.explorer.__file__).parent
    shipped = {path for pattern in config["notary.explorer"] for path in root.glob(pattern)}
    on_disk = {p for d in ("templates", "static") for p in (root / d).rglob("*") if p.is_file()}
    assert on_disk and on_disk <= shipped


def test_every_receipt_check_is_described() -> None:
    assert list(CHECK_DESCRIPTIONS) == list(RECEIPT_CHECKS)


async def test_dashboard_warns_of_a_key_stock_about_to_run_out(
    explored: Explored, key_source: InMemoryKeySource
) -> None:
    now = [0.0]
    explored.service.stock_watch = StockWatch(warn_below_s=900, clock=lambda: now[0])
    sae = explored.devices[0].sae_id
    keys = [QKDKey(str(uuid.uuid4()), bytes(32)) for _ in range(100)]
    key_source.deposit(sae, keys)
    await explored.client.get("/explorer/")  # first sample: 100 keys
    now[0] = 10.0
    await key_source.dec_keys(sae, [k.key_id for k in keys[:40]])  # the fleet used 40
    html = (await explored.client.get("/explorer/")).text
    row = html.split(f'data-sae="{sae}"')[1].split("</tr>")[0]
    assert "(low)" in row and "0.2 min" in row  # 60 left at 4 keys/s: 15 s
    metrics = (await explored.client.get("/metrics")).text
    assert f'notary_kme_key_stock_depletion_seconds{{sae_id="{sae}"}}' in metrics


async def test_event_log_filters_by_device_event_and_time_and_exports(explored: Explored) -> None:
    device = explored.devices[0].device_id
    page = await explored.client.get("/explorer/events", params={"device": device})
    assert page.status_code == 200
    rows = page.text.split('id="events"')[1].split("</table>")[0]
    assert 'data-event="DeviceRegistered"' in rows and 'data-event="RecordStored"' in rows
    assert explored.devices[1].device_id not in rows  # only the device asked for
    as_json = (
        await explored.client.get(
            "/explorer/events", params={"device": device, "event": "RecordStored", "format": "json"}
        )
    ).json()
    assert {e["event"] for e in as_json["events"]} == {"RecordStored"}
    assert len(as_json["events"]) == 2 and as_json["complete"] is True
    assert all(e["args"]["record.deviceId"] == device for e in as_json["events"])
    blocks = [e["block_number"] for e in as_json["events"]]
    assert blocks == sorted(blocks, reverse=True)
    csv_answer = await explored.client.get(
        "/explorer/events", params={"device": device, "format": "csv"}
    )
    assert csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.text.strip().splitlines()
    assert lines[0].startswith("block,time_utc,tx_hash") and len(lines) >= 4
    # A window that ends before anything happened holds nothing.
    empty = await explored.client.get(
        "/explorer/events", params={"until": "2000-01-01T00:00", "format": "json"}
    )
    assert empty.json()["events"] == []


@pytest.mark.parametrize(
    "params",
    [{"event": "NoSuchEvent"}, {"since": "yesterday"}, {"format": "xml"}, {"until": "9" * 5000}],
)
async def test_event_log_refuses_bad_filters_with_400(
    explored: Explored, params: dict[str, str]
) -> None:
    answer = await explored.client.get("/explorer/events", params=params)
    assert answer.status_code == 400 and 'id="events-error"' in answer.text


async def test_block_page_links_every_transaction_and_a_miss_reads_well(
    explored: Explored,
) -> None:
    receipt = await _receipt(explored.client, explored.record_ids[0])
    block = receipt["anchor"]["block_number"]
    html = (await explored.client.get(f"/explorer/blocks/{block}")).text
    listed = html.split('id="block-txs"')[1].split("</ul>")[0]
    assert f'href="/explorer/tx/{receipt["anchor"]["tx_hash"]}"' in listed
    missing = await explored.client.get("/explorer/search", params={"q": "no-such-thing"})
    assert missing.status_code == 404 and "Nothing matches" in missing.text
    assert "No anything" not in missing.text


async def test_dashboard_lists_untrusted_devices(explored: Explored) -> None:
    html = (await explored.client.get("/explorer/")).text
    assert 'id="no-untrusted"' in html
    device = explored.devices[0]
    device.firmware_digest = "f" * 64  # a firmware change nobody approved
    await explored.service.pipeline.submit(device.seal().to_json().encode())
    html = (await explored.client.get("/explorer/")).text
    table = html.split('id="untrusted-devices"')[1].split("</table>")[0]
    assert device.device_id in table and explored.devices[1].device_id not in table


async def test_dashboard_counts_refusals_and_shows_their_reasons_to_the_admin(
    explored: Explored,
) -> None:
    """A forger learns nothing new (the count, not the reason, is public); the admin sees
    why envelopes were refused."""
    device = explored.devices[1]
    genuine = device.seal()
    await explored.service.pipeline.submit(genuine.to_json().encode())
    flipped = bytearray(genuine.ciphertext)
    flipped[0] ^= 1
    for bad in [genuine, dataclasses.replace(device.seal(), ciphertext=bytes(flipped))]:
        with pytest.raises(NotaryError):
            await explored.service.pipeline.submit(bad.to_json().encode())
    public = (await explored.client.get("/explorer/")).text
    assert re.search(r'id="refused-total">2<', public)
    reasons = public.split('id="refused-reasons">')[1].split("</div>")[0]
    assert "replay" not in reasons and "tag" not in reasons and "shown to the admin" in reasons
    explored.client.cookies.set(SESSION_COOKIE, ADMIN_TOKEN)
    admin = await explored.client.get("/explorer/")
    reasons = admin.text.split('id="refused-reasons">')[1].split("</div>")[0]
    assert re.search(r"replay\w*: 1", reasons) and "bad-tag: 1" in reasons, reasons
