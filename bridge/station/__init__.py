"""The charging station as plain Python: device model, certificates, network profiles, the outbound
queue, and the one dispatcher through which both the CSMS and the OEM execute OCPP requests.

No I/O: the driver (bridge.app) feeds it events — a CSMS connection opened or closed, a CALL, the
outcome of a message it sent, a timer, an OEM message — and carries out the effects it asks for
(`take_effects()`); messages to the CSMS go through its queue, whose drain task is the only sender.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge import schemas, versions
from bridge.config import Settings
from bridge.oem.link import OemAnswer, OemReply
from bridge.rpc import ERROR_CODES, CallError, CallResult, NoAnswer, OcppError, Outcome
from bridge.rpc.request import Request
from bridge.station.actions import OWNED, forwarded
from bridge.station.authorization import Authorization
from bridge.station.availability import FAULTS, Availability, evse_condition
from bridge.station.configuration import apply_configuration
from bridge.station.connectivity import Connectivity, Target
from bridge.station.connector_lock import ConnectorLock
from bridge.station.data_transfer import data_transfer
from bridge.station.device_model import DeviceModel
from bridge.station.dispatcher import Dispatcher, schema_call_error
from bridge.station.effects import Effect, Effects, Publish, Send
from bridge.station.message_queue import MessageQueue, Outgoing
from bridge.station.oem_device_model import OemDeviceModel
from bridge.station.provisioning.boot import Registration
from bridge.station.provisioning.network_profiles import NetworkProfiles
from bridge.station.provisioning.reports import Reports
from bridge.station.provisioning.variables import Provisioning
from bridge.station.remote_control import RemoteControl
from bridge.station.remote_start_stop import RemoteStartStop
from bridge.station.reservations import Reservations
from bridge.station.reset import BOOT_REASON, Resets
from bridge.station.security import CertificateStore, Security, check_password
from bridge.station.security_events import SecurityEvents
from bridge.station.transaction_status import TransactionStatus
from bridge.station.transactions import Transactions
from bridge.store import QueueTable, Store
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

PASSWORD = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name
SECURITY_PROFILE = "SecurityCtrlr.SecurityProfile"
FORWARD = "oem:"  # origin prefix of messages the OEM sent through ocpp_message

# Ask the OEM (name, data, timeout): the app's OEM link.
AskOem = Callable[[str, dict[str, Any], float | None], Awaitable[OemReply]]


def _sentence(text: str) -> str:
    """An outcome's description as the sentence of a CallError."""
    return text[:1].upper() + text[1:]


