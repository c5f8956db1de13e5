"""The device SDK's public surface is deliberate, and importing part of it stays light."""

from __future__ import annotations

import subprocess
import sys

import qkd_device


def test_every_exported_name_resolves_and_nothing_else_is_exported() -> None:
    assert sorted(qkd_device.__all__) == sorted(qkd_device._HOMES)
    assert sorted(dir(qkd_device)) == sorted(qkd_device.__all__)
    for name in qkd_device.__all__:
        assert getattr(qkd_device, name) is not None


def test_the_record_functions_load_without_the_clients_or_urllib3() -> None:
    probe = (
        "import sys, qkd_device.records\n"
        "print(sorted(m for m in ('urllib3', 'qkd_device.client', 'filelock', 'paho')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
