"""Availability functional block (G): connector status and StatusNotification (G01, B04)."""

from __future__ import annotations

from typing import Any, Final

from bridge.station.device_model import DeviceModel
from bridge.store import Store
from bridge.timeutil import Clock

ConnectorId = tuple[int, int]  # (evse id, connector id)
INOPERATIVE: Final = "inoperative"  # station_value: what is out of service

# cs_status_and_limits `status_code` -> the EVSE's availability.
FAULTS: Final = frozenset(
    {"evse_malfunction", "evse_emergency_shutdown", "evse_isolation_monitoring_active"}
)
UNAVAILABLE: Final = frozenset({"evse_not_ready", "evse_shutdown", "evse_utility_interrupt_event"})


def evse_condition(entry: dict[str, Any]) -> str:
    """Available, Unavailable or Faulted for one `evses` entry of cs_status_and_limits."""
    code = entry.get("status_code")
    rcd_error = any(
        isinstance(entry.get(kind), dict) and entry[kind].get("rcd_error") is True
        for kind in ("ac", "ac_bpt")
    )
    if code in FAULTS or rcd_error:
        return "Faulted"
    if code in UNAVAILABLE:
        return "Unavailable"
    return "Available"


class Availability:
    """Each connector's status, from what the OEM reports (cs_status_and_limits conditions,
    cp_status) and what is out of service (change_availability, persisted: G03.FR.05).

    Faulted before Unavailable before Occupied before Reserved before Available."""

    def __init__(
        self, device_model: DeviceModel, evses: list[int], clock: Clock, store: Store | None = None
    ) -> None:
        self.device_model = device_model
        self.clock = clock
        self.store = store
        self.connectors: list[ConnectorId] = [
            (evse, connector)
            for evse, count in enumerate(evses, start=1)
            for connector in range(1, count + 1)
        ]
        # What the CSMS was last told, per connector (B04.FR.02: resend only what changed).
        self.reported: dict[ConnectorId, str] = {}
        self.condition: dict[int, str] = {}  # EVSE -> Available / Unavailable / Faulted
        self.occupied: set[ConnectorId] = set()
        self.cp_fault: set[ConnectorId] = set()  # cp_status E or F
        self.reserved: set[ConnectorId] = set()
        saved = store.station_value(INOPERATIVE) if store is not None else None
        # Out of service: "station", "evse:<n>", "connector:<n>,<m>".
        self.inoperative: set[str] = set(saved or [])
        self._shown: dict[ConnectorId, str] = {}
        self.refresh()

    # --- inputs

    def set_evse(self, evse: int, state: str) -> list[ConnectorId]:
        """The EVSE's condition from the OEM (G01): its connectors that changed status."""
        self.condition[evse] = state
        self.device_model.set_runtime(f"EVSE[{evse}].AvailabilityState", state)
        return self.refresh()

    def set_occupied(
        self, connector: ConnectorId, occupied: bool, fault: bool
    ) -> list[ConnectorId]:
        (self.occupied.add if occupied else self.occupied.discard)(connector)
        (self.cp_fault.add if fault else self.cp_fault.discard)(connector)
        return self.refresh()

    def set_operative(
        self, operative: bool, evse: int | None = None, connector: int | None = None
    ) -> list[ConnectorId]:
        """Take the station, an EVSE or a connector out of service or back (persisted)."""
        scope = "station" if evse is None else f"evse:{evse}"
        if evse is not None and connector is not None:
            scope = f"connector:{evse},{connector}"
        if operative:
            self.inoperative.discard(scope)
            if scope == "station":
                self.inoperative.clear()
        else:
            self.inoperative.add(scope)
        if self.store is not None:
            self.store.save_station_value(INOPERATIVE, sorted(self.inoperative))
        return self.refresh()

    def refresh(self) -> list[ConnectorId]:
        """Publish each connector's status in the device model; those that changed."""
        changed = []
        for connector in self.connectors:
            status = self.status(connector)
            if self._shown.get(connector) != status:
                self._shown[connector] = status
                evse, number = connector
                self.device_model.set_runtime(
                    f"Connector[{evse},{number}].AvailabilityState", status
                )
                changed.append(connector)
        return changed

    # --- reading

    def is_operative(self, connector: ConnectorId) -> bool:
        evse, number = connector
        return not ({"station", f"evse:{evse}", f"connector:{evse},{number}"} & self.inoperative)

    def status(self, connector: ConnectorId) -> str:
        """ConnectorStatusEnumType of a connector."""
        condition = self.condition.get(connector[0], "Available")
        if connector in self.cp_fault or condition == "Faulted":
            return "Faulted"
        if condition == "Unavailable" or not self.is_operative(connector):
            return "Unavailable"
        if connector in self.occupied:
            return "Occupied"
        if connector in self.reserved:
            return "Reserved"
        return "Available"

    def usable(self, evse: int) -> bool:
        """May a transaction start on this EVSE (not faulted, not out of service)?"""
        return any(
            self.status(c) not in ("Faulted", "Unavailable")
            for c in self.connectors
            if c[0] == evse
        )

    def select(self, evse: dict[str, Any] | None) -> list[ConnectorId] | None:
        """The connectors an EVSEType names (all when absent); None when it names none we have."""
        if evse is None:
            return list(self.connectors)
        chosen = [c for c in self.connectors if c[0] == evse["id"]]
        if "connectorId" in evse:
            chosen = [c for c in chosen if c[1] == evse["connectorId"]]
        return chosen or None

    def status_notification(self, connector: ConnectorId) -> dict[str, Any]:
        evse, number = connector
        return {
            "timestamp": self.clock.timestamp(),
            "connectorStatus": self.status(connector),
            "evseId": evse,
            "connectorId": number,
        }

    def acknowledged(self, payload: dict[str, Any]) -> None:
        """The CSMS answered this StatusNotification: it knows that status now."""
        self.reported[(payload["evseId"], payload["connectorId"])] = payload["connectorStatus"]

    def changed(self) -> list[ConnectorId]:
        return [c for c in self.connectors if self.reported.get(c) != self.status(c)]
