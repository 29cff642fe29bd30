"""scripts/quickstart: its configuration file, its install step, and the whole script running.

The slow tests work on a copy of the repository's installable parts with its own venv (never the
Python that runs these tests: `install_project` would re-point its editable install). The copy
and the venv are set up once per module; the first install fetches the pinned runtime
dependencies (from PyPI, through pip's cache). Mosquitto must be installed (scripts/test does it);
the tests never let the script reach apt.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import load_settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
BRIDGE_TOML = ROOT / "deploy" / "bridge.toml"
WRITE_CONFIG = ROOT / "scripts" / "_quickstart_config.py"
STAMP = ".quickstart/install.stamp"
STORE_ARG = ("--storage", "x.db")


def need(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; scripts/test installs it")
    pytest.skip(f"{what} is missing (scripts/test installs it)")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the bridge's settings and another venv's traces."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OCPP_BRIDGE_", "QUICKSTART_"))
        and k not in ("PYTHONPATH", "VIRTUAL_ENV", "RUNTIME_DIRECTORY", "PIP_CONSTRAINT")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def write_config(target: Path, *args: str, source: Path = BRIDGE_TOML) -> None:
    subprocess.run(
        [sys.executable, str(WRITE_CONFIG), str(source), str(target), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- the configuration file -----------------------------------------------------------------


def test_quickstart_config_sets_the_run_keys_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file `run` and `health` both read: deploy/bridge.toml with the store, the broker and
    the CSMS of the quick start, everything else as in deploy/bridge.toml."""
    for key in list(os.environ):
        if key.startswith("OCPP_BRIDGE_"):
            monkeypatch.delenv(key)
    target = tmp_path / ".quickstart" / "bridge.toml"
    store = tmp_path / ".quickstart" / "bridge.db"
    write_config(
        target, "--storage", str(store), "--mqtt-port", "18830", "--csms-url", "ws://127.0.0.1:9/x"
    )
    made, original = load_settings(target), load_settings(BRIDGE_TOML)
    assert Path(made.storage.path) == store
    assert made.mqtt.host == "127.0.0.1"
    assert made.mqtt.port == 18830
    assert made.csms.url == "ws://127.0.0.1:9/x"
    assert made.oem.startup_timeout == 0  # no OEM firmware in the quick start
    changed = {
        ("storage", "path"),
        ("mqtt", "host"),
        ("mqtt", "port"),
        ("csms", "url"),
        ("oem", "startup_timeout"),
    }
    for section, values in original.model_dump().items():
        for key, value in values.items() if isinstance(values, dict) else [(None, values)]:
            if (section, key) not in changed:
                mine = made.model_dump()[section]
                assert (mine[key] if key is not None else mine) == value, (section, key)
    assert target.read_text().startswith("# Written by scripts/quickstart from ")


def test_quickstart_config_refuses_a_source_that_is_not_toml(tmp_path: Path) -> None:
    source = tmp_path / "broken.toml"
    source.write_text("[station\nid = 1\n")
    result = subprocess.run(
        [sys.executable, str(WRITE_CONFIG), str(source), str(tmp_path / "out.toml"), *STORE_ARG],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.toml").exists()


_names = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)
_values = st.one_of(
    st.integers(-(2**31), 2**31), st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]))
)
_documents = st.dictionaries(_names, st.dictionaries(_names, _values, max_size=4), max_size=4)


def _toml(document: dict[str, dict[str, Any]]) -> str:
    """The document as TOML with comments; every character of a string escaped (\\UXXXXXXXX),
    so the input does not depend on the escaper under test."""

    def value(v: int | str) -> str:
        return str(v) if isinstance(v, int) else '"' + "".join(f"\\U{ord(c):08x}" for c in v) + '"'

    lines = []
    for section, values in document.items():
        lines += ["", f"[{section}]  # {section}"]
        lines += [f"{key} = {value(v)}    # about {key}" for key, v in values.items()]
    return "\n".join(lines) + "\n"


@given(
    document=_documents,
    port=st.integers(1, 65535),
    path=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1),
)
def test_quickstart_config_rewrite_sets_exactly_the_given_keys(
    document: dict[str, dict[str, Any]], port: int, path: str
) -> None:
    """Any file of sections and keys: the given keys take the given values (replaced, or added
    where missing), every other key keeps its value."""
    sys.path.insert(0, str(WRITE_CONFIG.parent))
    try:
        from _quickstart_config import rewrite
    finally:
        sys.path.remove(str(WRITE_CONFIG.parent))
    settings: dict[tuple[str, str], str | int] = {("storage", "path"): path, ("mqtt", "port"): port}
    result = tomllib.loads(rewrite(_toml(document), settings))
    expected = {section: dict(values) for section, values in document.items()}
    for (section, key), value in settings.items():
        expected.setdefault(section, {})[key] = value
    assert result == expected


# --- the install step and the running script (slow) -----------------------------------------


