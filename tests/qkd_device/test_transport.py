"""The SDK's asyncio HTTP transport (aiohttp) against a real notary over HTTP and HTTPS.

The TLS cases serve the notary with uvicorn demanding a client certificate from the
deployment's CA, so ``verify``/``cert`` are checked by a real handshake: a device that
presents its certificate and trusts the CA delivers; one without a certificate, or one
that does not trust the notary's certificate, gets no answer (a transient failure the
client retries, never a crash), and its envelope stays queued.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qkd_channel.envelope import Mode, keys_needed
from qkd_channel.kme.certs import kme_server_paths, sae_paths
from qkd_device import AsyncDeviceClient, AsyncHTTPTransport, DeliveryError, DeliveryPending
from qkd_device.core import seal_item
from qkd_device.errors import RecordNotFound
from qkd_device.records import build_document
from qkd_device.transport import tls_context
from tests.notary.sdk_stack import FIRMWARE, NOTARY_SAE, Stack, free_port, make_pki, running_stack
from tests.qkd_device.test_client import FAST


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("transport-pki"))


@pytest.fixture
def stack(pki: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, pki) as s:
        yield s


def mtls_notary(stack: Stack) -> None:
    """Serve the notary over HTTPS, demanding a client certificate issued by the CA."""
    cert, key = kme_server_paths(stack.pki, "kme-b")  # any server certificate for 127.0.0.1
    stack.start_notary(
        tls={
            "ssl_certfile": str(cert),
            "ssl_keyfile": str(key),
            "ssl_ca_certs": str(stack.pki / "ca.crt"),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }
    )
    admin = tls_context(stack.pki / "ca.crt", sae_paths(stack.pki, NOTARY_SAE))
    httpx.post(
        f"{stack.notary_url}/v1/admin/devices",
        json={"device_id": "dev-0", "sae_id": "sae-0"},
        headers=stack.admin_headers(),
        verify=admin,
    ).raise_for_status()


def device(stack: Stack, tmp_path: Path, transport: AsyncHTTPTransport) -> AsyncDeviceClient:
    return AsyncDeviceClient(
        "dev-0",
        kme=stack.async_device_kme("sae-0"),
        notary=transport,
        firmware_digest=FIRMWARE,
        queue_dir=tmp_path / "queue",
        notary_sae_id=NOTARY_SAE,
        retry=FAST,
    )


async def test_mutual_tls_delivers_and_fetches_the_receipt(stack: Stack, tmp_path: Path) -> None:
    mtls_notary(stack)
    transport = AsyncHTTPTransport(
        stack.notary_url, verify=stack.pki / "ca.crt", cert=sae_paths(stack.pki, "sae-0")
    )
    async with device(stack, tmp_path, transport) as dev:
        ack = await dev.send({"t": 1})
        receipt = await transport.fetch_receipt(ack.record_id)
        with pytest.raises(RecordNotFound):
            await transport.fetch_receipt("0" * 64)
    assert ack.sequence == 1 and dev.stats.delivered == 1
    assert receipt is not None and receipt.record_id == ack.record_id


@pytest.mark.parametrize("case", ["no-client-certificate", "notary-not-trusted"])
async def test_failed_tls_handshake_is_no_answer_and_the_envelope_stays_queued(
    stack: Stack, tmp_path: Path, case: str
) -> None:
    mtls_notary(stack)
    if case == "no-client-certificate":
        transport = AsyncHTTPTransport(stack.notary_url, verify=stack.pki / "ca.crt")
    else:  # system CAs only: the deployment's CA is not among them
        transport = AsyncHTTPTransport(stack.notary_url, cert=sae_paths(stack.pki, "sae-0"))
    async with device(stack, tmp_path, transport) as dev:
        with pytest.raises(DeliveryPending):
            await dev.send({"t": 1})
        assert len(dev.queue.pending()) == 1
        assert await transport.fetch_receipt(dev.queue.pending()[0].record_id) is None


async def test_answers_statuses_and_retry_after_are_read(stack: Stack, tmp_path: Path) -> None:
    stack.start_notary()
    stack.register("dev-0", "sae-0")
    kme = stack.async_device_kme("sae-0")
    plaintext = build_document(FIRMWARE, {"t": 1})
    keys = await kme.enc_keys(NOTARY_SAE, size=8 * keys_needed(Mode.OTP, len(plaintext)))
    await kme.aclose()
    item = seal_item(
        plaintext, device_id="dev-0", notary_id="notary", sequence=5, mode=Mode.OTP, keys=keys
    )
    transport = AsyncHTTPTransport(stack.notary_url)
    first = await transport.submit(item)
    again = await transport.submit(item)
    await transport.aclose()
    assert first.status == 202 and first.body["record_id"] == item.record_id
    assert again.status == 409 and again.body["record_id"] == item.record_id
    assert again.body["reason"] == "replay"
    with pytest.raises(DeliveryError):
        await transport.submit(item)  # closed for good


async def test_unreachable_notary_is_status_zero(tmp_path: Path) -> None:
    transport = AsyncHTTPTransport(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    answer = await transport.fetch_receipt("0" * 64)
    await transport.aclose()
    assert answer is None


def test_tls_options_follow_httpx_forms(pki: Path) -> None:
    assert tls_context().verify_mode is ssl.CERT_REQUIRED  # the system's CAs
    unverified = tls_context(False)
    assert unverified.verify_mode is ssl.CERT_NONE and not unverified.check_hostname
    with pytest.raises(ValueError):
        tls_context(False, sae_paths(pki, "sae-0"))
    given = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    assert tls_context(given, sae_paths(pki, "sae-0")) is given
    made = tls_context(pki / "ca.crt")
    assert isinstance(made, ssl.SSLContext) and made.verify_mode is ssl.CERT_REQUIRED
    assert made.get_ca_certs()  # the deployment's CA, loaded
