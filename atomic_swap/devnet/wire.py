# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""go-algorand's msgpack objects rendered the way algod's JSON API renders them.

Addresses become base32 strings, other byte strings base64, and apply data (inner
transactions, logs, state deltas, closing amounts) takes algod's ``pending`` field names.
"""

from __future__ import annotations

import base64
from typing import Any

from algosdk.encoding import encode_address
from algosdk.transaction import GenericSignedTransaction

__all__ = ["block_txn_to_json", "signed_txn_to_json"]

_ADDRESS_FIELDS = {
    "snd", "rcv", "close", "rekey", "arcv", "aclose", "asnd", "fadd",
    "m", "r", "f", "c", "apat", "sgnr",
}  # fmt: skip


_STRING_FIELDS = {"type", "gen", "un", "an", "au"}


def _value(key: str, value: Any) -> Any:
    if isinstance(value, bytes) and key in _STRING_FIELDS:
        return value.decode(errors="replace")
    if isinstance(value, bytes):
        if key in _ADDRESS_FIELDS and len(value) == 32:
            return encode_address(value)
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {_key(k): _value(_key(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(key, v) for v in value]
    return value


def _key(key: Any) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)


def signed_txn_to_json(stxn: GenericSignedTransaction) -> dict[str, Any]:
    """``{"sig": ..., "txn": {...}}`` as algod shows a signed transaction."""
    return {k: _value(k, v) for k, v in stxn.dictify().items()}


def _state_delta(delta: dict[Any, Any]) -> list[dict[str, Any]]:
    out = []
    for key, change in delta.items():
        k = key if isinstance(key, bytes) else str(key).encode()
        action = change.get(b"at", 0)
        entry: dict[str, Any] = {"action": action}
        if b"bs" in change:
            entry["bytes"] = base64.b64encode(change[b"bs"]).decode()
        if b"ui" in change:
            entry["uint"] = change[b"ui"]
        out.append({"key": base64.b64encode(k).decode(), "value": entry})
    return out


def block_txn_to_json(entry: dict[bytes, Any]) -> dict[str, Any]:
    """Apply data of a transaction as stored in a block, in algod's ``pending`` shape."""
    out: dict[str, Any] = {}
    if b"ca" in entry:
        out["closing-amount"] = entry[b"ca"]
    if b"aca" in entry:
        out["asset-closing-amount"] = entry[b"aca"]
    dt = entry.get(b"dt", {})
    if dt.get(b"lg"):
        out["logs"] = [base64.b64encode(x).decode() for x in dt[b"lg"]]
    if dt.get(b"gd"):
        out["global-state-delta"] = _state_delta(dt[b"gd"])
    inner = []
    for itx in dt.get(b"itx", []):
        record = block_txn_to_json(itx)
        signed = {_key(k): _value(_key(k), v) for k, v in itx.items() if k in (b"txn", b"sig")}
        record["txn"] = signed
        inner.append(record)
    if inner:
        out["inner-txns"] = inner
    return out
