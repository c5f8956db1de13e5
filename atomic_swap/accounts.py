"""Account files: one 25-word Algorand mnemonic per file, readable by its owner only.

A file any other user can read is refused rather than used: its key could already be
copied. New files are created with mode 0600 and never overwritten.
"""

from __future__ import annotations

# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from algosdk import account, mnemonic

from atomic_swap.errors import AccountFileError

__all__ = ["Account", "create_account_file", "load_account"]


@dataclass(frozen=True)
class Account:
    """An address and its signing key (never shown by ``repr``)."""

    address: str
    private_key: str = field(repr=False)


def load_account(path: Path) -> Account:
    """Read an account file, refusing files with group/other permissions."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AccountFileError(f"account file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AccountFileError(
            f"account file {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        key = str(mnemonic.to_private_key(path.read_text().strip()))
    except Exception as exc:  # algosdk raises several unrelated types for bad mnemonics
        raise AccountFileError(f"account file {path} does not hold a valid mnemonic") from exc
    return Account(address=str(account.address_from_private_key(key)), private_key=key)


def create_account_file(path: Path) -> Account:
    """Generate a key pair and store its mnemonic in a new 0600 file."""
    key, address = account.generate_account()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AccountFileError(f"{path} already exists; not overwriting a key") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(mnemonic.from_private_key(key) + "\n")
    return Account(address=str(address), private_key=str(key))
