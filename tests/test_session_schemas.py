"""The JSON Schemas of the charging-session messages (README "The MQTT API"): one per message
and type, compiled by the service's own validators, strict about unknown fields."""

from __future__ import annotations

import copy
import json
import string
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import ocpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import schemas, validate, versions
from bridge.oem import envelope
from bridge.rpc import CallError
from bridge.schemas import JsonPath

OCPP201 = Path(ocpp.__file__).parent / versions.SCHEMA_DIRS["ocpp2.0.1"] / "schemas"

# Every message and type of the session API, with who publishes it (OEM: cs/josev, bridge: josev/cs).
MESSAGES: dict[tuple[str, str], str] = {
    ("device_model", "request"): "josev/cs",
    ("device_model", "response"): "cs/josev",
    ("cs_status_and_limits", "request"): "josev/cs",
    ("cs_status_and_limits", "response"): "cs/josev",
    ("cs_status_and_limits", "update"): "cs/josev",
    ("cp_status", "update"): "cs/josev",
    ("authorization", "request"): "cs/josev",
    ("authorization", "response"): "josev/cs",
    ("authorization", "update"): "cs/josev",  # and josev/cs: the same data both ways
    ("process_authorized_token", "request"): "josev/cs",
    ("process_authorized_token", "response"): "cs/josev",
    ("cs_contactor_status", "request"): "josev/cs",
    ("cs_contactor_status", "response"): "cs/josev",
    ("cs_contactor_status", "update"): "cs/josev",
    ("transaction_status", "update"): "josev/cs",
    ("meter_values", "request"): "josev/cs",
    ("meter_values", "response"): "cs/josev",
    ("stop_charging", "request"): "josev/cs",
    ("stop_charging", "response"): "cs/josev",
    ("reset", "request"): "josev/cs",
    ("reset", "response"): "cs/josev",
    ("change_availability", "request"): "josev/cs",
    ("change_availability", "response"): "cs/josev",
    ("change_availability", "update"): "cs/josev",
    ("cs_connector", "request"): "josev/cs",
    ("cs_connector", "response"): "cs/josev",
    ("boot_status", "update"): "josev/cs",
    ("websocket_status", "request"): "cs/josev",
    ("websocket_status", "response"): "josev/cs",
    ("websocket_status", "update"): "josev/cs",
    ("service_status", "request"): "cs/josev",
    ("service_status", "response"): "josev/cs",
    ("service_status", "update"): "josev/cs",
    ("notify_event", "update"): "cs/josev",
    ("set_ocpp_network_connection", "request"): "cs/josev",
    ("set_ocpp_network_connection", "response"): "josev/cs",
}
ALL = sorted(f"{name}.{kind}" for name, kind in MESSAGES)