@dataclass
class Checkout:
    root: Path
    venv: Path

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(
            VIRTUAL_ENV=str(self.venv), PATH=f"{self.venv / 'bin'}:{os.environ['PATH']}", **extra
        )

    def install(self) -> subprocess.CompletedProcess[str]:
        """scripts/_setup.sh's install step, as scripts/quickstart runs it."""
        return subprocess.run(
            ["bash", "-c", '. scripts/_setup.sh && install_project "" && echo "PY=$PY"'],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )

    def dist_info(self) -> Path:
        (found,) = (self.venv / "lib").glob("python*/site-packages/ocpp_bridge-*.dist-info")
        return found


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Checkout:
    """A copy of what the quick start uses, a venv, and the first install into it."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        need("mosquitto")  # else install_mosquitto would run apt
    root = tmp_path_factory.mktemp("checkout") / "ocpp-bridge"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db*", ".quickstart", "*.egg-info")
    for name in ("bridge", "scripts", "deploy"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    shutil.copytree(ROOT / "tests" / "examples", root / "tests" / "examples")
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(ROOT / name, root / name)
    venv = root.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    made = Checkout(root, venv)
    first = made.install()
    assert first.returncode == 0, first.stderr
    assert "installing ocpp-bridge" in first.stderr, first.stderr
    assert (root / STAMP).is_file()
    return made


@pytest.mark.timeout(600)
def test_quickstart_install_step_skips_when_nothing_changed(checkout: Checkout) -> None:
    """SLOW. A second start with nothing changed does not reinstall; a changed pyproject.toml
    does. What got installed is the pinned set of constraints.txt."""
    dist_info = checkout.dist_info()
    before = dist_info.stat()

    again = checkout.install()
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stderr, again.stderr
    assert "installing" not in again.stderr, again.stderr
    after = checkout.dist_info()
    assert after == dist_info
    assert (after.stat().st_ino, after.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # The pins, not whatever is newest.
    python = checkout.venv / "bin" / "python"
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        env=checkout.env(),
        timeout=120,
    ).stdout.split()
    pins = {
        line.split("==")[0].lower().replace("_", "-"): line
        for line in (checkout.root / "constraints.txt").read_text().split()
        if "==" in line
    }
    for line in frozen:
        name = line.split("==")[0].lower().replace("_", "-")
        assert line.lower().replace("_", "-") == pins[name].lower().replace("_", "-"), line

    # An install this step did not make (or one gone): the stamp alone is not trusted.
    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "-q", "-y", "paho-mqtt"],
        check=True,
        env=checkout.env(),
        timeout=120,
    )
    repaired = checkout.install()
    assert repaired.returncode == 0, repaired.stderr
    assert "paho-mqtt is not installed" in repaired.stderr, repaired.stderr
    assert "installing ocpp-bridge" in repaired.stderr, repaired.stderr

    pyproject = checkout.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# changed\n")
    changed = checkout.install()
    assert changed.returncode == 0, changed.stderr
    assert "installing ocpp-bridge" in changed.stderr, changed.stderr
    assert checkout.install().stderr.count("up to date") == 1


@pytest.mark.timeout(300)
def test_quickstart_runs_and_its_health_command_finds_it(checkout: Checkout) -> None:
    """SLOW. scripts/quickstart starts Mosquitto, the demo CSMS, the bridge and the OEM simulator;
    the health command it prints says ok with boot Accepted while it runs; the simulator's
    charging session reaches the demo CSMS within a minute; Ctrl-C (SIGINT to its process group, as a
    terminal sends it) stops all three, and health then says not running."""
    mqtt_port, csms_port = free_port(), free_port()
    env = checkout.env(QUICKSTART_MQTT_PORT=str(mqtt_port), QUICKSTART_CSMS_PORT=str(csms_port))
    log_path = checkout.root.parent / "quickstart.log"
    with log_path.open("w") as log:
        script = subprocess.Popen(
            ["bash", "scripts/quickstart"],
            cwd=checkout.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        command: list[str] = []
        while not command:
            assert script.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            match = re.search(
                r"^\s+(\S*ocpp-bridge health --config \S+)$", log_path.read_text(), re.M
            )
            if match:
                command = match.group(1).split()
            time.sleep(0.2)
        assert command[-1] == ".quickstart/bridge.toml", command
        health = [str(checkout.venv / "bin" / "ocpp-bridge"), *command[1:]]
        line = ""
        while "boot Accepted" not in line:
            assert script.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, line + "\n" + log_path.read_text()
            result = subprocess.run(
                health, cwd=checkout.root, env=env, capture_output=True, text=True, timeout=60
            )
            line = result.stdout.strip()
            time.sleep(0.3)
        assert result.returncode == 0, line
        assert line.startswith(f"ok: mqtt connected to 127.0.0.1:{mqtt_port}"), line
        assert (checkout.root / ".quickstart" / "bridge.db").exists()
        assert "installing" not in log_path.read_text()  # the module's install was kept
        # The simulator plays one charging session: the demo CSMS log shows it within a minute.
        csms_log = checkout.root / ".quickstart" / "demo_csms.log"
        session_deadline = time.monotonic() + 60
        while '"eventType":"Ended"' not in csms_log.read_text().replace(" ", ""):
            assert script.poll() is None, log_path.read_text()
            assert time.monotonic() < session_deadline, csms_log.read_text()[-3000:]
            time.sleep(0.5)
        frames = csms_log.read_text()
        for needed in ('"Authorize"', '"TransactionEvent"', '"Started"', '"Updated"'):
            assert needed in frames, needed

        os.killpg(script.pid, signal.SIGINT)
        assert script.wait(60) == 130, log_path.read_text()
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
    after = subprocess.run(
        health, cwd=checkout.root, env=env, capture_output=True, text=True, timeout=60
    )
    assert after.returncode == 1, after.stdout
    assert after.stdout.startswith("not running"), after.stdout
    for port in (mqtt_port, csms_port):  # Mosquitto and the demo CSMS are gone too
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
            pass
    output = log_path.read_text()
    assert "Traceback" not in output, output
