"""Security events (A04): the security events the bridge itself sees, as SecurityEventNotification
through the durable outbound queue.

A04.FR.01: a critical security event is reported to the CSMS with SecurityEventNotification;
A04.FR.02: while the station is offline it is kept for guaranteed delivery: the queue writes it to
the store (a transaction-related message), so it also survives a restart, and sends it once the
boot is accepted on the next connection. A04.FR.04 (every security event in a security log):
each event is logged (logger `bridge.station.security_events`); the bridge keeps no log the CSMS
can fetch (GetLog SecurityLog is the OEM's).

What the bridge reports (the names and "critical" flags of OCPP 2.0.1 part 2, appendix 1):

- StartupOfTheDevice (critical): once per process start, when the driver runs (`startup`).
- ResetOrReboot (critical): `reset_or_reboot`, for the Reset handler to call before it restarts.
- SettingSystemTime (critical): the CSMS's currentTime (BootNotification, Heartbeat) moved the
  station's clock by more than ClockCtrlr.TimeAdjustmentReportingThreshold seconds (0: never).
- FirmwareUpdated (critical, L01.FR.31) and InvalidFirmwareSignature (critical, L01.FR.03): the
  OEM runs the firmware update and reports it with FirmwareStatusNotification through
  `ocpp_message`; the bridge forwards that and adds the security event for Installed and
  InvalidSignature (once per requestId and status), so the OEM does not send these itself.
- InvalidCsmsCertificate, InvalidTLSVersion, InvalidTLSCipherSuite (critical) and
  FailedToAuthenticateAtCsms (not critical; reported too, since the bridge keeps no security log
  the CSMS could read): a failed connection attempt, classified by the transport. Each kind is
  reported once until a connection succeeds, not at every attempt of the back-off.

Security events the OEM sees itself (tamper detection, memory exhaustion, ...) it sends through
`ocpp_message`; they take the same queue.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Final

from bridge import __version__
from bridge.rpc import NoAnswer
from bridge.station.device_model import DeviceModel
from bridge.station.message_queue import MessageQueue
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

ACTION: Final = "SecurityEventNotification"
ORIGIN: Final = "security"
THRESHOLD: Final = "ClockCtrlr.TimeAdjustmentReportingThreshold"

# OCPP 2.0.1 part 2, appendix 1: the events marked critical (pushed to the CSMS, A04.FR.01).
CRITICAL: Final = frozenset(
    {
        "FirmwareUpdated",
        "SettingSystemTime",
        "StartupOfTheDevice",
        "ResetOrReboot",
        "SecurityLogWasCleared",
        "MemoryExhaustion",
        "TamperDetectionActivated",
        "InvalidFirmwareSignature",
        "InvalidFirmwareSigningCertificate",
        "InvalidCsmsCertificate",
        "InvalidChargingStationCertificate",
        "InvalidTLSVersion",
        "InvalidTLSCipherSuite",
        "MaintenanceLoginAccepted",
        "MaintenanceLoginFailed",
    }
)

# Events of normal operation: logged at INFO, the others at WARNING.
ROUTINE: Final = frozenset(
    {"StartupOfTheDevice", "ResetOrReboot", "SettingSystemTime", "FirmwareUpdated"}
)

# The transport's classification of a failed connection attempt -> the security event.
CONNECTION_EVENTS: Final = {
    "unauthorized": "FailedToAuthenticateAtCsms",  # HTTP 401 at the WebSocket upgrade
    "certificate": "InvalidCsmsCertificate",
    "tls_version": "InvalidTLSVersion",
    "tls_cipher_suite": "InvalidTLSCipherSuite",
}

# FirmwareStatusNotification status from the OEM -> the security event it implies.
FIRMWARE_EVENTS: Final = {
    "Installed": "FirmwareUpdated",  # L01.FR.31
    "InvalidSignature": "InvalidFirmwareSignature",  # L01.FR.03
}


class SecurityEvents:
    def __init__(self, queue: MessageQueue, clock: Clock, device_model: DeviceModel) -> None:
        self.queue = queue
        self.clock = clock
        self.device_model = device_model
        self._connection_failures: set[str] = set()  # reported since the last connection
        self._firmware: set[tuple[Any, str]] = set()  # (requestId, status) reported

    def notify(self, kind: str, tech_info: str | None = None) -> None:
        """Queue SecurityEventNotification {type, timestamp, techInfo?} for the CSMS."""
        payload: dict[str, Any] = {"type": kind[:50], "timestamp": self.clock.timestamp()}
        if tech_info:
            payload["techInfo"] = tech_info[:255]
        level = logging.INFO if kind in ROUTINE else logging.WARNING
        log.log(level, "security event %s%s", kind, f": {tech_info}" if tech_info else "")
        queued = self.queue.put(ACTION, payload, ORIGIN)
        if isinstance(queued, NoAnswer):  # pragma: no cover - a durable put is always queued
            log.warning("%s %s not queued: %s", ACTION, kind, queued.description)

    # --- the events

    def startup(self) -> None:
        self.notify("StartupOfTheDevice", f"ocpp-bridge {__version__} started")

    def reset_or_reboot(self, tech_info: str | None = None) -> None:
        """The station is about to restart (a Reset): in the store before the restart."""
        self.notify("ResetOrReboot", tech_info)

    def clock_adjusted(self, jump: timedelta) -> None:
        """The station's clock was set (from the CSMS): reported beyond the threshold."""
        threshold = self.device_model.int_value(THRESHOLD)
        seconds = jump.total_seconds()
        if threshold > 0 and abs(seconds) > threshold:
            self.notify("SettingSystemTime", f"clock set from the CSMS by {seconds:+.0f} s")

    def connection_failed(self, reason: str, description: str) -> None:
        """A connection attempt to the CSMS failed; `reason` is the transport's class of it."""
        kind = CONNECTION_EVENTS.get(reason)
        if kind is None or kind in self._connection_failures:
            return
        self._connection_failures.add(kind)
        self.notify(kind, description)

    def connected(self) -> None:
        """A connection succeeded: the next failure of each kind is reported again."""
        self._connection_failures.clear()

    def firmware_status(self, payload: dict[str, Any]) -> None:
        """The OEM's FirmwareStatusNotification (forwarded to the CSMS)."""
        status = str(payload.get("status"))
        kind = FIRMWARE_EVENTS.get(status)
        key = (payload.get("requestId"), status)
        if kind is None or key in self._firmware:
            return
        self._firmware.add(key)
        request = payload.get("requestId")
        self.notify(kind, f"firmware update {request}: {status}" if request is not None else None)
