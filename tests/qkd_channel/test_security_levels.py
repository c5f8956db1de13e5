"""Security levels: the table of docs/security-levels.md, and the reports they are derived
from (a KME's Status extension, an SAE's KME URL). Nothing may default to the strongest."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from qkd_channel.security_levels import (
    Hop,
    KeyPath,
    Level,
    delivery_hop_of,
    derive_levels,
    link_hop_of_status,
)

IT = Level.INFORMATION_THEORETIC
QR = Level.COMPUTATIONAL_QUANTUM_RESISTANT
C = Level.COMPUTATIONAL


@pytest.mark.parametrize(
    ("mode", "path", "confidentiality", "authenticity"),
    [
        pytest.param("otp", KeyPath(Hop.QKD, Hop.LOCAL, Hop.LOCAL), IT, IT, id="otp-local"),
        pytest.param("otp", KeyPath(Hop.QKD, Hop.TLS, Hop.LOCAL), C, C, id="otp-device-tls"),
        pytest.param("otp", KeyPath(Hop.QKD, Hop.LOCAL, Hop.TLS), C, C, id="otp-notary-tls"),
        pytest.param(
            "otp", KeyPath(Hop.QKD, Hop.TLS_HYBRID_PQ, Hop.LOCAL), QR, QR, id="otp-pq-tls"
        ),
        pytest.param("otp", KeyPath(Hop.UNREPORTED, Hop.LOCAL, Hop.LOCAL), C, C, id="otp-nolink"),
        pytest.param("aead", KeyPath(Hop.QKD, Hop.LOCAL, Hop.LOCAL), QR, QR, id="aead-local"),
        pytest.param("aead", KeyPath(Hop.QKD, Hop.TLS, Hop.LOCAL), C, C, id="aead-tls"),
        pytest.param("hybrid", KeyPath(Hop.QKD, Hop.LOCAL, Hop.LOCAL), QR, QR, id="hyb-local"),
        pytest.param("hybrid", KeyPath(Hop.QKD, Hop.TLS, Hop.TLS), QR, C, id="hybrid-tls"),
        pytest.param("hybrid", KeyPath(), QR, C, id="hybrid-unreported"),
    ],
)
def test_levels_follow_mode_and_path(
    mode: str, path: KeyPath, confidentiality: Level, authenticity: Level
) -> None:
    levels = derive_levels(mode, path)
    assert (levels.confidentiality, levels.authenticity) == (confidentiality, authenticity)


def test_no_path_and_no_mode_is_ever_above_its_weakest_component() -> None:
    """Exhaustively: information-theoretic only for otp with every hop IT; hybrid's
    authenticity never above its path's (ML-KEM authenticates nobody)."""
    for link, device, notary in itertools.product(Hop, repeat=3):
        path = KeyPath(link, device, notary)
        for mode in ("otp", "aead", "hybrid"):
            levels = derive_levels(mode, path)
            assert levels.authenticity.rank <= path.level.rank
            if IT in (levels.confidentiality, levels.authenticity):
                assert mode == "otp" and path.level is IT
            assert levels.trusted_nodes == (link is Hop.QKD_TRUSTED_RELAY)
    with pytest.raises(ValueError):
        derive_levels("rot13", KeyPath())


@pytest.mark.parametrize(
    ("extension", "hop"),
    [
        ({"key_path": {"link": "qkd"}}, Hop.QKD),
        ({"key_path": {"link": "qkd-trusted-relay", "relay_path": ["r1"]}}, Hop.QKD_TRUSTED_RELAY),
        (None, Hop.UNREPORTED),
        ({}, Hop.UNREPORTED),
        ({"key_path": "qkd"}, Hop.UNREPORTED),
        ({"key_path": {"link": "local"}}, Hop.UNREPORTED),  # not a kind of link
        ({"key_path": {"link": "QKD"}}, Hop.UNREPORTED),
        ({"key_path": {"link": ["qkd"]}}, Hop.UNREPORTED),
        ({"key_path": {"link": {"kind": "qkd"}}}, Hop.UNREPORTED),
        ([{"key_path": {"link": "qkd"}}], Hop.UNREPORTED),
    ],
)
def test_a_kme_report_is_read_strictly(extension: Any, hop: Hop) -> None:
    assert link_hop_of_status(extension) is hop


@pytest.mark.parametrize(
    ("url", "hop"),
    [
        ("https://127.0.0.1:8443", Hop.LOCAL),
        ("https://127.3.2.1:8443", Hop.LOCAL),
        ("https://[::1]:8443", Hop.LOCAL),
        ("https://localhost:8443", Hop.LOCAL),
        ("https://kme-a.example:8443", Hop.TLS),
        ("https://192.0.2.2:8443", Hop.TLS),
        ("https://0.0.0.0:8443", Hop.TLS),
        ("https://localhost.example:8443", Hop.TLS),
        ("not a url", Hop.TLS),
    ],
)
def test_the_delivery_hop_comes_from_the_kme_url(url: str, hop: Hop) -> None:
    assert delivery_hop_of(url) is hop
    assert hop is not Hop.TLS_HYBRID_PQ  # no client here can negotiate a hybrid group


def test_the_key_path_code_round_trips_for_every_path() -> None:
    for hops in itertools.product(Hop, repeat=3):
        path = KeyPath(*hops)
        assert KeyPath.from_code(path.code) == path
        assert KeyPath.from_dict(path.to_dict()) == path


DOC = Path(__file__).resolve().parents[2] / "docs" / "security-levels.md"
#: The table's columns, each with the key paths it stands for.
COLUMNS = (
    [KeyPath(Hop.QKD, Hop.LOCAL, Hop.LOCAL), KeyPath(Hop.QKD_TRUSTED_RELAY, Hop.LOCAL, Hop.LOCAL)],
    [
        KeyPath(Hop.QKD, Hop.TLS_HYBRID_PQ, Hop.LOCAL),
        KeyPath(Hop.QKD, Hop.LOCAL, Hop.TLS_HYBRID_PQ),
    ],
    [KeyPath(Hop.QKD, Hop.TLS, Hop.LOCAL), KeyPath(Hop.UNREPORTED, Hop.LOCAL, Hop.LOCAL)],
)


def test_the_documented_table_is_what_derive_levels_computes() -> None:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("`otp`", "`aead`", "`hybrid`"):
            rows[cells[0].strip("`")] = cells[1:]
    assert set(rows) == {"otp", "aead", "hybrid"}
    for mode, cells in rows.items():
        for cell, paths in zip(cells, COLUMNS, strict=True):
            for path in paths:
                levels = derive_levels(mode, path)
                assert cell == f"{levels.confidentiality} / {levels.authenticity}", (mode, path)
