"""``qkd-notary demo``: a fleet sends QKD-sealed telemetry; attacks fail; receipts verify.

Acts, in order, each visible in the progress display:

1. two KME processes start, joined by a simulated QKD link (lab preset, accelerated),
   and the demo waits until the link has stocked enough key for the whole fleet; the
   notary deploys its contracts on the embedded chain and starts; the operator registers
   the fleet;
2. every device sends its messages through the SDK, concurrently: the even meters reach
   their KME on loopback, the odd ones across the network (over TLS), when this host has
   a network address;
3. a lab probe shows a tampered envelope (one ciphertext bit flipped: 401) and a replayed
   envelope (409); one meter reports a new firmware digest and is flagged untrusted, then
   an operator approves the digest and it is trusted again;
4. the anchoring worker puts everything on-chain; the notary stops;
5. every receipt is verified against the chain database alone, with the plaintext's
   salted hash checked, and a summary table is printed, with the security levels the
   records' mode and key paths give (``docs/security-levels.md``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from notary.cli.receipt import embedded_web3
from notary.config import AnchorMode, load_or_create_admin_token
from notary.demo.infrastructure import (
    LINK_PRESET,
    NOTARY_SAE,
    RATE_MULTIPLIER,
    KMEPair,
    LinkReport,
    network_address,
    start_notary,
)
from notary.errors import ReceiptInvalid
from notary.metrics import NotaryMetrics
from notary.receipts import Receipt, verify_receipt
from qkd_channel.envelope import Mode, keys_needed, seal
from qkd_channel.hybrid import KEMPublicKey
from qkd_channel.kme.client import AsyncKMEClient
from qkd_channel.security_levels import delivery_hop_of
from qkd_device import AsyncDeviceClient, DeliveryReceipt
from qkd_device.records import build_document

__all__ = ["DemoConfig", "DemoOutcome", "run_demo"]

PROBE = "lab-probe"


@dataclass(frozen=True)
class DemoConfig:
    devices: int = 20
    messages: int = 5
    mode: Mode = Mode.OTP
    anchor_mode: AnchorMode = AnchorMode.MERKLE
    workdir: Path | None = None  #: default: a temporary directory, removed afterwards
    anchor_timeout_s: float = 90.0


@dataclass
class DemoOutcome:
    accepted: int = 0
    anchored: int = 0
    verified: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    key_bits: int = 0
    transactions: set[str] = field(default_factory=set)
    link: LinkReport | None = None  #: what the QKD link delivered to each KME
    #: Verified receipts per (mode, key path, confidentiality, authenticity), as derived.
    levels: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    flagged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and self.accepted == self.anchored == self.verified


def _firmware(version: str) -> str:
    return hashlib.sha256(f"meter-firmware {version}".encode()).hexdigest()


def _meter(i: int) -> str:
    return f"meter-{i:02d}"


async def run_demo(config: DemoConfig, console: Console) -> DemoOutcome:
    """Run the whole demonstration; the outcome says whether every check held."""
    if config.workdir is not None:
        config.workdir.mkdir(parents=True, exist_ok=True)
        return await _run(config, config.workdir, console)
    with tempfile.TemporaryDirectory(prefix="qkd-notary-demo-") as tmp:
        return await _run(config, Path(tmp), console)


async def _run(config: DemoConfig, workdir: Path, console: Console) -> DemoOutcome:
    started = time.monotonic()
    outcome = DemoOutcome()
    meters = [_meter(i) for i in range(config.devices)]
    # Bits of key for every fleet message plus the probe's and the firmware act's, with
    # room to spare (160 bytes bound each document), in whole 256-bit KME keys.
    messages = config.devices * config.messages + 8
    need = 256 * math.ceil(messages * keys_needed(config.mode, 160) / 32)
    # Each end owns half its buffer, so the link pauses once end A's half holds `need`
    # (a KME buffer holds at least two maximum-size keys, 2 x 65,536 bits).
    buffer_bits = max(2 * need, 131_072)
    kmes = KMEPair(
        workdir,
        [f"sae-{d}" for d in [*meters, PROBE]],
        buffer_bits=buffer_bits,
        network_host=network_address(),
    )
    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        setup = progress.add_task("linked KMEs, chain, notary", total=4)
        kmes.start()
        progress.advance(setup)
        try:
            stock = progress.add_task("QKD link stocks key (bits)", total=need)
            await kmes.wait_for_key(need, lambda bits: progress.update(stock, completed=bits))
            progress.advance(setup)
            server, chain = await start_notary(workdir, kmes, anchor_mode=config.anchor_mode)
            progress.advance(setup)
            try:
                kem = server.service.kem_public_key
                receipts = await _acts(
                    config, outcome, kmes, server.url, server.service.metrics, progress, kem
                )
            finally:
                await server.stop()
                chain.close()
            progress.advance(setup)
            outcome.elapsed_s = time.monotonic() - started
        finally:
            kmes.stop()
        outcome.link = kmes.link_report()
        verify = progress.add_task("verify receipts on-chain", total=len(receipts))
        with embedded_web3(workdir / "notary") as w3:
            for receipt, payload in receipts:
                try:
                    verify_receipt(receipt, w3, payload=payload)
                    outcome.verified += 1
                    path = receipt.key_path
                    outcome.levels[
                        (
                            receipt.mode,
                            f"{path.link} / {path.device} / {path.notary}",
                            receipt.security.confidentiality,
                            receipt.security.authenticity,
                        )
                    ] += 1
                    assert receipt.anchor is not None
                    outcome.transactions.add(receipt.anchor.tx_hash)
                except ReceiptInvalid as exc:
                    outcome.failures.append(f"receipt {receipt.record_id}: {exc.reason}")
                progress.advance(verify)
    outcome.elapsed_s = time.monotonic() - started
    _summary(console, config, outcome)
    return outcome


async def _acts(
    config: DemoConfig,
    outcome: DemoOutcome,
    kmes: KMEPair,
    url: str,
    metrics: NotaryMetrics,
    progress: Progress,
    kem: KEMPublicKey | None,
) -> list[tuple[Receipt, bytes]]:
    """Register, send, attack, wait for anchoring; return receipts with their plaintexts."""
    workdir = kmes.workdir
    token = load_or_create_admin_token(workdir / "notary")
    admin = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"})
    meters = [_meter(i) for i in range(config.devices)]
    sent: dict[str, bytes] = {}
    async with admin:
        for device in [*meters, PROBE]:
            answer = await admin.post(
                "/v1/admin/devices", json={"device_id": device, "sae_id": f"sae-{device}"}
            )
            answer.raise_for_status()
        kme_clients = {
            d: kmes.device_kme(f"sae-{d}", over_network=i % 2 == 1)
            for i, d in enumerate([*meters, PROBE])
        }
        clients = {
            d: AsyncDeviceClient(
                d,
                kme=kme_clients[d],
                notary=url,
                firmware_digest=_firmware("1.4.2"),
                queue_dir=workdir / "devices" / d,
                mode=config.mode,
                notary_sae_id=NOTARY_SAE,
                notary_kem_key=kem if config.mode is Mode.HYBRID else None,
            )
            for d in meters
        }
        try:
            fleet = progress.add_task(
                f"{config.devices} meters x {config.messages} messages",
                total=config.devices * config.messages,
            )

            async def run_meter(index: int, device: str) -> None:
                for n in range(config.messages):
                    telemetry = {"kwh": round(1000 + 7.5 * index + 0.25 * n, 2), "n": n}
                    ack = await clients[device].send(telemetry)
                    sent[ack.record_id] = clients[device].document(telemetry)
                    progress.advance(fleet)

            await asyncio.gather(*(run_meter(i, d) for i, d in enumerate(meters)))
            attacks = progress.add_task("tamper, replay, firmware change", total=3)
            await _tamper_and_replay(url, kme_clients[PROBE], outcome, sent, progress, attacks)
            await _firmware_change(clients[meters[-1]], admin, outcome, sent)
            progress.advance(attacks)
        finally:
            for client in clients.values():
                await client.aclose()
            for kme in kme_clients.values():
                await kme.aclose()
        outcome.accepted = len(sent)
        outcome.key_bits = 8 * int(_total(metrics.key_bytes))
        for reason, value in _by_label(metrics.rejected, "reason").items():
            outcome.rejected[reason] += int(value)
        return await _wait_anchored(url, sent, config.anchor_timeout_s, progress, outcome)


async def _tamper_and_replay(
    url: str,
    kme: AsyncKMEClient,
    outcome: DemoOutcome,
    sent: dict[str, bytes],
    progress: Progress,
    task: Any,
) -> None:
    """The lab probe seals by hand (no SDK) so it can misbehave on purpose."""
    plaintext = build_document(
        _firmware("probe"),
        {"probe": "calibration"},
        key_delivery=delivery_hop_of(kme.base_url).value,
    )
    async with httpx.AsyncClient(base_url=url) as http:
        envelopes = []
        for sequence in (1, 2):
            keys = await kme.enc_keys(NOTARY_SAE, size=8 * keys_needed(Mode.OTP, len(plaintext)))
            envelopes.append(
                seal(
                    plaintext,
                    sender=PROBE,
                    recipient="notary",
                    sequence=sequence,
                    mode=Mode.OTP,
                    keys=keys,
                )
            )
        honest, victim = envelopes
        flipped = bytearray(victim.ciphertext)
        flipped[len(flipped) // 2] ^= 0x01
        tampered = dataclasses.replace(victim, ciphertext=bytes(flipped))
        answer = await http.post("/v1/telemetry", content=tampered.to_json())
        _expect(outcome, "tampered envelope", answer, 401)
        progress.advance(task)
        answer = await http.post("/v1/telemetry", content=honest.to_json())
        _expect(outcome, "honest probe envelope", answer, 202)
        if answer.status_code == 202:
            sent[answer.json()["record_id"]] = plaintext
        answer = await http.post("/v1/telemetry", content=honest.to_json())
        _expect(outcome, "replayed envelope", answer, 409)
        progress.advance(task)


async def _firmware_change(
    client: AsyncDeviceClient,
    admin: httpx.AsyncClient,
    outcome: DemoOutcome,
    sent: dict[str, bytes],
) -> None:
    """A meter boots unapproved firmware: recorded, flagged; an operator re-approves it."""
    client.firmware_digest = _firmware("1.5.0-unsigned")
    ack = await _send(client, {"kwh": 1.0, "note": "after update"}, sent)
    if ack.device_trusted is not False or ack.attestation != "digest-changed":
        outcome.failures.append("a changed firmware digest was not flagged")
    else:
        outcome.flagged.append(client.device_id)
    answer = await admin.post(
        f"/v1/admin/devices/{client.device_id}/approve",
        json={"firmware_digest": client.firmware_digest},
    )
    if answer.status_code != 200 or answer.json()["trusted"] is not True:
        outcome.failures.append("operator approval did not restore trust")
    ack = await _send(client, {"kwh": 1.5, "note": "approved"}, sent)
    if ack.device_trusted is not True:
        outcome.failures.append("an approved device was not trusted")


async def _send(
    client: AsyncDeviceClient, telemetry: dict[str, Any], sent: dict[str, bytes]
) -> DeliveryReceipt:
    ack = await client.send(telemetry)
    sent[ack.record_id] = client.document(telemetry)
    return ack


def _expect(outcome: DemoOutcome, what: str, answer: httpx.Response, status: int) -> None:
    if answer.status_code != status:
        outcome.failures.append(f"{what}: expected HTTP {status}, got {answer.status_code}")


async def _wait_anchored(
    url: str, sent: dict[str, bytes], timeout_s: float, progress: Progress, outcome: DemoOutcome
) -> list[tuple[Receipt, bytes]]:
    task = progress.add_task("anchoring on the embedded chain", total=len(sent))
    done: dict[str, Receipt] = {}
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url) as http:
        while len(done) < len(sent) and time.monotonic() < deadline:
            for record_id in [r for r in sent if r not in done]:
                answer = await http.get(f"/v1/records/{record_id}")
                receipt = Receipt.model_validate_json(answer.content)
                if receipt.status == "anchored":
                    done[record_id] = receipt
                    progress.advance(task)
            if len(done) < len(sent):
                await asyncio.sleep(0.3)
    outcome.anchored = len(done)
    if len(done) < len(sent):
        outcome.failures.append(f"{len(sent) - len(done)} record(s) not anchored in time")
    return [(receipt, sent[record_id]) for record_id, receipt in done.items()]


def _samples(counter: Any) -> list[Any]:
    return [s for m in counter.collect() for s in m.samples if s.name.endswith("_total")]


def _total(counter: Any) -> float:
    return float(sum(s.value for s in _samples(counter)))


def _by_label(counter: Any, label: str) -> dict[str, float]:
    out: Counter[str] = Counter()
    for sample in _samples(counter):
        out[sample.labels[label]] += sample.value
    return dict(out)


def _summary(console: Console, config: DemoConfig, outcome: DemoOutcome) -> None:
    table = Table(title="qkd-notary demo", show_header=False)
    table.add_row("envelopes accepted (202)", str(outcome.accepted))
    table.add_row("records anchored on-chain", str(outcome.anchored))
    table.add_row("receipts verified against the chain", str(outcome.verified))
    table.add_row("anchoring transactions", str(len(outcome.transactions)))
    for reason, count in sorted(outcome.rejected.items()):
        table.add_row(f"rejected: {reason}", str(count))
    table.add_row("devices flagged (firmware change)", ", ".join(outcome.flagged) or "-")
    table.add_row(
        "QKD key consumed by the notary", f"{outcome.key_bits:,} bits ({config.mode.value})"
    )
    if outcome.link is not None:
        link = outcome.link
        table.add_row(
            f"QKD link ({LINK_PRESET}, x{RATE_MULTIPLIER:g}): key blocks",
            f"{link.blocks} ({link.delivered_bits:,} bits to each KME)",
        )
        qber = link.mean_qber
        table.add_row(
            "QKD link QBER (mean, min-max)",
            "-" if qber is None else f"{qber:.2%} ({min(link.qbers):.2%}-{max(link.qbers):.2%})",
        )
    table.add_row("anchoring", config.anchor_mode.value)
    table.add_row("elapsed", f"{outcome.elapsed_s:.1f} s")
    console.print(table)
    console.print(
        "security levels of the verified receipts, by mode and key path "
        "(link / device / notary; docs/security-levels.md):",
        soft_wrap=True,
    )
    for (mode, path, confidentiality, authenticity), count in sorted(outcome.levels.items()):
        console.print(
            f"  {mode} over {path}: {count} record(s), confidentiality {confidentiality}, "
            f"authenticity {authenticity}",
            soft_wrap=True,
            highlight=False,
        )
    for failure in outcome.failures:
        console.print(f"[red]FAILED[/]: {failure}")
    console.print("[green]all checks passed[/]" if outcome.ok else "[red]demo failed[/]")