class Station:
    """Everything the station knows, built from the configuration over one store."""

    def __init__(
        self, settings: Settings, store: Store, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.store = store
        station = settings.station
        self.effects = Effects()
        self.clock = Clock()
        # The OEM's last applied device_model answer (identity, boot fields, EVSEs, components).
        self.oem_device_model = oem = OemDeviceModel(station, store)
        self.identity = oem.identity
        self.device_model = dm = DeviceModel.build(station.evses, store, oem.variables)
        oem.attach(dm)
        dm.bind("SecurityCtrlr.Identity", lambda: self.identity)
        dm.bind("ClockCtrlr.DateTime", self.clock.timestamp)
        dm.add_validator(PASSWORD, check_password)
        self.certificates = CertificateStore(store, dm)
        csms = settings.csms
        self.network_profiles = NetworkProfiles(
            store,
            dm,
            has_csms_root=lambda: bool(csms.ca_file or self.certificates.trust_anchors()),
            has_client_certificate=lambda: bool(csms.client_cert and csms.client_key),
        )
        self.security = Security(self.certificates)
        self.provisioning = Provisioning(dm, self.network_profiles)
        apply_configuration(settings, dm, self.network_profiles, store)  # ConfigError: unchanged

        self.queue = MessageQueue(store, dm, settings.storage.max_queued, monotonic)
        self.security_events = SecurityEvents(self.queue, self.clock, dm)
        self.clock.on_adjusted = self.security_events.clock_adjusted
        self.dispatcher = Dispatcher(self.effects)
        self.availability = Availability(dm, station.evses, self.clock, store)
        # The station's (CSMS-synchronized) time: cacheExpiryDateTime is the CSMS's clock.
        self.authorization = Authorization(store, dm, lambda: self.clock.now().timestamp())
        self.registration = Registration(
            station, dm, self.availability, self.queue, self.clock, self.effects, monotonic
        )
        self.registration.charging_station = oem.charging_station
        self.transactions = Transactions(
            station.evses,
            store,
            dm,
            self.queue,
            self.availability,
            self.authorization,
            self.clock,
            self.effects,
            oem.evse_name,
        )
        self.transactions.registration = self.registration
        dm.on_change(self.transactions.variable_changed)
        self.remote_start_stop = RemoteStartStop(self.transactions, dm, self.effects)
        self.resets = Resets(
            self.transactions,
            self.availability,
            self.registration,
            store,
            self.effects,
            lambda: self.ask_oem,
        )
        self.resets.on_station_reset = self.security_events.reset_or_reboot
        self.registration.reason = store.station_value(BOOT_REASON) or "PowerUp"
        self.registration.on_accepted.append(lambda: store.save_station_value(BOOT_REASON, None))
        self.reservations = Reservations(
            station.evses, dm, self.availability, self.queue, self.clock, self.effects, store
        )
        self.reservations.registration = self.registration
        self.reservations.in_use = self._evse_in_use
        self.transactions.reservations = self.reservations
        self.registration.on_accepted.append(self.transactions.boot_accepted)
        self.reports = Reports(dm, self.queue, self.clock)
        self.transaction_status = TransactionStatus(self.transactions, QueueTable(store))
        self.remote_control = RemoteControl(
            self.registration,
            self.availability,
            self.queue,
            dm,
            self.clock,
            self.transactions,
            oem.evse_name,
            settings.oem.delegate,
            self._delegate,
        )
        self.connector_lock = ConnectorLock(
            self.availability.connectors,
            self.transactions.sessions,
            oem.evse_name,
            lambda: self.ask_oem,
        )
        self.connectivity = Connectivity(
            csms,
            lambda: self.identity,
            dm,
            self.network_profiles,
            self.certificates,
            self.effects,
            store,
        )
        self.registration.on_accepted.append(self.connectivity.confirm)
        self.registration.on_accepted.append(self._remember_csms)
        self._accepted_by: str | None = None  # the URL of the CSMS that accepted the boot
        # NotifyEvent eventIds: unique across restarts too (seconds since the epoch, then +1).
        self._event_id = int(time.time()) & 0x3FFFFFFF
        for action, handler in (
            ("GetVariables", self.provisioning.get_variables),
            ("SetVariables", self.provisioning.set_variables),
            ("SetNetworkProfile", self.provisioning.set_network_profile),
            ("GetBaseReport", self.reports.get_base_report),
            ("GetReport", self.reports.get_report),
            ("TriggerMessage", self.remote_control.trigger_message),
            ("UnlockConnector", self.connector_lock.unlock_connector),
            ("InstallCertificate", self.security.install_certificate),
            ("GetInstalledCertificateIds", self.security.get_installed_certificate_ids),
            ("DeleteCertificate", self.security.delete_certificate),
            ("RequestStartTransaction", self.remote_start_stop.request_start),
            ("RequestStopTransaction", self.remote_start_stop.request_stop),
            ("Reset", self.resets.reset),
            ("ChangeAvailability", self.resets.change_availability),
            ("SendLocalList", self.authorization.send_local_list),
            ("GetLocalListVersion", self.authorization.get_local_list_version),
            ("ClearCache", self.authorization.clear_cache),
            ("ReserveNow", self.reservations.reserve_now),
            ("CancelReservation", self.reservations.cancel_reservation),
            ("GetTransactionStatus", self.transaction_status.get_transaction_status),
            ("DataTransfer", data_transfer),  # [oem] delegate replaces it below
        ):
            self.dispatcher.register(action, handler)
        # Set by the app: how to ask the OEM, and who hears the outcome of forwarded messages.
        self.ask_oem: AskOem | None = None
        self.forward_done: Callable[[str, Outcome], None] = lambda key, outcome: None
        for action in settings.oem.delegate:
            self.dispatcher.register(action, self._delegate)

    # --- events from the CSMS link

    def csms_connected(self, target: Target) -> None:
        if self.registration.accepted and target.url != self._accepted_by:
            # Another CSMS (a new network profile, identity): it has not accepted us yet.
            self.registration.status = None
        self.connectivity.connected(target)
        self.security_events.connected()
        self.registration.connected()
        self.effects.add(Publish("websocket_status", self.websocket_status()))

    def _remember_csms(self) -> None:
        active = self.connectivity.active
        self._accepted_by = active.url if active is not None else None

    def csms_failed(self, reason: str, description: str) -> None:
        """A connection attempt failed; `reason` is the transport's class of the failure
        (bridge.transport.csms.ConnectFailure), reported as a security event where it is one."""
        self.security_events.connection_failed(reason, description)

    def csms_disconnected(self) -> float:
        """The connection closed; the seconds to wait before connecting again."""
        for message in self.queue.close():
            self.answered(message, NoAnswer("offline", "the CSMS connection closed"))
        self.registration.disconnected()
        wait = self.connectivity.lost()
        self.effects.add(Publish("websocket_status", self.websocket_status()))
        return wait

    async def csms_call(self, request: Request) -> CallResult | CallError:
        """A CALL from the CSMS, through the registration gate, to the dispatcher."""
        refused = self.registration.gate(request.action, request.payload)
        if refused is not None:
            return refused
        return await self.dispatcher.call(request)

    def answered(self, message: Outgoing, outcome: Outcome) -> None:
        """The outcome of a message the station sent (or could not send)."""
        origin = message.origin
        if self.transactions.answered(message, outcome):
            return
        if self.remote_start_stop.answered(message, outcome):
            return
        if origin.startswith(FORWARD):
            self.forward_done(origin.removeprefix(FORWARD), outcome)
        elif origin == "report":
            self.reports.answered(message, outcome)
        else:
            self.registration.answered(message, outcome)

    def timer(self, name: str) -> None:
        if not (
            self.remote_control.timer(name)
            or self.transactions.timer(name)
            or self.remote_start_stop.timer(name)
            or self.reservations.timer(name)
        ):
            self.registration.timer(name)

    def started(self) -> None:
        """The driver runs (the OEM's device model is applied, or given up on)."""
        self.security_events.startup()  # A04: once per process start
        self.transactions.started()
        self.reservations.started()

    def _evse_in_use(self, evse: int) -> bool:
        """Does a session hold this EVSE (an authorization, a transaction)?"""
        session = self.transactions.sessions[evse]
        return session.token is not None or session.transaction is not None

    def take_effects(self) -> list[Effect]:
        return self.effects.take()

    def send(self, effect: Send) -> None:
        """Carry out a Send effect: queue the message (its origin hears if it cannot go)."""
        queued = self.queue.put(
            effect.action, effect.payload, effect.origin, triggered=effect.triggered
        )
        if isinstance(queued, NoAnswer):
            log.warning("%s not sent: %s", effect.action, queued.description)

    # --- the OEM's ocpp_message

    async def oem_call(self, request: Request) -> CallResult | CallError | Outgoing:
        """An ocpp_message request: executed like a CSMS CALL, or, for a station->CSMS action,
        queued for the CSMS (the Outgoing; its outcome reaches `forward_done`)."""
        if request.version in versions.RUNNING and request.action in forwarded(request.version):
            return self.forward(request)
        if request.action in self.settings.oem.delegate:
            return CallError(
                "NotSupported", f"{request.action} is answered by the OEM itself ([oem] delegate)"
            )
        if request.action in OWNED.get(request.version, ()):
            return CallError(
                "NotSupported",
                f"{request.action} is sent by the station itself; the session messages drive it",
            )
        return await self.dispatcher.call(request)

    def forward(self, request: Request) -> CallResult | CallError | Outgoing:
        payload = request.payload
        if not isinstance(payload, dict):
            return CallError("FormatViolation", "The payload of a CALL must be a JSON object")
        errors = schemas.ocpp_validator(request.version, request.action)(payload)
        if errors:
            return schema_call_error(errors, f"{request.action} payload")
        queued = self.queue.put(request.action, payload, FORWARD + request.message_id)
        if request.action == "FirmwareStatusNotification":  # after it, also when offline
            self.security_events.firmware_status(payload)  # L01.FR.31, L01.FR.03
        if isinstance(queued, NoAnswer):
            return CallError("GenericError", _sentence(queued.description))
        return queued

    # --- CSMS CALLs the OEM answers ([oem] delegate)

    async def _delegate(self, request: Request) -> dict[str, Any]:
        """Hand the CALL to the OEM as an ocpp_message request; its answer is ours."""
        if self.ask_oem is None:
            raise OcppError("GenericError", "No OEM link to hand the request to")
        reply = await self.ask_oem(
            "ocpp_message",
            {
                "ocpp_version": request.version,
                "message_name": request.action,
                "payload": request.payload,
            },
            None,
        )
        if not isinstance(reply, OemAnswer):
            raise OcppError("GenericError", _sentence(reply.description))
        data = reply.data
        if data.get("message_type") == "CallError":
            code = data.get("error_code")
            if code not in ERROR_CODES:
                code = "GenericError"
            raise OcppError(
                str(code), str(data.get("error_description", ""))[:255], data.get("error_details")
            )
        result: dict[str, Any] = data.get("payload", {})
        errors = schemas.ocpp_validator(request.version, request.action, response=True)(result)
        if errors:
            first = schemas.primary(errors)
            log.warning("the OEM's %s response is invalid: %s", request.action, first.sentence())
            raise OcppError(
                "GenericError", f"The OEM answered {request.action} invalidly: {first.sentence()}"
            )
        return result

    # --- answers from the OEM

    def oem_answered(self, key: str, reply: OemReply) -> None:
        """The answer to an AskOem effect."""
        if not (
            self.transactions.oem_answered(key, reply)
            or self.remote_start_stop.oem_answered(key, reply)
            or self.resets.oem_answered(key, reply)
            or self.remote_control.oem_answered(key, reply)
        ):
            log.info("OEM answer for %s: %s", key, type(reply).__name__)

    def apply_device_model(self, data: dict[str, Any]) -> bool:
        """The OEM's device_model answer: checked whole, then applied like the configuration
        file (bridge.station.oem_device_model); False when it was refused (nothing changed)."""
        return self.oem_device_model.apply(self, data)

    def evse_number(self, evse_id: str) -> int | None:
        """The OCPP EVSE id a session message's `evse_id` names: through the OEM's iso15118_id
        mapping when it gave one, else the decimal OCPP id; None when the station has no such
        EVSE."""
        return self.oem_device_model.evse_number(evse_id)

    def status_and_limits(self, data: dict[str, Any]) -> None:
        """The OEM's cs_status_and_limits (its answer at start, or an update): each EVSE's
        condition; StatusNotification for every connector that changed (G01) and, for a
        fault, NotifyEvent on the EVSE's Problem."""
        for entry in data["evses"]:
            evse = self.evse_number(entry["evse_id"])
            if evse is None:
                log.warning(
                    "cs_status_and_limits names EVSE %r, which this station has not",
                    str(entry["evse_id"])[:20],
                )
                continue
            state = evse_condition(entry)
            was = self.availability.condition.get(evse, "Available")
            changed = self.availability.set_evse(evse, state)
            if state == was:
                continue
            log.info("EVSE %d: %s (%s)", evse, state, entry.get("status_code"))
            self.transactions.fault(evse, state == "Faulted", str(entry.get("status_code")))
            if self.registration.accepted and self.queue.connected:
                self.registration.send_statuses(changed)
                if state == "Faulted":  # the EVSE's Problem (N07)
                    code = entry.get("status_code")
                    self._notify(evse, str(code) if code in FAULTS else "rcd_error", None, None)
        self.reservations.availability_changed()  # H01.FR.16: Removed when faulted

    # --- the OEM's session requests

    def set_network_connection(self, data: dict[str, Any]) -> dict[str, Any]:
        """set_ocpp_network_connection: {status: accepted|rejected, reason?}."""
        why = self.connectivity.set_network_connection(data)
        if why is not None:
            log.info("set_ocpp_network_connection rejected: %s", why.info)
            return {"status": "rejected", "reason": f"{why.reason}: {why.info}"}
        identity = data.get("identity")
        if identity and identity != self.identity:
            self.oem_device_model.set_identity(identity)
            self.identity = identity
        return {"status": "accepted"}

    # --- the OEM's session messages (bridge.station.transactions)

    def _evse(self, data: dict[str, Any], what: str) -> int | None:
        evse = self.evse_number(data["evse_id"])
        if evse is None:
            log.warning("%s names EVSE %r, which this station has not", what,
                        str(data["evse_id"])[:20])  # fmt: skip
        return evse

    def _connector(self, evse: int, connector: int, what: str) -> bool:
        if (evse, connector) in self.availability.connectors:
            return True
        log.warning("%s names connector %d of EVSE %d, which this station has not",
                    what, connector, evse)  # fmt: skip
        return False

    def cp_status(self, data: dict[str, Any]) -> None:
        evse = self._evse(data, "cp_status")
        if evse is not None and self._connector(evse, data["connector_id"], "cp_status"):
            self.transactions.cp_status(evse, data["connector_id"], data["state"])
            self.reservations.availability_changed()

    def contactor_status(self, data: dict[str, Any]) -> None:
        evse = self._evse(data, "cs_contactor_status")
        if evse is None:
            return
        self.transactions.contactor(evse, data["status"])
        if data["status"] == "error":
            self._notify(evse, "ContactorError", str(data.get("info", ""))[:500], None)

    async def authorization_request(self, data: dict[str, Any]) -> dict[str, Any]:
        """The OEM's authorization request: {status: accepted|rejected}."""
        evse = None
        if "evse_id" in data:
            evse = self._evse(data, "authorization")
            if evse is None:
                raise OcppError("PropertyConstraintViolation", "This station has no such EVSE")
        return await self.transactions.authorization_request(evse, data)

    def authorization_update(self, data: dict[str, Any]) -> None:
        evse = self._evse(data, "authorization")
        if evse is not None:
            self.transactions.oem_authorized(evse, data)

    def notify_event(self, data: dict[str, Any]) -> None:
        """notify_event -> NotifyEvent (N07): the station's or an EVSE's Problem."""
        evse = None
        if "evse_id" in data:
            evse = self._evse(data, "notify_event")
            if evse is None:
                return
        self._notify(
            evse,
            data.get("tech_code"),
            data.get("tech_info"),
            data.get("transaction_id"),
            data["event_id"],
            data["timestamp"],
        )

    def _notify(
        self,
        evse: int | None,
        tech_code: str | None,
        tech_info: str | None,
        transaction_id: str | None,
        event_id: int | None = None,
        timestamp: str | None = None,
    ) -> None:
        now = self.clock.timestamp()
        if event_id is None:
            self._event_id += 1
            event_id = self._event_id
        event: dict[str, Any] = {
            "eventId": event_id,
            "timestamp": timestamp or now,
            "trigger": "Alerting",
            "actualValue": "true",
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "EVSE", "evse": {"id": evse}}
            if evse is not None
            else {"name": "ChargingStation"},
            "variable": {"name": "Problem"},
        }
        for key, value in (
            ("techCode", tech_code),
            ("techInfo", tech_info),
            ("transactionId", transaction_id),
        ):
            if value:
                event[key] = value
        sent = self.queue.put(
            "NotifyEvent", {"generatedAt": now, "seqNo": 0, "eventData": [event]}, "event"
        )
        if isinstance(sent, NoAnswer):
            log.warning("NotifyEvent %d not sent: %s", event_id, sent.description)

    def change_availability_update(self, data: dict[str, Any]) -> None:
        """The OEM takes the station, an EVSE or a connector out of service or back
        (persisted, G03.FR.05); a running transaction there ends."""
        evse = connector = None
        if "evse_id" in data:
            evse = self._evse(data, "change_availability")
            if evse is None:
                return
            connector = data.get("connector_id")
            if connector is not None and not self._connector(
                evse, connector, "change_availability"
            ):
                return
        operative = data["operational_status"] == "operative"
        changed = self.availability.set_operative(operative, evse, connector)
        if not operative:
            evses = sorted({c[0] for c in self.availability.connectors
                            if evse is None or c[0] == evse})  # fmt: skip
            self.transactions.out_of_service([e for e in evses if not self.availability.usable(e)])
        if changed and self.registration.accepted and self.queue.connected:
            self.registration.send_statuses(changed)
        self.reservations.availability_changed()  # H01.FR.17: Removed when unavailable

    # --- the state the OEM can ask for

    def websocket_status(self) -> dict[str, Any]:
        """websocket_status `data` (never the password)."""
        target = self.connectivity.active
        data: dict[str, Any] = {"status": "connected" if target is not None else "disconnected"}
        data["identity"] = self.identity
        if target is not None:
            profile = self.network_profiles.get(target.slot) or {}
            data["csms_url"] = profile.get("ocppCsmsUrl", target.url)
            data["security_profile"] = target.security_profile
        return data
