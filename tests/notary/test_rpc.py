"""``POST /rpc``: the embedded chain's read-only JSON-RPC gateway, over ASGI.

One module-scoped embedded chain holds a known history (contract deployments, a device
registration, one recordBatch with a published payload); every served method is checked
against what the chain client itself reports, and the refusals, limits and JSON-RPC framing
(parse errors, invalid requests, batches, notifications) are checked as a client sees them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from notary.api import create_app
from notary.api.routes.rpc import CONCURRENT_CALLS
from notary.chain.client import ChainClient
from notary.chain.embedded import SerializedTesterProvider
from notary.chain.merkle import record_leaf
from notary.chain.models import SecurityMode, encode_device_id
from notary.chain.rpc_gateway import EmbeddedRPCGateway, RPCLimits
from notary.chain.settings import ChainSettings
from notary.chain.transactions import hex0x
from notary.config import NotarySettings
from notary.errors import JSONRPCError
from notary.keysource import InMemoryKeySource
from notary.service import NotaryService
from tests.notary.conftest import NOTARY_ID, sqlite_service
from tests.notary.records import chain_record

SIGNER: LocalAccount = Account.from_key(keccak(b"rpc-gateway-test-signer"))
RECORD_ID = keccak(b"rpc record 1")
PAYLOAD_HASH = keccak(b"rpc payload 1")

DEVICE = "rpc-device"
RECORD = chain_record(
    "rpc", DEVICE, 7, record_id=RECORD_ID, payload_hash=PAYLOAD_HASH, payload=b"reading"
)
GET_RECORD = keccak(b"getRecord(bytes32)")[:4]
RECORD_TUPLE = "(bytes32,bytes32,uint64,bytes32,uint8,uint32,bytes32,bool,uint64,uint64)"
RECORD_STORED = keccak(f"RecordStored(bytes32,bytes32,bytes32,{RECORD_TUPLE})".encode())
RECORD_TYPES = ["(bytes32,bytes32,uint64,uint64,uint64,uint8,bool)"]
UNFUNDED = "0x" + "12" * 20
GWEI = 10**9


@dataclass(frozen=True)
class History:
    client: ChainClient
    tx_hash: str
    block_number: int
    block_hash: str

    @property
    def provider(self) -> SerializedTesterProvider:
        provider = self.client.w3.provider
        assert isinstance(provider, SerializedTesterProvider)
        return provider


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    client = ChainClient.open(ChainSettings(data_dir=tmp_path_factory.mktemp("rpc")), SIGNER)
    try:
        client.register_device(DEVICE, sae_id="sae-rpc", owner=SIGNER.address)
        batch = client.record_batch([RECORD])
        yield History(client, batch.tx.tx_hash, batch.tx.block_number, batch.tx.block_hash)
    finally:
        client.close()


@pytest.fixture
def gateway(history: History) -> EmbeddedRPCGateway:
    return EmbeddedRPCGateway(history.provider, chain_id=history.client.chain_id)


async def _service(tmp_path: Path, chain: ChainClient | None) -> NotaryService:
    settings = NotarySettings(data_dir=tmp_path / "notary", notary_id=NOTARY_ID)
    return sqlite_service(settings, InMemoryKeySource(), chain=chain)


@pytest.fixture
async def http(history: History, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    service = await _service(tmp_path, history.client)
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://notary.test") as c:
            yield c
    finally:
        await service.aclose()


async def rpc(http: httpx.AsyncClient, method: str, *params: Any) -> Any:
    """The result of one call; fails the test on an error answer."""
    response = await http.post(
        "/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == 1 and body["jsonrpc"] == "2.0" and "error" not in body, body
    return body["result"]


async def rpc_error(http: httpx.AsyncClient, method: str, *params: Any) -> dict[str, Any]:
    response = await http.post(
        "/rpc", json={"jsonrpc": "2.0", "id": "x", "method": method, "params": list(params)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "x" and "result" not in body, body
    error: dict[str, Any] = body["error"]
    return error


def record_call(**fields: Any) -> dict[str, Any]:
    """An eth_call object for ``getRecord(RECORD_ID)``."""
    return {"input": hex0x(GET_RECORD + RECORD_ID), **fields}


# -- node identity ----------------------------------------------------------------------


async def test_identity_methods_answer_like_a_node(
    http: httpx.AsyncClient, history: History
) -> None:
    chain_id = history.client.chain_id
    assert await rpc(http, "eth_chainId") == hex(chain_id)
    assert await rpc(http, "net_version") == str(chain_id)
    assert (await rpc(http, "web3_clientVersion")).startswith("qkd-notary/v")
    assert await rpc(http, "web3_sha3", "0x68656c6c6f") == hex0x(keccak(b"hello"))
    assert await rpc(http, "net_listening") is False  # no peer-to-peer network
    assert await rpc(http, "net_peerCount") == "0x0"
    assert await rpc(http, "eth_syncing") is False


async def test_eth_accounts_is_empty(http: httpx.AsyncClient) -> None:
    # eth-tester's backends normally hold ten prefunded, unlocked test accounts; a node
    # that listed accounts would invite eth_sendTransaction. This one never lists any.
    assert await rpc(http, "eth_accounts") == []


# -- blocks -----------------------------------------------------------------------------


async def test_block_number_and_blocks_match_the_chain(
    http: httpx.AsyncClient, history: History
) -> None:
    head = history.client.block_number()
    assert await rpc(http, "eth_blockNumber") == hex(head)
    block = await rpc(http, "eth_getBlockByNumber", hex(history.block_number), False)
    assert block["hash"] == history.block_hash
    assert block["number"] == hex(history.block_number)
    assert block["transactions"] == [history.tx_hash]
    assert block["miner"] == "0x" + "00" * 20
    assert len(block["logsBloom"]) == 2 + 512 and int(block["logsBloom"], 16) != 0
    for key in ("parentHash", "stateRoot", "receiptsRoot", "gasLimit", "baseFeePerGas"):
        assert key in block
    assert await rpc(http, "eth_getBlockByHash", history.block_hash, False) == block
    for tag in ("latest", "safe", "finalized", "pending"):
        assert (await rpc(http, "eth_getBlockByNumber", tag, False))["number"] == hex(head)
    assert (await rpc(http, "eth_getBlockByNumber", "earliest", False))["number"] == "0x0"
    assert await rpc(http, "eth_getBlockByNumber", hex(head + 1), False) is None
    assert await rpc(http, "eth_getBlockByHash", "0x" + "ab" * 32, False) is None


async def test_full_block_carries_transaction_objects(
    http: httpx.AsyncClient, history: History
) -> None:
    block = await rpc(http, "eth_getBlockByNumber", hex(history.block_number), True)
    (tx,) = block["transactions"]
    assert tx == await rpc(http, "eth_getTransactionByHash", history.tx_hash)
    assert tx["from"] == SIGNER.address and tx["to"] == history.client.notary_address
    assert tx["input"].startswith("0x") and tx["type"] == "0x2"
    assert tx["yParity"] in ("0x0", "0x1") and tx["chainId"] == hex(history.client.chain_id)
    assert tx["blockHash"] == history.block_hash and tx["transactionIndex"] == "0x0"


async def test_transaction_counts_and_positions(http: httpx.AsyncClient, history: History) -> None:
    number, block_hash = hex(history.block_number), history.block_hash
    assert await rpc(http, "eth_getBlockTransactionCountByNumber", number) == "0x1"
    assert await rpc(http, "eth_getBlockTransactionCountByHash", block_hash) == "0x1"
    assert await rpc(http, "eth_getUncleCountByBlockNumber", number) == "0x0"
    assert await rpc(http, "eth_getUncleCountByBlockHash", block_hash) == "0x0"
    assert await rpc(http, "eth_getBlockTransactionCountByHash", "0x" + "cd" * 32) is None
    by_number = await rpc(http, "eth_getTransactionByBlockNumberAndIndex", number, "0x0")
    by_hash = await rpc(http, "eth_getTransactionByBlockHashAndIndex", block_hash, "0x0")
    assert by_number["hash"] == by_hash["hash"] == history.tx_hash
    assert await rpc(http, "eth_getTransactionByBlockNumberAndIndex", number, "0x1") is None
    assert await rpc(http, "eth_getTransactionByHash", "0x" + "ef" * 32) is None


async def test_receipts_carry_logs_bloom_and_logs(
    http: httpx.AsyncClient, history: History
) -> None:
    receipt = await rpc(http, "eth_getTransactionReceipt", history.tx_hash)
    assert receipt["status"] == "0x1" and receipt["blockHash"] == history.block_hash
    assert receipt["contractAddress"] is None and receipt["from"] == SIGNER.address
    # One transaction in the block: the receipt's bloom (computed by the gateway from
    # the logs) must equal the block's (computed by py-evm).
    block = await rpc(http, "eth_getBlockByNumber", hex(history.block_number), False)
    assert receipt["logsBloom"] == block["logsBloom"]
    stored = [log for log in receipt["logs"] if log["topics"][0] == hex0x(RECORD_STORED)]
    assert len(stored) == 1 and stored[0]["topics"][2] == hex0x(RECORD_ID)
    assert all(log["removed"] is False for log in receipt["logs"])
    assert await rpc(http, "eth_getBlockReceipts", hex(history.block_number)) == [receipt]
    assert await rpc(http, "eth_getBlockReceipts", {"blockHash": history.block_hash}) == [receipt]
    assert await rpc(http, "eth_getTransactionReceipt", "0x" + "01" * 32) is None


# -- logs -------------------------------------------------------------------------------


async def test_get_logs_filters_by_address_topics_range_and_hash(
    http: httpx.AsyncClient, history: History
) -> None:
    notary = history.client.notary_address
    everything = await rpc(http, "eth_getLogs", {"fromBlock": "earliest", "toBlock": "latest"})
    assert {log["address"] for log in everything} == {
        history.client.registry_address,
        notary,
    }
    mine = {"address": notary, "topics": [hex0x(RECORD_STORED), None, hex0x(RECORD_ID)]}
    (log,) = await rpc(http, "eth_getLogs", {**mine, "fromBlock": "0x0"})
    assert log["transactionHash"] == history.tx_hash
    leaf, logged = decode(["bytes32", RECORD_TUPLE], bytes.fromhex(log["data"][2:]))
    assert leaf == record_leaf(RECORD) and logged[1:5] == (
        encode_device_id(DEVICE),
        7,
        PAYLOAD_HASH,
        int(SecurityMode.OTP),
    )
    assert await rpc(http, "eth_getLogs", {**mine, "blockHash": history.block_hash}) == [log]
    # OR within a position; a record that does not exist matches nothing.
    either = [hex0x(RECORD_STORED), None, [hex0x(keccak(b"none")), hex0x(RECORD_ID)]]
    assert await rpc(http, "eth_getLogs", {"topics": either, "fromBlock": "0x0"}) == [log]
    absent = [hex0x(RECORD_STORED), None, hex0x(keccak(b"none"))]
    assert await rpc(http, "eth_getLogs", {"topics": absent, "fromBlock": "0x0"}) == []
    before = hex(history.block_number - 1)
    assert await rpc(http, "eth_getLogs", {**mine, "fromBlock": "0x0", "toBlock": before}) == []
    # A range past the head is clamped to it, as far as the chain goes.
    far = {**mine, "fromBlock": "0x0", "toBlock": hex(10**9)}
    assert await rpc(http, "eth_getLogs", far) == [log]


async def test_get_logs_rejects_bad_ranges_and_enforces_limits(
    http: httpx.AsyncClient, history: History
) -> None:
    backwards = await rpc_error(http, "eth_getLogs", {"fromBlock": "0x3", "toBlock": "0x2"})
    assert backwards["code"] == -32602
    mixed = {"blockHash": history.block_hash, "fromBlock": "0x0"}
    assert (await rpc_error(http, "eth_getLogs", mixed))["code"] == -32602
    gateway = EmbeddedRPCGateway(
        history.provider,
        chain_id=history.client.chain_id,
        limits=RPCLimits(max_log_blocks=2, max_log_results=2),
    )
    with pytest.raises(JSONRPCError) as too_long:
        gateway.call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "0x2"}])
    assert too_long.value.code == -32005 and "2 blocks" in str(too_long.value)
    with pytest.raises(JSONRPCError) as too_many:
        gateway.call("eth_getLogs", [{"fromBlock": hex(history.block_number)}])
    assert too_many.value.code == -32005 and "2 results" in str(too_many.value)


# -- execution --------------------------------------------------------------------------


async def test_eth_call_reads_a_record_without_a_funded_sender(
    http: httpx.AsyncClient, history: History
) -> None:
    notary = history.client.notary_address
    for call in (record_call(to=notary), record_call(to=notary, **{"from": UNFUNDED})):
        output = await rpc(http, "eth_call", call, "latest")
        ((device, leaf, sequence, recorded_at, block, mode, published),) = decode(
            RECORD_TYPES, bytes.fromhex(output[2:])
        )
        assert device == encode_device_id(DEVICE) and leaf == record_leaf(RECORD)
        assert (sequence, block, mode, published) == (
            7,
            history.block_number,
            int(SecurityMode.OTP),
            True,
        )
        assert recorded_at > 0
    # The state before the record's block has no such record (EIP-1898 form too).
    before = hex(history.block_number - 1)
    for block_param in (before, {"blockNumber": before}):
        output = await rpc(http, "eth_call", record_call(to=notary), block_param)
        assert decode(RECORD_TYPES, bytes.fromhex(output[2:]))[0][3] == 0


async def test_eth_call_reverts_with_data_like_a_node(
    http: httpx.AsyncClient, history: History
) -> None:
    # recordBatch from an account without NOTARY_ROLE: AccessControl's custom error.
    selector = keccak(f"recordBatch({RECORD_TUPLE}[],bytes[])".encode())[:4]
    forged = chain_record("forged", DEVICE, 8)
    calldata = selector + encode([f"{RECORD_TUPLE}[]", "bytes[]"], [[forged.abi_row()], []])
    call = {"from": UNFUNDED, "to": history.client.notary_address, "data": hex0x(calldata)}
    error = await rpc_error(http, "eth_call", call)
    unauthorized = keccak(b"AccessControlUnauthorizedAccount(address,bytes32)")[:4]
    assert error["code"] == 3 and error["message"] == "execution reverted"
    assert error["data"].startswith(hex0x(unauthorized))
    assert UNFUNDED[2:] in error["data"]
    assert (await rpc_error(http, "eth_estimateGas", call))["data"] == error["data"]
    # A value transfer still needs the funds, as on any node.
    poor = await rpc_error(
        http, "eth_call", {"from": UNFUNDED, "to": SIGNER.address, "value": "0x1"}
    )
    assert poor["code"] == -32000


async def test_estimate_gas_is_enough_and_capped(http: httpx.AsyncClient, history: History) -> None:
    call = record_call(to=history.client.notary_address)
    estimate = int(await rpc(http, "eth_estimateGas", call), 16)
    assert 21_000 < estimate < 100_000
    assert await rpc(http, "eth_call", {**call, "gas": hex(estimate)}) != "0x"
    # An endless loop (JUMPDEST PUSH1 0 JUMP, as init code) stops at the gas cap.
    gateway = EmbeddedRPCGateway(
        history.provider, chain_id=history.client.chain_id, limits=RPCLimits(gas_cap=100_000)
    )
    with pytest.raises(JSONRPCError) as exhausted:
        gateway.call("eth_estimateGas", [{"data": "0x5b600056"}])
    assert exhausted.value.code == -32000
    assert str(exhausted.value) == "gas required exceeds allowance (100000)"
    with pytest.raises(JSONRPCError) as out_of_gas:
        gateway.call("eth_call", [{"data": "0x5b600056", "gas": hex(10**9)}])
    assert out_of_gas.value.code == -32000 and "OutOfGas" in str(out_of_gas.value)


async def test_rpc_runs_off_the_event_loop(history: History, tmp_path: Path) -> None:
    """A long eth_call holds a worker thread and the chain lock, not the event loop."""
    service = await _service(tmp_path, history.client)
    transport = httpx.ASGITransport(app=create_app(service))
    loop_body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call"}
    loop_body["params"] = [{"data": "0x5b600056", "gas": hex(2_000_000)}]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://n.test") as http:
            started = time.monotonic()
            slow = asyncio.create_task(http.post("/rpc", json=loop_body))
            await asyncio.sleep(0.05)
            assert (await http.get("/healthz")).status_code == 200
            healthy_after = time.monotonic() - started
            answer = (await slow).json()
            slow_after = time.monotonic() - started
    finally:
        await service.aclose()
    assert answer["error"]["code"] == -32000
    assert healthy_after < slow_after / 2, (healthy_after, slow_after)


# -- accounts and fees ------------------------------------------------------------------


async def test_account_state_matches_the_chain(http: httpx.AsyncClient, history: History) -> None:
    w3 = history.client.w3
    notary = history.client.notary_address
    balance = await rpc(http, "eth_getBalance", SIGNER.address, "latest")
    assert int(balance, 16) == w3.eth.get_balance(SIGNER.address) > 0
    assert await rpc(http, "eth_getBalance", UNFUNDED.upper().replace("0X", "0x")) == "0x0"
    nonce = await rpc(http, "eth_getTransactionCount", SIGNER.address.lower(), "latest")
    assert int(nonce, 16) == w3.eth.get_transaction_count(SIGNER.address) >= 4
    assert await rpc(http, "eth_getTransactionCount", SIGNER.address, "earliest") == "0x0"
    code = await rpc(http, "eth_getCode", notary, {"blockHash": history.block_hash})
    assert (
        bytes.fromhex(code[2:]) == bytes(w3.eth.get_code(Web3.to_checksum_address(notary))) != b""
    )
    assert await rpc(http, "eth_getCode", UNFUNDED) == "0x"
    # TelemetryNotary's _records mapping is slot 3 (after AccessControl's _roles and the
    # two packed slots of AccessControlDefaultAdminRules); a record's first word is its leaf.
    slot = keccak(RECORD_ID + (3).to_bytes(32, "big"))
    word = await rpc(http, "eth_getStorageAt", notary, hex0x(slot), "latest")
    assert word == hex0x(record_leaf(RECORD))
    before = hex(history.block_number - 1)
    assert int(await rpc(http, "eth_getStorageAt", notary, hex0x(slot), before), 16) == 0
    assert (await rpc_error(http, "eth_getBalance", SIGNER.address, hex(10**6)))[
        "message"
    ] == "header not found"


async def test_fee_methods_agree_with_the_blocks(http: httpx.AsyncClient, history: History) -> None:
    head = history.client.block_number()
    history_4 = await rpc(http, "eth_feeHistory", "0x4", "latest", [10, 50, 90])
    assert history_4["oldestBlock"] == hex(head - 3)
    blocks = [
        await rpc(http, "eth_getBlockByNumber", hex(n), False) for n in range(head - 3, head + 1)
    ]
    assert history_4["baseFeePerGas"][:4] == [b["baseFeePerGas"] for b in blocks]
    assert len(history_4["baseFeePerGas"]) == 5
    assert history_4["gasUsedRatio"] == [
        int(b["gasUsed"], 16) / int(b["gasLimit"], 16) for b in blocks
    ]
    # Every block holds one notary transaction paying the default 1 gwei tip.
    assert history_4["reward"] == [[hex(GWEI)] * 3] * 4
    tip = await rpc(http, "eth_maxPriorityFeePerGas")
    assert int(tip, 16) == GWEI
    next_base_fee = int(history_4["baseFeePerGas"][-1], 16)
    assert int(await rpc(http, "eth_gasPrice"), 16) == next_base_fee + GWEI
    # Without percentiles there is no reward field; an older window ends with the base
    # fee of the block after it.
    older = await rpc(http, "eth_feeHistory", 2, hex(head - 1))
    assert "reward" not in older and older["oldestBlock"] == hex(head - 2)
    assert older["baseFeePerGas"] == history_4["baseFeePerGas"][1:4]
    assert (await rpc_error(http, "eth_feeHistory", "0x0", "latest"))["code"] == -32602
    assert (await rpc_error(http, "eth_feeHistory", "0x1", "latest", [50, 10]))["code"] == -32602


# -- refusals ---------------------------------------------------------------------------


async def test_writes_are_refused_even_when_signed_by_the_notary(
    http: httpx.AsyncClient, history: History
) -> None:
    """A raw transaction correctly signed with the notary's own key (a replayed or leaked
    one) does not reach the chain through /rpc: the head and the nonce do not move."""
    w3 = history.client.w3
    head, nonce = w3.eth.block_number, w3.eth.get_transaction_count(SIGNER.address)
    signed = SIGNER.sign_transaction(
        {
            "chainId": history.client.chain_id,
            "nonce": nonce,
            "to": Web3.to_checksum_address(UNFUNDED),
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 10 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        }
    )
    attempts: list[tuple[str, list[Any]]] = [
        ("eth_sendRawTransaction", [hex0x(signed.raw_transaction)]),
        ("eth_sendTransaction", [{"from": SIGNER.address, "to": UNFUNDED, "value": "0x1"}]),
        ("eth_sign", [SIGNER.address, "0x00"]),
        ("eth_signTypedData_v4", [SIGNER.address, {}]),
        ("personal_unlockAccount", [SIGNER.address, "", 0]),
        ("evm_mine", []),
        ("evm_snapshot", []),
        ("anvil_setBalance", [UNFUNDED, "0x1"]),
        ("eth_newFilter", [{}]),
        ("eth_subscribe", ["newHeads"]),
    ]
    for method, params in attempts:
        error = await rpc_error(http, method, *params)
        assert error["code"] == -32004, (method, error)
        assert method in error["message"]
    assert "read-only" in (await rpc_error(http, "eth_sendRawTransaction", "0x00"))["message"]
    assert "eth_getLogs" in (await rpc_error(http, "eth_newBlockFilter"))["message"]
    assert w3.eth.block_number == head
    assert w3.eth.get_transaction_count(SIGNER.address) == nonce


async def test_unknown_methods_are_not_found(http: httpx.AsyncClient) -> None:
    for method in ("debug_traceTransaction", "eth_getProof", "ots_getApiLevel", "nonsense"):
        error = await rpc_error(http, method)
        assert error["code"] == -32601 and method in error["message"]


# -- JSON-RPC framing -------------------------------------------------------------------


async def test_parse_and_request_errors(http: httpx.AsyncClient) -> None:
    async def post(content: bytes) -> dict[str, Any]:
        response = await http.post(
            "/rpc", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    parse = await post(b'{"jsonrpc": "2.0", "method": ')
    assert parse == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "parse error"},
    }
    # 100 000 levels: at the recursion limit py-evm/py_ecc set, json.loads would crash the
    # process (C stack overflow) rather than raise; the gateway's parser stops early.
    assert sys.getrecursionlimit() >= 100_000
    assert (await post(b"[" * 100_000 + b"]" * 100_000))["error"]["code"] == -32700
    assert (await post(b"\xff\xfe"))["error"]["code"] == -32700
    assert (await post(b'{"jsonrpc": "2.0", "id": NaN, "method": "x"}'))["error"]["code"] == -32700
    cases = [
        (b'"eth_chainId"', None, -32600),
        (b'{"jsonrpc": "1.0", "id": 4, "method": "eth_chainId"}', 4, -32600),
        (b'{"jsonrpc": "2.0", "id": 5, "method": 7}', 5, -32600),
        (b'{"jsonrpc": "2.0", "id": 6, "method": "eth_chainId", "params": 1}', 6, -32600),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "eth_chainId"}', None, -32600),
        (b'{"jsonrpc": "2.0", "id": true, "method": "eth_chainId"}', None, -32600),
        (b'{"jsonrpc": "2.0", "id": 1e400, "method": "eth_chainId"}', None, -32600),
        (b'{"jsonrpc": "2.0", "id": 1' + b"0" * 30 + b', "method": "eth_chainId"}', None, -32600),
        (b'{"jsonrpc": "2.0", "id": 8, "method": "eth_getBalance", "params": {}}', 8, -32602),
    ]
    for body, request_id, code in cases:
        answer = await post(body)
        assert answer["id"] == request_id and answer["error"]["code"] == code, (body, answer)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        pytest.param("eth_getBalance", ["0x1234", "latest"], id="short-address"),
        pytest.param("eth_getBalance", ["0x" + "zz" * 20], id="non-hex-address"),
        pytest.param("eth_getBlockByNumber", ["0x", False], id="empty-quantity"),
        pytest.param("eth_getBlockByNumber", ["1", False], id="decimal-string"),
        pytest.param("eth_getBlockByNumber", ["latest", "yes"], id="non-bool"),
        pytest.param("eth_getBlockByHash", ["0x" + "ab" * 31, False], id="short-hash"),
        pytest.param("eth_getStorageAt", ["0x" + "00" * 20, hex(2**256)], id="slot-overflow"),
        pytest.param("eth_call", [{"to": "0x" + "00" * 20, "data": "0x123"}], id="odd-data"),
        pytest.param("eth_call", [{"data": "0x00", "input": "0x01"}], id="input-vs-data"),
        pytest.param("eth_call", [{"blobVersionedHashes": []}], id="blob-field"),
        pytest.param("eth_call", [{"chainId": "0x1"}], id="foreign-chain-id"),
        pytest.param("eth_call", [{"gasPrice": "0x1", "maxFeePerGas": "0x1"}], id="mixed-fees"),
        pytest.param("eth_call", [{}, "latest", {"0x" + "00" * 20: {}}], id="state-override"),
        pytest.param("eth_chainId", [1], id="too-many"),
        pytest.param("eth_getLogs", [{"topics": [None] * 5}], id="five-topics"),
        pytest.param("eth_getLogs", [{"address": ["nope"]}], id="bad-log-address"),
        pytest.param("web3_sha3", [], id="missing-argument"),
    ],
)
async def test_invalid_params(http: httpx.AsyncClient, method: str, params: list[Any]) -> None:
    assert (await rpc_error(http, method, *params))["code"] == -32602


async def test_batches_answer_in_order_and_skip_notifications(http: httpx.AsyncClient) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "eth_chainId"},
        {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # notification: no answer
        {"jsonrpc": "2.0", "id": 2, "method": "eth_nope"},
        42,
        {"jsonrpc": "2.0", "id": None, "method": "net_peerCount", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_sendRawTransaction", "params": ["0x00"]},
    ]
    answers = (await http.post("/rpc", json=batch)).json()
    assert [a["id"] for a in answers] == ["a", 2, None, None, 3]
    assert "result" in answers[0] and answers[1]["error"]["code"] == -32601
    assert answers[2]["error"]["code"] == -32600 and answers[3]["result"] == "0x0"
    assert answers[4]["error"]["code"] == -32004
    only_notifications = [{"jsonrpc": "2.0", "method": "eth_chainId"}] * 3
    response = await http.post("/rpc", json=only_notifications)
    assert response.status_code == 204 and response.content == b""
    single = await http.post("/rpc", json={"jsonrpc": "2.0", "method": "eth_chainId"})
    assert single.status_code == 204
    empty = (await http.post("/rpc", json=[])).json()
    assert empty["error"]["code"] == -32600 and empty["id"] is None


async def test_batch_and_body_limits(http: httpx.AsyncClient) -> None:
    limits = RPCLimits()
    call = {"jsonrpc": "2.0", "id": 1, "method": "net_peerCount"}
    full = (await http.post("/rpc", json=[call] * limits.max_batch)).json()
    assert len(full) == limits.max_batch and all(a["result"] == "0x0" for a in full)
    over = (await http.post("/rpc", json=[call] * (limits.max_batch + 1))).json()
    assert over["error"]["code"] == -32005 and over["id"] is None
    padding = " " * limits.max_body_bytes
    big = await http.post(
        "/rpc", content=b'{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}' + padding.encode()
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == -32005

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the stream is counted
        for _ in range(limits.max_body_bytes // 65_536 + 2):
            yield b" " * 65_536

    streamed = await http.post("/rpc", content=chunks())
    assert streamed.status_code == 413


async def test_without_an_embedded_chain_rpc_points_to_the_node(tmp_path: Path) -> None:
    service = await _service(tmp_path, None)
    transport = httpx.ASGITransport(app=create_app(service))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://n.test") as http:
            response = await http.post(
                "/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
            )
    finally:
        await service.aclose()
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32004
    assert "node directly" in response.json()["error"]["message"]


async def test_an_unexpected_failure_is_an_opaque_internal_error(
    history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug behind one method answers -32603 without its details; the rest of the batch
    is answered normally."""

    def broken(self: EmbeddedRPCGateway, params: list[Any]) -> Any:
        raise RuntimeError("internal detail /var/lib/notary")

    monkeypatch.setattr(EmbeddedRPCGateway, "_receipt", broken)
    service = await _service(tmp_path, history.client)
    transport = httpx.ASGITransport(app=create_app(service))
    batch = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getTransactionReceipt",
            "params": [history.tx_hash],
        },
        {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"},
    ]
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://n.test") as http:
            response = await http.post("/rpc", json=batch)
    finally:
        await service.aclose()
    failed, fine = response.json()
    assert failed["error"] == {"code": -32603, "message": "internal error"}
    assert "/var/lib" not in response.text
    assert fine["result"] == hex(history.client.chain_id)


