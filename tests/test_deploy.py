"""deploy/: the compose file, the systemd unit, the Dockerfile and its entry point, Mosquitto's
configuration, the pinned versions (constraints.txt), and the installed wheel running the way the
container and the unit run it.

There is no Docker engine here: the compose file is checked with a compose client's `config`
(it parses and normalises the file without an engine), the Dockerfile by reading it, the entry
point script by running it with the bridge. The slow test
(`test_installed_wheel_runs_like_the_container`) builds the wheel, installs it with its runtime
dependencies only, at the versions of constraints.txt, into a fresh venv (from PyPI, through pip's
cache) and runs the container's entry point and health check against Mosquitto and the demo CSMS.
"""

from __future__ import annotations

import ctypes
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bridge.config import load_settings
from tests.conftest import EXAMPLES, Broker, _wait_port, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
UNIT = DEPLOY / "ocpp-bridge.service"
DOCKERFILE = DEPLOY / "Dockerfile"
MOSQUITTO_CONF = DEPLOY / "mosquitto.conf"
CONTAINER_TOML = DEPLOY / "container.toml"
ENTRYPOINT_SH = DEPLOY / "entrypoint.sh"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"

CONFIG_IN_IMAGE = "/etc/ocpp-bridge/bridge.toml"
STATE_DIR = "/var/lib/ocpp-bridge"
RUN_DIR = "/run/ocpp-bridge"
STOP_TIMEOUT = 30.0  # TimeoutStopSec= of the unit, stop_grace_period of compose.yaml
ENTRYPOINT_IN_IMAGE = "ocpp-bridge-entrypoint"  # deploy/entrypoint.sh, on the image's PATH
CONFIG_ERROR = 2  # `ocpp-bridge run`'s exit status for a configuration or store error


