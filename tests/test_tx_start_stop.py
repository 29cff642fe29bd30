"""E01-E11 end to end: where a transaction starts and stops (TxStartPoint x TxStopPoint), E03
EVConnectionTimeOut, E05 an id the CSMS does not accept, E07 stop by the same token, E09/E10 the
cable unplugged on the EV side, through the real bridge, Mosquitto and a WebSocket CSMS.

Every TransactionEvent is checked whole (tests/tx_support.py `Event`), and so is what the OEM
heard: transaction_status, stop_charging, its authorization answers.

One driver session is played for every pair of start and stop points:
  1. plug in (cp_status B1)            -> EVConnected, ParkingBayOccupancy (the cable: no bay
                                           sensor on this station, a listed deviation)
  2. present the token                 -> Authorized
  3. B2, C2, contactor closed          -> PowerPathClosed, EnergyTransfer, DataSigned (the meter
                                           signs the reading the bridge asks when the power path
                                           closes)
  4. present the same token again (E07) -> the bridge asks stop_charging: the firmware opens the
                                           contactor and switches the PWM off (B1)
  5. unplug (A1)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker
from tests.tx_support import (
    BEGIN,
    END,
    TOKEN,
    Csms,
    Data,
    Event,
    check_events,
    energies,
    id_token,
    settle,
    shape,
    station,
)

START_POINTS = (
    "ParkingBayOccupancy",
    "EVConnected",
    "Authorized",
    "DataSigned",
    "PowerPathClosed",
    "EnergyTransfer",
)
STOP_POINTS = (
    "ParkingBayOccupancy",
    "EVConnected",
    "Authorized",
    "PowerPathClosed",
    "EnergyTransfer",
)
TAG = id_token()
SIGNED = {
    "measurand": "Energy.Active.Import.Register",
    "signed_meter_data": "AP;0;3;ALCV3ABBBISHMA2RYEGAZE3HV5YQBQRQAEHAR2MN;BIHEIWSQAAAA",
    "signing_method": "ECDSA-secp256r1-SHA256",
    "encoding_method": "OCMF",
    "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
}


def signed(data: Data) -> Data:
    """The firmware's meter_values answer, signed by the meter."""
    return {**data, "signed_meter_values": [SIGNED]}


def expected_session(start: str, stop: str) -> list[Event]:
    """The TransactionEvents OCPP prescribes for the session above (E01, E06, E07).

    Started: triggerReason per E01 (EVDetected, CablePluggedIn, Authorized, SignedDataReceived,
    ChargingStateChanged), chargingState the EVSE's state then, idToken once after the
    authorization (E03.FR.01-style "first event after authorized"), Transaction.Begin sample.
    The stop by token (E07): with Authorized, PowerPathClosed or EnergyTransfer as the stop point
    the stop itself ends the transaction: Ended StopAuthorized / Local with the idToken that
    ended the authorization (E07.FR.02); with EVConnected (or the bay) the transaction goes on
    as Updated StopAuthorized until the cable is unplugged: Ended EVCommunicationLost, Local (the
    first reason stands), chargingState Idle.
    """
    events: list[Event] = []

    def add(kind: str, trigger: str, **fields: Any) -> None:
        events.append(Event(kind, trigger, len(events), **fields))

    # 1. plug in; 2. the token
    if start in ("ParkingBayOccupancy", "EVConnected"):
        trigger = "EVDetected" if start == "ParkingBayOccupancy" else "CablePluggedIn"
        add("Started", trigger, charging_state="EVConnected", meter=(BEGIN,))
        add("Updated", "Authorized", id_token=TAG)
    elif start == "Authorized":
        add("Started", "Authorized", charging_state="EVConnected", id_token=TAG, meter=(BEGIN,))
    # 3. B2, C2, contactor closed
    if events:
        add("Updated", "ChargingStateChanged", charging_state="SuspendedEVSE")
        add("Updated", "ChargingStateChanged", charging_state="Charging")
    else:
        trigger = "SignedDataReceived" if start == "DataSigned" else "ChargingStateChanged"
        add("Started", trigger, charging_state="Charging", id_token=TAG, meter=(BEGIN,))
    # 4. the same token again
    if stop in ("Authorized", "PowerPathClosed", "EnergyTransfer"):
        add("Ended", "StopAuthorized", stopped_reason="Local", id_token=TAG, meter=(END,))
        return events
    add("Updated", "StopAuthorized", id_token=TAG)
    add("Updated", "ChargingStateChanged", charging_state="EVConnected")  # contactor opened
    # 5. unplug
    add(
        "Ended",
        "EVCommunicationLost",
        charging_state="Idle",
        stopped_reason="Local",
        meter=(END,),
    )
    return events


