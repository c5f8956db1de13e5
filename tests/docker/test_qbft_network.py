"""The Besu QBFT network generator (scripts/qbft_network.py) against Besu's documented format."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from tests.docker import load_qbft_network

qn = load_qbft_network()

# Besu docs, "Configure QBFT consensus" > "Generate extra data": these four validators, in
# this order, through `besu rlp encode --type=QBFT_EXTRA_DATA`, give this extraData.
DOC_VALIDATORS = [
    "0x4592c8e45706cc08b8f44b11e43cba0cfc5892cb",
    "0x06e23768a0f59cf365e18c2e0c89e151bcdedc70",
    "0xc5327f96ee02d7bcbc1bf1236b8c15148971e1de",
    "0xab5e7f4061c605820d3744227eed91ff8e2c8908",
]
DOC_EXTRA_DATA = (
    "0xf87aa00000000000000000000000000000000000000000000000000000000000000000f854944592c8e457"
    "06cc08b8f44b11e43cba0cfc5892cb9406e23768a0f59cf365e18c2e0c89e151bcdedc7094c5327f96ee02"
    "d7bcbc1bf1236b8c15148971e1de94ab5e7f4061c605820d3744227eed91ff8e2c8908c080c0"
)
SIGNERS = [
    "0x1111111111111111111111111111111111111111",
    "0x2222222222222222222222222222222222222222",
]
NODE_HOSTS = ["172.16.239.11", "172.16.239.12", "172.16.239.13", "172.16.239.14"]

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)


def test_extra_data_matches_the_besu_documentation_vector() -> None:
    encoded = qn.encode_qbft_extra_data(DOC_VALIDATORS, sort=False)
    assert "0x" + encoded.hex() == DOC_EXTRA_DATA


def test_documentation_vector_decodes_to_its_validators_and_empty_fields() -> None:
    decoded = qn.decode_qbft_extra_data(bytes.fromhex(DOC_EXTRA_DATA[2:]))
    assert decoded.vanity == bytes(32)
    assert [v.lower() for v in decoded.validators] == DOC_VALIDATORS
    assert decoded.vote == ()
    assert decoded.round == 0
    assert decoded.seals == ()


def test_validators_are_sorted_ascending_by_default() -> None:
    decoded = qn.decode_qbft_extra_data(qn.encode_qbft_extra_data(DOC_VALIDATORS))
    assert [v.lower() for v in decoded.validators] == sorted(DOC_VALIDATORS)


@given(st.lists(addresses, min_size=1, max_size=16, unique_by=str.lower))
def test_encode_decode_round_trip(validators: list[str]) -> None:
    decoded = qn.decode_qbft_extra_data(qn.encode_qbft_extra_data(validators))
    assert list(decoded.validators) == sorted(validators, key=lambda a: bytes.fromhex(a[2:]))
    assert (decoded.vanity, decoded.vote, decoded.round, decoded.seals) == (bytes(32), (), 0, ())


@pytest.mark.parametrize(
    "validators", [[], [SIGNERS[0], SIGNERS[0].upper().replace("0X", "0x")], ["0x1234"]]
)
def test_encoder_refuses_empty_duplicate_or_malformed_validators(validators: list[str]) -> None:
    with pytest.raises(ValueError):
        qn.encode_qbft_extra_data(validators)


@pytest.mark.parametrize(
    "items",
    [
        [bytes(32), [], [], b""],  # 4 items
        [bytes(31), [bytes(20)], [], b"", []],  # short vanity
        [bytes(32), [bytes(19)], [], b"", []],  # short address
        [bytes(32), [bytes(20)], [], b"\x00\x01", []],  # non-canonical round
        [bytes(32), [bytes(20)], b"", b"", []],  # vote not a list
        [bytes(32), [bytes(20)], [], b"", [[b"x"]]],  # seal not bytes
    ],
)
def test_decoder_refuses_malformed_extra_data(items: list[Any]) -> None:
    with pytest.raises(ValueError):
        qn.decode_qbft_extra_data(rlp.encode(items))


@given(st.binary(max_size=200))
def test_decoder_never_fails_other_than_with_value_error(data: bytes) -> None:
    try:
        qn.decode_qbft_extra_data(data)
    except ValueError:
        pass
    except Exception as exc:  # anything else would crash the caller's error handling
        pytest.fail(f"{type(exc).__name__} escaped the decoder")


@pytest.fixture
def network(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    nodes = [qn.new_node(host) for host in NODE_HOSTS]
    summary = qn.write_network(
        tmp_path,
        nodes,
        allowed_accounts=SIGNERS,
        options=qn.QbftOptions(chain_id=424243, block_period_s=2, request_timeout_s=4),
        timestamp=1_700_000_000,
    )
    return tmp_path, summary


def _key_file(path: Path) -> PrivateKey:
    text = path.read_text("ascii")
    assert text.startswith("0x")
    return PrivateKey(bytes.fromhex(text[2:]))


def test_genesis_validators_are_the_generated_node_keys(
    network: tuple[Path, dict[str, Any]],
) -> None:
    out, summary = network
    key_addresses = {
        _key_file(out / f"node{i}" / "key").public_key.to_checksum_address() for i in range(1, 5)
    }
    assert len(key_addresses) == 4
    for i in range(1, 5):
        genesis = json.loads((out / f"node{i}" / "genesis.json").read_text())
        extra = qn.decode_qbft_extra_data(bytes.fromhex(genesis["extraData"][2:]))
        assert set(extra.validators) == key_addresses
        assert list(extra.validators) == sorted(extra.validators, key=str.lower)
    assert set(summary["validators"]) == key_addresses


def test_enode_urls_carry_the_node_keys_public_keys(network: tuple[Path, dict[str, Any]]) -> None:
    out, summary = network
    expected = [
        f"enode://{_key_file(out / f'node{i}' / 'key').public_key.to_bytes().hex()}"
        f"@{NODE_HOSTS[i - 1]}:30303"
        for i in range(1, 5)
    ]
    assert summary["enodes"] == expected
    for i in range(1, 5):
        static = json.loads((out / f"node{i}" / "static-nodes.json").read_text())
        assert static == expected
        permissions = tomllib.loads((out / f"node{i}" / "permissions_config.toml").read_text())
        assert permissions["nodes-allowlist"] == expected


def test_only_the_signers_are_allowlisted_and_funded(network: tuple[Path, dict[str, Any]]) -> None:
    out, _ = network
    permissions = tomllib.loads((out / "node1" / "permissions_config.toml").read_text())
    assert permissions["accounts-allowlist"] == [s.lower() for s in SIGNERS]
    genesis = json.loads((out / "node1" / "genesis.json").read_text())
    assert set(genesis["alloc"]) == {s[2:].lower() for s in SIGNERS}
    assert all(int(a["balance"], 16) > 0 for a in genesis["alloc"].values())


def test_genesis_shape_is_besu_qbft(network: tuple[Path, dict[str, Any]]) -> None:
    out, _ = network
    genesis = json.loads((out / "node1" / "genesis.json").read_text())
    config = genesis["config"]
    assert config["chainId"] == 424243
    assert config["qbft"] == {
        "blockperiodseconds": 2,
        "epochlength": 30000,
        "requesttimeoutseconds": 4,
    }
    # The contracts are compiled for Cancun; gas is free.
    assert config["londonBlock"] == config["shanghaiTime"] == config["cancunTime"] == 0
    assert config["zeroBaseFee"] is True
    assert genesis["mixHash"] == qn.BFT_MIX_HASH
    assert genesis["difficulty"] == "0x1"
    assert int(genesis["timestamp"], 16) == 1_700_000_000
    assert int(genesis["gasLimit"], 16) == 60_000_000
    texts = {(out / f"node{i}" / "genesis.json").read_text() for i in range(1, 5)}
    assert len(texts) == 1, "every node must start from the same genesis"


def test_node_keys_are_private_and_never_overwritten(network: tuple[Path, dict[str, Any]]) -> None:
    out, _ = network
    for i in range(1, 5):
        assert stat.S_IMODE((out / f"node{i}" / "key").stat().st_mode) == 0o600
        assert stat.S_IMODE((out / f"node{i}").stat().st_mode) == 0o700
    before = (out / "node1" / "key").read_bytes()
    with pytest.raises(FileExistsError):
        qn.write_network(
            out,
            [qn.new_node(h) for h in NODE_HOSTS],
            allowed_accounts=SIGNERS,
            options=qn.QbftOptions(),
        )
    assert (out / "node1" / "key").read_bytes() == before


@pytest.mark.parametrize(
    "options",
    [
        {"chain_id": 0},
        {"block_period_s": 4, "request_timeout_s": 4},
        {"epoch_length": 0},
        {"gas_limit": 20_000},
    ],
)
def test_options_refuse_unworkable_values(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        qn.QbftOptions(**options)


def test_an_empty_accounts_allowlist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="allowlist"):
        qn.write_network(
            tmp_path, [qn.new_node("10.0.0.1")], allowed_accounts=[], options=qn.QbftOptions()
        )


def test_command_line_writes_the_network_and_prints_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--chain-id", "777"]
    for host in NODE_HOSTS:
        argv += ["--node", f"{host}:30303"]
    for signer in SIGNERS:
        argv += ["--allow-account", signer]
    assert qn.main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed)
    assert summary["chain_id"] == 777
    assert len(summary["validators"]) == 4
    for i in range(1, 5):
        key_hex = (tmp_path / f"node{i}" / "key").read_text()[2:]
        assert key_hex not in printed
    assert qn.main(argv) == 1, "a second run must refuse to overwrite the keys"
