"""Booting and staying registered with the CSMS: B01-B04 and the heartbeat (G02), as a state
machine. No I/O: the driver reports events (`connected`, `disconnected`, `timer`, `answered`);
messages go into the outbound queue, timers come out as `Schedule`/`Cancel` effects and the OEM
hears `boot_status` as a `Publish`.

- On a connection: BootNotification until the CSMS accepts (B01-B03), waiting `interval` between
  attempts; then StatusNotification for every connector (B01.FR.05) and Heartbeat every
  HeartbeatInterval (G02).
- The registration status outlives connections: after a reconnect an accepted station does not
  boot again (OCPP-J 5.3), it resends the connector statuses (B04).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

from bridge.config import StationSettings
from bridge.rpc import CallError, CallResult, NoAnswer, Outcome
from bridge.station.availability import Availability, ConnectorId
from bridge.station.device_model import DeviceModel, Variable
from bridge.station.effects import Cancel, Effects, Publish, Schedule
from bridge.station.message_queue import MessageQueue, Outgoing
from bridge.timeutil import Clock, parse_timestamp

log = logging.getLogger(__name__)

# B02.FR.07 / B03.FR.05: with interval 0 (or no answer), wait this long between BootNotifications.
DEFAULT_BOOT_RETRY: Final = 30.0
HEARTBEAT_INTERVAL: Final = "OCPPCommCtrlr.HeartbeatInterval"
BOOT, HEARTBEAT = "boot", "heartbeat"  # timer names, and the origins of the messages

# B02.FR.01: what a CSMS may ask while the boot is Pending (and the station must answer), plus the
# certificate and network-profile calls of the A02 / A05 provisioning flows.
PENDING_ALLOWED: Final = frozenset(
    {
        "GetVariables",
        "SetVariables",
        "GetBaseReport",
        "GetReport",
        "TriggerMessage",
        "InstallCertificate",
        "GetInstalledCertificateIds",
        "DeleteCertificate",
        "CertificateSigned",
        "SetNetworkProfile",
    }
)


class Registration:
    def __init__(
        self,
        settings: StationSettings,
        device_model: DeviceModel,
        availability: Availability,
        queue: MessageQueue,
        clock: Clock,
        effects: Effects,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.device_model = device_model
        self.availability = availability
        self.queue = queue
        self.clock = clock
        self.effects = effects
        self.monotonic = monotonic
        self.status: str | None = None  # Accepted, Pending or Rejected; None before any answer
        self.reason = "PowerUp"
        self.connected_now = False
        # Called on every connection once the station is accepted on it (e.g. A05.FR.06).
        self.on_accepted: list[Callable[[], None]] = []
        self._disconnected_at: float | None = None
        self._boot_in_flight = False
        # What BootNotification says the station is (the station sets the OEM's device_model).
        self.charging_station: Callable[[], dict[str, Any]] = self._configured_station
        device_model.on_change(self._variable_changed)

    @property
    def accepted(self) -> bool:
        return self.status == "Accepted"

    # --- events

    def connected(self) -> None:
        self.connected_now = True
        self.queue.open(accepted=self.accepted)
        if self.accepted:
            self._now_accepted()
            self._resynchronize()
            self._schedule_heartbeat()
        else:
            self._send_boot()

    def disconnected(self) -> None:
        self.connected_now = False
        self._boot_in_flight = False
        self._disconnected_at = self.monotonic()
        self.effects.add(Cancel(BOOT))
        self.effects.add(Cancel(HEARTBEAT))

    def timer(self, name: str) -> None:
        if not self.connected_now:
            return
        if name == BOOT and not self.accepted:
            self._send_boot()
        elif name == HEARTBEAT and self.accepted:
            self.send_heartbeat()
            self._schedule_heartbeat()

    def answered(self, message: Outgoing, outcome: Outcome) -> None:
        if message.origin == BOOT:
            self._boot_answered(outcome)
        elif message.origin == HEARTBEAT:
            if isinstance(outcome, CallResult):
                self._synchronize_clock(outcome.payload["currentTime"], "Heartbeat")
            elif isinstance(outcome, NoAnswer) and outcome.reason == "timeout":
                log.warning("Heartbeat: no answer within MessageTimeout")
        elif message.origin == "status":
            if isinstance(outcome, CallResult):
                self.availability.acknowledged(message.payload)
            elif outcome_is_failure(outcome):
                # Not acknowledged: it counts as changed and goes again at the next resync.
                log.warning(
                    "StatusNotification of connector %s,%s: %s",
                    message.payload["evseId"],
                    message.payload["connectorId"],
                    describe(outcome),
                )

    # --- B01-B03: BootNotification until Accepted

    def boot_payload(self) -> dict[str, Any]:
        return {"chargingStation": self.charging_station(), "reason": self.reason}

    def _configured_station(self) -> dict[str, Any]:
        station = self.settings
        charging_station: dict[str, Any] = {"model": station.model, "vendorName": station.vendor}
        if station.serial_number:
            charging_station["serialNumber"] = station.serial_number
        if station.firmware_version:
            charging_station["firmwareVersion"] = station.firmware_version
        return charging_station

    def _send_boot(self) -> None:
        if self._boot_in_flight:
            return
        self.effects.add(Cancel(BOOT))
        sent = self.queue.put("BootNotification", self.boot_payload(), BOOT)
        self._boot_in_flight = not isinstance(sent, NoAnswer)

    def trigger_boot(self) -> None:
        """F06: TriggerMessage(BootNotification) while not accepted: send one at once (after the
        TriggerMessage response: a timer of 0 s runs after the response is out)."""
        self.reason = "Triggered"
        self.effects.add(Schedule(BOOT, 0))

    def _boot_answered(self, outcome: Outcome) -> None:
        self._boot_in_flight = False
        wait = DEFAULT_BOOT_RETRY
        if isinstance(outcome, CallResult):
            payload = outcome.payload
            self.status = payload["status"]
            self._synchronize_clock(payload["currentTime"], "BootNotification")
            interval = payload["interval"]
            log.info("BootNotification %s (interval %s s)", self.status, interval)
            self.effects.add(Publish("boot_status", {"status": str(self.status).lower()}))
            if self.accepted:
                if interval > 0:  # B01.FR.04
                    self._set_heartbeat_interval(interval)
                self.queue.accepted = True
                self._now_accepted()
                self.send_statuses(self.availability.connectors)  # B01.FR.05
                self._schedule_heartbeat()
                return
            if interval > 0:  # B02.FR.08 / B03.FR.06
                wait = float(interval)
        elif isinstance(outcome, NoAnswer) and outcome.reason == "offline":
            return  # the connection closed: the next one boots again
        else:
            log.warning("BootNotification: %s; again in %.0f s", describe(outcome), wait)
        # B02.FR.04: no earlier BootNotification unless TriggerMessage asks for one.
        self.effects.add(Schedule(BOOT, wait))

    def _now_accepted(self) -> None:
        for callback in self.on_accepted:
            try:
                callback()
            except Exception:
                log.exception("a callback after the accepted boot failed")

    # --- B04: after an outage

    def _resynchronize(self) -> None:
        """StatusNotification for all connectors after a long outage, else for the changed ones."""
        now = self.monotonic()
        offline = now - (self._disconnected_at if self._disconnected_at is not None else now)
        threshold = self.device_model.int_value("OCPPCommCtrlr.OfflineThreshold")
        if offline > threshold:  # B04.FR.01
            self.send_statuses(self.availability.connectors)
        else:  # B04.FR.02
            self.send_statuses(self.availability.changed())

    def send_statuses(self, connectors: list[ConnectorId]) -> None:
        """StatusNotification of these connectors (G01); the answers mark them reported."""
        for connector in connectors:
            payload = self.availability.status_notification(connector)
            self.queue.put("StatusNotification", payload, "status")

    # --- G02: heartbeat

    def _schedule_heartbeat(self) -> None:
        interval = max(1, self.device_model.int_value(HEARTBEAT_INTERVAL))
        self.effects.add(Schedule(HEARTBEAT, float(interval)))

    def send_heartbeat(self, triggered: bool = False) -> None:
        self.queue.put("Heartbeat", {}, HEARTBEAT, triggered=triggered)

    def _synchronize_clock(self, current_time: str, source: str) -> None:
        # B01.FR.06 / G02.FR.06: when the CSMS is a time source.
        sources = (self.device_model.value("ClockCtrlr.TimeSource") or "").split(",")
        if "Heartbeat" not in sources:
            return
        if parse_timestamp(current_time) is None:
            # Some CSMSs send a local time without offset: keep the status, not the time.
            log.warning(
                "%s currentTime is not an RFC 3339 date-time with a UTC offset; the clock "
                "is not synchronized",
                source,
            )
            return
        self.clock.synchronize(current_time)

    def _set_heartbeat_interval(self, interval: int) -> None:
        variable = self.device_model[HEARTBEAT_INTERVAL]
        if variable.read() != str(interval):
            self.device_model.write([(variable, "Actual", str(interval))])

    def _variable_changed(self, variable: Variable, attribute: str, value: str) -> None:
        if variable.key == HEARTBEAT_INTERVAL and self.connected_now and self.accepted:
            self._schedule_heartbeat()  # a changed interval applies at once

    # --- the CSMS door

    def gate(self, action: str, payload: Any) -> CallError | None:
        """The CallError for a CALL the registration status does not allow, else None."""
        if self.status == "Rejected" and not is_boot_trigger(action, payload):
            # B03.FR.08
            return CallError("SecurityError", "The CSMS rejected this station's BootNotification")
        if self.status != "Accepted" and action not in PENDING_ALLOWED:
            # B02.FR.09 (CSMS side) / B01.FR.10: nothing else before the boot is accepted.
            return CallError(
                "SecurityError", f"{action} is not allowed before the boot is accepted"
            )
        return None


def is_boot_trigger(action: str, payload: Any) -> bool:
    return (
        action == "TriggerMessage"
        and isinstance(payload, dict)
        and payload.get("requestedMessage") == "BootNotification"
    )


def outcome_is_failure(outcome: Outcome) -> bool:
    """A CallError or a timeout (a closed connection is no failure of the message)."""
    return isinstance(outcome, CallError) or (
        isinstance(outcome, NoAnswer) and outcome.reason == "timeout"
    )


def describe(outcome: Outcome) -> str:
    if isinstance(outcome, CallError):
        return f"answered {outcome.code}: {outcome.description}"
    if isinstance(outcome, NoAnswer):
        return "no answer within MessageTimeout" if outcome.reason == "timeout" else "offline"
    return "answered"
