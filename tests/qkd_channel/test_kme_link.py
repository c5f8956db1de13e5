"""Two real KMEs whose key comes from the simulated QKD link run between them.

Nothing is fed by hand: end A simulates the fibre and runs Alice's post-processing, end B
runs Bob's over a mutual-TLS TCP connection, and each KME's buffer fills from its own end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

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
from qkd_channel.kme.source import KeyBlock, KeySource
from qkd_channel.kme.tls import client_ssl_context, server_ssl_context
from qkd_channel.link import BobRecord, InterceptResend
from qkd_channel.postprocessing.pool_store import PoolStore
from tests.qkd_channel.conftest import KMEPair, kme_config
from tests.qkd_channel.test_kme_cli import QKD_KME, KMEProcess, _client, _wait_ready

PULSES = 2_000_000  # enough lab-link detections for a finite-size key per block


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CuttableProxy:
    """A TCP relay on the link (B dials it, it dials A) whose connections can be cut, as a
    network failure would: both ends see their connections drop."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = ("127.0.0.1", int(self._server.getsockname()[1]))
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._server.accept()
                far = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._open += [near, far]
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._server.close()
        self.cut()


def _sources(
    configs: dict[str, KMEConfig],
    settings: LinkSettings,
    auth_keys: dict[str, bytes],
    proxy: list[CuttableProxy] | None = None,
) -> dict[str, SimulatedLinkSource]:
    """Both link ends; with ``proxy`` (an empty list to fill), B reaches A through a
    :class:`CuttableProxy`."""
    link = ("127.0.0.1", _free_port())
    dialled = link
    if proxy is not None:
        proxy.append(CuttableProxy(link))
        dialled = proxy[0].address
    a, b = configs["a"].tls, configs["b"].tls
    return {
        "a": SimulatedLinkSource(
            LinkEnd.A,
            settings,
            auth_keys["a"],
            listen=link,
            ssl_context=server_ssl_context(a.server_cert, a.server_key, a.ca),
        ),
        "b": SimulatedLinkSource(
            LinkEnd.B,
            settings,
            auth_keys["b"],
            peer=dialled,
            ssl_context=client_ssl_context(b.client_cert, b.client_key, b.ca),
        ),
    }


@contextmanager
def _linked_pair(
    pki: Path,
    tmp_path: Path,
    settings: LinkSettings,
    auth_keys: dict[str, bytes] | None = None,
    proxy: list[CuttableProxy] | None = None,
) -> Iterator[KMEPair]:
    socks = {name: bind_socket() for name in ("a", "b")}
    urls = {name: f"https://127.0.0.1:{s.getsockname()[1]}" for name, s in socks.items()}
    configs = {
        "a": kme_config(pki, tmp_path / "a", "kme-a", LinkEnd.A, "kme-b", urls["b"]),
        "b": kme_config(pki, tmp_path / "b", "kme-b", LinkEnd.B, "kme-a", urls["a"]),
    }
    shared = os.urandom(4096)
    sources = _sources(configs, settings, auth_keys or {"a": shared, "b": shared}, proxy)
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
        for relay in proxy or []:
            relay.close()


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
        # Both ends report, in the ETSI Status vendor field, that a QKD link feeds them.
        for status in (device.status("notary"), notary.status("device-1")):
            assert status.status_extension == {"key_path": {"link": "qkd"}}
        assert keys[0].material != keys[1].material


