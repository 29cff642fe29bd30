"""Reservations (H01-H04): ReserveNow, CancelReservation, the Reserved status, expiry, removal and
use, first as a state machine with a fake clock (events in, queued messages and effects out),
then end to end through Mosquitto and a real WebSocket CSMS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.demo_csms import DemoCsms, Received
from bridge.rpc import CallError, CallResult
from bridge.rpc.request import Request
from bridge.station import Station
from bridge.station.availability import Availability
from bridge.station.connectivity import Target
from bridge.station.device_model import DeviceModel
from bridge.station.effects import Cancel, Effects, Schedule, Send
from bridge.station.message_queue import MessageQueue, Outgoing
from bridge.station.reservations import MAX_WAIT, STORED, Reservations
from bridge.store import Store
from bridge.timeutil import Clock, ocpp_timestamp
from tests.conftest import Broker, Oem, running_bridge, write_config

START = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
TOKEN = {"idToken": "RFID-0001", "type": "ISO14443"}
STRANGER = {"idToken": "RFID-0002", "type": "ISO14443"}
GROUP = {"idToken": "FLEET-7", "type": "Central"}


class Wall:
    """The station's clock, standing still until a test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def later(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Monotonic:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def expiry(wall: Wall, seconds: float = 3600) -> str:
    return ocpp_timestamp(wall.now + timedelta(seconds=seconds))


class Harness:
    """A station over a store file in tmp_path, a fake clock and a pretend CSMS connection."""

    def __init__(self, tmp_path: Path, evses: str = "[1, 1]", extra: str = "") -> None:
        self.settings = load_settings(
            write_config(
                tmp_path / "bridge.toml",
                None,
                evses=evses,
                csms='url = "ws://csms/ocpp"',
                extra=extra,
            )
        )
        self.wall = Wall()
        self.start()

    def start(self) -> None:
        """(Re)start the station over the same store."""
        self.store = Store(self.settings.storage.path)
        self.station = Station(self.settings, self.store, monotonic=Monotonic())
        self.station.clock.now = self.wall  # type: ignore[method-assign]
        self.station.started()
        self.started = self.station.take_effects()

    def restart(self) -> None:
        self.store.close()
        self.start()

    def connect(self) -> None:
        """Connect and have the boot accepted; what was sent on the way is `booted`."""
        target = self.station.connectivity.next_target()
        assert isinstance(target, Target)
        self.station.csms_connected(target)
        (boot,) = self.sent()
        assert boot.action == "BootNotification"
        self.answer(boot, {"status": "Accepted", "currentTime": ocpp_timestamp(), "interval": 300})
        self.booted = self.sent()
        for message in self.booted:
            if not message.durable:
                self.answer(message, {})
        self.station.take_effects()

    def sent(self) -> list[Outgoing]:
        """Take what the drain task would send now; a durable message is acknowledged at once
        (it stays at the head of the queue until it is)."""
        out = []
        while isinstance(message := self.station.queue.next(), Outgoing):
            out.append(message)
            if message.durable:
                self.answer(message, {})
        return out

    def answer(self, message: Outgoing, payload: dict[str, Any]) -> None:
        if self.station.queue.done(message, CallResult(payload)):
            self.station.answered(message, CallResult(payload))

    async def call(self, action: str, payload: dict[str, Any]) -> CallResult:
        """A CSMS CALL; its effects are carried out as the driver would, after the response."""
        result = await self.station.dispatcher.call(Request("csms", "ocpp2.0.1", action, payload))
        assert isinstance(result, CallResult), result
        self.effects = [*result.effects, *self.station.take_effects()]
        for effect in self.effects:
            if isinstance(effect, Send):
                self.station.send(effect)
        return result

    async def reserve(self, reservation_id: int = 1, **fields: Any) -> str:
        payload: dict[str, Any] = {
            "id": reservation_id,
            "expiryDateTime": expiry(self.wall),
            "idToken": TOKEN,
            **fields,
        }
        result = await self.call("ReserveNow", payload)
        return str(result.payload["status"])

    async def cancel(self, reservation_id: int) -> str:
        result = await self.call("CancelReservation", {"reservationId": reservation_id})
        return str(result.payload["status"])

    def status(self, evse: int, connector: int = 1) -> str:
        return self.station.availability.status((evse, connector))

    def statuses(self, messages: list[Outgoing]) -> list[tuple[int, str]]:
        return [
            (m.payload["evseId"], m.payload["connectorStatus"])
            for m in messages
            if m.action == "StatusNotification"
        ]

    def updates(self, messages: list[Outgoing]) -> list[dict[str, Any]]:
        return [m.payload for m in messages if m.action == "ReservationStatusUpdate"]

    # --- what the OEM reports

    def plug(self, evse: int, state: str = "B1") -> None:
        self.station.cp_status({"evse_id": str(evse), "connector_id": 1, "state": state})

    def condition(self, evse: int, code: str) -> None:
        self.station.status_and_limits({"evses": [{"evse_id": str(evse), "status_code": code}]})

    def inoperative(self, evse: int) -> None:
        self.station.change_availability_update(
            {"operational_status": "inoperative", "evse_id": str(evse)}
        )


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.connect()
    return harness


