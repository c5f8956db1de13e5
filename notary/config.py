"""Notary configuration: a data directory plus ``QKD_NOTARY_*`` environment variables.

Every field can be set as an environment variable with the same name in upper case and
the ``QKD_NOTARY_`` prefix (``QKD_NOTARY_ANCHOR_MODE=merkle``) or passed to the
constructor (the CLI maps its flags onto the same names). Defaults run everything on one
machine with no external service: SQLite in the data directory, the embedded chain.

The admin bearer token is never a setting: it lives in ``<data_dir>/admin.token`` (mode
0600), created on first use, so it cannot leak through ``ps`` or a process environment.

The ML-KEM-768 key of ``hybrid`` envelopes lives in ``<data_dir>/kem-mlkem768.key``
(PKCS#8 PEM, mode 0600, refused if anyone else can read it; ``kem_key_file`` points
elsewhere, e.g. at a secret shared by several instances), with its public half beside it
(``.pub``) for devices to pin. ``qkd-notary init`` creates the pair (:func:`create_kem_key`);
the service never does, so a lost key is an error, not a silent new key that every pinned
device would then fail against.
"""

from __future__ import annotations

import enum
import os
import secrets
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notary.partition import Partition
from qkd_channel.hybrid import KEMPrivateKey, KEMPublicKey, ensure_key_pair, public_key_path

__all__ = [
    "ADMIN_TOKEN_FILE",
    "KEM_KEY_FILE",
    "POSTGRES_SCHEMES",
    "AnchorMode",
    "NotarySettings",
    "create_kem_key",
    "load_kem_key",
    "load_or_create_admin_token",
]

ADMIN_TOKEN_FILE = "admin.token"
KEM_KEY_FILE = "kem-mlkem768.key"
#: URL schemes of PostgreSQL databases (passed to libpq as they are).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class AnchorMode(enum.StrEnum):
    """How the anchoring worker puts accepted records on-chain."""

    BATCH = "batch"  #: every record is written to ``TelemetryNotary.recordBatch``
    MERKLE = "merkle"  #: only the Merkle root of a batch is anchored; receipts carry proofs


class NotarySettings(BaseSettings):
    """Everything the service, the worker and the MQTT intake need to start."""

    # Inputs stay out of validation errors: a database URL may carry a password.
    model_config = SettingsConfigDict(
        env_prefix="QKD_NOTARY_", extra="forbid", hide_input_in_errors=True
    )

    data_dir: Path = Field(default=Path("notary-data"), description="State directory")
    notary_id: str = Field(
        default="notary", min_length=1, max_length=128, description="Envelope recipient ID"
    )
    database_url: str | None = Field(
        default=None,
        repr=False,  # a PostgreSQL URL may carry a password
        description="sqlite:///path or postgresql://user@host:port/db (password from "
        "PGPASSWORD or ~/.pgpass); default <data_dir>/notary.sqlite3",
    )
    # KME (ETSI GS QKD 014); the notary is the slave SAE, devices' SAEs are masters.
    kme_url: str | None = Field(default=None, description="Base URL of the notary's KME")
    kme_cert: Path | None = None
    kme_key: Path | None = None
    kme_ca: Path | None = None
    kme_timeout_s: float = Field(default=5.0, gt=0)
    kme_coalesce_ms: float = Field(
        default=2.0, ge=0, description="Window in which concurrent dec_keys calls are merged"
    )
    kme_max_keys_per_request: int = Field(default=128, ge=1)
    # Chain: embedded (persistent eth-tester in data_dir) unless an RPC URL is given.
    chain_rpc_url: str | None = None
    store_payload_on_chain: bool = False
    # Anchoring worker.
    anchor_mode: AnchorMode = AnchorMode.MERKLE
    batch_size: int = Field(default=64, ge=1, le=1024)
    batch_max_latency_s: float = Field(default=1.0, gt=0)
    confirmations: int = Field(
        default=1,
        ge=1,
        description="Blocks (its own included) before an anchoring is final: 1 on instant-"
        "finality chains (Besu QBFT, the embedded chain), more where blocks can be reorganised",
    )
    reconcile_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often anchored batches are re-checked against the chain",
    )
    kem_key_file: Path | None = Field(
        default=None,
        description="ML-KEM-768 private key of hybrid envelopes (PKCS#8 PEM, mode 0600); "
        f"default <data_dir>/{KEM_KEY_FILE}",
    )
    key_stock_warn_s: float = Field(
        default=900.0,
        gt=0,
        description="Warn (log, dashboard) when a device's key stock will run out sooner",
    )
    # Intake limits.
    max_envelope_bytes: int = Field(default=64 * 1024, ge=256)
    retry_after_s: int = Field(default=2, ge=1)
    aead_session_ttl_s: float = Field(default=3600.0, gt=0)
    # HTTP and MQTT.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    mqtt_host: str | None = None
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="MQTT client ID of this instance (its persistent session); default "
        "qkd-notary-<notary_id>. Must differ between instances sharing a broker.",
    )
    mqtt_partition: str | None = Field(
        default=None,
        description="k/n: this instance handles the MQTT messages of the devices in "
        "partition k of n (SHA-256 of the device ID mod n); the others are acknowledged "
        "and left to their instances. Unset: all devices.",
    )
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _payloads_need_batch_mode(self) -> NotarySettings:
        if self.store_payload_on_chain and self.anchor_mode is AnchorMode.MERKLE:
            raise ValueError("store_payload_on_chain needs anchor_mode=batch")
        return self

    @field_validator("mqtt_partition")
    @classmethod
    def _valid_partition(cls, value: str | None) -> str | None:
        if value is not None:
            Partition.parse(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", *POSTGRES_SCHEMES)):
            # The value itself is not repeated: it may contain a password.
            raise ValueError("must start with sqlite:///, postgresql:// or postgres://")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def sqlite_path(self) -> Path:
        """Path of the SQLite database (the default storage backend)."""
        if self.database_url is None:
            return self.data_dir / "notary.sqlite3"
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            raise ValueError("database_url names a PostgreSQL database, not a SQLite file")
        return Path(self.database_url[len(prefix) :])

    @property
    def uses_postgres(self) -> bool:
        """Whether the store is a (possibly shared) PostgreSQL database."""
        return self.database_url is not None and self.database_url.startswith(POSTGRES_SCHEMES)

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / ADMIN_TOKEN_FILE

    @property
    def kem_key_path(self) -> Path:
        return self.kem_key_file or self.data_dir / KEM_KEY_FILE

    @property
    def kem_public_key_path(self) -> Path:
        """The public half, PEM, beside the private key: what devices pin."""
        return public_key_path(self.kem_key_path)


def load_kem_key(settings: NotarySettings) -> KEMPrivateKey | None:
    """The notary's ML-KEM key, or ``None`` when there is none (then hybrid envelopes are
    refused). A file that exists but cannot be used raises ``KEMKeyError``."""
    if not settings.kem_key_path.exists():
        return None
    return KEMPrivateKey.load(settings.kem_key_path)


def create_kem_key(settings: NotarySettings) -> tuple[KEMPublicKey, bool]:
    """The notary's ML-KEM public key, the pair generated first if there is none (private
    key 0600, public key PEM beside it); ``True`` when it was generated now."""
    return ensure_key_pair(settings.kem_key_path)


def load_or_create_admin_token(data_dir: Path) -> str:
    """Return the admin bearer token, creating ``admin.token`` (0600) on first use."""
    path = data_dir / ADMIN_TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its token
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token
