"""Availability functional block (G): connector status and StatusNotification (G01, B04)."""

from __future__ import annotations

from typing import Any

from bridge.station.device_model import DeviceModel
from bridge.timeutil import Clock

ConnectorId = tuple[int, int]  # (evse id, connector id)


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
