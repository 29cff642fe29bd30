"""Remote control functional block (F): TriggerMessage (F06)."""

from __future__ import annotations

from typing import Any

from bridge.rpc import CallResult, OcppError
from bridge.rpc.request import Request
from bridge.station.availability import Availability
from bridge.station.device_model import Rejection
from bridge.station.effects import Send
from bridge.station.message_queue import MessageQueue
from bridge.station.provisioning.boot import HEARTBEAT, Registration


class RemoteControl:
    def __init__(
        self, registration: Registration, availability: Availability, queue: MessageQueue
    ) -> None:
        self.registration = registration
        self.availability = availability
        self.queue = queue

    def trigger_message(self, request: Request) -> dict[str, Any] | CallResult:
        payload = request.payload
        requested = payload["requestedMessage"]
        if not self.queue.connected:
            return Rejection("NotEnabled", "no CSMS connection to send it on").answer("Rejected")
        if requested == "BootNotification":
            if self.registration.accepted:  # F06.FR.17
                return Rejection("NotEnabled", "the boot is already accepted").answer("Rejected")
            self.registration.trigger_boot()
            return {"status": "Accepted"}
        if requested == "Heartbeat":
            return CallResult({"status": "Accepted"}, (Send("Heartbeat", {}, HEARTBEAT),))
        if requested == "StatusNotification":
            evse = payload.get("evse")
            if evse is None or "connectorId" not in evse:  # F06.FR.12
                return Rejection(
                    "MissingParam", "StatusNotification needs evse with id and connectorId"
                ).answer("Rejected")
            connectors = self.availability.select(evse)
            if connectors is None:
                raise OcppError(
                    "OccurrenceConstraintViolation",
                    f"This station has no EVSE/connector {evse}",
                    {"evse": evse},
                )
            sends = tuple(
                Send("StatusNotification", self.availability.status_notification(c), "status")
                for c in connectors
            )
            return CallResult({"status": "Accepted"}, sends)
        return {"status": "NotImplemented"}  # F06.FR.08
