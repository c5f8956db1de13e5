"""``qkd-notary keystore`` and ``qkd-notary chain`` on the embedded chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from notary.chain import ChainClient, ChainSettings, Role, load_signer
from notary.cli import main

PASSWORD = "cli test password"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def test_keystore_new_then_address(tmp_path: Path, password_file: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data"), "--password-file", str(password_file)]
    created = runner.invoke(main, ["keystore", "new", *data])
    assert created.exit_code == 0, created.output
    address = created.output.split()[0]
    keystore = tmp_path / "data" / "keystore.json"
    assert load_signer(keystore, PASSWORD).address == address
    shown = runner.invoke(main, ["keystore", "address", *data, "--check-password"])
    assert shown.output.strip() == address
    again = runner.invoke(main, ["keystore", "new", *data])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_keystore_wrong_password_is_one_clean_line(tmp_path: Path, password_file: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    runner.invoke(main, ["keystore", "new", *data, "--password-file", str(password_file)])
    wrong = tmp_path / "wrong"
    wrong.write_text("not it")
    result = runner.invoke(
        main, ["keystore", "address", *data, "--check-password", "--password-file", str(wrong)]
    )
    assert result.exit_code == 1
    assert "does not open" in result.output and "not it" not in result.output
    assert "Traceback" not in result.output


def test_chain_info_and_role_management(tmp_path: Path, password_file: Path) -> None:
    runner = CliRunner()
    data_dir = tmp_path / "data"
    flags = ["--data-dir", str(data_dir), "--password-file", str(password_file)]
    assert runner.invoke(main, ["keystore", "new", *flags]).exit_code == 0
    signer = load_signer(data_dir / "keystore.json", PASSWORD)
    ChainClient.open(ChainSettings(data_dir=data_dir), signer).close()  # deploy

    shown = runner.invoke(main, ["chain", "info", *flags])
    assert shown.exit_code == 0, shown.output
    assert "ID 424242" in shown.output and "(admin, operator, notary)" in shown.output

    other = Account.create().address
    granted = runner.invoke(main, ["chain", "grant-role", "notary", other, *flags])
    assert granted.exit_code == 0, granted.output
    assert granted.output.count("granted notary") == 2  # registry and notary contracts
    with ChainClient.open(ChainSettings(data_dir=data_dir), signer) as client:
        assert client.has_role(Role.NOTARY, other)
    revoked = runner.invoke(main, ["chain", "revoke-role", "notary", other, *flags])
    assert revoked.exit_code == 0, revoked.output
    with ChainClient.open(ChainSettings(data_dir=data_dir), signer) as client:
        assert not client.has_role(Role.NOTARY, other)


def test_chain_info_without_deployment_refuses_cleanly(tmp_path: Path, password_file: Path) -> None:
    runner = CliRunner()
    flags = ["--data-dir", str(tmp_path), "--password-file", str(password_file)]
    runner.invoke(main, ["keystore", "new", *flags])
    result = runner.invoke(main, ["chain", "info", *flags])
    assert result.exit_code == 1 and "ChainMisconfigured" in result.output
