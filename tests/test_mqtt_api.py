"""The OEM's MQTT API, bytes in and bytes out, without a broker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import schemas
from bridge.oem.api import MqttApi
from bridge.oem.link import OemLink
from bridge.station import Station
from tests.conftest import SEED_REQUESTS, example, make_station


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Station:
    return make_station(tmp_path_factory.mktemp("api"))


def make_api(station: Station) -> MqttApi:
    """The API over `station`, with an OEM link whose publications are kept in `api.published`."""
    published: list[tuple[bytes, bool]] = []
    api = MqttApi(station, OemLink(lambda raw, retain: published.append((raw, retain)), 5.0))
    api.published = published  # type: ignore[attr-defined]
    return api


@pytest.fixture(scope="module")
def api(station: Station) -> MqttApi:
    return make_api(station)


def request(data: Any = None, **top: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": "ocpp_message",
        "type": "request",
        "data": data
        if data is not None
        else {
            "ocpp_version": "ocpp2.0.1",
            "message_name": "GetVariables",
            "payload": {
                "getVariableData": [
                    {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}}
                ]
            },
        },
    }
    message.update(top)
    return message


async def answer(api: MqttApi, message: dict[str, Any] | bytes) -> dict[str, Any] | None:
    raw = message if isinstance(message, bytes) else json.dumps(message).encode()
    out = await api.handle(raw)
    if out is None:
        return None
    body: dict[str, Any] = json.loads(out)
    assert_valid_answer(body)
    return body


def assert_valid_answer(body: dict[str, Any]) -> None:
    """Every answer validates against schemas/: its message's response schema or error.response."""
    try:
        validator = schemas.envelope_validator(f"{body['name']}.response")
    except KeyError:
        validator = schemas.envelope_validator("error.response")
    assert validator(body) == [], body


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        json.dumps({"name": "ocpp_message", "type": "request", "data": {}}).encode(),
        json.dumps({"id": 42, "name": "ocpp_message"}).encode(),
        json.dumps({"id": "not-a-uuid", "name": "ocpp_message"}).encode(),
        json.dumps({"id": "", "name": "ocpp_message"}).encode(),
        b"[" * 100000 + b"]" * 100000,  # deep nesting must not crash the parser
        b" " * (300 * 1024),  # larger than any message we parse
    ],
)
async def test_messages_without_a_usable_id_are_dropped(api: MqttApi, raw: bytes) -> None:
    assert await answer(api, raw) is None


async def test_responses_and_updates_are_never_answered(api: MqttApi) -> None:
    assert await answer(api, request(type="response")) is None
    assert await answer(api, request(type="update")) is None


@pytest.mark.parametrize(
    ("message", "code", "fragment"),
    [
        ({"id": "X", "type": "request", "data": {}}, "OccurrenceConstraintViolation", "'name'"),
        (request(name="ocpp-message"), "PropertyConstraintViolation", "$.name"),
        (request(name=7), "TypeConstraintViolation", "$.name"),
        (request(name="cs_status_and_limits"), "NotSupported", "cs_status_and_limits"),
        (request(type="command"), "PropertyConstraintViolation", "$.type"),
        (request(extra=True), "FormatViolation", "extra"),
        (request(data=[]), "TypeConstraintViolation", "$.data"),
        (
            request(data={"ocpp_version": "ocpp2.0.1", "message_name": "GetVariables"}),
            "OccurrenceConstraintViolation",
            "'payload'",
        ),
        (
            request(data={"ocpp_version": "ocpp3", "message_name": "GetVariables", "payload": {}}),
            "PropertyConstraintViolation",
            "$.data.ocpp_version",
        ),
        (
            request(
                data={"ocpp_version": "ocpp2.0.1", "message_name": "GetVariables", "payload": []}
            ),
            "TypeConstraintViolation",
            "$.data.payload",
        ),
        (
            request(
                data={
                    "ocpp_version": "ocpp2.0.1",
                    "message_name": "SetChargingProfile",
                    "payload": {"evseId": 1},
                }
            ),
            "NotSupported",  # OCPP-J 4.3: a known action the station does not support
            "SetChargingProfile",
        ),
        (
            request(data={"ocpp_version": "ocpp2.0.1", "message_name": "Teleport", "payload": {}}),
            "NotImplemented",
            "Teleport",
        ),
        (
            request(
                data={"ocpp_version": "ocpp1.6", "message_name": "GetConfiguration", "payload": {}}
            ),
            "NotSupported",
            "ocpp1.6",
        ),
        (
            request(
                data={
                    "ocpp_version": "ocpp2.0.1",
                    "message_name": "GetVariables",
                    "payload": {"getVariableData": []},
                }
            ),
            "OccurrenceConstraintViolation",
            "getVariableData",
        ),
    ],
)
async def test_bad_requests_get_an_error_response_with_their_id(
    api: MqttApi, message: dict[str, Any], code: str, fragment: str
) -> None:
    message["id"] = str(uuid.uuid4())
    body = await answer(api, message)
    assert body is not None
    assert body["id"] == message["id"]
    assert body["type"] == "response"
    data = body["data"]
    assert data["message_type"] == "CallError"
    assert data["error_code"] == code
    assert fragment in data["error_description"]
    assert len(data["error_description"]) <= 255
    assert isinstance(data["error_details"], dict)


