"""The notary's signing key, kept in an encrypted JSON keystore (Web3 Secret Storage v3).

The key is generated from the OS CSPRNG, encrypted with scrypt + AES-128-CTR by
eth-account, and written with mode 0600; it never leaves this module unencrypted except as
the ``LocalAccount`` that signs. The password comes from a file or an environment variable
(never a command-line argument, which ``ps`` would show) and is never logged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from notary.errors import KeystoreError

__all__ = ["PASSWORD_ENV", "create_keystore", "load_signer", "read_password"]

#: Environment variable holding the keystore password when no password file is given.
PASSWORD_ENV = "QKD_NOTARY_KEYSTORE_PASSWORD"


def read_password(*, password_file: Path | None = None, env: str = PASSWORD_ENV) -> str:
    """The keystore password from ``password_file`` (trailing newline dropped) or ``env``."""
    if password_file is not None:
        try:
            password = password_file.read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"cannot read the password file {password_file}") from exc
    else:
        password = os.environ.get(env, "")
    if not password:
        raise KeystoreError(f"no keystore password: give a password file or set {env}")
    return password


def create_keystore(path: Path, password: str) -> str:
    """Generate a key, write it encrypted to ``path`` (never overwriting); return its address."""
    if not password:
        raise KeystoreError("refusing to encrypt a keystore with an empty password")
    account = Account.create()
    document = Account.encrypt(account.key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeystoreError(f"{path} already exists; refusing to overwrite a keystore") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
        handle.write("\n")
    return str(account.address)


def load_signer(path: Path, password: str) -> LocalAccount:
    """Decrypt the keystore at ``path``; a wrong password raises KeystoreError."""
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"cannot read the keystore {path}") from exc
    try:
        key = Account.decrypt(document, password)
    except (ValueError, KeyError, TypeError) as exc:
        # eth-account says "MAC mismatch" for a wrong password; say it plainly.
        raise KeystoreError(f"the password does not open the keystore {path}") from exc
    account: LocalAccount = Account.from_key(key)
    return account
