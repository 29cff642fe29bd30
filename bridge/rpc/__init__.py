"""OCPP-J RPC framework results (OCPP 2.0.1 part 4, 4.3): a CallResult payload or a CallError, and
the outcome of a CALL of ours that got no answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

# The RPC Framework error codes, as OCPP 2.0.1 spells them (bridge.versions maps 1.6's spellings).
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
    # What the station does once the response is on its way (bridge.station.effects), e.g. the
    # message a TriggerMessage asked for: F06.FR.04 wants the response first. Both doors carry
    # them out after sending the response.
    effects: tuple[Any, ...] = field(default=(), compare=False)


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


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """A CALL of ours that got no answer: `offline` (no connection, or it closed before the
    answer came) or `timeout` (no answer within MessageTimeout)."""

    reason: Literal["offline", "timeout"]
    description: str = ""


# What becomes of a CALL the station sends.
Outcome = CallResult | CallError | NoAnswer


class OcppError(Exception):
    """Raised by a handler to answer with a CallError instead of a CallResult."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error = CallError(code, description, details or {})
