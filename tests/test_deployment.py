"""The deployment stack (docker/), checked without a docker engine.

What runs here: Debian's ``docker-compose config`` resolves and validates the compose
file; its output is checked for the promised shape; every flag and environment variable
handed to ``qkd-kme``/``qkd-notary`` is looked up in the real click commands and settings;
``nginx -t`` checks the proxy config and a real Mosquitto loads the broker config; and the
one-shot set-up and deployment scripts run for real outside a container, the latter
against anvil standing in for besu1. What cannot run here: building the image, starting
containers, Besu itself.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from notary.chain.keystore import PASSWORD_ENV
from notary.cli import main as notary_cli
from notary.config import NotarySettings
from notary.partition import Partition
from qkd_channel.cli import main as kme_cli
from tests.conftest import AnvilFactory, free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
SETUP_SH = DOCKER / "setup" / "setup.sh"
DEPLOY_SH = DOCKER / "setup" / "deploy.sh"
BIN = Path(sys.executable).parent

CLIS: dict[str, click.Command] = {"qkd-notary": notary_cli, "qkd-kme": kme_cli}
APP_SERVICES = {"setup", "contracts", "kme-a", "kme-b", "notary1", "notary2"}
ONE_SHOT = {"setup", "contracts"}
BESU = ["besu1", "besu2", "besu3", "besu4"]
#: Where each named volume is mounted in the app containers that run after `setup`.
IMAGE_ROOT = "/var/lib/qkd"
PASSWORDS = {
    "notary1_keystore_password": "first notary's keystore pass:1",
    "notary2_keystore_password": "second notary's keystore pass:2",
    "postgres_password": "pg:pass\\word",
}


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QKD_")}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr, result.stderr  # e.g. an unset variable
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def _services(config: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = config["services"]
    return services


def _mount(mount: str | dict[str, Any]) -> tuple[str, str]:
    """(source, target) of a volume entry in either compose syntax."""
    if isinstance(mount, dict):
        return str(mount["source"]), str(mount["target"])
    source, target = mount.split(":")[:2]
    return source, target


def _port(port: str | dict[str, Any]) -> tuple[str | None, int, int]:
    """(host IP, published, target) of a port entry in either compose syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), int(port["published"]), int(port["target"])
    *host, published, target = port.split("/")[0].split(":")
    return (host[0] if host else None), int(published), int(target)


def _flag(command: list[str], name: str) -> str | None:
    for token in command:
        if token.startswith(f"{name}="):
            return token.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------- compose shape


