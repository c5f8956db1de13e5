"""What every ``qkd-notary`` command shares: user-error handling, settings flags, admin HTTP.

User errors (bad flags, a refused request, a missing keystore, an unreachable node) end in
one clear line on stderr and a non-zero exit, never a traceback. Settings flags are
generated from :class:`~notary.config.NotarySettings`, so ``--kme-url`` and
``QKD_NOTARY_KME_URL`` always mean the same thing and cannot drift apart.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from eth_account.signers.local import LocalAccount
from pydantic import ValidationError

from notary.chain.client import ChainClient
from notary.chain.keystore import PASSWORD_ENV, load_signer, read_password
from notary.chain.settings import ChainSettings
from notary.config import ADMIN_TOKEN_FILE, NotarySettings
from notary.errors import NotaryError
from qkd_channel.errors import QKDError

__all__ = [
    "KEYSTORE_FILE",
    "AdminAPI",
    "admin_connection",
    "chain_settings",
    "load_service_signer",
    "open_chain",
    "password_file_option",
    "settings_from",
    "settings_options",
    "user_errors",
]

#: The notary's signing keystore inside the data directory.
KEYSTORE_FILE = "keystore.json"

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn the project's exceptions into ``click`` errors (exit 1, one line, no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (NotaryError, QKDError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise click.ClickException(f"invalid settings: {problems}") from None
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the notary: {exc}") from None
        except (OSError, ValueError) as exc:  # unreadable files, inconsistent settings
            raise click.ClickException(str(exc)) from None

    return typing.cast(F, wrapper)


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """Click parameter type for a settings field, and whether it is a boolean flag."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        return bool, True
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return click.Choice([m.value for m in annotation]), False
    if annotation is Path:
        return click.Path(path_type=Path), False
    if annotation in (int, float, str):
        return annotation, False
    return str, False


def settings_options(exclude: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Add one ``--flag`` per ``NotarySettings`` field (env ``QKD_NOTARY_<FIELD>``)."""

    def decorate(func: F) -> F:
        for name, info in reversed(list(NotarySettings.model_fields.items())):
            if name in exclude:
                continue
            flag = name.replace("_", "-")
            kind, is_flag = _click_type(info.annotation)
            help_text = info.description or name.replace("_", " ")
            if is_flag:
                option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=help_text)
            else:
                option = click.option(f"--{flag}", name, type=kind, default=None, help=help_text)
            func = option(func)
        return func

    return decorate


def settings_from(values: dict[str, Any]) -> NotarySettings:
    """Settings from the given flags; fields not given come from the environment/defaults."""
    given = {k: v for k, v in values.items() if k in NotarySettings.model_fields and v is not None}
    return NotarySettings(**given)


password_file_option = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"File holding the keystore password (else env {PASSWORD_ENV}).",
)


def admin_connection(func: F) -> F:
    """``--notary``, ``--data-dir``, ``--token-file`` and ``--json`` of admin commands."""
    func = click.option("--json", "as_json", is_flag=True, help="Print the notary's JSON answer.")(
        func
    )
    func = click.option(
        "--token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Admin token (default: <data-dir>/admin.token).",
    )(func)
    func = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default="notary-data",
        show_default=True,
    )(func)
    return click.option(
        "--notary",
        "url",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="The notary's base URL.",
    )(func)


class AdminAPI:
    """The notary's HTTP API as the operator's CLI uses it (admin token from the data dir)."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_data_dir(cls, url: str, data_dir: Path, token_file: Path | None) -> AdminAPI:
        path = token_file or data_dir / ADMIN_TOKEN_FILE
        try:
            token = path.read_text(encoding="ascii").strip()
        except OSError:
            raise click.ClickException(
                f"no admin token at {path}: run `qkd-notary init` or pass --token-file"
            ) from None
        return cls(url, token=token)

    def call(self, method: str, path: str, json: Any = None) -> Any:
        """Send a request; a problem answer becomes a one-line ``ClickException``."""
        response = self._http.request(method, path, json=json)
        if response.is_success:
            return response.json()
        try:
            problem = response.json()
            detail = f"{problem.get('title', '')}: {problem.get('detail', '')}"
            reason = problem.get("reason", "error")
        except ValueError:
            detail, reason = response.text[:200], "error"
        raise click.ClickException(f"notary answered {response.status_code} ({reason}) {detail}")

    def close(self) -> None:
        self._http.close()


def chain_settings(settings: NotarySettings, *, deploy: bool) -> ChainSettings:
    """The chain layer's settings for a notary configuration."""
    return ChainSettings(
        data_dir=settings.data_dir,
        rpc_url=settings.chain_rpc_url,
        confirmations=settings.confirmations,
        deploy=deploy,
    )


def load_service_signer(settings: NotarySettings, password_file: Path | None) -> LocalAccount:
    """Decrypt the data directory's keystore (the notary service's signing key)."""
    keystore = settings.data_dir / KEYSTORE_FILE
    if not keystore.is_file():
        raise click.ClickException(f"no keystore at {keystore}: run `qkd-notary init` first")
    return load_signer(keystore, read_password(password_file=password_file))


def open_chain(
    settings: NotarySettings, password_file: Path | None, *, deploy: bool
) -> ChainClient:
    """Decrypt the data directory's keystore and connect to (or deploy) the contracts."""
    signer = load_service_signer(settings, password_file)
    return ChainClient.open(chain_settings(settings, deploy=deploy), signer)
