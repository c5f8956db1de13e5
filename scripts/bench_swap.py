#!/usr/bin/env python3
# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Benchmark (not a test): a full QKD-sealed atomic swap between two devnets, and devnet throughput.

Starts two ``qswap devnet`` processes and two ``qkd-kme serve`` processes of one link (fed
with identical key blocks, as the link's post-processing would), then:

1. runs ``--swaps`` complete swaps (initiate, participate, redeem, extract-secret, redeem)
   through the library the CLI uses, timing each and counting transactions and fees;
2. runs ``--swaps`` complete swaps through the CLI: the same five steps as five ``qswap``
   processes, exactly as ``docs/atomic-swap.md`` types them, timed as wall time from the
   first command's start to the last one's exit (what a user waits);
3. measures devnet throughput: single-payment groups (one block each, as in dev mode) and
   16-payment groups (one block per group).

Prints one summary line (plus details with ``-v``); both swap figures are medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

from algosdk import account, transaction

from atomic_swap import htlc, swap
from atomic_swap.accounts import Account, create_account_file, load_account
from atomic_swap.devnet.process import DevnetProcess, free_port
from atomic_swap.sealing import TermsChannel
from atomic_swap.store import SwapStore
from qkd_channel.errors import KMEError
from qkd_channel.kme.client import KMEClient
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.store import KeyStore

ALGO = 1_000_000
KME = [sys.executable, "-c", "from qkd_channel.cli import main; main()"]


def start_kmes(root: Path) -> tuple[list[subprocess.Popen[bytes]], dict[str, str], Path]:
    pki = root / "pki"
    subprocess.run(
        [*KME, "certs", "--out", str(pki), "--kme", "kme-a", "--kme", "kme-b",
         "--sae", "alice", "--sae", "bob"], check=True, capture_output=True,
    )  # fmt: skip
    ports = {"a": free_port(), "b": free_port()}
    urls = {end: f"https://127.0.0.1:{port}" for end, port in ports.items()}
    procs = [
        subprocess.Popen(
            [
                *KME,
                "serve",
                "--data-dir",
                str(root / f"kme-{end}"),
                "--kme-id",
                f"kme-{end}",
                "--end",
                end.upper(),
                "--peer-id",
                f"kme-{peer}",
                "--peer",
                urls[peer],
                "--listen",
                f"127.0.0.1:{ports[end]}",
                "--pki",
                str(pki),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for end, peer in (("a", "b"), ("b", "a"))
    ]
    blocks = [(f"blk-{uuid.uuid4()}", secrets.token_bytes(65536)) for _ in range(4)]
    for end in ("a", "b"):
        link_end = LinkEnd.A if end == "a" else LinkEnd.B
        with KeyStore(root / f"kme-{end}", kme_id=f"kme-{end}", end=link_end) as store:
            for block_id, material in blocks:
                store.add_block(block_id, material)
    for end, sae, peer in (("a", "alice", "bob"), ("b", "bob", "alice")):
        deadline = time.monotonic() + 30
        while True:
            try:
                with kme_client(pki, urls[end], sae) as client:
                    client.status(peer)
                break
            except KMEError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return procs, urls, pki


def kme_client(pki: Path, url: str, sae: str) -> KMEClient:
    return KMEClient(
        url, cert=pki / f"sae-{sae}.crt", key=pki / f"sae-{sae}.key", ca=pki / "ca.crt"
    )


def fund(net: DevnetProcess, addresses: list[str], algos: int) -> None:
    payer = load_account(net.dispenser_file)
    sp = net.client.suggested_params()
    pays = [transaction.PaymentTxn(payer.address, sp, a, algos * ALGO) for a in addresses]
    htlc.send_group(net.client, pays, payer.private_key)


class Counting:
    """Reporter that counts transactions and fees of every confirmed step."""

    def __init__(self) -> None:
        self.txns = 0
        self.fees = 0

    def waiting(self, what: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def done(self, what: str, result: htlc.Submitted) -> None:
        self.txns += len(result.txids)
        self.fees += result.fees


def full_swap(
    alpha: DevnetProcess, beta: DevnetProcess, pki: Path, urls: dict[str, str], home: Path
) -> tuple[float, int, int]:
    keys = {}
    for name in ("alice", "bob"):
        key, address = account.generate_account()
        keys[name] = Account(address, key)
    fund(alpha, [keys["alice"].address, keys["bob"].address], 10)
    fund(beta, [keys["bob"].address, keys["alice"].address], 10)
    counter = Counting()
    a_store, b_store = SwapStore(home / "alice"), SwapStore(home / "bob")
    a_chan = TermsChannel(
        kme_client(pki, urls["a"], "alice"), a_store, sae_id="alice", peer_sae_id="bob"
    )
    b_chan = TermsChannel(
        kme_client(pki, urls["b"], "bob"), b_store, sae_id="bob", peer_sae_id="alice"
    )
    alice_a = swap.Party(keys["alice"], alpha.client, a_store, counter)
    alice_b = swap.Party(keys["alice"], beta.client, a_store, counter)
    bob_b = swap.Party(keys["bob"], beta.client, b_store, counter)
    bob_a = swap.Party(keys["bob"], alpha.client, b_store, counter)
    start = time.perf_counter()
    record, offer = swap.initiate(
        alice_a, a_chan, participant=keys["bob"].address, amount=3 * ALGO, asset_id=0,
        want_amount=2 * ALGO, want_asset_id=0, receive_address=keys["alice"].address,
        lock_seconds=48 * 3600,
    )  # fmt: skip
    _, acceptance = swap.participate(
        bob_b, alpha.client, b_chan, offer, pay_amount=2 * ALGO, pay_asset_id=0,
        receive_amount=3 * ALGO, receive_asset_id=0, policy=swap.SafetyPolicy(),
    )  # fmt: skip
    swap.redeem_acceptance(alice_b, a_chan, acceptance)
    bob_record = b_store.load(record.swap_id)
    secret = swap.extract_secret(beta.client, bob_record.own_app_id)
    swap.redeem(bob_a, record.own_app_id, secret)
    return time.perf_counter() - start, counter.txns, counter.fees


def qswap(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "atomic_swap", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"qswap {args[0]} exited {done.returncode}: {done.stderr}")
    return done.stdout


def cli_swap(
    alpha: DevnetProcess, beta: DevnetProcess, pki: Path, urls: dict[str, str], home: Path
) -> float:
    """The five CLI commands of a swap; the wall time they take together."""
    home.mkdir(parents=True)
    envs, addresses = {}, {}
    for name, end, peer in (("alice", "a", "bob"), ("bob", "b", "alice")):
        acct = create_account_file(home / f"{name}.account")
        addresses[name] = acct.address
        envs[name] = {
            "QSWAP_HOME": str(home / f"{name}-home"),
            "QSWAP_ACCOUNT": str(home / f"{name}.account"),
            "QSWAP_KME_URL": urls[end], "QSWAP_SAE_ID": name, "QSWAP_PEER_SAE_ID": peer,
            "QSWAP_KME_CA": str(pki / "ca.crt"), "QSWAP_SAE_CERT": str(pki / f"sae-{name}.crt"),
            "QSWAP_SAE_KEY": str(pki / f"sae-{name}.key"),
        }  # fmt: skip
    fund(alpha, [addresses["alice"], addresses["bob"]], 10)
    fund(beta, [addresses["bob"], addresses["alice"]], 10)
    on_a = ["--algod-url", alpha.url, "--algod-token", alpha.token]
    on_b = ["--algod-url", beta.url, "--algod-token", beta.token]
    offer, acceptance = home / "offer.json", home / "acceptance.json"
    start = time.perf_counter()
    init = json.loads(qswap(
        "initiate", *on_a, "--participant", addresses["bob"], "--amount", str(3 * ALGO),
        "--want-amount", str(2 * ALGO), "--out", str(offer), "--json", env=envs["alice"],
    ))  # fmt: skip
    part = json.loads(qswap(
        "participate", str(offer), *on_b, "--initiator-algod-url", alpha.url,
        "--initiator-algod-token", alpha.token, "--pay-amount", str(2 * ALGO),
        "--receive-amount", str(3 * ALGO), "--out", str(acceptance), "--json", env=envs["bob"],
    ))  # fmt: skip
    qswap("redeem", str(acceptance), *on_b, env=envs["alice"])
    secret = qswap("extract-secret", *on_b, "--app-id", str(part["app_id"]), env=envs["bob"])
    qswap("redeem", *on_a, "--app-id", str(init["app_id"]), "--secret", secret.strip(),
          env=envs["bob"])  # fmt: skip
    return time.perf_counter() - start


def throughput(net: DevnetProcess, group_size: int, groups: int) -> float:
    payer = load_account(net.dispenser_file)
    _, sink = account.generate_account()
    fund(net, [sink], 1)
    start = time.perf_counter()
    for i in range(groups):
        sp = net.client.suggested_params()
        pays = [
            transaction.PaymentTxn(payer.address, sp, sink, 1000 + i * group_size + j)
            for j in range(group_size)
        ]
        htlc.send_group(net.client, pays, payer.private_key)
    return group_size * groups / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=20, help="blocks per throughput run")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        procs, urls, pki = start_kmes(root)
        try:
            with (
                DevnetProcess(root / "alpha", "alpha") as alpha,
                DevnetProcess(root / "beta", "beta") as beta,
            ):
                runs = [
                    full_swap(alpha, beta, pki, urls, root / f"s{i}") for i in range(args.swaps)
                ]
                cli_runs = [
                    cli_swap(alpha, beta, pki, urls, root / f"c{i}") for i in range(args.swaps)
                ]
                single = throughput(alpha, 1, args.blocks)
                grouped = throughput(alpha, 16, args.blocks)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    times = [r[0] for r in runs]
    txns, fees = runs[0][1], runs[0][2]
    if args.verbose:
        for i, (t, n, f) in enumerate(runs):
            print(f"library swap {i}: {t:.2f} s, {n} transactions, {f} µALGO fees")
        for i, t in enumerate(cli_runs):
            print(f"CLI swap {i}: {t:.2f} s wall time, 5 qswap commands")
    print(
        f"bench_swap: CLI swap (5 qswap commands, wall time) median "
        f"{statistics.median(cli_runs):.2f} s (min {min(cli_runs):.2f}, n={len(cli_runs)}); "
        f"library calls median {statistics.median(times):.2f} s (min {min(times):.2f}, "
        f"n={len(times)}); {txns} txns, {fees} µALGO fees ({fees / 2:.0f} per party); "
        f"devnet throughput {single:.1f} pay/s at 1 txn/block, "
        f"{grouped:.1f} pay/s at 16 txn/group"
    )


if __name__ == "__main__":
    main()