@pytest.mark.parametrize("stop", STOP_POINTS)
@pytest.mark.parametrize("start", START_POINTS)
async def test_e01_e06_e07_start_and_stop_points(
    tmp_path: Path, broker: Broker, start: str, stop: str
) -> None:
    points = {"TxCtrlr.TxStartPoint": start, "TxCtrlr.TxStopPoint": stop}
    async with station(tmp_path, broker, points) as s:
        oem, csms = s.oem, s.csms
        if start == "DataSigned":
            oem.tweak["meter_values"] = signed
        await oem.plug()
        assert await oem.present() == "accepted"
        await oem.charge()
        expected = expected_session(start, stop)
        await csms.wait_events(len([e for e in expected if _before_stop(e)]))
        assert await oem.present() == "accepted"  # E07: the same token stops it
        await oem.wait_request("stop_charging")
        await csms.wait_events(len(expected) - 1)
        await oem.unplug()
        (ended,) = await csms.wait_ended()
        await settle()

    events = csms.events()
    transaction_id = check_events(events, expected)
    # The meter ran while the EV charged: Transaction.End above Transaction.Begin.
    begin, end = next(energies(events[0])), next(energies(ended))
    assert end > begin
    if start == "DataSigned":
        assert events[0]["meterValue"][0]["sampledValue"][0]["signedMeterValue"] == {
            "signedMeterData": SIGNED["signed_meter_data"],
            "signingMethod": SIGNED["signing_method"],
            "encodingMethod": SIGNED["encoding_method"],
            "publicKey": SIGNED["public_key"],
        }
    # What the OEM heard.
    statuses = oem.transaction_status()
    assert statuses[0] == ("started", transaction_id)
    assert statuses[-1] == ("ended", transaction_id)
    resumed = (
        ["in_progress"]
        if any(e.event_type == "Updated" and e.charging_state == "Charging" for e in expected)
        else []
    )
    assert [s for s, _ in statuses] == ["started", *resumed, "ended"]
    for data in oem.named("transaction_status"):
        assert data["evse_id"] == "1"
        assert (data.get("id_token"), data.get("token_type")) in (
            (TOKEN, "ISO14443"),
            (None, None),
        )
    ended_status = oem.named("transaction_status")[-1]
    assert (ended_status["id_token"], ended_status["token_type"]) == (TOKEN, "ISO14443")
    assert oem.named("stop_charging", "request") == [{"evse_id": "1"}]
    # No second transaction from what still held after the first ended.
    assert [e["eventType"] for e in events].count("Started") == 1


def _before_stop(event: Event) -> bool:
    return event.trigger not in ("StopAuthorized", "EVCommunicationLost") and not (
        event.trigger == "ChargingStateChanged" and event.charging_state == "EVConnected"
    )


# --- combinations of points (the defaults, and the OCPP 1.6 compatible pair)


