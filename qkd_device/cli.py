"""``qkd-device``: send a test reading, look at a device's keys and queue, as curl would.

A firmware engineer tests a device end to end with this alone: ``send`` seals one reading
with fresh QKD keys from the device's KME and delivers it to the notary (HTTP or MQTT);
``keys status`` asks the KME for the key stock the device shares with the notary;
``queue show|flush`` inspects and delivers what a device left queued.

Every option is also an environment variable: ``QKD_DEVICE_`` and the option's name in
capitals with ``_`` for ``-`` (``--kme`` is ``QKD_DEVICE_KME``), except ``--device``, which
is ``QKD_DEVICE_ID``. A flag wins over the variable.

Only ``argparse`` is imported up front; each command imports the SDK when it runs, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qkd_device import DeliveryReceipt, DeviceClient, KMEClient, Receipt
    from qkd_device.transport import Transport

__all__ = ["ExitCode", "main"]

_ENV_PREFIX = "QKD_DEVICE_"


class ExitCode(enum.IntEnum):
    """Exit statuses of ``qkd-device`` (docs/sdk.md lists them too)."""

    OK = 0  #: done: delivered, shown, flushed
    REFUSED = 1  #: the notary refused the envelope for good (kept in the queue's rejected/)
    USAGE = 2  #: bad command line, reading or file
    NO_KEYS = 4  #: the KME issued no keys (down, out of stock, refused); nothing was sealed
    PENDING = 5  #: sealed and queued, not delivered yet (notary unreachable); flush later
    QUEUE = 6  #: the queue directory is unusable (in use, another device's, corrupt)
    NOT_ANCHORED = 7  #: --wait-anchored ran out of time; the record may still be anchored
    MISMATCH = 8  #: the notary's receipt does not commit to what this device sent
    INTERRUPTED = 130  #: Ctrl-C; whatever was sealed stays queued


class _Failure(Exception):
    def __init__(self, code: ExitCode, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.reason = reason


def _env_name(dest: str) -> str:
    return _ENV_PREFIX + ("ID" if dest == "device" else dest.upper())


def _option(
    parser: argparse.ArgumentParser, flag: str, help_text: str, *, required: bool = False, **kw: Any
) -> None:
    """``flag`` with its environment variable as default (checked for presence later)."""
    dest = flag.lstrip("-").replace("-", "_")
    env = _env_name(dest)
    default = kw.pop("default", None)
    default = os.environ.get(env) or default  # an empty variable counts as unset
    suffix = " (required)" if required else ""
    parser.add_argument(
        flag, dest=dest, default=default, help=f"{help_text} [env: {env}]{suffix}", **kw
    )
    parser.set_defaults(**{f"_required_{dest}": required})


def _kme_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "--kme", "the device's KME base URL (https://...)", required=True)
    _option(parser, "--cert", "the device SAE's client certificate (PEM)", required=True)
    _option(parser, "--key", "the device SAE's private key (PEM)", required=True)
    _option(parser, "--ca", "the CA that issued the KME's certificate", required=True)
    _option(parser, "--notary-sae", "the notary's SAE ID at the KME", default="notary")
    _option(parser, "--timeout", "seconds to keep trying", default="30", type=float)


def _delivery_options(parser: argparse.ArgumentParser, *, reading: bool) -> None:
    _option(parser, "--device", "device ID, as registered at the notary", required=True)
    _kme_options(parser)
    _option(
        parser,
        "--notary",
        "notary URL: http(s)://host:port, or mqtt(s)://host:port for its MQTT intake",
        required=True,
    )
    _option(parser, "--notary-id", "the notary's ID (an envelope's recipient)", default="notary")
    _option(parser, "--notary-ca", "CA bundle for an https:// or mqtts:// notary")
    _option(parser, "--receipts-url", "with mqtt://: the notary's HTTP URL for receipts")
    _option(parser, "--queue", "queue directory [default: ~/.local/state/qkd-device/ID]")
    if reading:
        parser.add_argument("reading", nargs="?", help="a JSON object; '-' or none: stdin")
        _option(parser, "--firmware-digest", "SHA-256 of the running firmware, 64 hex")
        _option(parser, "--firmware", "firmware image to hash instead of --firmware-digest")
        _option(parser, "--mode", "envelope mode", default="otp", choices=("otp", "aead", "hybrid"))
        _option(
            parser,
            "--notary-kem-key",
            "hybrid: the notary's ML-KEM-768 public key (PEM) to pin; check its fingerprint",
        )
        _option(parser, "--first-sequence", "sequence of a new queue's first envelope", type=int)
        _option(parser, "--wait-anchored", "then wait this long for anchoring", type=float)
        parser.add_argument(
            "--show-salt", action="store_true", help="print the record's secret salt too"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkd-device",
        description="Send QKD-sealed telemetry to a qkd-notary and inspect a device's state.",
        epilog="Exit codes: "
        + ", ".join(f"{c.value} {c.name.lower().replace('_', '-')}" for c in ExitCode),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    send = commands.add_parser("send", help="seal one reading and deliver it")
    _delivery_options(send, reading=True)
    send.set_defaults(run=_send)
    keys = commands.add_parser("keys", help="the device's QKD keys").add_subparsers(
        dest="keys_command", metavar="SUBCOMMAND", required=True
    )
    status = keys.add_parser("status", help="key stock shared with the notary (ETSI Status)")
    _kme_options(status)
    status.set_defaults(run=_keys_status)
    queue = commands.add_parser("queue", help="the device's send queue").add_subparsers(
        dest="queue_command", metavar="SUBCOMMAND", required=True
    )
    show = queue.add_parser("show", help="pending and refused envelopes (no secrets)")
    _option(show, "--device", "device ID", required=True)
    _option(show, "--queue", "queue directory [default: ~/.local/state/qkd-device/ID]")
    show.set_defaults(run=_queue_show)
    flush = queue.add_parser("flush", help="deliver every pending envelope, oldest first")
    _delivery_options(flush, reading=False)
    flush.set_defaults(run=_queue_flush)
    return parser


def _check_required(args: argparse.Namespace) -> None:
    missing = [
        f"--{dest.replace('_', '-')} ({_env_name(dest)})"
        for name, required in vars(args).items()
        if required and (dest := name.removeprefix("_required_")) != name
        if getattr(args, dest) is None
    ]
    if missing:
        raise _Failure(ExitCode.USAGE, "usage", f"missing: {', '.join(missing)}")


# --- commands ---------------------------------------------------------------------------


def _queue_dir(args: argparse.Namespace) -> Path:
    if args.queue:
        return Path(args.queue)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "qkd-device" / str(args.device)


def _kme(args: argparse.Namespace) -> KMEClient:
    from qkd_device import KMEClient

    for option in ("cert", "key", "ca"):
        if not Path(getattr(args, option)).is_file():
            raise _Failure(ExitCode.USAGE, "usage", f"--{option}: no such file")
    return KMEClient(args.kme, cert=args.cert, key=args.key, ca=args.ca, timeout=args.timeout)


def _transport(args: argparse.Namespace) -> Transport:
    from urllib.parse import urlsplit

    from qkd_channel.httpio import tls_context
    from qkd_device import HTTPTransport, MQTTTransport

    url = urlsplit(args.notary)
    verify = args.notary_ca or True
    if url.scheme in ("http", "https"):
        return HTTPTransport(args.notary, timeout_s=args.timeout, verify=verify)
    if url.scheme in ("mqtt", "mqtts") and url.hostname:
        return MQTTTransport(
            args.device,
            host=url.hostname,
            port=url.port or (8883 if url.scheme == "mqtts" else 1883),
            answer_timeout_s=args.timeout,
            receipts_url=args.receipts_url,
            tls=tls_context(verify) if url.scheme == "mqtts" else None,
            receipts_tls=tls_context(verify),
        )
    raise _Failure(
        ExitCode.USAGE, "usage", f"--notary: not an http(s) or mqtt(s) URL: {args.notary}"
    )


def _client(args: argparse.Namespace, **extra: Any) -> DeviceClient:
    from qkd_device import DeviceClient, RetryPolicy

    return DeviceClient(
        args.device,
        kme=_kme(args),
        notary=_transport(args),
        queue_dir=_queue_dir(args),
        notary_id=args.notary_id,
        notary_sae_id=args.notary_sae,
        retry=RetryPolicy(deadline_s=args.timeout),
        **extra,
    )


def _reading(args: argparse.Namespace) -> dict[str, Any]:
    if args.reading in (None, "-"):
        if sys.stdin is None or sys.stdin.isatty():
            raise _Failure(ExitCode.USAGE, "usage", "give a reading, or pipe one on stdin")
        text = sys.stdin.read()
    else:
        text = args.reading
    try:
        reading = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise _Failure(ExitCode.USAGE, "bad-reading", f"the reading is not JSON: {exc}") from None
    if not isinstance(reading, dict):
        raise _Failure(ExitCode.USAGE, "bad-reading", "the reading must be a JSON object")
    return reading


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not standard JSON")


def _firmware_digest(args: argparse.Namespace) -> str:
    if args.firmware:
        import hashlib

        with open(args.firmware, "rb") as image:
            return hashlib.file_digest(image, "sha256").hexdigest()
    if not args.firmware_digest:
        raise _Failure(ExitCode.USAGE, "usage", "--firmware-digest or --firmware is required")
    return str(args.firmware_digest).lower()


def _delivery(ack: DeliveryReceipt, *, show_salt: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "record_id": ack.record_id,
        "device_id": ack.device_id,
        "sequence": ack.sequence,
        "mode": ack.mode.value,
        "device_trusted": ack.device_trusted,
        "attestation": ack.attestation,
        "resent": ack.resent,
        "payload_hash": ack.payload_hash,
    }
    if show_salt and ack.salt is not None:
        out["salt"] = "0x" + ack.salt.hex()
    return out


def _send(args: argparse.Namespace) -> dict[str, Any]:
    reading, digest = _reading(args), _firmware_digest(args)
    extra: dict[str, Any] = {"firmware_digest": digest, "mode": args.mode}
    if args.first_sequence is not None:
        extra["first_sequence"] = args.first_sequence
    if args.mode == "hybrid":
        if not args.notary_kem_key:
            raise _Failure(ExitCode.USAGE, "usage", "--mode hybrid needs --notary-kem-key")
        from qkd_device import KEMPublicKey

        extra["notary_kem_key"] = KEMPublicKey.load(args.notary_kem_key)
    with _client(args, **extra) as device:
        ack = device.send(reading)
        out = _delivery(ack, show_salt=args.show_salt)
        out["key_delivery"] = device.key_delivery
        if args.wait_anchored is not None:
            out["receipt"] = _anchored(device.wait_anchored(ack, timeout=args.wait_anchored))
    return out


def _anchored(receipt: Receipt) -> dict[str, Any]:
    anchor = receipt.anchor or {}
    return {
        "status": receipt.status,
        "version": receipt.version,
        "tx_hash": anchor.get("tx_hash"),
        "block_number": anchor.get("block_number"),
        "payload_hash_matches": True,  # wait_anchored raised ReceiptMismatch otherwise
    }


def _keys_status(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    with _kme(args) as kme:
        return asdict(kme.status(args.notary_sae))


def _queue_show(args: argparse.Namespace) -> dict[str, Any]:
    from qkd_device import SendQueue

    directory = _queue_dir(args)
    if not (directory / "state.json").is_file():
        raise _Failure(ExitCode.QUEUE, "queue-error", f"no queue in {directory}")
    queue = SendQueue(directory, device_id=args.device)
    try:
        pending = [
            {
                "sequence": item.sequence,
                "record_id": item.record_id,
                "mode": item.envelope.mode.value,
                "bytes": len(item.body()),
                "resealed_from": item.origin,
            }
            for item in queue.pending()
        ]
        rejected = [
            {
                "sequence": entry.get("envelope", {}).get("seq"),
                "record_id": entry["record_id"],
                "status": entry["answer"].get("status"),
                "reason": entry["answer"].get("reason"),
            }
            for entry in queue.rejected()
        ]
        return {
            "queue": str(directory),
            "next_sequence": queue.next_sequence,
            "pending": pending,
            "rejected": rejected,
        }
    finally:
        queue.close()


def _queue_flush(args: argparse.Namespace) -> dict[str, Any]:
    if not (_queue_dir(args) / "state.json").is_file():
        raise _Failure(ExitCode.QUEUE, "queue-error", f"no queue in {_queue_dir(args)}")
    # flush never builds a document: the digest only satisfies the client's check.
    with _client(args, firmware_digest="0" * 64) as device:
        delivered = device.flush()
    return {"delivered": [_delivery(ack, show_salt=False) for ack in delivered]}


# --- output and errors ------------------------------------------------------------------


def _human(result: dict[str, Any]) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, list):
            lines.append(f"{key}: {len(value)}")
            lines += [f"  {json.dumps(item, separators=(', ', ': '))}" for item in value]
        elif isinstance(value, dict):
            lines += [f"{key}.{k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def _failure(exc: Exception) -> _Failure | None:
    """The exit code, reason and one-line message for an error a command raised, or
    ``None`` for anything else (a bug, which keeps its traceback)."""
    from qkd_channel.errors import EnvelopeRejected, KEMKeyError, KMEError, QKDError
    from qkd_device import errors

    table: list[tuple[type[BaseException], ExitCode]] = [
        (errors.DeliveryRejected, ExitCode.REFUSED),
        (errors.DeliveryPending, ExitCode.PENDING),
        (errors.KeysUnobtainable, ExitCode.NO_KEYS),
        (KMEError, ExitCode.NO_KEYS),
        (errors.QueueError, ExitCode.QUEUE),
        (errors.AnchorTimeout, ExitCode.NOT_ANCHORED),
        (errors.ReceiptMismatch, ExitCode.MISMATCH),
        (errors.DeviceError, ExitCode.REFUSED),
        (EnvelopeRejected, ExitCode.REFUSED),
        (KEMKeyError, ExitCode.USAGE),  # --notary-kem-key missing or not an ML-KEM key
        (QKDError, ExitCode.REFUSED),
        (OSError, ExitCode.USAGE),  # unreadable certificate, firmware file, queue folder
        (ValueError, ExitCode.USAGE),  # bad digest, bad URL, reading the notary refuses
        (TypeError, ExitCode.USAGE),
    ]
    code = next((code for kind, code in table if isinstance(exc, kind)), None)
    if code is None:
        return None
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return _Failure(code, str(reason), f"{type(exc).__name__}: {exc}")


def _report(failure: _Failure, *, as_json: bool) -> int:
    if as_json:
        error = {"error": failure.reason, "detail": str(failure), "exit_code": int(failure.code)}
        print(json.dumps(error))
    else:
        print(f"qkd-device: {failure}", file=sys.stderr)
    return int(failure.code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console script entry point; exits with an :class:`ExitCode`."""
    raise SystemExit(_main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"qkd-device {version('qkd-notary')}")
        return ExitCode.OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    run: Callable[[argparse.Namespace], dict[str, Any]] = args.run
    try:
        _check_required(args)
        result = run(args)
    except KeyboardInterrupt:
        return _report(
            _Failure(
                ExitCode.INTERRUPTED, "interrupted", "interrupted; sealed envelopes stay queued"
            ),
            as_json=args.json,
        )
    except _Failure as failure:
        return _report(failure, as_json=args.json)
    except Exception as exc:
        mapped = _failure(exc)
        if mapped is None:
            raise
        return _report(mapped, as_json=args.json)
    print(json.dumps(result) if args.json else _human(result))
    return ExitCode.OK