TOKEN_TYPES = [
    "ISO14443",
    "ISO15693",
    "key_code",
    "local",
    "mac_address",
    "no_authorization",
    "e_maid",
    "central",
]
STATUS_CODES = [
    "evse_ready",
    "evse_not_ready",
    "evse_shutdown",
    "evse_utility_interrupt_event",
    "evse_malfunction",
    "evse_emergency_shutdown",
    "evse_isolation_monitoring_active",
]
CP_STATES = ["A1", "A2", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F"]

# --- realistic examples, one per message and type (kept here, not in the package)

AC_LIMITS = {
    "max_current": {"l1": 32, "l2": 32, "l3": 32},
    "nominal_voltage": 230,
    "rcd_error": False,
}
EVSES = {
    "evses": [
        {"evse_id": "DE*SEV*E123456789", "status_code": "evse_ready", "ac": AC_LIMITS},
        {
            "evse_id": "2",
            "status_code": "evse_malfunction",
            "dc": {
                "present_voltage": 0,
                "present_current": 0,
                "max_current": 200,
                "min_current": 0.05,
                "max_voltage": 920,
                "min_voltage": 150,
                "max_power": 150000,
                "peak_current_ripple": 5,
                "isolation_status": "valid",
            },
            "dc_bpt": {"max_discharge_power": 11000, "max_discharge_current": 30},
        },
    ]
}
CONNECTION = {
    "status": "connected",
    "identity": "CP-0042",
    "csms_url": "wss://csms.example.com/ocpp",
}
SERVICE = {"service": "ocpp", "software_version": "0.9.0", "api_version": "1.0", "status": "ready"}

EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "device_model.request": {},
    "device_model.response": {
        "model": "AC22-2",
        "vendor": "Acme Charging",
        "identity": "CP-0042",
        "basic_auth_password": "s3cr3t-password-0042",
        "ocpp_csms_url": "wss://csms.example.com/ocpp",
        "security_profile": 2,
        "serial_number": "SN-2026-0042",
        "firmware_version": "3.1.4",
        "sim_iccid": "8949020000012345678",
        "sim_imsi": "262011234567890",
        "evses": [
            {
                "ocpp_id": 1,
                "iso15118_id": "DE*SEV*E123456789",
                "power_kw": 22,
                "supply_phases": 3,
                "connectors": [{"id": 1, "connector_type": "cType2"}],
            },
            {
                "ocpp_id": 2,
                "iso15118_id": "DE*SEV*E123456790",
                "power_kw": 150.5,
                "supply_phases": 0,
                "connectors": [
                    {"id": 1, "connector_type": "cCCS2"},
                    {"id": 2, "connector_type": "cG105"},
                ],
            },
        ],
        "components": [
            {
                "name": "TemperatureSensor",
                "instance": "inlet",
                "evse_id": "1",
                "connector_id": 1,
                "variables": [
                    {
                        "name": "Temperature",
                        "value": 31.5,
                        "unit": "Celsius",
                        "data_type": "decimal",
                    },
                    {
                        "name": "Enabled",
                        "value": True,
                        "mutability": "ReadWrite",
                        "constant": False,
                    },
                    {
                        "name": "Mode",
                        "value": "eco",
                        "values_list": "eco,boost",
                        "data_type": "OptionList",
                    },
                ],
            }
        ],
    },
    "cs_status_and_limits.request": {},
    "cs_status_and_limits.response": EVSES,
    "cs_status_and_limits.update": {
        "evses": [{"evse_id": "1", "status_code": "evse_ready", "ac": AC_LIMITS}]
    },
    "cp_status.update": {
        "evse_id": "DE*SEV*E123456789",
        "connector_id": 1,
        "state": "B2",
        "max_voltage": 9.1,
        "min_voltage": -12.0,
        "duty_cycle": 53.3,
    },
    "authorization.request": {
        "evse_id": "1",
        "id_token": "04E91C5A2B3F80",
        "token_type": "ISO14443",
    },
    "authorization.response": {"status": "accepted"},
    "authorization.update": {
        "evse_id": "1",
        "id_token": "DE8ACC12E46L89",
        "token_type": "e_maid",
        "status": "accepted",
    },
    "process_authorized_token.request": {
        "evse_id": "1",
        "id_token": "remote-1234",
        "token_type": "central",
    },
    "process_authorized_token.response": {"status": "discarded"},
    "cs_contactor_status.request": {"evse_id": "1"},
    "cs_contactor_status.response": {"evse_id": "1", "status": "opened"},
    "cs_contactor_status.update": {"evse_id": "1", "status": "error", "info": "welded contact"},
    "transaction_status.update": {
        "transaction_id": "5f1b3e0c-7d44-4b1e-9a55-0c9f3e0e9c11",
        "evse_id": "1",
        "status": "started",
        "id_token": "04E91C5A2B3F80",
        "token_type": "ISO14443",
    },
    "meter_values.request": {"timestamp": "2026-11-22T10:00:00Z", "evse_id": "1"},
    "meter_values.response": {
        "evse_id": "1",
        "timestamp": "2026-11-22T10:00:00.123Z",
        "voltage": {"l1": 229.8, "l2": 231.0, "l3": 230.4},
        "current": {"l1": 15.9, "l2": 16.0, "l3": 0},
        "power_factor": 0.98,
        "frequency": 50.01,
        "total_active_energy_imported": 12345.6,
        "total_reactive_energy_imported": 210,
        "total_active_energy_exported": 0,
        "soc": 47,
        "power_active_import": 7360,
        "signed_meter_values": [
            {
                "measurand": "Energy.Active.Import.Register",
                "signed_meter_data": "AP///////wAAAAAAAAAAAAAAAA==",
                "signing_method": "ECDSA-secp256r1-SHA256",
                "encoding_method": "OCMF",
                "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
            }
        ],
    },
    "stop_charging.request": {"evse_id": "1"},
    "stop_charging.response": {"evse_id": "1", "status": "accepted"},
    "reset.request": {},
    "reset.response": {"status": "rejected"},
    "change_availability.request": {
        "operational_status": "inoperative",
        "evse_id": "1",
        "connector_id": 1,
    },
    "change_availability.response": {"status": "accepted"},
    "change_availability.update": {"operational_status": "operative"},
    "cs_connector.request": {"evse_id": "1", "connector_id": 1, "action": "unlock"},
    "cs_connector.response": {"evse_id": "1", "connector_id": 1, "status": "unlocked"},
    "boot_status.update": {"status": "pending"},
    "websocket_status.request": {},
    "websocket_status.response": {**CONNECTION, "security_profile": 2},
    "websocket_status.update": {"status": "disconnected"},
    "service_status.request": {"service": "ocpp"},
    "service_status.response": SERVICE,
    "service_status.update": {**SERVICE, "status": "stopping"},
    "notify_event.update": {
        "event_id": 17,
        "timestamp": "2026-11-22T10:00:00+01:00",
        "tech_code": "E-RCD-6mA",
        "tech_info": "DC residual current above 6 mA",
        "evse_id": "1",
    },
    "set_ocpp_network_connection.request": {
        "csms_url": "wss://csms.example.com/ocpp",
        "security_profile": 3,
    },
    "set_ocpp_network_connection.response": {
        "status": "rejected",
        "reason": "security profile 1 would be a downgrade",
    },
}