TYPES = (
    '[device_model]\n"Connector[1,1].ConnectorType" = "cType2"\n'
    '"Connector[2,1].ConnectorType" = "sType2"\n'
)


# --- H01 ReserveNow: a specific EVSE


async def test_h01_a_specific_evse_is_reserved_and_its_connectors_say_reserved(
    h: Harness,
) -> None:
    assert await h.reserve(1, evseId=1) == "Accepted"
    assert h.statuses(h.sent()) == [(1, "Reserved")]  # after the response (an effect)
    assert any(isinstance(e, Send) for e in h.effects)
    assert (h.status(1), h.status(2)) == ("Reserved", "Available")
    assert h.station.device_model.value("Connector[1,1].AvailabilityState") == "Reserved"
    assert Schedule("reservation:1", MAX_WAIT) in h.effects  # then the rest


async def test_h01_fr02_the_same_id_replaces_the_reservation(h: Harness) -> None:
    await h.reserve(7, evseId=1)
    h.sent()
    assert await h.reserve(7, evseId=2) == "Accepted"
    assert sorted(h.statuses(h.sent())) == [(1, "Available"), (2, "Reserved")]
    assert [r.evse for r in h.station.reservations.all()] == [2]
    assert h.updates(h.sent()) == []  # a replaced reservation is not Removed


async def test_h01_fr02_a_refused_replacement_keeps_the_reservation(h: Harness) -> None:
    await h.reserve(7, evseId=1)
    h.plug(2)
    assert await h.reserve(7, evseId=2) == "Occupied"
    assert [r.evse for r in h.station.reservations.all()] == [1]
    assert h.status(1) == "Reserved"


async def test_h01_fr11_a_reserved_evse_answers_occupied(h: Harness) -> None:
    await h.reserve(1, evseId=1)
    assert await h.reserve(2, evseId=1) == "Occupied"
    assert [r.id for r in h.station.reservations.all()] == [1]


async def test_h01_fr11_an_evse_with_an_ev_plugged_in_answers_occupied(h: Harness) -> None:
    h.plug(1)
    assert h.status(1) == "Occupied"
    assert await h.reserve(1, evseId=1) == "Occupied"
    assert h.station.reservations.all() == []


async def test_h01_fr11_an_evse_a_driver_authorized_at_answers_occupied(h: Harness) -> None:
    """No cable yet, so the connector is Available, but the EVSE is taken by a session."""
    h.station.authorization_update(
        {"evse_id": "1", "id_token": "RFID-0009", "token_type": "ISO14443", "status": "accepted"}
    )
    assert h.status(1) == "Available"
    assert await h.reserve(1, evseId=1) == "Occupied"


async def test_h01_fr12_a_faulted_evse_answers_faulted(h: Harness) -> None:
    h.condition(1, "evse_malfunction")
    assert await h.reserve(1, evseId=1) == "Faulted"


