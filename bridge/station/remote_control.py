"""Remote control functional block (F): TriggerMessage (F06).

Every requestedMessage of OCPP 2.0.1 gets the answer F06 prescribes, and the message it asks for
goes after the TriggerMessage response (F06.FR.04): as a Send effect of the CallResult, or, when
the station must first ask the OEM for something, as an AskOem effect whose answer comes back to
`oem_answered`, or as a 0 s timer (`timer`).

- BootNotification: Rejected once the boot is accepted (F06.FR.17), else a BootNotification with
  reason Triggered.
- Heartbeat; StatusNotification of one connector (Rejected without `evse.connectorId`, F06.FR.12).
- MeterValues: the OEM's `meter_values` of the EVSE named (every EVSE when `evse` is absent), each
  sent as MeterValues with context Trigger and exactly `AlignedDataCtrlr.Measurands` (F06.FR.06);
  Rejected when that list is empty. An EVSE whose reading is late or gives none of the measurands
  sends nothing (logged): MeterValues needs a sampled value.
- TransactionEvent: Accepted when a transaction is open on the EVSE (any EVSE when `evse` is
  absent), else Rejected; the transactions block then sends an Updated event with triggerReason
  Trigger for each (F06.FR.07) through `Transactions.trigger(evse)`.
- LogStatusNotification, FirmwareStatusNotification: log uploads (GetLog) and firmware updates
  (UpdateFirmware) are the OEM's work, handed to it by `[oem] delegate`. When the action that
  starts that work is not delegated, the station runs none, so it knows none is in progress and
  sends status Idle itself (for the firmware: F06.FR.16, L01.FR.25; Idle is only ever sent on a
  trigger). When it is delegated, only the OEM knows its progress: the TriggerMessage goes to the
  OEM as an `ocpp_message` request, and the OEM's answer is the station's (the OEM then sends the
  notification through `ocpp_message`). The OEM's own TriggerMessage for such a message is
  Rejected: it sends that message itself.
- SignChargingStationCertificate, SignV2GCertificate, SignCombinedCertificate: a new certificate
  needs the key of whoever installs it. The bridge installs no signed certificates, so without
  the OEM these are NotImplemented (F06.FR.08); with CertificateSigned delegated the OEM holds the
  key, and the TriggerMessage goes to the OEM as above (it sends SignCertificate itself).
- PublishFirmwareStatusNotification: NotImplemented (a local controller's message, F06.FR.08).

An `evse` that names no EVSE (or connector) of the station is an OccurrenceConstraintViolation.
An OEM that does not answer a handed-over TriggerMessage in time, or answers it with a CallError
or invalidly, makes it Rejected (logged), never a CallError.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, Protocol

from bridge.oem.link import OemAnswer, OemReply
from bridge.rpc import CallResult, NoAnswer, OcppError
from bridge.rpc.request import Request
from bridge.station import meter_values
from bridge.station.availability import Availability
from bridge.station.device_model import DeviceModel, Rejection
from bridge.station.effects import AskOem, Effect, Schedule, Send
from bridge.station.evse_session import EvseSession
from bridge.station.message_queue import MessageQueue
from bridge.station.provisioning.boot import HEARTBEAT, Registration
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

TRIGGER: Final = "trigger:"  # prefix of this block's AskOem keys and timers
ORIGIN: Final = "trigger"  # origin of the messages a trigger sends
MEASURANDS: Final = "AlignedDataCtrlr.Measurands"
# The requested message -> the delegated action that makes it the OEM's.
OEM_WORK: Final = {
    "LogStatusNotification": "GetLog",
    "FirmwareStatusNotification": "UpdateFirmware",
    "SignChargingStationCertificate": "CertificateSigned",
    "SignV2GCertificate": "CertificateSigned",
    "SignCombinedCertificate": "CertificateSigned",
}
IDLE: Final = {"LogStatusNotification", "FirmwareStatusNotification"}

# Hand a CALL to the OEM as an ocpp_message request: its response payload (OcppError when the
# OEM does not answer usably).
Delegate = Callable[[Request], Awaitable[dict[str, Any]]]


class TransactionTrigger(Protocol):
    """What TriggerMessage(TransactionEvent) needs of the transactions block."""

    @property
    def sessions(self) -> Mapping[int, EvseSession]: ...

    def trigger(self, evse: int | None) -> bool:
        """Queue an Updated TransactionEvent, triggerReason Trigger, for the open transaction of
        `evse` (of every EVSE when None); False when there was none."""
        ...


class RemoteControl:
    def __init__(
        self,
        registration: Registration,
        availability: Availability,
        queue: MessageQueue,
        device_model: DeviceModel,
        clock: Clock,
        transactions: TransactionTrigger,
        evse_name: Callable[[int], str],
        delegated: Collection[str] = (),
        delegate: Delegate | None = None,
    ) -> None:
        self.registration = registration
        self.availability = availability
        self.queue = queue
        self.device_model = device_model
        self.clock = clock
        self.transactions = transactions
        self.evse_name = evse_name
        self.delegated = frozenset(delegated)
        self.delegate = delegate
        self._keys = itertools.count(1)

    # --- TriggerMessage

    def trigger_message(
        self, request: Request
    ) -> dict[str, Any] | CallResult | Awaitable[dict[str, Any]]:
        payload = request.payload
        requested = payload["requestedMessage"]
        evse = payload.get("evse")
        if not self.queue.connected:
            return Rejection("NotEnabled", "no CSMS connection to send it on").answer("Rejected")
        if evse is not None and self.availability.select(evse) is None:
            raise OcppError(
                "OccurrenceConstraintViolation",
                f"This station has no EVSE/connector {evse}",
                {"evse": evse},
            )
        if requested in OEM_WORK and OEM_WORK[requested] in self.delegated:
            if request.origin == "oem":
                return Rejection(
                    "OemSendsItself", f"The OEM sends {requested} itself, through ocpp_message"
                ).answer("Rejected")
            return self._oem_answers(request)
        if requested == "BootNotification":
            if self.registration.accepted:  # F06.FR.17
                return Rejection("NotEnabled", "the boot is already accepted").answer("Rejected")
            self.registration.trigger_boot()
            return {"status": "Accepted"}
        if requested == "Heartbeat":
            return CallResult({"status": "Accepted"}, (Send("Heartbeat", {}, HEARTBEAT),))
        if requested == "StatusNotification":
            return self._status_notification(evse)
        if requested == "MeterValues":
            return self._meter_values(evse)
        if requested == "TransactionEvent":
            return self._transaction_event(evse)
        if requested in IDLE:  # no GetLog / UpdateFirmware runs (F06.FR.16, L01.FR.25)
            idle = Send(requested, {"status": "Idle"}, ORIGIN)
            return CallResult({"status": "Accepted"}, (idle,))
        return {"status": "NotImplemented"}  # F06.FR.08

    def _status_notification(self, evse: dict[str, Any] | None) -> dict[str, Any] | CallResult:
        if evse is None or "connectorId" not in evse:  # F06.FR.12
            return Rejection(
                "MissingParam", "StatusNotification needs evse with id and connectorId"
            ).answer("Rejected")
        connectors = self.availability.select(evse) or []
        sends = tuple(
            Send("StatusNotification", self.availability.status_notification(c), "status")
            for c in connectors
        )
        return CallResult({"status": "Accepted"}, sends)

    def _evses(self, evse: dict[str, Any] | None) -> list[int]:
        """The EVSEs a trigger is for: the one named, else all."""
        if evse is not None:
            return [evse["id"]]
        return sorted({number for number, _ in self.availability.connectors})

    def _meter_values(self, evse: dict[str, Any] | None) -> dict[str, Any] | CallResult:
        if not meter_values.measurand_list(self.device_model.value(MEASURANDS)):
            return Rejection("NoMeasurands", f"{MEASURANDS} is empty").answer("Rejected")
        now = self.clock.timestamp()
        asks: list[Effect] = [
            AskOem(
                "meter_values",
                {"timestamp": now, "evse_id": self.evse_name(number)},
                f"{TRIGGER}meter:{number}:{next(self._keys)}",
            )
            for number in self._evses(evse)
        ]
        return CallResult({"status": "Accepted"}, tuple(asks))

    def _transaction_event(self, evse: dict[str, Any] | None) -> dict[str, Any] | CallResult:
        sessions = self.transactions.sessions
        running = [
            n for n in self._evses(evse) if n in sessions and sessions[n].transaction is not None
        ]
        if not running:
            where = f"EVSE {evse['id']}" if evse is not None else "any EVSE"
            return Rejection("NoTransaction", f"No transaction runs on {where}").answer("Rejected")
        timer = f"{TRIGGER}tx:{evse['id']}" if evse is not None else f"{TRIGGER}tx"
        return CallResult({"status": "Accepted"}, (Schedule(timer, 0),))

    async def _oem_answers(self, request: Request) -> dict[str, Any]:
        """The OEM does the work this message reports on: its answer is ours."""
        if self.delegate is None:
            return Rejection("NoOemAnswer", "No OEM link to hand it to").answer("Rejected")
        try:
            return await self.delegate(request)
        except OcppError as e:
            log.warning(
                "TriggerMessage(%s) handed to the OEM: %s",
                request.payload["requestedMessage"],
                e.error.description,
            )
            return Rejection("OemFailed", e.error.description[:512]).answer("Rejected")

    # --- after the response

    def timer(self, name: str) -> bool:
        """A timer of this block (TransactionEvent, after the response); False when not one."""
        if not name.startswith(f"{TRIGGER}tx"):
            return False
        _, _, number = name.removeprefix(TRIGGER).partition(":")
        evse = int(number) if number else None
        if not self.transactions.trigger(evse):  # F06.FR.07
            log.info("TriggerMessage(TransactionEvent): no transaction was open any more")
        return True

    def oem_answered(self, key: str, reply: OemReply) -> bool:
        """The OEM's meter_values for a TriggerMessage(MeterValues); False when not ours."""
        if not key.startswith(f"{TRIGGER}meter:"):
            return False
        evse = int(key.removeprefix(f"{TRIGGER}meter:").split(":")[0])
        if not isinstance(reply, OemAnswer):
            log.warning(
                "TriggerMessage(MeterValues) of EVSE %d: no meter value (%s)",
                evse,
                reply.description,
            )
            return True
        data = reply.data
        if data.get("message_type") == "CallError":
            log.warning(
                "TriggerMessage(MeterValues) of EVSE %d: the OEM answered %s",
                evse,
                data.get("error_code"),
            )
            return True
        value = meter_values.meter_value(
            data,
            meter_values.measurand_list(self.device_model.value(MEASURANDS)),
            "Trigger",
            data["timestamp"],
            self._phases(evse),
        )
        if value is None:
            log.warning(
                "TriggerMessage(MeterValues) of EVSE %d: the OEM's reading has none of %s",
                evse,
                MEASURANDS,
            )
            return True
        sent = self.queue.put(
            "MeterValues", {"evseId": evse, "meterValue": [value]}, ORIGIN, triggered=True
        )
        if isinstance(sent, NoAnswer):
            log.info("triggered MeterValues of EVSE %d not sent: %s", evse, sent.description)
        return True

    def _phases(self, evse: int) -> int:
        """The EVSE's SupplyPhases (3 when unknown; 0 for DC)."""
        try:
            text = self.device_model.value(f"EVSE[{evse}].SupplyPhases")
        except KeyError:
            return 3
        return int(text) if text is not None and text.isdigit() else 3
