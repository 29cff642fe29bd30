"""`ocpp-bridge check-config --config FILE` (issue 8): the whole configuration checked as `run`
checks it, every effective value with its source, secrets masked, and nothing written."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from bridge.config import SECTIONS
from tests.conftest import BRIDGE, Broker, make_station, oem_client, write_config
from tests.test_cli import start, stop, wait_answer

PASSWORD = "0123456789abcdefXYZ"
MQTT_PASSWORD = "mqtt-Secret-in-the-environment"
PRESET_PASSWORD = "Another-Secret-Preset-42"
WS_URL = "ws://127.0.0.1:9/ocpp"


def command(
    action: str, config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("OCPP_BRIDGE_")}
    return subprocess.run(
        [*BRIDGE, action, "--config", str(config)],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
    )


def check_config(
    config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return command("check-config", config, env)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix != ".toml"}


def test_a_valid_configuration_prints_every_value_with_its_source_then_ok(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "bridge.toml",
        None,
        csms=f'url = "{WS_URL}"\nsecurity_profile = 1\npassword = "{PASSWORD}"',
        extra='[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 60\n'
        f'"SecurityCtrlr.BasicAuthPassword" = "{PRESET_PASSWORD}"',
    )
    out = check_config(
        config,
        {
            "OCPP_BRIDGE_MQTT__PASSWORD": MQTT_PASSWORD,
            "OCPP_BRIDGE_MQTT__PORT": "1884",
            "OCPP_BRIDGE_MQT__HOST": "typo",
        },
    )
    assert (out.returncode, out.stderr) == (0, "")
    lines = out.stdout.splitlines()
    assert lines[-1] == "configuration ok"
    values = {
        m["name"]: (m["value"], m["source"])
        for m in (
            re.fullmatch(r"(?P<name>\S+) = (?P<value>.+?) +# (?P<source>.+)", x) for x in lines
        )
        if m
    }
    assert values["station.id"] == ('"CP001"', "file")
    assert values["mqtt.port"] == ("1884", "environment OCPP_BRIDGE_MQTT__PORT")
    assert values["oem.request_timeout"] == ("5.0", "default")
    assert values["storage.max_queued"] == ("100000", "default")
    assert values["csms.password"] == ("********", "file")
    assert values["mqtt.password"] == ("********", "environment OCPP_BRIDGE_MQTT__PASSWORD")
    assert values['device_model."SecurityCtrlr.BasicAuthPassword"'] == ("********", "file")
    assert values['device_model."OCPPCommCtrlr.HeartbeatInterval"'] == ("60", "file")
    assert set(values) >= {f"{s}.{k}" for s, m in SECTIONS.items() for k in m.model_fields}
    assert (
        "warning: environment OCPP_BRIDGE_MQT__HOST: ignored, not a configuration variable "
        "(OCPP_BRIDGE_<SECTION>__<KEY>); did you mean OCPP_BRIDGE_MQTT__HOST?"
    ) in lines
    # What run would write on this fresh store, without any value.
    assert "store: would set network profile slot 1" in lines
    assert "store: would set SecurityCtrlr.BasicAuthPassword (Actual)" in lines
    assert "store: would set OCPPCommCtrlr.HeartbeatInterval (Actual)" in lines
    for secret in (PASSWORD, MQTT_PASSWORD, PRESET_PASSWORD):
        assert secret not in out.stdout
    assert set(re.findall(r"\*+", out.stdout)) == {"********"}  # never the length
    assert files(tmp_path) == {}  # no store, no lock, no status file


@pytest.mark.parametrize(
    ("config", "env"),
    [
        ({"csms": f'url = "{WS_URL}"\nsecurity_profile = 1'}, {}),
        ({"csms": f'url = "{WS_URL}"\nsecurity_profile = 1\npassword = "short"'}, {}),
        ({"extra": '[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = "soon"'}, {}),
        ({"extra": '[device_model]\n"EVSE[1].Power" = 5'}, {}),
        ({"evses": '[1, "2"]'}, {}),
        ({}, {"OCPP_BRIDGE_STATION__EVSES": "[1,"}),
        ({}, {"OCPP_BRIDGE_MQTT__PORT": "70000"}),
        ({"extra": "[oem]\ndelegate = ['BootNotification']"}, {}),
    ],
)
def test_a_refused_configuration_exits_2_with_the_sentence_run_stops_with(
    tmp_path: Path, config: dict[str, str], env: dict[str, str]
) -> None:
    # A station id of its own: run claims it (on the default broker address) before it refuses.
    station_id = f"T{uuid.uuid4().hex[:12]}"
    path = write_config(tmp_path / "bridge.toml", None, station_id=station_id, **config)
    checked = check_config(path, env)
    assert checked.returncode == 2
    assert files(tmp_path) == {}
    ran = command("run", path, env)
    assert ran.returncode == 2
    sentence = ran.stderr.strip().removeprefix("ocpp-bridge: ")
    assert checked.stderr.strip() == f"ocpp-bridge check-config: {sentence}"
    assert "Traceback" not in checked.stderr + checked.stdout


def test_unreadable_or_invalid_files_exit_2(tmp_path: Path) -> None:
    out = check_config(tmp_path / "missing.toml")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"ocpp-bridge check-config: {tmp_path / 'missing.toml'}: cannot read the configuration "
        "file (No such file or directory)"
    )
    (tmp_path / "bad.toml").write_text("[station\n")
    assert check_config(tmp_path / "bad.toml").returncode == 2


def test_an_existing_store_is_read_never_written(tmp_path: Path) -> None:
    """The file's password was applied at an earlier start and then removed from the file: run
    accepts that (the store has a password), so check-config must read the store to agree."""
    with_password = f'url = "{WS_URL}"\nsecurity_profile = 1\npassword = "{PASSWORD}"'
    make_station(tmp_path, csms=with_password).store.close()
    stored = files(tmp_path)

    config = write_config(
        tmp_path / "bridge.toml", None, csms=f'url = "{WS_URL}"\nsecurity_profile = 1'
    )
    out = check_config(config)
    assert out.returncode == 0, out.stderr
    assert not [line for line in out.stdout.splitlines() if line.startswith("store:")]
    assert files(tmp_path) == stored

    changed = write_config(
        tmp_path / "bridge.toml",
        None,
        csms=f'url = "{WS_URL}"\nsecurity_profile = 1',
        extra='[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 90',
    )
    out = check_config(changed)
    assert out.returncode == 0, out.stderr
    assert [x for x in out.stdout.splitlines() if x.startswith("store:")] == [
        "store: would set OCPPCommCtrlr.HeartbeatInterval (Actual)"
    ]
    assert files(tmp_path) == stored

    # The same file on a fresh station is refused, as run would refuse it.
    for name in stored:
        (tmp_path / name).unlink()
    out = check_config(config)
    assert out.returncode == 2
    assert out.stderr.strip().endswith("csms.password: required for security_profile 1")


async def test_check_config_works_while_the_service_runs(tmp_path: Path, broker: Broker) -> None:
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        extra='[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 60',
    )
    process = start(config, tmp_path / "bridge.log")
    try:
        async with oem_client(broker) as oem:
            await wait_answer(oem)
        out = await asyncio.to_thread(check_config, config)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == "configuration ok"
        # Everything is applied already: the check reads what the running service wrote.
        assert not [line for line in out.stdout.splitlines() if line.startswith("store:")]
        assert process.poll() is None
    finally:
        assert await asyncio.to_thread(stop, process) == 0
