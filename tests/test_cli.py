"""`ocpp-bridge` as users start it: exit statuses, signals, restarts, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bridge import __version__
from tests.conftest import BRIDGE, Broker, Oem, example, oem_client, write_config

OFFLINE_THRESHOLD = {
    "component": {"name": "OCPPCommCtrlr"},
    "variable": {"name": "OfflineThreshold"},
}


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*BRIDGE, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )


async def wait_answer(oem: Oem, timeout: float = 15.0) -> dict:
    """Ask until the bridge (just started) answers."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await oem.request(example("request.GetVariables"), timeout=1.0)
        except TimeoutError:
            if asyncio.get_running_loop().time() > deadline:
                raise


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    process.send_signal(sig)
    return process.wait(15)


def test_version() -> None:
    out = subprocess.run([*BRIDGE, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"ocpp-bridge {__version__}"


def test_console_script_is_installed() -> None:
    out = subprocess.run(["ocpp-bridge", "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def test_missing_config_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [*BRIDGE, "run", "--config", str(tmp_path / "nope.toml")], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"ocpp-bridge: {tmp_path / 'nope.toml'}: cannot read the configuration file (No such file or directory)"
    )


def test_wrong_key_is_named_without_a_traceback(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "bridge.toml", None, extra='[device_model]\n"OCPPCommCtrlr.HeartBeat" = 5'
    )
    out = subprocess.run([*BRIDGE, "run", "--config", str(config)], capture_output=True, text=True)
    assert out.returncode == 2
    assert 'device_model."OCPPCommCtrlr.HeartBeat": unknown variable' in out.stderr
    assert "Traceback" not in out.stderr


def test_usage_errors_exit_2() -> None:
    assert subprocess.run([*BRIDGE], capture_output=True).returncode == 2
    assert subprocess.run([*BRIDGE, "run"], capture_output=True).returncode == 2


def test_unusable_storage_path_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bridge.toml", None)
    (tmp_path / "bridge.db").write_bytes(b"this is not a database, it is a text file" * 100)
    out = subprocess.run([*BRIDGE, "run", "--config", str(config)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "storage.path:" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signals_stop_the_service_with_exit_0(
    tmp_path: Path, broker: Broker, sig: int
) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    process = start(config, tmp_path / "bridge.log")
    try:
        async with oem_client(broker) as oem:
            answer = await wait_answer(oem)
            assert answer["data"]["message_type"] == "CallResult"
    finally:
        code = await asyncio.to_thread(stop, process, sig)
    assert code == 0
    log = (tmp_path / "bridge.log").read_text()
    assert "ocpp-bridge stopped" in log
    assert "Traceback" not in log


async def test_values_survive_a_restart_and_a_kill_9(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    process = start(config, tmp_path / "bridge.log")
    try:
        async with oem_client(broker) as oem:
            await wait_answer(oem)
            data = await oem.ocpp(
                "SetVariables",
                {"setVariableData": [{**OFFLINE_THRESHOLD, "attributeValue": "321"}]},
            )
            assert data["payload"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
            install = await oem.request(example("request.InstallCertificate"))
            assert install["data"]["payload"]["status"] == "Accepted"
    finally:
        # The answer was sent: the values are on disk. No clean shutdown.
        process.kill()
        process.wait(10)

    process = start(config, tmp_path / "bridge2.log")
    try:
        async with oem_client(broker) as oem:
            await wait_answer(oem)
            data = await oem.ocpp("GetVariables", {"getVariableData": [OFFLINE_THRESHOLD]})
            assert data["payload"]["getVariableResult"][0]["attributeValue"] == "321"
            listing = await oem.request(example("request.GetInstalledCertificateIds"))
            assert listing["data"]["payload"]["status"] == "Accepted"
    finally:
        assert await asyncio.to_thread(stop, process) == 0


async def test_the_store_file_is_private(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "bridge.toml", broker, csms='password = "0123456789abcdefXYZ"')
    process = start(config, tmp_path / "bridge.log")
    try:
        async with oem_client(broker) as oem:
            await wait_answer(oem)
    finally:
        assert await asyncio.to_thread(stop, process) == 0
    assert os.stat(tmp_path / "bridge.db").st_mode & 0o077 == 0
    assert "0123456789abcdefXYZ" not in (tmp_path / "bridge.log").read_text()


def test_malformed_json_in_the_environment_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bridge.toml", None)
    out = subprocess.run(
        [*BRIDGE, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "OCPP_BRIDGE_STATION__EVSES": "[1, 1"},
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "ocpp-bridge: environment OCPP_BRIDGE_STATION__EVSES: must be a JSON list, e.g. [1, 1]"
    )


def test_a_wrong_environment_value_names_the_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bridge.toml", None)
    out = subprocess.run(
        [*BRIDGE, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "OCPP_BRIDGE_MQTT__PORT": "0"},
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip() == "ocpp-bridge: environment OCPP_BRIDGE_MQTT__PORT: must be at least 1"
    )


async def test_unknown_environment_names_are_logged_at_start(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    process = subprocess.Popen(
        [*BRIDGE, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "bridge.log").open("wb"),
        env={**os.environ, "OCPP_BRIDGE_MQT__PORT": "1884", "OCPP_BRIDGE_CSMS_URL": "ws://x/y"},
    )
    try:
        async with oem_client(broker) as oem:
            await wait_answer(oem)  # not fatal: it runs
    finally:
        assert await asyncio.to_thread(stop, process) == 0
    log = (tmp_path / "bridge.log").read_text()
    assert (
        "WARNING bridge.config: environment OCPP_BRIDGE_CSMS_URL: ignored, not a configuration "
        "variable (OCPP_BRIDGE_<SECTION>__<KEY>); did you mean OCPP_BRIDGE_CSMS__URL?"
    ) in log