async def test_h01_an_unavailable_evse_answers_unavailable(h: Harness) -> None:
    h.inoperative(1)
    assert h.status(1) == "Unavailable"
    assert await h.reserve(1, evseId=1) == "Unavailable"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"evseId": 3}, "UnknownEvse"),
        ({"evseId": 0}, "UnknownEvse"),
        ({"evseId": 1, "connectorType": "cCCS2"}, "UnknownConnectorType"),
        ({"connectorType": "cCCS2"}, "UnknownConnectorType"),
        ({"evseId": 1, "expiryDateTime": "2026-12-03T09:59:59Z"}, "InvalidValue"),
        ({"evseId": 1, "expiryDateTime": "2026-12-03T10:00:00Z"}, "InvalidValue"),
    ],
)
async def test_h01_what_the_station_cannot_reserve_is_rejected(
    h: Harness, fields: dict[str, Any], reason: str
) -> None:
    payload = {"id": 1, "expiryDateTime": expiry(h.wall), "idToken": TOKEN, **fields}
    result = await h.call("ReserveNow", payload)
    assert result.payload["status"] == "Rejected"
    assert result.payload["statusInfo"]["reasonCode"] == reason
    assert h.station.reservations.all() == []
    assert h.sent() == []


async def test_h01_fr01_with_reservations_disabled_every_reservenow_is_rejected(
    h: Harness,
) -> None:
    result = await h.call(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "ReservationCtrlr"},
                    "variable": {"name": "Enabled"},
                    "attributeValue": "false",
                }
            ]
        },
    )
    assert result.payload["setVariableResult"][0]["attributeStatus"] == "Accepted"
    result = await h.call(
        "ReserveNow", {"id": 1, "expiryDateTime": expiry(h.wall), "idToken": TOKEN, "evseId": 1}
    )
    assert result.payload["status"] == "Rejected"
    assert result.payload["statusInfo"]["reasonCode"] == "NotEnabled"


async def test_h01_fr19_without_non_evse_specific_an_evse_must_be_named(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra='[device_model]\n"ReservationCtrlr.NonEvseSpecific" = false\n')
    h.connect()
    assert await h.reserve(1) == "Rejected"
    assert await h.reserve(1, evseId=1) == "Accepted"


async def test_reservation_ctrlr_variables_are_reported(h: Harness) -> None:
    dm = h.station.device_model
    assert dm.value("ReservationCtrlr.Available") == "true"
    assert dm.value("ReservationCtrlr.Enabled") == "true"
    assert dm.value("ReservationCtrlr.NonEvseSpecific") == "true"


# --- H01 ReserveNow: an unspecified EVSE, a connector type


async def test_h01_fr18_fr20_unspecified_reservations_reserve_the_evses_they_cannot_spare(
    h: Harness,
) -> None:
    assert await h.reserve(1) == "Accepted"
    assert (h.status(1), h.status(2)) == ("Available", "Available")  # one is to spare
    assert h.sent() == []
    assert await h.reserve(2, idToken=STRANGER) == "Accepted"
    # H01.FR.20: as many reservations as free EVSEs: every free EVSE is Reserved.
    assert sorted(h.statuses(h.sent())) == [(1, "Reserved"), (2, "Reserved")]
    assert await h.reserve(3) == "Occupied"
    assert await h.reserve(4, evseId=1) == "Occupied"  # the unspecified ones need it
    assert await h.cancel(2) == "Accepted"
    assert sorted(h.statuses(h.sent())) == [(1, "Available"), (2, "Available")]


async def test_h01_a_specific_reservation_leaves_the_last_free_evse_reserved(h: Harness) -> None:
    await h.reserve(1)
    assert await h.reserve(2, evseId=1, idToken=STRANGER) == "Accepted"
    assert (h.status(1), h.status(2)) == ("Reserved", "Reserved")


async def test_h01_an_ev_plugged_in_makes_the_last_free_evse_reserved(h: Harness) -> None:
    await h.reserve(1)
    h.sent()
    h.plug(2)
    assert h.statuses(h.sent()) == [(2, "Occupied"), (1, "Reserved")]
    h.plug(2, "A1")
    assert h.statuses(h.sent()) == [(2, "Available"), (1, "Available")]


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({1: "evse_malfunction", 2: "evse_malfunction"}, "Faulted"),
        ({1: "evse_malfunction", 2: "evse_shutdown"}, "Faulted"),
        ({1: "evse_shutdown", 2: "evse_not_ready"}, "Unavailable"),
        ({1: "evse_malfunction"}, "Accepted"),
    ],
)
async def test_h01_an_unspecified_reservation_answers_for_the_evses_it_could_have(
    h: Harness, faults: dict[int, str], expected: str
) -> None:
    for evse, code in faults.items():
        h.condition(evse, code)
    assert await h.reserve(1) == expected


async def test_h01_an_unspecified_reservation_with_every_evse_occupied_answers_occupied(
    h: Harness,
) -> None:
    h.plug(1)
    h.condition(2, "evse_malfunction")
    assert await h.reserve(1) == "Occupied"


