"""The OEM's device_model answer: checked whole, applied like the configuration file (at first
start and whenever the OEM changes a value; what the CSMS set in between stays), kept across
restarts; a change of identity or CSMS connection reconnects; OEM components join the device
model. End to end through Mosquitto and the demo CSMS."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import load_settings
from bridge.demo_csms import DemoCsms
from bridge.rpc import CallResult
from bridge.rpc.request import Request
from bridge.station import Station
from bridge.station.effects import Reconnect, Send
from bridge.station.oem_device_model import Refused, decimal_evse
from bridge.store import SCHEMA_VERSION, Store
from tests.conftest import Broker, Oem, free_port, ocpp_call, running_bridge, write_config

PASSWORD = "OEM-password-0001"
OTHER_PASSWORD = "OEM-password-0002"
METER = {"name": "OemMeter", "evse": {"id": 1}}


def answer(**changes: Any) -> dict[str, Any]:
    """A usable device_model answer for a station with evses = [1, 2]."""
    data: dict[str, Any] = {
        "model": "OEM-AC11",
        "vendor": "OEM Vendor",
        "identity": "OEM-0042",
        "basic_auth_password": PASSWORD,
        "ocpp_csms_url": "ws://csms.example:9000/ocpp",
        "security_profile": 1,
        "serial_number": "OEM-SN-1",
        "firmware_version": "2.3.4",
        "sim_iccid": "89490200001234567890",
        "sim_imsi": "262011234567890",
        "evses": [
            {
                "ocpp_id": 1,
                "iso15118_id": "DE*ABC*E1",
                "power_kw": 11,
                "supply_phases": 3,
                "connectors": [{"id": 1, "connector_type": "cType2"}],
            },
            {
                "ocpp_id": 2,
                "iso15118_id": "DE*ABC*E2",
                "power_kw": 7.4,
                "supply_phases": 1,
                "connectors": [{"id": 1, "connector_type": "sType2"}],
            },
        ],
        "components": [
            {
                "name": "OemMeter",
                "evse_id": "DE*ABC*E1",
                "variables": [
                    {"name": "Model", "value": "XM-1"},
                    {
                        "name": "Interval",
                        "value": 60,
                        "data_type": "integer",
                        "mutability": "ReadWrite",
                        "unit": "s",
                    },
                ],
            }
        ],
    }
    data.update(changes)
    return data


def config(tmp_path: Path, **options: Any) -> Path:
    options.setdefault("evses", "[1, 2]")
    return write_config(tmp_path / "bridge.toml", None, **options)


def open_station(tmp_path: Path, **options: Any) -> Station:
    settings = load_settings(config(tmp_path, **options))
    return Station(settings, Store(settings.storage.path))


def restart(station: Station, **options: Any) -> Station:
    """The same store after a restart (with a new configuration file when `options` say so)."""
    station.store.close()
    settings = station.settings
    if options:
        settings = load_settings(config(Path(settings.storage.path).parent, **options))
    return Station(settings, Store(settings.storage.path))


def stored(station: Station) -> dict[str, Any]:
    """Everything the store holds that an answer may change."""
    store = station.store
    return {
        "variables": store.variable_values(),
        "applied": store.applied_config(),
        "profiles": store.network_profiles(),
        "oem": store.oem_values(),
    }


def connect(station: Station) -> None:
    """As the CSMS link does: the next target is connected; the effects so far are done."""
    target = station.connectivity.next_target()
    assert target is not None
    station.csms_connected(target)
    station.take_effects()


def reconnects(station: Station) -> list[Reconnect]:
    return [e for e in station.take_effects() if isinstance(e, Reconnect)]


def get_item(component: dict[str, Any], variable: str) -> dict[str, Any]:
    return {"component": component, "variable": {"name": variable}}


async def get_value(station: Station, component: dict[str, Any], variable: str) -> Any:
    payload = await ocpp_call(
        station, "GetVariables", {"getVariableData": [get_item(component, variable)]}
    )
    (result,) = payload["getVariableResult"]
    return result.get("attributeValue", result["attributeStatus"])


async def set_value(station: Station, component: dict[str, Any], variable: str, value: str) -> str:
    item = {**get_item(component, variable), "attributeValue": value}
    payload = await ocpp_call(station, "SetVariables", {"setVariableData": [item]})
    (result,) = payload["setVariableResult"]
    return str(result["attributeStatus"])


# --- first start


def test_first_answer_applies_identity_connection_boot_fields_evses_and_components(
    tmp_path: Path,
) -> None:
    station = open_station(tmp_path)
    assert station.apply_device_model(answer()) is True
    dm = station.device_model
    assert station.identity == "OEM-0042"
    assert dm.value("SecurityCtrlr.Identity") == "OEM-0042"
    profile = station.network_profiles.get(1)
    assert profile is not None
    assert (profile["ocppCsmsUrl"], profile["securityProfile"]) == (
        "ws://csms.example:9000/ocpp",
        1,
    )
    assert dm.value("SecurityCtrlr.SecurityProfile") == "1"
    assert dm.value("SecurityCtrlr.BasicAuthPassword") == PASSWORD
    assert station.registration.boot_payload()["chargingStation"] == {
        "model": "OEM-AC11",
        "vendorName": "OEM Vendor",
        "serialNumber": "OEM-SN-1",
        "firmwareVersion": "2.3.4",
        "modem": {"iccid": "89490200001234567890", "imsi": "262011234567890"},
    }
    assert dm.value("ChargingStation.Model") == "OEM-AC11"
    assert dm.value("ChargingStation.VendorName") == "OEM Vendor"
    assert dm.value("SecurityCtrlr.OrganizationName") == "OEM Vendor"
    assert dm.value("EVSE[1].SupplyPhases") == "3"
    assert dm.value("EVSE[2].SupplyPhases") == "1"
    assert dm.value("EVSE[1].Power", "MaxSet") == "11000"
    assert dm.value("EVSE[2].Power", "MaxSet") == "7400"
    assert str(dm["EVSE[2].Power"].definition.max_limit) == "7400"
    assert dm.value("Connector[1,1].ConnectorType") == "cType2"
    assert dm.value("Connector[2,1].ConnectorType") == "sType2"
    assert dm.value("OemMeter@EVSE[1].Model") == "XM-1"
    # The target the connection would use: the OEM's URL, identity and password.
    target = station.connectivity.next_target()
    assert target is not None
    assert target.url == "ws://csms.example:9000/ocpp/OEM-0042"
    assert station.websocket_status()["identity"] == "OEM-0042"


def test_evse_number_maps_iso15118_ids_and_accepts_the_decimal_ocpp_id(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    assert [station.evse_number(i) for i in ("1", "2", "3", "DE*ABC*E1")] == [1, 2, None, None]
    station.apply_device_model(answer())
    assert station.evse_number("DE*ABC*E1") == 1
    assert station.evse_number("DE*ABC*E2") == 2
    assert station.evse_number("1") == 1  # the decimal form is always accepted
    for unknown in ("3", "0", "01", "+1", " 1", "de*abc*e1", "", "DE*ABC*E3"):
        assert station.evse_number(unknown) is None, unknown


def test_the_same_answer_again_changes_nothing(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    before = stored(station)
    station.take_effects()
    assert station.apply_device_model(answer()) is True
    assert stored(station) == before
    assert station.take_effects() == []
    station = restart(station)
    assert stored(station) == before
    station.apply_device_model(answer())
    assert stored(station) == before


async def test_what_the_csms_set_in_between_survives_an_unchanged_answer(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    security = {"name": "SecurityCtrlr"}
    assert await set_value(station, security, "BasicAuthPassword", OTHER_PASSWORD) == "Accepted"
    assert await set_value(station, security, "OrganizationName", "The Operator") == "Accepted"
    assert await set_value(station, METER, "Interval", "900") == "Accepted"
    slot_1 = {
        "ocppCsmsUrl": "ws://operator.example/ocpp",
        "securityProfile": 1,
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppInterface": "Wired0",
        "messageTimeout": 30,
    }
    result = await ocpp_call(
        station, "SetNetworkProfile", {"configurationSlot": 1, "connectionData": slot_1}
    )
    assert result == {"status": "Accepted"}
    for restarted in (False, True):
        if restarted:
            station = restart(station)
        station.apply_device_model(answer())
        dm = station.device_model
        assert dm.value("SecurityCtrlr.BasicAuthPassword") == OTHER_PASSWORD
        assert dm.value("SecurityCtrlr.OrganizationName") == "The Operator"
        assert await get_value(station, METER, "Interval") == "900"
        assert station.network_profiles.get(1) == slot_1


async def test_a_changed_answer_applies_again(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    assert await set_value(station, METER, "Interval", "900") == "Accepted"
    changed = answer(
        identity="OEM-0043",
        ocpp_csms_url="wss://csms.example/ocpp",
        security_profile=2,
        basic_auth_password=OTHER_PASSWORD,
        model="OEM-AC22",
        sim_iccid=None,
        sim_imsi=None,
    )
    changed["evses"][0]["power_kw"] = 22
    changed["evses"][0]["connectors"][0]["connector_type"] = "cCCS2"
    changed["components"][0]["variables"][1]["value"] = 120
    del changed["sim_iccid"], changed["sim_imsi"]
    assert station.apply_device_model(changed) is True
    dm = station.device_model
    assert station.identity == "OEM-0043"
    profile = station.network_profiles.get(1)
    assert profile is not None
    assert (profile["ocppCsmsUrl"], profile["securityProfile"]) == ("wss://csms.example/ocpp", 2)
    assert dm.value("SecurityCtrlr.SecurityProfile") == "2"
    assert dm.value("SecurityCtrlr.BasicAuthPassword") == OTHER_PASSWORD
    charging_station = station.registration.boot_payload()["chargingStation"]
    assert charging_station["model"] == "OEM-AC22"
    assert "modem" not in charging_station
    assert dm.value("EVSE[1].Power", "MaxSet") == "22000"
    assert dm.value("Connector[1,1].ConnectorType") == "cCCS2"
    # The OEM changed the value: its new one applies over the CSMS's.
    assert await get_value(station, METER, "Interval") == "120"


# --- refused answers


def _set(path: str, value: Any) -> dict[str, Any]:
    data = answer()
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        target.pop(last, None)
    else:
        target[last] = value
    return data


BAD_ANSWERS = [
    ("basic_auth_password", _set("basic_auth_password", "short")),
    ("basic_auth_password", _set("basic_auth_password", "with space in the password")),
    ("basic_auth_password", _set("basic_auth_password", "")),
    ("ocpp_csms_url", _set("ocpp_csms_url", "wss://csms.example/ocpp")),  # profile 1: ws://
    ("ocpp_csms_url", answer(security_profile=2)),  # ws:// on profile 2
    ("ocpp_csms_url", _set("ocpp_csms_url", "http://csms.example/ocpp")),
    ("ocpp_csms_url", _set("ocpp_csms_url", "ws://user:pw@csms.example/ocpp")),
    ("ocpp_csms_url", _set("ocpp_csms_url", "ws://csms.example/ocpp/OEM-0042")),
    ("ocpp_csms_url", _set("ocpp_csms_url", "ws://csms.example/" + "p" * 600)),
    ("security_profile", answer(security_profile=0)),
    ("security_profile", answer(ocpp_csms_url="wss://csms.example/ocpp", security_profile=3)),
    ("identity", answer(identity="OEM:0042")),
    ("identity", answer(identity="x" * 49)),
    ("model", answer(model="M" * 21)),
    ("vendor", answer(vendor="")),
    ("serial_number", answer(serial_number="S" * 26)),
    ("firmware_version", answer(firmware_version="F" * 51)),
    ("sim_iccid", answer(sim_iccid="8" * 21)),
    ("sim_imsi", answer(sim_imsi="2" * 21)),
    (
        "evses[0].connectors[0].connector_type",
        _set("evses.0.connectors.0.connector_type", "cType9"),
    ),
    ("evses[0].supply_phases", _set("evses.0.supply_phases", 4)),
    ("evses[0].power_kw", _set("evses.0.power_kw", -1)),
    ("evses[1].ocpp_id", _set("evses.1.ocpp_id", 1)),
    ("evses[1].iso15118_id", _set("evses.1.iso15118_id", "DE*ABC*E1")),
    ("evses[1].iso15118_id", _set("evses.1.iso15118_id", "1")),
    ("components[0].variables[1].value", _set("components.0.variables.1.value", "sixty")),
    ("components[0].variables[1].value", _set("components.0.variables.1.value", 2**31)),
    ("components[0].variables[1].data_type", _set("components.0.variables.1.data_type", "int")),
    (
        "components[0].variables[0].values_list",
        _set("components.0.variables.0.data_type", "OptionList"),
    ),
    ("components[0].name", _set("components.0.name", "N" * 51)),
    ("components[0].name", _set("components.0.name", "Oem Meter")),
    ("components[0].variables[0].instance", _set("components.0.variables.0.instance", "i" * 51)),
    ("components[0].variables[0].unit", _set("components.0.variables.0.unit", "u" * 17)),
    ("components[0].variables[1]", _set("components.0.variables.1.name", "Model")),
    (
        "components[0].connector_id",
        answer(
            components=[
                {"name": "OemPlug", "connector_id": 1, "variables": [{"name": "A", "value": "x"}]}
            ]
        ),
    ),
    (
        "components[0].variables[0]: OCPPCommCtrlr.HeartbeatInterval is a variable of the station",
        answer(
            components=[
                {
                    "name": "OCPPCommCtrlr",
                    "variables": [{"name": "HeartbeatInterval", "value": "5"}],
                }
            ]
        ),
    ),
    (
        "components[0].variables[0]: EVSE[1].Power is a variable of the station",
        answer(
            components=[
                {"name": "EVSE", "evse_id": "1", "variables": [{"name": "power", "value": "1"}]}
            ]
        ),
    ),
]


@pytest.mark.parametrize(("field", "data"), BAD_ANSWERS, ids=[f for f, _ in BAD_ANSWERS])
@pytest.mark.parametrize("first", [True, False], ids=["fresh", "after-a-good-answer"])
def test_an_unusable_answer_changes_nothing_and_logs_one_error_naming_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, field: str, data: dict[str, Any], first: bool
) -> None:
    station = open_station(tmp_path)
    if not first:
        station.apply_device_model(answer(basic_auth_password=OTHER_PASSWORD, identity="OEM-1"))
    before, identity = stored(station), station.identity
    payload = station.registration.boot_payload()
    names = {v.key for v in station.device_model}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert station.apply_device_model(copy.deepcopy(data)) is False
    assert stored(station) == before
    assert station.identity == identity
    assert station.registration.boot_payload() == payload
    assert {v.key for v in station.device_model} == names
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert f"refused, nothing applied: {field}" in message
    assert PASSWORD not in caplog.text
    assert OTHER_PASSWORD not in caplog.text


def test_an_error_in_place_of_the_answer_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    station = open_station(tmp_path)
    before = stored(station)
    error = {"message_type": "CallError", "error_code": "InternalError"}
    with caplog.at_level(logging.ERROR):
        assert station.apply_device_model(error) is False
    assert stored(station) == before
    assert "answered device_model with an error" in caplog.text


def test_an_evse_or_connector_the_station_has_not_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    station = open_station(tmp_path, evses="[1]")
    data = answer()
    data["evses"][0]["connectors"].append({"id": 2, "connector_type": "cCCS2"})
    data["components"].append(
        {"name": "OemFan", "evse_id": "DE*ABC*E2", "variables": [{"name": "Rpm", "value": "1"}]}
    )
    with caplog.at_level(logging.WARNING):
        assert station.apply_device_model(data) is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("EVSE 2 skipped" in w for w in warnings), warnings
    assert any("connector 2 of EVSE 1 skipped" in w for w in warnings), warnings
    assert any("component OemFan skipped" in w for w in warnings), warnings
    dm = station.device_model
    assert dm.value("EVSE[1].SupplyPhases") == "3"
    assert dm.value("Connector[1,1].ConnectorType") == "cType2"
    assert station.evse_number("DE*ABC*E2") is None
    assert station.identity == "OEM-0042"


# --- restarts


def test_identity_boot_fields_evses_and_components_persist_across_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    payload = station.registration.boot_payload()
    with caplog.at_level(logging.WARNING):
        station = restart(station)  # the OEM has not answered yet
    assert caplog.records == []
    dm = station.device_model
    assert station.identity == "OEM-0042"
    assert dm.value("SecurityCtrlr.Identity") == "OEM-0042"
    target = station.connectivity.next_target()
    assert target is not None
    assert target.url == "ws://csms.example:9000/ocpp/OEM-0042"
    assert station.registration.boot_payload() == payload
    assert dm.value("ChargingStation.Model") == "OEM-AC11"
    assert dm.value("EVSE[2].Power", "MaxSet") == "7400"
    assert station.evse_number("DE*ABC*E2") == 2
    assert dm.value("OemMeter@EVSE[1].Model") == "XM-1"
    assert dm.value("OemMeter@EVSE[1].Interval") == "60"


def test_a_configuration_file_changed_after_the_answer_wins_until_the_oem_changes_it(
    tmp_path: Path,
) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    station = restart(station, station_id="CP002")
    assert station.identity == "CP002"
    station.apply_device_model(answer())  # unchanged: the newer file stays
    assert station.identity == "CP002"
    station = restart(station)
    assert station.identity == "CP002"
    station.apply_device_model(answer(identity="OEM-0043"))
    assert station.identity == "OEM-0043"
    assert restart(station).identity == "OEM-0043"


def test_a_restart_with_an_unchanged_file_keeps_the_oem_values(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    station = restart(station, station_id="CP001")  # the same file content, written again
    assert station.identity == "OEM-0042"
    assert station.registration.boot_payload()["chargingStation"]["model"] == "OEM-AC11"


# --- reconnecting


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"identity": "OEM-0043"}, "identity"),
        ({"ocpp_csms_url": "ws://other.example/ocpp"}, "CSMS connection"),
        (
            {"ocpp_csms_url": "wss://csms.example/ocpp", "security_profile": 2},
            "CSMS connection",
        ),
        ({"basic_auth_password": OTHER_PASSWORD}, "BasicAuthPassword"),
        ({"identity": "OEM-0043", "basic_auth_password": OTHER_PASSWORD}, "identity"),
    ],
)
def test_a_change_of_identity_url_profile_or_password_while_connected_reconnects_once(
    tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    connect(station)
    assert station.apply_device_model(answer(**change)) is True
    [reconnect] = reconnects(station)
    assert 1.0 <= reconnect.delay <= 2.0
    assert reason in reconnect.reason


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"model": "OEM-AC22", "firmware_version": "2.3.5"},
        {"components": []},
    ],
    ids=["unchanged", "boot-fields", "components"],
)
def test_no_reconnect_when_nothing_of_the_connection_changed(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    connect(station)
    station.apply_device_model(answer(**change))
    assert reconnects(station) == []


def test_no_reconnect_while_not_connected(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    station.take_effects()
    station.apply_device_model(answer(identity="OEM-0043", basic_auth_password=OTHER_PASSWORD))
    assert reconnects(station) == []


# --- OEM components in the device model


async def test_oem_components_are_reported_and_readable_and_read_only_by_default(
    tmp_path: Path,
) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    assert await get_value(station, METER, "Model") == "XM-1"
    assert await get_value(station, {"name": "oemmeter", "evse": {"id": 1}}, "interval") == "60"
    assert await get_value(station, {"name": "OemMeter"}, "Model") == "UnknownComponent"
    assert await set_value(station, METER, "Model", "XM-2") == "Rejected"
    assert await set_value(station, METER, "Interval", "sixty") == "Rejected"
    assert await set_value(station, METER, "Interval", "30") == "Accepted"
    assert await get_value(restart(station), METER, "Interval") == "30"

    station = restart(station)
    connect(station)
    result = await station.dispatcher.call(
        Request(
            "csms", "ocpp2.0.1", "GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"}
        )
    )
    assert isinstance(result, CallResult)
    reports = [e.payload for e in result.effects if isinstance(e, Send)]
    data = [d for r in reports for d in r["reportData"] if d["component"]["name"] == "OemMeter"]
    by_name = {d["variable"]["name"]: d for d in data}
    assert set(by_name) == {"Model", "Interval"}
    assert by_name["Model"]["component"] == {"name": "OemMeter", "evse": {"id": 1}}
    assert by_name["Model"]["variableAttribute"][0]["mutability"] == "ReadOnly"
    assert by_name["Model"]["variableAttribute"][0]["value"] == "XM-1"
    assert by_name["Model"]["variableCharacteristics"]["dataType"] == "string"
    interval = by_name["Interval"]
    assert interval["variableAttribute"][0]["mutability"] == "ReadWrite"
    assert interval["variableAttribute"][0]["persistent"] is True
    assert interval["variableAttribute"][0]["value"] == "30"
    assert interval["variableCharacteristics"] == {
        "dataType": "integer",
        "supportsMonitoring": True,
        "unit": "s",
    }
    power = [
        d
        for r in reports
        for d in r["reportData"]
        if d["component"] == {"name": "EVSE", "evse": {"id": 2}}
        and d["variable"]["name"] == "Power"
    ]
    assert power[0]["variableCharacteristics"]["maxLimit"] == 7400


async def test_a_later_answer_without_a_component_removes_it_and_its_stored_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    assert await set_value(station, METER, "Interval", "30") == "Accepted"
    station.apply_device_model(answer(components=[]))
    assert await get_value(station, METER, "Model") == "UnknownComponent"
    keys = {key for key, _ in station.store.variable_values()}
    assert not any(key.startswith("OemMeter") for key in keys)
    with caplog.at_level(logging.WARNING):
        station = restart(station)
    assert caplog.records == []
    assert await get_value(station, METER, "Interval") == "UnknownComponent"
    # Given again later, it starts from the OEM's value.
    station.apply_device_model(answer())
    assert await get_value(station, METER, "Interval") == "60"


async def test_a_component_whose_definition_changed_keeps_a_value_that_still_fits(
    tmp_path: Path,
) -> None:
    station = open_station(tmp_path)
    station.apply_device_model(answer())
    assert await set_value(station, METER, "Interval", "30") == "Accepted"
    data = answer()
    data["components"][0]["variables"][1]["unit"] = "min"
    data["components"][0]["variables"].append({"name": "Serial", "value": "M-77"})
    station.apply_device_model(data)
    assert await get_value(station, METER, "Interval") == "30"
    assert await get_value(station, METER, "Serial") == "M-77"
    assert station.device_model["OemMeter@EVSE[1].Interval"].definition.unit == "min"


# --- property: the check never fails otherwise than with a refusal

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=6,
)
PATHS = [
    *answer().keys(),
    "evses.0.ocpp_id",
    "evses.0.iso15118_id",
    "evses.0.power_kw",
    "evses.0.supply_phases",
    "evses.0.connectors",
    "evses.0.connectors.0.id",
    "evses.0.connectors.0.connector_type",
    "components.0.name",
    "components.0.instance",
    "components.0.evse_id",
    "components.0.connector_id",
    "components.0.variables",
    "components.0.variables.1.value",
    "components.0.variables.1.data_type",
    "components.0.variables.1.mutability",
    "components.0.variables.1.values_list",
    "components.0.variables.1.unit",
    "components.0.variables.1.constant",
]


def test_any_field_value_is_applied_or_refused_never_an_exception(tmp_path: Path) -> None:
    station = open_station(tmp_path)

    @settings(max_examples=400, deadline=None)
    @given(path=st.sampled_from(PATHS), value=JSON | st.just(KeyError))
    def check(path: str, value: Any) -> None:
        with contextlib.suppress(Refused):  # anything else fails the test
            station.oem_device_model.plan(station, _set(path, value))

    check()


@given(st.text(max_size=12))
def test_evse_number_is_a_station_evse_or_none(evse_id: str) -> None:
    number = decimal_evse(evse_id, 2)
    assert number is None or (number in (1, 2) and evse_id == str(number))


# --- end to end: Mosquitto, the OEM, the demo CSMS


async def _bridge_request(oem: Oem, name: str, timeout: float = 25.0) -> dict[str, Any]:
    """The bridge's first request `name` (it asks device_model again every 10 s)."""
    async with asyncio.timeout(timeout):
        while True:
            for request in oem.requests:
                if request["name"] == name:
                    return request
            await asyncio.sleep(0.02)