@pytest.mark.parametrize(
    ("start", "stop", "first"),
    [
        # The default: whichever comes first, the cable or the token (here the cable).
        ("Authorized,EVConnected", "EVConnected,Authorized", "CablePluggedIn"),
        ("PowerPathClosed", "EVConnected,Authorized", "ChargingStateChanged"),
        ("EVConnected", "EVConnected,PowerPathClosed", "CablePluggedIn"),
    ],
)
async def test_e01_e06_point_lists_start_at_the_first_and_stop_at_the_first_fallen(
    tmp_path: Path, broker: Broker, start: str, stop: str, first: str
) -> None:
    points = {"TxCtrlr.TxStartPoint": start, "TxCtrlr.TxStopPoint": stop}
    async with station(tmp_path, broker, points) as s:
        oem, csms = s.oem, s.csms
        await oem.plug()
        assert await oem.present() == "accepted"
        await oem.charge()
        await csms.wait_events(1, lambda e: e["transactionInfo"].get("chargingState") == "Charging")
        assert await oem.present() == "accepted"
        await oem.wait_request("stop_charging")
        await oem.unplug()
        await csms.wait_ended()
        await settle()
    events = csms.events()
    assert events[0]["triggerReason"] == first
    ended = events[-1]
    if "Authorized" in stop:
        # E06.FR.03: the token's end is the stop point.
        assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
            "StopAuthorized",
            "Local",
        )
        assert ended["idToken"] == TAG
    else:
        # E06.FR.06: the power path opened after the stop by token; the first reason stands.
        assert shape(events[-2]) == Event(
            "Updated", "StopAuthorized", len(events) - 2, id_token=TAG
        )
        assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
            "ChargingStateChanged",
            "Local",
        )
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert [e["eventType"] for e in events].count("Ended") == 1


# --- E03: authorized first, the EV does not come


async def test_e03_ev_connection_timeout_ends_a_transaction_started_by_the_token(
    tmp_path: Path, broker: Broker
) -> None:
    points = {"TxCtrlr.TxStartPoint": "Authorized", "TxCtrlr.EVConnectionTimeOut": "1"}
    async with station(tmp_path, broker, points) as s:
        assert await s.oem.present() == "accepted"
        await s.csms.wait_ended()
        deauthorized = await s.oem.wait_update("authorization", lambda d: True)
        await settle()
    transaction_id = check_events(
        s.csms.events(),
        [
            Event("Started", "Authorized", 0, charging_state="Idle", id_token=TAG, meter=(BEGIN,)),
            # E03.FR.05: EVConnectionTimeOut ends it; stoppedReason Timeout.
            Event("Ended", "EVConnectTimeout", 1, stopped_reason="Timeout", meter=(END,)),
        ],
    )
    assert deauthorized == {
        "evse_id": "1",
        "id_token": TOKEN,
        "token_type": "ISO14443",
        "status": "deauthorized",
    }
    assert s.oem.transaction_status() == [("started", transaction_id), ("ended", transaction_id)]
    assert s.oem.named("stop_charging", "request") == []  # nothing was charging


async def test_e03_ev_connection_timeout_without_a_transaction_lets_the_token_lapse(
    tmp_path: Path, broker: Broker
) -> None:
    points = {"TxCtrlr.TxStartPoint": "EVConnected", "TxCtrlr.EVConnectionTimeOut": "1"}
    async with station(tmp_path, broker, points) as s:
        assert await s.oem.present() == "accepted"
        deauthorized = await s.oem.wait_update("authorization", lambda d: True)
        assert s.csms.events() == []  # E03: no transaction was started
        await s.oem.plug()  # too late: a transaction without the token
        await s.csms.wait_events(1)
        await settle()
    assert deauthorized["status"] == "deauthorized"
    check_events(
        s.csms.events(),
        [Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,))],
    )