async def test_h01_fr24_a_connector_type_reserves_the_evses_of_that_type(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra=TYPES)
    h.connect()
    assert await h.reserve(1, connectorType="sType2") == "Accepted"
    # Only EVSE 2 has an sType2 connector: it is Reserved, EVSE 1 is not.
    assert h.statuses(h.sent()) == [(2, "Reserved")]
    assert await h.reserve(2, connectorType="sType2") == "Occupied"
    assert await h.reserve(3, evseId=2, idToken=STRANGER) == "Occupied"
    assert await h.reserve(4, evseId=1, connectorType="cType2") == "Accepted"
    assert await h.reserve(5, evseId=1, connectorType="sType2") == "Rejected"
    assert await h.reserve(6, connectorType="Unknown") == "Occupied"  # any type: none left


async def test_h01_a_connector_of_unknown_type_matches_no_requested_type(h: Harness) -> None:
    assert h.station.device_model.value("Connector[1,1].ConnectorType") == "Unknown"
    assert await h.reserve(1, connectorType="cType2") == "Rejected"
    assert await h.reserve(1, connectorType="Unknown") == "Accepted"


# --- H02 CancelReservation


async def test_h02_fr02_cancel_ends_the_reservation_and_the_evse_is_available(
    h: Harness,
) -> None:
    await h.reserve(5, evseId=2)
    h.sent()
    assert await h.cancel(5) == "Accepted"
    sent = h.sent()
    assert h.statuses(sent) == [(2, "Available")]  # H02.FR.04
    assert h.updates(sent) == []  # the CSMS asked: no ReservationStatusUpdate
    assert Cancel("reservation:5") in h.effects
    assert h.store.station_value(STORED) == []


async def test_h02_fr01_an_unknown_reservation_is_rejected(h: Harness) -> None:
    await h.reserve(5, evseId=2)
    result = await h.call("CancelReservation", {"reservationId": 6})
    assert result.payload["status"] == "Rejected"
    assert result.payload["statusInfo"]["reasonCode"] == "UnknownReservation"
    assert [r.id for r in h.station.reservations.all()] == [5]


# --- H04 Reservation ended, not used


async def test_h04_fr01_at_its_expiry_the_reservation_ends_with_expired(h: Harness) -> None:
    await h.reserve(3, evseId=1)
    h.sent()
    h.wall.later(3600)
    h.station.timer("reservation:3")
    sent = h.sent()
    assert h.updates(sent) == [{"reservationId": 3, "reservationUpdateStatus": "Expired"}]
    assert h.statuses(sent) == [(1, "Available")]
    assert [m.action for m in sent] == ["ReservationStatusUpdate", "StatusNotification"]
    assert next(m for m in sent if m.action == "ReservationStatusUpdate").durable
    assert h.station.reservations.all() == []
    assert h.store.station_value(STORED) == []


async def test_h04_a_timer_that_fires_before_the_expiry_waits_on(h: Harness) -> None:
    """Far expiries are looked at every MAX_WAIT seconds (the CSMS may set the clock)."""
    h.station.take_effects()
    assert await h.reserve(3, evseId=1, expiryDateTime=expiry(h.wall, 2 * MAX_WAIT + 5)) == (
        "Accepted"
    )
    assert Schedule("reservation:3", MAX_WAIT) in h.effects
    h.sent()
    h.wall.later(MAX_WAIT)
    h.station.timer("reservation:3")
    assert h.station.take_effects() == [Schedule("reservation:3", MAX_WAIT)]
    h.wall.later(MAX_WAIT)
    h.station.timer("reservation:3")
    assert h.station.take_effects() == [Schedule("reservation:3", 5.0)]
    assert h.sent() == []
    assert h.status(1) == "Reserved"


async def test_a_timer_of_a_reservation_that_ended_does_nothing(h: Harness) -> None:
    await h.reserve(3, evseId=1)
    await h.cancel(3)
    h.sent()
    h.wall.later(7200)
    h.station.timer("reservation:3")
    assert h.sent() == []
    assert h.station.take_effects() == []


