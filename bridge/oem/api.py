"""The OEM's MQTT API (SPEC §4): route each envelope by name to what handles it.

Bytes in, bytes out: the transport calls `handle` for every message on the request topic and
publishes whatever comes back on the response topic. Nothing here raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge import schemas
from bridge.oem import envelope
from bridge.rpc import CallError, CallResult
from bridge.station.dispatcher import STATION_VERSION, Dispatcher, schema_call_error

log = logging.getLogger(__name__)

OCPP_MESSAGE = "ocpp_message"


class MqttApi:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._follow_ups: set[asyncio.Task[None]] = set()
        self._busy_count, self._busy_logged = 0, 0.0
        self._envelope = schemas.envelope_validator("envelope")
        self._ocpp_request = schemas.envelope_validator("ocpp_message.request")

    async def handle(self, raw: bytes) -> bytes | None:
        """Answer one message from the OEM; None when it is dropped."""
        try:
            message = envelope.decode(raw)
        except envelope.Dropped as e:
            log.warning("dropped a message from the OEM: %s", e)
            return None
        try:
            body = await self._answer(message, len(raw))
        except Exception:  # the last line of defence: a bug must not cost the OEM its answer
            log.exception("failed to answer message %s", message.id)
            body = self._error(message, CallError("InternalError", "The bridge failed to answer"))
        return envelope.encode(body) if body is not None else None

    def busy(self, raw: bytes) -> bytes | None:
        """The answer to a request that found the bridge overloaded (never silence)."""
        try:
            message = envelope.decode(raw)
        except envelope.Dropped:
            return None
        if message.type == "response":
            return None
        self._busy_count += 1
        now = time.monotonic()
        if now - self._busy_logged >= 1.0:  # one line a second, not one per message
            log.warning("overloaded: %d more requests answered busy", self._busy_count)
            self._busy_count, self._busy_logged = 0, now
        error = CallError(
            "GenericError", "The bridge is busy: too many requests are waiting; send it again"
        )
        return envelope.encode(self._error(message, error))

    async def _answer(self, message: envelope.Message, size: int) -> dict[str, Any] | None:
        if message.type == "response":
            # Answers to the bridge's own requests; the bridge asks nothing of the OEM yet.
            log.warning(
                "dropped response %s: no request of the bridge is waiting for it", message.id
            )
            return None
        if message.name != OCPP_MESSAGE:
            errors = self._envelope(message.body)
            if errors:
                return self._error(message, schema_call_error(errors, "Envelope"))
            return self._error(
                message, CallError("NotSupported", f"Unknown message name '{message.name}'")
            )
        errors = [
            e
            for e in self._ocpp_request(message.body)
            # Which actions exist is the dispatcher's to say (NotImplemented / NotSupported).
            if not (e.path == ("data", "message_name") and e.keyword == "enum")
        ]
        if errors:
            return self._error(message, schema_call_error(errors, "ocpp_message"))
        data = message.body["data"]
        version = data["ocpp_version"]
        result = await self.dispatcher.call(version, data["message_name"], data["payload"], size)
        if isinstance(result, CallResult) and result.follow_up is not None:
            task = asyncio.create_task(_run(result.follow_up))
            self._follow_ups.add(task)
            task.add_done_callback(self._follow_ups.discard)
        if isinstance(result, CallError):
            log.info("ocpp_message %s %s: %s", message.id, data["message_name"], result.code)
        return envelope.response(message.id, OCPP_MESSAGE, envelope.ocpp_data(result, version))

    @staticmethod
    def _error(message: envelope.Message, error: CallError) -> dict[str, Any]:
        data = message.body.get("data")
        version = data.get("ocpp_version") if isinstance(data, dict) else None
        if version not in schemas.OCPP_VERSIONS:
            version = STATION_VERSION
        log.info("answering message %s with %s: %s", message.id, error.code, error.description)
        return envelope.response(
            message.id, envelope.response_name(message.name), envelope.ocpp_data(error, version)
        )


async def _run(follow_up: Callable[[], Awaitable[None]]) -> None:
    """Work a request started (e.g. the message a TriggerMessage asked for): never raises."""
    try:
        await follow_up()
    except Exception:
        log.exception("follow-up of an ocpp_message failed")
