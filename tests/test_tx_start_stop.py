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
    Data,
    Event,
    check_events,
    energies,
    id_token,
    settle,
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
async def test_e01_e06_start_and_stop_points(
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