async def test_a_reserved_connector_is_reserved_again_after_a_restart(h: Harness) -> None:
    await h.reserve(1, evseId=2, groupIdToken=GROUP, expiryDateTime=expiry(h.wall, 800))
    h.wall.later(600)
    h.restart()
    assert h.status(2) == "Reserved"
    assert Schedule("reservation:1", 200.0) in h.started
    (reservation,) = h.station.reservations.all()
    assert (reservation.id, reservation.evse, reservation.group_id_token) == (1, 2, GROUP)
    h.connect()
    assert sorted(h.statuses(h.booted)) == [(1, "Available"), (2, "Reserved")]  # B01.FR.05


async def test_h04_a_reservation_that_expired_while_the_bridge_was_down_is_reported_at_start(
    h: Harness,
) -> None:
    await h.reserve(1, evseId=2)
    h.restart()  # while offline
    h.wall.later(4000)
    h.restart()
    assert h.station.reservations.all() == []
    assert h.status(2) == "Available"
    h.connect()
    assert h.updates(h.booted) == [{"reservationId": 1, "reservationUpdateStatus": "Expired"}]
    h.restart()
    h.connect()
    assert h.updates(h.booted) == []  # once


# --- H01.FR.16, H01.FR.17: removed when the EVSE goes out of order


async def test_h01_fr16_a_faulted_evse_loses_its_reservation(h: Harness) -> None:
    await h.reserve(1, evseId=1)
    h.sent()
    h.condition(1, "evse_malfunction")
    sent = h.sent()
    assert h.updates(sent) == [{"reservationId": 1, "reservationUpdateStatus": "Removed"}]
    assert h.statuses(sent) == [(1, "Faulted")]
    h.condition(1, "evse_ready")
    assert h.statuses(h.sent()) == [(1, "Available")]  # not Reserved again
    assert Cancel("reservation:1") in h.station.take_effects()


async def test_h01_fr16_a_faulted_connector_loses_the_reservation_of_its_evse(h: Harness) -> None:
    await h.reserve(1, evseId=2)
    h.sent()
    h.plug(2, "F")
    assert h.updates(h.sent()) == [{"reservationId": 1, "reservationUpdateStatus": "Removed"}]


async def test_h01_fr17_an_evse_taken_out_of_service_loses_its_reservation(h: Harness) -> None:
    await h.reserve(1, evseId=1)
    await h.reserve(2)
    h.sent()
    h.inoperative(1)
    assert h.updates(h.sent()) == [{"reservationId": 1, "reservationUpdateStatus": "Removed"}]
    assert [r.id for r in h.station.reservations.all()] == [2]


async def test_h01_fr17_unspecified_reservations_without_evses_left_are_removed_newest_first(
    h: Harness,
) -> None:
    await h.reserve(1)
    await h.reserve(2, idToken=STRANGER)
    h.sent()
    h.inoperative(1)
    assert h.updates(h.sent()) == [{"reservationId": 2, "reservationUpdateStatus": "Removed"}]
    assert h.status(2) == "Reserved"  # the one left needs EVSE 2
    h.plug(2)  # occupied is not out of order: the reservation stays
    assert [r.id for r in h.station.reservations.all()] == [1]


# --- H03 using a reservation: the functions the transactions block calls


async def test_h03_a_reserved_evse_takes_only_its_token_or_group(h: Harness) -> None:
    await h.reserve(4, evseId=1, groupIdToken=GROUP)
    block = h.station.reservations
    assert block.blocks(1, STRANGER, None)
    assert block.blocks(1, STRANGER, {"idToken": "OTHER", "type": "Central"})
    assert not block.blocks(1, TOKEN, None)
    assert not block.blocks(1, {"idToken": "rfid-0001", "type": "ISO14443"}, None)  # C01.FR.25
    assert block.blocks(1, {"idToken": "RFID-0001", "type": "KeyCode"}, None)
    assert not block.blocks(1, STRANGER, GROUP)
    assert not block.blocks(2, STRANGER, None)  # the other EVSE is free
    assert block.reservation_for(2, TOKEN, None) is None


async def test_h03_fr09_a_matching_token_consumes_the_reservation_once(h: Harness) -> None:
    await h.reserve(4, evseId=1)
    h.sent()
    block = h.station.reservations
    assert block.use(1, STRANGER, GROUP) is None
    assert block.use(1, TOKEN, None) == 4
    assert h.statuses(h.sent()) == [(1, "Available")]
    assert h.updates(h.sent()) == []  # used: the TransactionEvent tells the CSMS
    assert block.take_used(1) == 4  # H01.FR.15: the next TransactionEvent's reservationId
    assert block.take_used(1) is None
    assert block.all() == []
    assert h.store.station_value(STORED) == []
    assert Cancel("reservation:4") in h.station.take_effects()


