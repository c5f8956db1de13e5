"""TCPChannel over loopback: framing, limits, timeouts, TLS, and authentication on top."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qkd_channel.errors import ChannelError
from qkd_channel.link import BRISTOL_CLAVIS2, simulate
from qkd_channel.postprocessing.authentication import (
    AuthenticatedChannel,
    AuthenticationKeyPool,
    Role,
)
from qkd_channel.postprocessing.channel import ClassicalChannel
from qkd_channel.postprocessing.estimation import EstimationSettings
from qkd_channel.postprocessing.protocol import (
    BlockResult,
    PostProcessingConfig,
    run_alice,
    run_bob,
)
from qkd_channel.postprocessing.tcp import TCPChannel, TCPListener


def _connected(
    listener: TCPListener, *, ssl_client: ssl.SSLContext | None = None, **kwargs: object
) -> tuple[TCPChannel, TCPChannel]:
    host, port = listener.address
    box: dict[str, TCPChannel] = {}
    thread = threading.Thread(target=lambda: box.update(server=listener.accept(timeout=5)))
    thread.start()
    client = TCPChannel.connect(host, port, ssl_context=ssl_client, **kwargs)  # type: ignore[arg-type]
    thread.join(timeout=10)
    return client, box["server"]


@pytest.fixture
def pair() -> Iterator[tuple[TCPChannel, TCPChannel]]:
    with TCPListener() as listener:
        client, server = _connected(listener)
        yield client, server
        client.close()
        server.close()


def test_messages_arrive_whole_and_in_order(pair: tuple[TCPChannel, TCPChannel]) -> None:
    client, server = pair
    big = os.urandom(3 * 1024 * 1024)
    for message in (b"", b"a", big, b"z" * 70000):
        client.send(message)
    assert server.receive(timeout=5) == b""
    assert server.receive(timeout=5) == b"a"
    assert server.receive(timeout=5) == big
    assert server.receive(timeout=5) == b"z" * 70000
    server.send(b"back")
    assert client.receive(timeout=5) == b"back"
    assert isinstance(client, ClassicalChannel)


def test_receive_times_out(pair: tuple[TCPChannel, TCPChannel]) -> None:
    client, _ = pair
    with pytest.raises(ChannelError):
        client.receive(timeout=0.05)


def test_peer_close_is_a_channel_error(pair: tuple[TCPChannel, TCPChannel]) -> None:
    client, server = pair
    client.close()
    with pytest.raises(ChannelError):
        server.receive(timeout=5)
    with pytest.raises(ChannelError):
        client.send(b"after close")


def test_oversized_frame_is_refused_without_allocating() -> None:
    with TCPListener(max_frame=1024) as listener:
        client, server = _connected(listener, max_frame=16)
        with pytest.raises(ChannelError):
            client.send(b"x" * 17)  # refused locally
        TCPChannel(_raw_socket(client)).send(
            b"y" * 2000
        )  # the listener's side only accepts 1024-byte frames
        with pytest.raises(ChannelError):
            server.receive(timeout=5)
        client.close()
        server.close()


def test_connect_to_nothing_is_a_channel_error() -> None:
    with TCPListener() as listener:
        host, port = listener.address
    with pytest.raises(ChannelError):
        TCPChannel.connect(host, port, timeout=1)


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    tmp.mkdir(exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kme-b")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert_path)
    return server, client


def test_tls_channel_carries_an_authenticated_session(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    psk = os.urandom(256)
    with TCPListener(ssl_context=server_ctx) as listener:
        client, server = _connected(listener, ssl_client=client_ctx)
        alice = AuthenticatedChannel(client, AuthenticationKeyPool(psk), Role.ALICE)
        bob = AuthenticatedChannel(server, AuthenticationKeyPool(psk), Role.BOB)
        alice.send(b"sifting")
        assert bob.receive(timeout=5) == b"sifting"
        thread = threading.Thread(target=bob.checkpoint, kwargs={"timeout": 5})
        thread.start()
        alice.checkpoint(timeout=5)
        thread.join(timeout=10)
        assert alice.pool.consumed_bytes == bob.pool.consumed_bytes == 64
        alice.close()
        bob.close()


def test_tls_client_refuses_an_unknown_server(tmp_path: Path) -> None:
    server_ctx, _ = _tls_contexts(tmp_path / "a")
    _, other_client_ctx = _tls_contexts(tmp_path / "b")
    with TCPListener(ssl_context=server_ctx) as listener:
        host, port = listener.address
        thread = threading.Thread(target=_accept_quietly, args=(listener,))
        thread.start()
        with pytest.raises(ChannelError):
            TCPChannel.connect(host, port, ssl_context=other_client_ctx, timeout=5)
        thread.join(timeout=10)


def _raw_socket(channel: TCPChannel) -> socket.socket:
    return channel._sock  # the same connection, without the sender's own limit


def _accept_quietly(listener: TCPListener) -> None:
    try:
        listener.accept(timeout=5).close()
    except ChannelError:
        pass


def test_whole_post_processing_runs_between_two_tcp_ends() -> None:
    link = replace(
        BRISTOL_CLAVIS2,
        detector_efficiency=0.9,
        dead_time_s=0.0,
        extra_loss_db=0.0,
        intensities=(0.6, 0.2, 0.0),
        intensity_probabilities=(0.5, 0.25, 0.25),
        misalignment_error=0.015,
    )
    run = simulate(link, 2_000_000, rng=np.random.default_rng(31))
    config = PostProcessingConfig(EstimationSettings(link), timeout=20.0)
    psk = os.urandom(512)
    with TCPListener() as listener:
        client, server = _connected(listener)
        alice = AuthenticatedChannel(client, AuthenticationKeyPool(psk), Role.ALICE)
        bob = AuthenticatedChannel(server, AuthenticationKeyPool(psk), Role.BOB)
        box: dict[str, BlockResult] = {}
        thread = threading.Thread(
            target=lambda: box.update(bob=run_bob(bob, run.bob, config)), daemon=True
        )
        thread.start()
        result = run_alice(alice, run.alice, config)
        thread.join(timeout=60)
        alice.close()
        bob.close()
    assert result.key == box["bob"].key
    assert result.stats.delivered_bits > 0