def need(what: str) -> None:
    """A tool this test needs is missing: fail under CI (scripts/test installs it), else skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; scripts/test installs it")
    pytest.skip(f"{what} is missing (scripts/test installs it)")


# --- compose.yaml ---------------------------------------------------------------------------


def compose_clients() -> list[list[str]]:
    """Every compose client here: the docker CLI plugin and/or a standalone docker-compose."""
    clients = []
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            clients.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        clients.append(["docker-compose"])
    return clients


def _yaml() -> Any:
    try:
        import yaml  # only these tests need it; scripts/test installs PyYAML
    except ImportError:
        need("PyYAML")
    return yaml


@pytest.fixture(
    scope="module", params=[" ".join(c) for c in compose_clients()] or ["no compose client"]
)
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    """`<client> -f deploy/compose.yaml config`: parsed, validated against the compose
    specification and normalised (no engine needed), as a dict; once per client found."""
    if request.param == "no compose client":
        need("a compose client (`docker compose` or Debian's docker-compose)")
    client = request.param.split()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "OCPP_BRIDGE_"))}
    result = subprocess.run(
        [*client, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"{request.param} config failed:\n{result.stderr}"
    config: dict[str, Any] = _yaml().safe_load(result.stdout)
    return config


def test_compose_services_networks_and_volumes(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"mosquitto", "bridge"}
    assert compose["networks"]["mqtt"]["internal"] is True
    # Fixed volume names: the state survives a change of project name or directory.
    assert compose["volumes"]["state"]["name"] == "ocpp-bridge-state"
    assert compose["volumes"]["mosquitto-data"]["name"] == "ocpp-bridge-mosquitto-data"

    def nets(service: str) -> set[str]:
        return set(compose["services"][service]["networks"])

    assert "mqtt" in nets("mosquitto") & nets("bridge")
    assert "uplink" in nets("bridge")
    assert "uplink" not in nets("mosquitto")


def _volumes(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target → (source name or path, read-only), from the short or the long syntax."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            out[target] = (source, bool(mode) and "ro" in mode[0].split(","))
        else:
            out[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return out


def _seconds(value: str | int | float) -> float:
    """`30`, `30s`, `1m0s`, `1m30s` → seconds (compose, systemd and Go durations)."""
    if isinstance(value, int | float) or value.strip().isdigit():
        return float(value)
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|us|ns|h|m|s)", value):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}.get(unit, 0)
    return total


def test_compose_bridge_service(compose: dict[str, Any]) -> None:
    bridge = compose["services"]["bridge"]
    assert bridge["build"]["dockerfile"] == "deploy/Dockerfile"
    assert Path(bridge["build"]["context"]) == ROOT
    assert bridge["image"].startswith("ocpp-bridge:")
    assert bridge["read_only"] is True
    # unless-stopped (on-failure would not start it again after a clean reboot); the image's entry
    # point, not overridden here, keeps a configuration error from looping.
    assert bridge["restart"] == "unless-stopped"
    assert "entrypoint" not in bridge
    assert "command" not in bridge
    assert bridge["user"].split(":")[0] not in ("", "0", "root")
    assert bridge["init"] is True
    assert bridge["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in bridge["security_opt"]
    assert "mosquitto" in bridge["depends_on"]
    tmpfs = {entry.split(":")[0]: entry for entry in bridge["tmpfs"]}
    assert set(tmpfs) == {RUN_DIR, "/tmp"}
    assert "uid=10001" in tmpfs[RUN_DIR]
    volumes = _volumes(bridge)
    assert volumes[CONFIG_IN_IMAGE] == (str(CONTAINER_TOML), True)
    assert volumes[STATE_DIR] == ("state", False)
    assert bridge["environment"]["OCPP_BRIDGE_MQTT__HOST"] == "mosquitto"
    assert bridge["environment"]["OCPP_BRIDGE_STORAGE__PATH"].startswith(STATE_DIR + "/")
    assert bridge["healthcheck"]["test"] == [
        "CMD", "ocpp-bridge", "health", "--config", CONFIG_IN_IMAGE,
    ]  # fmt: skip
    assert bridge["stop_signal"] == "SIGTERM"
    assert _seconds(bridge["stop_grace_period"]) == STOP_TIMEOUT


def test_compose_mosquitto_service(compose: dict[str, Any]) -> None:
    mosquitto = compose["services"]["mosquitto"]
    assert mosquitto["image"] == "eclipse-mosquitto:2"
    assert mosquitto["restart"] == "unless-stopped"
    assert mosquitto["read_only"] is True
    volumes = _volumes(mosquitto)
    assert volumes["/mosquitto/config/mosquitto.conf"] == (str(MOSQUITTO_CONF), True)
    assert volumes["/mosquitto/data"] == ("mosquitto-data", False)
    # Only ever published on the board's loopback, and not on 1883, where a system Mosquitto on
    # the board may listen already.
    ports = mosquitto.get("ports", [])
    assert ports
    for port in ports:
        if isinstance(port, str):  # docker-compose 1.29: "127.0.0.1:1884:1883/tcp"
            host_ip, published, target = port.split("/")[0].split(":")
        else:  # compose v2: the long syntax
            host_ip, published, target = port.get("host_ip"), port["published"], port["target"]
        assert host_ip == "127.0.0.1", port
        assert int(target) == 1883, port
        assert int(published) != 1883, port
    assert any("$SYS" in part for part in mosquitto["healthcheck"]["test"])


def test_compose_log_limits(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        logging = service["logging"]
        assert logging["driver"] == "json-file", name
        assert logging["options"]["max-size"] == "5m", name
        assert int(logging["options"]["max-file"]) == 3, name


def test_container_toml_is_a_valid_config_with_the_compose_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file the image carries and compose mounts, as the container sees it."""
    for key in list(os.environ):
        if key.startswith("OCPP_BRIDGE_"):
            monkeypatch.delenv(key)
    plain = load_settings(CONTAINER_TOML)
    assert plain.mqtt.host == "mosquitto"
    assert plain.storage.path == f"{STATE_DIR}/bridge.db"
    assert plain.csms.url == ""  # the installer's placeholder: no CSMS until configured
    monkeypatch.setenv("OCPP_BRIDGE_MQTT__HOST", "broker.internal")
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__URL", "ws://csms.example.com/ocpp")
    monkeypatch.setenv("OCPP_BRIDGE_STATION__ID", "CP-0042")
    overridden = load_settings(CONTAINER_TOML)
    assert overridden.mqtt.host == "broker.internal"
    assert overridden.mqtt.port == 1883  # the rest of the section still comes from the file
    assert overridden.csms.url == "ws://csms.example.com/ocpp"
    assert overridden.station.id == "CP-0042"
    assert overridden.station.vendor == "Acme"