async def test_e03_the_ev_in_time_starts_charging_with_the_token(
    tmp_path: Path, broker: Broker
) -> None:
    points = {"TxCtrlr.TxStartPoint": "EVConnected", "TxCtrlr.EVConnectionTimeOut": "10"}
    async with station(tmp_path, broker, points) as s:
        assert await s.oem.present() == "accepted"
        await s.oem.plug()
        await s.oem.charge()
        await s.csms.wait_events(3)
        await settle()
    check_events(
        s.csms.events(),
        [
            # E03.FR.01: the idToken in the first event after the authorization.
            Event(
                "Started",
                "CablePluggedIn",
                0,
                charging_state="EVConnected",
                id_token=TAG,
                meter=(BEGIN,),
            ),
            Event("Updated", "ChargingStateChanged", 1, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 2, charging_state="Charging"),
        ],
    )
    assert s.oem.named("authorization") == []


# --- E05: the CSMS does not accept the transaction's idToken


async def charging_with_a_token_the_csms_refuses(s: Any, charge: bool = True) -> None:
    """Authorize says Accepted, the TransactionEventResponse to the event with the idToken
    Invalid (the token was blocked in between)."""
    s.csms.tx_tokens[TOKEN] = {"status": "Invalid"}
    await s.oem.plug()
    assert await s.oem.present() == "accepted"
    if charge:
        await s.oem.charge()


async def test_e05_stop_tx_on_invalid_id_ends_the_transaction(
    tmp_path: Path, broker: Broker
) -> None:
    points = {"TxCtrlr.TxStartPoint": "EVConnected", "TxCtrlr.StopTxOnInvalidId": "true"}
    async with station(tmp_path, broker, points) as s:
        # No charging: whether the EV's C2 came before or after the CSMS's Invalid would be a
        # race (a ChargingStateChanged in between, or not).
        await charging_with_a_token_the_csms_refuses(s, charge=False)
        await s.csms.wait_ended()
        await s.oem.unplug()
        await settle()
    events = s.csms.events()
    check_events(
        events,
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
            # E05.FR.09 / E06.FR.04: StopTxOnInvalidId ends it at once, DeAuthorized.
            Event("Ended", "Deauthorized", 2, stopped_reason="DeAuthorized", meter=(END,)),
        ],
    )
    assert [status for status, _ in s.oem.transaction_status()] == ["started", "ended"]


async def test_e05_stop_tx_on_invalid_id_while_charging_stops_the_energy(
    tmp_path: Path, broker: Broker
) -> None:
    points = {"TxCtrlr.TxStartPoint": "PowerPathClosed", "TxCtrlr.StopTxOnInvalidId": "true"}
    async with station(tmp_path, broker, points) as s:
        await charging_with_a_token_the_csms_refuses(s)
        await s.csms.wait_ended()
        await s.oem.wait_request("stop_charging")
        await s.oem.unplug()
        await settle()
    check_events(
        s.csms.events(),
        [
            Event(
                "Started",
                "ChargingStateChanged",
                0,
                charging_state="Charging",
                id_token=TAG,
                meter=(BEGIN,),
            ),
            Event("Ended", "Deauthorized", 1, stopped_reason="DeAuthorized", meter=(END,)),
        ],
    )
    assert s.oem.named("stop_charging", "request") == [{"evse_id": "1"}]


async def test_e05_without_stop_tx_on_invalid_id_the_transaction_stays_suspended(
    tmp_path: Path, broker: Broker
) -> None:
    points = {
        "TxCtrlr.TxStartPoint": "PowerPathClosed",
        "TxCtrlr.TxStopPoint": "EVConnected,Authorized",
        "TxCtrlr.StopTxOnInvalidId": "false",
        "TxCtrlr.MaxEnergyOnInvalidId": "0",
    }
    async with station(tmp_path, broker, points) as s:
        await charging_with_a_token_the_csms_refuses(s)
        await s.oem.wait_request("stop_charging")
        await s.csms.wait_events(3)
        await settle()
        assert [e["eventType"] for e in s.csms.events()] == ["Started", "Updated", "Updated"]
        await s.oem.unplug()
        await s.csms.wait_ended()
        await settle()
    check_events(
        s.csms.events(),
        [
            Event(
                "Started",
                "ChargingStateChanged",
                0,
                charging_state="Charging",
                id_token=TAG,
                meter=(BEGIN,),
            ),
            # E05.FR.11-style: energy stopped, the transaction kept (StopTxOnInvalidId false).
            Event("Updated", "Deauthorized", 1, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 2, charging_state="EVConnected"),
            Event(
                "Ended",
                "EVCommunicationLost",
                3,
                charging_state="Idle",
                stopped_reason="EVDisconnected",
                meter=(END,),
            ),
        ],
    )