def example(full: str) -> dict[str, Any]:
    name, kind = full.split(".")
    data = copy.deepcopy(EXAMPLE_DATA[full])
    return {"id": str(uuid.uuid4()), "name": name, "type": kind, "data": data}


def errors(full: str, message: Any) -> list[tuple[JsonPath, str]]:
    return [(e.path, e.keyword) for e in schemas.envelope_validator(full)(message)]


def subschemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object inside a schema, except the tests of `if` (they describe no shape)."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key != "if":
                yield from subschemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from subschemas(value)


def ocpp_enum(file: str, name: str) -> list[str]:
    schema = json.loads((OCPP201 / file).read_text(encoding="utf-8-sig"))
    enum: list[str] = schema["definitions"][name]["enum"]
    return enum


# --- the set of schemas and their form


def test_there_is_a_schema_for_every_message_and_type_of_the_session_api() -> None:
    present = set(schemas.envelope_schema_names())
    assert present == {*ALL, "ocpp_message.request", "ocpp_message.response", *EXTRA}


EXTRA = {"envelope", "error.response"}


@pytest.mark.parametrize("full", ALL)
def test_every_schema_compiles_and_loads_through_the_service(full: str) -> None:
    schema = schemas.envelope_schema(full)
    jsonschema.Draft202012Validator.check_schema(schema)  # a well-formed 2020-12 schema
    assert schemas.compile_schema(schema)(example(full)) == []
    assert schemas.envelope_validator(full)(example(full)) == []


@pytest.mark.parametrize("full", ALL)
def test_every_schema_keeps_the_house_style(full: str) -> None:
    name, kind = full.split(".")
    schema = schemas.envelope_schema(full)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:ocpp-bridge:schemas:{full}"
    assert schema["required"] == ["id", "name", "type", "data"]
    assert schema["properties"]["id"]["format"] == "uuid"
    assert schema["properties"]["name"] == {"const": name}
    assert schema["properties"]["type"] == {"const": kind}
    assert f"on {MESSAGES[name, kind]}" in schema["description"]


