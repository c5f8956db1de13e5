"""The explorer's pages: server-rendered HTML over the service, its store and its chain.

Read-only by construction: the routes call only read methods of the store, the chain view
(:mod:`notary.explorer.chain_view`) and receipt verification; the POSTs check a pasted
receipt, or sign a viewer in and out (a cookie), and store nothing. Pages never show key
material, the admin token or the node URL (it may carry credentials). By default they
show the public view (hashes, proofs, chain coordinates); a viewer signed in with an owner
or auditor token (``qkd-notary token issue``) also sees the plaintexts and salts that
token covers (:mod:`notary.access`).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from notary.access import PUBLIC, Viewer
from notary.api.bounded import BoundedJSONRoute
from notary.api.deps import ServiceDep
from notary.errors import AccessDenied, DeviceNotFound, RecordNotFound, ServiceUnavailable
from notary.explorer.chain_view import ChainView
from notary.explorer.event_log import EVENT_NAMES, LoggedEvent
from notary.explorer.search import MIN_PREFIX_DIGITS, RECENT_BLOCKS, find
from notary.explorer.stats import metric_values, per_minute
from notary.explorer.templating import STATIC_DIR, templates
from notary.explorer.verification import verify
from notary.service import NotaryService
from notary.storage.base import RecordBrowser

__all__ = ["install_explorer", "router"]

#: The cookie holding a signed-in viewer's token (HttpOnly, SameSite=Strict, /explorer only).
SESSION_COOKIE = "qkdn_explorer"


async def _identify(request: Request) -> None:
    """Who is looking: the token in the session cookie, else the public."""
    service: NotaryService = request.app.state.service
    viewer = PUBLIC
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            viewer = await service.viewer(token)
        except AccessDenied:
            viewer = PUBLIC  # revoked since sign-in: the page says "sign in"
    request.state.viewer = viewer


router = APIRouter(
    prefix="/explorer",
    include_in_schema=False,
    route_class=BoundedJSONRoute,
    dependencies=[Depends(_identify)],
)
_root = APIRouter(include_in_schema=False, route_class=BoundedJSONRoute)

#: The dashboard's rate window and the most records it reads to draw it.
RATE_MINUTES = 10
RATE_SCAN_LIMIT = 100_000
#: Largest pasted receipt form accepted (a receipt with a deep proof is a few KiB).
MAX_FORM_BYTES = 256 * 1024

_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_SECURITY_HEADERS = {
    # No inline script or style: anything injected past escaping still would not run.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def install_explorer(app: FastAPI) -> None:
    """Serve the explorer under ``/explorer`` (``/`` redirects there) with its static files."""
    app.include_router(router)
    app.include_router(_root)
    app.mount("/explorer/static", StaticFiles(directory=STATIC_DIR), name="explorer-static")


def _page(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    service: NotaryService = request.app.state.service
    base = {
        "notary_id": service.settings.notary_id,
        "chain": ChainView.of(service.chain),
        "viewer": _viewer_of(request),
    }
    return templates.TemplateResponse(
        request,
        template,
        {**base, **context},
        status_code=status_code,
        headers=_SECURITY_HEADERS,
    )


def _not_found(request: Request, what: str, query: str) -> HTMLResponse:
    context = {
        "what": what,
        "query": query,
        "min_digits": MIN_PREFIX_DIGITS,
        "recent_blocks": RECENT_BLOCKS,
    }
    return _page(request, "not_found.html", context, status_code=404)


def _unavailable(request: Request, exc: ServiceUnavailable) -> HTMLResponse:
    return _page(request, "unavailable.html", {"reason": exc.detail}, status_code=503)


def _viewer_of(request: Request) -> Viewer:
    viewer: Viewer = getattr(request.state, "viewer", PUBLIC)
    return viewer


def _browser(service: NotaryService) -> RecordBrowser | None:
    return service.store if isinstance(service.store, RecordBrowser) else None


@_root.get("/")
async def read_root() -> RedirectResponse:
    """The notary's front page is the explorer."""
    return RedirectResponse("/explorer/", status_code=307)


