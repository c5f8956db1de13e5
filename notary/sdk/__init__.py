"""Device SDK: seal telemetry with QKD keys, deliver it to the notary, get receipts back.

Typical firmware (or edge hub) code::

    from qkd_channel.kme import KMEClient
    from notary.sdk import DeviceClient

    kme = KMEClient("https://kme-a:8443", cert="dev-1.crt", key="dev-1.key", ca="ca.crt")
    with DeviceClient("dev-1", kme=kme, notary="https://notary:8080",
                      firmware_digest=FIRMWARE_SHA256, queue_dir="/var/lib/dev-1/queue") as dev:
        ack = dev.send({"temp_c": 21.5})
        receipt = dev.wait_anchored(ack)        # versioned, chain-verifiable

See ``docs/sdk.md`` for delivery guarantees (what survives a power cycle) and errors.
"""

from notary.sdk.client import AsyncDeviceClient, ClientStats, DeviceClient
from notary.sdk.core import DeliveryReceipt, KeyPlan, RetryPolicy
from notary.sdk.errors import (
    AnchorTimeout,
    DeliveryError,
    DeliveryPending,
    DeliveryRejected,
    KeysUnobtainable,
    QueueError,
)
from notary.sdk.keystock import KeyStock
from notary.sdk.queue import QueuedEnvelope, SendQueue
from notary.sdk.transport import (
    AsyncHTTPTransport,
    AsyncMQTTTransport,
    HTTPTransport,
    MQTTTransport,
)

__all__ = [
    "AnchorTimeout",
    "AsyncDeviceClient",
    "AsyncHTTPTransport",
    "AsyncMQTTTransport",
    "ClientStats",
    "DeliveryError",
    "DeliveryPending",
    "DeliveryReceipt",
    "DeliveryRejected",
    "DeviceClient",
    "HTTPTransport",
    "KeyPlan",
    "KeyStock",
    "KeysUnobtainable",
    "MQTTTransport",
    "QueueError",
    "QueuedEnvelope",
    "RetryPolicy",
    "SendQueue",
]