async def test_h03_an_unspecified_reservation_is_used_on_any_evse_of_its_type(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, extra=TYPES)
    h.connect()
    await h.reserve(1, connectorType="cType2")
    block = h.station.reservations
    assert block.reservation_for(2, TOKEN, None) is None  # EVSE 2 has no cType2
    assert not block.blocks(2, STRANGER, None)
    assert block.blocks(1, STRANGER, None)  # the only cType2 EVSE
    assert block.use(1, TOKEN, None) == 1


async def test_h03_a_stranger_is_refused_where_the_unspecified_reservations_need_the_evse(
    h: Harness,
) -> None:
    await h.reserve(1)
    block = h.station.reservations
    assert not block.blocks(1, STRANGER, None)  # one EVSE is to spare
    h.plug(2)
    assert block.blocks(1, STRANGER, None)
    assert not block.blocks(1, TOKEN, None)
    assert not block.blocks(2, STRANGER, None)  # already taken: the reservation keeps EVSE 1
    assert block.use(2, TOKEN, None) == 1  # the holder may use it at either EVSE


# --- a property: random sequences of reserve, cancel, expire, use, plug, fault


class Env:
    """The reservations block over three single-connector EVSEs, with no transactions."""

    def __init__(self) -> None:
        self.wall = Wall()
        store = Store(":memory:")
        self.store = store
        self.dm = DeviceModel.build([1, 1, 1], store)
        self.clock = Clock()
        self.clock.now = self.wall  # type: ignore[method-assign]
        self.availability = Availability(self.dm, [1, 1, 1], self.clock, store)
        self.effects = Effects()
        self.block = Reservations(
            [1, 1, 1],
            self.dm,
            self.availability,
            MessageQueue(store, self.dm),
            self.clock,
            self.effects,
            store,
        )


Step = tuple[str, int, int]
steps = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve_any", "cancel", "later", "use", "plug", "cond"]),
        st.integers(0, 3),
        st.integers(1, 5),
    ),
    max_size=30,
)
TOKENS = [{"idToken": f"T{n}", "type": "ISO14443"} for n in range(6)]
CONDITIONS = ["Available", "Faulted", "Unavailable"]


def _apply(env: Env, step: Step) -> None:
    kind, evse, n = step
    block, availability = env.block, env.availability
    if kind in ("reserve", "reserve_any"):
        payload: dict[str, Any] = {
            "id": n,
            "expiryDateTime": expiry(env.wall, 60 * n),
            "idToken": TOKENS[n],
        }
        if kind == "reserve" and evse:
            payload["evseId"] = evse
        block.reserve_now(Request("csms", "ocpp2.0.1", "ReserveNow", payload))
    elif kind == "cancel":
        block.cancel_reservation(
            Request("csms", "ocpp2.0.1", "CancelReservation", {"reservationId": n})
        )
    elif kind == "later":
        env.wall.later(60 * n)
        for reservation in block.all():
            block.timer(f"reservation:{reservation.id}")
    elif kind == "use" and evse:
        if not block.blocks(evse, TOKENS[n], None):
            block.use(evse, TOKENS[n], None)
    elif kind == "plug" and evse:
        availability.set_occupied((evse, 1), n % 2 == 1, False)
        block.availability_changed()
    elif kind == "cond" and evse:
        availability.set_evse(evse, CONDITIONS[n % 3])
        block.availability_changed()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_reservations_hold_one_evse_each_and_reserved_means_held_and_otherwise_available(
    sequence: list[Step],
) -> None:
    env = Env()
    for step in sequence:
        _apply(env, step)
        block, availability = env.block, env.availability
        reservations = block.all()
        specific = [r.evse for r in reservations if r.evse is not None]
        assert len(specific) == len(set(specific))  # at most one reservation per EVSE
        assert all(r.expiry > env.wall.now for r in reservations)

        def base(evse: int, availability: Availability = availability) -> str:
            status = availability.status((evse, 1))
            return "Available" if status == "Reserved" else status

        # Never a reservation on an EVSE out of order, never more unspecified ones than usable
        # EVSEs.
        assert all(base(e) in ("Available", "Occupied") for e in specific)
        usable = [e for e in (1, 2, 3) if e not in specific and base(e) != "Faulted"
                  and base(e) != "Unavailable"]  # fmt: skip
        unspecified = [r for r in reservations if r.evse is None]
        assert len(unspecified) <= len(usable)
        # The oracle: a reservation holds its EVSE; unspecified ones hold every free EVSE
        # when there are not more free EVSEs than they need.
        free = [e for e in (1, 2, 3) if e not in specific and base(e) == "Available"]
        held = set(specific) | (
            set(free) if unspecified and len(unspecified) >= len(free) else set()
        )
        for evse in (1, 2, 3):
            reserved = availability.status((evse, 1)) == "Reserved"
            assert reserved == (evse in held and base(evse) == "Available"), (evse, step)
        stored = env.store.station_value(STORED) or []
        assert [p["id"] for p in stored] == [r.id for r in reservations]