def test_compose_file_validates_quietly() -> None:
    result = _compose("config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_the_promised_services_exist(config: dict[str, Any]) -> None:
    assert set(_services(config)) == {
        *BESU,
        *APP_SERVICES,
        "postgres",
        "proxy",
        "mosquitto",
    }


def test_env_example_lists_every_knob_with_its_default(config: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    defaults = dict(re.findall(r"\$\{(QKD_\w+):-([^}]*)\}", text))
    example = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example == defaults
    result = _compose("--env-file", str(DOCKER / ".env.example"), "config")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == config


def test_four_qbft_validators_with_permissioning_and_static_addresses(
    config: dict[str, Any],
) -> None:
    services = _services(config)
    prefix = "172.16.239"
    nodes = services["setup"]["environment"]["BESU_NODES"].split()
    assert nodes == [f"{prefix}.{11 + i}" for i in range(4)]
    for i, name in enumerate(BESU):
        besu = services[name]
        command = besu["command"]
        for required in (
            "--data-path=/data",
            "--genesis-file=/data/genesis.json",
            "--min-gas-price=0",
            "--permissions-accounts-config-file-enabled=true",
            "--permissions-nodes-config-file-enabled=true",
            "--discovery-enabled=false",
        ):
            assert required in command, (name, required)
        address = besu["networks"]["chain"]["ipv4_address"]
        assert address == nodes[i] == _flag(command, "--p2p-host")
        assert [_mount(m) for m in besu["volumes"]] == [(f"{name}-data", "/data")]
        assert "ports" not in besu, f"{name} must not be published on the host"
        assert besu["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    subnet = config["networks"]["chain"]["ipam"]["config"][0]
    assert subnet["subnet"] == f"{prefix}.0/24"
    # Fixed validator addresses must lie outside the range Docker hands out dynamically.
    assert subnet["ip_range"] == f"{prefix}.128/25"


def test_only_besu1_serves_json_rpc_to_other_containers(config: dict[str, Any]) -> None:
    services = _services(config)
    assert _flag(services["besu1"]["command"], "--rpc-http-host") == "0.0.0.0"
    assert "besu1" in (_flag(services["besu1"]["command"], "--host-allowlist") or "").split(",")
    for name in BESU[1:]:
        assert _flag(services[name]["command"], "--rpc-http-host") == "127.0.0.1"
    rpc = {services[n]["environment"]["QKD_NOTARY_CHAIN_RPC_URL"] for n in ("notary1", "notary2")}
    rpc.add(services["contracts"]["environment"]["QKD_NOTARY_CHAIN_RPC_URL"])
    assert rpc == {"http://besu1:8545"}
    assert _flag(services["besu1"]["command"], "--rpc-http-port") == "8545"


def test_changing_the_chain_subnet_moves_every_address_together() -> None:
    result = _compose("config", env={"QKD_CHAIN_NET": "10.77.5"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    nodes = services["setup"]["environment"]["BESU_NODES"].split()
    for i, name in enumerate(BESU):
        assert services[name]["networks"]["chain"]["ipv4_address"] == nodes[i]
        assert _flag(services[name]["command"], "--p2p-host") == nodes[i] == f"10.77.5.{11 + i}"


def test_two_notaries_share_postgres_and_the_chain_but_not_keys(config: dict[str, Any]) -> None:
    services = _services(config)
    one, two = services["notary1"], services["notary2"]
    for key in (
        "QKD_NOTARY_DATABASE_URL",
        "QKD_NOTARY_CHAIN_RPC_URL",
        "QKD_NOTARY_NOTARY_ID",
        "QKD_NOTARY_KME_URL",
        "QKD_NOTARY_ANCHOR_MODE",
    ):
        assert one["environment"][key] == two["environment"][key], key
    url = urlsplit(one["environment"]["QKD_NOTARY_DATABASE_URL"])
    assert (url.scheme, url.hostname, url.port, url.path) == (
        "postgresql",
        "postgres",
        5432,
        "/notary",
    )
    assert url.password is None, "the password comes from PGPASSFILE, never the URL"
    assert url.username == services["postgres"]["environment"]["POSTGRES_USER"]
    assert url.path.lstrip("/") == services["postgres"]["environment"]["POSTGRES_DB"]
    assert one["environment"]["QKD_NOTARY_KME_URL"] == "https://kme-b:8443"
    # Each instance its own signer (own volume, own keystore password).
    assert one["volumes"] != two["volumes"]
    assert [s["source"] for s in one["secrets"]] == ["notary1_keystore_password"]
    assert [s["source"] for s in two["secrets"]] == ["notary2_keystore_password"]
    for service in (one, two):
        depends = service["depends_on"]
        assert depends["contracts"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["kme-b"]["condition"] == "service_healthy"
        assert "chain" in service["networks"]
        assert "ports" not in service, "notaries are reached through the proxy only"
    # MQTT intake on both instances: distinct sessions, complementary device partitions.
    for instance in (one, two):
        assert instance["environment"]["QKD_NOTARY_MQTT_HOST"] == "mosquitto"
        assert instance["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    ids = {i["environment"]["QKD_NOTARY_MQTT_CLIENT_ID"] for i in (one, two)}
    assert len(ids) == 2
    halves = [Partition.parse(i["environment"]["QKD_NOTARY_MQTT_PARTITION"]) for i in (one, two)]
    assert sorted((p.index, p.count) for p in halves) == [(1, 2), (2, 2)]


def test_kme_pair_forms_one_link(config: dict[str, Any]) -> None:
    services = _services(config)
    a, b = services["kme-a"]["command"], services["kme-b"]["command"]
    assert (_flag(a, "--kme-id"), _flag(a, "--end"), _flag(a, "--peer-id")) == (
        "kme-a",
        "A",
        "kme-b",
    )
    assert (_flag(b, "--kme-id"), _flag(b, "--end"), _flag(b, "--peer-id")) == (
        "kme-b",
        "B",
        "kme-a",
    )
    assert _flag(a, "--peer") == "https://kme-b:8443"
    assert _flag(b, "--peer") == "https://kme-a:8443"
    link_port = (_flag(a, "--link-listen") or "").rsplit(":", 1)[1]
    assert _flag(b, "--link-peer") == f"kme-a:{link_port}"
    assert _flag(b, "--sae") == "notary"
    assert _flag(a, "--auth-key-file") == _flag(b, "--auth-key-file")


def test_proxy_upstreams_are_both_notaries(config: dict[str, Any]) -> None:
    services = _services(config)
    proxy = services["proxy"]
    source, target = _mount(proxy["volumes"][0])
    assert target == "/etc/nginx/nginx.conf"
    upstreams = re.findall(r"^\s*server\s+(\S+?):(\d+)\b", Path(source).read_text(), re.M)
    ports = {n: services[n]["environment"]["QKD_NOTARY_PORT"] for n in ("notary1", "notary2")}
    assert sorted(upstreams) == sorted(ports.items())
    assert {name: dep["condition"] for name, dep in proxy["depends_on"].items()} == {
        "notary1": "service_healthy",
        "notary2": "service_healthy",
    }


def test_every_long_running_service_has_a_health_check(config: dict[str, Any]) -> None:
    for name, service in _services(config).items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        health = service.get("healthcheck")
        assert health and not health.get("disable") and health["test"][0] == "CMD", name
        assert service["restart"] == "unless-stopped", name


def test_start_order_gates_on_health_or_completion(config: dict[str, Any]) -> None:
    services = _services(config)
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert rule["condition"] == expected, (name, dependency)
    assert services["contracts"]["depends_on"]["besu1"]["condition"] == "service_healthy"
    assert services["setup"]["network_mode"] == "none", "key generation needs no network"


def test_every_image_is_pinned(config: dict[str, Any]) -> None:
    pinned = re.compile(r"^[\w./-]+:(?!latest\b)[\w.-]*\d[\w.-]*(@sha256:[0-9a-f]{64})?$")
    for name, service in _services(config).items():
        assert pinned.match(service["image"]), (name, service["image"])
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert len(bases) == 1 and pinned.match(bases[0]), bases
    for line in re.findall(r"^FROM\s+(\S+)", text, re.M):
        assert line == "${PYTHON_IMAGE}", line
    assert "latest" not in COMPOSE.read_text()


def test_named_volumes_and_secrets(config: dict[str, Any]) -> None:
    services = _services(config)
    used: set[str] = set()
    for service in services.values():
        for mount in service.get("volumes", []):
            source, _ = _mount(mount)
            if not source.startswith(("/", ".")):
                used.add(source)
    assert used == set(config["volumes"])
    assert set(config["secrets"]) == set(PASSWORDS)
    for secret in config["secrets"].values():
        assert Path(secret["file"]).parent == DOCKER / "secrets"
    assert (DOCKER / ".gitignore").read_text().split() == ["secrets/"]


def test_no_secret_travels_in_the_environment(config: dict[str, Any]) -> None:
    for name, service in _services(config).items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|PRIVATE", key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (
                    name,
                    key,
                )
            assert PASSWORD_ENV != key, name


def test_published_ports_are_the_edge_only(config: dict[str, Any]) -> None:
    published = {
        name: [_port(p) for p in service["ports"]]
        for name, service in _services(config).items()
        if "ports" in service
    }
    assert published == {
        "proxy": [("127.0.0.1", 8080, 8080)],
        "mosquitto": [("127.0.0.1", 1883, 1883)],
        "kme-a": [("127.0.0.1", 8443, 8443)],
    }


# ------------------------------------------------------------- flags and variables vs CLIs


def _resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command an argv reaches, and the arguments left."""
    command, index = CLIS[argv[0]], 1
    while isinstance(command, click.Group) and index < len(argv):
        sub = command.get_command(click.Context(command), argv[index])
        if sub is None:
            break
        command, index = sub, index + 1
    assert not isinstance(command, click.Group), f"{argv} stops at a command group"
    return command, argv[index:]


def _envvars(command: click.Command) -> set[str]:
    """Every variable the options of ``command`` read (``qkd_channel.clikit``'s rule)."""
    found: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        found.update([envvar] if isinstance(envvar, str) else (envvar or []))
    return found


def _options(command: click.Command) -> set[str]:
    return {
        name
        for param in command.params
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }


def _check_argv(argv: list[str]) -> None:
    command, rest = _resolve(argv)
    known = _options(command)
    for token in rest:
        if token.startswith("--"):
            assert token.split("=", 1)[0] in known, f"{argv[:3]}: {token} is not an option"


def _script_invocations(path: Path) -> list[list[str]]:
    """Every qkd-kme/qkd-notary command line of a shell script, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    calls = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        match = re.search(r"\b(qkd-kme|qkd-notary)\s[^|;)&]*", line)
        if match:
            calls.append(shlex.split(match.group(0)))
    return calls


def _notary_cli_envvars() -> set[str]:
    found = {PASSWORD_ENV}
    stack: list[click.Command] = [notary_cli]
    while stack:
        command = stack.pop()
        if isinstance(command, click.Group):
            context = click.Context(command)
            stack.extend(
                sub
                for name in command.list_commands(context)
                if (sub := command.get_command(context, name)) is not None
            )
        found |= _envvars(command)
    return found


def test_compose_commands_use_existing_cli_options(config: dict[str, Any]) -> None:
    checked = 0
    for name in APP_SERVICES - ONE_SHOT:
        command = _services(config)[name]["command"]
        _check_argv(command)
        checked += 1
    assert checked == 4


def test_setup_scripts_use_existing_cli_options() -> None:
    calls = _script_invocations(SETUP_SH) + _script_invocations(DEPLOY_SH)
    programs = {" ".join(c[:3]) for c in calls}
    assert {
        "qkd-kme certs --out",
        "qkd-kme auth-key --out",
        "qkd-notary keystore new",
        "qkd-notary keystore address",
        "qkd-notary init --data-dir",
        "qkd-notary chain grant-role",
    } <= programs
    for argv in calls:
        _check_argv(argv)


def test_dockerfile_commands_exist() -> None:
    text = DOCKERFILE.read_text()
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.M)[-1])
    _check_argv(cmd)
    for program in re.findall(r"/opt/venv/bin/(qkd-kme|qkd-notary|qswap) --help", text):
        assert (BIN / program).exists()
    # In the builder's working directory (the sources) a plain `python -c` would import the
    # sources, not the installed wheel; -I keeps the working directory off sys.path.
    flags = re.findall(r"/opt/venv/bin/python\s+([^'\"]*?)-c\b", text)
    assert flags == ["-I "], flags
    # The wheel carries the contract artifacts (test_wheel_carries_the_contract_artifacts);
    # the builder proves the installed package loads them.
    assert text.index("COPY contracts/build") < text.index("pip wheel")
    for name in ("DeviceRegistry", "TelemetryNotary"):
        assert f"a('{name}')" in text


def test_wheel_carries_the_contract_artifacts(tmp_path: Path) -> None:
    """notary/chain/contracts links to contracts/build; a wheel must hold the files."""
    from notary.chain.artifacts import BUILD_DIR

    assert BUILD_DIR.resolve() == (ROOT / "contracts" / "build").resolve()
    source = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for tree in ("qkd_channel", "qkd_device", "notary", "atomic_swap", "contracts/build"):
        shutil.copytree(
            ROOT / tree,
            source / tree,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("qkd_notary-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("DeviceRegistry", "TelemetryNotary"):
            packed = archive.read(f"notary/chain/contracts/{name}.json")
            assert packed == (ROOT / "contracts" / "build" / f"{name}.json").read_bytes()


def test_environment_variables_are_ones_the_programs_read(config: dict[str, Any]) -> None:
    services = _services(config)
    settings = {f"QKD_NOTARY_{field.upper()}" for field in NotarySettings.model_fields}
    cli_envvars = _notary_cli_envvars()
    setup_text, deploy_text = SETUP_SH.read_text(), DEPLOY_SH.read_text()
    for name in APP_SERVICES:
        service = services[name]
        environment = service.get("environment") or {}
        for key in environment:
            if key.startswith("QKD_NOTARY_"):
                assert key in settings | cli_envvars, (name, key)
            elif key.startswith("QKD_KME_"):
                command, _ = _resolve(service["command"])
                assert key in _envvars(command), (name, key)
            elif key == "PGPASSFILE":  # libpq's own variable (psycopg uses libpq)
                assert environment[key] == f"{IMAGE_ROOT}/data/pgpass"
            else:  # the set-up script's own inputs
                assert name == "setup" and f"${{{key}" in setup_text, (name, key)
    for required in re.findall(r"\$\{(\w+):\?\}", setup_text):
        assert required in services["setup"]["environment"], required
    for required in re.findall(r"\$\{(\w+):\?\}", deploy_text):
        assert required in services["contracts"]["environment"], required


# --------------------------------------------------------------- proxy and broker configs


def test_nginx_accepts_the_proxy_config(tmp_path: Path) -> None:
    """``nginx -t`` with the upstream host names mapped to loopback (it resolves them)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    text = (DOCKER / "proxy" / "nginx.conf").read_text()
    local = re.sub(r"server notary[12]:8080", "server 127.0.0.1:8080", text)
    assert local.count("127.0.0.1:8080") == 2
    conf = tmp_path / "nginx.conf"
    conf.write_text(local)
    result = subprocess.run(
        [nginx, "-t", "-q", "-c", str(conf), "-p", str(tmp_path), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(local.replace("proxy_next_upstream_tries 2;", "proxy_next_upstream_tries;"))
    result = subprocess.run(
        [nginx, "-t", "-q", "-c", str(broken), "-p", str(tmp_path), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0, "nginx -t must catch a broken directive"


def test_mosquitto_loads_the_broker_config(tmp_path: Path) -> None:
    port = free_port()
    text = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    local = text.replace("listener 1883", f"listener {port} 127.0.0.1").replace(
        "/mosquitto/data/", f"{tmp_path}/"
    )
    assert str(port) in local and str(tmp_path) in local
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(local)
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert broker.poll() is None, broker.stdout.read() if broker.stdout else ""
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.1)
    finally:
        broker.terminate()
        broker.wait(timeout=10)
        if broker.stdout is not None:
            broker.stdout.close()


# ------------------------------------------------------------------------ image contents


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(body)
        if body.startswith("**/"):
            matched = any(fnmatch.fnmatch(c.split("/")[-1], body[3:]) for c in candidates)
        else:
            matched = any(
                re.fullmatch(regex, c) and c.count("/") == body.count("/") for c in candidates
            )
        if matched:
            excluded = not negate
    return excluded


def test_build_context_holds_what_the_dockerfile_copies_and_no_secret() -> None:
    text = DOCKERFILE.read_text()
    sources: list[str] = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        sources += line.split()[:-1]
    assert "docker/setup/setup.sh" in sources and "scripts/qbft_network.py" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _dockerignore_excludes(source), source
    for inside in ("notary/chain/artifacts.py", "contracts/build/TelemetryNotary.json"):
        assert not _dockerignore_excludes(inside), inside
    for outside in (
        ".venv/bin/python",
        ".git/config",
        "tests/test_deployment.py",
        "contracts/node_modules/x.js",
        "docker/secrets/postgres_password",
        "notary-data/keystore.json",
        "notary/__pycache__/x.pyc",
        "notary/sae-x.key",
    ):
        assert _dockerignore_excludes(outside), outside


def test_runtime_stage_is_unprivileged_and_compiler_free() -> None:
    stages = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.M)[1:]
    assert [s.split()[2] for s in stages] == ["builder", "runtime"]
    runtime = stages[-1]
    assert re.search(r"^USER qkd$", runtime, re.M)
    assert "apt-get install" not in runtime and "build-essential" not in runtime
    assert "build-essential" in stages[0]
    assert re.search(r"^HEALTHCHECK ", runtime, re.M)
    # Every mount point compose uses for app volumes exists in the image (ownership).
    mounts = re.search(r"for d in (.+?); do", runtime, re.S)
    assert mounts is not None
    created = {f"{IMAGE_ROOT}/{d}" for d in mounts.group(1).replace("\\", " ").split()}
    config = yaml.safe_load(_compose("config").stdout)
    for name in APP_SERVICES:
        for mount in config["services"][name].get("volumes", []):
            _, target = _mount(mount)
            assert target in created, (name, target)


# ------------------------------------------------------------- the set-up scripts, for real


def _container_path(root: Path, volume_root: str, path: str) -> Path:
    """Map a path inside an app container (volume at /var/lib/qkd/data) to the test's copy."""
    assert path.startswith(f"{IMAGE_ROOT}/data/"), path
    return root / volume_root / path.removeprefix(f"{IMAGE_ROOT}/data/")


@pytest.fixture(scope="module")
def deployment(config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``setup.sh`` run as the compose `setup` service would run it (same environment)."""
    base = tmp_path_factory.mktemp("deployment")
    secrets = base / "secrets"
    secrets.mkdir()
    for name, value in PASSWORDS.items():
        (secrets / name).write_text(value + "\n")
    env = {
        **os.environ,
        **_services(config)["setup"]["environment"],
        "QKD_ROOT": str(base / "root"),
        "SECRETS_DIR": str(secrets),
        "QBFT_NETWORK": str(ROOT / "scripts" / "qbft_network.py"),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["sh", str(SETUP_SH)], env=env, capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (base / "setup.out").write_text(result.stdout + result.stderr)
    (base / "env.json").write_text(json.dumps(env))
    yield base / "root"


def test_setup_gives_each_service_only_its_own_keys(deployment: Path) -> None:
    keys = {
        volume: sorted(p.name for p in (deployment / volume).rglob("*.key"))
        for volume in ("kme-a", "kme-b", "notary1", "notary2")
    }
    assert keys == {
        "kme-a": ["kme-kme-a-client.key", "kme-kme-a.key", "link-auth.key"],
        "kme-b": ["kme-kme-b-client.key", "kme-kme-b.key", "link-auth.key"],
        "notary1": ["sae-notary.key"],
        "notary2": ["sae-notary.key"],
    }
    assert (deployment / "setup" / "pki" / "ca.key").exists()
    assert (deployment / "kme-a/link-auth.key").read_bytes() == (
        deployment / "kme-b/link-auth.key"
    ).read_bytes()
    for path in deployment.rglob("*"):
        if path.is_file() and (path.suffix == ".key" or path.name in {"key", "pgpass"}):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_setup_writes_every_file_the_services_are_pointed_at(
    config: dict[str, Any], deployment: Path
) -> None:
    services = _services(config)
    for name, volume in (("kme-a", "kme-a"), ("kme-b", "kme-b")):
        command = services[name]["command"]
        pki = _container_path(deployment, volume, _flag(command, "--pki") or "")
        kme_id = _flag(command, "--kme-id")
        for file in (
            "ca.crt",
            f"kme-{kme_id}.crt",
            f"kme-{kme_id}.key",
            f"kme-{kme_id}-client.crt",
            f"kme-{kme_id}-client.key",
        ):
            assert (pki / file).is_file(), (name, file)
        assert _container_path(
            deployment, volume, _flag(command, "--auth-key-file") or ""
        ).is_file()
    for name in ("notary1", "notary2"):
        environment = services[name]["environment"]
        for key in ("QKD_NOTARY_KME_CERT", "QKD_NOTARY_KME_KEY", "QKD_NOTARY_KME_CA", "PGPASSFILE"):
            assert _container_path(deployment, name, environment[key]).is_file(), (name, key)
        assert (deployment / name / "keystore.json").is_file()
        url = urlsplit(environment["QKD_NOTARY_DATABASE_URL"])
        line = (deployment / name / "pgpass").read_text().strip()
        # .pgpass: host:port:db:user:password, with ':' and '\' escaped in the password.
        fields = re.split(r"(?<!\\):", line)
        assert fields[:4] == [url.hostname, str(url.port), url.path[1:], url.username]
        assert re.sub(r"\\(.)", r"\1", fields[4]) == PASSWORDS["postgres_password"]


def test_setup_allowlists_the_two_notary_signers_on_every_validator(
    config: dict[str, Any], deployment: Path
) -> None:
    signers = set()
    for n in (1, 2):
        document = json.loads((deployment / f"notary{n}" / "keystore.json").read_text())
        signers.add("0x" + document["address"].lower())
    assert len(signers) == 2
    services = _services(config)
    for i, name in enumerate(BESU, start=1):
        node = deployment / "besu" / f"node{i}"
        permissions = tomllib.loads((node / "permissions_config.toml").read_text())
        assert set(permissions["accounts-allowlist"]) == signers
        genesis = json.loads((node / "genesis.json").read_text())
        assert {"0x" + a for a in genesis["alloc"]} == signers
        assert genesis["config"]["chainId"] == int(services["setup"]["environment"]["CHAIN_ID"])
        host = services[name]["networks"]["chain"]["ipv4_address"]
        static = json.loads((node / "static-nodes.json").read_text())
        assert static[i - 1].endswith(f"@{host}:30303")
        assert (node / "key").is_file()


def test_setup_prints_no_secret(deployment: Path) -> None:
    output = (deployment.parent / "setup.out").read_text()
    assert "setup: complete" in output
    for value in PASSWORDS.values():
        assert value not in output
    for key in deployment.rglob("key"):
        assert key.read_text()[2:] not in output
    for key in deployment.rglob("*.key"):
        if key.name != "link-auth.key":
            body = "".join(key.read_text().splitlines()[1:-1])
            assert body[:40] not in output


def test_setup_is_idempotent(deployment: Path) -> None:
    snapshot = {p: p.read_bytes() for p in deployment.rglob("*") if p.is_file()}
    env = json.loads((deployment.parent / "env.json").read_text())
    result = subprocess.run(
        ["sh", str(SETUP_SH)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "done" not in result.stdout.replace("setup: complete", "")
    assert {p: p.read_bytes() for p in deployment.rglob("*") if p.is_file()} == snapshot


def test_deploy_script_deploys_once_and_enrols_notary2(
    config: dict[str, Any], deployment: Path, anvil_factory: AnvilFactory
) -> None:
    """``deploy.sh`` against anvil standing in for besu1 (signers funded, as in genesis)."""
    node = anvil_factory()
    signers = [
        "0x" + json.loads((deployment / f"notary{n}" / "keystore.json").read_text())["address"]
        for n in (1, 2)
    ]
    for signer in signers:
        node.rpc("anvil_setBalance", [signer, hex(10**21)])
    env = {
        **json.loads((deployment.parent / "env.json").read_text()),
        **_services(config)["contracts"]["environment"],
        "QKD_NOTARY_CHAIN_RPC_URL": node.url,
    }
    run = subprocess.run(
        ["sh", str(DEPLOY_SH)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    chain = json.loads((deployment / "notary1" / "chain.json").read_text())
    assert (deployment / "notary2" / "chain.json").read_text() == (
        deployment / "notary1" / "chain.json"
    ).read_text()
    assert (deployment / "notary2" / "admin.token").read_text() == (
        deployment / "notary1" / "admin.token"
    ).read_text()
    info = subprocess.run(
        [
            str(BIN / "qkd-notary"),
            "chain",
            "info",
            "--data-dir",
            str(deployment / "notary2"),
            "--chain-rpc-url",
            node.url,
            "--password-file",
            str(Path(env["SECRETS_DIR"]) / "notary2_keystore_password"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0, info.stderr
    signer_line = next(line for line in info.stdout.splitlines() if line.startswith("signer"))
    assert signers[1][2:].lower() in signer_line.lower()
    assert "notary" in signer_line and "operator" in signer_line
    assert chain["registry"] in info.stdout and chain["notary"] in info.stdout
    # A second run attaches to the same contracts instead of deploying new ones.
    again = subprocess.run(
        ["sh", str(DEPLOY_SH)], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((deployment / "notary1" / "chain.json").read_text()) == chain
