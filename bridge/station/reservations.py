"""Reservation functional block (H): ReserveNow (H01), CancelReservation (H02), using a
reservation (H03) and its end when it is not used (H04).

A reservation holds a specific EVSE (`evseId`) or, without `evseId`, any EVSE (of its
`connectorType`, when given): the station then keeps, at every moment of its validity, an EVSE
free for each unspecified reservation. "Free" is an EVSE no session holds, with no connector
Occupied and no reservation of its own, that has an Available connector of the type asked for;
whether the unspecified reservations still fit is a bipartite matching of reservations to free
EVSEs (a reservation for cType2 cannot use an EVSE that only has sType2).

Connector status: every connector of a specifically reserved EVSE is Reserved; when the free
EVSEs are just enough for the unspecified reservations, each EVSE they cannot spare is Reserved
too (H01.FR.20, H01.FR.24). Availability (bridge.station.availability) ranks Reserved below
Faulted, Unavailable and Occupied.

Plain Python: no I/O. Timers come out as Schedule/Cancel effects named `reservation:<id>`;
ReservationStatusUpdate goes into the durable queue in the same store transaction that ends the
reservation, so the CSMS hears of an expiry once, even across a restart; the reservations live
in the store (`station_value` "reservations") and a reserved connector is Reserved again after
a restart.

The transactions block consults it (`blocks`, `use`, `take_used`) when a token is presented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from bridge.rpc import CallResult
from bridge.rpc.request import Request
from bridge.station.availability import Availability, ConnectorId
from bridge.station.device_model import DeviceModel, Rejection
from bridge.station.effects import Cancel, Effect, Effects, Schedule, Send
from bridge.station.message_queue import MessageQueue
from bridge.store import Store
from bridge.timeutil import Clock, parse_timestamp

if TYPE_CHECKING:
    from bridge.station.provisioning.boot import Registration

log = logging.getLogger(__name__)

STORED: Final = "reservations"  # station_value: the ReserveNow payloads in force, oldest first
TIMER: Final = "reservation:"  # timer names: "reservation:<id>"
ORIGIN: Final = "reservation"  # origin of ReservationStatusUpdate
ENABLED: Final = "ReservationCtrlr.Enabled"
NON_EVSE_SPECIFIC: Final = "ReservationCtrlr.NonEvseSpecific"
# A timer looks at the clock at least this often: the CSMS may set the station's clock
# (B01.FR.06) after the timer was scheduled.
MAX_WAIT: Final = 900.0
UNKNOWN_TYPE: Final = "Unknown"  # a connectorType that any connector matches
OUT_OF_ORDER: Final = frozenset({"Faulted", "Unavailable"})


def same_token(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """C01.FR.25: equal idToken (case insensitive, as IdTokenType says) and equal type."""
    same_id = str(a.get("idToken", "")).casefold() == str(b.get("idToken", "")).casefold()
    return same_id and a.get("type") == b.get("type")


@dataclass(frozen=True, slots=True)
class Reservation:
    """One ReserveNow in force, kept as its payload (what the store holds)."""

    id: int
    expiry: datetime
    id_token: dict[str, Any]
    group_id_token: dict[str, Any] | None = None
    evse: int | None = None
    connector_type: str | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Reservation | None:
        """From a ReserveNowRequest payload (schema-valid); None when expiryDateTime is not a
        date-time this station can read."""
        expiry = parse_timestamp(str(payload.get("expiryDateTime", "")))
        if expiry is None:
            return None
        return cls(
            payload["id"],
            expiry,
            payload["idToken"],
            payload.get("groupIdToken"),
            payload.get("evseId"),
            payload.get("connectorType"),
        )

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.id,
            "expiryDateTime": self.expiry.isoformat(),
            "idToken": self.id_token,
        }
        for key, value in (
            ("groupIdToken", self.group_id_token),
            ("evseId", self.evse),
            ("connectorType", self.connector_type),
        ):
            if value is not None:
                payload[key] = value
        return payload

    def matches(self, id_token: dict[str, Any], group: dict[str, Any] | None) -> bool:
        """H03: the reserved idToken, or a token of the reservation's groupIdToken."""
        if same_token(self.id_token, id_token):
            return True
        return (
            self.group_id_token is not None
            and group is not None
            and same_token(self.group_id_token, group)
        )


