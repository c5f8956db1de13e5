"""The explorer in a real browser: Chromium (from apt) driven by Playwright.

A real stack: two KMEs of one link (mutual TLS), a notary served by uvicorn on a free port
with its anchoring worker on an embedded chain, devices sending sealed envelopes through
the SDK. The tests click through dashboard → devices → device → record → Verify on-chain,
paste a genuine and a tampered receipt, and search by record ID, transaction hash, block
number and device ID. Screenshots go to ``artifacts/screenshots/`` (not committed).

No browser is downloaded: Playwright drives ``/usr/bin/chromium`` (``make system-deps``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect, sync_playwright

from notary.chain.client import ChainClient
from notary.chain.settings import ChainSettings
from notary.config import AnchorMode
from notary.receipts import RECEIPT_CHECKS, Receipt
from notary.server import NotaryServer
from notary.service import NotaryService, kme_key_source
from qkd_device import DeviceClient, RetryPolicy
from tests.notary.sdk_stack import FIRMWARE, NOTARY_SAE, Stack, make_pki, start_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DEVICES = {"meter-north": "sae-0", "meter-south": "sae-1"}
#: Markup that must be shown as text, never run (the admin API allows any owner text;
#: device IDs are restricted to [A-Za-z0-9._:@-] there, and tested with markup in
#: test_explorer.py through the library).
MARKUP = "<img src=x onerror=alert(1)>"
MARKUP_DEVICE = "markup-owner"


class ServerThread:
    """A :class:`NotaryServer` on its own event loop in a background thread."""

    def __init__(self, stack: Stack, chain: ChainClient) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stack = stack
        self._chain = chain
        self._server: NotaryServer | None = None

    def start(self) -> None:
        self._thread.start()

        async def start() -> None:
            settings = self._stack.settings
            service = NotaryService.open(settings, keys=kme_key_source(settings), chain=self._chain)
            self._server = NotaryServer(service, port=self._stack.port)
            await self._server.start()

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(60)

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


@dataclass
class Notarised:
    url: str
    receipts: dict[str, list[Receipt]]  #: device ID -> its anchored receipts
    admin_headers: dict[str, str]


@pytest.fixture(scope="module")
def notarised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notarised]:
    root = tmp_path_factory.mktemp("explorer-browser")
    stack = start_stack(root, make_pki(root / "pki", devices=len(DEVICES)))
    stack.settings = stack.settings.model_copy(
        update={"anchor_mode": AnchorMode.BATCH, "batch_size": 4}
    )
    chain = ChainClient.open(ChainSettings(data_dir=stack.settings.data_dir), Account.create())
    server = ServerThread(stack, chain)
    try:
        server.start()
        receipts: dict[str, list[Receipt]] = {}
        httpx.post(
            f"{stack.notary_url}/v1/admin/devices",
            json={"device_id": MARKUP_DEVICE, "sae_id": "sae-markup", "owner": MARKUP},
            headers=stack.admin_headers(),
        ).raise_for_status()
        for device_id, sae_id in DEVICES.items():
            stack.register(device_id, sae_id)
            with DeviceClient(
                device_id,
                kme=stack.device_kme(sae_id),
                notary=stack.notary_url,
                firmware_digest=FIRMWARE,
                queue_dir=root / f"queue-{device_id}",
                notary_sae_id=NOTARY_SAE,
                retry=RetryPolicy(initial_s=0.05, max_s=0.2, deadline_s=30),
            ) as device:
                sent = [device.send({"kwh": 10 + i, "device": device_id}) for i in range(3)]
                receipts[device_id] = [
                    Receipt.model_validate(device.wait_anchored(s, poll_s=0.1).document)
                    for s in sent
                ]
        yield Notarised(stack.notary_url, receipts, stack.admin_headers())
    finally:
        server.stop()
        chain.close()
        stack.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "install chromium (make system-deps)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; fails the test on any console error (a CSP violation included) and
    on any dialog (an injected ``alert`` that ran)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    dialogs: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("console", on_console)
    page.on("dialog", on_dialog)
    try:
        yield page
        # A 404 page is an intended answer; anything else in the console is a defect.
        assert [e for e in errors if "404" not in e] == []
        assert dialogs == []
    finally:
        context.close()


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def check_results(page: Page) -> dict[str, str]:
    rows = page.locator("#checks tr.check")
    return {
        rows.nth(i).get_attribute("data-check") or "": rows.nth(i).locator("td.result").inner_text()
        for i in range(rows.count())
    }


def test_click_through_to_a_verified_record(notarised: Notarised, page: Page) -> None:
    page.goto(notarised.url + "/")
    expect(page).to_have_url(notarised.url + "/explorer/")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("#outbox-depth")).to_have_text("0")
    expect(page.locator("#latest-blocks tr")).not_to_have_count(1)
    expect(page.locator("#recent-records")).to_contain_text("meter-south")
    # The stylesheet loaded (not blocked by the CSP): the header is dark blue.
    header_bg = page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor")
    assert header_bg == "rgb(20, 33, 61)"
    shoot(page, "01-dashboard")

    page.click("#nav-devices")
    expect(page.locator("h1")).to_have_text("Devices")
    expect(page.locator("#devices .badge.trusted")).to_have_count(len(DEVICES))
    expect(page.locator("#devices .badge.pending")).to_have_count(1)  # the silent device
    shoot(page, "02-devices")

    page.click("text=meter-north")
    expect(page.locator("#device-id")).to_have_text("meter-north")
    expect(page.locator("#timeline [data-kind=first-digest]")).to_have_count(1)
    expect(page.locator("#onchain-attestations")).to_contain_text(FIRMWARE[:12])
    expect(page.locator("#device-records a")).to_have_count(3)
    shoot(page, "03-device")

    newest = notarised.receipts["meter-north"][-1]
    page.click(f"#device-records a[href='/explorer/records/{newest.record_id}']")
    expect(page.locator("#record-id")).to_have_text(newest.record_id)
    assert newest.anchor is not None
    expect(page.locator("#anchor-tx")).to_contain_text(newest.anchor.tx_hash[:10])
    shoot(page, "04-record")

    page.click("#verify-onchain")
    expect(page.locator("#verdict")).to_contain_text("VERIFIED")
    results = check_results(page)
    assert list(results) == list(RECEIPT_CHECKS)
    assert results.pop("proof") == "n/a"  # batch anchoring: the record itself is stored
    assert set(results.values()) == {"passed"}, results
    shoot(page, "05-record-verified")

    page.click("#anchor-tx a")
    expect(page.locator(".call")).to_have_text("TelemetryNotary.recordBatch")
    expect(page.locator("[data-event=RecordStored]")).not_to_have_count(0)
    shoot(page, "06-transaction")


def test_pasted_receipts_genuine_verifies_tampered_fails(notarised: Notarised, page: Page) -> None:
    receipt = notarised.receipts["meter-south"][0]
    document = receipt.model_dump(mode="json")
    page.goto(notarised.url + "/explorer/")
    page.click("#nav-verify")
    page.fill("#receipt-input", json.dumps(document, indent=2))
    page.click("#verify-submit")
    expect(page.locator("#verdict")).to_contain_text("VERIFIED")
    shoot(page, "07-verify-genuine")

    # Claim another payload: the record fields no longer hash to the anchored leaf.
    digit = document["payload_hash"][-1]
    document["payload_hash"] = document["payload_hash"][:-1] + ("1" if digit == "0" else "0")
    page.fill("#receipt-input", json.dumps(document, indent=2))
    page.click("#verify-submit")
    expect(page.locator("#verdict")).to_contain_text("FAILED")
    expect(page.locator("#failed-check")).to_have_text("leaf")
    results = check_results(page)
    assert results["record-id"] == "passed" and results["leaf"] == "failed"
    assert results["transaction"] == "not reached"
    shoot(page, "08-verify-tampered")


def test_search_by_record_tx_block_and_device(notarised: Notarised, page: Page) -> None:
    receipt = notarised.receipts["meter-south"][1]
    assert receipt.anchor is not None
    page.goto(notarised.url + "/explorer/")

    def search(query: str) -> None:
        page.fill("#search-input", query)
        page.click("#search-button")

    search(receipt.record_id)
    expect(page.locator("#record-id")).to_have_text(receipt.record_id)

    search(receipt.anchor.tx_hash)
    expect(page.locator("h1")).to_have_text("Transaction")
    # Linked three times: as a recordBatch argument, and from its RecordStored event (the
    # indexed ID and the record the event repeats in full for indexers).
    expect(page.locator(f"a[href='/explorer/records/{receipt.record_id}']")).to_have_count(3)
    shoot(page, "09-search-transaction")

    search(str(receipt.anchor.block_number))
    expect(page.locator("#block-number")).to_have_text(f"#{receipt.anchor.block_number}")
    expect(page.locator("[data-event=RecordStored]")).not_to_have_count(0)
    shoot(page, "10-search-block")

    search("meter-south")
    expect(page.locator("#device-id")).to_have_text("meter-south")

    search("0x" + "42" * 32)
    expect(page.locator("#not-found")).to_be_visible()
    shoot(page, "11-search-not-found")
    status = httpx.get(notarised.url + "/explorer/search", params={"q": "0x" + "42" * 32})
    assert status.status_code == 404


def test_markup_is_text_in_the_browser(notarised: Notarised, page: Page) -> None:
    page.goto(notarised.url + "/explorer/devices")
    row = page.locator("#devices tr.device-row", has_text=MARKUP_DEVICE)
    expect(row).to_contain_text(MARKUP)  # the owner, shown literally
    row.get_by_role("link", name=MARKUP_DEVICE).click()
    expect(page.locator("#device-id")).to_have_text(MARKUP_DEVICE)
    expect(page.locator("dl.facts")).to_contain_text(MARKUP)
    assert page.locator("main img").count() == 0  # no element was created from it
    shoot(page, "12-markup-owner")
    page.fill("#search-input", MARKUP)
    page.click("#search-button")
    expect(page.locator("#not-found")).to_contain_text(MARKUP)
    assert page.locator("main img").count() == 0


def test_api_docs_render_offline_from_the_notary_itself(notarised: Notarised, page: Page) -> None:
    """Swagger UI at /docs comes from the notary, not a CDN: every request the page makes
    stays on the notary's origin, and the operations render."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(notarised.url + "/docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.get_by_text("/v1/telemetry", exact=True).first).to_be_visible()
    assert requested and all(url.startswith(notarised.url) for url in requested), requested
    shoot(page, "11-api-docs")


def test_the_sign_in_shows_the_reading_to_an_auditor_only(notarised: Notarised, page: Page) -> None:
    receipt = notarised.receipts["meter-south"][0]
    record_page = f"{notarised.url}/explorer/records/{receipt.record_id}"
    page.goto(record_page)
    expect(page.locator("#reading-hidden")).to_be_visible()
    expect(page.locator("#disclosed-payload")).to_have_count(0)
    token = httpx.post(
        f"{notarised.url}/v1/admin/tokens",
        json={"role": "auditor", "label": "browser auditor"},
        headers=notarised.admin_headers,
    ).json()["token"]
    page.click("#nav-signin")
    page.fill("#token-input", token)
    page.click("#signin-submit")
    expect(page.locator("#viewer")).to_contain_text("browser auditor")
    page.goto(record_page)
    expect(page.locator("#disclosed-payload")).to_contain_text('"telemetry"')
    expect(page.locator("#disclosed-salt")).to_contain_text("0x")
    shoot(page, "12-signed-in-record")
    page.click("#signout-button")
    page.goto(record_page)
    expect(page.locator("#disclosed-payload")).to_have_count(0)