async def test_openapi_documents_the_endpoint(http: httpx.AsyncClient) -> None:
    operation = (await http.get("/openapi.json")).json()["paths"]["/rpc"]["post"]
    assert operation["operationId"] == "call_json_rpc"
    assert "application/json" in operation["requestBody"]["content"]


def test_served_surface_is_deliberate(gateway: EmbeddedRPCGateway) -> None:
    """What docs/json-rpc.md lists; a method added or dropped must be added here too."""
    assert gateway.methods == {
        "web3_clientVersion",
        "web3_sha3",
        "net_version",
        "net_listening",
        "net_peerCount",
        "eth_chainId",
        "eth_syncing",
        "eth_accounts",
        "eth_blockNumber",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockTransactionCountByNumber",
        "eth_getBlockTransactionCountByHash",
        "eth_getUncleCountByBlockNumber",
        "eth_getUncleCountByBlockHash",
        "eth_getTransactionByHash",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionByBlockNumberAndIndex",
        "eth_getTransactionReceipt",
        "eth_getBlockReceipts",
        "eth_getLogs",
        "eth_call",
        "eth_estimateGas",
        "eth_getBalance",
        "eth_getCode",
        "eth_getTransactionCount",
        "eth_getStorageAt",
    }


def test_concurrency_bound_is_small() -> None:
    # Each worker thread can hold the chain lock for one request at a time; a handful is
    # enough for explorers and keeps /rpc from queueing ahead of the anchoring worker.
    assert 1 <= CONCURRENT_CALLS <= 4


