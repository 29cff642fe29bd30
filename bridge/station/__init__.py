"""The charging station as plain Python: device model, certificates, network profiles, the outbound
queue, and the one dispatcher through which both the CSMS and the OEM execute OCPP requests.

No I/O: the driver (bridge.app) feeds it events — a CSMS connection opened or closed, a CALL, the
outcome of a message it sent, a timer, an OEM message — and carries out the effects it asks for
(`take_effects()`); messages to the CSMS go through its queue, whose drain task is the only sender.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge import schemas, versions
from bridge.config import ConfigError, Settings, device_model_text
from bridge.oem.link import OemAnswer, OemReply
from bridge.rpc import ERROR_CODES, CallError, CallResult, NoAnswer, OcppError, Outcome
from bridge.rpc.request import Request
from bridge.station.actions import OWNED, forwarded
from bridge.station.availability import Availability
from bridge.station.connectivity import Connectivity, Target
from bridge.station.device_model import DeviceModel, UnknownKey, Variable
from bridge.station.dispatcher import Dispatcher, schema_call_error
from bridge.station.effects import Effect, Effects, Publish, Send
from bridge.station.message_queue import MessageQueue, Outgoing
from bridge.station.oem_device_model import OemDeviceModel
from bridge.station.provisioning.boot import Registration
from bridge.station.provisioning.network_profiles import (
    CONFIG_SLOT,
    NetworkProfiles,
    check_connection_data,
)
from bridge.station.provisioning.reports import Reports
from bridge.station.provisioning.variables import Provisioning
from bridge.station.remote_control import RemoteControl
from bridge.station.security import CertificateStore, Security, check_password
from bridge.store import Store
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

PASSWORD = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name
SECURITY_PROFILE = "SecurityCtrlr.SecurityProfile"
FORWARD = "oem:"  # origin prefix of messages the OEM sent through ocpp_message

# Ask the OEM (name, data, timeout): the app's OEM link.
AskOem = Callable[[str, dict[str, Any], float | None], Awaitable[OemReply]]


def _digest(key: str, value: str) -> str:
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()


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
        self._apply_configuration()

        self.queue = MessageQueue(store, dm, settings.storage.max_queued, monotonic)
        self.dispatcher = Dispatcher(self.effects)
        self.availability = Availability(dm, station.evses, self.clock)
        self.registration = Registration(
            station, dm, self.availability, self.queue, self.clock, self.effects, monotonic
        )
        self.registration.charging_station = oem.charging_station
        self.reports = Reports(dm, self.queue, self.clock)
        self.remote_control = RemoteControl(self.registration, self.availability, self.queue)
        self.connectivity = Connectivity(
            csms, lambda: self.identity, dm, self.network_profiles, self.certificates, self.effects
        )
        self.registration.on_accepted.append(self.connectivity.confirm)
        for action, handler in (
            ("GetVariables", self.provisioning.get_variables),
            ("SetVariables", self.provisioning.set_variables),
            ("SetNetworkProfile", self.provisioning.set_network_profile),
            ("GetBaseReport", self.reports.get_base_report),
            ("GetReport", self.reports.get_report),
            ("TriggerMessage", self.remote_control.trigger_message),
            ("InstallCertificate", self.security.install_certificate),
            ("GetInstalledCertificateIds", self.security.get_installed_certificate_ids),
            ("DeleteCertificate", self.security.delete_certificate),
        ):
            self.dispatcher.register(action, handler)
        # Set by the app: how to ask the OEM, and who hears the outcome of forwarded messages.
        self.ask_oem: AskOem | None = None
        self.forward_done: Callable[[str, Outcome], None] = lambda key, outcome: None
        for action in settings.oem.delegate:
            self.dispatcher.register(action, self._delegate)

    # --- events from the CSMS link

    def csms_connected(self, target: Target) -> None:
        self.connectivity.connected(target)
        self.registration.connected()
        self.effects.add(Publish("websocket_status", self.websocket_status()))

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
        if origin.startswith(FORWARD):
            self.forward_done(origin.removeprefix(FORWARD), outcome)
        elif origin == "report":
            self.reports.answered(message, outcome)
        else:
            self.registration.answered(message, outcome)

    def timer(self, name: str) -> None:
        self.registration.timer(name)

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
        if isinstance(queued, NoAnswer):
            return CallError(
                "GenericError", queued.description[:1].upper() + queued.description[1:]
            )
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
            raise OcppError("GenericError", reply.description[:1].upper() + reply.description[1:])
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
        """The answer to an AskOem effect (no block asks yet)."""
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
        """The OEM's cs_status_and_limits (answer or update)."""
        log.info("cs_status_and_limits from the OEM: %d EVSEs", len(data.get("evses", [])))

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

    def _apply_configuration(self) -> None:
        """Apply configuration values that changed since they were last applied.

        A value from the file is written at first start and again whenever the file changes it;
        in between, what the CSMS or the OEM set (SetVariables, SetNetworkProfile) stays.
        """
        settings, dm = self.settings, self.device_model
        applied = self.store.applied_config()

        def changed(key: str, value: str) -> str | None:
            digest = _digest(key, value)
            return digest if applied.get(key) != digest else None

        csms = settings.csms
        # (config key, variable, value): implicit ones first, so [device_model] can override them.
        wanted: list[tuple[str, Variable, str]] = [
            ("csms.security_profile", dm[SECURITY_PROFILE], str(csms.security_profile)),
            ("station.vendor", dm["SecurityCtrlr.OrganizationName"], settings.station.vendor),
        ]
        password = csms.password.get_secret_value()
        if password:
            wanted.append(("csms.password", dm[PASSWORD], password))
        for key, raw in settings.device_model.items():
            name = f'device_model."{key}"'
            try:
                variable = dm.resolve(key)
            except UnknownKey as e:
                raise ConfigError(f"{name}: {e}") from None
            if variable.definition.source != "stored":
                raise ConfigError(f"{name}: the station keeps this value itself; it cannot be set")
            wanted.append((name, variable, device_model_text(raw)))

        if csms.url:  # slot 1: the installer's connection
            data = {
                "ocppCsmsUrl": csms.url,
                "securityProfile": csms.security_profile,
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppInterface": "Wired0",
                "messageTimeout": dm.int_value("OCPPCommCtrlr.MessageTimeout[Default]"),
            }
            digest = changed("csms.url", repr(sorted(data.items())))
            if digest is not None:
                # The installer's file may set any profile, including a lower one.
                why = check_connection_data(data, 0)
                if why is not None:  # pragma: no cover - the settings already checked the URL
                    raise ConfigError(f"csms.url: {why.info}")
                self.network_profiles.save(CONFIG_SLOT, data)
                self.store.save_variable_values([], [("csms.url", digest)])

        changes: list[tuple[Variable, str, str]] = []
        digests: list[tuple[str, str]] = []
        for key, variable, value in wanted:
            digest = changed(key, value)
            if digest is None:
                continue
            why = dm.check(variable, value)
            if why is not None:
                raise ConfigError(f"{key}: {why.info}")
            changes.append((variable, "Actual", value))
            digests.append((key, digest))
        if changes:
            dm.write(changes, digests)
            for variable, _, _ in changes:
                log.info("configuration applied to %s", variable.key)

        if csms.security_profile in (1, 2) and dm[PASSWORD].read() is None:
            raise ConfigError(
                f"csms.password: required for security_profile {csms.security_profile}"
            )
