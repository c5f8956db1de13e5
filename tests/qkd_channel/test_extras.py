"""Which extra a command needs: named in one line, before anything is imported."""

from __future__ import annotations

import pytest

from qkd_channel import extras


def test_a_missing_extra_is_named_with_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.EXTRAS, "chain", ("no_such_module_for_this_test",))
    with pytest.raises(extras.MissingExtra) as info:
        extras.require("qkd-notary", "server", "chain")
    assert info.value.extras == ["chain"]
    assert str(info.value) == (
        "qkd-notary needs the 'chain' extra of qkd-notary: pip install 'qkd-notary[chain]'"
    )


def test_launch_exits_3_instead_of_importing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(extras.EXTRAS, "sim", ("no_such_module_for_this_test",))
    with pytest.raises(SystemExit) as exited:
        extras.launch("qkd-kme", ("server", "sim"), "no_such_module:main")
    assert exited.value.code == extras.EXIT_MISSING_EXTRA == 3
    assert "pip install 'qkd-notary[sim]'" in capsys.readouterr().err


def test_every_extra_of_the_table_is_installed_here() -> None:
    extras.require("make test", *extras.EXTRAS)  # the dev install has [all]


def test_the_demo_names_the_sim_extra_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from notary.cli import main

    monkeypatch.setitem(extras.EXTRAS, "sim", ("no_such_module_for_this_test",))
    result = CliRunner().invoke(main, ["demo", "--devices", "1"])
    assert result.exit_code == extras.EXIT_MISSING_EXTRA
    assert "pip install 'qkd-notary[sim]'" in result.output
