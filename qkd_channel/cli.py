"""``qkd-kme``: run a key management entity of a simulated QKD link.

Every option can also be given as an environment variable ``QKD_KME_<OPTION>`` (for
example ``QKD_KME_DATA_DIR``), following the project's CLI conventions
(:mod:`qkd_channel.clikit`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from qkd_channel.clikit import CONTEXT, apply_env_rule, run, version_option
from qkd_channel.errors import ChannelError

if TYPE_CHECKING:
    from qkd_channel.kme.config import KMEConfig
    from qkd_channel.kme.link_source import SimulatedLinkSource

__all__ = ["entry", "main"]


@click.group(context_settings=CONTEXT)
@version_option()
def main() -> None:
    """Key management entity (ETSI GS QKD 014) for one end of a simulated QKD link."""


def entry() -> None:
    """The ``qkd-kme`` console script."""
    run(main, "qkd-kme")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--kme", "kme_ids", multiple=True, help="KME ID (server + peer-client certificate).")
@click.option("--sae", "sae_ids", multiple=True, help="SAE ID (client certificate).")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="DNS name or IP address in KME server certificates [default: localhost, 127.0.0.1].",
)
@click.option("--days", default=397, show_default=True, help="Validity of leaf certificates.")
def certs(
    out_dir: Path,
    kme_ids: tuple[str, ...],
    sae_ids: tuple[str, ...],
    hosts: tuple[str, ...],
    days: int,
) -> None:
    """Create a CA (or reuse the one in OUT) and KME / SAE certificates."""
    from qkd_channel.kme.certs import DEFAULT_SERVER_HOSTS, issue_link_pki

    if not kme_ids and not sae_ids:
        raise click.UsageError("name at least one --kme or --sae")
    try:
        pki = issue_link_pki(
            out_dir,
            kme_ids=kme_ids,
            sae_ids=sae_ids,
            server_hosts=hosts or DEFAULT_SERVER_HOSTS,
            days=days,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    for path in pki.written:
        click.echo(str(path))


def _split_listen(value: str, option: str = "--listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT", param_hint=option)
    return host.strip("[]") or "127.0.0.1", int(port)


def _pick(explicit: Path | None, pki: Path | None, name: str, option: str) -> Path:
    if explicit is not None:
        return explicit
    if pki is None:
        raise click.UsageError(f"give {option} or --pki")
    return pki / name


_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--kme-id", required=True, help="This KME's ID.")
@click.option("--end", type=click.Choice(["A", "B"]), required=True, help="Link end served.")
@click.option("--peer-id", required=True, help="The peer KME's ID (its certificate must say so).")
@click.option("--peer", "peer_url", required=True, help="The peer KME's base URL (https://...).")
@click.option("--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT.")
@click.option(
    "--pki",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory written by `qkd-kme certs`; supplies the TLS files not given explicitly.",
)
@click.option("--cert", type=_FILE, help="TLS server certificate.")
@click.option("--key", type=_FILE, help="TLS server private key.")
@click.option("--client-cert", type=_FILE, help="Certificate presented to the peer KME.")
@click.option("--client-key", type=_FILE, help="Private key for --client-cert.")
@click.option("--ca", type=_FILE, help="CA that issued every KME and SAE certificate.")
@click.option("--sae", "sae_ids", multiple=True, help="SAE attached to this KME (default: any).")
@click.option("--key-size", default=256, show_default=True, help="Default key size in bits.")
@click.option("--min-key-size", default=64, show_default=True)
@click.option("--max-key-size", default=65_536, show_default=True)
@click.option("--max-keys-per-request", default=128, show_default=True)
@click.option("--max-sae-id-count", default=4, show_default=True)
@click.option("--buffer-bits", default=1_000_000, show_default=True, help="Key buffer capacity.")
@click.option(
    "--link-listen",
    help="End A: HOST:PORT where the peer KME's link end connects (runs the simulated link).",
)
@click.option("--link-peer", help="End B: HOST:PORT of end A's --link-listen.")
@click.option(
    "--auth-key-file",
    type=_FILE,
    help="Pre-shared Wegman-Carter key, the same file at both ends (`qkd-kme auth-key`).",
)
@click.option(
    "--link-preset",
    type=click.Choice(["lab", "bristol"]),
    default="lab",
    show_default=True,
    help="Simulated link (bristol needs ~3e9 pulses per block for any finite-size key).",
)
@click.option("--pulses-per-block", default=2_000_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--rate-multiplier",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Run the link this many times faster than real time (tests, demos).",
)
@click.option(
    "--eavesdropper",
    help="intercept-resend:FRACTION on the simulated fibre (end A; tests and demos).",
)
@click.option("--log-level", default="info", show_default=True)
def serve(
    data_dir: Path,
    kme_id: str,
    end: str,
    peer_id: str,
    peer_url: str,
    listen: str,
    pki: Path | None,
    cert: Path | None,
    key: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    ca: Path | None,
    sae_ids: tuple[str, ...],
    key_size: int,
    min_key_size: int,
    max_key_size: int,
    max_keys_per_request: int,
    max_sae_id_count: int,
    buffer_bits: int,
    link_listen: str | None,
    link_peer: str | None,
    auth_key_file: Path | None,
    link_preset: str,
    pulses_per_block: int,
    rate_multiplier: float,
    eavesdropper: str | None,
    log_level: str,
) -> None:
    """Serve ETSI GS QKD 014 over mutual TLS for one end of a QKD link.

    With --link-listen (end A) or --link-peer (end B) the KME fills its key buffer from a
    simulated QKD link and its post-processing, run with the peer KME; without either it
    serves only key already in its buffer.
    """
    from qkd_channel.kme.config import KeyLimits, KMEConfig, LinkEnd, TLSFiles
    from qkd_channel.kme.server import serve as run_server

    host, port = _split_listen(listen)
    tls = TLSFiles(
        server_cert=_pick(cert, pki, f"kme-{kme_id}.crt", "--cert"),
        server_key=_pick(key, pki, f"kme-{kme_id}.key", "--key"),
        client_cert=_pick(client_cert, pki, f"kme-{kme_id}-client.crt", "--client-cert"),
        client_key=_pick(client_key, pki, f"kme-{kme_id}-client.key", "--client-key"),
        ca=_pick(ca, pki, "ca.crt", "--ca"),
    )
    try:
        config = KMEConfig(
            kme_id=kme_id,
            end=LinkEnd(end),
            peer_kme_id=peer_id,
            peer_url=peer_url,
            data_dir=data_dir,
            tls=tls,
            limits=KeyLimits(
                key_size=key_size,
                min_key_size=min_key_size,
                max_key_size=max_key_size,
                max_key_per_request=max_keys_per_request,
                max_sae_id_count=max_sae_id_count,
                buffer_bits=buffer_bits,
            ),
            sae_ids=frozenset(sae_ids) if sae_ids else None,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    source = None
    if link_listen is not None or link_peer is not None:
        source = _link_source(
            config,
            link_listen=link_listen,
            link_peer=link_peer,
            auth_key_file=auth_key_file,
            link_preset=link_preset,
            pulses_per_block=pulses_per_block,
            rate_multiplier=rate_multiplier,
            eavesdropper=eavesdropper,
        )
    run_server(config, host=host, port=port, log_level=log_level, source=source)


def _link_source(
    config: KMEConfig,
    *,
    link_listen: str | None,
    link_peer: str | None,
    auth_key_file: Path | None,
    link_preset: str,
    pulses_per_block: int,
    rate_multiplier: float,
    eavesdropper: str | None,
) -> SimulatedLinkSource:
    """The ``serve`` options that describe the link, checked and turned into its source."""
    from qkd_channel.kme.config import LinkEnd
    from qkd_channel.kme.link_source import (
        LINK_PRESETS,
        LinkSettings,
        SimulatedLinkSource,
        read_auth_key,
    )
    from qkd_channel.kme.tls import client_ssl_context, server_ssl_context
    from qkd_channel.link import InterceptResend

    if auth_key_file is None:
        raise click.UsageError("the link needs --auth-key-file")
    spy = None
    if eavesdropper is not None:
        kind, _, fraction = eavesdropper.partition(":")
        try:
            if kind != "intercept-resend":
                raise ValueError(kind)
            spy = InterceptResend(float(fraction))
        except ValueError as exc:
            raise click.BadParameter(
                "expected intercept-resend:FRACTION", param_hint="--eavesdropper"
            ) from exc
    try:
        settings = LinkSettings(
            LINK_PRESETS[link_preset], pulses_per_block, rate_multiplier, eavesdropper=spy
        )
        auth_key = read_auth_key(auth_key_file)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--auth-key-file") from exc
    tls = config.tls
    auth_state = config.data_dir / "link-auth.state"
    try:
        if config.end is LinkEnd.A:
            if link_listen is None or link_peer is not None:
                raise click.UsageError("link end A takes --link-listen (and no --link-peer)")
            return SimulatedLinkSource(
                config.end,
                settings,
                auth_key,
                listen=_split_listen(link_listen, "--link-listen"),
                ssl_context=server_ssl_context(tls.server_cert, tls.server_key, tls.ca),
                auth_state=auth_state,
            )
        if link_peer is None or link_listen is not None:
            raise click.UsageError("link end B takes --link-peer (and no --link-listen)")
        peer = _split_listen(link_peer, "--link-peer")
        return SimulatedLinkSource(
            config.end,
            settings,
            auth_key,
            peer=peer,
            ssl_context=client_ssl_context(tls.client_cert, tls.client_key, tls.ca),
            server_hostname=peer[0],
            auth_state=auth_state,
        )
    except ChannelError as exc:  # the saved authentication pool refuses this key
        raise click.ClickException(str(exc)) from exc


@main.command("auth-key")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--size",
    default=4096,
    show_default=True,
    type=click.IntRange(64),
    help="Bytes (a multiple of 64); each abandoned block spends 128.",
)
def auth_key(out: Path, size: int) -> None:
    """Write a fresh pre-shared link authentication key (mode 0600); copy it to both ends."""
    if size % 64:
        raise click.BadParameter("must be a multiple of 64", param_hint="--size")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise click.ClickException(f"{out} exists; not overwriting a shared key") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(size))
    click.echo(str(out))


@main.command()
@click.argument("slave_sae_id")
@click.option("--url", required=True, help="The KME's base URL (https://...).")
@click.option("--cert", type=_FILE, required=True, help="The calling SAE's certificate.")
@click.option("--key", type=_FILE, required=True, help="The calling SAE's private key.")
@click.option("--ca", type=_FILE, required=True, help="CA of the KME's certificate.")
def status(slave_sae_id: str, url: str, cert: Path, key: Path, ca: Path) -> None:
    """Print the ETSI GS QKD 014 Status for keys shared with SLAVE_SAE_ID, as JSON."""
    from qkd_channel.errors import KMEError
    from qkd_channel.kme.client import KMEClient

    try:
        with KMEClient(url, cert=cert, key=key, ca=ca) as client:
            answer = client.status(slave_sae_id)
    except KMEError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(asdict(answer), indent=2))


apply_env_rule(main, "QKD_KME")  # every command is defined: give each option its variable
