"""Standard Ethereum clients attached to a running notary's ``/rpc``: web3.py's
``HTTPProvider``, Foundry's ``cast`` binary (npm ``@foundry-rs/cast-linux-amd64``, pinned)
and ``qkd-notary receipt verify``; and the answer of a notary that anchors on anvil.

The notary runs on its embedded chain behind uvicorn on a free port (its own event loop in
a thread), anchors a record sealed by a device through the HTTP API, and every client's
view of that record is compared with what the notary's receipt says.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner
from eth_abi.abi import decode
from eth_account import Account
from eth_hash.auto import keccak
from web3 import Web3
from web3.exceptions import Web3RPCError

from notary.api import create_app
from notary.chain.anvil import foundry_binary
from notary.chain.artifacts import load_artifact
from notary.chain.client import ChainClient
from notary.chain.models import encode_device_id
from notary.chain.settings import ChainSettings
from notary.cli import main
from notary.config import AnchorMode, NotarySettings
from notary.keysource import InMemoryKeySource
from notary.receipts import Receipt
from notary.server import NotaryServer
from notary.service import NotaryService
from tests.conftest import AnvilNode
from tests.notary.conftest import ADMIN_TOKEN, NOTARY_ID, SimDevice, sqlite_service

CAST = foundry_binary("cast")
RECORD_TYPES = ["(bytes32,bytes32,uint64,uint64,uint64,uint8,bool)"]
RECORD_STORED = (
    "RecordStored(bytes32,bytes32,bytes32,"
    "(bytes32,bytes32,uint64,bytes32,uint8,uint32,bytes32,bool,uint64,uint64))"
)
T = TypeVar("T")


class ServerThread:
    """A :class:`NotaryServer` on its own event loop in a thread, so that the tests can
    block on subprocesses (cast, the CLI) while the notary keeps serving."""

    def __init__(self, service: NotaryService) -> None:
        self.service = service
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = NotaryServer(service, port=0)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(60)

    def start(self) -> str:
        self._thread.start()
        return self.run(self._server.start())

    def stop(self) -> None:
        try:
            self.run(self._server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


@dataclass(frozen=True)
class Running:
    url: str
    chain_dir: Path
    receipt: Receipt
    plaintext: bytes

    @property
    def rpc_url(self) -> str:
        return f"{self.url}/rpc"


def wait_anchored(url: str, record_id: str, timeout_s: float = 60) -> Receipt:
    deadline = time.monotonic() + timeout_s
    while True:
        receipt = Receipt.model_validate_json(httpx.get(f"{url}/v1/records/{record_id}").content)
        if receipt.anchor is not None:
            return receipt
        assert time.monotonic() < deadline, "record not anchored in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A notary on its embedded chain, serving HTTP, with one record anchored (batch
    method, so the record itself is in TelemetryNotary's storage)."""
    root = tmp_path_factory.mktemp("rpc-clients")
    chain = ChainClient.open(ChainSettings(data_dir=root / "chain"), Account.create())
    settings = NotarySettings(
        data_dir=root / "notary",
        notary_id=NOTARY_ID,
        anchor_mode=AnchorMode.BATCH,
        batch_max_latency_s=0.1,
    )
    keys = InMemoryKeySource()
    service = sqlite_service(settings, keys, chain=chain)
    server = ServerThread(service)
    try:
        url = server.start()
        server.run(service.register_device("rpc-client-dev", sae_id="sae-rpc-client"))
        device = SimDevice("rpc-client-dev", "sae-rpc-client", keys)
        plaintext = device.plaintext({"temp_c": 19.25})
        accepted = httpx.post(
            f"{url}/v1/telemetry",
            content=device.seal(plaintext).to_json(),
            headers={"Content-Type": "application/json"},
        )
        assert accepted.status_code == 202, accepted.text
        receipt = wait_anchored(url, accepted.json()["record_id"])
        yield Running(url, root / "chain", receipt, plaintext)
    finally:
        server.stop()
        chain.close()


def anchor_of(running: Running) -> Any:
    assert running.receipt.anchor is not None
    return running.receipt.anchor


# -- web3.py ----------------------------------------------------------------------------


def test_web3_http_provider_reads_the_record(running: Running) -> None:
    anchor = anchor_of(running)
    w3 = Web3(Web3.HTTPProvider(running.rpc_url, request_kwargs={"timeout": 30}))
    assert w3.is_connected()
    assert w3.eth.chain_id == anchor.chain_id
    assert len(w3.eth.accounts) == 0
    notary = w3.eth.contract(address=anchor.contract, abi=load_artifact("TelemetryNotary").abi)
    record_id = bytes.fromhex(running.receipt.record_id[2:])
    device, leaf, sequence, recorded_at, block, mode, _ = notary.functions.getRecord(
        record_id
    ).call()
    assert device == encode_device_id(running.receipt.device_id)
    assert "0x" + leaf.hex() == anchor.leaf
    assert sequence == running.receipt.sequence and block == anchor.block_number
    assert recorded_at == anchor.block_timestamp and mode == 1  # OTP
    (event,) = notary.events.RecordStored().get_logs(
        from_block=0, argument_filters={"recordId": record_id}
    )
    assert event["transactionHash"].to_0x_hex() == anchor.tx_hash
    assert "0x" + bytes(event["args"]["leaf"]).hex() == anchor.leaf
    assert event["args"]["record"]["sequence"] == running.receipt.sequence
    block_data = w3.eth.get_block(anchor.block_number)
    assert block_data["hash"].to_0x_hex() == anchor.block_hash
    tx_receipt = w3.eth.get_transaction_receipt(anchor.tx_hash)
    assert tx_receipt["status"] == 1 and tx_receipt["blockNumber"] == anchor.block_number
    with pytest.raises(Web3RPCError, match="read-only"):
        w3.eth.send_raw_transaction(b"\x02")


