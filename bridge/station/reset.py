"""Reset (B11, B12) and ChangeAvailability (G03, G04) from the CSMS: handed to the OEM's
firmware, whose answer (or silence) decides the OCPP status.

- Reset of the station or an EVSE: without transactions there, the OEM is asked `reset` at
  once: `accepted` → Accepted, anything else (rejected, late, garbled) → Rejected. With
  transactions, OnIdle is Scheduled (B12.FR.01): the OEM is asked once they have ended;
  Immediate ends them first (triggerReason ResetCommand, stoppedReason ImmediateReset, B12.FR.04).
  Before a station reset is answered the next BootNotification's reason (RemoteReset) is in the
  store; the OEM's reset restarts the board, and the bridge with it.
- ChangeAvailability: unchanged → Accepted at once; a transaction on an EVSE going Inoperative →
  Scheduled, applied (and the OEM asked) when it ends (G03.FR.04? see G04); else the OEM is asked
  `change_availability`: `accepted` → the new state is applied, persisted (G03.FR.05) and
  reported (StatusNotification), Accepted; anything else → Rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from bridge.oem.link import OemAnswer, OemReply
from bridge.rpc.request import Request
from bridge.station.availability import Availability, ConnectorId
from bridge.station.device_model import Rejection
from bridge.station.effects import AskOem, Effects
from bridge.station.provisioning.boot import Registration
from bridge.station.transactions import Transactions
from bridge.store import Store

log = logging.getLogger(__name__)

BOOT_REASON: Final = "boot_reason"  # station_value: the reason of the next BootNotification
SCHEDULED: Final = "scheduled_availability"  # station_value: ChangeAvailability waiting
RESET_KEY: Final = "reset:"  # OEM request keys of scheduled resets
AVAILABILITY_KEY: Final = "availability:"

AskOemNow = Callable[[str, dict[str, Any], float | None], Awaitable[OemReply]]


class Resets:
    def __init__(
        self,
        transactions: Transactions,
        availability: Availability,
        registration: Registration,
        store: Store,
        effects: Effects,
        ask_oem: Callable[[], AskOemNow | None],
    ) -> None:
        self.transactions = transactions
        self.availability = availability
        self.registration = registration
        self.store = store
        self.effects = effects
        self._ask_oem = ask_oem
        self._scheduled_reset: int | str | None = None  # "station", an EVSE, or None
        saved = store.station_value(SCHEDULED)
        self._scheduled_availability: list[dict[str, Any]] = list(saved or [])
        transactions.on_ended.append(self._transaction_ended)
        # Told when the OEM accepted a reset of the station (A04: ResetOrReboot, in the store
        # before the answer).
        self.on_station_reset: Callable[[str], None] = lambda how: None

    # --- Reset

    async def reset(self, request: Request) -> dict[str, Any]:
        payload = request.payload
        evse: int | None = payload.get("evseId")
        if evse is not None and evse not in self.transactions.sessions:
            return Rejection("UnknownEvse", f"this station has no EVSE {evse}").answer("Rejected")
        busy = self._busy(evse)
        if busy and payload["type"] == "OnIdle":  # B12.FR.01
            self._scheduled_reset = "station" if evse is None else evse
            log.info("Reset of %s scheduled for when its transactions end", _what(evse))
            return {"status": "Scheduled"}
        for session in busy:  # B12.FR.04 (Immediate): end them first
            self.transactions.stop_for_reset(session)
        for session in busy:
            await self.transactions.settled(session.evse)
        return await self._reset_now(evse)

    def _busy(self, evse: int | None) -> list[Any]:
        return [
            s
            for n, s in self.transactions.sessions.items()
            if (evse is None or n == evse) and s.transaction is not None
        ]

    async def _reset_now(self, evse: int | None) -> dict[str, Any]:
        if evse is None:
            # B11.FR.09? The reason is stored before the answer: the board may go down at once.
            self.store.save_station_value(BOOT_REASON, "RemoteReset")
        accepted = await self._ask("reset", self._evse_data(evse))
        if not accepted:
            if evse is None:
                self.store.save_station_value(BOOT_REASON, None)
            return Rejection("NotEnabled", "the charger's firmware did not reset").answer(
                "Rejected"
            )
        log.info("Reset of %s accepted by the OEM", _what(evse))
        if evse is None:
            self.on_station_reset("Reset by the CSMS")
        return {"status": "Accepted"}

    # --- ChangeAvailability

    async def change_availability(self, request: Request) -> dict[str, Any]:
        payload = request.payload
        operative = payload["operationalStatus"] == "Operative"
        target = payload.get("evse")
        if target is not None and target.get("id") == 0:
            target = None  # EVSE 0: the station
        connectors = self.availability.select(target)
        if connectors is None:
            return Rejection("UnknownEvse", "this station has no such EVSE or connector").answer(
                "Rejected"
            )
        evse, connector = _scope(target)
        if all(self.availability.is_operative(c) == operative for c in connectors):
            return {"status": "Accepted"}  # G03.FR.03? already in that state
        if not operative and self._busy_on(connectors):  # G04: Scheduled, not interrupted
            self._scheduled_availability.append(
                {"operative": operative, "evse": evse, "connector": connector}
            )
            self.store.save_station_value(SCHEDULED, self._scheduled_availability)
            return {"status": "Scheduled"}
        data = self._availability_data(operative, evse, connector)
        if not await self._ask("change_availability", data):
            return Rejection("NotEnabled", "the charger's firmware refused the change").answer(
                "Rejected"
            )
        self._apply(operative, evse, connector)
        return {"status": "Accepted"}

    def _busy_on(self, connectors: list[ConnectorId]) -> bool:
        evses = {c[0] for c in connectors}
        return any(self.transactions.sessions[e].transaction is not None for e in evses)

    def _apply(self, operative: bool, evse: int | None, connector: int | None) -> None:
        changed = self.availability.set_operative(operative, evse, connector)
        self.transactions.statuses(changed)

    # --- what was scheduled, once transactions end

    def _transaction_ended(self, evse: int) -> None:
        scheduled = self._scheduled_reset
        if scheduled is not None:
            target = None if scheduled == "station" else int(scheduled)
            if not self._busy(target):
                self._scheduled_reset = None
                if target is None:
                    self.store.save_station_value(BOOT_REASON, "RemoteReset")
                self.effects.add(AskOem("reset", self._evse_data(target), f"{RESET_KEY}{target}"))
        waiting = []
        for entry in self._scheduled_availability:
            connectors = self.availability.select(
                None if entry["evse"] is None else _evse_type(entry["evse"], entry["connector"])
            )
            if connectors is not None and self._busy_on(connectors):
                waiting.append(entry)
                continue
            data = self._availability_data(entry["operative"], entry["evse"], entry["connector"])
            key = f"{AVAILABILITY_KEY}{entry['evse']}:{entry['connector']}:{entry['operative']}"
            self.effects.add(AskOem("change_availability", data, key))
        if len(waiting) != len(self._scheduled_availability):
            self._scheduled_availability = waiting
            self.store.save_station_value(SCHEDULED, waiting or None)

    def oem_answered(self, key: str, reply: OemReply) -> bool:
        accepted = isinstance(reply, OemAnswer) and reply.data.get("status") == "accepted"
        if key.startswith(RESET_KEY):
            if not accepted:
                log.warning("the scheduled reset was not done by the OEM: %s", _why(reply))
                if key == f"{RESET_KEY}None":
                    self.store.save_station_value(BOOT_REASON, None)
            elif key == f"{RESET_KEY}None":
                self.on_station_reset("Scheduled reset by the CSMS, once idle")
            return True
        if key.startswith(AVAILABILITY_KEY):
            evse_text, connector_text, operative_text = key[len(AVAILABILITY_KEY) :].split(":")
            if not accepted:
                log.warning("the scheduled availability change was refused: %s", _why(reply))
                return True
            evse = None if evse_text == "None" else int(evse_text)
            connector = None if connector_text == "None" else int(connector_text)
            self._apply(operative_text == "True", evse, connector)
            return True
        return False

    # --- the OEM

    async def _ask(self, name: str, data: dict[str, Any]) -> bool:
        ask = self._ask_oem()
        if ask is None:
            log.warning("%s: no OEM link", name)
            return False
        reply = await ask(name, data, None)
        if not isinstance(reply, OemAnswer):
            log.warning("%s: %s", name, reply.description)
            return False
        return reply.data.get("status") == "accepted"

    def _evse_data(self, evse: int | None) -> dict[str, Any]:
        return {} if evse is None else {"evse_id": self.transactions.evse_name(evse)}

    def _availability_data(
        self, operative: bool, evse: int | None, connector: int | None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"operational_status": "operative" if operative else "inoperative"}
        if evse is not None:
            data["evse_id"] = self.transactions.evse_name(evse)
            if connector is not None:
                data["connector_id"] = connector
        return data


def _scope(target: dict[str, Any] | None) -> tuple[int | None, int | None]:
    if target is None:
        return None, None
    return target["id"], target.get("connectorId")


def _evse_type(evse: int, connector: int | None) -> dict[str, Any]:
    return {"id": evse} if connector is None else {"id": evse, "connectorId": connector}


def _what(evse: int | None) -> str:
    return "the station" if evse is None else f"EVSE {evse}"


def _why(reply: OemReply) -> str:
    return str(reply.data.get("status")) if isinstance(reply, OemAnswer) else reply.description
