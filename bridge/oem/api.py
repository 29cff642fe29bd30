"""The OEM's MQTT API: each envelope, by name and type, to what handles it.

Bytes in, bytes out: the transport calls `handle` for every message on the request topic and
publishes whatever comes back on the response topic. Every message is checked against its
schema in `schemas/` (`<name>.<type>.json`) where it enters; nothing here raises.

- `request`: `ocpp_message` runs through the station's dispatcher (CSMS->station actions) or is
  sent to the CSMS as the station's own CALL (station->CSMS actions); the session requests
  (`websocket_status`, `service_status`, `set_ocpp_network_connection`, ...) have their handlers.
  Each request gets exactly one answer with its id.
- `response`: an answer to one of the bridge's own requests (the OEM link matches it by id).
- `update`: news from the OEM; never answered, a bad one is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from bridge import __version__, schemas, versions
from bridge.oem import envelope
from bridge.oem.link import OemAnswer, OemLink, OemNoAnswer
from bridge.rpc import CallError, CallResult, NoAnswer, OcppError, Outcome
from bridge.rpc.correlator import Correlator
from bridge.rpc.request import Request
from bridge.station import Station
from bridge.station.dispatcher import schema_call_error
from bridge.station.message_queue import Outgoing

log = logging.getLogger(__name__)

OCPP_MESSAGE: Final = "ocpp_message"
# The session API's version, reported in service_status.
API_VERSION: Final = "1.0"

Data = dict[str, Any]
RequestHandler = Callable[[Data], Data | Awaitable[Data]]
UpdateHandler = Callable[[Data], None]


class MqttApi:
    def __init__(self, station: Station, link: OemLink) -> None:
        self.station = station
        self.link = link
        self.service_status = "starting"
        self._busy_count, self._busy_logged = 0, 0.0
        self._envelope = schemas.envelope_validator("envelope")
        self._forwards: Correlator[Outcome] = Correlator()
        self._requests: dict[str, RequestHandler] = {}
        self._updates: dict[str, UpdateHandler] = {}
        self._known = frozenset(schemas.envelope_schema_names())
        station.forward_done = self._forward_done
        # Set by the app: carry out the effects a CallResult asks for, once it is answered.
        self.after: Callable[[CallResult], None] = lambda result: None
        self.on_request("websocket_status", lambda data: station.websocket_status())
        self.on_request("service_status", lambda data: self.service_status_data())
        self.on_request("set_ocpp_network_connection", station.set_network_connection)
        self.on_update("cs_status_and_limits", station.status_and_limits)
        # The charging session (SESSION_API.md): bridge.station.transactions.
        self.on_request("authorization", station.authorization_request)
        self.on_update("authorization", station.authorization_update)
        self.on_update("cp_status", station.cp_status)
        self.on_update("cs_contactor_status", station.contactor_status)
        self.on_update("notify_event", station.notify_event)
        self.on_update("change_availability", station.change_availability_update)

    def on_request(self, name: str, handler: RequestHandler) -> None:
        """Answer `name` requests with `handler(data)` (the response's data)."""
        self._requests[name] = handler

    def on_update(self, name: str, handler: UpdateHandler) -> None:
        self._updates[name] = handler

    def service_status_data(self, status: str | None = None) -> Data:
        return {
            "service": "ocpp",
            "software_version": __version__,
            "api_version": API_VERSION,
            "status": status or self.service_status,
        }

    # --- entry

    async def handle(self, raw: bytes) -> bytes | None:
        """Answer one message from the OEM; None when there is no answer to send."""
        try:
            message = envelope.decode(raw)
        except envelope.Dropped as e:
            log.warning("dropped a message from the OEM: %s", e)
            return None
        try:
            if message.type == "response":
                self._response(message)
                return None
            if message.type == "update":
                self._update(message)
                return None
            body = await self._request(message)
        except Exception:  # the last line of defence: a bug must not cost the OEM its answer
            log.exception("failed to handle message %s", message.id)
            if message.type in ("response", "update"):
                return None
            body = _error(message, CallError("InternalError", "The bridge failed to answer"))
        return envelope.encode(body) if body is not None else None

    def busy(self, raw: bytes) -> bytes | None:
        """The answer to a request that found the bridge overloaded (never silence)."""
        try:
            message = envelope.decode(raw)
        except envelope.Dropped:
            return None
        if message.type in ("response", "update"):
            return None
        self._busy_count += 1
        now = time.monotonic()
        if now - self._busy_logged >= 1.0:  # one line a second, not one per message
            log.warning("overloaded: %d more requests answered busy", self._busy_count)
            self._busy_count, self._busy_logged = 0, now
        error = CallError(
            "GenericError", "The bridge is busy: too many requests are waiting; send it again"
        )
        return envelope.encode(_error(message, error))

    def _validator(self, name: Any, kind: str) -> schemas.Validate | None:
        """The schema of `<name>.<kind>` messages; None when there is none (only the names of
        schemas/ are looked up: a name from the network is never a path)."""
        key = f"{name}.{kind}"
        if key not in self._known:
            return None
        return schemas.envelope_validator(key)

    # --- responses to the bridge's requests

    def _response(self, message: envelope.Message) -> None:
        waiting = self.link.waiting_for(message.id)
        if waiting is None:
            log.warning("dropped response %s: no request of the bridge waits for it", message.id)
            return
        if message.name != waiting:
            why = f"answers {waiting} under the name {envelope.response_name(message.name)!r}"
            self.link.answered(message.id, OemNoAnswer("invalid", why))
            return
        validate = self._validator(waiting, "response")
        errors = validate(message.body) if validate is not None else self._envelope(message.body)
        if errors:
            first = schemas.primary(errors)
            log.warning("the OEM's %s response is invalid: %s", waiting, first.sentence())
            self.link.answered(message.id, OemNoAnswer("invalid", first.sentence()))
            return
        self.link.answered(message.id, OemAnswer(waiting, message.body["data"]))

    # --- updates

    def _update(self, message: envelope.Message) -> None:
        name = envelope.response_name(message.name)
        validate = self._validator(message.name, "update")
        if validate is None:
            log.warning("dropped update %s: there is no '%s' update", message.id, name)
            return
        errors = validate(message.body)
        if errors:
            log.warning(
                "dropped %s update %s: %s", name, message.id, schemas.primary(errors).sentence()
            )
            return
        handler = self._updates.get(name)
        if handler is None:
            log.info("%s update %s: not acted on by this version", name, message.id)
            return
        handler(message.body["data"])

    # --- requests

    async def _request(self, message: envelope.Message) -> Data:
        if message.name == OCPP_MESSAGE:
            return await self._ocpp_message(message)
        validate = self._validator(message.name, "request")
        handler = self._requests.get(str(message.name))
        if validate is None or handler is None:
            errors = self._envelope(message.body)
            if errors:
                return _error(message, schema_call_error(errors, "Envelope"))
            what = "Unknown message name" if validate is None else "Not supported yet:"
            return _error(message, CallError("NotSupported", f"{what} '{message.name}'"))
        errors = validate(message.body)
        if errors:
            return _error(message, schema_call_error(errors, str(message.name)))
        try:
            data = handler(message.body["data"])
            if not isinstance(data, dict):
                data = await data
        except OcppError as e:  # a request the handler refuses (e.g. an unknown EVSE)
            return _error(message, e.error)
        return envelope.response(message.id, str(message.name), data)

    async def _ocpp_message(self, message: envelope.Message) -> Data:
        ocpp_request = self._validator(OCPP_MESSAGE, "request")
        assert ocpp_request is not None
        errors = [
            e
            for e in ocpp_request(message.body)
            # Which actions exist is the dispatcher's to say (NotImplemented / NotSupported).
            if not (e.path == ("data", "message_name") and e.keyword == "enum")
        ]
        if errors:
            return _error(message, schema_call_error(errors, OCPP_MESSAGE))
        data = message.body["data"]
        version, action = data["ocpp_version"], data["message_name"]
        request = Request("oem", version, action, data["payload"], message.id)
        result = await self.station.oem_call(request)
        if isinstance(result, Outgoing):
            result = await self._forwarded(message.id, result)
        elif isinstance(result, CallResult):
            self.after(result)
        if isinstance(result, CallError):
            log.info("ocpp_message %s %s: %s", message.id, action, result.code)
        return envelope.response(message.id, OCPP_MESSAGE, envelope.ocpp_data(result, version))

    async def _forwarded(self, key: str, message: Outgoing) -> CallResult | CallError:
        """Wait for the CSMS's answer to a message the OEM sent it through the station."""
        dm, queue = self.station.device_model, self.station.queue
        timeout = float(dm.int_value("OCPPCommCtrlr.MessageTimeout[Default]"))
        outcome: Outcome | None = None
        if not message.durable or (queue.connected and queue.accepted and queue.backlog == 1):
            # Offline or behind others, a durable message goes when it can: say so at once.
            # In memory it always ends (answer, timeout, closed connection) within one
            # MessageTimeout; a durable one may wait for retries: "queued" after that.
            self._forwards.open(key)
            wait = timeout + 5 if message.durable else timeout * 2 + 5
            outcome = await self._forwards.wait(key, wait)
        if isinstance(outcome, CallResult | CallError):
            return outcome
        if outcome is None and message.durable:
            return CallError(
                "GenericError",
                "Queued: not delivered yet (no CSMS connection, or messages before it); the "
                "station sends it in order when it can",
                {"queued": True, "messageId": message.message_id},
            )
        if isinstance(outcome, NoAnswer) and outcome.reason == "timeout":
            return CallError("GenericError", f"The CSMS did not answer {message.action} in time")
        return CallError("GenericError", "No CSMS connection")

    def _forward_done(self, key: str, outcome: Outcome) -> None:
        if not self._forwards.resolve(key, outcome):
            log.debug("forwarded message of request %s finished: %s", key, type(outcome).__name__)


def _error(message: envelope.Message, error: CallError) -> Data:
    data = message.body.get("data")
    version = data.get("ocpp_version") if isinstance(data, dict) else None
    if version not in versions.KNOWN:
        version = versions.OCPP201
    log.info("answering message %s with %s: %s", message.id, error.code, error.description)
    return envelope.response(
        message.id, envelope.response_name(message.name), envelope.ocpp_data(error, version)
    )