@pytest.mark.parametrize("full", ALL)
def test_every_object_of_every_schema_forbids_unknown_fields(full: str) -> None:
    """the session API: an unknown field from the OEM is an error; a CallError's details are free."""
    schema = schemas.envelope_schema(full)
    details = schema["$defs"].get("call_error", {}).get("properties", {}).get("error_details")
    objects = [n for n in subschemas(schema) if n.get("type") == "object" and n is not details]
    assert len(objects) >= 2  # the envelope and its data
    for node in objects:
        assert node.get("additionalProperties") is False, node


# --- realistic messages pass, both with the service's backend and the reference implementation


@pytest.mark.parametrize("full", ALL)
def test_a_realistic_message_is_valid(full: str) -> None:
    message = example(full)
    assert schemas.envelope_validator(full)(message) == []
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    reference = jsonschema.Draft202012Validator(
        schemas.envelope_schema(full), format_checker=checker
    )
    assert list(reference.iter_errors(message)) == []


@pytest.mark.parametrize("full", [f for f in ALL if f.endswith(".response")])
def test_every_response_also_takes_the_bridges_error_answer(full: str) -> None:
    """The bridge answers a request it cannot take under the request's name (bridge.oem.api)."""
    name = full.removesuffix(".response")
    error = CallError("FormatViolation", f"{name}: $.data: unexpected property 'pin'")
    answer = envelope.response(str(uuid.uuid4()), name, envelope.ocpp_data(error, "ocpp2.0.1"))
    assert schemas.envelope_validator(full)(answer) == []
    assert schemas.envelope_validator("error.response")(answer) == []
    call_error = schemas.envelope_schema(full)["$defs"]["call_error"]
    assert call_error == schemas.envelope_schema("error.response")["properties"]["data"]
    del answer["data"]["error_code"]
    assert errors(full, answer) == [(("data",), "required")]


# --- enums and limits exactly as the session API (and OCPP) give them


def test_token_types_are_the_session_apis() -> None:
    for full in ALL:
        for node in subschemas(schemas.envelope_schema(full)):
            if "token_type" in node.get("properties", {}):
                assert node["properties"]["token_type"]["enum"] == TOKEN_TYPES, full


def test_status_codes_and_cp_states_are_the_session_apis() -> None:
    for full in ("cs_status_and_limits.update", "cs_status_and_limits.response"):
        evse = schemas.envelope_schema(full)["$defs"]["data"]["properties"]["evses"]["items"]
        assert sorted(evse["properties"]["status_code"]["enum"]) == sorted(STATUS_CODES)
    cp = schemas.envelope_schema("cp_status.update")["$defs"]["data"]["properties"]
    assert cp["state"]["enum"] == CP_STATES


def test_ocpp_enums_are_the_ocpp_packages() -> None:
    dm = schemas.envelope_schema("device_model.response")["$defs"]["data"]["properties"]
    connector = dm["evses"]["items"]["properties"]["connectors"]["items"]["properties"]
    assert connector["connector_type"]["enum"] == ocpp_enum(
        "ReserveNowRequest.json", "ConnectorEnumType"
    )
    variable = dm["components"]["items"]["properties"]["variables"]["items"]["properties"]
    assert variable["mutability"]["enum"] == ocpp_enum(
        "NotifyReportRequest.json", "MutabilityEnumType"
    )
    assert variable["data_type"]["enum"] == ocpp_enum("NotifyReportRequest.json", "DataEnumType")
    meter = schemas.envelope_schema("meter_values.response")["$defs"]["data"]["properties"]
    assert meter["signed_meter_values"]["items"]["properties"]["measurand"]["enum"] == ocpp_enum(
        "MeterValuesRequest.json", "MeasurandEnumType"
    )


def _with(full: str, dotted: str, value: Any) -> dict[str, Any]:
    """The example with one field set (or removed, for KeyError); `dotted` is under `data`."""
    message = example(full)
    *parents, last = dotted.split(".")
    target: Any = message["data"]
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return message


def _path(dotted: str) -> JsonPath:
    return ("data", *(int(p) if p.isdigit() else p for p in dotted.split(".")))


