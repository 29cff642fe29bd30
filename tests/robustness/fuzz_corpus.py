"""10,000 bad MQTT messages for the bridge, and what each must get (README "What bad
input gets").

Four sources, with fixed seeds (hypothesis also draws constants from the modules loaded at the
time, so its part is the same run after run of the same test selection, not across selections;
a failure shows the message's first bytes):

- hypothesis: envelopes with arbitrary JSON in every field, and OCPP payloads for the actions that
  change stored state (SetVariables, InstallCertificate, DeleteCertificate, SetNetworkProfile)
  built so that the bridge must reject them: they fail the OCPP schema, or they pass it with values
  the station must refuse (characteristics, ReadOnly, unknown variables, downgrades, ...);
- raw byte mutation of the Josev ocpp_message API's examples: bit flips, truncation, inserted and deleted bytes;
- structural mutation: a random node of an example (or of a hypothesis message) replaced;
- hand-written extremes: deep nesting, huge strings, lone surrogates, 1e309, NaN, duplicate
  keys, other encodings, the 256 KiB limit.

`classify` is the oracle of README "What bad input gets": a message that is not JSON (RFC 8259: `NaN` and
`Infinity` are not JSON), not an object, larger than 256 KiB, without a UUID `id`, a `response`
or an `update`, is dropped; every other gets exactly one answer. A number beyond a double (`1e309`)
is JSON whose range RFC 8259 leaves to the implementation: such a message may be answered or
dropped, but never answered twice.

A mutated message that might legitimately change the store (a schema-valid request of a
state-changing action) is not used, so that "the store is unchanged" is a valid expectation.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bridge import schemas
from tests.conftest import SEED_REQUESTS, example

MAX_BYTES = 256 * 1024
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
CHANGING = ("SetVariables", "InstallCertificate", "DeleteCertificate", "SetNetworkProfile")
REJECTED_VARIABLE = ("Rejected", "UnknownComponent", "UnknownVariable", "NotSupportedAttributeType")

Check = Callable[[dict[str, Any], dict[str, Any]], str | None]
"""A check of an answer's `data` (given the request's `data`) beyond the schemas: None when fine,
else what is wrong."""


@dataclass
class Case:
    raw: bytes
    origin: str
    check: Check | None = None
    answer_id: str | None = field(default=None, init=False)  # the id an answer would carry
    must_answer: bool = field(default=False, init=False)  # False: dropping it is right too
    body: dict[str, Any] | None = field(default=None, init=False, repr=False)


class _NotJson(ValueError):
    pass


class _OutOfRange(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotJson(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(text)
    return value


def classify(raw: bytes) -> tuple[str, dict[str, Any], bool] | None:
    """(id, body, must it be answered) of a message with something to answer; None for one that
    must be dropped."""
    if len(raw) > MAX_BYTES:
        return None
    must = True
    try:
        body = json.loads(raw, parse_constant=_constant, parse_float=_finite)
    except _OutOfRange:
        must = False
        try:
            body = json.loads(raw, parse_constant=_constant)
        except (ValueError, RecursionError):
            return None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(body, dict):
        return None
    message_id = body.get("id")
    if not isinstance(message_id, str) or UUID.fullmatch(message_id) is None:
        return None
    if body.get("type") in ("response", "update"):  # answers and news: never answered
        return None
    return message_id, body, must


def might_change_state(body: Any) -> bool:
    """A request the bridge may execute with a lasting effect: not for the unchanged-store run."""
    if not isinstance(body, dict):
        return False
    data = body.get("data")
    if body.get("name") != "ocpp_message" or not isinstance(data, dict):
        return False
    action = data.get("message_name")
    if not isinstance(action, str) or action not in CHANGING:
        return False
    payload = data.get("payload")
    if data.get("ocpp_version") != "ocpp2.0.1" or not isinstance(payload, dict):
        return False
    return not schemas.ocpp_validator("ocpp2.0.1", action)(payload)


def seed_example(name: str) -> dict[str, Any]:
    """A seed example with its own id (a fresh one would change the corpus from run to run)."""
    return example(name, fresh_id=False)


SEEDS = (*SEED_REQUESTS, "response.CallError", "response.GetVariables")
OCTT_PEM: str = seed_example("request.InstallCertificate")["data"]["payload"]["certificate"]


def envelope(action: str, payload: Any, version: str = "ocpp2.0.1") -> dict[str, Any]:
    return {
        "id": "",
        "name": "ocpp_message",
        "type": "request",
        "data": {"ocpp_version": version, "message_name": action, "payload": payload},
    }


# --- checks of the answer's data


def call_error(data: dict[str, Any], request: dict[str, Any]) -> str | None:
    return None if data.get("message_type") == "CallError" else "expected a CallError"


def call_result(statuses: tuple[str, ...]) -> Check:
    def check(data: dict[str, Any], request: dict[str, Any]) -> str | None:
        if data.get("message_type") != "CallResult":
            return f"expected a CallResult with status in {statuses}"
        status = data["payload"].get("status")
        return None if status in statuses else f"status {status!r}, expected one of {statuses}"

    return check


def variables_rejected(data: dict[str, Any], request: dict[str, Any]) -> str | None:
    if data.get("message_type") != "CallResult":
        return "expected a CallResult rejecting every variable"
    results = data["payload"]["setVariableResult"]
    items = request["payload"]["setVariableData"]
    wrong = [
        f"{item['component']['name']}.{item['variable']['name']} = "
        f"{item['attributeValue']!r}: {result['attributeStatus']}"
        for item, result in zip(items, results, strict=False)
        if result["attributeStatus"] not in REJECTED_VARIABLE
    ]
    return f"a value the station must refuse was taken: {wrong}" if wrong else None


def result_or_error(data: dict[str, Any], request: dict[str, Any]) -> str | None:
    return None


# --- hypothesis: what to generate

_names = st.text(min_size=0, max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=16)
    | st.sampled_from(["\ud800", "a\udfffb", "\x00", "ocpp_message", "request", "response"])
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_names, children, max_size=3),
    max_leaves=6,
)

# ("uuid", variant) is turned into a fresh id after generation; anything else is the id itself.
# Mostly a proper UUID: an envelope without one is only dropped, which teaches little.
_id_variants = st.sampled_from(
    ["upper", "braces", "urn", "hex", "newline", "space", "short", "nonhex"]
).map(lambda variant: ("uuid", variant))
_ids = st.integers(0, 9).flatmap(
    lambda n: st.just(("uuid", "plain")) if n < 7 else (_id_variants if n < 9 else _scalars)
)

envelopes = st.fixed_dictionaries(
    {"id": _ids},
    optional={
        "name": st.sampled_from(["ocpp_message", "service_status", "Ocpp_Message", ""])
        | json_values,
        "type": st.sampled_from(["request", "update", "response", "REQUEST"]) | json_values,
        "data": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "ocpp_version": st.sampled_from(["ocpp2.0.1", "ocpp1.6", "ocpp2.1", "2.0.1"])
                | json_values,
                "message_name": st.sampled_from(
                    [*CHANGING, "GetVariables", "Reset", "BootNotification", "Teleport"]
                )
                | json_values,
                "payload": json_values,
                "extra": json_values,
            },
        ),
        "extra": json_values,
    },
)

_BAD_INTEGERS = (
    *("", "abc", "01", "+5", "1.5", "1e3", " 5", "5 ", "0x10", "2147483648", "-2147483649"),
    *("99999999999", "NaN", "Infinity", "-", "--1", "1-", "½", "١٢", "1٢", "1\uff13"),
)
_BAD_BOOLEANS = ("True", "FALSE", "1", "0", "yes", "", "true ", " false", "ｔｒｕｅ")
_BAD_PASSWORDS = (
    *("short", "x" * 41, "has space in it 12345", "ÄÖÜäöüßÄÖÜäöüß12", "pass\nword123456789"),
    *("", "1234567890123456\x00", "<script>alert(1)</script>", "pässwörd-pässwörd"),
)
# (component, variable, values it must refuse): writable variables with bad values.
_WRITABLE = (
    ("OCPPCommCtrlr", "HeartbeatInterval", ("0", "-1", *_BAD_INTEGERS)),
    ("OCPPCommCtrlr", "OfflineThreshold", ("-1", *_BAD_INTEGERS)),
    ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", ("0", *_BAD_INTEGERS)),
    ("TxCtrlr", "EVConnectionTimeOut", ("-5", *_BAD_INTEGERS)),
    ("SampledDataCtrlr", "TxUpdatedInterval", _BAD_INTEGERS),
    ("AuthCtrlr", "LocalAuthorizeOffline", _BAD_BOOLEANS),
    ("OCPPCommCtrlr", "QueueAllMessages", _BAD_BOOLEANS),
    ("TxCtrlr", "TxStartPoint", ("Foo", "Authorized,Authorized", ",", "Authorized,", "authorized")),
    ("SampledDataCtrlr", "TxUpdatedMeasurands", ("Power.Offered", "Voltage,Voltage", "voltage")),
    ("ClockCtrlr", "TimeSource", ("", "Sundial", "Heartbeat,Heartbeat", "heartbeat")),
    ("OCPPCommCtrlr", "NetworkConfigurationPriority", ("", "0", "4", "3", "1,1", "1,", "a", "1 ")),
    ("SecurityCtrlr", "BasicAuthPassword", _BAD_PASSWORDS),
    ("SecurityCtrlr", "OrganizationName", ("x" * 51, "y" * 1000)),
)
# Variables the CSMS (and the OEM) must not write at all, whatever the value.
_READ_ONLY = (
    ({"name": "SecurityCtrlr"}, {"name": "SecurityProfile"}),
    ({"name": "OCPPCommCtrlr"}, {"name": "MessageTimeout", "instance": "Default"}),
    ({"name": "DeviceDataCtrlr"}, {"name": "ItemsPerMessage", "instance": "GetVariables"}),
    ({"name": "DeviceDataCtrlr"}, {"name": "ConfigurationValueSize"}),
    ({"name": "ChargingStation"}, {"name": "Model"}),
    ({"name": "SecurityCtrlr"}, {"name": "Identity"}),
    ({"name": "SecurityCtrlr"}, {"name": "CertificateEntries"}),
    ({"name": "EVSE", "evse": {"id": 1}}, {"name": "AvailabilityState"}),
    ({"name": "Connector", "evse": {"id": 1, "connectorId": 1}}, {"name": "ConnectorType"}),
    ({"name": "ClockCtrlr"}, {"name": "DateTime"}),
    ({"name": "OCPPCommCtrlr"}, {"name": "ActiveNetworkProfile"}),
)
_unknown_name = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_", max_size=20
).map(lambda s: "Zz" + s)
_short_text = st.text(max_size=30)


@st.composite
def rejected_item(draw: st.DrawFn) -> dict[str, Any]:
    """One SetVariableData the station must refuse."""
    kind = draw(st.sampled_from(["bad value", "read-only", "unknown", "attribute type"]))
    if kind == "bad value":
        component, variable, values = draw(st.sampled_from(_WRITABLE))
        item = {
            "component": {"name": draw(st.sampled_from([component, component.lower()]))},
            "variable": {"name": variable},
            "attributeValue": draw(st.sampled_from(values)),
        }
    elif kind == "read-only":
        component, variable = draw(st.sampled_from(_READ_ONLY))
        item = {"component": component, "variable": variable, "attributeValue": draw(_short_text)}
    elif kind == "unknown":
        known = draw(st.sampled_from(["OCPPCommCtrlr", "AuthCtrlr", "TxCtrlr"]))
        component = draw(st.sampled_from([known, draw(_unknown_name)]))
        variable_name = draw(_unknown_name)
        item = {
            "component": {"name": component[:50]},
            "variable": {"name": variable_name[:50]},
            "attributeValue": draw(_short_text),
        }
        if draw(st.booleans()):
            item["component"]["evse"] = {"id": draw(st.integers(2, 2**31 - 1))}
    else:
        component, variable, _ = draw(st.sampled_from(_WRITABLE[:7]))
        item = {
            "component": {"name": component},
            "variable": {"name": variable},
            "attributeValue": "5",
            "attributeType": draw(st.sampled_from(["Target", "MinSet", "MaxSet"])),
        }
    return item


_custom = st.fixed_dictionaries({"vendorId": st.text(max_size=10)}, optional={"x": json_values})


@st.composite
def set_variables_rejected(draw: st.DrawFn) -> tuple[dict[str, Any], Check]:
    payload: dict[str, Any] = {
        "setVariableData": draw(st.lists(rejected_item(), min_size=1, max_size=6))
    }
    if draw(st.integers(0, 9)) == 0:
        payload["customData"] = draw(_custom)
    return envelope("SetVariables", payload), variables_rejected


@st.composite
def set_variables_schema_invalid(draw: st.DrawFn) -> tuple[dict[str, Any], Check]:
    item: dict[str, Any] = {
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "OfflineThreshold"},
        "attributeValue": "300",  # valid on its own: the request as a whole must be refused
    }
    how = draw(
        st.sampled_from(["drop", "type", "long", "extra", "enum", "empty", "items", "bytes"])
    )
    payload: dict[str, Any] = {"setVariableData": [item]}
    if how == "drop":
        del item[draw(st.sampled_from(["component", "variable", "attributeValue"]))]
    elif how == "type":
        key = draw(st.sampled_from(["component", "variable", "attributeValue"]))
        item[key] = draw(st.integers() | st.lists(st.integers(), max_size=2) | st.none())
    elif how == "long":
        item["attributeValue"] = "7" * draw(st.integers(1001, 3000))
    elif how == "extra":
        item[draw(_unknown_name)] = draw(json_values)
    elif how == "enum":
        item["attributeType"] = draw(st.sampled_from(["actual", "Bogus", "", "ACTUAL"]))
    elif how == "empty":
        payload["setVariableData"] = []
    elif how == "items":  # ItemsPerMessage[SetVariables] is 100
        payload["setVariableData"] = [item] * draw(st.integers(101, 130))
    else:  # BytesPerMessage[SetVariables] is 65536
        payload["customData"] = {"vendorId": "x", "pad": "p" * draw(st.integers(65600, 90000))}
    return envelope("SetVariables", payload), call_error


_CERT_TYPES = (
    "V2GRootCertificate",
    "MORootCertificate",
    "CSMSRootCertificate",
    "ManufacturerRootCertificate",
)


def _damaged_octt(position: int) -> str:
    """The OCTT root with one base64 character of its body changed: a different DER whose
    signature cannot verify (or that does not parse)."""
    lines = OCTT_PEM.strip().splitlines()
    body = "".join(lines[1:-1])
    index = 8 + position % (len(body) - 24)  # away from the padding bits at the end
    replacement = "A" if body[index] != "A" else "B"
    body = body[:index] + replacement + body[index + 1 :]
    wrapped = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{wrapped}\n-----END CERTIFICATE-----\n"


@st.composite
def install_certificate_rejected(draw: st.DrawFn) -> tuple[dict[str, Any], Check]:
    how = draw(st.sampled_from(["text", "base64", "damaged", "two", "key", "schema"]))
    certificate_type = draw(st.sampled_from(_CERT_TYPES))
    if how == "text":
        certificate = draw(st.text(max_size=200))
    elif how == "base64":
        blob = base64.b64encode(draw(st.binary(min_size=1, max_size=600))).decode()
        certificate = f"-----BEGIN CERTIFICATE-----\n{blob}\n-----END CERTIFICATE-----\n"
    elif how == "damaged":
        certificate = _damaged_octt(draw(st.integers(0, 10_000)))
    elif how == "two":
        certificate = OCTT_PEM + OCTT_PEM
    elif how == "key":
        blob = base64.b64encode(draw(st.binary(min_size=32, max_size=200))).decode()
        certificate = f"-----BEGIN PRIVATE KEY-----\n{blob}\n-----END PRIVATE KEY-----\n"
    else:
        payload: dict[str, Any] = draw(
            st.sampled_from(
                [
                    {"certificateType": certificate_type},
                    {"certificate": OCTT_PEM},
                    {"certificateType": "Bogus", "certificate": OCTT_PEM},
                    {"certificateType": certificate_type, "certificate": "A" * 5501},
                    {"certificateType": certificate_type, "certificate": 5},
                    {"certificateType": certificate_type, "certificate": OCTT_PEM, "x": 1},
                ]
            )
        )
        return envelope("InstallCertificate", payload), call_error
    payload = {"certificateType": certificate_type, "certificate": certificate}
    return envelope("InstallCertificate", payload), call_result(("Rejected",))


_hex = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=128)


@st.composite
def delete_certificate_rejected(draw: st.DrawFn) -> tuple[dict[str, Any], Check]:
    real = seed_example("request.DeleteCertificate")["data"]["payload"]["certificateHashData"]
    if draw(st.booleans()):
        data = {
            "hashAlgorithm": draw(st.sampled_from(["SHA256", "SHA384", "SHA512"])),
            "issuerNameHash": draw(_hex),
            "issuerKeyHash": draw(_hex),
            "serialNumber": draw(st.text(alphabet="0123456789abcdef", min_size=1, max_size=40)),
        }
        if data["serialNumber"].lstrip("0") == "4":
            data["serialNumber"] = "5"
    else:  # the installed root's hash data with one field changed
        data = dict(real)
        key = draw(st.sampled_from(["issuerNameHash", "issuerKeyHash", "serialNumber"]))
        data[key] = data[key][:-1] + ("0" if data[key][-1] != "0" else "1")
    if draw(st.integers(0, 3)) == 0:  # outside the schema
        broken = draw(
            st.sampled_from(
                [
                    {**data, "hashAlgorithm": "MD5"},
                    {k: v for k, v in data.items() if k != "serialNumber"},
                    {**data, "serialNumber": "1" * 41},
                    {**data, "issuerKeyHash": 7},
                ]
            )
        )
        return envelope("DeleteCertificate", {"certificateHashData": broken}), call_error
    return envelope("DeleteCertificate", {"certificateHashData": data}), call_result(("NotFound",))


_BAD_URLS = (
    *("ws://", "ws://host with space/ocpp", "http://csms.example/ocpp", "ws:///ocpp"),
    *("ws://user:pw@csms.example/ocpp", "ws://csms.example/ocpp?x=1", "ws://csms.example/#f"),
    *("ws://csms.example:99999/ocpp", "ws://csms\t.example/", "wss://[::1/ocpp", ""),
    *("ws://csms.example/\nFAKE LOG LINE", "ws://csms.example/\u202e", "csms.example:80"),
)


@st.composite
def set_network_profile_rejected(draw: st.DrawFn) -> tuple[dict[str, Any], Check]:
    """The station runs at security profile 1: every one of these must be refused."""
    data: dict[str, Any] = {
        "messageTimeout": 30,
        "ocppCsmsUrl": "ws://csms.example/ocpp",
        "ocppInterface": "Wired0",
        "ocppTransport": "JSON",
        "ocppVersion": "OCPP20",
        "securityProfile": 1,
    }
    slot = draw(st.sampled_from([1, 2, 3]))
    how = draw(
        st.sampled_from(["slot", "downgrade", "scheme", "timeout", "transport", "version", "url"])
    )
    if how == "slot":
        slot = draw(st.sampled_from([0, 4, -1, 2**31 - 1, -(2**31)]))
    elif how == "downgrade":
        data["securityProfile"] = 0
    elif how == "scheme":
        data["securityProfile"], data["ocppCsmsUrl"] = draw(
            st.sampled_from(
                [
                    (1, "wss://csms.example/ocpp"),
                    (2, "ws://csms.example/ocpp"),
                    (3, "ws://csms.example/ocpp"),
                    (4, "wss://csms.example/ocpp"),
                    (-1, "ws://csms.example/ocpp"),
                ]
            )
        )
    elif how == "timeout":
        data["messageTimeout"] = draw(st.integers(-(2**31), 0))
    elif how == "transport":
        data["ocppTransport"] = "SOAP"
    elif how == "version":
        data["ocppVersion"] = draw(st.sampled_from(["OCPP12", "OCPP15", "OCPP16"]))
    else:
        data["ocppCsmsUrl"] = draw(st.sampled_from(_BAD_URLS))
    payload = {"configurationSlot": slot, "connectionData": data}
    if draw(st.integers(0, 3)) == 0:  # outside the schema
        broken = draw(
            st.sampled_from(
                [
                    {"configurationSlot": slot},
                    {"configurationSlot": "2", "connectionData": data},
                    {"configurationSlot": slot, "connectionData": {**data, "ocppInterface": "X"}},
                    {
                        "configurationSlot": slot,
                        "connectionData": {**data, "ocppCsmsUrl": "ws://a/" + "b" * 520},
                    },
                    {"configurationSlot": slot, "connectionData": {**data, "securityProfile": "1"}},
                    {"configurationSlot": slot, "connectionData": {**data, "apn": {}}},
                ]
            )
        )
        return envelope("SetNetworkProfile", broken), call_error
    return envelope("SetNetworkProfile", payload), call_result(("Rejected",))


@st.composite
def other_requests(draw: st.DrawFn) -> tuple[dict[str, Any], Check]:
    """Actions that change nothing stored: answered (CallResult or CallError), never silence."""
    action = draw(
        st.sampled_from(
            [
                "GetVariables",
                "GetInstalledCertificateIds",
                "GetBaseReport",
                "GetReport",
                "TriggerMessage",
                "Reset",
                "UnlockConnector",
                "BootNotification",
                "Heartbeat",
                "Teleport",
            ]
        )
    )
    version = draw(st.sampled_from(["ocpp2.0.1", "ocpp2.0.1", "ocpp1.6", "ocpp2.1"]))
    payload = draw(
        json_values
        | st.just({"getVariableData": [{"component": {"name": "X"}, "variable": {"name": "Y"}}]})
        | st.just({"requestId": 1, "reportBase": "FullInventory"})
        | st.just({"requestedMessage": draw(st.sampled_from(["BootNotification", "Heartbeat"]))})
    )
    return envelope(action, payload, version), result_or_error


def _collect(strategy: st.SearchStrategy[Any], count: int, at: int) -> list[Any]:
    """`count` examples of `strategy`, the same ones every run (a fixed hypothesis seed)."""
    out: list[Any] = []

    @seed(at)
    @settings(
        max_examples=count,
        derandomize=False,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def run(value: Any) -> None:
        out.append(value)

    run()
    return out


# --- raw byte and structural mutation


def _fresh_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _id_for(spec: Any, rng: random.Random) -> Any:
    if not (isinstance(spec, tuple) and spec[:1] == ("uuid",)):
        return spec
    plain = _fresh_id(rng)
    return {
        "plain": plain,
        "upper": plain.upper(),
        "braces": "{" + plain + "}",
        "urn": "urn:uuid:" + plain,
        "hex": plain.replace("-", ""),
        "newline": plain + "\n",
        "space": " " + plain,
        "short": plain[:-1],
        "nonhex": plain[:-1] + "g",
    }[spec[1]]


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**31) - 1, 2**63, 10**30, 7])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan"), 1e-320])
    if kind in (4, 5, 6):
        return rng.choice(
            [
                "",
                "x",
                "ocpp_message",
                "\ud800",
                "\x00\x01",
                "é" * 3,
                "🔌",
                "a" * rng.randrange(1, 3000),
                "OCPPCommCtrlr",
                "Actual",
            ]
        )
    if kind in (7, 8):
        return _fresh_id(rng)
    if kind in (9, 10):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "id", "name", "payload", ""]): _random_json(rng, depth + 1)}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


def mutate_structure(message: Any, rng: random.Random) -> Any:
    """A deep copy of `message` with one random node replaced, removed or added to."""
    message = json.loads(json.dumps(message))
    paths = [p for p in _paths(message) if p]
    if not paths:
        return _random_json(rng)
    path = rng.choice(paths)
    parent = message
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    what = rng.randrange(4)
    if what == 0 and isinstance(parent, dict):
        del parent[last]
    elif what == 1 and isinstance(parent, dict):
        parent["z" + str(rng.randrange(100))] = _random_json(rng)
    else:
        parent[last] = _random_json(rng)
    return message


def mutate_bytes(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    what = rng.randrange(7)
    if what == 0:  # bit flips
        for _ in range(rng.randrange(1, 5)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif what == 1:  # one byte replaced by any byte
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif what == 2:  # truncated
        del data[rng.randrange(len(data)) :]
    elif what == 3:  # random bytes inserted
        i = rng.randrange(len(data) + 1)
        data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 17)))
    elif what == 4:  # a range deleted
        i = rng.randrange(len(data))
        del data[i : i + rng.randrange(1, 40)]
    elif what == 5:  # a range repeated
        i = rng.randrange(len(data))
        chunk = data[i : i + rng.randrange(1, 60)]
        data[i:i] = chunk
    else:  # a JSON-significant character inserted
        i = rng.randrange(len(data) + 1)
        data[i:i] = rng.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\x00", b"\n"])
    return bytes(data)


# --- the extremes


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def specials(rng: random.Random) -> list[tuple[bytes, str]]:
    """Hand-written extremes, each as raw bytes with its origin."""
    out: list[tuple[bytes, str]] = []

    def add(raw: bytes | str, origin: str) -> None:
        out.append((raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw, origin))

    def request(payload_json: str, action: str = "GetVariables", message_id: str = "") -> str:
        mid = message_id or _fresh_id(rng)
        return (
            f'{{"id":"{mid}","name":"ocpp_message","type":"request","data":{{'
            f'"ocpp_version":"ocpp2.0.1","message_name":"{action}","payload":{payload_json}}}}}'
        )

    # Deep nesting: parsed and refused (500), or not JSON for Python at all (5,000; 100,000).
    for depth in (10, 100, 500, 5_000, 100_000):
        for kind in ("list", "dict"):
            add(request(_nested(depth, kind)), f"special:nested-{kind}-{depth}")
            add(request(f'{{"getVariableData":{_nested(depth, kind)}}}'), f"special:deep-{depth}")
    # Numbers Python's json reads as inf/nan, or refuses (more than 4300 digits).
    for number in ("1e309", "-1e309", "NaN", "Infinity", "-Infinity", "1e-400", "-0", "9" * 5000):
        add(
            request(f'{{"requestId":{number},"reportBase":"FullInventory"}}', "GetBaseReport"),
            f"special:number-{number[:8]}",
        )
        add(
            f'{{"id":"{_fresh_id(rng)}","name":"x","type":"request","data":{{"n":{number}}}}}',
            f"special:number-in-data-{number[:8]}",
        )
        add(
            f'{{"id":{number},"name":"ocpp_message","type":"request","data":{{}}}}',
            f"special:number-id-{number[:8]}",
        )
    # Lone surrogates, as JSON escapes and as raw (CESU-style) bytes.
    for text in ("\\ud800", "\\udfff", "a\\ud800b", "\\udc00\\ud800"):
        sv = (
            '{"setVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":'
            f'"OfflineThreshold"}},"attributeValue":"{text}"}}]}}'
        )
        add(request(sv, "SetVariables"), "special:surrogate-value")
        add(
            request(
                f'{{"getVariableData":[{{"component":{{"name":"{text}"}},'
                '"variable":{"name":"x"}}]}'
            ),
            "special:surrogate-name",
        )
        add(
            f'{{"id":"{_fresh_id(rng)}","name":"{text}","type":"request","data":{{}}}}',
            "special:surrogate-envelope-name",
        )
        add(
            f'{{"id":"{_fresh_id(rng)}","name":"ocpp_message","type":"request","data":{{'
            f'"ocpp_version":"{text}","message_name":"x","payload":{{}}}}}}',
            "special:surrogate-version",
        )
    add(request('{"getVariableData":[]}').encode() + b"\xed\xa0\x80", "special:raw-surrogate-tail")
    add(
        request('{"getVariableData":[{"component":{"name":"X"},"variable":{"name":"v"}}]}')
        .encode()
        .replace(b'"X"', b'"\xed\xa0\x80"'),
        "special:raw-surrogate-inside",
    )
    # Duplicate keys: the last one wins (for the bridge as for the oracle).
    first, second = _fresh_id(rng), _fresh_id(rng)
    add(
        f'{{"id":"{first}","name":"ocpp_message","type":"request","data":{{}},"id":"{second}"}}',
        "special:duplicate-id",
    )
    add(
        f'{{"id":"{_fresh_id(rng)}","type":"request","name":"x","type":"response","data":{{}}}}',
        "special:duplicate-type-response",
    )
    add(
        f'{{"id":"{_fresh_id(rng)}","type":"response","name":"x","type":"request","data":{{}}}}',
        "special:duplicate-type-request",
    )
    add(
        f'{{"id":"{_fresh_id(rng)}","id":7,"name":"x","type":"request","data":{{}}}}',
        "special:duplicate-id-not-uuid",
    )
    # Other encodings of a valid request: Python's json reads UTF-8 (with BOM), UTF-16, UTF-32.
    for encoding in ("utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"):
        add(
            request(
                '{"getVariableData":[{"component":{"name":"TxCtrlr"},'
                '"variable":{"name":"TxStartPoint"}}]}'
            ).encode(encoding),
            f"special:encoding-{encoding}",
        )
    add(b"\xff\xfe\x00\x00garbage", "special:bom-garbage")
    # Sizes around the 256 KiB limit, and far beyond.
    for size in (MAX_BYTES - 1, MAX_BYTES, MAX_BYTES + 1, 300_000, 1_000_000):
        head = request('{"getVariableData":[]}', message_id=_fresh_id(rng))
        add(head + " " * (size - len(head)), f"special:size-{size}")
    for size in (200_000, MAX_BYTES + 10):
        add(
            request(
                f'{{"getVariableData":[{{"component":{{"name":"{"c" * size}"}},'
                '"variable":{"name":"v"}}]}'
            ),
            f"special:huge-string-{size}",
        )
    # Not objects, not JSON, nothing at all.
    for raw in (
        b"",
        b" ",
        b"null",
        b"[]",
        b"42",
        b'"ocpp_message"',
        b"\x00" * 64,
        b"{",
        b"}{",
        b"\xc3\x28",
        b'{"id":',
        b"NaN",
        b'[{"id":"' + _fresh_id(rng).encode() + b'"}]',
    ):
        add(raw, "special:not-an-object")
    # Control characters and odd whitespace in the envelope.
    add(request('{"getVariableData":[]}').replace(",", ",\u2028"), "special:line-separator")
    add(request('{"getVariableData":[]}').replace(",", ",\x0b"), "special:vertical-tab")
    add("\t\n " + request('{"getVariableData":[]}') + "\n\n", "special:whitespace-around")
    return out


# --- the corpus


@dataclass
class Corpus:
    cases: list[Case]
    counts: dict[str, int]


def _origin_group(origin: str) -> str:
    return origin.split(":", 1)[0] + ":" + origin.split(":")[1].split("-")[0]


def build(total: int = 10_000, rng_seed: int = 20261122) -> Corpus:
    rng = random.Random(rng_seed)
    cases: list[Case] = []
    ids: set[str] = set()

    def accept(raw: bytes, origin: str, check: Check | None = None, force: bool = False) -> bool:
        """Add a case unless it might change the store (or its answer id is taken)."""
        verdict = classify(raw)
        case = Case(raw, origin, check)
        if verdict is not None:
            case.answer_id, case.body, case.must_answer = verdict
            if case.answer_id in ids:
                return False
            if not force and might_change_state(case.body):
                return False
            ids.add(case.answer_id)
        cases.append(case)
        return True

    def dumps(message: Any) -> bytes:
        # Mostly ASCII with \u escapes; some raw UTF-8 (surrogates pass through as bytes).
        ascii_only = rng.random() < 0.8
        return json.dumps(message, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")

    # 1. hypothesis: OCPP payloads the station must refuse (forced: built to be rejected).
    designed: list[tuple[str, st.SearchStrategy[Any], int]] = [
        ("SetVariables-rejected", set_variables_rejected(), 500),
        ("SetVariables-schema", set_variables_schema_invalid(), 150),
        ("InstallCertificate", install_certificate_rejected(), 200),
        ("DeleteCertificate", delete_certificate_rejected(), 150),
        ("SetNetworkProfile", set_network_profile_rejected(), 200),
        ("other-actions", other_requests(), 150),
    ]
    hypothesis_messages: list[dict[str, Any]] = []
    for index, (name, strategy, count) in enumerate(designed):
        for message, check in _collect(strategy, count, rng_seed + index):
            message["id"] = _fresh_id(rng)
            hypothesis_messages.append(message)
            accept(dumps(message), f"hypothesis:{name}", check, force=name != "other-actions")
    # 2. hypothesis: envelopes with anything anywhere.
    for message in _collect(envelopes, 700, rng_seed + 100):
        message["id"] = _id_for(message["id"], rng)
        hypothesis_messages.append(message)
        accept(dumps(message), "hypothesis:envelope")
    # 3. the extremes.
    for raw, origin in specials(rng):
        accept(raw, origin)
    # 4. mutations of the seed examples (and of hypothesis messages) until `total`.
    seeds = [seed_example(name) for name in SEEDS]
    while len(cases) < total:
        what = rng.random()
        if what < 0.4:
            base = dict(rng.choice(seeds), id=_fresh_id(rng))
            raw = json.dumps(base, indent=rng.choice([None, 2])).encode()
            accept(mutate_bytes(raw, rng), "mutation:bytes")
        elif what < 0.85:
            base = dict(rng.choice(seeds), id=_fresh_id(rng))
            accept(dumps(mutate_structure(base, rng)), "mutation:structure")
        else:
            base = dict(rng.choice(hypothesis_messages))
            base["id"] = _fresh_id(rng)
            accept(dumps(mutate_structure(base, rng)), "mutation:hypothesis")
    cases = cases[:total]
    rng.shuffle(cases)
    counts: dict[str, int] = {}
    for case in cases:
        group = _origin_group(case.origin)
        counts[group] = counts.get(group, 0) + 1
    return Corpus(cases, counts)
