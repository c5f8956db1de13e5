"""The signer keystore: encrypted at rest, 0600, never overwritten, password never echoed."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from notary.chain import create_keystore, load_signer, read_password
from notary.chain.keystore import PASSWORD_ENV
from notary.errors import KeystoreError

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keys") / "notary.json"
    return path, create_keystore(path, PASSWORD)


def test_keystore_round_trips_to_the_same_address(keystore: tuple[Path, str]) -> None:
    path, address = keystore
    assert load_signer(path, PASSWORD).address == address


def test_keystore_is_private_and_holds_no_plaintext_key(keystore: tuple[Path, str]) -> None:
    path, _ = keystore
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    key = load_signer(path, PASSWORD).key.hex()
    assert key not in path.read_text()
    assert document["crypto"]["kdf"] == "scrypt"


def test_wrong_password_is_refused_without_echoing_it(keystore: tuple[Path, str]) -> None:
    path, _ = keystore
    with pytest.raises(KeystoreError, match="does not open") as refused:
        load_signer(path, "hunter2")
    assert "hunter2" not in str(refused.value)


def test_existing_keystore_is_never_overwritten(keystore: tuple[Path, str]) -> None:
    path, address = keystore
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        create_keystore(path, PASSWORD)
    assert load_signer(path, PASSWORD).address == address


@pytest.mark.parametrize("content", ["not json", '{"crypto": {}}', ""])
def test_malformed_keystore_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(KeystoreError):
        load_signer(path, PASSWORD)


def test_empty_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError):
        create_keystore(tmp_path / "k.json", "")
    assert not (tmp_path / "k.json").exists()


def test_password_from_file_wins_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    assert read_password(password_file=secret) == "from-file"
    assert read_password() == "from-env"
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(KeystoreError, match=PASSWORD_ENV):
        read_password()
    with pytest.raises(KeystoreError, match="cannot read"):
        read_password(password_file=tmp_path / "missing")