async def test_e05_max_energy_on_invalid_id_lets_it_charge_that_much_more(
    tmp_path: Path, broker: Broker
) -> None:
    points = {
        "TxCtrlr.TxStartPoint": "PowerPathClosed",
        "TxCtrlr.StopTxOnInvalidId": "false",
        "TxCtrlr.MaxEnergyOnInvalidId": "500",
        "SampledDataCtrlr.TxUpdatedInterval": "1",
    }
    async with station(tmp_path, broker, points) as s:
        await charging_with_a_token_the_csms_refuses(s)
        (limit,) = await s.csms.wait_events(1, lambda e: e["triggerReason"] == "EnergyLimitReached")
        await s.oem.wait_request("stop_charging")
        await s.oem.unplug()
        await s.csms.wait_ended()
    events = s.csms.events()
    begin = next(energies(events[0]))
    # E05.FR.03: charging goes on until MaxEnergyOnInvalidId more, then the EVSE suspends.
    periodic = [e for e in events if e["triggerReason"] == "MeterValuePeriodic"]
    assert periodic, "no sample between the refusal and the limit"
    before = [e for e in periodic if e["seqNo"] < limit["seqNo"]]
    assert all(next(energies(e)) - begin < 500 for e in before[:-1])
    assert next(energies(before[-1])) - begin >= 500
    assert shape(limit) == Event(
        "Updated", "EnergyLimitReached", limit["seqNo"], charging_state="SuspendedEVSE"
    )
    # The refusal is reported at once (the state unchanged), the suspension at the limit.
    (refused,) = [e for e in events if e["triggerReason"] == "Deauthorized"]
    assert shape(refused) == Event("Updated", "Deauthorized", 1)
    assert events[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"


# --- E07 / C04: only the token that started it (or its group, C09) stops it


async def test_tc_c_04_a_different_token_does_not_stop_the_transaction(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(4)
        assert await s.oem.present("TAG-OTHER") == "rejected"
        await settle()
        assert len(s.csms.events()) == 4  # no TransactionEvent for the other token
        assert s.oem.named("stop_charging", "request") == []
        assert await s.oem.present() == "accepted"  # the own token still stops it
        await s.csms.wait_ended()
    (authorize_other,) = [
        p for p in s.csms.payloads("Authorize") if p["idToken"]["idToken"] == "TAG-OTHER"
    ]
    assert authorize_other == {"idToken": id_token("TAG-OTHER")}


# --- E09 / E10: the cable unplugged on the EV side


async def test_e09_unplugged_while_charging_ends_the_transaction(
    tmp_path: Path, broker: Broker
) -> None:
    """StopTxOnEVSideDisconnect true (and read-only): the unplug ends the transaction whatever
    the stop points (here only Authorized)."""
    points = {"TxCtrlr.TxStartPoint": "EVConnected", "TxCtrlr.TxStopPoint": "Authorized"}
    async with station(tmp_path, broker, points) as s:
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(4)
        await s.oem.unplug()
        await s.csms.wait_ended()
        await settle()
    check_events(
        s.csms.events(),
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
            Event(
                "Ended",
                "EVCommunicationLost",
                4,
                charging_state="Idle",
                stopped_reason="EVDisconnected",
                meter=(END,),
            ),
        ],
    )


async def test_tc_e_37_power_path_stop_point_ends_when_the_ev_side_is_unplugged(
    tmp_path: Path, broker: Broker
) -> None:
    points = {
        "TxCtrlr.TxStartPoint": "PowerPathClosed",
        "TxCtrlr.TxStopPoint": "PowerPathClosed",
        "TxCtrlr.StopTxOnEVSideDisconnect": "false",
    }
    async with station(tmp_path, broker, points) as s:
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(1)
        await s.oem.suspend_ev()  # EnergyTransferSuspended: C2 -> B2, contactor still closed
        await s.csms.wait_events(2)
        await s.oem.unplug()  # A1, then the contactor opens
        await s.csms.wait_ended()
        await settle()
    check_events(
        s.csms.events(),
        [
            Event(
                "Started",
                "ChargingStateChanged",
                0,
                charging_state="Charging",
                id_token=TAG,
                meter=(BEGIN,),
            ),
            Event("Updated", "ChargingStateChanged", 1, charging_state="SuspendedEV"),
            # TC_E_37: EVCommunicationLost, Idle, EVDisconnected.
            Event(
                "Ended",
                "EVCommunicationLost",
                2,
                charging_state="Idle",
                stopped_reason="EVDisconnected",
                meter=(END,),
            ),
        ],
    )


async def test_e10_stop_tx_on_ev_side_disconnect_false_suspends_and_resumes(
    tmp_path: Path, broker: Broker
) -> None:
    """TC_E_26: TxStopPoint Authorized, StopTxOnEVSideDisconnect false: the unplug suspends the
    transaction (E10.FR.01), the EV plugged in again charges in the same transaction."""
    points = {
        "TxCtrlr.TxStartPoint": "EVConnected",
        "TxCtrlr.TxStopPoint": "Authorized",
        "TxCtrlr.StopTxOnEVSideDisconnect": "false",
    }
    async with station(tmp_path, broker, points) as s:
        oem = s.oem
        await oem.plug()
        assert await oem.present() == "accepted"
        await oem.charge()
        await s.csms.wait_events(4)
        await oem.unplug()
        await s.csms.wait_events(5)
        await settle()
        assert s.oem.transaction_status()[-1][0] != "ended"
        await oem.plug()
        await oem.charge()
        await s.csms.wait_events(8)
        assert await oem.present() == "accepted"
        await s.csms.wait_ended()
        await settle()
    transaction_id = check_events(
        s.csms.events(),
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
            Event("Updated", "EVCommunicationLost", 4, charging_state="Idle"),
            Event("Updated", "CablePluggedIn", 5, charging_state="EVConnected"),
            Event("Updated", "ChargingStateChanged", 6, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 7, charging_state="Charging"),
            Event("Ended", "StopAuthorized", 8, stopped_reason="Local", id_token=TAG, meter=(END,)),
        ],
    )
    # The OEM: started, charging, charging again after the suspension, ended.
    assert oem.transaction_status() == [
        ("started", transaction_id),
        ("in_progress", transaction_id),
        ("in_progress", transaction_id),
        ("ended", transaction_id),
    ]


