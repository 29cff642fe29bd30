"""J01 and J02 end to end: clock-aligned meter values (MeterValues while idle, Sample.Clock in a
transaction) and transaction meter values (Transaction.Begin, Sample.Periodic every
TxUpdatedInterval, Transaction.End), each with exactly its configured measurands, signed values
carried; through the real bridge, Mosquitto and a WebSocket CSMS. The OEM's meter is the
simulator's: its energy register rises while the EV charges."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.tx_support import (
    BEGIN,
    CLOCK,
    END,
    PERIODIC,
    Data,
    Event,
    energies,
    id_token,
    settle,
    shape,
    station,
)

TAG = id_token()
SIGNED = {
    "measurand": "Energy.Active.Import.Register",
    "signed_meter_data": 'OCMF|{"RD":[{"RV":0.0,"RU":"kWh"}]}|{"SD":"30450221"}',
    "signing_method": "ECDSA-secp256r1-SHA256",
    "encoding_method": "OCMF",
    "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
}
UNITS = {
    "Energy.Active.Import.Register": "Wh",
    "Power.Active.Import": "W",
    "Voltage": "V",
    "Frequency": "Hz",
}


def moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def signed(data: Data) -> Data:
    return {**data, "signed_meter_values": [SIGNED]}


def check_sampled_values(event: Data, signed_energy: bool) -> None:
    """Units, phases, location and signatures of every sampled value (J02)."""
    for value in event.get("meterValue", []):
        for sampled in value["sampledValue"]:
            measurand = sampled["measurand"]
            assert sampled["unitOfMeasure"] == {"unit": UNITS[measurand]}
            assert sampled["location"] == "Outlet"
            if measurand == "Voltage":
                assert sampled["phase"] in ("L1-N", "L2-N", "L3-N")
            else:
                assert "phase" not in sampled
            if measurand == "Energy.Active.Import.Register" and signed_energy:
                assert sampled["signedMeterValue"] == {
                    "signedMeterData": SIGNED["signed_meter_data"],
                    "signingMethod": SIGNED["signing_method"],
                    "encodingMethod": SIGNED["encoding_method"],
                    "publicKey": SIGNED["public_key"],
                }
            else:
                assert "signedMeterValue" not in sampled


# --- J02: transaction-related meter values


@pytest.mark.parametrize("signing", [False, True])
async def test_j02_begin_periodic_and_end_samples_with_exactly_the_configured_measurands(
    tmp_path: Path, broker: Broker, signing: bool
) -> None:
    points = {"TxCtrlr.TxStartPoint": "EVConnected", "SampledDataCtrlr.TxUpdatedInterval": "1"}
    async with station(tmp_path, broker, points) as s:
        if signing:
            s.oem.tweak["meter_values"] = signed
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(3, lambda e: e["triggerReason"] == "MeterValuePeriodic")
        assert await s.oem.present() == "accepted"
        await s.csms.wait_ended()
        await settle(1.5)  # past one more TxUpdatedInterval: no sample after the end
    events = s.csms.events()
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[-1]["eventType"] == "Ended"
    state_events = [shape(e) for e in events if e["triggerReason"] != "MeterValuePeriodic"]
    assert [(e.event_type, e.trigger, e.charging_state, e.meter) for e in state_events] == [
        ("Started", "CablePluggedIn", "EVConnected", (BEGIN,)),  # TxStartedMeasurands
        ("Updated", "Authorized", None, ()),
        ("Updated", "ChargingStateChanged", "SuspendedEVSE", ()),
        ("Updated", "ChargingStateChanged", "Charging", ()),
        ("Ended", "StopAuthorized", None, (END,)),  # TxEndedMeasurands
    ]
    periodic = [e for e in events if e["triggerReason"] == "MeterValuePeriodic"]
    for event in periodic:
        # J02.FR.02-style: Updated, Sample.Periodic, exactly TxUpdatedMeasurands.
        assert shape(event) == Event(
            "Updated", "MeterValuePeriodic", event["seqNo"], meter=(PERIODIC,)
        )
    for event in events:
        check_sampled_values(event, signing)
    readings = [next(energies(e)) for e in events if e.get("meterValue")]
    assert readings == sorted(readings)  # a register never goes back
    assert readings[-1] > readings[0]  # and it ran while the EV charged
    charging = [e for e in periodic if next(energies(e)) > readings[0]]
    power = [
        s["value"]
        for e in charging
        for s in e["meterValue"][0]["sampledValue"]
        if s["measurand"] == "Power.Active.Import"
    ]
    assert power
    assert all(p == 11000 for p in power)  # the OEM's own power value, never computed


async def test_j02_tx_ended_interval_samples_ride_in_the_ended_event(
    tmp_path: Path, broker: Broker
) -> None:
    """SampledDataCtrlr.TxEndedInterval: a sample of TxEndedMeasurands every interval from the
    start, sent only in the Ended event (context Sample.Periodic), before its Transaction.End
    value; nothing extra is sent while the transaction runs."""
    points = {
        "TxCtrlr.TxStartPoint": "EVConnected",
        "SampledDataCtrlr.TxEndedInterval": "1",
        "AlignedDataCtrlr.TxEndedInterval": "0",
    }
    async with station(tmp_path, broker, points) as s:
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await settle(2.6)
        assert await s.oem.present() == "accepted"
        (ended,) = await s.csms.wait_ended()
    events = s.csms.events()
    assert [e["triggerReason"] for e in events if e["triggerReason"].startswith("MeterValue")] == []
    meter = shape(ended).meter
    sampled = ("Sample.Periodic", END[1])  # with TxEndedMeasurands
    assert len(meter) >= 3
    assert meter[-1] == END
    assert set(meter[:-1]) == {sampled}
    times = [moment(v["timestamp"]) for v in ended["meterValue"]]
    assert times == sorted(times)
    readings = list(energies(ended))
    assert readings == sorted(readings)
    check_sampled_values(ended, signed_energy=False)


async def test_j02_tx_updated_interval_zero_sends_no_periodic_samples(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker, {"TxCtrlr.TxStartPoint": "EVConnected"}) as s:
        await s.oem.plug()
        await s.csms.wait_events(1)
        await settle(1.5)
    assert [e["triggerReason"] for e in s.csms.events()] == ["CablePluggedIn"]


async def test_j02_a_meter_that_does_not_answer_leaves_the_event_without_meter_value(
    tmp_path: Path, broker: Broker
) -> None:
    """meter_values unanswered within [oem] request_timeout: the event goes without it, and the
    events behind it keep their order."""
    async with station(tmp_path, broker, {"TxCtrlr.TxStartPoint": "EVConnected"}) as s:
        s.oem.silent.add("meter_values")
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.csms.wait_events(2, timeout=10)
    assert [(shape(e).event_type, shape(e).meter) for e in s.csms.events()] == [
        ("Started", ()),
        ("Updated", ()),
    ]


# --- J01: clock-aligned meter values


@pytest.mark.parametrize("send_during_idle", [False, True])
async def test_j01_clock_aligned_meter_values_idle_and_in_a_transaction(
    tmp_path: Path, broker: Broker, send_during_idle: bool
) -> None:
    points = {
        "TxCtrlr.TxStartPoint": "EVConnected",
        "AlignedDataCtrlr.Interval": "2",
        "AlignedDataCtrlr.SendDuringIdle": str(send_during_idle).lower(),
    }
    async with station(tmp_path, broker, points) as s:
        csms = s.csms
        await csms.wait_for("MeterValues", timeout=10)  # idle: MeterValues (J01.FR.01-style)
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        if send_during_idle:
            await settle(4.5)  # two intervals: SendDuringIdle, nothing clock-aligned now
        else:
            await csms.wait_events(2, lambda e: e["triggerReason"] == "MeterValueClock")
        assert await s.oem.present() == "accepted"
        await csms.wait_ended()
        count = len(csms.payloads("MeterValues"))
        await csms.wait_for("MeterValues", count=count + 1, timeout=10)  # idle again
    events = csms.events()
    begin, end = moment(events[0]["timestamp"]), moment(events[-1]["timestamp"])
    idle = csms.payloads("MeterValues")
    # In a transaction the clock-aligned values go in its events, not as MeterValues.
    assert not [p for p in idle if begin <= moment(p["meterValue"][0]["timestamp"]) <= end]
    clock = [p for p in events if p["triggerReason"] == "MeterValueClock"]
    if send_during_idle:
        assert clock == []
    else:
        for event in clock:
            # Sample.Clock with exactly AlignedDataCtrlr.Measurands.
            assert shape(event) == Event(
                "Updated", "MeterValueClock", event["seqNo"], meter=(CLOCK,)
            )
    assert idle
    for payload in idle:
        assert set(payload) == {"evseId", "meterValue"}
        assert payload["evseId"] == 1
        (value,) = payload["meterValue"]
        assert {"timestamp", "sampledValue"} == set(value)
        assert [(s["measurand"], s["context"]) for s in value["sampledValue"]] == [
            ("Energy.Active.Import.Register", "Sample.Clock"),
            ("Frequency", "Sample.Clock"),
        ]
        check_sampled_values({"meterValue": [value]}, signed_energy=False)


async def test_j01_aligned_interval_zero_sends_no_clock_aligned_values(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        await settle(2.5)
    assert s.csms.payloads("MeterValues") == []