# -- robustness -------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**300)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "0x",
            "0x0",
            "0x1",
            "0x" + "ab" * 20,
            "0x" + "cd" * 32,
            "0x5b600056",
            "latest",
            "earliest",
            "pending",
            "0xzz",
        ]
    )
)
_KEYS = st.sampled_from(
    [
        "from",
        "to",
        "data",
        "input",
        "gas",
        "value",
        "fromBlock",
        "toBlock",
        "blockHash",
        "address",
        "topics",
        "blockNumber",
        "chainId",
        "gasPrice",
        "maxFeePerGas",
        "nonce",
    ]
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_any_params_give_a_result_or_a_json_rpc_error(
    history: History, data: st.DataObject
) -> None:
    """Whatever JSON a caller sends, each served method answers JSON or a JSON-RPC error
    of the documented kinds: never an internal error (-32603) or an unhandled exception."""
    gateway = EmbeddedRPCGateway(
        history.provider, chain_id=history.client.chain_id, limits=RPCLimits(gas_cap=100_000)
    )
    method = data.draw(st.sampled_from(sorted(gateway.methods)))
    params = data.draw(st.lists(_JSON, max_size=4))
    try:
        result = gateway.call(method, params)
    except JSONRPCError as exc:
        assert exc.code in {-32602, -32000, -32005, 3}, (method, params, exc.code, exc)
    else:
        json.dumps(result, allow_nan=False)