@pytest.mark.parametrize(
    ("full", "field", "value", "keyword"),
    [
        # unknown fields, at every depth
        ("authorization.request", "pin", "1234", "additionalProperties"),
        ("cs_status_and_limits.update", "evses.0.ac.phase_count", 3, "additionalProperties"),
        ("device_model.response", "evses.0.connectors.0.power", 7, "additionalProperties"),
        ("meter_values.response", "voltage.n", 0.2, "additionalProperties"),
        ("reset.request", "hard", True, "additionalProperties"),
        ("service_status.response", "message_type", "CallResult", "additionalProperties"),
        # enums
        ("authorization.request", "token_type", "rfid", "enum"),
        ("authorization.request", "token_type", "KeyCode", "enum"),  # OCPP's spelling, not ours
        ("cp_status.update", "state", "G", "enum"),
        ("cs_status_and_limits.update", "evses.0.status_code", "evse_faulted", "enum"),
        ("cs_connector.request", "action", "open", "enum"),
        ("cs_contactor_status.update", "status", "welded", "enum"),
        ("transaction_status.update", "status", "updated", "enum"),
        ("device_model.response", "evses.0.connectors.0.connector_type", "Type2", "enum"),
        ("service_status.update", "status", "running", "enum"),
        ("process_authorized_token.response", "status", "rejected", "enum"),
        # evse_id is a string, connector_id an integer >= 1
        ("cp_status.update", "evse_id", 1, "type"),
        ("stop_charging.request", "evse_id", 1, "type"),
        ("device_model.response", "components.0.evse_id", 1, "type"),
        ("cp_status.update", "connector_id", 0, "minimum"),
        ("cs_connector.request", "connector_id", "1", "type"),
        # lengths
        ("notify_event.update", "tech_code", "E" * 51, "maxLength"),
        ("notify_event.update", "tech_info", "I" * 501, "maxLength"),
        ("notify_event.update", "transaction_id", "T" * 37, "maxLength"),
        ("transaction_status.update", "transaction_id", "T" * 37, "maxLength"),
        ("authorization.update", "id_token", "X" * 37, "maxLength"),
        # physical quantities, profiles, formats
        ("meter_values.response", "voltage.l1", -1, "minimum"),
        ("meter_values.response", "total_active_energy_imported", -0.5, "minimum"),
        ("cs_status_and_limits.update", "evses.0.ac.nominal_voltage", -230, "minimum"),
        ("cp_status.update", "duty_cycle", 100.5, "maximum"),
        ("device_model.response", "security_profile", 0, "minimum"),
        ("set_ocpp_network_connection.request", "security_profile", 4, "maximum"),
        ("websocket_status.response", "security_profile", 1.5, "type"),
        ("meter_values.request", "timestamp", "22.11.2026 10:00", "format"),
        ("notify_event.update", "timestamp", "2026-11-22", "format"),
        ("set_ocpp_network_connection.request", "csms_url", "https://csms.example.com", "pattern"),
        # required fields
        ("meter_values.response", "timestamp", KeyError, "required"),
        ("device_model.response", "evses", KeyError, "required"),
        ("cs_contactor_status.response", "evse_id", KeyError, "required"),
        ("authorization.update", "evse_id", KeyError, "required"),  # optional in the request
        ("change_availability.request", "evse_id", KeyError, "required"),  # connector_id needs it
    ],
)
def test_an_invalid_field_fails_with_the_right_keyword(
    full: str, field: str, value: Any, keyword: str
) -> None:
    found = errors(full, _with(full, field, value))
    parent = _path(field)[:-1]
    where = parent if keyword in ("additionalProperties", "required") else _path(field)
    assert (where, keyword) in found, found


def test_an_empty_request_takes_no_fields() -> None:
    for full in (
        "device_model.request",
        "cs_status_and_limits.request",
        "websocket_status.request",
    ):
        assert errors(full, {**example(full), "data": {"evse_id": "1"}}) == [
            (("data",), "additionalProperties")
        ]


def test_envelope_errors_are_the_envelopes() -> None:
    message = example("cp_status.update")
    del message["id"]
    message["type"] = "request"
    message["extra"] = 1
    assert sorted(errors("cp_status.update", message)) == [
        ((), "additionalProperties"),
        ((), "required"),
        (("type",), "const"),
    ]