@router.get("/", name="explorer_dashboard")
async def read_dashboard(request: Request, service: ServiceDep) -> HTMLResponse:
    """Records per minute, outbox depth, KME key stock, latest blocks."""
    chain = ChainView.of(service.chain)
    browser = _browser(service)
    now = time.time()
    try:
        await service.refresh_gauges()
        depth = await service.store.outbox_depth()
        devices = await service.store.list_devices()
        rates, recent, capped = None, [], False
        if browser is not None:
            times = await browser.accepted_times(now - RATE_MINUTES * 60, RATE_SCAN_LIMIT)
            capped = len(times) >= RATE_SCAN_LIMIT
            rates = per_minute(times, now=now, minutes=RATE_MINUTES)
            recent = await browser.recent_records(10)
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    blocks, head, chain_error = [], None, None
    if chain is not None:
        try:
            head = await asyncio.to_thread(chain.head)
            blocks = await asyncio.to_thread(chain.latest_blocks, 8, below=head)
        except ServiceUnavailable as exc:
            chain_error = exc.detail
    peak = max((r.count for r in rates), default=0) if rates else 0
    return _page(
        request,
        "dashboard.html",
        {
            "outbox_depth": depth,
            "rates": rates,
            "rate_peak": peak,
            "rates_capped": capped,
            "key_stock": sorted(metric_values(service.metrics.key_stock, "sae_id").items()),
            "depletion": metric_values(service.metrics.key_stock_depletion, "sae_id"),
            "warn_below_s": service.settings.key_stock_warn_s,
            "accepted": sorted(metric_values(service.metrics.accepted, "mode").items()),
            "refused": sorted(metric_values(service.metrics.rejected, "reason").items()),
            "untrusted": [d for d in devices if d.active and d.current_digest and not d.trusted],
            "unrecorded": metric_values(service.metrics.records_unrecorded, "outcome"),
            "recent": recent,
            "blocks": blocks,
            "head": head,
            "chain_error": chain_error,
        },
    )


@router.get("/devices", name="explorer_devices")
async def read_devices(request: Request, service: ServiceDep) -> HTMLResponse:
    """All devices with trust badges."""
    try:
        devices = await service.devices()
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    return _page(request, "devices.html", {"devices": devices})


@router.get("/devices/{device_id:path}", name="explorer_device")
async def read_device(request: Request, device_id: str, service: ServiceDep) -> HTMLResponse:
    """A device: registration, trust, attestation timeline (notary and chain), records."""
    chain = ChainView.of(service.chain)
    browser = _browser(service)
    try:
        device, events = await service.device(device_id)
        records = await browser.recent_records(25, device_id=device_id) if browser else None
    except DeviceNotFound:
        return _not_found(request, "device", device_id)
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    attestations, chain_error = None, None
    if chain is not None:
        try:
            attestations = await asyncio.to_thread(chain.attestations, device_id)
        except ServiceUnavailable as exc:
            chain_error = exc.detail
    return _page(
        request,
        "device.html",
        {
            "device": device,
            "events": events,
            "records": records,
            "attestations": attestations,
            "chain_error": chain_error,
        },
    )


@router.get("/records/{record_id}", name="explorer_record")
async def read_record(
    request: Request, record_id: str, service: ServiceDep, verify_onchain: bool = False
) -> HTMLResponse:
    """A record's receipt; with ``?verify_onchain=true`` every check is run and shown."""
    chain = ChainView.of(service.chain)
    try:
        receipt = await service.receipt(record_id, viewer=_viewer_of(request))
        record = await service.store.get_record(receipt.record_id)
    except RecordNotFound:
        return _not_found(request, "record", record_id)
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    report, chain_error = None, None
    if verify_onchain and chain is not None and receipt.anchor is not None:
        # The notary's plaintext and salt are checked against the hash (shown only to
        # viewers entitled to them, in the receipt's disclosure).
        try:
            report = await asyncio.to_thread(
                verify,
                receipt,
                chain.w3,
                payload=None if record is None else record.payload,
                salt=None if record is None else record.salt,
                expected_contract=chain.notary_address,
            )
        except ServiceUnavailable as exc:
            chain_error = exc.detail
    return _page(
        request,
        "record.html",
        {
            "receipt": receipt,
            "receipt_json": json.dumps(receipt.model_dump(mode="json"), indent=2),
            "report": report,
            "verify_requested": verify_onchain,
            "chain_error": chain_error,
        },
    )