# --- mosquitto.conf -------------------------------------------------------------------------


def _conf_lines(path: Path) -> list[list[str]]:
    lines = (line.split("#", 1)[0].split() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_mosquitto_conf_settings() -> None:
    lines = _conf_lines(MOSQUITTO_CONF)
    settings = {line[0]: line[1:] for line in lines}
    assert settings["set_tcp_nodelay"] == ["true"]
    assert settings["persistence"] == ["true"]
    assert settings["persistence_location"] == ["/mosquitto/data/"]
    listeners = [line[1:] for line in lines if line[0] == "listener"]
    assert listeners == [["1883"]]  # inside the container; compose publishes it on 127.0.0.1 only


def test_mosquitto_accepts_the_conf(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Debian's Mosquitto 2 starts with deploy/mosquitto.conf (port and data path moved here)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        need("mosquitto")
    port = free_port()
    # Started as root, mosquitto drops to its own user: give it a directory it can reach.
    scratch = tempfile.TemporaryDirectory(prefix="mosquitto-deploy-")
    request.addfinalizer(scratch.cleanup)
    data = Path(scratch.name)
    data.chmod(0o777)
    text = MOSQUITTO_CONF.read_text()
    text = text.replace("persistence_location /mosquitto/data/", f"persistence_location {data}/")
    text = re.sub(r"(?m)^listener 1883$", f"listener {port} 127.0.0.1", text)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    process = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_port("127.0.0.1", port)
        assert process.poll() is None
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "Error" not in output, output
    assert (data / "mosquitto.db").exists()  # persistence on: saved at shutdown


# --- ocpp-bridge.service --------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section → key → every value (keys such as SystemCallFilter= may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        assert "=" in line, f"not a key=value line: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_keys() -> None:
    unit = parse_unit(UNIT.read_text())
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["ExecStart"] == (
        f"/opt/ocpp-bridge/bin/ocpp-bridge run --config {CONFIG_IN_IMAGE}"
    )
    assert service["User"] == "ocpp-bridge"
    assert service["StateDirectory"] == "ocpp-bridge"
    assert service["RuntimeDirectory"] == "ocpp-bridge"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"
    assert service["KillSignal"] == "SIGTERM"
    assert _seconds(service["TimeoutStopSec"]) == STOP_TIMEOUT
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert service.get(key) == value, key
    assert "@system-service" in unit["Service"]["SystemCallFilter"]
    # No ReadWritePaths=: the state and runtime directories are all the service writes.
    assert "ReadWritePaths" not in service
    after = unit["Unit"]["After"][-1].split()
    assert {"network-online.target", "mosquitto.service"} <= set(after)
    assert {"network-online.target", "mosquitto.service"} <= set(unit["Unit"]["Wants"][-1].split())
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        need("systemd-analyze (Debian package systemd)")
    assert tool is not None
    return tool


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, its ExecStart pointed at a real executable (the
    venv is not installed here); on the real file, the missing binary is the only complaint."""
    tool = _systemd_analyze()
    text = UNIT.read_text()
    copy = tmp_path / "ocpp-bridge.service"
    copy.write_text(
        text.replace(
            "ExecStart=/opt/ocpp-bridge/bin/ocpp-bridge ", f"ExecStart={shutil.which('true')} "
        )
    )
    assert copy.read_text() != text
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice"}
    result = subprocess.run(
        [tool, "verify", "--man=no", str(copy)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr

    real = tmp_path / "real" / "ocpp-bridge.service"
    real.parent.mkdir()
    shutil.copy(UNIT, real)
    result = subprocess.run(
        [tool, "verify", "--man=no", str(real)], capture_output=True, text=True, env=env
    )
    complaints = [line for line in result.stderr.splitlines() if line.strip()]
    if Path("/opt/ocpp-bridge/bin/ocpp-bridge").exists():  # installed on this machine
        assert result.returncode == 0, complaints
        assert not complaints, complaints
    else:
        assert complaints, "expected the missing /opt/ocpp-bridge/bin/ocpp-bridge to be reported"
        assert all("/opt/ocpp-bridge/bin/ocpp-bridge" in line for line in complaints), complaints


def test_unit_security_exposure(tmp_path: Path) -> None:
    """`systemd-analyze security --offline` scores the hardening (0 = locked down, 10 = none)."""
    tool = _systemd_analyze()
    copy = tmp_path / "ocpp-bridge.service"
    copy.write_text(
        UNIT.read_text().replace("/opt/ocpp-bridge/bin/ocpp-bridge", shutil.which("true") or "")
    )
    result = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=20", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
    )
    if "offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("systemd-analyze too old for --offline")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, heredoc bodies skipped."""
    lines = text.splitlines()
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            following = lines[i]
            i += 1
            if following.lstrip().startswith("#"):
                continue
            line = line[:-1] + " " + following.strip()
        word, _, rest = line.strip().partition(" ")
        heredoc = re.search(r"<<-?'?\"?(\w+)", rest)
        if heredoc:
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(FROM arguments with ARG defaults substituted, instructions of that stage)]."""
    args: dict[str, str] = {}
    stages: list[tuple[str, list[tuple[str, str]]]] = []

    def substitute(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)

    for word, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if word == "ARG":
            name, _, default = rest.partition("=")
            args.setdefault(name, default)
        elif word == "FROM":
            stages.append((substitute(rest), []))
        elif stages:
            stages[-1][1].append((word, substitute(rest)))
    return stages


def test_dockerfile_is_multi_stage_on_slim_bookworm() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert stages[0][0] == "python:3.11-slim-bookworm AS builder"
    final_from, final = stages[-1]
    assert final_from == "python:3.11-slim-bookworm"  # multi-arch: amd64, arm64, arm/v7
    copies = [rest for word, rest in final if word == "COPY"]
    assert any(c.startswith("--from=builder /opt/ocpp-bridge") for c in copies), copies
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "apt-get" not in runs, "no compilers in the image"
    assert "pip" not in runs, "no builds in the image"
    builder_runs = " ".join(rest for word, rest in stages[0][1] if word == "RUN")
    assert "pip wheel" in builder_runs


def test_dockerfile_runtime_settings() -> None:
    final = dockerfile_stages()[-1][1]

    def last(word: str) -> str:
        values = [rest for w, rest in final if w == word]
        assert values, f"no {word} in the final stage"
        return values[-1]

    user = last("USER").split(":")[0]
    assert user.isdigit(), f"USER {user}: not a numeric uid (Kubernetes' runAsNonRoot needs one)"
    assert int(user) >= 1000, f"USER {user}: not a non-root uid"
    assert last("VOLUME") in (STATE_DIR, f'["{STATE_DIR}"]')
    assert last("STOPSIGNAL") == "SIGTERM"
    healthcheck = last("HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command == ["ocpp-bridge", "health", "--config", CONFIG_IN_IMAGE]
    assert json.loads(last("ENTRYPOINT")) + json.loads(last("CMD")) == [
        ENTRYPOINT_IN_IMAGE, "run", "--config", CONFIG_IN_IMAGE,
    ]  # fmt: skip
    copies = [rest.split() for w, rest in final if w == "COPY"]
    assert ["--chmod=0755", "deploy/entrypoint.sh", f"/usr/local/bin/{ENTRYPOINT_IN_IMAGE}"] in (
        copies
    )
    env = dict(
        pair.split("=", 1) for word, rest in final if word == "ENV" for pair in shlex.split(rest)
    )
    assert env["RUNTIME_DIRECTORY"] == RUN_DIR
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/ocpp-bridge/bin:")


def test_dockerfile_builder_installs_the_pinned_versions() -> None:
    """Two builds a month apart install the same packages: every pip command of the builder stage
    takes constraints.txt, and the project's wheel is built by the pinned setuptools (no isolated
    build environment, which would fetch the newest)."""
    (builder_from, builder), *_ = dockerfile_stages()
    assert builder_from.endswith(" AS builder")
    env = dict(
        pair.split("=", 1) for word, rest in builder if word == "ENV" for pair in shlex.split(rest)
    )
    assert env["PIP_CONSTRAINT"] == "/src/constraints.txt"
    workdir = next(rest for word, rest in builder if word == "WORKDIR")
    first_pip = next(i for i, (word, rest) in enumerate(builder) if "pip" in rest)
    copies = [rest for word, rest in builder[:first_pip] if word == "COPY"]
    assert workdir == "/src"
    assert "constraints.txt ./" in copies, "constraints.txt is copied before the first pip"
    commands = [
        command.strip()
        for word, rest in builder
        if word == "RUN"
        for command in rest.split("&&")
        if re.search(r"\bpip\b.*\b(install|wheel)\b", command)
    ]
    assert len(commands) >= 4, commands
    for command in commands:
        if "--no-index" in command:  # installs the wheels built above, nothing from an index
            continue
        if {"--no-deps", "--no-build-isolation"} <= set(command.split()):  # fetches nothing
            continue
        assert "-c constraints.txt" in command, command
    (project,) = [c for c in commands if "/wheels/project" in c and "pip wheel" in c]
    assert "--no-build-isolation" in project, project
    (tools,) = [c for c in commands if "--upgrade pip" in c]
    assert {"setuptools", "wheel", "packaging"} <= set(tools.split()), tools


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes (a parent dir counts)."""
    excluded = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = ROOT / ".dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for stage in dockerfile_stages():
        for word, rest in stage[1]:
            if word == "COPY" and not rest.startswith("--from"):
                sources += [s for s in rest.split()[:-1] if not s.startswith("--")]
    assert {"deploy/container.toml", "deploy/entrypoint.sh", "constraints.txt"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _dockerignore_excludes(source, patterns), f"{source} is ignored"
        if (ROOT / source).is_dir():
            for file in (ROOT / source).rglob("*.py"):
                relative = file.relative_to(ROOT).as_posix()
                assert not _dockerignore_excludes(relative, patterns), relative
            # COPY keeps symlinks: their targets must be copied too.
            for link in (ROOT / source).rglob("*"):
                if link.is_symlink():
                    target = link.resolve().relative_to(ROOT).as_posix()
                    assert any(
                        target == s or target.startswith(s.rstrip("/") + "/") for s in sources
                    ), f"{link.relative_to(ROOT)} -> {target}, which the build does not copy"
    for private in (".git", ".venv", "tests", ".quickstart", "bridge.db"):
        assert _dockerignore_excludes(private, patterns), f"{private} goes into the context"


# --- constraints.txt ------------------------------------------------------------------------


def constraint_pins() -> dict[str, Version]:
    """constraints.txt as name → pinned version; every line an exact `==` pin."""
    pins: dict[str, Version] = {}
    for number, raw in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"line {number}: {raw}"
        assert not requirement.marker, f"line {number}: {raw}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"line {number}: {name} pinned twice"
        pins[name] = Version(spec.version)
    return pins


def pyproject_requirements() -> dict[str, list[Requirement]]:
    project = tomllib.loads(PYPROJECT.read_text())
    return {
        "runtime": [Requirement(r) for r in project["project"]["dependencies"]],
        "test": [Requirement(r) for r in project["project"]["optional-dependencies"]["test"]],
        "build": [Requirement(r) for r in project["build-system"]["requires"]],
    }


def test_constraints_pin_every_dependency_within_pyproject_ranges() -> None:
    pins = constraint_pins()
    for group, requirements in pyproject_requirements().items():
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{group} dependency {name} has no pin in constraints.txt"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]}, outside pyproject's "
                f"{requirement.specifier}"
            )
    assert "pip" in pins  # the Dockerfile's builder upgrades to it