# --- hypothesis: messages built from the session API's field lists pass; an unknown field fails

NAME_CHARS = string.ascii_letters + string.digits + "-_"
evse_ids = st.integers(1, 99).map(str) | st.from_regex(
    r"[A-Z]{2}\*[A-Z0-9]{3}\*E[0-9]{1,9}", fullmatch=True
)
connector_ids = st.integers(1, 9)
tokens = st.text(NAME_CHARS, max_size=36)
token_types = st.sampled_from(TOKEN_TYPES)
texts = st.text(max_size=40)
timestamps = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)).map(
    lambda d: d.isoformat().replace("+00:00", "Z")
)
urls = st.builds(
    lambda scheme, host: f"{scheme}://{host}.example.com/ocpp",
    st.sampled_from(["ws", "wss"]),
    st.from_regex(r"[a-z][a-z0-9]{0,15}", fullmatch=True),
)
profiles = st.integers(1, 3)


def amount(high: float = 1e6) -> st.SearchStrategy[float | int]:
    return st.integers(0, int(high)) | st.floats(0, high, allow_nan=False)


def record(
    required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional or {})


def three(unit_high: float, required: bool) -> st.SearchStrategy[dict[str, Any]]:
    fields = {p: amount(unit_high) for p in ("l1", "l2", "l3")}
    return record(fields) if required else record({}, fields)


