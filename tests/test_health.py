"""`ocpp-bridge health`: up and connected to the broker, one line of state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.health import STALE, check, status_path
from tests.conftest import BRIDGE, Broker, free_port, running_bridge, write_config


def health(config: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = subprocess.run(
        [*BRIDGE, "health", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return out.returncode, out.stdout.strip()


def test_not_running(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bridge.toml", None)
    code, line = health(config)
    assert code == 1
    assert line.startswith("not running (no status file")


def test_config_error_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[station]\n")
    out = subprocess.run(
        [*BRIDGE, "health", "--config", str(tmp_path / "bad.toml")], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "station.id: required key is missing" in out.stderr


async def test_up_and_connected_then_broker_down_then_stopped(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(
        tmp_path / "bridge.toml", broker, csms=f'url = "ws://127.0.0.1:{free_port()}/ocpp"'
    )
    process = subprocess.Popen([*BRIDGE, "run", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            code, line = await asyncio.to_thread(health, config)
            if code == 0:
                break
            await asyncio.sleep(0.1)
        assert code == 0, line
        assert line.startswith(f"ok: mqtt connected to 127.0.0.1:{broker.port}; csms ")
        assert "up 0m" in line
        broker.stop()
        for _ in range(100):
            code, line = await asyncio.to_thread(health, config)
            if code == 1:
                break
            await asyncio.sleep(0.1)
        assert code == 1
        assert line.startswith(f"unhealthy: mqtt disconnected to 127.0.0.1:{broker.port}")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
    code, line = await asyncio.to_thread(health, config)
    assert (code, line.split(" (")[0]) == (1, "not running")


async def test_a_killed_or_hung_service_is_unhealthy(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    settings = load_settings(config)
    async with running_bridge(config):
        for _ in range(40):  # the file follows the state within a poll (2 s)
            healthy, line = check(settings)
            if healthy:
                break
            await asyncio.sleep(0.1)
        assert healthy, line
        body = json.loads(status_path(settings).read_text())
        healthy, line = check(settings, now=body["updated"] + STALE + 1)
        assert not healthy
        assert line.startswith("hung: no status update")
        body["pid"] = 999999  # a process that does not exist: killed with -9
        status_path(settings).write_text(json.dumps(body))
        healthy, line = check(settings)
        assert (healthy, line) == (False, "not running (process 999999 is gone)")


def test_runtime_directory_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(write_config(tmp_path / "bridge.toml", None))
    assert status_path(settings) == tmp_path / "ocpp-bridge.status.json"
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/ocpp-bridge")
    assert status_path(settings) == Path("/run/ocpp-bridge/ocpp-bridge.status.json")