def test_constraints_cover_the_installed_dependency_tree() -> None:
    """Every package that the runtime and test dependencies pull in here (transitively, markers
    evaluated for this machine) is pinned: scripts/test installs with the constraints, so in CI
    this is the pinned set itself."""
    from importlib import metadata

    pins = constraint_pins()
    groups = pyproject_requirements()
    todo = groups["runtime"] + groups["test"]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in pins, f"{name} (needed by the dependencies) has no pin in constraints.txt"
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed here; scripts/test installs it")
        todo += [Requirement(line) for line in dist.requires or []]
    unused = set(pins) - seen - {"pip", "setuptools", "wheel"}
    assert not unused, f"pins that no dependency needs: {sorted(unused)}"


def test_dependencies_whose_internals_we_touch_have_upper_bounds() -> None:
    """aiomqtt (its private `_client`, its queue's put_nowait), ocpp (its schema files' layout),
    websockets (ping_interval on a live connection): a new release must be tested first."""
    runtime = {canonicalize_name(r.name): r for r in pyproject_requirements()["runtime"]}
    for name in ("aiomqtt", "ocpp", "websockets"):
        upper = [s for s in runtime[name].specifier if s.operator in ("<", "<=")]
        assert upper, f"{name} has no upper bound in pyproject.toml"