# --- TxBeforeAcceptedEnabled (B02 / E)


@pytest.mark.parametrize("enabled", [True, False])
async def test_tx_before_accepted_enabled_lets_a_pending_station_start(
    tmp_path: Path, broker: Broker, enabled: bool
) -> None:
    """Pending, the EV plugged in and the token accepted offline (no Authorize before the
    boot is accepted): with TxBeforeAcceptedEnabled the transaction starts at once (its events
    wait for the Accepted boot, made online: not `offline`); without, it starts when the boot
    is accepted."""
    csms = Csms(boot_status="Pending", heartbeat_interval=1)  # a boot again every second
    points = {"TxCtrlr.TxBeforeAcceptedEnabled": str(enabled).lower()}
    async with csms, station(tmp_path, broker, points, csms=csms, boot=False) as s:
        await csms.wait_for("BootNotification")
        await s.oem.plug()
        assert await s.oem.present() == "accepted"  # offline rules: unknown ids allowed
        pending = len(csms.payloads("BootNotification"))
        csms.boot_status = "Accepted"
        await csms.wait_for("BootNotification", count=pending + 1, timeout=15)
        await csms.wait_events(2 if enabled else 1)
        await settle()
    if enabled:
        expected = [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
        ]
    else:
        expected = [  # both start points hold: the first of TxStartPoint's list names it
            Event(
                "Started",
                "Authorized",
                0,
                charging_state="EVConnected",
                id_token=TAG,
                meter=(BEGIN,),
            )
        ]
    check_events(csms.events(), expected)
    accepted = [r.at for r in csms.received if r.action == "BootNotification"][-1]
    assert all(r.at > accepted for r in csms.received if r.action == "TransactionEvent")
    assert csms.payloads("Authorize") == []  # B02.FR.02: nothing before the boot is accepted


