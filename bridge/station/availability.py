"""Availability functional block (G): connector status and StatusNotification (G01, B04)."""

from __future__ import annotations

from typing import Any, Final

from bridge.station.device_model import DeviceModel
from bridge.timeutil import Clock

ConnectorId = tuple[int, int]  # (evse id, connector id)

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
    def __init__(self, device_model: DeviceModel, evses: list[int], clock: Clock) -> None:
        self.device_model = device_model
        self.clock = clock
        self.connectors: list[ConnectorId] = [
            (evse, connector)
            for evse, count in enumerate(evses, start=1)
            for connector in range(1, count + 1)
        ]
        # What the CSMS was last told, per connector (B04.FR.02: resend only what changed).
        self.reported: dict[ConnectorId, str] = {}

    def set_evse(self, evse: int, state: str) -> list[ConnectorId]:
        """The EVSE's condition from the OEM (G01): its connectors that changed status.

        An Occupied or Reserved connector stays so when the EVSE becomes Available."""
        dm = self.device_model
        dm.set_runtime(f"EVSE[{evse}].AvailabilityState", state)
        changed = []
        for connector in self.connectors:
            if connector[0] != evse:
                continue
            current = self.status(connector)
            new = state
            if state == "Available" and current in ("Occupied", "Reserved"):
                new = current
            if new != current:
                dm.set_runtime(f"Connector[{evse},{connector[1]}].AvailabilityState", new)
                changed.append(connector)
        return changed

    def status(self, connector: ConnectorId) -> str:
        """ConnectorStatusEnumType of a connector, from its AvailabilityState."""
        evse, number = connector
        return (
            self.device_model.value(f"Connector[{evse},{number}].AvailabilityState") or "Available"
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
