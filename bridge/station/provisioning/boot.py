"""Booting and staying registered with the CSMS: B01-B04, heartbeat (G02), TriggerMessage (F06).

`Registration.run(connection)` is the life of one CSMS connection: BootNotification until the CSMS
accepts (B01-B03), StatusNotification for every connector (B01.FR.05, or only changed ones after a
short outage, B04), then Heartbeat every interval. The registration status outlives connections:
after a reconnect an accepted station does not boot again (OCPP-J 5.3).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from bridge.config import StationSettings
from bridge.rpc import CallError, CallResult, OcppError
from bridge.station.availability import Availability
from bridge.station.device_model import DeviceModel, Rejection, Variable
from bridge.station.dispatcher import STATION_VERSION, Dispatcher
from bridge.station.outbox import NotConnected, Outbox
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

# B02.FR.07 / B03.FR.05: with interval 0, wait this long between BootNotifications (no flooding).
DEFAULT_BOOT_RETRY: Final = 30.0
HEARTBEAT_INTERVAL: Final = "OCPPCommCtrlr.HeartbeatInterval"

# B02.FR.01: what a CSMS may ask while the boot is Pending (and the station must answer), plus the
# certificate and network-profile calls of the A00.FR.429 / A02 provisioning flows.
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
        dispatcher: Dispatcher,
        outbox: Outbox,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.device_model = device_model
        self.availability = availability
        self.dispatcher = dispatcher
        self.outbox = outbox
        self.clock = clock
        self.status: str | None = None  # Accepted, Pending or Rejected; None before any answer
        self.reason = "PowerUp"
        # Run on every connection once the station is accepted on it (e.g. A05.FR.06).
        self.on_accepted: list[Callable[[], None]] = []
        self._boot_now = asyncio.Event()
        self._reschedule = asyncio.Event()
        self._disconnected_at: float | None = None
        device_model.on_change(self._variable_changed)

    # --- the CSMS door

    async def handle_call(self, action: str, payload: Any, size: int) -> CallResult | CallError:
        """A CALL from the CSMS, through the registration gate, to the dispatcher."""
        if self.status == "Rejected" and not _is_boot_trigger(action, payload):
            # B03.FR.08
            return CallError("SecurityError", "The CSMS rejected this station's BootNotification")
        if self.status != "Accepted" and action not in PENDING_ALLOWED:
            # B02.FR.09 (CSMS side) / B01.FR.10: nothing else before the boot is accepted.
            return CallError(
                "SecurityError", f"{action} is not allowed before the boot is accepted"
            )
        return await self.dispatcher.call(STATION_VERSION, action, payload, size)

    # --- one connection

    async def run(self, connection: Any) -> None:
        """Boot, report and heartbeat over this connection until it closes (cancel to stop)."""
        try:
            if self.status == "Accepted":
                self._accepted()
                await self._resynchronize()
            else:
                await self._until_accepted()
                await self._send_statuses(self.availability.connectors)
            await self._heartbeat()
        except NotConnected:
            pass
        finally:
            self._disconnected_at = time.monotonic()

    def boot_payload(self) -> dict[str, Any]:
        station = self.settings
        charging_station: dict[str, Any] = {"model": station.model, "vendorName": station.vendor}
        if station.serial_number:
            charging_station["serialNumber"] = station.serial_number
        if station.firmware_version:
            charging_station["firmwareVersion"] = station.firmware_version
        return {"chargingStation": charging_station, "reason": self.reason}

    async def _until_accepted(self) -> None:
        """B01-B03: BootNotification until Accepted, waiting `interval` (or a trigger) between."""
        while True:
            self._boot_now.clear()
            wait = DEFAULT_BOOT_RETRY
            try:
                result = await self.outbox.call("BootNotification", self.boot_payload())
            except TimeoutError:
                log.warning("BootNotification: no answer within MessageTimeout")
                result = None
            if isinstance(result, CallResult):
                payload = result.payload
                self.status = payload["status"]
                self._synchronize_clock(payload["currentTime"])
                log.info("BootNotification %s (interval %s s)", self.status, payload["interval"])
                if self.status == "Accepted":
                    if payload["interval"] > 0:  # B01.FR.04
                        self._set_heartbeat_interval(payload["interval"])
                    self._accepted()
                    return
                if payload["interval"] > 0:  # B02.FR.08 / B03.FR.06
                    wait = float(payload["interval"])
            elif isinstance(result, CallError):
                log.warning("BootNotification answered %s: %s", result.code, result.description)
            # B02.FR.04: no earlier BootNotification unless TriggerMessage asks for one.
            try:
                async with asyncio.timeout(wait):
                    await self._boot_now.wait()
                self.reason = "Triggered"
            except TimeoutError:
                pass

    def _accepted(self) -> None:
        for callback in self.on_accepted:
            try:
                callback()
            except Exception:
                log.exception("a callback after the accepted boot failed")

    async def _resynchronize(self) -> None:
        """B04: after an outage, StatusNotification for all connectors or only the changed ones."""
        offline = time.monotonic() - (self._disconnected_at or time.monotonic())
        threshold = self.device_model.int_value("OCPPCommCtrlr.OfflineThreshold")
        if offline > threshold:  # B04.FR.01
            await self._send_statuses(self.availability.connectors)
        else:  # B04.FR.02
            await self._send_statuses(self.availability.changed())

    async def _send_statuses(self, connectors: list[tuple[int, int]]) -> None:
        for connector in connectors:
            payload = self.availability.status_notification(connector)
            try:
                result = await self.outbox.call("StatusNotification", payload)
            except TimeoutError:
                # Not acknowledged: it counts as changed and goes again at the next resync.
                log.warning("StatusNotification of connector %s: no answer", connector)
                continue
            if isinstance(result, CallError):
                log.warning("StatusNotification answered %s", result.code)
            else:
                self.availability.acknowledged(payload)

    async def _heartbeat(self) -> None:
        """G02: a Heartbeat every HeartbeatInterval; a changed interval applies at once."""
        while True:
            self._reschedule.clear()
            interval = max(1, self.device_model.int_value(HEARTBEAT_INTERVAL))
            try:
                async with asyncio.timeout(interval):
                    await self._reschedule.wait()
                continue  # the interval changed: start a new period
            except TimeoutError:
                pass
            await self.send_heartbeat()

    async def send_heartbeat(self) -> None:
        try:
            result = await self.outbox.call("Heartbeat", {})
        except TimeoutError:
            log.warning("Heartbeat: no answer within MessageTimeout")
            return
        if isinstance(result, CallResult):
            self._synchronize_clock(result.payload["currentTime"])

    def _synchronize_clock(self, current_time: str) -> None:
        # B01.FR.06 / G02.FR.06: when the CSMS is a time source.
        sources = (self.device_model.value("ClockCtrlr.TimeSource") or "").split(",")
        if "Heartbeat" in sources:
            self.clock.synchronize(current_time)

    def _set_heartbeat_interval(self, interval: int) -> None:
        variable = self.device_model[HEARTBEAT_INTERVAL]
        if variable.read() != str(interval):
            self.device_model.write([(variable, "Actual", str(interval))])

    def _variable_changed(self, variable: Variable, attribute: str, value: str) -> None:
        if variable.key == HEARTBEAT_INTERVAL:
            self._reschedule.set()

    # --- F06: TriggerMessage

    def trigger_message(self, payload: dict[str, Any]) -> dict[str, Any] | CallResult:
        requested = payload["requestedMessage"]
        if not self.outbox.connected:
            return Rejection("NotEnabled", "no CSMS connection to send it on").answer("Rejected")
        if requested == "BootNotification":
            if self.status == "Accepted":  # F06.FR.17
                return Rejection("NotEnabled", "the boot is already accepted").answer("Rejected")
            return CallResult({"status": "Accepted"}, self._trigger_boot)
        if requested == "Heartbeat":
            return CallResult({"status": "Accepted"}, self.send_heartbeat)
        if requested == "StatusNotification":
            connectors = self.availability.select(payload.get("evse"))
            if connectors is None:
                raise OcppError(
                    "OccurrenceConstraintViolation",
                    f"This station has no EVSE/connector {payload['evse']}",
                    {"evse": payload["evse"]},
                )

            async def send() -> None:
                await self._send_statuses(connectors)

            return CallResult({"status": "Accepted"}, send)
        return {"status": "NotImplemented"}  # F06.FR.08

    async def _trigger_boot(self) -> None:
        self._boot_now.set()


def _is_boot_trigger(action: str, payload: Any) -> bool:
    return (
        action == "TriggerMessage"
        and isinstance(payload, dict)
        and payload.get("requestedMessage") == "BootNotification"
    )
