"""RequestStartTransaction and RequestStopTransaction (F01-F04): the CSMS starts and stops
charging; the OEM's firmware does it.

A remote start is answered at once (Accepted or Rejected, F01.FR.23 / F01.FR.07 / F03.FR.07-08)
and then carried out in steps, each an event of the station (no task waits):

1. with `AuthCtrlr.AuthorizeRemoteStart` (and a token that is not Central or NoAuthorization,
   F01.FR.02), Authorize to the CSMS; a token it does not accept ends the remote start;
2. `process_authorized_token` to the OEM (no answer counts as accepted, the session API says);
3. the token authorizes the EVSE with triggerReason RemoteStart: the transaction starts (or, when
   it had started at EVConnected, an Updated event carries the token and remoteStartId, F02.FR.01),
   the OEM hears `authorization` (token_type `central`) and EVConnectionTimeOut runs (E03).

A remote stop ends the authorization with triggerReason RemoteStop and stoppedReason Remote, and
asks the OEM to stop charging.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from bridge.oem.link import OemAnswer, OemReply
from bridge.rpc import CallResult, Outcome
from bridge.rpc.request import Request
from bridge.station.device_model import DeviceModel, Rejection
from bridge.station.effects import AskOem, Effects, Publish, Schedule, Send
from bridge.station.evse_session import EvseSession, Token
from bridge.station.message_queue import Outgoing
from bridge.station.transactions import Transactions

log = logging.getLogger(__name__)

START: Final = "remote-start:"  # timer, origin and OEM request keys: "remote-start:<n>"
STOP: Final = "remote-stop:"
NO_AUTHORIZE: Final = frozenset({"Central", "NoAuthorization"})  # F01.FR.02


@dataclass(slots=True)
class RemoteStart:
    evse: int
    token: Token


class RemoteStartStop:
    def __init__(
        self, transactions: Transactions, device_model: DeviceModel, effects: Effects
    ) -> None:
        self.transactions = transactions
        self.device_model = device_model
        self.effects = effects
        self._starts: dict[str, RemoteStart] = {}
        self._stops: dict[str, str] = {}  # key -> transactionId
        self._count = 0

    # --- the CSMS's requests

    def request_start(self, request: Request) -> dict[str, Any] | CallResult:
        payload = request.payload
        session, why = self._choose(payload.get("evseId"))
        if session is None:
            return Rejection("UnknownEvse" if why == "unknown" else "Busy", why).answer("Rejected")
        token = Token(payload["idToken"], payload.get("groupIdToken"), payload["remoteStartId"])
        reservations = self.transactions.reservations
        if reservations is not None and reservations.blocks(
            session.evse, token.id_token, token.group
        ):  # F01.FR.21, F01.FR.22
            return Rejection("Reserved", "the EVSE is reserved for another token").answer(
                "Rejected"
            )
        self._count += 1
        key = f"{START}{self._count}"
        self._starts[key] = RemoteStart(session.evse, token)
        answer: dict[str, Any] = {"status": "Accepted"}
        tx = session.transaction
        if tx is not None:  # F02: the EV was there first, the transaction runs already
            answer["transactionId"] = tx.transaction_id
        authorize = self.device_model.bool_value("AuthCtrlr.AuthorizeRemoteStart")
        if authorize and token.id_token["type"] not in NO_AUTHORIZE:
            effect: Send | Schedule = Send("Authorize", {"idToken": token.id_token}, key, False)
        else:
            effect = Schedule(key, 0)
        return CallResult(answer, (effect,))

    def request_stop(self, request: Request) -> dict[str, Any] | CallResult:
        transaction_id = request.payload["transactionId"]
        if self.transactions.open_transaction(transaction_id) is None:  # F03.FR.08
            return Rejection("TxNotFound", "no transaction has this transactionId").answer(
                "Rejected"
            )
        self._count += 1
        key = f"{STOP}{self._count}"
        self._stops[key] = transaction_id
        return CallResult({"status": "Accepted"}, (Schedule(key, 0),))  # F03.FR.07

    def _choose(self, evse: int | None) -> tuple[EvseSession | None, str]:
        transactions = self.transactions
        if evse is not None:
            session = transactions.sessions.get(evse)
            if session is None:
                return None, "unknown"
            return (session, "") if self._free(session) else (None, "the EVSE is not free")
        # F01.FR.07 lets a station refuse a start without evseId; we pick the EVSE whose EV
        # waits for an authorization, else the first free one.
        free = [s for s in transactions.sessions.values() if self._free(s)]
        free.sort(key=lambda s: not s.connected)
        return (free[0], "") if free else (None, "no EVSE is free")

    def _free(self, session: EvseSession) -> bool:
        """Usable (F01.FR.23), no authorization or authorized transaction (F01.FR.24)."""
        tx = session.transaction
        return (
            self.transactions.availability.usable(session.evse)
            and session.token is None
            and (tx is None or not tx.authorized)
        )

    # --- the steps that follow

    def timer(self, name: str) -> bool:
        if name.startswith(START):
            self._ask_oem(name)
        elif name.startswith(STOP):
            transaction_id = self._stops.pop(name, None)
            session = self.transactions.open_transaction(transaction_id or "")
            if session is not None:
                self.transactions.remote_stop(session)
        else:
            return False
        return True

    def answered(self, message: Outgoing, outcome: Outcome) -> bool:
        """The CSMS's answer to the Authorize of a remote start (F01.FR.01)."""
        if not message.origin.startswith(START):
            return False
        start = self._starts.get(message.origin)
        if start is None:
            return True
        info = outcome.payload.get("idTokenInfo") if isinstance(outcome, CallResult) else None
        if info is not None:
            self.transactions.authorization.remember(start.token.id_token, info)
        if info is None or info.get("status") != "Accepted":
            log.info("remote start %s: the CSMS did not accept its token", message.origin)
            del self._starts[message.origin]
            return True
        self._ask_oem(message.origin)
        return True

    def _ask_oem(self, key: str) -> None:
        start = self._starts.get(key)
        if start is None:
            return
        self.effects.add(AskOem("process_authorized_token", self._token_data(start), key))

    def oem_answered(self, key: str, reply: OemReply) -> bool:
        """process_authorized_token answered (or not: then accepted, SESSION_API.md)."""
        if not key.startswith(START):
            return False
        start = self._starts.pop(key, None)
        if start is None:
            return True
        if isinstance(reply, OemAnswer) and reply.data.get("status") == "discarded":
            log.info("remote start %s: the OEM discarded the token", key)
            return True
        session = self.transactions.sessions[start.evse]
        if not self._free(session):
            log.info("remote start %s: EVSE %d is no longer free", key, start.evse)
            return True
        self.transactions.remote_authorized(session, start.token)
        self.effects.add(
            Publish("authorization", {**self._token_data(start), "status": "accepted"})
        )
        return True

    def _token_data(self, start: RemoteStart) -> dict[str, Any]:
        """The session API's token fields of a remote start (token_type central)."""
        data: dict[str, Any] = {
            "evse_id": self.transactions.evse_name(start.evse),
            "token_type": "central",
        }
        if start.token.id_token.get("idToken"):
            data["id_token"] = str(start.token.id_token["idToken"])[:36]
        return data