@router.get("/verify", name="explorer_verify_form")
async def read_verify_form(request: Request) -> HTMLResponse:
    """A form to paste a receipt (and optionally its plaintext) for verification."""
    return _page(request, "verify.html", {"pasted": "", "report": None, "chain_error": None})


@router.post("/verify", name="explorer_verify")
async def verify_pasted_receipt(request: Request, service: ServiceDep) -> HTMLResponse:
    """Verify a pasted receipt against this notary's chain; nothing is stored."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _page(
                request,
                "verify.html",
                {"pasted": "", "report": None, "chain_error": "the receipt is too large"},
                status_code=413,
            )
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=4)
    except ValueError:  # more fields than the form has
        fields = {}
    pasted = fields.get("receipt", [""])[0]
    plaintext = fields.get("payload", [""])[0]
    salt_hex = fields.get("salt", [""])[0].strip()
    chain = ChainView.of(service.chain)
    report, chain_error = None, None
    if chain is None:
        chain_error = "this notary has no chain attached; use qkd-notary receipt verify"
    else:
        try:
            report = await asyncio.to_thread(
                verify,
                pasted,
                chain.w3,
                payload=plaintext.encode("utf-8") if plaintext else None,
                salt=_salt(salt_hex),
                expected_contract=chain.notary_address,
            )
        except ServiceUnavailable as exc:
            chain_error = exc.detail
    return _page(
        request,
        "verify.html",
        {"pasted": pasted, "report": report, "chain_error": chain_error},
        status_code=200 if report is not None else 503,
    )


def _salt(text: str) -> bytes | None:
    """A pasted 32-byte hex salt, or ``None`` (a malformed one is no salt at all)."""
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


@router.get("/signin", name="explorer_signin_form")
async def read_signin_form(request: Request) -> HTMLResponse:
    """Sign in with an owner or auditor token to see the readings it covers."""
    return _page(request, "signin.html", {"error": None})


@router.post("/signin", name="explorer_signin")
async def sign_in(request: Request, service: ServiceDep) -> Response:
    """Check the token and keep it in an HttpOnly, SameSite=Strict cookie."""
    body = await request.body()
    try:
        fields = parse_qs(body[:4096].decode("utf-8", errors="replace"), max_num_fields=2)
    except ValueError:
        fields = {}
    token = fields.get("token", [""])[0].strip()
    try:
        viewer = await service.viewer(token) if token else None
    except AccessDenied:
        viewer = None
    if viewer is None:
        return _page(request, "signin.html", {"error": "unknown or revoked token"}, status_code=401)
    response = RedirectResponse("/explorer/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_https(request),
        path="/explorer",
        max_age=8 * 3600,
    )
    return response


@router.post("/signout", name="explorer_signout")
async def sign_out() -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/explorer/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/explorer")
    return response


def _https(request: Request) -> bool:
    """Whether the viewer reached us over HTTPS (directly, or through the proxy)."""
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"


@router.get("/blocks", name="explorer_blocks")
async def read_blocks(
    request: Request, service: ServiceDep, below: int | None = None
) -> HTMLResponse:
    """Latest blocks, 25 a page."""
    chain = ChainView.of(service.chain)
    if chain is None:
        return _not_found(request, "chain", "no chain attached")
    try:
        blocks = await asyncio.to_thread(chain.latest_blocks, 25, below=below)
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    older = blocks[-1].number - 1 if blocks and blocks[-1].number > 0 else None
    return _page(request, "blocks.html", {"blocks": blocks, "older": older})


@router.get("/blocks/{block_id}", name="explorer_block")
async def read_block(request: Request, block_id: str, service: ServiceDep) -> HTMLResponse:
    """One block (by number or hash) with its transactions and decoded events."""
    chain = ChainView.of(service.chain)
    key: int | str | None = None
    if block_id.isascii() and block_id.isdigit():
        key = int(block_id)
    elif _HEX32.match(block_id):
        key = block_id.lower()
    if chain is None or key is None:
        return _not_found(request, "block", block_id)
    try:
        block = await asyncio.to_thread(chain.block, key)
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    if block is None:
        return _not_found(request, "block", block_id)
    return _page(request, "block.html", {"block": block})


@router.get("/tx/{tx_hash}", name="explorer_transaction")
async def read_transaction(request: Request, tx_hash: str, service: ServiceDep) -> HTMLResponse:
    """One transaction: the decoded call and every event it emitted."""
    chain = ChainView.of(service.chain)
    if chain is None or not _HEX32.match(tx_hash):
        return _not_found(request, "transaction", tx_hash)
    try:
        tx = await asyncio.to_thread(chain.transaction, tx_hash.lower())
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    if tx is None:
        return _not_found(request, "transaction", tx_hash)
    return _page(request, "transaction.html", {"tx": tx})


@router.get("/search", name="explorer_search")
async def search(request: Request, service: ServiceDep, q: str = "") -> Response:
    """A device ID, record ID, transaction or block hash (full or as the explorer shortens
    it) or block number: go to its page, or list the candidates when several match."""
    try:
        hits = await find(q, service)
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    if not hits:
        return _not_found(request, "search", q)
    if len(hits) == 1:
        return RedirectResponse(hits[0].url, status_code=303)
    return _page(request, "search.html", {"query": q, "hits": hits})


@router.get("/events", name="explorer_events", response_model=None)
async def read_events(
    request: Request,
    service: ServiceDep,
    device: str = "",
    event: str = "",
    since: str = "",
    until: str = "",
    format: str = "html",
) -> Response:
    """The contracts' event log, filtered by device, event and time (UTC), as a page or
    as CSV/JSON (``format=csv|json``) for an auditor's own tools."""
    chain = ChainView.of(service.chain)
    filters = {"device": device, "event": event, "since": since, "until": until}
    try:
        window = [_parse_time(since), _parse_time(until)]
        if event and event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}")
        if format not in ("html", "csv", "json"):
            raise ValueError("format is html, csv or json")
    except ValueError as exc:
        return _page(
            request, "events.html", {**_events_context(filters), "error": str(exc)}, status_code=400
        )
    if chain is None:
        return _unavailable(request, ServiceUnavailable("no chain attached"))
    try:
        log = await asyncio.to_thread(
            chain.events,
            device_id=device or None,
            event=event or None,
            since=window[0],
            until=window[1],
        )
    except ServiceUnavailable as exc:
        return _unavailable(request, exc)
    if format == "json":
        body = {
            "filters": filters,
            "from_block": log.from_block,
            "to_block": log.to_block,
            "complete": log.complete,
            "events": [e.to_dict() for e in log.events],
        }
        return Response(json.dumps(body, indent=2), media_type="application/json")
    if format == "csv":
        return Response(
            _events_csv(log.events),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="qkd-notary-events.csv"'},
        )
    return _page(request, "events.html", {**_events_context(filters), "log": log, "error": None})


def _events_context(filters: dict[str, str]) -> dict[str, Any]:
    query = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
    return {"filters": filters, "event_names": EVENT_NAMES, "query": query, "log": None}


def _parse_time(value: str) -> int | None:
    """An empty filter, Unix seconds, or an ISO date(-time) in UTC, as Unix seconds."""
    if not value:
        return None
    if value.isdigit() and len(value) <= 12:
        return int(value)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a time (Unix seconds or YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _events_csv(events: Sequence[LoggedEvent]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["block", "time_utc", "tx_hash", "log_index", "contract", "event", "args"])
    for e in events:
        args = "; ".join(f"{a.name}={a.value}" for a in e.args)
        when = dt.datetime.fromtimestamp(e.block_timestamp, dt.UTC).isoformat()
        writer.writerow([e.block_number, when, e.tx_hash, e.log_index, e.contract, e.name, args])
    return out.getvalue()
