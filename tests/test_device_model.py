"""The device model: catalog against the OCPP 2.0.1 reference, value checks, lookups, storage."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.station.components import (
    CONNECTOR_VARIABLES,
    EVSE_VARIABLES,
    STATION_VARIABLES,
    DataType,
    Mutability,
    VariableDef,
)
from bridge.station.device_model import DeviceModel, UnknownKey, check_value
from bridge.store import Store

REFERENCE = json.loads(
    (Path(__file__).parent / "data" / "ocpp201-device-model.json").read_text(encoding="utf-8")
)["components"]

# Optional functional blocks the station reports as Available=false (their variables are only
# required when the block is implemented).
NOT_IMPLEMENTED_BLOCKS = {
    "SmartChargingCtrlr",
    "MonitoringCtrlr",
    "DisplayMessageCtrlr",
    "TariffCostCtrlr",
}
NOT_SHIPPED = {"ISO15118Ctrlr", "ChargingStatusIndicator", "CustomizationCtrlr"}


@pytest.fixture
def model(tmp_path: Path) -> DeviceModel:
    return DeviceModel.build([1, 2], Store(tmp_path / "dm.db"))


def _key(name: str) -> tuple[str, str | None]:
    match = re.fullmatch(r"([^\[]+)(?:\[(.+)\])?", name)
    assert match
    return match[1], match[2]


def _lookup(model: DeviceModel, component: str, variable: str) -> Any:
    comp: dict[str, Any] = {"name": component}
    if component == "EVSE":
        comp["evse"] = {"id": 1}
    if component == "Connector":
        comp["evse"] = {"id": 1, "connectorId": 1}
    name, instance = _key(variable)
    var: dict[str, Any] = {"name": name}
    if instance:
        var["instance"] = instance
    return model.lookup(comp, var)


def test_every_required_variable_of_the_reference_exists(model: DeviceModel) -> None:
    """Each variable the OCPP 2.0.1 appendix or a certified station requires is reported."""
    missing, checked = [], 0
    for component, spec in REFERENCE.items():
        if component in NOT_IMPLEMENTED_BLOCKS | NOT_SHIPPED:
            continue
        required = set(spec.get("required", [])) | set(spec.get("required_ocpp201_appendix", []))
        for variable in required:
            checked += 1
            if isinstance(_lookup(model, component, variable), str):
                missing.append(f"{component}.{variable}")
    assert checked, "the reference lists no required variable: its format changed?"
    assert missing == []


def test_blocks_not_implemented_say_available_false(model: DeviceModel) -> None:
    for component in NOT_IMPLEMENTED_BLOCKS - {"TariffCostCtrlr"}:
        assert model[f"{component}.Available"].read() == "false"
    assert model["TariffCostCtrlr.Available[Tariff]"].read() == "false"


# Where the reference gives no mutability ("null = not given in source"), the station's choice.
REFERENCE_SILENT_MUTABILITY: dict[str, Mutability] = {
    # Identity of the station, from the configuration ([station] model / vendor).
    "ChargingStation.Model": Mutability.ReadOnly,
    "ChargingStation.VendorName": Mutability.ReadOnly,
    # Kept by the station from the connector's state, as EVSE and ChargingStation's (ReadOnly
    # in the reference).
    "Connector.AvailabilityState": Mutability.ReadOnly,
}

# Deliberate deviations from the reference: (variable, characteristic) -> why.
DEVIATIONS: dict[tuple[str, str], str] = {
    # The reference station has two network configuration slots; this one has three.
    ("OCPPCommCtrlr.NetworkConfigurationPriority", "valuesList"): "three slots, not two",
    # SESSION_API.md: every TxStartPoint/TxStopPoint of OCPP 2.0.1 (ParkingBayOccupancy is
    # cp_status B-D: the session API has no bay sensor), in the order of the specification.
    ("TxCtrlr.TxStartPoint", "valuesList"): "ParkingBayOccupancy too, OCPP's order",
    ("TxCtrlr.TxStopPoint", "valuesList"): "ParkingBayOccupancy too, OCPP's order",
    # The OEM's meter_values answer carries the EV's SoC; the reference offers SoC for
    # TxUpdatedMeasurands only, OCPP allows it in every measurand list.
    ("AlignedDataCtrlr.Measurands", "valuesList"): "SoC too",
    ("AlignedDataCtrlr.TxEndedMeasurands", "valuesList"): "SoC too",
    ("SampledDataCtrlr.TxEndedMeasurands", "valuesList"): "SoC too",
    ("SampledDataCtrlr.TxStartedMeasurands", "valuesList"): "SoC too",
}


def _definitions() -> list[VariableDef]:
    return [*STATION_VARIABLES, *EVSE_VARIABLES, *CONNECTOR_VARIABLES]


def _limit(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _differences(d: VariableDef) -> dict[str, tuple[Any, Any]]:
    """Characteristic -> (station, reference) where the definition differs from the reference:
    mutability, data type, unit, attribute types and monitoring support; limits where the
    reference gives them; a valuesList outside the reference's (a station lists what it
    supports, so a subset is fine)."""
    key = f"{d.component}.{d.text}"
    ref = REFERENCE.get(d.component, {}).get("variables", {}).get(d.text)
    if ref is None:
        return {"existence": (key, None)}
    found: dict[str, tuple[Any, Any]] = {}
    if ref["mutability"] is None:
        if REFERENCE_SILENT_MUTABILITY.get(key) is not d.mutability:
            found["mutability"] = (d.mutability, "not given: list it above")
    elif d.mutability != ref["mutability"]:
        found["mutability"] = (d.mutability, ref["mutability"])
    if d.data_type != ref["dataType"]:
        found["dataType"] = (d.data_type, ref["dataType"])
    if d.unit != ref["unit"]:
        found["unit"] = (d.unit, ref["unit"])
    for name, ours, theirs in (
        ("minLimit", d.min_limit, ref["min"]),
        ("maxLimit", d.max_limit, ref["max"]),
    ):
        if theirs is not None and ours != _limit(theirs):
            found[name] = (ours, theirs)
    if set(d.attributes) != set(ref["attributes"]):
        found["attributes"] = (d.attributes, ref["attributes"])
    if d.supports_monitoring != ref["supportsMonitoring"]:
        found["supportsMonitoring"] = (d.supports_monitoring, ref["supportsMonitoring"])
    allowed = set(ref["valuesList"].split(",")) if ref["valuesList"] else set()
    if (d.values_list or ref["valuesList"]) and not (
        d.values_list and set(d.values_list) <= allowed
    ):
        found["valuesList"] = (d.values_list, ref["valuesList"])
    return found


def test_every_variable_matches_the_reference_characteristics() -> None:
    """Each standardized variable the station defines (station, EVSE and connector ones)
    matches tests/data/ocpp201-device-model.json, except the deviations listed above."""
    definitions = _definitions()
    mismatches = [
        f"{d.component}.{d.text} {name}: station {ours!r}, reference {theirs!r}"
        for d in definitions
        for name, (ours, theirs) in _differences(d).items()
        if (f"{d.component}.{d.text}", name) not in DEVIATIONS
    ]
    assert len(definitions) > 80, "the catalog shrank: did the definitions move?"
    assert mismatches == []


def test_listed_deviations_are_still_deviations() -> None:
    """An allow-listed deviation that now matches the reference must leave the list, and the
    reference must still be silent where the station chose a mutability."""
    by_key = {f"{d.component}.{d.text}": d for d in _definitions()}
    for (key, characteristic), why in DEVIATIONS.items():
        assert why, key
        assert characteristic in _differences(by_key[key]), (key, characteristic)
    for key in REFERENCE_SILENT_MUTABILITY:
        component, text = key.split(".", 1)
        assert key in by_key
        assert REFERENCE[component]["variables"][text]["mutability"] is None, key


def test_defaults_follow_the_reference_where_documented(model: DeviceModel) -> None:
    # Deviations are documented in bridge/station/components.py.
    deviations = {
        "TxCtrlr.TxStartPoint",
        "SampledDataCtrlr.TxUpdatedMeasurands",
        "SecurityCtrlr.BasicAuthPassword",  # no well-known default password
        "SecurityCtrlr.OrganizationName",  # [station] vendor
        "SecurityCtrlr.SecurityProfile",  # [csms] security_profile
    }
    wrong, compared = [], 0
    for variable in model:
        if variable.component.name in NOT_IMPLEMENTED_BLOCKS:
            continue  # Available=false on purpose
        ref = REFERENCE.get(variable.component.name, {}).get("variables", {})
        ref_var = ref.get(variable.definition.text)
        if ref_var is None or ref_var["default"] is None or variable.key in deviations:
            continue
        if (
            variable.component.name in ("EVSE", "Connector")
            or variable.definition.source != "stored"
        ):
            continue
        expected = ref_var["default"]
        expected = str(expected).lower() if isinstance(expected, bool) else str(expected)
        compared += 1
        if variable.read() != expected:
            wrong.append((variable.key, variable.read(), expected))
    assert compared, "no stored variable has a documented default to compare"
    assert wrong == []


def test_every_readable_variable_has_a_valid_value(model: DeviceModel) -> None:
    for variable in model:
        if variable.definition.mutability is Mutability.WriteOnly or variable.getter:
            continue
        value = variable.read()
        if variable.definition.source == "runtime" and value is None:
            continue  # bound by the Station at start-up (identity, model, clock)
        if variable.key == "SecurityCtrlr.OrganizationName":
            continue  # set from [station] vendor by the Station
        assert value is not None, variable.key
        assert check_value(variable.definition, value) is None, (variable.key, value)


def test_evse_and_connector_instances_follow_the_configuration(model: DeviceModel) -> None:
    assert model["EVSE[1].SupplyPhases"].read() == "3"
    assert model["Connector[2,2].ConnectorType"].read() == "Unknown"
    assert _lookup(model, "EVSE", "Power") is model["EVSE[1].Power"]
    assert (
        model.lookup({"name": "EVSE", "evse": {"id": 3}}, {"name": "Power"}) == "UnknownComponent"
    )
    assert (
        model.lookup(
            {"name": "Connector", "evse": {"id": 1, "connectorId": 2}}, {"name": "Available"}
        )
        == "UnknownComponent"
    )
    assert model.lookup({"name": "EVSE"}, {"name": "Power"}) == "UnknownComponent"


def test_lookup_is_case_insensitive_for_names_and_instances(model: DeviceModel) -> None:
    found = model.lookup(
        {"name": "devicedatactrlr"}, {"name": "itemsPERmessage", "instance": "getvariables"}
    )
    assert found is model["DeviceDataCtrlr.ItemsPerMessage[GetVariables]"]
    assert model.lookup({"name": "NoSuchCtrlr"}, {"name": "Enabled"}) == "UnknownComponent"
    assert model.lookup({"name": "AuthCtrlr"}, {"name": "NoSuchVariable"}) == "UnknownVariable"
    # A variable with instances is not found without its instance.
    assert (
        model.lookup({"name": "DeviceDataCtrlr"}, {"name": "ItemsPerMessage"}) == "UnknownVariable"
    )


def test_resolve_config_keys(model: DeviceModel) -> None:
    assert model.resolve("OCPPCommCtrlr.HeartbeatInterval").definition.name == "HeartbeatInterval"
    assert model.resolve("EVSE[2].SupplyPhases").component.evse == 2
    assert model.resolve("Connector[2,1].ConnectorType").component.connector == 1
    assert (
        model.resolve("DeviceDataCtrlr.ItemsPerMessage[SetVariables]")
        is model["DeviceDataCtrlr.ItemsPerMessage[SetVariables]"]
    )
    with pytest.raises(UnknownKey, match="unknown component"):
        model.resolve("NoSuchCtrlr.Enabled")
    with pytest.raises(UnknownKey, match="unknown variable"):
        model.resolve("AuthCtrlr.NoSuch")
    with pytest.raises(UnknownKey, match="form"):
        model.resolve("no dots here")


def test_write_stores_before_it_changes_memory(model: DeviceModel, tmp_path: Path) -> None:
    variable = model["OCPPCommCtrlr.HeartbeatInterval"]
    seen: list[tuple[str, str]] = []
    model.on_change(lambda v, attribute, value: seen.append((v.key, value)))
    model.write([(variable, "Actual", "42")])
    assert variable.read() == "42"
    assert seen == [("OCPPCommCtrlr.HeartbeatInterval", "42")]
    reopened = DeviceModel.build([1, 2], Store(tmp_path / "dm.db"))
    assert reopened["OCPPCommCtrlr.HeartbeatInterval"].read() == "42"


def test_a_failing_store_changes_nothing(model: DeviceModel) -> None:
    variable = model["OCPPCommCtrlr.HeartbeatInterval"]
    before = variable.read()
    model._store._db.close()  # the store becomes unusable (disk gone)
    with pytest.raises(Exception, match="closed"):
        model.write([(variable, "Actual", "5")])
    assert variable.read() == before


def test_a_listener_failure_does_not_undo_or_break_the_write(model: DeviceModel) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("listener bug")

    model.on_change(broken)
    model.write([(model["AuthCtrlr.LocalPreAuthorize"], "Actual", "false")])
    assert model.value("AuthCtrlr.LocalPreAuthorize") == "false"


# --- value checks per data type


def _def(data_type: DataType, **kw: Any) -> VariableDef:
    return VariableDef("X", "Y", data_type, **kw)


@pytest.mark.parametrize(
    ("definition", "value", "reason"),
    [
        (_def(DataType.integer), "12", None),
        (_def(DataType.integer), "-3", None),
        (_def(DataType.integer), "1.5", "InvalidValue"),
        (_def(DataType.integer), "", "InvalidValue"),
        (_def(DataType.integer), " 1", "InvalidValue"),
        (_def(DataType.integer), "+1", "InvalidValue"),  # no plus sign
        (_def(DataType.integer), "007", "InvalidValue"),  # no leading zeros
        (_def(DataType.integer), "0", None),
        (_def(DataType.integer), "2147483647", None),
        (_def(DataType.integer), "2147483648", "InvalidValue"),  # 32-bit
        (_def(DataType.integer), "-2147483648", None),
        (_def(DataType.integer), "1\u0662", "InvalidValue"),  # an Arabic-Indic digit
        (_def(DataType.integer), "\uff13", "InvalidValue"),  # a fullwidth digit
        (_def(DataType.integer, min_limit=Decimal(1)), "0", "ValueTooLow"),
        (_def(DataType.integer, max_limit=Decimal(3)), "4", "ValueTooHigh"),
        (_def(DataType.decimal), "1.25", None),
        (_def(DataType.decimal), "1e5", "InvalidValue"),
        (_def(DataType.decimal), "0.1234567", "InvalidValue"),  # at most 6 decimals
        (_def(DataType.decimal), "-0.5", None),
        (_def(DataType.decimal), "4\u0966.5", "InvalidValue"),  # a Devanagari zero
        (_def(DataType.decimal), "NaN", "InvalidValue"),
        (_def(DataType.decimal, max_limit=Decimal(22000)), "22000.5", "ValueTooHigh"),
        (_def(DataType.boolean), "true", None),
        (_def(DataType.boolean), "false", None),
        (_def(DataType.boolean), "True", "InvalidValue"),
        (_def(DataType.boolean), "1", "InvalidValue"),
        (_def(DataType.dateTime), "2026-11-22T10:00:00.123Z", None),
        (_def(DataType.dateTime), "2026-11-22T10:00:00", "InvalidValue"),
        (_def(DataType.dateTime), "yesterday", "InvalidValue"),
        (_def(DataType.string, min_limit=Decimal(16), max_limit=Decimal(40)), "a" * 16, None),
        (_def(DataType.string, min_limit=Decimal(16)), "short", "ValueTooLow"),
        (_def(DataType.string, max_limit=Decimal(3)), "long", "ValueTooHigh"),
        (_def(DataType.OptionList, values_list=("A", "B")), "B", None),
        (_def(DataType.OptionList, values_list=("A", "B")), "C", "InvalidValue"),
        (_def(DataType.OptionList, values_list=("A", "B")), "A,B", "InvalidValue"),
        (_def(DataType.MemberList, values_list=("A", "B")), "B,A", None),
        (_def(DataType.MemberList, values_list=("A", "B")), "", None),
        (_def(DataType.MemberList, values_list=("A", "B")), "A,A", "InvalidValue"),
        (_def(DataType.MemberList, values_list=("A", "B")), "A, B", "InvalidValue"),
        (_def(DataType.SequenceList, values_list=("1", "2")), "2,1", None),
        (_def(DataType.SequenceList, values_list=("1", "2")), "", "InvalidValue"),
        (_def(DataType.SequenceList, values_list=("1", "2")), "3", "InvalidValue"),
    ],
)
def test_check_value(definition: VariableDef, value: str, reason: str | None) -> None:
    rejection = check_value(definition, value)
    assert (rejection.reason if rejection else None) == reason


@settings(max_examples=300, deadline=None)
@given(
    data_type=st.sampled_from(list(DataType)),
    value=st.text(max_size=60),
    limits=st.tuples(st.none() | st.integers(-5, 5), st.none() | st.integers(-5, 50)),
)
def test_check_value_never_raises_and_accepts_only_well_formed_values(
    data_type: DataType, value: str, limits: tuple[int | None, int | None]
) -> None:
    low, high = (None if x is None else Decimal(x) for x in limits)
    definition = _def(data_type, min_limit=low, max_limit=high, values_list=("A", "B", "C"))
    rejection = check_value(definition, "SECRET" + value)
    if rejection is not None:
        assert "SECRET" not in rejection.info  # a rejection never echoes the value
    rejection = check_value(definition, value)
    if rejection is None and data_type is DataType.integer:
        number = int(value)
        assert low is None or number >= low
        assert high is None or number <= high
    if rejection is None and data_type is DataType.boolean:
        assert value in ("true", "false")
    if rejection is None and data_type is DataType.OptionList:
        assert value in ("A", "B", "C")


@settings(max_examples=200, deadline=None)
@given(number=st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_integers_round_trip_through_the_check(number: int) -> None:
    assert check_value(_def(DataType.integer), str(number)) is None


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2026-11-22T10:00:00Z", True),
        ("2026-11-22t10:00:00.5+01:00", True),
        ("2016-12-31T23:59:60Z", True),  # a leap second, at 23:59:60 UTC only
        ("2016-12-31T12:59:60Z", False),
        ("0000-02-29T00:00:00Z", True),  # year 0 is a leap year
        ("2026-02-29T00:00:00Z", False),
        ("2026-11-22T10:00:00+0100", False),  # ISO 8601 yes, RFC 3339 no
        ("2026-11-22T10:00:00+01", False),
        ("2026-11-22 10:00:00Z", False),
        ("2026-11-22T10:00:00,5Z", False),
        ("2026-W47-7T10:00:00Z", False),
        ("２０２６-11-22T10:00:00Z", False),  # fullwidth digits
        ("2026-11-22T10:00:00Z\n", False),
        ("2026-11-22T10:00:00", False),  # no offset
    ],
)
def test_date_times_are_rfc_3339_exactly_as_the_schema_validator_says(
    text: str, valid: bool
) -> None:
    from bridge import schemas
    from bridge.timeutil import is_date_time

    assert is_date_time(text) is valid
    validate = schemas.compile_schema({"type": "string", "format": "date-time"})
    assert (validate(text) == []) is valid
