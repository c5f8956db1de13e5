"""Encodings, revert decoding, nonces and the embedded store, without a chain."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from hypothesis import given
from hypothesis import strategies as st

from notary.chain.artifacts import load_artifact
from notary.chain.embedded import SQLiteKeyValueStore
from notary.chain.models import (
    SecurityMode,
    decode_device_id,
    encode_device_id,
)
from notary.chain.nonces import NonceManager
from notary.chain.reverts import RevertDecoder
from notary.errors import InvalidChainInput
from tests.notary.records import chain_record

device_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1
).filter(lambda s: len(s.encode()) <= 32)


@given(device_names)
def test_device_id_round_trips(name: str) -> None:
    raw = encode_device_id(name)
    assert len(raw) == 32 and raw.startswith(name.encode())
    assert decode_device_id(raw) == name


@pytest.mark.parametrize("name", ["", "x" * 33, "nul\x00inside", "é" * 17])
def test_device_ids_that_cannot_be_encoded_are_refused(name: str) -> None:
    with pytest.raises(InvalidChainInput):
        encode_device_id(name)


@pytest.mark.parametrize(
    "field",
    [
        {"record_id": b"short"},
        {"payload_hash": b"\x00" * 31},
        {"sequence": -1},
        {"sequence": 2**64},
        {"device_id": "y" * 40},
        {"mode": 1},
        {"firmware_digest": b"\x03" * 31},
        {"key_path": 2**32},
        {"sent_at_ms": 2**64},
        {"accepted_at_ms": -1},
    ],
    ids=lambda field: next(iter(field)),
)
def test_record_input_validates_its_fields(field: dict[str, object]) -> None:
    with pytest.raises(InvalidChainInput):
        chain_record("validated", **field)


def test_security_mode_labels() -> None:
    assert SecurityMode.from_label("otp") is SecurityMode.OTP
    assert SecurityMode.AEAD.label == "aead"
    with pytest.raises(InvalidChainInput):
        SecurityMode.from_label("none")


DECODER = RevertDecoder([load_artifact("DeviceRegistry").abi, load_artifact("TelemetryNotary").abi])


def test_revert_decoder_reads_strings_panics_and_custom_errors() -> None:
    error_string = function_signature_to_4byte_selector("Error(string)") + encode(
        ["string"], ["nope"]
    )
    assert DECODER.decode(error_string) == "nope"
    panic = function_signature_to_4byte_selector("Panic(uint256)") + encode(["uint256"], [0x11])
    assert DECODER.decode(panic) == "panic 0x11: arithmetic overflow or underflow"
    custom = function_signature_to_4byte_selector("InvalidRecord(uint256)") + encode(
        ["uint256"], [3]
    )
    assert DECODER.decode(custom) == "InvalidRecord(index=3)"
    assert DECODER.decode(b"") == "reverted without a reason"
    assert DECODER.decode(b"\xde\xad\xbe\xef").startswith("unrecognized revert data 0xdeadbeef")
    truncated = function_signature_to_4byte_selector("InvalidRecord(uint256)") + b"\x01"
    assert DECODER.decode(truncated).startswith("unrecognized revert data")


def test_nonce_manager_counts_up_and_resyncs_after_a_failure() -> None:
    node_count = iter([5, 9])
    nonces = NonceManager(lambda: next(node_count))
    with nonces.reserve() as first:
        pass
    with nonces.reserve() as second:
        pass
    assert (first, second) == (5, 6)
    with pytest.raises(RuntimeError), nonces.reserve() as failed:
        assert failed == 7
        raise RuntimeError("send failed")
    with nonces.reserve() as after:
        assert after == 9  # asked the node again


def test_nonce_manager_hands_out_distinct_nonces_to_threads() -> None:
    nonces = NonceManager(lambda: 0)
    seen: list[int] = []

    def take() -> None:
        for _ in range(50):
            with nonces.reserve() as nonce:
                seen.append(nonce)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(200))


def test_store_keeps_only_committed_blocks(tmp_path: Path) -> None:
    """An uncommitted block (a crash mid-block) leaves no trace after reopening."""
    path = tmp_path / "kv.sqlite3"
    store = SQLiteKeyValueStore(path)
    store[b"block-1"] = b"committed"
    store.commit()
    store[b"block-2"] = b"in flight"
    assert store[b"block-2"] == b"in flight"  # visible to the writer
    store.close()  # no commit: dropped
    reopened = SQLiteKeyValueStore(path)
    assert reopened[b"block-1"] == b"committed"
    assert not reopened.exists(b"block-2")
    with pytest.raises(KeyError):
        reopened[b"block-2"]
    del reopened[b"block-1"]
    reopened.rollback()
    assert reopened[b"block-1"] == b"committed"  # the cache forgot the rolled-back delete
    reopened.close()
