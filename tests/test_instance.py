"""One bridge per store and per station (issue 8): a second `ocpp-bridge run` exits 2 naming the
first one's pid, instead of fighting over the MQTT client id and the CSMS connection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings, load_settings
from bridge.instance import InstanceError, claim, guard_names
from tests.conftest import BRIDGE, Broker, oem_client, write_config
from tests.test_cli import start, stop, wait_answer


def run_to_exit(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BRIDGE, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )


async def answering(broker: Broker) -> None:
    async with oem_client(broker) as oem:
        await wait_answer(oem)


async def test_a_second_bridge_on_the_same_store_exits_2_and_kill_9_frees_it(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    first = start(config, tmp_path / "first.log")
    try:
        await answering(broker)
        # The same file again, and another station id on the same store.
        other_id = write_config(tmp_path / "other-id.toml", broker, station_id="CP002")
        for second_config in (config, other_id):
            second = await asyncio.to_thread(run_to_exit, second_config)
            assert second.returncode == 2
            assert second.stderr.strip() == (
                f"ocpp-bridge: storage.path: another ocpp-bridge (pid {first.pid}) uses this "
                f"store ({tmp_path / 'bridge.db'})"
            )
        assert first.poll() is None  # the first one is not disturbed
    finally:
        first.kill()  # kill -9: no clean shutdown, the kernel releases the locks
        first.wait(10)

    again = start(config, tmp_path / "again.log")
    try:
        await answering(broker)
    finally:
        assert await asyncio.to_thread(stop, again) == 0
    assert "another ocpp-bridge" not in (tmp_path / "again.log").read_text()


async def test_a_second_bridge_with_the_same_station_id_exits_2(
    tmp_path: Path, broker: Broker
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = write_config(tmp_path / "a" / "bridge.toml", broker)
    elsewhere = write_config(tmp_path / "b" / "bridge.toml", broker)  # its own store
    first = start(config, tmp_path / "first.log")
    try:
        await answering(broker)
        second = await asyncio.to_thread(run_to_exit, elsewhere)
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"ocpp-bridge: another ocpp-bridge (pid {first.pid}) runs station CP001 "
            f"(same MQTT broker 127.0.0.1:{broker.port})"
        )
        assert not (tmp_path / "b" / "bridge.db").exists()  # refused before the store opened
    finally:
        first.kill()
        first.wait(10)
    again = start(elsewhere, tmp_path / "again.log")
    try:
        await answering(broker)
    finally:
        assert await asyncio.to_thread(stop, again) == 0


def settings_for(tmp_path: Path, name: str, station_id: str, **config: Any) -> Settings:
    (tmp_path / name).mkdir()
    return load_settings(
        write_config(tmp_path / name / "bridge.toml", None, station_id=station_id, **config)
    )


def test_the_station_is_claimed_per_broker_and_per_csms(tmp_path: Path) -> None:
    station = f"T{uuid.uuid4().hex[:12]}"  # not a station another test run on this host uses
    csms = 'url = "ws://127.0.0.1:9/ocpp"'
    held = claim(settings_for(tmp_path, "a", station, csms=csms, mqtt_port=1883))
    try:
        with pytest.raises(InstanceError) as info:
            claim(settings_for(tmp_path, "b", station, mqtt_port=1883))
        assert str(info.value) == (
            f"another ocpp-bridge (pid {os.getpid()}) runs station {station} "
            "(same MQTT broker 127.0.0.1:1883)"
        )
        with pytest.raises(InstanceError) as info:
            claim(settings_for(tmp_path, "c", station, csms=csms, mqtt_port=1884))
        assert str(info.value) == (
            f"another ocpp-bridge (pid {os.getpid()}) runs station {station} "
            "(same CSMS ws://127.0.0.1:9/ocpp)"
        )
        # Another broker and no CSMS: nothing is shared, nothing to fight over.
        claim(settings_for(tmp_path, "d", station, mqtt_port=1884)).release()
    finally:
        held.release()
    claim(settings_for(tmp_path, "e", station, csms=csms, mqtt_port=1883)).release()


def test_guard_names_fit_an_abstract_socket_address(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, "a", "C" * 48, csms=f'url = "ws://{"h" * 60}.example:9/{"p" * 200}"'
    )
    names = guard_names(settings)
    assert len(names) == 2
    assert all(name.startswith(b"\0ocpp-bridge:" + b"C" * 48 + b":") for name, _ in names)
    assert all(len(name) <= 107 for name, _ in names)