# --- end to end: Mosquitto, the bridge, a WebSocket CSMS

FAST = (
    "[device_model]\n"
    '"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1\n'
    '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
    '"OCPPCommCtrlr.RetryBackOffRepeatTimes" = 0\n'
)


@asynccontextmanager
async def bridge_with(tmp_path: Path, broker: Broker, url: str) -> AsyncIterator[Bridge]:
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        evses="[1, 1]",
        csms=f'url = "{url}"',
        oem="startup_timeout = 0\nrequest_timeout = 1",
        extra=FAST,
    )
    async with running_bridge(config) as bridge:
        for _ in range(500):
            if bridge.station.registration.accepted and bridge.station.queue.connected:
                break
            await asyncio.sleep(0.01)
        assert bridge.station.registration.accepted, "the boot was not accepted"
        yield bridge


def status_of(evse: int, status: str) -> Any:
    def match(r: Received) -> bool:
        return r.payload["evseId"] == evse and r.payload["connectorStatus"] == status

    return match


def in_an_hour() -> str:
    return ocpp_timestamp(datetime.now(UTC) + timedelta(hours=1))


async def test_h01_reserve_now_from_the_csms_makes_the_evse_reserved(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url):
        answer = await csms.call(
            "CP001",
            "ReserveNow",
            {"id": 11, "expiryDateTime": in_an_hour(), "idToken": TOKEN, "evseId": 1},
        )
        assert answer == {"status": "Accepted"}
        await csms.wait_for("StatusNotification", predicate=status_of(1, "Reserved"))
        # The same through the OEM's ocpp_message: one dispatcher.
        data = await oem.ocpp(
            "ReserveNow", {"id": 12, "expiryDateTime": in_an_hour(), "idToken": TOKEN, "evseId": 1}
        )
        assert data["payload"] == {"status": "Occupied"}
        assert csms.schema_errors == []


async def test_h02_cancel_reservation_makes_the_evse_available_again(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url):
        payload = {"id": 21, "expiryDateTime": in_an_hour(), "idToken": TOKEN, "evseId": 2}
        assert await csms.call("CP001", "ReserveNow", payload) == {"status": "Accepted"}
        await csms.wait_for("StatusNotification", predicate=status_of(2, "Reserved"))
        assert await csms.call("CP001", "CancelReservation", {"reservationId": 21}) == {
            "status": "Accepted"
        }
        await csms.wait_for("StatusNotification", predicate=status_of(2, "Available"), count=2)
        assert await csms.call("CP001", "CancelReservation", {"reservationId": 21}) == {
            "status": "Rejected",
            "statusInfo": {
                "reasonCode": "UnknownReservation",
                "additionalInfo": "no reservation has this id",
            },
        }
        assert not [r for r in csms.received if r.action == "ReservationStatusUpdate"]
        assert csms.schema_errors == []


async def test_h04_at_its_expiry_the_csms_hears_expired_and_the_evse_is_available(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url):
        soon = ocpp_timestamp(datetime.now(UTC) + timedelta(seconds=4))
        payload = {"id": 31, "expiryDateTime": soon, "idToken": TOKEN, "evseId": 1}
        assert await csms.call("CP001", "ReserveNow", payload) == {"status": "Accepted"}
        await csms.wait_for("StatusNotification", predicate=status_of(1, "Reserved"))
        (update,) = await csms.wait_for("ReservationStatusUpdate")
        assert update.payload == {"reservationId": 31, "reservationUpdateStatus": "Expired"}
        # Available again: once at boot, once after the expiry.
        await csms.wait_for("StatusNotification", predicate=status_of(1, "Available"), count=2)
        assert csms.schema_errors == []


