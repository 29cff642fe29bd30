"""One dispatcher, two doors: a CALL from the CSMS and an OEM `ocpp_message` run the same handler.

The dispatcher validates the payload against the OCPP schema of its version and action, runs the
handler, checks what the handler returns against the response schema, and turns every failure
into the CallError a CSMS would get.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from bridge import schemas
from bridge.rpc import CallError, CallResult, OcppError

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[Payload], Payload | CallResult | Awaitable[Payload | CallResult]]

STATION_VERSION = "ocpp2.0.1"

# The size in bytes of the message being handled, as it arrived (for BytesPerMessage limits).
_message_size: ContextVar[int | None] = ContextVar("message_size", default=None)


def message_size(payload: Any) -> int:
    """Bytes of the message being handled: as received when known, else the payload's JSON."""
    size = _message_size.get()
    if size is None:
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return size


# Actions a CSMS never sends to a Charging Station (OCPP 2.0.1, CS → CSMS only).
_STATION_TO_CSMS = frozenset(
    {
        "Authorize",
        "BootNotification",
        "ClearedChargingLimit",
        "FirmwareStatusNotification",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "NotifyChargingLimit",
        "NotifyCustomerInformation",
        "NotifyDisplayMessages",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "NotifyEvent",
        "NotifyMonitoringReport",
        "NotifyReport",
        "PublishFirmwareStatusNotification",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)


class Dispatcher:
    """Maps (OCPP version, action) to the handler that executes it against the station."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def register(self, action: str, handler: Handler, version: str = STATION_VERSION) -> None:
        if action not in schemas.ocpp_actions(version):
            raise ValueError(f"{action} is not an {version} action")
        self._handlers[(version, action)] = handler
        # Compile both schemas now, not on the first request.
        schemas.ocpp_validator(version, action)
        schemas.ocpp_validator(version, action, response=True)

    def implemented(self, version: str = STATION_VERSION) -> list[str]:
        return sorted(action for v, action in self._handlers if v == version)

    def _unhandled(self, version: str, action: str) -> CallError:
        if version not in schemas.OCPP_VERSIONS:
            return CallError(
                "NotSupported",
                f"Unknown OCPP version '{version[:20]}'; this station speaks {STATION_VERSION}",
            )
        if action not in schemas.ocpp_actions(version):
            # OCPP-J: an action the receiver does not know.
            return CallError("NotImplemented", f"{action[:60]} is not an action of {version}")
        if version != STATION_VERSION:
            return CallError(
                "NotImplemented",
                f"This station implements {STATION_VERSION}; {version} {action} is not implemented",
            )
        if action in _STATION_TO_CSMS:
            return CallError(
                "NotSupported",
                f"{action} is sent by a Charging Station to the CSMS, not to a Charging Station",
            )
        return CallError("NotImplemented", f"{action} is not implemented by this station")

    async def call(
        self, version: str, action: str, payload: Any, size: int | None = None
    ) -> CallResult | CallError:
        """Execute one CALL; never raises. `size`: bytes of the message as it arrived."""
        handler = self._handlers.get((version, action))
        if handler is None:
            return self._unhandled(version, action)
        if not isinstance(payload, dict):
            return CallError("FormatViolation", "The payload of a CALL must be a JSON object")
        errors = schemas.ocpp_validator(version, action)(payload)
        if errors:
            return schema_call_error(errors, f"{action} payload")
        follow_up = None
        token = _message_size.set(size)
        try:
            returned = handler(payload)
            if inspect.isawaitable(returned):
                returned = await returned
            if isinstance(returned, CallResult):
                result, follow_up = returned.payload, returned.follow_up
            else:
                result = returned
        except OcppError as e:
            return e.error
        except Exception:
            log.exception("%s handler failed", action)
            return CallError("InternalError", f"The station failed to process {action}")
        finally:
            _message_size.reset(token)
        response_errors = schemas.ocpp_validator(version, action, response=True)(result)
        if response_errors:
            log.error(
                "%s response does not match its schema: %s",
                action,
                "; ".join(e.sentence() for e in response_errors[:5]),
            )
            return CallError("InternalError", f"The station built an invalid {action} response")
        return CallResult(result, follow_up)


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
