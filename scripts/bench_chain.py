"""Benchmark: how fast records reach the chain, embedded py-evm and anvil, in one run.

For each chain it measures, through the same ChainClient the notary uses (gas estimation,
signing, nonce management, receipt and confirmation wait included):

* baseline  - one transaction per record (``recordBatch`` with a single record);
* batch-100 / batch-500 - ``recordBatch`` with 100 / 500 records per transaction;
* merkle-1000 / merkle-10000 - leaves hashed and the tree built in Python, then one
  ``anchorRoot`` transaction (the time includes tree construction).

and prints records/s, gas per record and the speed-up over the baseline, then one summary
line. Both chains get a 60M block gas limit (a 500-record batch needs about 25M gas).

    python scripts/bench_chain.py [--baseline-tx 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from notary.chain import ChainClient, ChainSettings, MerkleTree, RecordInput, SecurityMode
from notary.chain.anvil import AnvilNode
from qkd_channel.security_levels import Hop, KeyPath

GAS_LIMIT = 60_000_000
FIRMWARE = bytes(range(32))


@dataclass
class Result:
    chain: str
    mode: str
    records: int
    seconds: float
    gas: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def gas_per_record(self) -> float:
        return self.gas / self.records


DEVICES = [f"bench-{i}" for i in range(16)]
#: Every hop reported: a QKD link, TLS to the device, the notary's KME on loopback.
KEY_PATH = KeyPath(link=Hop.QKD, device=Hop.TLS, notary=Hop.LOCAL).code


def make_records(count: int, start: int) -> list[RecordInput]:
    """Records as the notary anchors them (every receipt claim bound in the leaf), from
    16 registered devices, in runs of one device as intake order tends to give."""
    now_ms = int(time.time() * 1000)
    return [
        RecordInput(
            record_id=os.urandom(32),
            device_id=DEVICES[(i * 16) // count],
            sequence=start + i,
            payload_hash=os.urandom(32),
            mode=SecurityMode.OTP if i % 2 else SecurityMode.AEAD,
            key_path=KEY_PATH,
            firmware_digest=FIRMWARE,
            device_trusted=True,
            sent_at_ms=now_ms + i,
            accepted_at_ms=now_ms + i + 5,
        )
        for i in range(count)
    ]


def register_devices(client: ChainClient) -> None:
    """The contract records only devices active in its registry."""
    for device_id in DEVICES:
        client.register_device(device_id, sae_id=f"sae-{device_id}", owner=client.address)


def timed(run: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    gas = run()
    return time.perf_counter() - started, gas


def bench(client: ChainClient, chain: str, baseline_tx: int, repeats: int) -> list[Result]:
    register_devices(client)
    results = []
    singles = make_records(baseline_tx, 0)
    seconds, gas = timed(lambda: sum(client.record_batch([r]).tx.gas_used for r in singles))
    results.append(Result(chain, "baseline", baseline_tx, seconds, gas))
    for size in (100, 500):
        batches = [make_records(size, 10**6 * (k + 1)) for k in range(repeats)]

        def send(batches: list[list[RecordInput]] = batches) -> int:
            return sum(client.record_batch(b).tx.gas_used for b in batches)

        seconds, gas = timed(send)
        results.append(Result(chain, f"batch-{size}", size * repeats, seconds, gas))
    for size in (1_000, 10_000):
        records = make_records(size, 10**8)

        def anchor(records: list[RecordInput] = records) -> int:
            tree = MerkleTree.of_records(records)
            outcome = client.anchor_root(
                tree.root,
                count=len(records),
                first_record_id=records[0].record_id,
                last_record_id=records[-1].record_id,
            )
            return outcome.tx.gas_used

        seconds, gas = timed(anchor)
        results.append(Result(chain, f"merkle-{size}", size, seconds, gas))
    return results


@contextmanager
def embedded_client(workdir: Path) -> Iterator[ChainClient]:
    settings = ChainSettings(data_dir=workdir / "embedded", embedded_gas_limit=GAS_LIMIT)
    with ChainClient.open(settings, Account.create()) as client:
        yield client


@contextmanager
def anvil_client(workdir: Path) -> Iterator[ChainClient]:
    node = AnvilNode(gas_limit=GAS_LIMIT)
    node.start()
    try:
        settings = ChainSettings(data_dir=workdir / "anvil", rpc_url=node.url)
        with ChainClient.open(settings, Account.from_key(node.dev_key)) as client:
            yield client
    finally:
        node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tx", type=int, default=100, help="single-record transactions")
    parser.add_argument("--repeats", type=int, default=2, help="batches of each size")
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch:
        for chain, opener in (("embedded", embedded_client), ("anvil", anvil_client)):
            with opener(Path(scratch)) as client:
                results += bench(client, chain, args.baseline_tx, args.repeats)
    print(
        f"{'chain':<9} {'mode':<13} {'records':>8} {'seconds':>8} {'rec/s':>9} "
        f"{'gas/rec':>8} {'x base':>7}"
    )
    summary = []
    for chain in ("embedded", "anvil"):
        rows = [r for r in results if r.chain == chain]
        base = rows[0].rate
        for r in rows:
            print(
                f"{r.chain:<9} {r.mode:<13} {r.records:>8} {r.seconds:>8.2f} {r.rate:>9.1f} "
                f"{r.gas_per_record:>8.0f} {r.rate / base:>7.1f}"
            )
        best = max((r for r in rows if r.mode.startswith("batch")), key=lambda r: r.rate)
        merkle = max(r.rate for r in rows if r.mode.startswith("merkle"))
        summary.append(
            f"{chain}: baseline {base:.1f} rec/s, batched {best.rate:.0f} rec/s "
            f"({best.rate / base:.0f}x, {best.gas_per_record / 1000:.0f}k gas/rec), "
            f"merkle {merkle:.0f} rec/s ({merkle / base:.0f}x)"
        )
    print("bench_chain: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
