"""Generate a Hyperledger Besu QBFT network: node keys, genesis, static nodes, permissions.

The one-shot ``setup`` service of ``docker/compose.yml`` runs this inside the notary image
(no JVM, so no ``besu operator generate-blockchain-config``) because the genesis depends on
accounts only known at set-up time: the notary signers, created there by ``qkd-notary keystore
new``, are the only accounts allowed to transact (Besu local account permissioning) and are
funded in ``alloc``. Nothing generated here is committed; node keys are written 0600.

``extraData`` follows Besu's QBFT genesis format for block-header validator selection,
``RLP([32-byte vanity, [validator addresses, ascending], no vote, round 0, no seals])``,
where "no vote" is the empty list and round 0 is the RLP empty string (``...c080c0``), as
``besu rlp encode --type=QBFT_EXTRA_DATA`` writes it.

Layout written under ``--out`` (one directory per node, mounted as that node's
``--data-path``, where Besu finds ``key``, ``static-nodes.json`` and
``permissions_config.toml`` by default)::

    OUT/node1/key  OUT/node1/genesis.json  OUT/node1/static-nodes.json
    OUT/node1/permissions_config.toml      OUT/node2/...

and a public summary (chain ID, validators, enode URLs) is printed as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from eth_keys.datatypes import PrivateKey
from eth_utils.address import is_address, to_canonical_address, to_checksum_address
from eth_utils.exceptions import ValidationError

__all__ = [
    "BFT_MIX_HASH",
    "DEFAULT_CHAIN_ID",
    "BesuNode",
    "QbftExtraData",
    "QbftOptions",
    "decode_qbft_extra_data",
    "encode_qbft_extra_data",
    "genesis_document",
    "main",
    "new_node",
    "permissions_toml",
    "write_network",
]

#: Chain ID of the deployment's Besu network (the embedded chain uses 424242).
DEFAULT_CHAIN_ID = 424243
#: The constant mixHash every Besu BFT (IBFT 2.0 / QBFT) block header carries.
BFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
_VANITY = bytes(32)
_FUNDED_WEI = 10**24  # the signers' genesis balance; fees are zero anyway (zeroBaseFee)


@dataclass(frozen=True)
class BesuNode:
    """One validator: its node key (which is also its validator key) and where peers dial it."""

    host: str
    p2p_port: int
    private_key: PrivateKey

    @property
    def address(self) -> str:
        """The validator address (EIP-55), derived from the node key."""
        return to_checksum_address(self.private_key.public_key.to_canonical_address())

    @property
    def enode_id(self) -> str:
        """The 64-byte uncompressed public key, hex, as enode URLs carry it."""
        return self.private_key.public_key.to_bytes().hex()

    @property
    def enode_url(self) -> str:
        return f"enode://{self.enode_id}@{self.host}:{self.p2p_port}"


@dataclass(frozen=True)
class QbftExtraData:
    """The decoded fields of a QBFT ``extraData``."""

    vanity: bytes
    validators: tuple[str, ...]
    vote: tuple[Any, ...]
    round: int
    seals: tuple[bytes, ...]


@dataclass(frozen=True)
class QbftOptions:
    """The genesis ``config.qbft`` timing and the chain parameters."""

    chain_id: int = DEFAULT_CHAIN_ID
    block_period_s: int = 2
    request_timeout_s: int = 4
    epoch_length: int = 30_000
    gas_limit: int = 60_000_000

    def __post_init__(self) -> None:
        if self.chain_id < 1:
            raise ValueError("chain ID must be positive")
        if self.block_period_s < 1 or self.request_timeout_s <= self.block_period_s:
            raise ValueError("need 1 <= block period < request timeout (Besu's tuning advice)")
        if self.epoch_length < 1 or self.gas_limit < 21_000:
            raise ValueError("epoch length must be positive and the gas limit at least 21000")


def new_node(host: str, p2p_port: int = 30303) -> BesuNode:
    """A node with a fresh secp256k1 key from the OS CSPRNG."""
    while True:
        try:
            return BesuNode(host, p2p_port, PrivateKey(secrets.token_bytes(32)))
        except ValidationError:  # 0 or >= n: probability ~2**-128, draw again
            continue


def encode_qbft_extra_data(validators: Sequence[str], *, sort: bool = True) -> bytes:
    """Genesis ``extraData`` naming ``validators``.

    Sorted ascending by default, the order Besu's docs ask for and the one Besu itself
    writes into the blocks it seals; ``sort=False`` keeps the given order, as
    ``besu rlp encode`` does.
    """
    if not validators:
        raise ValueError("a QBFT network needs at least one validator")
    raw = [to_canonical_address(v) for v in validators]
    if len(set(raw)) != len(raw):
        raise ValueError("duplicate validator address")
    if sort:
        raw.sort()
    return bytes(rlp.encode([_VANITY, raw, [], b"", []]))


def decode_qbft_extra_data(data: bytes) -> QbftExtraData:
    """Parse a QBFT ``extraData`` (any block's, not only genesis), checking its shape."""
    try:
        items = rlp.decode(data)
    except rlp.exceptions.DecodingError as exc:
        raise ValueError(f"not RLP: {exc}") from exc
    if not isinstance(items, list) or len(items) != 5:
        raise ValueError("QBFT extraData is a 5-item RLP list")
    vanity, validators, vote, round_bytes, seals = items
    if not isinstance(vanity, bytes) or len(vanity) != 32:
        raise ValueError("vanity must be 32 bytes")
    if not isinstance(validators, list) or not all(
        isinstance(v, bytes) and len(v) == 20 for v in validators
    ):
        raise ValueError("validators must be a list of 20-byte addresses")
    if not isinstance(vote, list) or not isinstance(round_bytes, bytes):
        raise ValueError("vote must be a list and round a scalar")
    if round_bytes[:1] == b"\x00":
        raise ValueError("round is not a canonical RLP scalar")
    if not isinstance(seals, list) or not all(isinstance(s, bytes) for s in seals):
        raise ValueError("seals must be a list of byte strings")
    return QbftExtraData(
        vanity=vanity,
        validators=tuple(to_checksum_address(v) for v in validators),
        vote=tuple(vote),
        round=int.from_bytes(round_bytes, "big"),
        seals=tuple(seals),
    )


def _checked_accounts(accounts: Sequence[str]) -> list[str]:
    for account in accounts:
        if not is_address(account):
            raise ValueError(f"not an account address: {account!r}")
    return sorted({to_checksum_address(a) for a in accounts})


def genesis_document(
    validators: Sequence[str],
    funded: Sequence[str],
    options: QbftOptions,
    *,
    timestamp: int,
) -> dict[str, Any]:
    """Besu genesis: every fork through Cancun at block 0, free gas, QBFT with ``validators``.

    Cancun because the contracts are compiled for it (``evmVersion: cancun``); ``zeroBaseFee``
    (with ``--min-gas-price=0`` on the nodes) makes gas free, which is how Besu runs
    permissioned networks; the notary signers are funded all the same so that a node
    suggesting a non-zero priority fee cannot stall them.
    """
    forks = {
        name: 0
        for name in (
            "homesteadBlock",
            "eip150Block",
            "eip155Block",
            "eip158Block",
            "byzantiumBlock",
            "constantinopleBlock",
            "petersburgBlock",
            "istanbulBlock",
            "muirGlacierBlock",
            "berlinBlock",
            "londonBlock",
            "shanghaiTime",
            "cancunTime",
        )
    }
    return {
        "config": {
            "chainId": options.chain_id,
            **forks,
            "zeroBaseFee": True,
            "qbft": {
                "blockperiodseconds": options.block_period_s,
                "epochlength": options.epoch_length,
                "requesttimeoutseconds": options.request_timeout_s,
            },
        },
        "nonce": "0x0",
        "timestamp": hex(timestamp),
        "gasLimit": hex(options.gas_limit),
        "difficulty": "0x1",
        "mixHash": BFT_MIX_HASH,
        "coinbase": "0x" + "00" * 20,
        "alloc": {
            account[2:].lower(): {"balance": hex(_FUNDED_WEI)}
            for account in _checked_accounts(funded)
        },
        "extraData": "0x" + encode_qbft_extra_data(validators).hex(),
        "number": "0x0",
        "gasUsed": "0x0",
        "parentHash": "0x" + "00" * 32,
    }


def permissions_toml(accounts: Sequence[str], nodes: Sequence[BesuNode]) -> str:
    """Besu ``permissions_config.toml``: who may send transactions, which nodes may connect."""
    allowed = _checked_accounts(accounts)
    if not allowed:
        raise ValueError("an empty accounts allowlist would refuse every transaction")
    accounts_list = ", ".join(json.dumps(a.lower()) for a in allowed)
    nodes_list = ", ".join(json.dumps(n.enode_url) for n in nodes)
    return f"accounts-allowlist=[{accounts_list}]\nnodes-allowlist=[{nodes_list}]\n"


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


def write_network(
    out: Path,
    nodes: Sequence[BesuNode],
    *,
    allowed_accounts: Sequence[str],
    options: QbftOptions,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """Write every node's directory under ``out``; never overwrite an existing node key.

    Returns the public summary (chain ID, validators, enode URLs).
    """
    if not nodes:
        raise ValueError("no nodes")
    targets = [out / f"node{i}" for i in range(1, len(nodes) + 1)]
    for target in targets:
        if (target / "key").exists():
            raise FileExistsError(f"{target / 'key'} exists: this network was generated already")
    genesis = genesis_document(
        [n.address for n in nodes],
        allowed_accounts,
        options,
        timestamp=int(time.time()) if timestamp is None else timestamp,
    )
    genesis_text = json.dumps(genesis, indent=2) + "\n"
    static_nodes = json.dumps([n.enode_url for n in nodes], indent=2) + "\n"
    permissions = permissions_toml(allowed_accounts, nodes)
    for node, target in zip(nodes, targets, strict=True):
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Besu's key file: the private key as 0x-prefixed hex, like `besu` writes it.
        _write(target / "key", "0x" + node.private_key.to_bytes().hex(), 0o600)
        _write(target / "genesis.json", genesis_text, 0o644)
        _write(target / "static-nodes.json", static_nodes, 0o644)
        _write(target / "permissions_config.toml", permissions, 0o644)
    return {
        "chain_id": options.chain_id,
        "validators": sorted(n.address for n in nodes),
        "enodes": [n.enode_url for n in nodes],
        "allowed_accounts": _checked_accounts(allowed_accounts),
    }


def _parse_node(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, 30303
    if not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST or HOST:PORT, got {value!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Directory for node1..nodeN")
    parser.add_argument(
        "--node",
        action="append",
        type=_parse_node,
        required=True,
        metavar="HOST[:PORT]",
        help="P2P address of one validator, as its peers dial it (repeat per node)",
    )
    parser.add_argument(
        "--allow-account",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="Account allowed to send transactions, funded in genesis (repeat)",
    )
    parser.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID)
    parser.add_argument("--block-period", type=int, default=2, help="Seconds between blocks")
    parser.add_argument("--request-timeout", type=int, default=4, help="QBFT round timeout (s)")
    parser.add_argument("--epoch-length", type=int, default=30_000)
    args = parser.parse_args(argv)
    try:
        options = QbftOptions(
            chain_id=args.chain_id,
            block_period_s=args.block_period,
            request_timeout_s=args.request_timeout,
            epoch_length=args.epoch_length,
        )
        nodes = [new_node(host, port) for host, port in args.node]
        summary = write_network(
            args.out, nodes, allowed_accounts=args.allow_account, options=options
        )
    except (ValueError, OSError) as exc:
        print(f"qbft_network: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