# --- the points set by the CSMS; the OEM not answering stop_charging


async def test_tx_points_set_by_the_csms_apply_to_the_next_session(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        assert await s.csms.set_variables(
            {"TxCtrlr.TxStartPoint": "PowerPathClosed", "TxCtrlr.TxStopPoint": "EnergyTransfer"}
        ) == ["Accepted", "Accepted"]
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await settle()
        assert s.csms.events() == []  # not at the cable, not at the token
        await s.oem.charge()
        await s.csms.wait_events(1)
        await s.oem.suspend_ev()  # the EV stops drawing energy: EnergyTransfer falls
        await s.csms.wait_ended()
    check_events(
        s.csms.events(),
        [
            Event(
                "Started",
                "ChargingStateChanged",
                0,
                charging_state="Charging",
                id_token=TAG,
                meter=(BEGIN,),
            ),
            # TC_E_22: the energy transfer stopped by the EV: StoppedByEV.
            Event(
                "Ended",
                "ChargingStateChanged",
                1,
                charging_state="SuspendedEV",
                stopped_reason="StoppedByEV",
                meter=(END,),
            ),
        ],
    )


async def test_e07_the_stop_ends_the_transaction_though_the_oem_does_not_answer(
    tmp_path: Path, broker: Broker
) -> None:
    """SESSION_API: stop_charging unanswered within [oem] request_timeout, the transaction is
    still ended as OCPP says (here at once: TxStopPoint PowerPathClosed)."""
    points = {"TxCtrlr.TxStartPoint": "EVConnected", "TxCtrlr.TxStopPoint": "PowerPathClosed"}
    async with station(tmp_path, broker, points) as s:
        s.oem.silent.add("stop_charging")
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(4)
        assert await s.oem.present() == "accepted"
        (ended,) = await s.csms.wait_ended()
        await s.oem.wait_request("stop_charging")
        await settle(2.5)  # past the request timeout: nothing more
    assert shape(ended) == Event(
        "Ended", "StopAuthorized", 4, stopped_reason="Local", id_token=TAG, meter=(END,)
    )
    assert len(s.csms.events()) == 5


async def test_one_reader_for_two_evses_authorizes_the_waiting_ev_and_stops_its_transaction(
    tmp_path: Path, broker: Broker
) -> None:
    """An `authorization` without evse_id: the token is for the EVSE whose EV waits; presented
    again it stops the transaction it started, wherever that is (E07)."""
    points = {"TxCtrlr.TxStartPoint": "EVConnected"}
    async with station(tmp_path, broker, points, evses=2) as s:
        await s.oem.plug(evse=2)
        assert await s.oem.present(evse=None) == "accepted"
        await s.csms.wait_events(2)
        assert await s.oem.present(evse=None) == "accepted"
        await s.csms.wait_ended()
    events = s.csms.events()
    assert {e["evse"]["id"] for e in events} == {2}
    assert [(e["eventType"], e["triggerReason"]) for e in events] == [
        ("Started", "CablePluggedIn"),
        ("Updated", "Authorized"),
        ("Ended", "StopAuthorized"),
    ]
