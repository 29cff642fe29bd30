"""Meter values (J01, J02): the OEM's meter_values answer as OCPP sampled values, the measurand
lists that choose them (B05 through a real CSMS), and the clock-aligned sample times."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.demo_csms import DemoCsms
from bridge.schemas import envelope_validator, ocpp_validator
from bridge.station.components import MEASURANDS, STATION_VARIABLES
from bridge.station.meter_values import (
    CONTEXTS,
    SUPPORTED,
    energy_wh,
    measurand_list,
    meter_value,
    number,
    sampled_values,
    seconds_to_aligned,
)
from tests.conftest import free_port, write_config

TIMESTAMP = "2026-03-01T10:15:00Z"
DAY = 86_400

# A three-phase AC sample as SESSION_API's example gives it.
AC: dict[str, Any] = {
    "evse_id": "1",
    "timestamp": TIMESTAMP,
    "voltage": {"l1": 230, "l2": 231.5, "l3": 229},
    "current": {"l1": 16, "l2": 15.5, "l3": 16.25},
    "power_factor": 0.98,
    "frequency": 50,
    "total_active_energy_imported": 4000,
    "total_reactive_energy_imported": 3000,
    "total_active_energy_exported": 1000,
    "total_reactive_energy_exported": 500,
}

SIGNED = {
    "measurand": "Energy.Active.Import.Register",
    "signed_meter_data": "T0NNRnx7fQ==",
    "signing_method": "ECDSA-secp256r1-SHA256",
    "encoding_method": "OCMF",
    "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
}


def one(measurand: str, reading: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    return sampled_values(reading or AC, [measurand], "Sample.Periodic", **kw)


def values(sampled: list[dict[str, Any]]) -> list[tuple[Any, str | None]]:
    return [(s["value"], s.get("phase")) for s in sampled]


def ocpp_errors(mv: dict[str, Any]) -> list[Any]:
    """Schema errors of a TransactionEventRequest and a MeterValuesRequest around `mv`."""
    event = {
        "eventType": "Updated",
        "timestamp": mv["timestamp"],
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "tx-1"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [mv],
    }
    return [
        *ocpp_validator("ocpp2.0.1", "TransactionEvent")(event),
        *ocpp_validator("ocpp2.0.1", "MeterValues")({"evseId": 1, "meterValue": [mv]}),
    ]


# --- the mapping, measurand by measurand


@pytest.mark.parametrize(
    ("measurand", "field", "unit"),
    [
        ("Energy.Active.Import.Register", "total_active_energy_imported", "Wh"),
        ("Energy.Active.Export.Register", "total_active_energy_exported", "Wh"),
        ("Energy.Reactive.Import.Register", "total_reactive_energy_imported", "varh"),
        ("Energy.Reactive.Export.Register", "total_reactive_energy_exported", "varh"),
        ("Frequency", "frequency", "Hz"),
    ],
)
def test_registers_and_frequency_are_one_value_without_phase(
    measurand: str, field: str, unit: str
) -> None:
    assert one(measurand) == [
        {
            "value": AC[field],
            "context": "Sample.Periodic",
            "measurand": measurand,
            "location": "Outlet",
            "unitOfMeasure": {"unit": unit},
        }
    ]


def test_measurand_unit_context_and_location_are_always_explicit() -> None:
    """Even where OCPP's defaults (Energy.Active.Import.Register, Wh, Sample.Periodic, Outlet)
    would say the same, a CSMS need not know them."""
    (sampled,) = sampled_values(AC, ["Energy.Active.Import.Register"], "Sample.Periodic")
    assert set(sampled) == {"value", "context", "measurand", "location", "unitOfMeasure"}
    assert "multiplier" not in sampled["unitOfMeasure"]


def test_ac_voltage_is_phase_to_neutral_and_current_per_phase() -> None:
    voltage, current = one("Voltage"), one("Current.Import")
    assert values(voltage) == [(230, "L1-N"), (231.5, "L2-N"), (229, "L3-N")]
    assert values(current) == [(16, "L1"), (15.5, "L2"), (16.25, "L3")]
    assert {s["unitOfMeasure"]["unit"] for s in voltage} == {"V"}
    assert {s["unitOfMeasure"]["unit"] for s in current} == {"A"}
    assert {s["location"] for s in voltage + current} == {"Outlet"}


def test_phases_the_station_does_not_have_are_left_out() -> None:
    single = {**AC, "voltage": {"l1": 230, "l2": 0, "l3": 0}, "current": {"l1": 10, "l2": 0}}
    assert values(one("Voltage", single, phases=1)) == [(230, "L1-N")]
    assert values(one("Current.Import", single, phases=1)) == [(10, "L1")]
    assert values(one("Voltage", AC, phases=2)) == [(230, "L1-N"), (231.5, "L2-N")]


def test_a_phase_the_oem_left_out_is_left_out_and_zero_on_an_existing_phase_is_kept() -> None:
    reading = {**AC, "current": {"l1": 0, "l3": 7}}
    assert values(one("Current.Import", reading)) == [(0, "L1"), (7, "L3")]
    assert one("Voltage", {**AC, "voltage": {}}) == []


def test_dc_voltage_and_current_have_no_phase() -> None:
    """A DC EVSE (SupplyPhases 0): dc_voltage / dc_current, the AC phase fields ignored."""
    dc = {**AC, "voltage": {"l1": 0}, "current": {}, "dc_voltage": 400.5, "dc_current": 125}
    voltage = one("Voltage", dc, phases=0)
    current = one("Current.Import", dc, phases=0)
    assert values(voltage) == [(400.5, None)]
    assert values(current) == [(125, None)]
    assert voltage[0]["unitOfMeasure"] == {"unit": "V"}
    assert current[0]["unitOfMeasure"] == {"unit": "A"}
    assert "phase" not in voltage[0]
    assert "phase" not in current[0]


def test_a_dc_value_comes_before_the_phases_when_both_are_given() -> None:
    reading = {**AC, "dc_voltage": 400}
    assert values(one("Voltage", reading)) == [
        (400, None),
        (230, "L1-N"),
        (231.5, "L2-N"),
        (229, "L3-N"),
    ]


def test_soc_is_measured_by_the_ev_in_percent() -> None:
    assert one("SoC", {**AC, "soc": 80.5}) == [
        {
            "value": 80.5,
            "context": "Sample.Periodic",
            "measurand": "SoC",
            "location": "EV",
            "unitOfMeasure": {"unit": "Percent"},
        }
    ]


def test_power_factor_is_dimensionless() -> None:
    (sampled,) = one("Power.Factor")
    assert sampled["value"] == 0.98
    assert "unitOfMeasure" not in sampled


def test_power_active_import_only_when_the_oem_gives_it_never_computed() -> None:
    assert one("Power.Active.Import") == []  # V and A are there, but no power_active_import
    (sampled,) = one("Power.Active.Import", {**AC, "power_active_import": 11040})
    assert (sampled["value"], sampled["unitOfMeasure"]) == (11040, {"unit": "W"})
    assert "phase" not in sampled


def test_a_configured_measurand_the_oem_did_not_give_is_left_out() -> None:
    measurands = ["SoC", "Energy.Active.Export.Register", "Energy.Active.Import.Register"]
    reading = {k: v for k, v in AC.items() if k != "total_active_energy_exported"}
    result = sampled_values(reading, measurands, "Sample.Periodic")
    assert [s["measurand"] for s in result] == ["Energy.Active.Import.Register"]


def test_only_configured_measurands_in_the_configured_order() -> None:
    measurands = ["Frequency", "Energy.Active.Import.Register", "Voltage"]
    result = sampled_values(AC, measurands, "Transaction.Begin")
    assert [s["measurand"] for s in result] == [
        "Frequency",
        "Energy.Active.Import.Register",
        "Voltage",
        "Voltage",
        "Voltage",
    ]
    assert {s["context"] for s in result} == {"Transaction.Begin"}


def test_repeated_and_unknown_measurands_are_ignored() -> None:
    """A measurand this meter cannot give (Power.Offered, a typo) yields nothing; a repeat once."""
    measurands = ["Power.Offered", "Frequency", "Temperature", "Frequency", ""]
    assert values(sampled_values(AC, measurands, "Trigger")) == [(50, None)]


def test_no_measurands_nothing_given_and_unknown_context() -> None:
    assert sampled_values(AC, [], "Sample.Clock") == []
    assert meter_value(AC, [], "Sample.Clock", TIMESTAMP) is None
    assert meter_value({"timestamp": TIMESTAMP}, list(MEASURANDS), "Trigger", TIMESTAMP) is None
    with pytest.raises(ValueError, match="reading context"):
        sampled_values(AC, ["Voltage"], "Sample.Hourly")


def test_meter_value_carries_the_given_timestamp() -> None:
    mv = meter_value(AC, ["Energy.Active.Import.Register"], "Sample.Clock", "2026-03-01T10:15:00Z")
    assert mv == {
        "timestamp": "2026-03-01T10:15:00Z",
        "sampledValue": sampled_values(AC, ["Energy.Active.Import.Register"], "Sample.Clock"),
    }


# --- signed meter values (J02.FR.21)


def test_a_signed_value_goes_on_its_measurand() -> None:
    reading = {**AC, "signed_meter_values": [SIGNED]}
    energy, frequency = sampled_values(
        reading, ["Energy.Active.Import.Register", "Frequency"], "Transaction.End"
    )
    assert energy["signedMeterValue"] == {
        "signedMeterData": SIGNED["signed_meter_data"],
        "signingMethod": SIGNED["signing_method"],
        "encodingMethod": SIGNED["encoding_method"],
        "publicKey": SIGNED["public_key"],
    }
    assert "signedMeterValue" not in frequency


def test_a_signed_phased_measurand_signs_its_first_sampled_value_only() -> None:
    reading = {**AC, "signed_meter_values": [{**SIGNED, "measurand": "Voltage"}]}
    voltage = one("Voltage", reading)
    assert ["signedMeterValue" in s for s in voltage] == [True, False, False]
    dc = {**reading, "dc_voltage": 400}
    assert ["signedMeterValue" in s for s in one("Voltage", dc)] == [True, False, False, False]
    assert one("Voltage", dc)[0].get("phase") is None  # the DC / total one


def test_signatures_left_out_when_not_wanted_and_public_key_emptied() -> None:
    reading = {**AC, "signed_meter_values": [SIGNED]}
    measurand = "Energy.Active.Import.Register"
    assert "signedMeterValue" not in one(measurand, reading, signed=False)[0]
    signed = one(measurand, reading, public_key=False)[0]["signedMeterValue"]
    assert signed["publicKey"] == ""
    assert signed["signedMeterData"] == SIGNED["signed_meter_data"]


def test_an_unusable_signature_is_dropped_and_the_first_usable_one_used() -> None:
    too_long = {**SIGNED, "signing_method": "x" * 51}
    other = {**SIGNED, "signed_meter_data": "b3RoZXI="}
    reading = {**AC, "signed_meter_values": [too_long, {"measurand": SIGNED["measurand"]}, other]}
    (sampled,) = one("Energy.Active.Import.Register", reading)
    assert sampled["signedMeterValue"]["signedMeterData"] == "b3RoZXI="
    (unsigned,) = one("Energy.Active.Import.Register", {**AC, "signed_meter_values": [too_long]})
    assert "signedMeterValue" not in unsigned


# --- numbers


def test_ints_stay_ints_and_float_noise_is_rounded_away() -> None:
    assert number(4000) == 4000
    assert isinstance(number(4000), int)
    assert number(0.1 + 0.2) == 0.3
    assert number(1234567.891) == 1234567.891
    assert number(10**20) == 10**20
    (sampled,) = one("Energy.Active.Import.Register", {**AC, "total_active_energy_imported": 0.3})
    assert sampled["value"] == 0.3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "230", True, [230], {}])
def test_a_value_that_is_not_a_finite_number_is_dropped_without_an_exception(bad: Any) -> None:
    reading = {
        **AC,
        "frequency": bad,
        "voltage": {"l1": bad, "l2": 230},
        "total_active_energy_imported": bad,
    }
    result = sampled_values(reading, list(MEASURANDS), "Sample.Periodic")
    assert ("Frequency", None) not in [(s["measurand"], s.get("phase")) for s in result]
    assert "Energy.Active.Import.Register" not in [s["measurand"] for s in result]
    assert values([s for s in result if s["measurand"] == "Voltage"]) == [(230, "L2-N")]
    assert energy_wh(reading) is None


def test_energy_wh_is_the_imported_register() -> None:
    assert energy_wh(AC) == 4000.0
    assert energy_wh({**AC, "total_active_energy_imported": 12.5}) == 12.5
    assert energy_wh({"timestamp": TIMESTAMP}) is None


# --- measurand lists


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, []),
        ("", []),
        ("Voltage", ["Voltage"]),
        ("Energy.Active.Import.Register,Voltage", ["Energy.Active.Import.Register", "Voltage"]),
        (",Voltage,, Frequency ,", ["Voltage", "Frequency"]),
        ("Voltage,Voltage", ["Voltage"]),
    ],
)
def test_measurand_list_reads_a_member_list(text: str | None, expected: list[str]) -> None:
    assert measurand_list(text) == expected


def test_the_device_model_offers_exactly_what_the_meter_gives() -> None:
    assert set(MEASURANDS) == SUPPORTED
    lists = [d for d in STATION_VARIABLES if d.name.endswith("Measurands")]
    assert len(lists) == 5
    for d in lists:
        assert d.values_list == MEASURANDS, d.text
        assert set(measurand_list(d.default)) <= SUPPORTED, d.text


# --- the result is valid OCPP


def test_a_full_sample_is_a_valid_transaction_event_and_meter_values_request() -> None:
    reading = {**AC, "soc": 55, "power_active_import": 11000, "signed_meter_values": [SIGNED]}
    for context in CONTEXTS:
        mv = meter_value(reading, list(MEASURANDS), context, TIMESTAMP)
        assert mv is not None
        assert len(mv["sampledValue"]) == 14
        assert ocpp_errors(mv) == []


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": "meter_values", "type": "response", "data": data}


_amount = st.integers(min_value=0, max_value=10**15) | st.floats(
    min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False
)
_lines = st.fixed_dictionaries({}, optional={"l1": _amount, "l2": _amount, "l3": _amount})
_signed = st.fixed_dictionaries(
    {
        "measurand": st.sampled_from([*MEASURANDS, "Power.Offered", "Current.Export"]),
        "signed_meter_data": st.text(max_size=2500),
        "signing_method": st.text(max_size=50),
        "encoding_method": st.text(max_size=50),
        "public_key": st.text(max_size=2500),
    }
)
# A meter_values answer valid per schemas/meter_values.response.json (checked in the test).
readings = st.fixed_dictionaries(
    {
        "timestamp": st.just(TIMESTAMP),
        "voltage": _lines,
        "current": _lines,
        "power_factor": st.integers(-1, 1) | st.floats(-1, 1),
        "frequency": _amount,
        "total_active_energy_imported": _amount,
        "total_reactive_energy_imported": _amount,
    },
    optional={
        "evse_id": st.just("1"),
        "total_active_energy_exported": _amount,
        "total_reactive_energy_exported": _amount,
        "dc_current": _amount,
        "dc_voltage": _amount,
        "soc": st.integers(0, 100) | st.floats(0, 100),
        "power_active_import": _amount,
        "signed_meter_values": st.lists(_signed, max_size=3),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    reading=readings,
    measurands=st.lists(st.sampled_from(MEASURANDS), unique=True),
    context=st.sampled_from(CONTEXTS),
    phases=st.integers(0, 3),
    signed=st.booleans(),
)
def test_any_valid_reading_gives_valid_ocpp_with_only_the_configured_measurands(
    reading: dict[str, Any], measurands: list[str], context: str, phases: int, signed: bool
) -> None:
    assert envelope_validator("meter_values.response")(_envelope(reading)) == []
    mv = meter_value(reading, measurands, context, TIMESTAMP, phases, signed=signed)
    if mv is None:
        assert sampled_values(reading, measurands, context, phases) == []
        return
    assert ocpp_errors(mv) == []
    seen = [s["measurand"] for s in mv["sampledValue"]]
    assert set(seen) <= set(measurands)
    assert sorted(set(seen), key=seen.index) == [m for m in measurands if m in seen]
    assert {s["context"] for s in mv["sampledValue"]} == {context}
    for s in mv["sampledValue"]:
        phase = s.get("phase")
        assert phase is None or int(phase[1]) <= phases
    # The two always present in a valid answer are never lost.
    for required in ("Energy.Active.Import.Register", "Frequency"):
        assert (required in seen) == (required in measurands)


_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.just(math.nan),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=10,
)
_fields = [
    "voltage",
    "current",
    "power_factor",
    "frequency",
    "total_active_energy_imported",
    "total_reactive_energy_imported",
    "total_active_energy_exported",
    "total_reactive_energy_exported",
    "dc_current",
    "dc_voltage",
    "soc",
    "power_active_import",
    "signed_meter_values",
]


@settings(max_examples=300, deadline=None)
@given(
    reading=st.dictionaries(st.sampled_from(_fields), _junk | _lines | st.lists(_signed)),
    measurands=st.lists(st.sampled_from(MEASURANDS)),
    context=st.sampled_from(CONTEXTS),
)
def test_a_malformed_reading_never_raises_and_never_gives_invalid_ocpp(
    reading: dict[str, Any], measurands: list[str], context: str
) -> None:
    mv = meter_value(reading, measurands, context, TIMESTAMP)
    if mv is not None:
        assert ocpp_errors(mv) == []
        assert all(math.isfinite(s["value"]) for s in mv["sampledValue"])
    energy_wh(reading)


# --- J01: clock-aligned sample times


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [
        (20_000 * DAY, 900, 900),  # on midnight exactly: the next boundary, never 0
        (20_000 * DAY + 1, 900, 899),
        (20_000 * DAY + 899.5, 900, 0.5),
        (20_000 * DAY + 900, 900, 900),
        (20_000 * DAY + 3599, 3600, 1),
        (20_000 * DAY + 84_000, 7000, 2400),  # 7000 does not divide a day: midnight next
        (20_000 * DAY + 10, 2 * DAY, DAY - 10),  # a day or more: every midnight
        (20_000 * DAY + 10, 1, 1),
    ],
)
def test_seconds_to_the_next_clock_aligned_sample(
    now: float, interval: int, expected: float
) -> None:
    assert seconds_to_aligned(now, interval) == pytest.approx(expected)


def test_interval_zero_means_no_clock_aligned_data() -> None:
    assert seconds_to_aligned(1_700_000_000.0, 0) == math.inf
    assert seconds_to_aligned(1_700_000_000.0, -5) == math.inf


@given(
    now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    interval=st.integers(min_value=1, max_value=3 * DAY),
)
def test_aligned_samples_fall_on_interval_multiples_from_midnight_utc(
    now: float, interval: int
) -> None:
    wait = seconds_to_aligned(now, interval)
    assert 0 < wait <= interval
    assert wait <= DAY - Fraction(now) % DAY + 1e-6  # never past the next midnight
    boundary = round(now + wait)
    assert abs(now + wait - boundary) < 1e-6
    assert boundary % DAY % interval == 0  # midnight itself is 0
    # The next boundary, none skipped: exact arithmetic on the same rule.
    exact = Fraction(now)
    midnight = exact // DAY * DAY
    step = ((exact - midnight) // interval + 1) * interval
    assert wait == pytest.approx(float(midnight + min(step, DAY) - exact), abs=1e-6)


# --- B05: the measurand lists through a real CSMS and a running bridge


@asynccontextmanager
async def bridge_with(tmp_path: Path, url: str) -> AsyncIterator[Bridge]:
    config = write_config(
        tmp_path / "bridge.toml",
        None,
        csms=f'url = "{url}"',
        mqtt_port=free_port(),  # no broker: the CSMS side only
    )
    async with Bridge(load_settings(config)) as bridge:
        yield bridge


def _item(variable: str, value: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "component": {"name": "SampledDataCtrlr"},
        "variable": {"name": variable},
    }
    if value is not None:
        item["attributeValue"] = value
    return item


async def test_b05_set_unknown_measurand_rejected_and_a_valid_list_accepted(
    tmp_path: Path,
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, csms.url):
        await csms.wait_for("BootNotification")
        await csms.wait_connected("CP001")

        async def get(variable: str) -> str:
            result = await csms.call(
                "CP001", "GetVariables", {"getVariableData": [_item(variable)]}
            )
            (answer,) = result["getVariableResult"]
            assert answer["attributeStatus"] == "Accepted"
            return str(answer["attributeValue"])

        before = await get("TxUpdatedMeasurands")
        # Power.Offered is an OCPP measurand this meter cannot give; Temperature is not one.
        bad = [
            _item("TxUpdatedMeasurands", "Energy.Active.Import.Register,Power.Offered"),
            _item("TxStartedMeasurands", "Temperature"),
        ]
        result = await csms.call("CP001", "SetVariables", {"setVariableData": bad})
        assert [r["attributeStatus"] for r in result["setVariableResult"]] == [
            "Rejected",
            "Rejected",
        ]
        assert await get("TxUpdatedMeasurands") == before

        good = "SoC,Energy.Reactive.Import.Register,Frequency,Power.Factor"
        result = await csms.call(
            "CP001", "SetVariables", {"setVariableData": [_item("TxUpdatedMeasurands", good)]}
        )
        assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
        assert await get("TxUpdatedMeasurands") == good
        assert measurand_list(good) == [
            "SoC",
            "Energy.Reactive.Import.Register",
            "Frequency",
            "Power.Factor",
        ]
        assert csms.schema_errors == []