empty: st.SearchStrategy[dict[str, Any]] = st.just({})
evse_status = record(
    {"evse_id": evse_ids, "status_code": st.sampled_from(STATUS_CODES)},
    {
        "ac": record(
            {
                "max_current": three(80, True),
                "nominal_voltage": amount(480),
                "rcd_error": st.booleans(),
            }
        ),
    },
)
evses = record({"evses": st.lists(evse_status, min_size=1, max_size=3)})
availability = st.one_of(
    record(
        {"operational_status": st.sampled_from(["operative", "inoperative"])}, {"evse_id": evse_ids}
    ),
    record(
        {
            "operational_status": st.sampled_from(["operative", "inoperative"]),
            "evse_id": evse_ids,
            "connector_id": connector_ids,
        }
    ),
)
authorized = record(
    {
        "evse_id": evse_ids,
        "token_type": token_types,
        "status": st.sampled_from(["accepted", "rejected", "deauthorized"]),
    },
    {"id_token": tokens},
)
token = record({"token_type": token_types}, {"evse_id": evse_ids, "id_token": tokens})
contactor = record(
    {"evse_id": evse_ids, "status": st.sampled_from(["closed", "opened", "error"])}, {"info": texts}
)
link = record(
    {"status": st.sampled_from(["connected", "disconnected"])},
    {
        "identity": st.text(NAME_CHARS, min_size=1, max_size=20),
        "csms_url": urls,
        "security_profile": profiles,
    },
)
service = record(
    {
        "service": st.just("ocpp"),
        "software_version": st.text(min_size=1, max_size=10),
        "api_version": st.text(min_size=1, max_size=10),
        "status": st.sampled_from(["ready", "starting", "stopping", "error", "busy"]),
    }
)
accepted_rejected = record({"status": st.sampled_from(["accepted", "rejected"])})
connector_types = st.sampled_from(ocpp_enum("ReserveNowRequest.json", "ConnectorEnumType"))
device_model = record(
    {
        "model": st.text(NAME_CHARS, min_size=1, max_size=20),
        "vendor": st.text(NAME_CHARS, min_size=1, max_size=50),
        "identity": st.text(NAME_CHARS, min_size=1, max_size=20),
        "basic_auth_password": st.text(NAME_CHARS, min_size=16, max_size=40),
        "ocpp_csms_url": urls,
        "security_profile": profiles,
        "serial_number": st.text(NAME_CHARS, max_size=25),
        "firmware_version": st.text(NAME_CHARS, max_size=50),
        "evses": st.lists(
            record(
                {
                    "ocpp_id": st.integers(1, 9),
                    "iso15118_id": evse_ids,
                    "power_kw": amount(350),
                    "supply_phases": st.integers(0, 3),
                    "connectors": st.lists(
                        record({"id": connector_ids, "connector_type": connector_types}),
                        min_size=1,
                        max_size=2,
                    ),
                }
            ),
            min_size=1,
            max_size=2,
        ),
    },
    {
        "sim_iccid": st.text(string.digits, max_size=20),
        "sim_imsi": st.text(string.digits, max_size=15),
        "components": st.lists(
            record(
                {
                    "name": st.text(NAME_CHARS, min_size=1, max_size=50),
                    "variables": st.lists(
                        record(
                            {
                                "name": st.text(NAME_CHARS, min_size=1, max_size=50),
                                "value": st.text(max_size=30) | st.integers() | st.booleans(),
                            },
                            {
                                "unit": st.text(max_size=16),
                                "mutability": st.sampled_from(
                                    ["ReadOnly", "ReadWrite", "WriteOnly"]
                                ),
                                "constant": st.booleans(),
                            },
                        ),
                        min_size=1,
                        max_size=2,
                    ),
                },
                {"instance": st.text(NAME_CHARS, min_size=1, max_size=50)},
            ),
            max_size=2,
        ),
    },
)
meter_values = record(
    {
        "timestamp": timestamps,
        "voltage": three(480, False),
        "current": three(80, False),
        "power_factor": st.floats(-1, 1),
        "frequency": amount(70),
        "total_active_energy_imported": amount(1e9),
        "total_reactive_energy_imported": amount(1e9),
    },
    {
        "evse_id": evse_ids,
        "total_active_energy_exported": amount(1e9),
        "total_reactive_energy_exported": amount(1e9),
        "dc_current": amount(500),
        "dc_voltage": amount(1000),
        "soc": amount(100),
        "power_active_import": amount(350000),
        "signed_meter_values": st.lists(
            record(
                {
                    "measurand": st.sampled_from(
                        ["Energy.Active.Import.Register", "Power.Active.Import"]
                    ),
                    "signed_meter_data": st.text(max_size=60),
                    "signing_method": st.text(max_size=50),
                    "encoding_method": st.just("OCMF"),
                    "public_key": st.text(max_size=60),
                }
            ),
            max_size=2,
        ),
    },
)
call_errors = record(
    {
        "message_type": st.just("CallError"),
        "ocpp_version": st.sampled_from(["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]),
        "error_code": st.sampled_from(["FormatViolation", "NotSupported", "GenericError"]),
        "error_description": st.text(max_size=255),
        "error_details": st.just({}),
    }
)

DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "device_model.request": empty,
    "device_model.response": device_model,
    "cs_status_and_limits.request": empty,
    "cs_status_and_limits.response": evses,
    "cs_status_and_limits.update": evses,
    "cp_status.update": record(
        {"evse_id": evse_ids, "connector_id": connector_ids, "state": st.sampled_from(CP_STATES)},
        {
            "max_voltage": st.floats(-12, 12),
            "min_voltage": st.floats(-12, 12),
            "duty_cycle": st.floats(0, 100),
        },
    ),
    "authorization.request": token,
    "authorization.response": record(
        {"status": st.sampled_from(["accepted", "rejected", "deauthorized"])}
    ),
    "authorization.update": authorized,
    "process_authorized_token.request": token,
    "process_authorized_token.response": record(
        {"status": st.sampled_from(["accepted", "discarded"])}
    ),
    "cs_contactor_status.request": record({"evse_id": evse_ids}),
    "cs_contactor_status.response": contactor,
    "cs_contactor_status.update": contactor,
    "transaction_status.update": record(
        {
            "transaction_id": st.uuids().map(str),
            "evse_id": evse_ids,
            "status": st.sampled_from(["started", "in_progress", "ended"]),
        },
        {"id_token": tokens, "token_type": token_types},
    ),
    "meter_values.request": record({"timestamp": timestamps}, {"evse_id": evse_ids}),
    "meter_values.response": meter_values,
    "stop_charging.request": record({"evse_id": evse_ids}),
    "stop_charging.response": record(
        {"evse_id": evse_ids, "status": st.sampled_from(["accepted", "rejected"])}
    ),
    "reset.request": record({}, {"evse_id": evse_ids}),
    "reset.response": accepted_rejected,
    "change_availability.request": availability,
    "change_availability.response": accepted_rejected,
    "change_availability.update": availability,
    "cs_connector.request": record(
        {
            "evse_id": evse_ids,
            "connector_id": connector_ids,
            "action": st.sampled_from(["lock", "unlock", "status"]),
        }
    ),
    "cs_connector.response": record(
        {
            "evse_id": evse_ids,
            "connector_id": connector_ids,
            "status": st.sampled_from(["locked", "unlocked", "error", "unknown"]),
        },
        {"info": texts},
    ),
    "boot_status.update": record({"status": st.sampled_from(["accepted", "pending", "rejected"])}),
    "websocket_status.request": empty,
    "websocket_status.response": link,
    "websocket_status.update": link,
    "service_status.request": record({"service": st.just("ocpp")}),
    "service_status.response": service,
    "service_status.update": service,
    "notify_event.update": record(
        {"event_id": st.integers(0, 2**31 - 1), "timestamp": timestamps},
        {
            "tech_code": st.text(max_size=50),
            "tech_info": st.text(max_size=500),
            "transaction_id": st.text(max_size=36),
            "evse_id": evse_ids,
        },
    ),
    "set_ocpp_network_connection.request": record(
        {"csms_url": urls, "security_profile": profiles},
        {
            "identity": st.text(NAME_CHARS, min_size=1, max_size=20),
            "basic_auth_password": st.text(max_size=40),
        },
    ),
    "set_ocpp_network_connection.response": record(
        {"status": st.sampled_from(["accepted", "rejected"])}, {"reason": texts}
    ),
}


def _message(full: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    name, kind = full.split(".")
    data = DATA[full] | call_errors if kind == "response" else DATA[full]
    return record(
        {"id": st.uuids().map(str), "name": st.just(name), "type": st.just(kind), "data": data}
    ).map(lambda message: (full, message))


messages = st.sampled_from(ALL).flatmap(_message)
FIELD_NAMES = {
    key
    for full in ALL
    for node in subschemas(schemas.envelope_schema(full))
    for key in node.get("properties", {})
}


def test_the_strategies_cover_every_message_and_type() -> None:
    assert sorted(DATA) == ALL


def _objects(value: Any, path: JsonPath = ()) -> Iterator[JsonPath]:
    """The paths of every object in a message, except a CallError's free-form details."""
    if isinstance(value, dict):
        if path[-1:] != ("error_details",):
            yield path
        for key, child in value.items():
            yield from _objects(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _objects(child, (*path, index))


@settings(max_examples=400, deadline=None)
@given(messages)
def test_messages_built_from_the_session_api_are_valid(case: tuple[str, dict[str, Any]]) -> None:
    full, message = case
    assert schemas.envelope_validator(full)(message) == []


@settings(max_examples=400, deadline=None)
@given(messages, st.data())
def test_an_unknown_property_anywhere_is_an_error(
    case: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    full, message = case
    where = data.draw(st.sampled_from(list(_objects(message))))
    key = data.draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELD_NAMES))
    target: Any = message
    for part in where:
        target = target[part]
    target[key] = data.draw(st.none() | st.booleans() | st.integers() | st.text(max_size=5))
    assert (where, "additionalProperties") in errors(full, message)


def test_ocpp_bridge_validate_checks_every_session_message() -> None:
    """`ocpp-bridge validate` takes them all (JSON Lines), and finds the error in a broken one."""
    lines = [json.dumps(example(full)) for full in ALL]
    lines.append(json.dumps(_with("notify_event.update", "tech_code", "E" * 51)))
    results = validate.validate_text("\n".join(lines), "session.jsonl")
    assert [r.errors for r in results[:-1]] == [[]] * len(ALL)
    assert [r.notes for r in results] == [[]] * (len(ALL) + 1)
    assert [(e.path, e.message) for e in results[-1].errors] == [
        ("$.data.tech_code", "must be at most 50 characters long")
    ]
