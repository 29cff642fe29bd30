"""G01-G04 and N07 end to end: connector status from the OEM's cp_status and
cs_status_and_limits (StatusNotification on every change), faults and what they do to a running
transaction, the OEM taking an EVSE out of service (change_availability, persisted: G03.FR.05),
and notify_event / a contactor error as NotifyEvent; through the real bridge, Mosquitto and a
WebSocket CSMS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, running_bridge
from tests.tx_support import (
    BEGIN,
    END,
    WAIT,
    Csms,
    Event,
    check_events,
    config,
    firmware_oem,
    id_token,
    settle,
    shape,
    station,
)

TAG = id_token()


def statuses(csms: Csms) -> list[tuple[int, int, str]]:
    return [
        (p["evseId"], p["connectorId"], p["connectorStatus"])
        for p in csms.payloads("StatusNotification")
    ]


async def until_status(csms: Csms, status: str, count: int = 1) -> None:
    await csms.wait_for(
        "StatusNotification",
        count=count,
        timeout=WAIT,
        predicate=lambda r: r.payload["connectorStatus"] == status,
    )


def limits(code: str, rcd_error: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"evse_id": "1", "status_code": code}
    entry["ac"] = {
        "max_current": {"l1": 32.0, "l2": 32.0, "l3": 32.0},
        "nominal_voltage": 230.0,
        "rcd_error": rcd_error,
    }
    return {"evses": [entry]}


# --- G01: connector status


async def test_g01_status_on_plug_in_and_unplug(tmp_path: Path, broker: Broker) -> None:
    async with station(tmp_path, broker) as s:
        await s.oem.plug()
        await until_status(s.csms, "Occupied")
        await s.oem.pilot("B2")
        await s.oem.pilot("C2")  # B -> C: still Occupied, no StatusNotification
        await s.oem.unplug()
        await until_status(s.csms, "Available", 2)
        await settle()
    assert statuses(s.csms) == [(1, 1, "Available"), (1, 1, "Occupied"), (1, 1, "Available")]
    for payload in s.csms.payloads("StatusNotification"):
        assert set(payload) == {"timestamp", "connectorStatus", "evseId", "connectorId"}


async def test_g01_two_evses_report_each_their_own_connector(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker, evses=2) as s:
        await s.oem.plug(evse=2)
        await until_status(s.csms, "Occupied")
        await s.csms.wait_events(1)
        await settle()
    assert statuses(s.csms)[2:] == [(2, 1, "Occupied")]
    (started,) = s.csms.events()
    assert started["evse"] == {"id": 2, "connectorId": 1}


# --- G04: faults


@pytest.mark.parametrize("state", ["E", "F"])
async def test_g04_a_control_pilot_fault_is_faulted_until_it_clears(
    tmp_path: Path, broker: Broker, state: str
) -> None:
    async with station(tmp_path, broker) as s:
        await s.oem.pilot(state)
        await until_status(s.csms, "Faulted")
        await s.oem.pilot("A1")
        await until_status(s.csms, "Available", 2)
        await settle()
    assert statuses(s.csms) == [(1, 1, "Available"), (1, 1, "Faulted"), (1, 1, "Available")]
    assert s.csms.events() == []


@pytest.mark.parametrize(
    ("code", "rcd_error", "status"),
    [
        ("evse_malfunction", False, "Faulted"),
        ("evse_emergency_shutdown", False, "Faulted"),
        ("evse_isolation_monitoring_active", False, "Faulted"),
        ("evse_ready", True, "Faulted"),  # rcd_error
        ("evse_not_ready", False, "Unavailable"),
        ("evse_utility_interrupt_event", False, "Unavailable"),
    ],
)
async def test_g04_cs_status_and_limits_faults_and_unavailability(
    tmp_path: Path, broker: Broker, code: str, rcd_error: bool, status: str
) -> None:
    async with station(tmp_path, broker) as s:
        await s.oem.update("cs_status_and_limits", limits(code, rcd_error))
        await until_status(s.csms, status)
        if status == "Faulted":
            problem = await s.csms.wait_payload("NotifyEvent", lambda p: True)
        await s.oem.update("cs_status_and_limits", limits("evse_ready"))
        await until_status(s.csms, "Available", 2)
        await settle()
    assert statuses(s.csms) == [(1, 1, "Available"), (1, 1, status), (1, 1, "Available")]
    if status != "Faulted":
        assert s.csms.payloads("NotifyEvent") == []
        return
    (event,) = problem["eventData"]
    assert problem["seqNo"] == 0
    assert "tbc" not in problem
    event.pop("eventId")
    event.pop("timestamp")
    assert event == {
        "trigger": "Alerting",
        "actualValue": "true",
        "techCode": "rcd_error" if code == "evse_ready" else code,
        "eventNotificationType": "HardWiredNotification",
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Problem"},
    }


@pytest.mark.parametrize(
    ("stop", "code", "expected"),
    [
        # TxStopPoint without the power path: the transaction waits, suspended by the EVSE.
        ("EVConnected,Authorized", "evse_malfunction", "Updated"),
        # With it: the fault opens the power path and ends the transaction.
        ("PowerPathClosed", "evse_malfunction", "Other"),
        ("EnergyTransfer", "evse_emergency_shutdown", "EmergencyStop"),
    ],
)
async def test_g04_a_fault_during_a_transaction_ends_it_per_tx_stop_point(
    tmp_path: Path, broker: Broker, stop: str, code: str, expected: str
) -> None:
    points = {"TxCtrlr.TxStartPoint": "EVConnected", "TxCtrlr.TxStopPoint": stop}
    async with station(tmp_path, broker, points) as s:
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(4)
        await s.oem.update("cs_status_and_limits", limits(code))
        await s.csms.wait_events(5)
        await until_status(s.csms, "Faulted")
        await settle()
    fifth = shape(s.csms.events()[4])
    if expected == "Updated":
        assert fifth == Event("Updated", "AbnormalCondition", 4, charging_state="SuspendedEVSE")
        assert s.oem.named("stop_charging", "request") == [{"evse_id": "1"}]
    else:
        assert fifth == Event(
            "Ended", "AbnormalCondition", 4, stopped_reason=expected, meter=(END,)
        )
        assert s.oem.named("stop_charging", "request") == [{"evse_id": "1"}]
        assert s.oem.transaction_status()[-1][0] == "ended"


# --- G03: the OEM takes the EVSE out of service


async def test_g03_oem_change_availability_ends_the_transaction_and_persists(
    tmp_path: Path, broker: Broker
) -> None:
    async with Csms() as csms, firmware_oem(broker, 1) as oem:
        path = config(tmp_path, broker, csms.url, {"TxCtrlr.TxStartPoint": "EVConnected"})
        async with running_bridge(path):
            await csms.wait_for("StatusNotification", timeout=WAIT)
            await oem.plug()
            assert await oem.present() == "accepted"
            await oem.charge()
            await csms.wait_events(4)
            await oem.update(
                "change_availability", {"operational_status": "inoperative", "evse_id": "1"}
            )
            (ended,) = await csms.wait_ended()
            await until_status(csms, "Unavailable")
            await oem.wait_request("stop_charging")
            await oem.unplug()
            await settle()
            await oem.plug()  # out of service: no transaction
            assert await oem.present() == "rejected"
            await settle()
            assert len(csms.events()) == 5
        before = len(statuses(csms))
        async with running_bridge(path):  # G03.FR.05: still out of service after a restart
            await csms.wait_for("StatusNotification", count=before + 1, timeout=WAIT)
            assert statuses(csms)[-1] == (1, 1, "Unavailable")
            await oem.update("change_availability", {"operational_status": "operative"})
            await csms.wait_for("StatusNotification", count=before + 2, timeout=WAIT)
            assert statuses(csms)[-1] == (1, 1, "Available")  # no cp_status since the start
            await oem.unplug()
            await oem.plug()  # in service again: a new transaction
            await csms.wait_events(6)
            assert statuses(csms)[-1] == (1, 1, "Occupied")
    check_events(
        csms.events()[:5],
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
            Event("Ended", "AbnormalCondition", 4, stopped_reason="Other", meter=(END,)),
        ],
    )
    assert ended["seqNo"] == 4
    assert csms.events()[5]["eventType"] == "Started"


# --- N07: the OEM's notify_event, a contactor error


@pytest.mark.parametrize("evse", [None, "1"])
async def test_n07_notify_event_from_the_oem(
    tmp_path: Path, broker: Broker, evse: str | None
) -> None:
    data: dict[str, Any] = {
        "event_id": 4711,
        "timestamp": "2026-12-03T10:00:00.000Z",
        "tech_code": "E-OVERTEMP",
        "tech_info": "connector temperature 95 C",
        "transaction_id": "2c7e5f2e-1c1f-4d8e-9d5e-0f7b6b1f3a11",
    }
    if evse is not None:
        data["evse_id"] = evse
    async with station(tmp_path, broker) as s:
        await s.oem.update("notify_event", data)
        payload = await s.csms.wait_payload("NotifyEvent", lambda p: True)
    assert payload["seqNo"] == 0
    assert "tbc" not in payload
    (event,) = payload["eventData"]
    component = {"name": "EVSE", "evse": {"id": 1}} if evse else {"name": "ChargingStation"}
    assert event == {
        "eventId": 4711,
        "timestamp": "2026-12-03T10:00:00.000Z",
        "trigger": "Alerting",
        "actualValue": "true",
        "eventNotificationType": "HardWiredNotification",
        "component": component,
        "variable": {"name": "Problem"},
        "techCode": "E-OVERTEMP",
        "techInfo": "connector temperature 95 C",
        "transactionId": "2c7e5f2e-1c1f-4d8e-9d5e-0f7b6b1f3a11",
    }


async def test_a_contactor_error_is_a_notify_event_on_the_evse(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        await s.oem.update(
            "cs_contactor_status", {"evse_id": "1", "status": "error", "info": "welded"}
        )
        payload = await s.csms.wait_payload("NotifyEvent", lambda p: True)
    (event,) = payload["eventData"]
    assert event["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert (event["techCode"], event["techInfo"]) == ("ContactorError", "welded")
