"""The configuration applied to the store (issue 8): everything is checked first, a refused start
changes nothing, and an accepted one writes everything in one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, load_settings
from bridge.station import Station
from bridge.station.configuration import plan
from bridge.store import Store
from tests.conftest import make_station, ocpp_call, write_config

PASSWORD = "Sixteen-Chars-Pw.42"
WS_URL = "ws://127.0.0.1:9000/ocpp"


def snapshot(store: Store) -> dict[str, Any]:
    return {
        "values": store.variable_values(),
        "profiles": store.network_profiles(),
        "applied": store.applied_config(),
        "certificates": store.certificates(),
    }


def start(tmp_path: Path, **config: str) -> Station:
    """A Station over the store in tmp_path (kept open for the test to look at)."""
    settings = load_settings(write_config(tmp_path / "bridge.toml", None, **config))
    return Station(settings, Store(settings.storage.path))


def refused(tmp_path: Path, **config: str) -> str:
    settings = load_settings(write_config(tmp_path / "bridge.toml", None, **config))
    store = Store(settings.storage.path)
    try:
        with pytest.raises(ConfigError) as info:
            Station(settings, store)
    finally:
        store.close()
    return str(info.value)


# Configurations a start refuses after checks that used to write parts of them first.
REFUSED = [
    pytest.param(
        {"csms": 'url = "wss://csms.example/ocpp"\nsecurity_profile = 2'},
        "csms.password: required for security_profile 2",
        id="profile-2-without-password",
    ),
    pytest.param(
        {"csms": f'url = "{WS_URL}"\nsecurity_profile = 1'},
        "csms.password: required for security_profile 1",
        id="profile-1-without-password",
    ),
    pytest.param(
        {"csms": f'url = "{WS_URL}"\nsecurity_profile = 1\npassword = "tiny"'},
        "csms.password: must be",
        id="bad-password",
    ),
    pytest.param(
        {
            "csms": f'url = "{WS_URL}"',
            "extra": '[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 60\n'
            '"Connector[1,1].ConnectorType" = "sType2"\n"AuthCtrlr.NoSuch" = 1',
        },
        'device_model."AuthCtrlr.NoSuch": unknown variable',
        id="unknown-preset-after-good-ones",
    ),
    pytest.param(
        {
            "csms": f'url = "{WS_URL}"',
            "extra": '[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 60\n'
            '"OCPPCommCtrlr.OfflineThreshold" = "soon"',
        },
        'device_model."OCPPCommCtrlr.OfflineThreshold": must be a 32-bit integer',
        id="bad-preset-value-after-good-ones",
    ),
    pytest.param(
        {"extra": '[device_model]\n"OCPPCommCtrlr.NetworkConfigurationPriority" = "1,2"'},
        'device_model."OCPPCommCtrlr.NetworkConfigurationPriority": slot ',
        id="priority-naming-empty-slots",
    ),
]


@pytest.mark.parametrize(("config", "sentence"), REFUSED)
def test_a_refused_first_start_writes_nothing(
    tmp_path: Path, config: dict[str, str], sentence: str
) -> None:
    store = Store(tmp_path / "bridge.db")  # the schema, as any start creates it
    store.close()
    empty = (tmp_path / "bridge.db").read_bytes()

    assert sentence in refused(tmp_path, **config)

    store = Store(tmp_path / "bridge.db")
    try:
        assert snapshot(store) == {"values": {}, "profiles": {}, "applied": {}, "certificates": []}
    finally:
        store.close()
    assert (tmp_path / "bridge.db").read_bytes() == empty


@pytest.mark.parametrize(("config", "sentence"), REFUSED)
async def test_a_refused_restart_leaves_the_existing_store_as_it_was(
    tmp_path: Path, config: dict[str, str], sentence: str
) -> None:
    # A station that ran: the file's values applied, then the CSMS changed one.
    station = start(
        tmp_path,
        csms='url = "ws://old.example:9000/ocpp"\nsecurity_profile = 0',
        extra='[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 30',
    )
    payload = await ocpp_call(
        station,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "OfflineThreshold"},
                    "attributeValue": "321",
                }
            ]
        },
    )
    assert payload["setVariableResult"][0]["attributeStatus"] == "Accepted"
    before = snapshot(station.store)
    station.store.close()
    stored = (tmp_path / "bridge.db").read_bytes()
    assert before["profiles"]
    assert before["applied"]

    assert sentence in refused(tmp_path, **config)

    store = Store(tmp_path / "bridge.db")
    try:
        assert snapshot(store) == before
    finally:
        store.close()
    assert (tmp_path / "bridge.db").read_bytes() == stored


def test_an_accepted_start_writes_profile_values_and_digests_in_one_transaction(
    tmp_path: Path,
) -> None:
    """The store fails on the last row of the start's write: nothing of it stays."""
    store = Store(tmp_path / "bridge.db")
    store._db.execute(
        "CREATE TRIGGER disk_full BEFORE INSERT ON config_applied "
        "WHEN NEW.key = 'device_model.\"OCPPCommCtrlr.HeartbeatInterval\"' "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    settings = load_settings(
        write_config(
            tmp_path / "bridge.toml",
            None,
            csms=f'url = "{WS_URL}"\nsecurity_profile = 1\npassword = "{PASSWORD}"',
            extra='[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 60',
        )
    )
    try:
        with pytest.raises(sqlite3.IntegrityError, match="disk full"):
            Station(settings, store)
        assert snapshot(store) == {"values": {}, "profiles": {}, "applied": {}, "certificates": []}
        store._db.execute("DROP TRIGGER disk_full")
        station = Station(settings, store)
        assert set(store.network_profiles()) == {1}
        assert store.variable_values()[("SecurityCtrlr.SecurityProfile", "Actual")] == "1"
        assert store.variable_values()[("SecurityCtrlr.BasicAuthPassword", "Actual")] == PASSWORD
        assert station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "60"
        assert len(store.applied_config()) == 5  # profile, password, vendor, slot 1, preset
    finally:
        store.close()


def test_a_priority_preset_may_name_the_slot_the_same_start_fills(tmp_path: Path) -> None:
    station = make_station(
        tmp_path,
        csms=f'url = "{WS_URL}"',
        extra='[device_model]\n"OCPPCommCtrlr.NetworkConfigurationPriority" = "1"',
    )
    assert station.network_profiles.priority() == [1]
    assert station.network_profiles.get(1) is not None


def test_plan_checks_without_writing_and_apply_writes(tmp_path: Path) -> None:
    station = start(tmp_path, csms=f'url = "{WS_URL}"')
    store = station.store
    before = snapshot(store)
    changed = load_settings(
        write_config(
            tmp_path / "bridge.toml",
            None,
            csms=f'url = "ws://new.example/ocpp"\nsecurity_profile = 1\npassword = "{PASSWORD}"',
            extra='[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 90',
        )
    )
    checked = plan(changed, station.device_model, station.network_profiles, store)
    assert snapshot(store) == before
    assert station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") != "90"
    assert checked.profile is not None
    assert checked.profile["ocppCsmsUrl"] == "ws://new.example/ocpp"
    assert {v.key for v, _, _ in checked.changes} == {
        "SecurityCtrlr.SecurityProfile",
        "SecurityCtrlr.BasicAuthPassword",
        "OCPPCommCtrlr.HeartbeatInterval",
    }
    checked.apply()
    assert store.network_profiles()[1] != before["profiles"][1]
    assert station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "90"
    assert station.device_model.value("SecurityCtrlr.SecurityProfile") == "1"
    # Applied: the same configuration plans nothing more.
    assert plan(changed, station.device_model, station.network_profiles, store).empty
    store.close()


def test_a_stored_password_satisfies_the_password_rule(tmp_path: Path) -> None:
    """The file's password was applied at an earlier start; the installer then removed it."""
    with_password = f'url = "{WS_URL}"\nsecurity_profile = 1\npassword = "{PASSWORD}"'
    start(tmp_path, csms=with_password).store.close()
    station = start(tmp_path, csms=f'url = "{WS_URL}"\nsecurity_profile = 1')
    assert station.device_model.value("SecurityCtrlr.BasicAuthPassword") == PASSWORD
    station.store.close()
