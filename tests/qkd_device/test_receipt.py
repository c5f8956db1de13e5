"""The device's view of a receipt: any receipt version flows through, and a receipt that
does not commit to what the device sent is refused (an attack by the notary itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from qkd_channel.kme.client import KMEClient
from qkd_device import (
    AnchorTimeout,
    DeliveryReceipt,
    DeviceClient,
    DeviceError,
    Mode,
    Receipt,
    ReceiptMismatch,
    RetryPolicy,
)
from qkd_device.core import Answer
from qkd_device.queue import QueuedEnvelope

RECORD = "0x" + "ab" * 32
PAYLOAD = "0x" + "cd" * 32


def v1_document(**changes: Any) -> dict[str, Any]:
    document = {
        "receipt_version": "qkd-notary-receipt/1",
        "record_id": RECORD,
        "status": "anchored",
        "payload_hash": PAYLOAD,
        "anchor": {"tx_hash": "0x" + "11" * 32, "block_number": 7},
    }
    return {**document, **changes}


def test_a_v1_receipt_exposes_what_the_device_acts_on() -> None:
    receipt = Receipt.from_json(json.dumps(v1_document()))
    assert (receipt.record_id, receipt.status, receipt.anchored) == (RECORD, "anchored", True)
    assert receipt.version == "qkd-notary-receipt/1" and receipt.payload_hash == PAYLOAD
    assert receipt.anchor is not None and receipt.anchor["block_number"] == 7
    receipt.check(RECORD.upper().replace("0X", "0x"), PAYLOAD)


def test_a_newer_receipt_version_flows_through_unchanged() -> None:
    v2 = v1_document(receipt_version=2, access={"role": "owner"}, bound={"notary_id": "n"})
    del v2["anchor"]
    receipt = Receipt.from_json(json.dumps(v2))
    assert receipt.version == 2 and receipt.anchor is None
    assert json.loads(receipt.to_json()) == v2  # nothing dropped, nothing invented


@pytest.mark.parametrize(
    "body",
    [b"[]", b"{}", b'{"record_id": 1, "status": "anchored"}', b"not json", b"[" * 500],
)
def test_something_that_is_not_a_receipt_is_a_device_error(body: bytes) -> None:
    with pytest.raises(DeviceError) as info:
        Receipt.from_json(body)
    assert info.value.reason == "bad-receipt"


@pytest.mark.parametrize(
    ("record", "payload"),
    [(RECORD, "0x" + "00" * 32), ("0x" + "00" * 32, PAYLOAD)],
    ids=["other-payload", "other-record"],
)
def test_check_refuses_a_receipt_for_something_else(record: str, payload: str) -> None:
    with pytest.raises(ReceiptMismatch):
        Receipt.from_json(json.dumps(v1_document())).check(record, payload)


class ForgingNotary:
    """A notary that anchors a payload hash other than the device's (or not at all)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def submit(self, item: QueuedEnvelope) -> Answer:
        raise AssertionError("not used")

    def fetch_receipt(self, record_id: str) -> Receipt | None:
        return Receipt.from_json(json.dumps(self.document))

    def close(self) -> None:
        pass


def delivery(payload_hash: str | None) -> DeliveryReceipt:
    return DeliveryReceipt(
        RECORD, "dev-0", 1, Mode.OTP, True, "first-digest", False, None, payload_hash
    )


def device(tmp_path: Path, notary: ForgingNotary) -> DeviceClient:
    return DeviceClient(
        "dev-0",
        kme=cast(KMEClient, None),  # wait_anchored never asks the KME
        notary=notary,
        firmware_digest="f" * 64,
        queue_dir=tmp_path / "queue",
        retry=RetryPolicy(),
        sleep=lambda _: None,
    )


def test_wait_anchored_refuses_a_receipt_committing_to_another_payload(tmp_path: Path) -> None:
    forged = ForgingNotary(v1_document(payload_hash="0x" + "ee" * 32))
    with device(tmp_path, forged) as client, pytest.raises(ReceiptMismatch):
        client.wait_anchored(delivery(PAYLOAD), timeout=1)
    with device(tmp_path, forged) as client:  # by record ID alone there is nothing to check
        assert client.wait_anchored(RECORD, timeout=1).payload_hash == "0x" + "ee" * 32


def test_wait_anchored_keeps_waiting_while_the_record_is_not_anchored(tmp_path: Path) -> None:
    accepted = ForgingNotary(v1_document(status="accepted"))
    ticks = iter(range(1000))
    client = DeviceClient(
        "dev-0",
        kme=cast(KMEClient, None),
        notary=accepted,
        firmware_digest="f" * 64,
        queue_dir=tmp_path / "queue",
        clock=lambda: float(next(ticks)),
        sleep=lambda _: None,
    )
    with client, pytest.raises(AnchorTimeout):
        client.wait_anchored(delivery(PAYLOAD), timeout=5, poll_s=1)