def _oem_update(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data}


@pytest.mark.parametrize(
    ("name", "data", "status", "answer"),
    [
        ("cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"}, "Occupied", "Occupied"),
        (
            "cs_status_and_limits",
            {"evses": [{"evse_id": "1", "status_code": "evse_malfunction"}]},
            "Faulted",
            "Faulted",
        ),
        (
            "change_availability",
            {"operational_status": "inoperative", "evse_id": "1"},
            "Unavailable",
            "Unavailable",
        ),
    ],
)
async def test_h01_a_reserve_now_for_an_evse_in_use_or_out_of_order_says_why(
    tmp_path: Path,
    broker: Broker,
    oem: Oem,
    name: str,
    data: dict[str, Any],
    status: str,
    answer: str,
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url):
        await oem.send(_oem_update(name, data))
        await csms.wait_for("StatusNotification", predicate=status_of(1, status))
        payload = {"id": 41, "expiryDateTime": in_an_hour(), "idToken": TOKEN, "evseId": 1}
        assert await csms.call("CP001", "ReserveNow", payload) == {"status": answer}
        assert csms.schema_errors == []


async def test_h01_fr16_a_reserved_evse_that_faults_is_reported_removed(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url):
        payload = {"id": 51, "expiryDateTime": in_an_hour(), "idToken": TOKEN, "evseId": 2}
        assert await csms.call("CP001", "ReserveNow", payload) == {"status": "Accepted"}
        await csms.wait_for("StatusNotification", predicate=status_of(2, "Reserved"))
        await oem.send(
            _oem_update(
                "cs_status_and_limits",
                {"evses": [{"evse_id": "2", "status_code": "evse_malfunction"}]},
            )
        )
        (update,) = await csms.wait_for("ReservationStatusUpdate")
        assert update.payload == {"reservationId": 51, "reservationUpdateStatus": "Removed"}
        assert csms.schema_errors == []


async def test_h03_only_the_reserved_token_charges_and_its_transaction_names_the_reservation(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url):
        payload = {"id": 61, "expiryDateTime": in_an_hour(), "idToken": TOKEN, "evseId": 1}
        assert await csms.call("CP001", "ReserveNow", payload) == {"status": "Accepted"}
        await csms.wait_for("StatusNotification", predicate=status_of(1, "Reserved"))

        async def authorize(token: dict[str, Any]) -> str:
            data = {"evse_id": "1", "id_token": token["idToken"], "token_type": "ISO14443"}
            answer = await oem.request(
                {"id": str(uuid.uuid4()), "name": "authorization", "type": "request", "data": data}
            )
            return str(answer["data"]["status"])

        assert await authorize(STRANGER) == "rejected"
        assert await authorize(TOKEN) == "accepted"
        (started,) = await csms.wait_for(
            "TransactionEvent", predicate=lambda r: r.payload["eventType"] == "Started"
        )
        assert started.payload["reservationId"] == 61  # H01.FR.15
        assert started.payload["idToken"]["idToken"] == TOKEN["idToken"]
        await csms.wait_for("StatusNotification", predicate=status_of(1, "Available"), count=2)
        assert not [r for r in csms.received if r.action == "ReservationStatusUpdate"]
        assert csms.schema_errors == []


async def test_an_expiry_with_an_offset_is_compared_in_utc(h: Harness) -> None:
    result = await h.station.dispatcher.call(
        Request(
            "csms",
            "ocpp2.0.1",
            "ReserveNow",
            {"id": -3, "expiryDateTime": "2026-12-03T11:00:00+01:00", "idToken": TOKEN},
        )
    )
    assert not isinstance(result, CallError)
    assert result.payload["status"] == "Rejected"  # 10:00 UTC: now, so already passed
    result = await h.station.dispatcher.call(
        Request(
            "csms",
            "ocpp2.0.1",
            "ReserveNow",
            {"id": -3, "expiryDateTime": "2026-12-03T11:00:01+01:00", "idToken": TOKEN},
        )
    )
    assert isinstance(result, CallResult)
    assert result.payload == {"status": "Accepted"}
