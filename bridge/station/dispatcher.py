"""One dispatcher, two doors: a CALL from the CSMS and an OEM `ocpp_message` are the same `Request`
and run the same handler.

The dispatcher validates the payload against the OCPP schema of its version and action, runs the
handler, checks what the handler returns against the response schema, and turns every failure
into the CallError a CSMS would get. Effects a synchronous handler asks for go with its
CallResult, to be carried out once the response is sent (F06.FR.04).

OCPP-J (OCPP 2.0.1 part 4, 4.3, table "Valid Error Codes"): NotImplemented is "requested Action is
not known by receiver", NotSupported is "requested Action is recognized but not supported by the
receiver". So an action that does not exist in the version is NotImplemented; one that exists but
the station does not execute (not implemented yet, sent in the wrong direction, or of a version
the station does not run) is NotSupported.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bridge import schemas, versions
from bridge.rpc import CallError, CallResult, OcppError
from bridge.rpc.request import Request
from bridge.station.actions import STATION_TO_CSMS
from bridge.station.effects import Effects

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[Request], Payload | CallResult | Awaitable[Payload | CallResult]]


class Dispatcher:
    """Maps (OCPP version, action) to the handler that executes it against the station."""

    def __init__(self, effects: Effects | None = None) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._effects = effects if effects is not None else Effects()

    def register(self, action: str, handler: Handler, version: str = versions.OCPP201) -> None:
        if action not in schemas.ocpp_actions(version):
            raise ValueError(f"{action} is not an {version} action")
        self._handlers[(version, action)] = handler
        # Compile both schemas now, not on the first request.
        schemas.ocpp_validator(version, action)
        schemas.ocpp_validator(version, action, response=True)

    def implemented(self, version: str = versions.OCPP201) -> list[str]:
        return sorted(action for v, action in self._handlers if v == version)

    @staticmethod
    def unhandled(version: str, action: str) -> CallError:
        """The CallError for a CALL no handler executes."""
        if version not in versions.KNOWN:
            return CallError(
                "NotSupported",
                f"Unknown OCPP version '{version[:20]}'; this station runs "
                + ", ".join(versions.RUNNING),
            )
        if action not in schemas.ocpp_actions(version):
            return CallError("NotImplemented", f"{action[:60]} is not an action of {version}")
        if version not in versions.RUNNING:
            return CallError(
                "NotSupported",
                f"This station runs {', '.join(versions.RUNNING)}; {version} is not supported",
            )
        if action in STATION_TO_CSMS.get(version, ()):
            return CallError(
                "NotSupported",
                f"{action} is sent by a Charging Station to the CSMS, not to a Charging Station",
            )
        return CallError("NotSupported", f"{action} is not supported by this station")

    async def call(self, request: Request) -> CallResult | CallError:
        """Execute one CALL; never raises."""
        version, action, payload = request.version, request.action, request.payload
        handler = self._handlers.get((version, action))
        if handler is None:
            return self.unhandled(version, action)
        if not isinstance(payload, dict):
            return CallError("FormatViolation", "The payload of a CALL must be a JSON object")
        errors = schemas.ocpp_validator(version, action)(payload)
        if errors:
            return schema_call_error(errors, f"{action} payload")
        effects: tuple[Any, ...] = ()
        before = len(self._effects.items)
        try:
            returned = handler(request)
            if inspect.isawaitable(returned):
                returned = await returned
            else:  # what a synchronous handler asked for goes with its response
                effects = tuple(self._effects.items[before:])
                del self._effects.items[before:]
            if isinstance(returned, CallResult):
                result, effects = returned.payload, (*effects, *returned.effects)
            else:
                result = returned
        except OcppError as e:
            del self._effects.items[before:]
            return e.error
        except Exception:
            del self._effects.items[before:]
            log.exception("%s handler failed", action)
            return CallError("InternalError", f"The station failed to process {action}")
        response_errors = schemas.ocpp_validator(version, action, response=True)(result)
        if response_errors:
            log.error(
                "%s response does not match its schema: %s",
                action,
                "; ".join(e.sentence() for e in response_errors[:5]),
            )
            return CallError("InternalError", f"The station built an invalid {action} response")
        return CallResult(result, effects)


def schema_call_error(errors: list[schemas.SchemaError], subject: str) -> CallError:
    """The CallError for JSON that failed its schema: the gravest error decides the code."""
    first = schemas.primary(errors)
    return CallError(
        first.code,
        f"{subject}: {first.sentence()}",
        {
            "path": first.location,
            "errors": [{"path": e.location, "message": e.message} for e in errors[:10]],
        },
    )