def test_scripts_install_with_the_constraints() -> None:
    """scripts/test (CI) and scripts/quickstart install through install_project, with -c."""
    setup = (ROOT / "scripts" / "_setup.sh").read_text()
    installs = [
        line for line in setup.splitlines() if re.search(r"-m pip install\b", line) and "-e" in line
    ]
    assert installs
    assert all("-c constraints.txt" in line for line in installs), installs
    for script in ("test", "quickstart"):
        assert "install_project" in (ROOT / "scripts" / script).read_text(), script
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


# --- deploy/entrypoint.sh -------------------------------------------------------------------


@pytest.fixture
def bridge_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has `ocpp-bridge` running this checkout's bridge, the way the
    image's PATH has the venv's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "ocpp-bridge"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m bridge "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCPP_BRIDGE_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT))
    return env


def _read_until(stream: Any, text: str, deadline: float) -> str:
    """Lines from `stream` until one contains `text` (or the stream ends)."""
    seen = ""
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen += line
        if text in line:
            break
    return seen


def test_entrypoint_runs_other_commands_as_they_are(bridge_on_path: dict[str, str]) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT_SH), "--version"],
        capture_output=True,
        text=True,
        env=bridge_on_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    from bridge import __version__

    assert __version__ in result.stdout
    checked = subprocess.run(
        ["sh", str(ENTRYPOINT_SH), "validate", str(EXAMPLES / "request.GetVariables.json")],
        capture_output=True,
        text=True,
        env=bridge_on_path,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_entrypoint_does_not_exit_into_a_restart_loop_on_a_configuration_error(
    bridge_on_path: dict[str, str], tmp_path: Path
) -> None:
    """Exit status 2 (configuration error): the container stays up, unhealthy, the error in its
    log, so `restart: unless-stopped` has nothing to restart; `docker stop` ends it with 2."""
    import psutil

    bad = tmp_path / "bridge.toml"
    bad.write_text(CONTAINER_TOML.read_text().replace("port = 1883", 'port = "not a port"'))
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT_SH), "run", "--config", str(bad)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=bridge_on_path,
    )
    try:
        log = _read_until(process.stderr, "not restarting", time.monotonic() + 60)
        assert "not restarting" in log, log
        assert "mqtt.port" in log, log  # the bridge's own sentence, naming the key
        assert process.poll() is None, "the entry point exited: Docker would restart it"
        children = psutil.Process(process.pid).children()
        assert all("bridge" not in " ".join(c.cmdline()) for c in children), children
        process.send_signal(signal.SIGTERM)  # docker stop
        assert process.wait(STOP_TIMEOUT) == CONFIG_ERROR
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_entrypoint_passes_on_a_crash_so_docker_restarts_it(
    bridge_on_path: dict[str, str], broker: Broker, tmp_path: Path
) -> None:
    """Any status but 2 is the container's own: a bridge killed (OOM, kill -9) ends the container
    with 137, which `restart: unless-stopped` restarts."""
    import psutil

    env = {
        **bridge_on_path,
        "RUNTIME_DIRECTORY": str(tmp_path),
        "OCPP_BRIDGE_MQTT__HOST": broker.host,
        "OCPP_BRIDGE_MQTT__PORT": str(broker.port),
        "OCPP_BRIDGE_STORAGE__PATH": str(tmp_path / "bridge.db"),
    }
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT_SH), "run", "--config", str(CONTAINER_TOML)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        log = _read_until(process.stderr, "MQTT", time.monotonic() + 60)
        (child,) = psutil.Process(process.pid).children()
        assert "bridge" in " ".join(child.cmdline()), (child.cmdline(), log)
        child.kill()
        assert process.wait(STOP_TIMEOUT) == 128 + signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- the wheel, installed and run as the container runs it ----------------------------------

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def _mdwe_supported() -> bool:
    """Can this kernel refuse writable+executable memory (Linux >= 6.3), the way the unit's
    MemoryDenyWriteExecute=yes does? Checked in a child, since the setting cannot be undone."""
    probe = (
        "import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
        f"sys.exit(0 if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0 "
        "else 1)"
    )
    return sys.platform == "linux" and subprocess.run([sys.executable, "-c", probe]).returncode == 0


