"""The station's way to the CSMS: the current OCPP-J connection, when there is one."""

from __future__ import annotations

from typing import Any, Protocol

from bridge.rpc import CallError, CallResult


class NotConnected(Exception):
    """No CSMS connection is open."""


class Connection(Protocol):
    version: str

    async def call(
        self, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> CallResult | CallError: ...


class Outbox:
    def __init__(self) -> None:
        self.connection: Connection | None = None

    @property
    def connected(self) -> bool:
        return self.connection is not None

    async def call(self, action: str, payload: dict[str, Any]) -> CallResult | CallError:
        """Send one CALL to the CSMS (one at a time, OCPP-J 4.1.1) and return its answer."""
        connection = self.connection
        if connection is None:
            raise NotConnected()
        return await connection.call(action, payload)
