"""Remotely Unlock Connector (F05): UnlockConnector, answered by the OEM's connector lock.

Only the OEM's firmware can move the cable retention lock, so the station checks what it knows
itself (the connector exists, no authorized transaction runs on the EVSE), then asks the OEM with
a `cs_connector` request `{evse_id, connector_id, action: "unlock"}` and maps the lock state it
answers to the OCPP status. Every failure to get a usable answer is UnlockFailed, logged: never a
hang (the OEM link's request timeout) and never a CallError.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final

from bridge.oem.link import OemAnswer, OemReply
from bridge.rpc.request import Request
from bridge.station.device_model import Rejection
from bridge.station.evse_session import EvseSession

log = logging.getLogger(__name__)

CS_CONNECTOR: Final = "cs_connector"

# The OEM's lock state after an unlock -> UnlockStatusEnumType: only `unlocked` succeeds
# (F05.FR.04, also with no cable plugged in: F05.FR.06).
UNLOCK_STATUS: Final = {
    "unlocked": "Unlocked",
    "locked": "UnlockFailed",
    "error": "UnlockFailed",
    "unknown": "UnlockFailed",
}
# The statusInfo reasonCode of each failed state.
FAILED_REASON: Final = {
    "locked": "StillLocked",
    "error": "LockError",
    "unknown": "LockStateUnknown",
}

# Ask the OEM (name, data, timeout): the app's OEM link, once the app has set it.
AskOem = Callable[[str, dict[str, Any], float | None], Awaitable[OemReply]]


def unlock_answer(reply: OemReply, evse_id: str, connector: int) -> dict[str, Any]:
    """The UnlockConnectorResponse for the OEM's answer to `cs_connector` unlock (or its
    absence); UnlockFailed, with the reason, for anything but `unlocked`."""
    if not isinstance(reply, OemAnswer):  # a timeout, or an answer that failed its schema
        log.warning("UnlockConnector: no usable cs_connector answer (%s)", reply.description)
        why = "NoOemAnswer" if reply.reason == "timeout" else "InvalidOemAnswer"
        return Rejection(why, _sentence(reply.description)).answer("UnlockFailed")
    data = reply.data
    if data.get("message_type") == "CallError":
        log.warning(
            "UnlockConnector: the OEM answered cs_connector with %s: %s",
            data.get("error_code"),
            str(data.get("error_description"))[:200],
        )
        return Rejection("OemError", f"The OEM could not unlock: {data.get('error_code')}").answer(
            "UnlockFailed"
        )
    if data["evse_id"] != evse_id or data["connector_id"] != connector:
        log.warning(
            "UnlockConnector: the cs_connector answer names EVSE %r connector %s, not the one "
            "asked for",
            str(data["evse_id"])[:20],
            data["connector_id"],
        )
        return Rejection("InvalidOemAnswer", "The OEM answered for another connector").answer(
            "UnlockFailed"
        )
    status = UNLOCK_STATUS[data["status"]]
    if status == "Unlocked":
        return {"status": status}
    log.info("UnlockConnector: the OEM reports the lock %s", data["status"])
    info = str(data.get("info") or f"The connector lock is {data['status']}")
    return Rejection(FAILED_REASON[data["status"]], info[:512]).answer(status)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class ConnectorLock:
    """UnlockConnector over the station's connectors, its EVSE sessions and the OEM."""

    def __init__(
        self,
        connectors: Collection[tuple[int, int]],
        sessions: Mapping[int, EvseSession],
        evse_name: Callable[[int], str],
        oem: Callable[[], AskOem | None],
    ) -> None:
        self.connectors = connectors
        self.sessions = sessions
        self.evse_name = evse_name
        self.oem = oem  # the OEM link's request, when there is one

    async def unlock_connector(self, request: Request) -> dict[str, Any]:
        payload = request.payload
        evse, connector = payload["evseId"], payload["connectorId"]
        if (evse, connector) not in self.connectors:  # F05.FR.03
            known = any(e == evse for e, _ in self.connectors)
            return Rejection(
                "UnknownConnectorId" if known else "UnknownEvse",
                f"This station has no connector {connector} on EVSE {evse}",
            ).answer("UnknownConnector")
        session = self.sessions.get(evse)
        transaction = session.transaction if session is not None else None
        if transaction is not None and transaction.authorized:  # F05.FR.02: do not unlock
            return Rejection(
                "TxInProgress",
                f"An authorized transaction runs on EVSE {evse}; stop it first",
            ).answer("OngoingAuthorizedTransaction")
        ask = self.oem()
        if ask is None:
            log.warning("UnlockConnector: no OEM link to ask")
            return Rejection("NoOemAnswer", "No OEM link to ask").answer("UnlockFailed")
        evse_id = self.evse_name(evse)
        reply = await ask(
            CS_CONNECTOR,
            {"evse_id": evse_id, "connector_id": connector, "action": "unlock"},
            None,
        )
        return unlock_answer(reply, evse_id, connector)