def test_the_link_reconnects_after_a_network_cut(
    kme_pki: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = LinkSettings(LAB_LINK, PULSES, rate_multiplier=1000.0, timeout=30.0)
    caplog.set_level(logging.INFO, logger="qkd_channel.kme.link_source")
    proxy: list[CuttableProxy] = []

    def blocks() -> int:
        return sum(r.getMessage().startswith("link block") for r in caplog.records)

    def wait_for(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    with (
        _linked_pair(kme_pki, tmp_path, settings, proxy=proxy) as pair,
        pair.client("a", "device-1") as device,
        pair.client("b", "notary") as notary,
    ):
        wait_for(lambda: blocks() >= 2, "no key before the cut")
        proxy[0].cut()  # both ends lose their connections, most likely in mid-run
        before = blocks()
        wait_for(lambda: blocks() >= before + 4, "no key after the cut")
        assert any("reconnecting the link" in r.getMessage() for r in caplog.records)
        keys = device.enc_keys("notary", number=4, size=256)
        assert notary.dec_keys("device-1", [k.key_id for k in keys]) == keys
    assert not any("failed authentication" in r.getMessage() for r in caplog.records)


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


def test_a_peer_without_the_pre_shared_key_gets_no_key(
    kme_pki: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Someone at the link port with TLS credentials but the wrong Wegman-Carter key (a
    # man in the middle of the classical channel, as far as the protocol can tell).
    settings = LinkSettings(LAB_LINK, PULSES, rate_multiplier=1000.0, timeout=30.0)
    keys = {"a": os.urandom(4096), "b": os.urandom(4096)}
    caplog.set_level(logging.WARNING, logger="qkd_channel.kme.link_source")
    with (
        _linked_pair(kme_pki, tmp_path, settings, keys) as pair,
        pair.client("a", "device-1") as device,
        pair.client("b", "notary") as notary,
    ):
        # Each run fails authentication at its first checkpoint, at both ends; the ends
        # retry (burning pool keys, never reusing one) and no key ever reaches a buffer.
        deadline = time.monotonic() + 40
        while sum("failed authentication" in r.getMessage() for r in caplog.records) < 2:
            assert time.monotonic() < deadline, "the forged link was not refused"
            time.sleep(0.2)
        assert device.status("notary").stored_key_count == 0
        assert notary.status("device-1").stored_key_count == 0


async def test_blocks_are_paced_to_the_link_rate(kme_pki: Path, tmp_path: Path) -> None:
    # 2e6 lab-link pulses take 0.4 s of link time; at a quarter speed a block takes 1.6 s.
    settings = LinkSettings(LAB_LINK, PULSES, rate_multiplier=0.25, timeout=30.0)
    configs = {
        "a": kme_config(kme_pki, tmp_path / "a", "kme-a", LinkEnd.A, "kme-b", "https://x:1"),
        "b": kme_config(kme_pki, tmp_path / "b", "kme-b", LinkEnd.B, "kme-a", "https://x:1"),
    }
    shared = os.urandom(4096)
    sources = _sources(configs, settings, {"a": shared, "b": shared})
    alice = cast(AsyncGenerator[KeyBlock, None], sources["a"].blocks())
    bob = cast(AsyncGenerator[KeyBlock, None], sources["b"].blocks())
    try:
        arrivals: list[float] = []
        for _ in range(3):
            block_a, block_b = await asyncio.gather(anext(alice), anext(bob))
            assert block_a == block_b
            arrivals.append(time.monotonic())
        gaps = np.diff(arrivals)
        assert np.all(gaps >= 1.5), gaps
    finally:
        await alice.aclose()
        await bob.aclose()


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


def test_qkd_kme_serve_runs_the_link_between_two_processes(tmp_path: Path) -> None:
    pki, auth_key = tmp_path / "pki", tmp_path / "link-auth.key"
    for argv in (
        ["certs", "--out", str(pki), "--kme", "kme-a", "--kme", "kme-b", "--sae", "device-1",
         "--sae", "notary"],
        ["auth-key", "--out", str(auth_key)],
    ):  # fmt: skip
        done = subprocess.run([QKD_KME, *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    port_a, port_b, link_port = _free_port(), _free_port(), _free_port()
    a = KMEProcess(tmp_path, pki, "kme-a", "A", port_a, ("kme-b", port_b))
    b = KMEProcess(tmp_path, pki, "kme-b", "B", port_b, ("kme-a", port_a))
    common = ["--auth-key-file", str(auth_key), "--rate-multiplier", "1000",
              "--pulses-per-block", str(PULSES), "--link-preset", "lab"]  # fmt: skip
    a.argv += ["--link-listen", f"127.0.0.1:{link_port}", *common]
    b.argv += ["--link-peer", f"127.0.0.1:{link_port}", *common]
    try:
        a.start()
        b.start()
        _wait_ready(pki, a, "device-1")
        _wait_ready(pki, b, "notary")
        with _client(pki, port_a, "device-1") as device, _client(pki, port_b, "notary") as notary:
            deadline = time.monotonic() + 40
            while not (
                device.status("notary").stored_key_count > 0
                and notary.status("device-1").stored_key_count > 0
            ):
                assert time.monotonic() < deadline, a.log.read_text() + b.log.read_text()
                time.sleep(0.2)
            keys = device.enc_keys("notary", number=1)
            assert notary.dec_keys("device-1", [keys[0].key_id]) == keys
        # Both KMEs restart with the same pre-shared key file: each resumes its saved
        # authentication pool (no key reused), and the link produces key again.
        a.stop()
        b.stop()
        blocks_before = a.log.read_text().count("link block")
        a.start()
        b.start()
        _wait_ready(pki, a, "device-1")
        _wait_ready(pki, b, "notary")
        deadline = time.monotonic() + 40
        while a.log.read_text().count("link block") <= blocks_before:
            assert time.monotonic() < deadline, a.log.read_text() + b.log.read_text()
            time.sleep(0.2)
        with _client(pki, port_a, "device-1") as device, _client(pki, port_b, "notary") as notary:
            keys = device.enc_keys("notary", number=1)
            assert notary.dec_keys("device-1", [keys[0].key_id]) == keys
    finally:
        a.stop()
        b.stop()
    assert "failed authentication" not in a.log.read_text() + b.log.read_text()
    for kme in (a, b):
        assert stat.S_IMODE((kme.data_dir / "link-auth.state").stat().st_mode) == 0o600


def _serve_end_b(kme_pki: Path, data_dir: Path, key: Path) -> tuple[int, str]:
    """``qkd-kme serve`` as link end B (peer and link unreachable): exit code, output."""
    argv = ["serve", "--data-dir", str(data_dir), "--kme-id", "kme-b", "--end", "B",
            "--peer-id", "kme-a", "--peer", "https://127.0.0.1:9", "--pki", str(kme_pki),
            "--auth-key-file", str(key), "--link-peer", "127.0.0.1:9"]  # fmt: skip
    result = CliRunner().invoke(main, argv)
    return result.exit_code, result.output


def test_serve_refuses_a_pre_shared_key_it_has_replaced(kme_pki: Path, tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.key", tmp_path / "fresh.key"
    old.write_bytes(os.urandom(128))
    fresh.write_bytes(os.urandom(128))
    state = PoolStore(tmp_path / "d" / "link-auth.state")
    state.open_pool(old.read_bytes())
    state.open_pool(fresh.read_bytes())  # the operator issued a fresh key
    code, output = _serve_end_b(kme_pki, tmp_path / "d", old)
    assert code == 1
    assert "already used by this link end" in output


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--link-peer", "127.0.0.1:9"], "link end A takes --link-listen"),
        (["--link-listen", "127.0.0.1:9", "--eavesdropper", "pns:1"], "intercept-resend"),
        (["--link-listen", "127.0.0.1:9", "--eavesdropper", "intercept-resend:2"], "--eaves"),
        (["--link-listen", "nowhere", "--rate-multiplier", "5"], "HOST:PORT"),
    ],
)
def test_serve_rejects_an_inconsistent_link(
    kme_pki: Path, tmp_path: Path, extra: list[str], complaint: str
) -> None:
    key = tmp_path / "auth.key"
    key.write_bytes(os.urandom(128))
    argv = ["serve", "--data-dir", str(tmp_path / "d"), "--kme-id", "kme-a", "--end", "A",
            "--peer-id", "kme-b", "--peer", "https://127.0.0.1:9", "--pki", str(kme_pki),
            "--auth-key-file", str(key), *extra]  # fmt: skip
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert complaint in result.output


def test_serve_rejects_a_short_auth_key(kme_pki: Path, tmp_path: Path) -> None:
    key = tmp_path / "auth.key"
    key.write_bytes(os.urandom(100))
    code, output = _serve_end_b(kme_pki, tmp_path / "d", key)
    assert code == 2
    assert "multiple of 64" in output
