"""Two real KMEs whose key comes from the simulated QKD link run between them.

Nothing is fed by hand: end A simulates the fibre and runs Alice's post-processing, end B
runs Bob's over a mutual-TLS TCP connection, and each KME's buffer fills from its own end.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from qkd_channel.cli import main
from qkd_channel.errors import ChannelError
from qkd_channel.kme.config import KMEConfig, LinkEnd
from qkd_channel.kme.link_source import (
    LAB_LINK,
    LinkSettings,
    SimulatedLinkSource,
    decode_bob_record,
    encode_bob_record,
)
from qkd_channel.kme.server import KMEServerThread, bind_socket
from qkd_channel.kme.source import KeySource
from qkd_channel.kme.tls import client_ssl_context, server_ssl_context
from qkd_channel.link import BobRecord, InterceptResend
from tests.qkd_channel.conftest import KMEPair, kme_config

PULSES = 2_000_000  # enough lab-link detections for a finite-size key per block


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sources(
    configs: dict[str, KMEConfig], settings: LinkSettings, auth_key: bytes
) -> dict[str, SimulatedLinkSource]:
    link = ("127.0.0.1", _free_port())
    a, b = configs["a"].tls, configs["b"].tls
    return {
        "a": SimulatedLinkSource(
            LinkEnd.A,
            settings,
            auth_key,
            listen=link,
            ssl_context=server_ssl_context(a.server_cert, a.server_key, a.ca),
        ),
        "b": SimulatedLinkSource(
            LinkEnd.B,
            settings,
            auth_key,
            peer=link,
            ssl_context=client_ssl_context(b.client_cert, b.client_key, b.ca),
        ),
    }


@contextmanager
def _linked_pair(pki: Path, tmp_path: Path, settings: LinkSettings) -> Iterator[KMEPair]:
    socks = {name: bind_socket() for name in ("a", "b")}
    urls = {name: f"https://127.0.0.1:{s.getsockname()[1]}" for name, s in socks.items()}
    configs = {
        "a": kme_config(pki, tmp_path / "a", "kme-a", LinkEnd.A, "kme-b", urls["b"]),
        "b": kme_config(pki, tmp_path / "b", "kme-b", LinkEnd.B, "kme-a", urls["a"]),
    }
    sources = _sources(configs, settings, os.urandom(4096))
    servers = {
        name: KMEServerThread(configs[name], socks[name], source=sources[name])
        for name in ("a", "b")
    }
    pair = KMEPair(pki, configs, urls, servers)
    for server in servers.values():
        server.start()
    try:
        yield pair
    finally:
        for server in servers.values():
            server.stop()


def test_link_source_is_a_key_source() -> None:
    source = SimulatedLinkSource(
        LinkEnd.B, LinkSettings(LAB_LINK, PULSES), bytes(64), peer=("127.0.0.1", 1)
    )
    assert isinstance(source, KeySource)


def test_link_ends_must_match_their_role() -> None:
    settings = LinkSettings(LAB_LINK, PULSES)
    with pytest.raises(ValueError):
        SimulatedLinkSource(LinkEnd.A, settings, bytes(64), peer=("127.0.0.1", 1))
    with pytest.raises(ValueError):
        SimulatedLinkSource(LinkEnd.B, settings, bytes(64), listen=("127.0.0.1", 0))
    with pytest.raises(ValueError):  # not a multiple of 64 bytes
        SimulatedLinkSource(LinkEnd.B, settings, bytes(10), peer=("127.0.0.1", 1))


def test_kmes_serve_the_same_key_from_the_link(kme_pki: Path, tmp_path: Path) -> None:
    settings = LinkSettings(LAB_LINK, PULSES, rate_multiplier=1000.0, timeout=30.0)
    with (
        _linked_pair(kme_pki, tmp_path, settings) as pair,
        pair.client("a", "device-1") as device,
        pair.client("b", "notary") as notary,
    ):
        deadline = time.monotonic() + 40
        while not (
            device.status("notary").stored_key_count > 0
            and notary.status("device-1").stored_key_count > 0
        ):
            assert time.monotonic() < deadline, "the link never delivered key"
            time.sleep(0.2)
        keys = device.enc_keys("notary", number=2)
        assert notary.dec_keys("device-1", [k.key_id for k in keys]) == keys
        assert keys[0].material != keys[1].material


def test_intercept_resend_leaves_the_buffers_empty(
    kme_pki: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = LinkSettings(
        LAB_LINK, PULSES, rate_multiplier=1000.0, eavesdropper=InterceptResend(1.0), timeout=30.0
    )
    caplog.set_level(logging.WARNING, logger="qkd_channel.kme.link_source")
    with (
        _linked_pair(kme_pki, tmp_path, settings) as pair,
        pair.client("a", "device-1") as device,
        pair.client("b", "notary") as notary,
    ):
        deadline = time.monotonic() + 40
        while sum("abandoned" in r.getMessage() for r in caplog.records) < 6:  # 3 per end
            assert time.monotonic() < deadline, "the link did not run"
            assert device.status("notary").stored_key_count == 0
            assert notary.status("device-1").stored_key_count == 0
            time.sleep(0.2)
        assert device.status("notary").stored_key_count == 0
        assert notary.status("device-1").stored_key_count == 0


@given(st.lists(st.tuples(st.integers(1, 1000), st.booleans(), st.booleans()), max_size=50))
def test_quantum_frame_round_trips(steps: list[tuple[int, bool, bool]]) -> None:
    record = BobRecord(
        indices=np.cumsum([s for s, _, _ in steps], dtype=np.int64),
        bases=np.array([b for _, b, _ in steps], dtype=np.uint8),
        bits=np.array([b for _, _, b in steps], dtype=np.uint8),
    )
    back = decode_bob_record(encode_bob_record(record))
    assert np.array_equal(back.indices, record.indices)
    assert np.array_equal(back.bases, record.bases)
    assert np.array_equal(back.bits, record.bits)


@given(st.binary(max_size=64))
def test_quantum_frame_rejects_garbage(frame: bytes) -> None:
    try:
        decode_bob_record(frame)
    except ChannelError:
        return
    assert frame.startswith(b"QCH1")  # only a well-formed frame may decode


def test_quantum_frame_rejects_non_bits_and_unordered_pulses() -> None:
    good = BobRecord(
        indices=np.array([3, 7], dtype=np.int64),
        bases=np.array([0, 1], dtype=np.uint8),
        bits=np.array([1, 0], dtype=np.uint8),
    )
    frame = bytearray(encode_bob_record(good))
    bad_bit = bytes(frame[:-1]) + b"\x02"
    with pytest.raises(ChannelError):
        decode_bob_record(bad_bit)
    swapped = BobRecord(indices=good.indices[::-1].copy(), bases=good.bases, bits=good.bits)
    with pytest.raises(ChannelError):
        decode_bob_record(encode_bob_record(swapped))


def test_auth_key_command_writes_a_private_key_once(tmp_path: Path) -> None:
    out = tmp_path / "link-auth.key"
    runner = CliRunner()
    first = runner.invoke(main, ["auth-key", "--out", str(out), "--size", "1024"])
    assert first.exit_code == 0, first.output
    assert len(out.read_bytes()) == 1024
    assert out.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(main, ["auth-key", "--out", str(out)])
    assert again.exit_code != 0
    assert len(out.read_bytes()) == 1024
    assert runner.invoke(
        main, ["auth-key", "--out", str(tmp_path / "x"), "--size", "100"]
    ).exit_code
