"""A real PostgreSQL cluster for the tests (the ``postgresql`` package from apt).

One throw-away cluster per test session: ``initdb`` into a fresh directory under the
system temp dir, ``postgres`` listening on a free loopback port and on a Unix socket inside
that directory, stopped (``pg_ctl stop -m immediate``) and deleted at the end. Each test
gets its own database, so tests never see each other's rows.

PostgreSQL refuses to run as root. CI runs as root, so then the server binaries run as the
``postgres`` system user (created by the apt package) through ``runuser``, and the cluster
directory is handed to that user; otherwise they run as the current user.

Two roles exist: the bootstrap superuser ``notary_admin`` (trusted on the Unix socket
only, used to create databases) and ``notary_app``, a plain role that must present its
password over TCP (SCRAM), which is what a notary instance in production does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = ["PG_BIN", "PostgresServer"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "notary_admin"
APP_ROLE = "notary_app"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running test cluster; :meth:`create_database` hands out fresh databases."""

    root: Path
    port: int
    app_password: str = field(repr=False)
    _run_as: list[str] = field(default_factory=list)

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def admin_url(self, database: str = "postgres") -> str:
        """Superuser over the Unix socket (trust): for fixtures, never for a notary."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def app_url(self, database: str) -> str:
        """The application role over TCP with its password, as a deployment would use."""
        password = quote(self.app_password, safe="")
        return f"postgresql://{APP_ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database owned by the application role; returns its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {APP_ROLE} TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database for one test; yields the application role's URL to it."""
        name = self.create_database()
        try:
            yield self.app_url(name)
        finally:
            self.drop_database(name)

    @classmethod
    @contextlib.contextmanager
    def started(cls, *, timeout_s: float = 60.0) -> Iterator[PostgresServer]:
        """Initialise, start, yield, then stop the cluster and delete its directory."""
        initdb = PG_BIN / "initdb"
        assert initdb.exists(), "install PostgreSQL 15 (make system-deps)"
        root = Path(tempfile.mkdtemp(prefix="qkd-notary-pg-"))
        run_as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        server = cls(root, _free_port(), secrets.token_urlsafe(18), run_as)
        try:
            server._init()
            server._start(timeout_s)
            try:
                server._create_app_role()
                yield server
            finally:
                server._stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- plumbing ----------------------------------------------------------------------
    def _pg(self, tool: str, *args: str, timeout_s: float = 60.0) -> None:
        done = subprocess.run(
            [*self._run_as, str(PG_BIN / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")

    def _as_owner(self, path: Path) -> None:
        if self._run_as:
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)

    def _init(self) -> None:
        data = self.root / "data"
        self._pg(
            "initdb",
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        self.socket_dir.mkdir()
        self._as_owner(self.socket_dir)

    def _start(self, timeout_s: float) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
                # Sessions of a killed client end at once on loopback; keep the server's
                # own TCP keepalive short as a deployment should (see docs/storage.md).
                "-c tcp_keepalives_idle=5",
            ]
        )
        log = self.root / "postgres.log"
        self._pg(
            "pg_ctl",
            "start",
            "-D",
            str(self.root / "data"),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout_s)),
            timeout_s=timeout_s + 10,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.admin_url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _create_app_role(self) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(self.app_password)
                )
            )

    def _stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._pg("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "immediate", "-w")