# -- cast -------------------------------------------------------------------------------


def cast(*args: str, rpc_url: str, home: Path) -> subprocess.CompletedProcess[str]:
    assert CAST.is_file(), f"{CAST} missing: run `make node-deps`"
    return subprocess.run(
        [str(CAST), *args, "--rpc-url", rpc_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(home), "NO_COLOR": "1"},
    )


def cast_ok(*args: str, rpc_url: str, home: Path) -> str:
    done = cast(*args, rpc_url=rpc_url, home=home)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout.strip()


def test_cast_reads_what_the_notary_reported(running: Running, tmp_path: Path) -> None:
    anchor = anchor_of(running)
    url, home = running.rpc_url, tmp_path
    version = subprocess.run([str(CAST), "--version"], capture_output=True, text=True, check=True)
    assert "1.7.1" in version.stdout  # the pinned npm package
    assert cast_ok("chain-id", rpc_url=url, home=home) == str(anchor.chain_id)
    assert int(cast_ok("block-number", rpc_url=url, home=home)) >= anchor.block_number
    latest = json.loads(cast_ok("block", "latest", "--json", rpc_url=url, home=home))
    assert int(latest["number"], 16) >= anchor.block_number
    block = json.loads(cast_ok("block", str(anchor.block_number), "--json", rpc_url=url, home=home))
    assert block["hash"] == anchor.block_hash
    assert int(block["timestamp"], 16) == anchor.block_timestamp
    assert anchor.tx_hash in block["transactions"]
    receipt = json.loads(cast_ok("receipt", anchor.tx_hash, "--json", rpc_url=url, home=home))
    assert receipt["status"] == "0x1" and receipt["blockHash"] == anchor.block_hash
    assert receipt["to"].lower() == anchor.contract.lower()
    raw = cast_ok(
        "call",
        anchor.contract,
        "getRecord(bytes32)",
        running.receipt.record_id,
        rpc_url=url,
        home=home,
    )
    ((device, leaf, sequence, _, block_number, _, _),) = decode(
        RECORD_TYPES, bytes.fromhex(raw[2:])
    )
    assert device == encode_device_id(running.receipt.device_id)
    assert "0x" + leaf.hex() == anchor.leaf
    assert (sequence, block_number) == (running.receipt.sequence, anchor.block_number)
    logs = json.loads(
        cast_ok(
            "logs",
            "--from-block",
            "0",
            "--address",
            anchor.contract,
            "--json",
            "0x" + keccak(RECORD_STORED.encode()).hex(),
            rpc_url=url,
            home=home,
        )
    )
    mine = [log for log in logs if log["topics"][2] == running.receipt.record_id]
    assert len(mine) == 1 and mine[0]["transactionHash"] == anchor.tx_hash
    refused = cast("rpc", "eth_sendRawTransaction", "0x02", rpc_url=url, home=home)
    assert refused.returncode != 0 and "read-only" in refused.stderr


# -- qkd-notary receipt verify --------------------------------------------------------


def qkd_notary(*args: str) -> tuple[int, str]:
    """``qkd-notary ARGS`` in-process (the server runs in its own thread meanwhile)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_receipt_verify_checks_a_running_embedded_notary_through_rpc(
    running: Running, tmp_path: Path
) -> None:
    record_id = running.receipt.record_id
    payload = tmp_path / "payload.bin"
    payload.write_bytes(running.plaintext)
    token = tmp_path / "token"
    token.write_text(ADMIN_TOKEN)
    code, out = qkd_notary(
        "receipt",
        "verify",
        record_id,
        "--notary",
        running.url,
        "--token-file",
        str(token),
        "--rpc-url",
        running.rpc_url,
        "--payload-file",
        str(payload),
    )
    assert code == 0, out
    assert "receipt valid" in out and "verified locally" in out and "payload" in out
    # The public receipt and a plaintext, but no salt: nothing forged, not all checked.
    code, out = qkd_notary(
        "receipt",
        "verify",
        record_id,
        "--notary",
        running.url,
        "--rpc-url",
        running.rpc_url,
        "--payload-file",
        str(payload),
    )
    assert code == 5 and "PARTLY VERIFIED" in out and "payload" in out, out
    # A receipt whose claims the chain does not back fails against the same endpoint.
    forged = running.receipt.model_copy(update={"sequence": running.receipt.sequence + 1})
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(forged.model_dump_json())
    code, out = qkd_notary(
        "receipt", "verify", record_id, "--file", str(forged_file), "--rpc-url", running.rpc_url
    )
    assert code == 1 and "FORGED" in out, out
    # The chain files are locked by the running notary: the CLI points at /rpc.
    code, out = qkd_notary(
        "receipt",
        "verify",
        record_id,
        "--notary",
        running.url,
        "--data-dir",
        str(running.chain_dir),
    )
    assert code == 2 and "--rpc-url http://<notary>/rpc" in out, out


# -- a notary on an external node -----------------------------------------------------


async def test_notary_on_an_external_node_sends_rpc_callers_there(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    signer = Account.create()
    anvil.rpc("anvil_setBalance", [signer.address, hex(10**21)])
    chain = ChainClient.open(ChainSettings(data_dir=tmp_path / "chain", rpc_url=anvil.url), signer)
    settings = NotarySettings(data_dir=tmp_path / "notary", notary_id=NOTARY_ID)
    service = sqlite_service(settings, InMemoryKeySource(), chain=chain)
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://n.test") as http:
            response = await http.post(
                "/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}
            )
    finally:
        await service.aclose()
        chain.close()
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == -32004 and "external Ethereum node" in error["message"]
    assert str(anvil.port) not in response.text  # the node's URL is not disclosed
