"""B05 SetVariables and B06 GetVariables, through the station's dispatcher (both doors use it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.rpc import CallError
from bridge.station import Station
from bridge.store import Store
from tests.conftest import make_station, ocpp_call


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path, evses="[1, 2]")


def get(
    component: str | dict[str, Any], variable: str | dict[str, Any], **kw: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "component": {"name": component} if isinstance(component, str) else component,
        "variable": {"name": variable} if isinstance(variable, str) else variable,
    }
    item.update(kw)
    return item


def put(
    component: str | dict[str, Any], variable: str | dict[str, Any], value: str, **kw: Any
) -> dict[str, Any]:
    return get(component, variable, attributeValue=value, **kw)


async def get_one(station: Station, item: dict[str, Any]) -> dict[str, Any]:
    payload = await ocpp_call(station, "GetVariables", {"getVariableData": [item]})
    (result,) = payload["getVariableResult"]
    return result


async def set_one(station: Station, item: dict[str, Any]) -> dict[str, Any]:
    payload = await ocpp_call(station, "SetVariables", {"setVariableData": [item]})
    (result,) = payload["setVariableResult"]
    return result


# --- B06 GetVariables


async def test_b06_fr10_accepted_with_value_and_fr11_actual_by_default(station: Station) -> None:
    result = await get_one(station, get("OCPPCommCtrlr", "OfflineThreshold"))
    assert result == {
        "attributeStatus": "Accepted",
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "OfflineThreshold"},
        "attributeType": "Actual",
        "attributeValue": "60",
    }


async def test_b06_fr06_unknown_component_omits_the_value(station: Station) -> None:
    result = await get_one(station, get("UnknownComponent", "OfflineThreshold"))
    assert result["attributeStatus"] == "UnknownComponent"
    assert "attributeValue" not in result


async def test_b06_fr07_unknown_variable(station: Station) -> None:
    result = await get_one(station, get("OCPPCommCtrlr", "UnknownVariable"))
    assert result["attributeStatus"] == "UnknownVariable"
    assert "attributeValue" not in result


async def test_b06_fr08_not_supported_attribute_type_echoes_it(station: Station) -> None:
    result = await get_one(
        station, get("OCPPCommCtrlr", "OfflineThreshold", attributeType="Target")
    )
    assert result["attributeStatus"] == "NotSupportedAttributeType"
    assert result["attributeType"] == "Target"
    assert "attributeValue" not in result


async def test_b06_fr09_write_only_password_is_rejected_without_value(tmp_path: Path) -> None:
    station = make_station(tmp_path, csms='password = "0123456789abcdefXYZ"')
    result = await get_one(station, get("SecurityCtrlr", "BasicAuthPassword"))
    assert result["attributeStatus"] == "Rejected"
    assert "attributeValue" not in result
    assert result["attributeStatusInfo"]["reasonCode"] == "WriteOnly"
    assert "0123456789abcdefXYZ" not in str(result)


async def test_b06_fr14_instances_and_evse_addressing(station: Station) -> None:
    items = [
        get("DeviceDataCtrlr", {"name": "ItemsPerMessage", "instance": "GetVariables"}),
        get({"name": "EVSE", "evse": {"id": 2}}, "Power", attributeType="MaxSet"),
        get({"name": "Connector", "evse": {"id": 2, "connectorId": 1}}, "ConnectorType"),
        get({"name": "EVSE", "evse": {"id": 3}}, "Power"),
        get("DeviceDataCtrlr", "ItemsPerMessage"),  # B06.FR.15: no instance-less variant
    ]
    payload = await ocpp_call(station, "GetVariables", {"getVariableData": items})
    results = payload["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == [
        "Accepted",
        "Accepted",
        "Accepted",
        "UnknownComponent",
        "UnknownVariable",
    ]
    assert [r.get("attributeValue") for r in results[:3]] == ["100", "22000", "Unknown"]
    # B06.FR.01/02: one result per item, echoing the component and variable as sent.
    assert [(r["component"], r["variable"]) for r in results] == [
        (i["component"], i["variable"]) for i in items
    ]


async def test_names_are_case_insensitive_and_echoed_as_sent(station: Station) -> None:
    result = await get_one(station, get("ocppcommctrlr", "OFFLINETHRESHOLD"))
    assert result["attributeStatus"] == "Accepted"
    assert result["component"] == {"name": "ocppcommctrlr"}
    assert result["variable"] == {"name": "OFFLINETHRESHOLD"}


async def test_station_identity_and_clock_are_reported(station: Station) -> None:
    identity = await get_one(station, get("SecurityCtrlr", "Identity"))
    assert identity["attributeValue"] == "CP001"
    clock = await get_one(station, get("ClockCtrlr", "DateTime"))
    assert clock["attributeValue"].endswith("Z")
    assert len(clock["attributeValue"]) == len("2026-11-22T10:00:00.123Z")


async def test_b06_fr16_more_items_than_items_per_message_is_a_call_error(station: Station) -> None:
    items = [get("OCPPCommCtrlr", "OfflineThreshold")] * 101
    error = await ocpp_call(station, "GetVariables", {"getVariableData": items})
    assert isinstance(error, CallError)
    assert error.code == "OccurrenceConstraintViolation"
    assert "ItemsPerMessage[GetVariables]" in error.description


async def test_b06_fr17_more_bytes_than_bytes_per_message_is_a_format_violation(
    station: Station,
) -> None:
    # customData objects are open-ended: a few items can still be very large.
    item = get(
        "OCPPCommCtrlr", "OfflineThreshold", customData={"vendorId": "x", "blob": "z" * 70000}
    )
    error = await ocpp_call(station, "GetVariables", {"getVariableData": [item]})
    assert isinstance(error, CallError)
    assert error.code == "FormatViolation"
    assert "BytesPerMessage[GetVariables]" in error.description


async def test_reporting_value_size_truncates_long_values(tmp_path: Path) -> None:
    station = make_station(
        tmp_path, extra='[device_model]\n"SecurityCtrlr.OrganizationName" = "' + "O" * 50 + '"'
    )
    station.device_model["DeviceDataCtrlr.ReportingValueSize"].values["Actual"] = "10"
    result = await get_one(station, get("SecurityCtrlr", "OrganizationName"))
    assert result["attributeValue"] == "O" * 10


# --- B05 SetVariables


async def test_b05_fr10_accepted_value_is_stored_and_survives_a_restart(tmp_path: Path) -> None:
    station = make_station(tmp_path)
    result = await set_one(station, put("OCPPCommCtrlr", "HeartbeatInterval", "120"))
    assert result == {
        "attributeStatus": "Accepted",
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
        "attributeType": "Actual",
    }
    station.store.close()
    again = make_station(tmp_path)
    assert (await get_one(again, get("OCPPCommCtrlr", "HeartbeatInterval")))[
        "attributeValue"
    ] == "120"


async def test_charging_station_problem_is_read_write_as_in_the_reference(
    tmp_path: Path,
) -> None:
    """ChargingStation.Problem is ReadWrite in the OCPP 2.0.1 reference device model."""
    station = make_station(tmp_path)
    assert (await get_one(station, get("ChargingStation", "Problem")))["attributeValue"] == "false"
    result = await set_one(station, put("ChargingStation", "Problem", "true"))
    assert result["attributeStatus"] == "Accepted"
    result = await set_one(station, put("ChargingStation", "Problem", "broken"))
    assert result["attributeStatusInfo"]["reasonCode"] == "InvalidValue"  # still a boolean
    station.store.close()
    again = make_station(tmp_path)
    assert (await get_one(again, get("ChargingStation", "Problem")))["attributeValue"] == "true"


async def test_b05_fr04_fr05_fr06_unknowns(station: Station) -> None:
    items = [
        put("NoSuchCtrlr", "HeartbeatInterval", "1"),
        put("OCPPCommCtrlr", "NoSuchVariable", "1"),
        put("OCPPCommCtrlr", "HeartbeatInterval", "1", attributeType="MaxSet"),
    ]
    payload = await ocpp_call(station, "SetVariables", {"setVariableData": items})
    statuses = [r["attributeStatus"] for r in payload["setVariableResult"]]
    assert statuses == ["UnknownComponent", "UnknownVariable", "NotSupportedAttributeType"]


@pytest.mark.parametrize(
    ("component", "variable", "value", "reason"),
    [
        ("OCPPCommCtrlr", "OfflineThreshold", "abc", "InvalidValue"),  # OCTT TC_B_11
        ("OCPPCommCtrlr", "OfflineThreshold", "60.1", "InvalidValue"),
        ("OCPPCommCtrlr", "OfflineThreshold", "-1", "ValueTooLow"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "0", "ValueTooLow"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "yes", "InvalidValue"),
        ("TxCtrlr", "TxStartPoint", "Authorized,Teleported", "InvalidValue"),
        ("TxCtrlr", "TxStopPoint", "Authorized,Authorized", "InvalidValue"),
        ("SampledDataCtrlr", "TxUpdatedMeasurands", "Power.Offered", "InvalidValue"),
        ("ClockCtrlr", "TimeSource", "", "InvalidValue"),
        ("SecurityCtrlr", "OrganizationName", "O" * 51, "ValueTooHigh"),
        ("SecurityCtrlr", "BasicAuthPassword", "short", "ValueTooLow"),  # OCTT TC_A_10
        ("SecurityCtrlr", "BasicAuthPassword", "has spaces in it here ok", "InvalidValue"),
        ("SecurityCtrlr", "BasicAuthPassword", "x" * 41, "ValueTooHigh"),
        ("SecurityCtrlr", "SecurityProfile", "3", "ReadOnly"),  # B05.FR.09
        ("ChargingStation", "AvailabilityState", "Faulted", "ReadOnly"),
        (
            "DeviceDataCtrlr",
            {"name": "ItemsPerMessage", "instance": "GetVariables"},
            "5",
            "ReadOnly",
        ),
        ("OCPPCommCtrlr", {"name": "MessageTimeout", "instance": "Default"}, "30", "ReadOnly"),
    ],
)
async def test_b05_fr07_fr08_fr09_rejected_with_a_reason_and_nothing_stored(
    station: Station, component: str, variable: Any, value: str, reason: str
) -> None:
    before = station.store.variable_values()
    result = await set_one(station, put(component, variable, value))
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"]["reasonCode"] == reason
    assert value not in result["attributeStatusInfo"]["additionalInfo"] or value == ""
    assert station.store.variable_values() == before


async def test_configuration_value_size_limits_values(station: Station) -> None:
    station.device_model["DeviceDataCtrlr.ConfigurationValueSize"].values["Actual"] = "4"
    result = await set_one(station, put("OCPPCommCtrlr", "HeartbeatInterval", "12345"))
    assert result["attributeStatusInfo"]["reasonCode"] == "TooLargeElement"


async def test_password_accepted_is_write_only_afterwards(station: Station) -> None:
    result = await set_one(station, put("SecurityCtrlr", "BasicAuthPassword", "Abcdefgh:12345678"))
    assert result["attributeStatus"] == "Accepted"
    assert station.device_model.value("SecurityCtrlr.BasicAuthPassword") == "Abcdefgh:12345678"
    read = await get_one(station, get("SecurityCtrlr", "BasicAuthPassword"))
    assert read["attributeStatus"] == "Rejected"


async def test_mixed_request_stores_only_the_accepted_items_in_request_order(
    station: Station,
) -> None:
    items = [
        put("OCPPCommCtrlr", "OfflineThreshold", "300"),
        put("OCPPCommCtrlr", "HeartbeatInterval", "nope"),
        put("AuthCtrlr", "LocalAuthorizeOffline", "false"),
        put(
            "OCPPCommCtrlr", "OfflineThreshold", "400"
        ),  # B05.FR.13 violated by the CSMS: last wins
    ]
    payload = await ocpp_call(station, "SetVariables", {"setVariableData": items})
    assert [r["attributeStatus"] for r in payload["setVariableResult"]] == [
        "Accepted",
        "Rejected",
        "Accepted",
        "Accepted",
    ]
    dm = station.device_model
    assert dm.value("OCPPCommCtrlr.OfflineThreshold") == "400"
    assert dm.value("OCPPCommCtrlr.HeartbeatInterval") == "1800"
    assert dm.value("AuthCtrlr.LocalAuthorizeOffline") == "false"
    assert station.store.variable_values()[("OCPPCommCtrlr.OfflineThreshold", "Actual")] == "400"


async def test_b10_fr01_network_configuration_priority_requires_a_reboot(station: Station) -> None:
    result = await set_one(station, put("OCPPCommCtrlr", "NetworkConfigurationPriority", "1"))
    # Slot 1 holds no profile: this station has no [csms] url configured.
    assert result["attributeStatus"] == "Rejected"
    await ocpp_call(
        station,
        "SetNetworkProfile",
        {
            "configurationSlot": 2,
            "connectionData": {
                "messageTimeout": 30,
                "ocppCsmsUrl": "ws://csms.example:9000/ocpp",
                "ocppInterface": "Wired0",
                "ocppTransport": "JSON",
                "ocppVersion": "OCPP20",
                "securityProfile": 0,
            },
        },
    )
    result = await set_one(station, put("OCPPCommCtrlr", "NetworkConfigurationPriority", "2"))
    assert result["attributeStatus"] == "RebootRequired"
    assert station.device_model.value("OCPPCommCtrlr.NetworkConfigurationPriority") == "2"


async def test_items_per_message_set_variables_is_enforced_like_b06(station: Station) -> None:
    items = [put("OCPPCommCtrlr", "OfflineThreshold", "10")] * 101
    error = await ocpp_call(station, "SetVariables", {"setVariableData": items})
    assert isinstance(error, CallError)
    assert error.code == "OccurrenceConstraintViolation"
    assert station.device_model.value("OCPPCommCtrlr.OfflineThreshold") == "60"


async def test_a_store_failure_answers_internal_error_and_changes_nothing(station: Station) -> None:
    station.store._db.close()
    error = await ocpp_call(
        station,
        "SetVariables",
        {"setVariableData": [put("OCPPCommCtrlr", "OfflineThreshold", "5")]},
    )
    assert isinstance(error, CallError)
    assert error.code == "InternalError"
    assert station.device_model.value("OCPPCommCtrlr.OfflineThreshold") == "60"


async def test_change_listeners_see_accepted_values(station: Station) -> None:
    seen: list[tuple[str, str]] = []
    station.device_model.on_change(lambda v, attribute, value: seen.append((v.key, value)))
    await set_one(station, put("OCPPCommCtrlr", "HeartbeatInterval", "42"))
    await set_one(station, put("OCPPCommCtrlr", "HeartbeatInterval", "bad"))
    assert seen == [("OCPPCommCtrlr.HeartbeatInterval", "42")]


# --- [device_model] preload and "apply when changed"


async def test_config_preload_applies_at_first_start_and_again_only_when_changed(
    tmp_path: Path,
) -> None:
    preload = '[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 60\n"Connector[1,1].ConnectorType" = "sType2"'
    station = make_station(tmp_path, extra=preload)
    assert station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "60"
    assert station.device_model.value("Connector[1,1].ConnectorType") == "sType2"
    # The CSMS changes it; a restart with the same file keeps the CSMS's value.
    await set_one(station, put("OCPPCommCtrlr", "HeartbeatInterval", "300"))
    station.store.close()
    station = make_station(tmp_path, extra=preload)
    assert station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "300"
    station.store.close()
    # The installer edits the file: the new value wins.
    station = make_station(tmp_path, extra=preload.replace("= 60", "= 90"))
    assert station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "90"


@pytest.mark.parametrize(
    ("preload", "message"),
    [
        ('"NoSuchCtrlr.X" = 1', 'device_model."NoSuchCtrlr.X": unknown component NoSuchCtrlr'),
        ('"AuthCtrlr.NoSuch" = 1', 'device_model."AuthCtrlr.NoSuch": unknown variable'),
        ('"OCPPCommCtrlr.HeartbeatInterval" = "soon"', "must be a 32-bit integer"),
        ('"EVSE[1].Power" = 5', "the station keeps this value itself"),
        ('"ClockCtrlr.DateTime" = "2026-01-01T00:00:00Z"', "the station keeps this value itself"),
    ],
)
def test_bad_preload_stops_start_up_naming_the_key_and_stores_nothing(
    tmp_path: Path, preload: str, message: str
) -> None:
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        make_station(tmp_path, extra=f"[device_model]\n{preload}")
    assert Store(tmp_path / "bridge.db").variable_values() == {}


def test_profile_1_without_any_password_is_a_config_error(tmp_path: Path) -> None:
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match="csms.password: required for security_profile 1"):
        make_station(tmp_path, csms='url = "ws://127.0.0.1:9/ocpp"\nsecurity_profile = 1')


def test_config_password_must_be_a_valid_basic_auth_password(tmp_path: Path) -> None:
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match="csms.password: must be at least 16 characters") as info:
        make_station(tmp_path, csms='url = "ws://h:9/o"\nsecurity_profile = 1\npassword = "tiny"')
    assert "tiny" not in str(info.value)
