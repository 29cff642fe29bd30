"""The one dispatcher: which CallError each kind of bad CALL gets (OCPP-J 2.0.1 part 4, 4.3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.rpc import CallError, CallResult, OcppError
from bridge.rpc.request import Request
from bridge.station import Station
from bridge.station.dispatcher import Dispatcher
from tests.conftest import make_station


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return make_station(tmp_path)


def variable_item(**override: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "OfflineThreshold"},
    }
    item.update(override)
    return item


@pytest.mark.parametrize(
    ("payload", "code", "path"),
    [
        ({}, "OccurrenceConstraintViolation", "$"),  # required getVariableData missing
        ({"getVariableData": []}, "OccurrenceConstraintViolation", "$.getVariableData"),  # minItems
        (
            {"getVariableData": [{"component": {"name": "X"}}]},
            "OccurrenceConstraintViolation",
            "$.getVariableData[0]",
        ),
        ({"getVariableData": "all"}, "TypeConstraintViolation", "$.getVariableData"),
        (
            {"getVariableData": [variable_item(component={"name": 5})]},
            "TypeConstraintViolation",
            "$.getVariableData[0].component.name",
        ),
        (
            {"getVariableData": [variable_item(attributeType="Everything")]},
            "PropertyConstraintViolation",
            "$.getVariableData[0].attributeType",
        ),
        (
            {"getVariableData": [variable_item(component={"name": "C" * 51})]},
            "PropertyConstraintViolation",
            "$.getVariableData[0].component.name",
        ),
        ({"getVariableData": [variable_item(extra=1)]}, "FormatViolation", "$.getVariableData[0]"),
    ],
)
async def test_schema_failures_map_to_rpc_error_codes(
    station: Station, payload: dict[str, Any], code: str, path: str
) -> None:
    result = await station.dispatcher.call(Request("csms", "ocpp2.0.1", "GetVariables", payload))
    assert isinstance(result, CallError)
    assert result.code == code
    assert result.details["path"] == path
    assert result.description.startswith(f"GetVariables payload: {path}: ")
    assert len(result.description) <= 255


async def test_the_gravest_error_decides_the_code(station: Station) -> None:
    payload = {"getVariableData": [variable_item(attributeType="Bad", extra=True)]}
    result = await station.dispatcher.call(Request("csms", "ocpp2.0.1", "GetVariables", payload))
    assert isinstance(result, CallError)
    assert result.code == "FormatViolation"
    assert len(result.details["errors"]) == 2


async def test_a_payload_that_is_not_an_object_is_a_format_violation(station: Station) -> None:
    result = await station.dispatcher.call(
        Request("csms", "ocpp2.0.1", "GetVariables", ["getVariableData"])
    )
    assert isinstance(result, CallError)
    assert result.code == "FormatViolation"


async def test_custom_data_is_validated_too() -> None:
    dispatcher = Dispatcher()
    dispatcher.register("SetVariables", lambda p: {"setVariableResult": []})
    payload = {
        "setVariableData": [dict(variable_item(), attributeValue="1", customData={"vendorId": 5})]
    }
    result = await dispatcher.call(Request("csms", "ocpp2.0.1", "SetVariables", payload))
    assert isinstance(result, CallError)
    assert result.code == "TypeConstraintViolation"


@pytest.mark.parametrize(
    ("version", "action", "code", "words"),
    [
        # OCPP-J 4.3: recognized but not supported -> NotSupported; not known -> NotImplemented
        ("ocpp2.0.1", "SetChargingProfile", "NotSupported", "not supported by this station"),
        ("ocpp2.0.1", "FlyToTheMoon", "NotImplemented", "not an action of ocpp2.0.1"),  # not known
        ("ocpp2.0.1", "BootNotification", "NotSupported", "sent by a Charging Station"),
        ("ocpp2.0.1", "GetConfiguration", "NotImplemented", "not an action"),  # 1.6 only
        ("ocpp1.6", "GetConfiguration", "NotSupported", "runs ocpp2.0.1"),
        ("ocpp1.6", "GetVariables", "NotImplemented", "not an action of ocpp1.6"),
        ("ocpp2.1", "GetVariables", "NotSupported", "runs ocpp2.0.1"),
        ("ocpp9", "GetVariables", "NotSupported", "Unknown OCPP version"),
    ],
)
async def test_actions_the_station_does_not_run(
    station: Station, version: str, action: str, code: str, words: str
) -> None:
    result = await station.dispatcher.call(Request("csms", version, action, {}))
    assert isinstance(result, CallError)
    assert result.code == code
    assert words in result.description


async def test_handler_exceptions_become_internal_error_without_details() -> None:
    def broken(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    dispatcher = Dispatcher()
    dispatcher.register("ClearCache", broken)
    result = await dispatcher.call(Request("csms", "ocpp2.0.1", "ClearCache", {}))
    assert isinstance(result, CallError)
    assert result.code == "InternalError"
    assert "secret" not in result.description


async def test_an_ocpp_error_from_a_handler_is_answered_as_is() -> None:
    def refuse(payload: dict[str, Any]) -> dict[str, Any]:
        raise OcppError("SecurityError", "not while Pending")

    dispatcher = Dispatcher()
    dispatcher.register("ClearCache", refuse)
    result = await dispatcher.call(Request("csms", "ocpp2.0.1", "ClearCache", {}))
    assert result == CallError("SecurityError", "not while Pending")


async def test_a_response_that_breaks_its_schema_is_never_sent() -> None:
    dispatcher = Dispatcher()
    dispatcher.register("ClearCache", lambda payload: {"status": "Maybe"})
    result = await dispatcher.call(Request("csms", "ocpp2.0.1", "ClearCache", {}))
    assert isinstance(result, CallError)
    assert result.code == "InternalError"


async def test_async_handlers_are_awaited() -> None:
    async def clear(payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted"}

    dispatcher = Dispatcher()
    dispatcher.register("ClearCache", clear)
    assert await dispatcher.call(Request("csms", "ocpp2.0.1", "ClearCache", {})) == CallResult(
        {"status": "Accepted"}
    )


def test_register_refuses_an_action_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match="not an ocpp2.0.1 action"):
        Dispatcher().register("Teleport", lambda p: p)


def test_the_station_implements_the_six_seed_actions(station: Station) -> None:
    assert set(station.dispatcher.implemented()) >= {
        "GetVariables",
        "SetVariables",
        "GetInstalledCertificateIds",
        "InstallCertificate",
        "DeleteCertificate",
        "SetNetworkProfile",
    }


def test_call_error_descriptions_are_cut_to_255_characters() -> None:
    error = CallError("GenericError", "x" * 400)
    assert len(error.description) == 255
    with pytest.raises(ValueError, match="error code"):
        CallError("Oops", "")