async def test_error_responses_keep_a_known_ocpp_version(api: MqttApi) -> None:
    message = request(
        data={"ocpp_version": "ocpp1.6", "message_name": "GetConfiguration", "payload": {}}
    )
    body = await answer(api, message)
    assert body is not None
    assert body["data"]["ocpp_version"] == "ocpp1.6"


async def test_an_unknown_name_is_answered_under_that_name(api: MqttApi) -> None:
    body = await answer(api, request(name="frobnicate"))
    assert body is not None
    assert body["name"] == "frobnicate"
    assert body["data"]["error_code"] == "NotSupported"


async def test_every_seed_request_gets_a_valid_call_result(tmp_path: Path) -> None:
    api = make_api(make_station(tmp_path))
    for name in SEED_REQUESTS:
        body = await answer(api, example(name))
        assert body is not None
        assert body["data"]["message_type"] == "CallResult", (name, body)


async def test_a_secret_in_a_bad_request_is_not_echoed(api: MqttApi) -> None:
    secret = "Sup3rSecretPassw0rd!" * 60  # too long for attributeValue (1000)
    payload = {
        "setVariableData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "attributeValue": secret,
            }
        ]
    }
    message = request(
        data={"ocpp_version": "ocpp2.0.1", "message_name": "SetVariables", "payload": payload}
    )
    body = await answer(api, message)
    assert body is not None
    assert body["data"]["error_code"] == "PropertyConstraintViolation"
    assert "Sup3rSecret" not in json.dumps(body)


# --- property-based: nothing an outsider sends escapes as an exception

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "id": st.uuids().map(str) | json_values,
        "name": st.sampled_from(["ocpp_message", "device_model", ""]) | json_values,
        "type": st.sampled_from(["request", "response", "update"]) | json_values,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "ocpp_version": st.sampled_from(["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]) | json_values,
                "message_name": st.sampled_from(
                    [
                        "GetVariables",
                        "SetVariables",
                        "InstallCertificate",
                        "DeleteCertificate",
                        "Reset",
                    ]
                )
                | json_values,
                "payload": json_values,
            },
        )
        | json_values,
    },
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(message=envelopes)
async def test_random_envelopes_are_answered_validly_or_dropped(
    api: MqttApi, message: dict[str, Any]
) -> None:
    body = await answer(api, message)
    if body is None:
        assert not schemas.is_uuid(message.get("id")) or message.get("type") in (
            "response",
            "update",
        )
    else:
        assert body["id"] == message["id"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
async def test_random_bytes_never_raise(api: MqttApi, raw: bytes) -> None:
    await answer(api, raw)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {"component": json_values, "variable": json_values, "attributeValue": json_values}
        ),
        max_size=3,
    )
)
async def test_random_set_variables_change_nothing_unless_accepted(
    api: MqttApi, station: Station, items: list[dict[str, Any]]
) -> None:
    before = station.store.variable_values()
    message = request(
        data={
            "ocpp_version": "ocpp2.0.1",
            "message_name": "SetVariables",
            "payload": {"setVariableData": items},
        }
    )
    body = await answer(api, message)
    assert body is not None
    if body["data"]["message_type"] == "CallError":
        assert station.store.variable_values() == before
    else:
        accepted = [
            r
            for r in body["data"]["payload"]["setVariableResult"]
            if r["attributeStatus"] in ("Accepted", "RebootRequired")
        ]
        if not accepted:
            assert station.store.variable_values() == before


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"getVariableData": [{"component": {"name": "\ud800"}, "variable": {"name": "X"}}]}, None),
        ({"\ud800": 1}, "FormatViolation"),
        (json.loads("[" * 900 + "]" * 900), "FormatViolation"),
        ({"getVariableData": json.loads("[" * 900 + "]" * 900)}, "FormatViolation"),
    ],
)
async def test_lone_surrogates_and_deep_nesting_get_a_proper_answer(
    api: MqttApi, payload: Any, code: str | None
) -> None:
    """Valid JSON syntax that is not Unicode text, or too deep to check: answered, never lost."""
    message = request(
        data={"ocpp_version": "ocpp2.0.1", "message_name": "GetVariables", "payload": payload}
    )
    body = await answer(api, json.dumps(message).encode())
    assert body is not None
    if code is None:
        assert body["data"]["message_type"] == "CallResult"
        assert body["data"]["payload"]["getVariableResult"][0]["component"]["name"] == "\ud800"
    else:
        assert body["data"]["error_code"] == code


def test_the_request_schema_lists_exactly_the_implemented_actions(station: Station) -> None:
    schema = schemas.envelope_schema("ocpp_message.request")
    listed = schema["properties"]["data"]["properties"]["message_name"]["enum"]
    assert sorted(listed) == station.dispatcher.implemented()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "2b0aa109-21a1-4f2f-bdbd-6cdf139e7bb1", "name": "ocpp_message", "x": NaN}',
        b'{"id": "2b0aa109-21a1-4f2f-bdbd-6cdf139e7bb1", "name": "ocpp_message", "x": -Infinity}',
        b'{"id": "2b0aa109-21a1-4f2f-bdbd-6cdf139e7bb1", "name": "ocpp_message", "x": 1e309}',
    ],
)
async def test_non_json_numbers_make_a_message_invalid_json(api: MqttApi, raw: bytes) -> None:
    """RFC 8259 has no NaN or Infinity; Python's json module would take them."""
    assert await answer(api, raw) is None