class Reservations:
    def __init__(
        self,
        evses: list[int],
        device_model: DeviceModel,
        availability: Availability,
        queue: MessageQueue,
        clock: Clock,
        effects: Effects,
        store: Store,
        registration: Registration | None = None,
    ) -> None:
        self.device_model = device_model
        self.availability = availability
        self.queue = queue
        self.clock = clock
        self.effects = effects
        self.store = store
        self.registration = registration
        self.evses = list(range(1, len(evses) + 1))
        # Set by the station: does a session hold this EVSE (a token, a transaction)?
        self.in_use: Callable[[int], bool] = lambda evse: False
        self._connectors: dict[int, list[ConnectorId]] = {
            evse: [c for c in availability.connectors if c[0] == evse] for evse in self.evses
        }
        self._by_id: dict[int, Reservation] = {}  # insertion order: oldest first
        self._used: dict[int, int] = {}  # EVSE -> the reservation consumed there (H01.FR.15)
        for payload in store.station_value(STORED) or []:
            reservation = Reservation.from_payload(payload) if isinstance(payload, dict) else None
            if reservation is None or (
                reservation.evse is not None and reservation.evse not in self._connectors
            ):
                log.error(
                    "dropped stored reservation %s: this station cannot hold it",
                    payload.get("id") if isinstance(payload, dict) else "?",
                )
                continue
            self._by_id[reservation.id] = reservation
        self._refresh()

    # --- reading

    def all(self) -> list[Reservation]:
        """The reservations in force, oldest first."""
        return list(self._by_id.values())

    def get(self, reservation_id: int) -> Reservation | None:
        return self._by_id.get(reservation_id)

    def on_evse(self, evse: int) -> Reservation | None:
        """The reservation of this very EVSE (made with its evseId)."""
        return next((r for r in self._by_id.values() if r.evse == evse), None)

    def held(self) -> set[ConnectorId]:
        """The connectors a reservation holds (their status is Reserved unless worse)."""
        held: set[ConnectorId] = set()
        for reservation in self._by_id.values():
            if reservation.evse is not None:  # every connector of the EVSE
                held.update(self._connectors[reservation.evse])
        unspecified = self._unspecified()
        if unspecified:
            free = self._free()
            for evse in free:
                # H01.FR.20, H01.FR.24: an EVSE the unspecified reservations cannot spare.
                if not self._fits(unspecified, free - {evse}):
                    held.update(self._connectors[evse])
        return held

    # --- the CSMS's requests

    def reserve_now(self, request: Request) -> CallResult:
        """ReserveNow (H01): Accepted, or why not (Occupied, Faulted, Unavailable, Rejected)."""
        payload = request.payload
        reservation = Reservation.from_payload(payload)
        if reservation is None:
            answer = Rejection("InvalidValue", "expiryDateTime is not a date-time").answer(
                "Rejected"
            )
            return CallResult(answer)
        answer = self._decide(reservation)
        if answer["status"] != "Accepted":
            log.info("ReserveNow %d: %s", reservation.id, answer["status"])
            return CallResult(answer)
        # H01.FR.02: a reservation with the id of one in force replaces it.
        replaced = self._by_id.pop(reservation.id, None)
        self._by_id[reservation.id] = reservation
        self._save()
        log.info(
            "reservation %d accepted%s until %s%s",
            reservation.id,
            "" if reservation.evse is None else f" on EVSE {reservation.evse}",
            reservation.expiry.isoformat(),
            " (it replaces the one of that id)" if replaced is not None else "",
        )
        self._schedule(reservation)
        return CallResult(answer, self._status_sends(self._refresh()))

    def cancel_reservation(self, request: Request) -> CallResult:
        """CancelReservation (H02): Accepted for a reservation in force, else Rejected."""
        reservation_id = request.payload["reservationId"]
        reservation = self._by_id.get(reservation_id)
        if reservation is None:  # H02.FR.01
            return CallResult(
                Rejection("UnknownReservation", "no reservation has this id").answer("Rejected")
            )
        # H02.FR.02: cancelled; H02.FR.04: its connectors are Available again. A cancelled
        # reservation gets no ReservationStatusUpdate: the CSMS asked for its end.
        self._forget(reservation)
        self._save()
        log.info("reservation %d cancelled", reservation_id)
        return CallResult({"status": "Accepted"}, self._status_sends(self._refresh()))

    def _decide(self, reservation: Reservation) -> dict[str, Any]:
        """The ReserveNowResponse for a new reservation (one of the same id being replaced)."""
        if not self.device_model.bool_value(ENABLED):  # H01.FR.01
            return Rejection("NotEnabled", "reservations are disabled").answer("Rejected")
        if reservation.expiry <= self.clock.now():
            return Rejection("InvalidValue", "expiryDateTime has passed").answer("Rejected")
        others = [r for r in self._by_id.values() if r.id != reservation.id]
        wanted = reservation.connector_type
        evse = reservation.evse
        if evse is None:
            if not self.device_model.bool_value(NON_EVSE_SPECIFIC):  # H01.FR.19
                return Rejection(
                    "MissingParam", "this station reserves specific EVSEs only: evseId is needed"
                ).answer("Rejected")
            candidates = [e for e in self.evses if self._has_type(e, wanted)]
        elif evse not in self._connectors:
            return Rejection("UnknownEvse", f"this station has no EVSE {evse}").answer("Rejected")
        else:
            candidates = [evse] if self._has_type(evse, wanted) else []
        if not candidates:
            return Rejection(
                "UnknownConnectorType", f"no connector of type {wanted} to reserve"
            ).answer("Rejected")
        unspecified = [r for r in others if r.evse is None]
        free = self._free(others)
        if evse is not None:
            state = self._state(evse, wanted, others)
            if state != "Available":
                return {"status": state}
            if not self._fits(unspecified, free - {evse}):
                return {"status": "Occupied"}  # the unspecified reservations need it
            return {"status": "Accepted"}
        if self._fits([*unspecified, reservation], free):  # H01.FR.18
            return {"status": "Accepted"}
        states = {self._state(e, wanted, others) for e in candidates}
        if states & {"Available", "Occupied"}:
            return {"status": "Occupied"}
        return {"status": "Faulted" if "Faulted" in states else "Unavailable"}

    def _state(self, evse: int, wanted: str | None, others: list[Reservation]) -> str:
        """What this EVSE is for a new reservation of `wanted` type: Available, or the
        ReserveNowStatus that says why not."""
        if any(r.evse == evse for r in others):
            return "Occupied"  # H01.FR.11: a reserved EVSE counts as occupied
        if self.in_use(evse) or any(self._base(c) == "Occupied" for c in self._connectors[evse]):
            return "Occupied"  # H01.FR.11
        states = {self._base(c) for c in self._connectors[evse] if self._type_fits(c, wanted)}
        if "Available" in states:
            return "Available"
        return "Faulted" if "Faulted" in states else "Unavailable"  # H01.FR.12

    # --- H03: a token at an EVSE (called by the transactions block)

    def blocks(self, evse: int, id_token: dict[str, Any], group: dict[str, Any] | None) -> bool:
        """Must this token be refused on this EVSE? A reserved EVSE takes only its reservation's
        idToken or groupIdToken; an EVSE the unspecified reservations cannot spare likewise."""
        own = self.on_evse(evse)
        if own is not None:
            return not own.matches(id_token, group)
        if self._unspecified_for(evse, id_token, group) is not None:
            return False
        unspecified = self._unspecified()
        return bool(unspecified) and not self._fits(unspecified, self._free() - {evse})

    def reservation_for(
        self, evse: int, id_token: dict[str, Any], group: dict[str, Any] | None
    ) -> Reservation | None:
        """The reservation this token would use on this EVSE: the EVSE's own, else one of its
        unspecified reservations that this EVSE's connectors suit."""
        own = self.on_evse(evse)
        if own is not None:
            return own if own.matches(id_token, group) else None
        return self._unspecified_for(evse, id_token, group)

    def use(self, evse: int, id_token: dict[str, Any], group: dict[str, Any] | None) -> int | None:
        """The token was authorized on this EVSE: the reservation it matches is consumed
        (H03.FR.09), its connectors are Available again (Occupied once the EV plugs in), and
        its id waits for the EVSE's next TransactionEvent (`take_used`). The reservation's id,
        or None when the token has none here."""
        reservation = self.reservation_for(evse, id_token, group)
        if reservation is None:
            return None
        self._forget(reservation)
        self._save()
        self._used[evse] = reservation.id
        log.info("EVSE %d: reservation %d used", evse, reservation.id)
        self._send_statuses(self._refresh())
        return reservation.id

    def take_used(self, evse: int) -> int | None:
        """The reservation consumed on this EVSE since its last TransactionEvent, once: the
        event's `reservationId` (H01.FR.15). Also to drop it when the authorization lapses."""
        return self._used.pop(evse, None)

    # --- H01.FR.16, H01.FR.17: an EVSE out of order

    def availability_changed(self) -> None:
        """Call after a connector or EVSE status changed (cp_status, cs_status_and_limits,
        ChangeAvailability, change_availability): a reservation whose EVSE is now Faulted or
        Unavailable, or an unspecified one that no usable EVSE is left for, is removed
        (ReservationStatusUpdate Removed); the Reserved statuses follow the new state."""
        gone = []
        for reservation in list(self._by_id.values()):
            evse = reservation.evse
            if evse is None:
                continue
            states = {
                self._base(c)
                for c in self._connectors[evse]
                if self._type_fits(c, reservation.connector_type)
            }
            if states <= OUT_OF_ORDER:
                gone.append(reservation)
                self._forget(reservation)
        unspecified = self._unspecified()
        while unspecified and not self._fits(unspecified, self._usable(), OUT_OF_ORDER):
            newest = unspecified.pop()  # the latest promise is the one broken
            gone.append(newest)
            self._forget(newest)
        for reservation in gone:
            log.info("reservation %d removed: its EVSE is out of order", reservation.id)
        self._end(gone, "Removed")
        self._send_statuses(self._refresh())

    # --- H04: expiry

    def started(self) -> None:
        """The bridge runs: end what expired while it was down, schedule the rest."""
        self._expire()
        for reservation in self._by_id.values():
            self._schedule(reservation)

    def timer(self, name: str) -> bool:
        """A `reservation:<id>` timer: end the reservation if it expired (else wait on); False
        for a timer of another block."""
        if not name.startswith(TIMER):
            return False
        try:
            reservation = self._by_id.get(int(name.removeprefix(TIMER)))
        except ValueError:
            return True
        if reservation is None:
            return True
        if reservation.expiry <= self.clock.now():
            self._expire()
        else:
            self._schedule(reservation)  # not yet (the clock moved, or MAX_WAIT passed)
        return True

    def _expire(self) -> list[Reservation]:
        """End every reservation whose expiryDateTime has come; those ended."""
        now = self.clock.now()
        expired = [r for r in self._by_id.values() if r.expiry <= now]
        for reservation in expired:
            log.info("reservation %d expired", reservation.id)
            self._forget(reservation)
        self._end(expired, "Expired")  # H04.FR.01
        if expired:
            self._send_statuses(self._refresh())
        return expired

    def _schedule(self, reservation: Reservation) -> None:
        wait = (reservation.expiry - self.clock.now()).total_seconds()
        self.effects.add(Schedule(f"{TIMER}{reservation.id}", min(max(wait, 0.0), MAX_WAIT)))

    # --- keeping state

    def _forget(self, reservation: Reservation) -> None:
        del self._by_id[reservation.id]
        self.effects.add(Cancel(f"{TIMER}{reservation.id}"))

    def _end(self, ended: list[Reservation], status: str) -> None:
        """Store what remains and queue ReservationStatusUpdate for each ended reservation, in
        one store transaction (durable: the CSMS hears it once, after any outage)."""
        if not ended:
            return
        with self.store.transaction():
            self._save()
            for reservation in ended:
                self.queue.put(
                    "ReservationStatusUpdate",
                    {"reservationId": reservation.id, "reservationUpdateStatus": status},
                    ORIGIN,
                    durable=True,
                )

    def _save(self) -> None:
        self.store.save_station_value(STORED, [r.to_payload() for r in self._by_id.values()])

    def _refresh(self) -> list[ConnectorId]:
        """Availability learns the held connectors; the connectors whose status changed."""
        self.availability.reserved = self.held()
        return self.availability.refresh()

    def _status_sends(self, changed: list[ConnectorId]) -> tuple[Effect, ...]:
        """StatusNotification of the changed connectors, after a response (as effects)."""
        if not (changed and self.queue.connected and self.queue.accepted):
            return ()  # B04: the next connection reports what changed
        return tuple(
            Send(
                "StatusNotification",
                self.availability.status_notification(c),
                "status",
                triggered=False,
            )
            for c in changed
        )

    def _send_statuses(self, changed: list[ConnectorId]) -> None:
        registration = self.registration
        if changed and registration is not None and registration.accepted and self.queue.connected:
            registration.send_statuses(changed)

    # --- the rules

    def _unspecified(self) -> list[Reservation]:
        return [r for r in self._by_id.values() if r.evse is None]

    def _unspecified_for(
        self, evse: int, id_token: dict[str, Any], group: dict[str, Any] | None
    ) -> Reservation | None:
        for reservation in self._unspecified():
            if reservation.matches(id_token, group) and self._has_type(
                evse, reservation.connector_type
            ):
                return reservation
        return None

    def _base(self, connector: ConnectorId) -> str:
        """The connector's status without the reservations."""
        status = self.availability.status(connector)
        return "Available" if status == "Reserved" else status

    def _type_fits(self, connector: ConnectorId, wanted: str | None) -> bool:
        if wanted is None or wanted == UNKNOWN_TYPE:
            return True
        evse, number = connector
        return self.device_model.value(f"Connector[{evse},{number}].ConnectorType") == wanted

    def _has_type(self, evse: int, wanted: str | None) -> bool:
        return any(self._type_fits(c, wanted) for c in self._connectors[evse])

    def _free(self, reservations: Iterable[Reservation] | None = None) -> set[int]:
        """EVSEs a driver without a reservation could take now: no session, nothing plugged
        in, no reservation of their own, an Available connector."""
        mine = {r.evse for r in (self._by_id.values() if reservations is None else reservations)}
        return {
            evse
            for evse in self.evses
            if evse not in mine
            and not self.in_use(evse)
            and all(self._base(c) != "Occupied" for c in self._connectors[evse])
            and any(self._base(c) == "Available" for c in self._connectors[evse])
        }

    def _usable(self) -> set[int]:
        """EVSEs not reserved of their own that are not wholly out of order."""
        mine = {r.evse for r in self._by_id.values()}
        return {
            evse
            for evse in self.evses
            if evse not in mine
            and any(self._base(c) not in OUT_OF_ORDER for c in self._connectors[evse])
        }

    def _fits(
        self,
        reservations: list[Reservation],
        evses: set[int],
        refused: frozenset[str] = frozenset({"Occupied", "Faulted", "Unavailable"}),
    ) -> bool:
        """Can each reservation have an EVSE of its own among `evses`, one with a connector of
        its type whose status is not `refused`? (Kuhn's augmenting paths.)"""
        if len(reservations) > len(evses):
            return False

        def suits(reservation: Reservation, evse: int) -> bool:
            return any(
                self._base(c) not in refused and self._type_fits(c, reservation.connector_type)
                for c in self._connectors[evse]
            )

        options = [[e for e in sorted(evses) if suits(r, e)] for r in reservations]
        holder: dict[int, int] = {}  # EVSE -> index of the reservation it is given to

        def place(index: int, seen: set[int]) -> bool:
            for evse in options[index]:
                if evse in seen:
                    continue
                seen.add(evse)
                if evse not in holder or place(holder[evse], seen):
                    holder[evse] = index
                    return True
            return False

        return all(place(index, set()) for index in range(len(reservations)))