def _deny_write_execute() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(97)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel in a fresh venv with its runtime dependencies only, at the versions
    of constraints.txt (as the image's builder stage installs them)."""
    work = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        env=env,
        timeout=240,
    )
    (wheel,) = dist.glob("ocpp_bridge-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(CONSTRAINTS),
            str(wheel),
        ],
        check=True,
        env=env,
        cwd=work,
        timeout=280,
    )
    return venv


@pytest.mark.timeout(300)
def test_installed_wheel_runs_like_the_container(
    installed: Path, broker: Broker, tmp_path: Path
) -> None:
    """SLOW (wheel build, venv install from PyPI). The venv's `ocpp-bridge run` with
    deploy/container.toml and the compose environment (pointed at a local Mosquitto and the
    demo CSMS) through the image's entry point (deploy/entrypoint.sh), `ocpp-bridge health` as
    the HEALTHCHECK runs it, then SIGTERM as `docker stop` and systemd send it. Under the
    kernel's memory-deny-write-execute when it has one (the unit's MemoryDenyWriteExecute=yes)."""
    venv_bin = installed / "bin"
    python, cli = str(venv_bin / "python"), str(venv_bin / "ocpp-bridge")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("OCPP_BRIDGE_")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PATH"] = f"{venv_bin}:{env['PATH']}"  # as the image's PATH, for the entry point

    def venv_run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, **kwargs
        )

    # Runtime dependencies only; the package is the installed one, schemas included.
    listed = venv_run(python, "-m", "pip", "list", "--format=json")
    versions = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    names = set(versions)
    assert {"ocpp-bridge", "ocpp", "websockets", "aiomqtt", "pydantic", "cryptography"} <= names
    assert not names & {"pytest", "hypothesis", "trustme", "ruff", "mypy"}, names
    pins = constraint_pins()
    for name, version in versions.items():  # the pinned versions, as in the image
        if name not in ("ocpp-bridge", "pip", "setuptools", "wheel"):
            assert Version(version) == pins[name], f"{name} {version}, pinned {pins[name]}"
    where = venv_run(
        python, "-c", "import bridge, pathlib; print(pathlib.Path(bridge.__file__).parent)"
    )
    package = Path(where.stdout.strip())
    assert package.is_relative_to(installed), package
    assert sorted(p.name for p in (package / "schemas").glob("*.json")), "no schemas in the wheel"
    checked = venv_run(cli, "validate", str(EXAMPLES / "request.GetVariables.json"))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The demo CSMS, from the venv too.
    csms_port = free_port()
    csms_log = tmp_path / "demo_csms.log"
    with csms_log.open("w") as log:
        csms = subprocess.Popen(
            [python, "-m", "bridge.demo_csms", "--host", "127.0.0.1", "--port", str(csms_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        _wait_port("127.0.0.1", csms_port)
        config = tmp_path / "bridge.toml"
        shutil.copy(CONTAINER_TOML, config)
        run_dir, state_dir = tmp_path / "run", tmp_path / "state"
        run_dir.mkdir(mode=0o700)
        state_dir.mkdir(mode=0o700)
        # As compose.yaml and the image set them, pointed at this test's broker and CSMS.
        env.update(
            RUNTIME_DIRECTORY=str(run_dir),
            OCPP_BRIDGE_MQTT__HOST=broker.host,
            OCPP_BRIDGE_MQTT__PORT=str(broker.port),
            OCPP_BRIDGE_STORAGE__PATH=str(state_dir / "bridge.db"),
            OCPP_BRIDGE_CSMS__URL=f"ws://127.0.0.1:{csms_port}/ocpp",
        )
        health = [cli, "health", "--config", str(config)]
        before = venv_run(*health)
        assert before.returncode == 1, before.stdout
        assert before.stdout.startswith("not running"), before.stdout

        bridge_log = tmp_path / "bridge.log"
        with bridge_log.open("w") as log:
            bridge = subprocess.Popen(
                ["sh", str(ENTRYPOINT_SH), "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
                preexec_fn=_deny_write_execute if _mdwe_supported() else None,
            )
        try:
            deadline = time.monotonic() + 20
            line = ""
            while time.monotonic() < deadline:
                assert bridge.poll() is None, bridge_log.read_text()
                result = venv_run(*health)
                line = result.stdout.strip()
                if result.returncode == 0 and "boot Accepted" in line:
                    break
                time.sleep(0.3)
            assert line.startswith("ok: mqtt connected"), line + "\n" + bridge_log.read_text()
            assert "csms connected (slot 1, boot Accepted)" in line, line
            frames = csms_log.read_text()
            assert re.search(r"CP001 → CSMS: \[2,.*BootNotification", frames), frames
            assert (state_dir / "bridge.db").stat().st_mode & 0o777 == 0o600

            bridge.send_signal(signal.SIGTERM)
            assert bridge.wait(STOP_TIMEOUT) == 0, bridge_log.read_text()
        finally:
            if bridge.poll() is None:
                bridge.kill()
                bridge.wait()
        output = bridge_log.read_text()
        assert "Traceback" not in output, output
        assert "ocpp-bridge stopped" in output, output
        after = venv_run(*health)
        assert after.returncode == 1, after.stdout
        assert after.stdout.startswith("not running"), after.stdout
        assert not list(run_dir.iterdir()), "the status file outlived the service"
        deadline = time.monotonic() + 5
        while "CP001: disconnected (code 1000)" not in csms_log.read_text():
            assert time.monotonic() < deadline, csms_log.read_text()
            time.sleep(0.1)
    finally:
        csms.terminate()
        csms.wait(10)
