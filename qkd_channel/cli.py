"""``qkd-kme``: run a key management entity of a simulated QKD link.

Every option can also be given as an environment variable ``QKD_KME_<COMMAND>_<OPTION>``
(for example ``QKD_KME_SERVE_DATA_DIR``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import click

__all__ = ["main"]


@click.group(context_settings={"auto_envvar_prefix": "QKD_KME"})
def main() -> None:
    """Key management entity (ETSI GS QKD 014) for one end of a simulated QKD link."""


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


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
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
    log_level: str,
) -> None:
    """Serve ETSI GS QKD 014 over mutual TLS for one end of a QKD link."""
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
    run_server(config, host=host, port=port, log_level=log_level)


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
