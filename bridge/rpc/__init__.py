"""OCPP-J RPC framework results: a CallResult payload or a CallError (OCPP 2.0.1 part 4, 4.3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

# The RPC Framework error codes of OCPP-J (1.6 spells FormationViolation; we speak 2.0.1's names).
ERROR_CODES: Final = (
    "FormatViolation",
    "GenericError",
    "InternalError",
    "MessageTypeNotSupported",
    "NotImplemented",
    "NotSupported",
    "OccurrenceConstraintViolation",
    "PropertyConstraintViolation",
    "ProtocolError",
    "RpcFrameworkError",
    "SecurityError",
    "TypeConstraintViolation",
)

DESCRIPTION_MAX: Final = 255


@dataclass(frozen=True, slots=True)
class CallResult:
    payload: dict[str, Any]
    # Work to start once the response is on its way (e.g. the message a TriggerMessage asked for:
    # F06.FR.04 wants the response first). Both doors run it after sending the response.
    # A handler returns a CallResult (instead of the bare payload) when it has such work.
    follow_up: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CallError:
    code: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"not an OCPP-J error code: {self.code}")
        if len(self.description) > DESCRIPTION_MAX:
            object.__setattr__(self, "description", self.description[: DESCRIPTION_MAX - 1] + "…")


class OcppError(Exception):
    """Raised by a handler to answer with a CallError instead of a CallResult."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error = CallError(code, description, details or {})
