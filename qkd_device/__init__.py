"""Device SDK: seal telemetry with QKD keys, deliver it to the notary, get receipts back.

Typical firmware (or edge hub) code::

    from qkd_device import DeviceClient, KMEClient

    kme = KMEClient("https://kme-a:8443", cert="dev-1.crt", key="dev-1.key", ca="ca.crt")
    with DeviceClient("dev-1", kme=kme, notary="https://notary:8080",
                      firmware_digest=FIRMWARE_SHA256, queue_dir="/var/lib/dev-1/queue") as dev:
        ack = dev.send({"temp_c": 21.5})
        receipt = dev.wait_anchored(ack)   # anchored, and commits to ack.payload_hash

This package is the device side of the project, with the envelope and the KME client of
``qkd_channel`` it builds on: it imports nothing from the notary server, the chain or the
link simulation, and needs only the base install (``pip install qkd-notary``). See
``docs/sdk.md`` for delivery guarantees (what survives a power cycle) and errors, and
``qkd-device --help`` for the command-line tool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qkd_channel.lazy import lazy_exports

if TYPE_CHECKING:
    from qkd_channel.envelope import Mode
    from qkd_channel.hybrid import KEMPublicKey
    from qkd_channel.kme.client import AsyncKMEClient, KMEClient
    from qkd_device.client import AsyncDeviceClient, ClientStats, DeviceClient
    from qkd_device.core import DeliveryReceipt, KeyPlan, RetryPolicy
    from qkd_device.errors import (
        AnchorTimeout,
        DeliveryError,
        DeliveryPending,
        DeliveryRejected,
        DeviceError,
        KeysUnobtainable,
        QueueError,
        ReceiptMismatch,
        RecordNotFound,
    )
    from qkd_device.keystock import KeyStock
    from qkd_device.queue import QueuedEnvelope, SendQueue
    from qkd_device.receipt import Receipt
    from qkd_device.records import build_document, payload_hash, record_id, record_salt
    from qkd_device.transport import (
        AsyncHTTPTransport,
        AsyncMQTTTransport,
        HTTPTransport,
        MQTTTransport,
    )

__all__ = [
    "AnchorTimeout",
    "AsyncDeviceClient",
    "AsyncHTTPTransport",
    "AsyncKMEClient",
    "AsyncMQTTTransport",
    "ClientStats",
    "DeliveryError",
    "DeliveryPending",
    "DeliveryReceipt",
    "DeliveryRejected",
    "DeviceClient",
    "DeviceError",
    "HTTPTransport",
    "KEMPublicKey",
    "KMEClient",
    "KeyPlan",
    "KeyStock",
    "KeysUnobtainable",
    "MQTTTransport",
    "Mode",
    "QueueError",
    "QueuedEnvelope",
    "Receipt",
    "ReceiptMismatch",
    "RecordNotFound",
    "RetryPolicy",
    "SendQueue",
    "build_document",
    "payload_hash",
    "record_id",
    "record_salt",
]

#: Where each public name lives. Names are imported on first use (PEP 562), so that
#: ``qkd-device --help`` and ``import qkd_device.records`` do not load the whole SDK.
_HOMES = {
    "Mode": "qkd_channel.envelope",
    "KEMPublicKey": "qkd_channel.hybrid",
    "AsyncKMEClient": "qkd_channel.kme.client",
    "KMEClient": "qkd_channel.kme.client",
    "AsyncDeviceClient": "qkd_device.client",
    "ClientStats": "qkd_device.client",
    "DeviceClient": "qkd_device.client",
    "DeliveryReceipt": "qkd_device.core",
    "KeyPlan": "qkd_device.core",
    "RetryPolicy": "qkd_device.core",
    "AnchorTimeout": "qkd_device.errors",
    "DeliveryError": "qkd_device.errors",
    "DeliveryPending": "qkd_device.errors",
    "DeliveryRejected": "qkd_device.errors",
    "DeviceError": "qkd_device.errors",
    "KeysUnobtainable": "qkd_device.errors",
    "QueueError": "qkd_device.errors",
    "ReceiptMismatch": "qkd_device.errors",
    "RecordNotFound": "qkd_device.errors",
    "KeyStock": "qkd_device.keystock",
    "QueuedEnvelope": "qkd_device.queue",
    "SendQueue": "qkd_device.queue",
    "Receipt": "qkd_device.receipt",
    "build_document": "qkd_device.records",
    "payload_hash": "qkd_device.records",
    "record_id": "qkd_device.records",
    "record_salt": "qkd_device.records",
    "AsyncHTTPTransport": "qkd_device.transport",
    "AsyncMQTTTransport": "qkd_device.transport",
    "HTTPTransport": "qkd_device.transport",
    "MQTTTransport": "qkd_device.transport",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