async def test_e2e_the_csms_sees_the_boot_under_the_oem_identity_model_and_vendor(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms(password=PASSWORD) as csms:
        file_csms = f'url = "ws://127.0.0.1:{free_port()}/ocpp"'  # nothing listens there
        path = write_config(
            tmp_path / "bridge.toml", broker, csms=file_csms, oem="startup_timeout = 60"
        )
        async with running_bridge(path) as bridge:
            request = await _bridge_request(oem, "device_model")
            data = answer(ocpp_csms_url=csms.url, components=[])
            data["evses"] = data["evses"][:1]
            await oem.send(
                {"id": request["id"], "name": "device_model", "type": "response", "data": data}
            )
            [boot] = await csms.wait_for("BootNotification", station_id="OEM-0042", timeout=20)
            assert boot.payload["chargingStation"] == {
                "model": "OEM-AC11",
                "vendorName": "OEM Vendor",
                "serialNumber": "OEM-SN-1",
                "firmwareVersion": "2.3.4",
                "modem": {"iccid": "89490200001234567890", "imsi": "262011234567890"},
            }
            accepted = [a for a in csms.attempts if a.status == 101]
            assert [a.authorization for a in accepted] == ["OEM-0042"]
            assert bridge.station.evse_number("DE*ABC*E1") == 1
        assert csms.schema_errors == []


async def test_e2e_without_an_answer_the_bridge_boots_from_the_file_after_startup_timeout(
    tmp_path: Path, broker: Broker, oem: Oem, caplog: pytest.LogCaptureFixture
) -> None:
    async with DemoCsms() as csms:
        path = write_config(
            tmp_path / "bridge.toml", broker, csms=f'url = "{csms.url}"', oem="startup_timeout = 1"
        )
        with caplog.at_level(logging.INFO):
            async with running_bridge(path):
                [boot] = await csms.wait_for("BootNotification", station_id="CP001", timeout=20)
        assert boot.payload["chargingStation"]["model"] == "AC22"
        assert boot.payload["chargingStation"]["vendorName"] == "Acme"
        assert "no device_model answer from the OEM within 1 s" in caplog.text
        assert [a.station_id for a in csms.attempts] == ["CP001"]


def test_a_store_of_the_previous_schema_gains_the_oem_value_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = Store(path)
    with store.transaction() as db:  # back to schema 2, as the previous release left it
        for table in ("oem_value", "local_auth_list", "auth_cache", "station_value"):
            db.execute(f"DROP TABLE {table}")
        db.execute("DROP TABLE evse_transaction")
        db.execute("PRAGMA user_version=2")
    store.save_variable_values([("OCPPCommCtrlr.HeartbeatInterval", "Actual", "60")])
    store.close()
    store = Store(path)
    assert store.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert store.oem_values() == {}
    assert store.variable_values() == {("OCPPCommCtrlr.HeartbeatInterval", "Actual"): "60"}
    store.close()
