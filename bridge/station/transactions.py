"""The transactions block: the OEM's session messages in, TransactionEvents out (E, C, J).

Each EVSE has an `EvseSession` state machine (bridge.station.evse_session); this block feeds it
the session inputs, and turns what it returns into messages:

- every TransactionEvent gets its timestamp, `offline` flag and meter value, then goes into the
  durable outbound queue in the same store transaction as the saved transaction state, so that
  after a crash the CSMS gets each event once and a restart continues the seqNo;
- an event that carries a meter value (Transaction.Begin/End, Sample.Periodic, Sample.Clock)
  waits for the OEM's `meter_values` answer, at most `[oem] request_timeout` (then it goes
  without); later events of that EVSE wait behind it, so the order never changes;
- `transaction_status` tells the OEM when a transaction starts, resumes charging and ends;
  `stop_charging` asks it to stop delivering energy.

Authorization (C01-C15) is decided here with the Authorization block (local list, cache) and
Authorize to the CSMS.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from bridge.oem.link import OemAnswer, OemReply
from bridge.rpc import CallResult, NoAnswer, Outcome
from bridge.rpc.correlator import Correlator
from bridge.station import meter_values
from bridge.station.authorization import Authorization
from bridge.station.availability import Availability
from bridge.station.device_model import DeviceModel, Variable
from bridge.station.effects import AskOem, Cancel, Effects, Publish, Schedule
from bridge.station.evse_session import EvseSession, Token, Transaction, TxEvent, TxSettings
from bridge.station.evse_session import Outcome as SessionOutcome
from bridge.station.message_queue import MessageQueue, Outgoing
from bridge.store import Store
from bridge.timeutil import Clock

if TYPE_CHECKING:
    from bridge.station.provisioning.boot import Registration
    from bridge.station.reservations import Reservations

log = logging.getLogger(__name__)

# token_type of the session API <-> OCPP IdTokenEnumType.
TOKEN_TYPES: Final = {
    "ISO14443": "ISO14443",
    "ISO15693": "ISO15693",
    "key_code": "KeyCode",
    "local": "Local",
    "mac_address": "MacAddress",
    "no_authorization": "NoAuthorization",
    "e_maid": "eMAID",
    "central": "Central",
}
SESSION_TYPES: Final = {ocpp: session for session, ocpp in TOKEN_TYPES.items()}
ACCEPTED: Final = "Accepted"
TX_ORIGIN: Final = "tx:"  # origin of TransactionEvents: "tx:<evse>"
AUTHORIZE: Final = "authorize"
# What the station waits for the OEM's cp_status after a restart before it ends a transaction
# that was open with PowerLoss (the OEM republishes its state when the bridge is ready).
RECOVERY_WAIT: Final = "recover"
RECOVERY_SECONDS: Final = 10.0
# At most this many TxEndedInterval samples ride in one Ended event (a day at the default 60 s):
# a longer transaction keeps its first ones, so the Ended message stays a size a CSMS takes.
MAX_ENDED_VALUES: Final = 1440
# The variables a clock-aligned timer depends on.
ALIGNED_TIMING: Final = frozenset(
    {"AlignedDataCtrlr.Interval", "AlignedDataCtrlr.Enabled", "AlignedDataCtrlr.TxEndedInterval"}
)


@dataclass(slots=True)
class Pending:
    """A TransactionEvent waiting to be queued (for its meter value, or behind one that is)."""

    evse: int
    event: TxEvent
    payload: dict[str, Any]
    measurands: list[str] = field(default_factory=list)
    waiting: bool = False


def ocpp_token(data: dict[str, Any]) -> dict[str, Any]:
    """The IdTokenType of a session message's id_token / token_type."""
    return {"idToken": data.get("id_token", ""), "type": TOKEN_TYPES[data["token_type"]]}


class Transactions:
    def __init__(
        self,
        evses: list[int],
        store: Store,
        device_model: DeviceModel,
        queue: MessageQueue,
        availability: Availability,
        authorization: Authorization,
        clock: Clock,
        effects: Effects,
        evse_name: Callable[[int], str],
    ) -> None:
        self.store = store
        self.device_model = device_model
        self.queue = queue
        self.availability = availability
        self.authorization = authorization
        self.clock = clock
        self.effects = effects
        self.evse_name = evse_name
        self.registration: Registration | None = None  # set by the station
        self.reservations: Reservations | None = None  # set by the station (H03)
        self.sessions = {n: EvseSession(n) for n in range(1, len(evses) + 1)}
        self._held: dict[int, deque[Pending]] = {n: deque() for n in self.sessions}
        self._meter: dict[str, Pending] = {}
        self._keys = itertools.count(1)
        self._authorizing: Correlator[Outcome] = Correlator()
        self._settled: dict[int, asyncio.Event] = {}
        # After a restart: the EVSEs whose contactor the OEM was asked and has not answered;
        # a restored transaction is decided when both its pilot state and that answer are in.
        self._contactor_unknown: set[int] = set()
        self._pilot_seen: dict[int, bool] = {}
        # Told after every Ended event is queued (scheduled resets and availability changes).
        self.on_ended: list[Callable[[int], None]] = []
        for evse, state in store.open_transactions().items():
            session = self.sessions.get(evse)
            if session is None:
                log.error("dropped the saved transaction of EVSE %d, which is gone", evse)
                store.delete_transaction(evse)
                continue
            transaction = Transaction.from_json(state)
            session.restore(transaction)
            log.info(
                "EVSE %d: transaction %s was open at the last stop",
                evse,
                transaction.transaction_id,
            )

    # --- settings

    def settings(self, evse: int | None = None) -> TxSettings:
        dm = self.device_model
        registration = self.registration
        may_start = (
            registration is None
            or registration.status not in ("Pending", "Rejected")
            or dm.bool_value("TxCtrlr.TxBeforeAcceptedEnabled")
        )
        if evse is not None and not self.availability.usable(evse):
            may_start = False
        return TxSettings(
            start_points=tuple(meter_values.measurand_list(dm.value("TxCtrlr.TxStartPoint"))),
            stop_points=tuple(meter_values.measurand_list(dm.value("TxCtrlr.TxStopPoint"))),
            stop_on_ev_side_disconnect=dm.bool_value("TxCtrlr.StopTxOnEVSideDisconnect"),
            stop_on_invalid_id=dm.bool_value("TxCtrlr.StopTxOnInvalidId"),
            max_energy_on_invalid_id=_int(dm.value("TxCtrlr.MaxEnergyOnInvalidId")),
            may_start=may_start,
        )

    # --- start-up

    def started(self) -> None:
        """The bridge runs: ask each EVSE's contactor; end restored transactions that the OEM
        does not show charging within a while (power loss)."""
        for evse in self.sessions:
            if self.sessions[evse].recovering:
                self._contactor_unknown.add(evse)
            self.effects.add(
                AskOem(
                    "cs_contactor_status", {"evse_id": self.evse_name(evse)}, f"contactor:{evse}"
                )
            )
        if any(s.recovering for s in self.sessions.values()):
            self.effects.add(Schedule(RECOVERY_WAIT, RECOVERY_SECONDS))
        self.schedule_aligned()

    def boot_accepted(self) -> None:
        """The CSMS accepted the boot: what waited for it (TxBeforeAcceptedEnabled false)
        starts now."""
        for evse, session in self.sessions.items():
            self._apply(evse, session.start_allowed(self.settings(evse)))

    # --- session inputs from the OEM

    def cp_status(self, evse: int, connector: int, state: str) -> None:
        session = self.sessions[evse]
        letter = state[0]
        connected, ready, fault = letter in "BCD", letter in "CD", letter in "EF"
        changed = self.availability.set_occupied((evse, connector), connected, fault)
        self.statuses(changed)
        settings = self.settings(evse)
        if session.recovering:
            session.connected, session.ev_ready = connected, ready
            session.connector = connector
            # The first state after the restart decides (later ones while the contactor is
            # still unknown are the session going on: the resumed event reports the latest).
            self._pilot_seen.setdefault(evse, ready)
            if evse not in self._contactor_unknown:
                self._recover(evse, charging=ready)
            return
        self._apply(evse, session.plugged(settings, connected, connector))
        if connected:
            self.effects.add(Cancel(f"evconnect:{evse}"))
        if not fault:
            self._apply(evse, session.ev_ready_changed(settings, ready))

    def contactor(self, evse: int, status: str) -> None:
        session = self.sessions[evse]
        if status == "error":
            log.warning("EVSE %d: the OEM reports a contactor error", evse)
        settings = self.settings(evse)
        self._apply(evse, session.contactor_changed(settings, status == "closed"))
        self._contactor_known(evse)
        waiting = session.transaction is None and session.contactor and not session.signed
        if waiting and "DataSigned" in settings.start_points:
            # E01.FR.04: the meter signs the reading at the start of the energy transfer; the
            # transaction starts when that signed reading is here.
            self._ask_meter(evse, f"signed:{evse}")

    def fault(self, evse: int, faulted: bool, code: str) -> None:
        reason = "EmergencyStop" if code == "evse_emergency_shutdown" else "Other"
        session = self.sessions[evse]
        self._apply(evse, session.fault(self.settings(evse), faulted, reason))

    def out_of_service(self, evses: list[int]) -> None:
        """change_availability inoperative from the OEM: a running transaction ends."""
        for evse in evses:
            self._apply(evse, self.sessions[evse].stop("AbnormalCondition", "Other"))

    def oem_authorized(self, evse: int, data: dict[str, Any]) -> None:
        """An `authorization` update: a token the OEM authorized itself (e.g. Plug & Charge)."""
        session = self.sessions[evse]
        if data["status"] == "accepted":
            self._authorized(session, Token(ocpp_token(data)))
        elif session.token is not None:
            self._apply(evse, session.deauthorized(self.settings(evse)))

    # --- the OEM's authorization request (C01-C15, E07, C09)

    async def authorization_request(self, evse: int | None, data: dict[str, Any]) -> dict[str, Any]:
        token = ocpp_token(data)
        stopping = self._stop_target(token, evse)
        if stopping is None and evse is None:
            stopping = await self._group_stop_target(token)
        if stopping is not None:
            log.info("EVSE %d: stopped by token (E07)", stopping.evse)
            self._apply(
                stopping.evse, stopping.deauthorized(self.settings(stopping.evse), token=token)
            )
            await self.settled(stopping.evse)
            return {"status": "accepted"}
        target = self._target(evse)
        if target is None:
            return {"status": "rejected"}
        if target.transaction is not None and target.transaction.authorized:
            # Another token on a transaction it did not start: only its group may stop it (C09).
            tx = target.transaction
            info = await self.authorize(token)
            group = info.get("groupIdToken") if info else None
            if tx.group is not None and group is not None and _same(group, tx.group):
                settings = self.settings(target.evse)
                self._apply(target.evse, target.deauthorized(settings, token=token))
                await self.settled(target.evse)
                return {"status": "accepted"}
            return {"status": "rejected"}
        if not self.availability.usable(target.evse):
            return {"status": "rejected"}
        info = await self.authorize(token)
        if info is None or info.get("status") != ACCEPTED:
            log.info("EVSE %d: token not accepted (%s)", target.evse,
                     info.get("status") if info else "unknown offline")  # fmt: skip
            return {"status": "rejected"}
        group = info.get("groupIdToken")
        if self.reservations is not None:
            if self.reservations.blocks(target.evse, token, group):  # H03: reserved for another
                return {"status": "rejected"}
            self.reservations.use(target.evse, token, group)  # H03.FR.09
        self._authorized(target, Token(token, group))
        await self.settled(target.evse)
        return {"status": "accepted"}

    async def authorize(self, token: dict[str, Any]) -> dict[str, Any] | None:
        """The IdTokenInfo for a token: locally (LocalPreAuthorize), from the CSMS (Authorize),
        or offline by the local rules; None: not accepted."""
        dm = self.device_model
        if token["type"] == "NoAuthorization" or not dm.bool_value("AuthCtrlr.Enabled"):
            return {"status": ACCEPTED}
        online = self.queue.connected and self.queue.accepted
        # LocalPreAuthorize is for online: offline, LocalAuthorizeOffline decides (offline_info).
        if online and dm.bool_value("AuthCtrlr.LocalPreAuthorize"):  # C12.FR.02, C14.FR.02
            known = self.authorization.known(token)
            if known is not None and known.info.get("status") == ACCEPTED:
                return known.info
            if known is not None and online and not self.authorization.post_authorize(known):
                return known.info  # DisablePostAuthorize: the local answer stands
        sent = self.queue.put("Authorize", {"idToken": token}, AUTHORIZE)
        if isinstance(sent, Outgoing):
            self._authorizing.open(sent.message_id)
            wait = float(dm.int_value("OCPPCommCtrlr.MessageTimeout[Default]")) + 1
            outcome = await self._authorizing.wait(sent.message_id, wait)
            if isinstance(outcome, CallResult):
                info: dict[str, Any] = outcome.payload["idTokenInfo"]
                self.authorization.remember(token, info)  # C10.FR.04
                return info
            log.info("Authorize got no answer (%s): deciding offline", type(outcome).__name__)
        return self.authorization.offline_info(token)

    def _authorized(self, session: EvseSession, token: Token, trigger: str = "Authorized") -> None:
        self._apply(session.evse, session.authorized(self.settings(session.evse), token, trigger))
        if not session.connected:  # E03: the EV has EVConnectionTimeOut to arrive
            timeout = self.device_model.int_value("TxCtrlr.EVConnectionTimeOut")
            if timeout > 0:
                self.effects.add(Schedule(f"evconnect:{session.evse}", float(timeout)))

    def _stop_target(self, token: dict[str, Any], evse: int | None) -> EvseSession | None:
        """The EVSE whose transaction this very token authorized (E07)."""
        for session in self.sessions.values():
            if evse is not None and session.evse != evse:
                continue
            tx = session.transaction
            if tx is not None and tx.authorized and tx.id_token and _same(tx.id_token, token):
                return session
        return None

    async def _group_stop_target(self, token: dict[str, Any]) -> EvseSession | None:
        grouped = [
            s
            for s in self.sessions.values()
            if s.transaction is not None and s.transaction.authorized and s.transaction.group
        ]
        if not grouped:
            return None
        info = self.authorization.local_info(token)
        group = info.get("groupIdToken") if info else None
        for session in grouped:
            tx = session.transaction
            if group is not None and tx is not None and tx.group and _same(group, tx.group):
                return session
        return None

    def _target(self, evse: int | None) -> EvseSession | None:
        """The EVSE a token is for: the one named; else the first with an EV waiting for an
        authorization, else the first free one."""
        if evse is not None:
            return self.sessions.get(evse)
        sessions = list(self.sessions.values())
        for session in sessions:
            if session.connected and session.token is None:
                return session
        for session in sessions:
            if session.token is None and session.transaction is None:
                return session
        return None

    # --- timers

    def timer(self, name: str) -> bool:
        """Handle a timer of this block; False when it is not one."""
        kind, _, rest = name.partition(":")
        if kind == "evconnect":
            evse = int(rest)
            session = self.sessions[evse]
            had = session.token
            self._apply(evse, session.connection_timeout())
            if self.reservations is not None and session.transaction is None:
                self.reservations.take_used(evse)  # no transaction will carry it
            if had is not None and session.token is None:
                self.effects.add(Publish("authorization", self._authorization_data(evse, had)))
        elif kind == "sample":
            self._ask_sample(int(rest), "Sample.Periodic")
        elif kind == "ended":
            self._schedule_ended_sample(int(rest))
            self._ask_ended_sample(int(rest), "Sample.Periodic")
        elif name == "ended_clock":
            self.schedule_aligned("ended_clock")
            for evse in self.sessions:
                self._ask_ended_sample(evse, "Sample.Clock")
        elif name == "aligned":
            self._aligned()
        elif name == RECOVERY_WAIT:
            self._contactor_unknown.clear()
            for evse, session in self.sessions.items():
                if session.recovering:
                    self._recover(evse, charging=False)
        else:
            return False
        return True

    def _contactor_known(self, evse: int) -> None:
        self._contactor_unknown.discard(evse)
        if self.sessions[evse].recovering and evse in self._pilot_seen:
            self._recover(evse, charging=self._pilot_seen[evse])

    def _recover(self, evse: int, charging: bool) -> None:
        """Resume or end (PowerLoss) the transaction restored on `evse`."""
        self._pilot_seen.pop(evse, None)
        session = self.sessions[evse]
        self._apply(evse, session.recover(self.settings(evse), charging=charging))
        if session.transaction is not None:  # resumed: TxUpdatedInterval samples go on
            self._schedule_sample(evse)
            self._schedule_ended_sample(evse)

    def _schedule_sample(self, evse: int) -> None:
        interval = self.device_model.int_value("SampledDataCtrlr.TxUpdatedInterval")
        if interval > 0 and self.device_model.bool_value("SampledDataCtrlr.Enabled"):
            self.effects.add(Schedule(f"sample:{evse}", float(interval)))

    def _schedule_ended_sample(self, evse: int) -> None:
        interval = self.device_model.int_value("SampledDataCtrlr.TxEndedInterval")
        if interval > 0 and self.device_model.bool_value("SampledDataCtrlr.Enabled"):
            self.effects.add(Schedule(f"ended:{evse}", float(interval)))

    def schedule_aligned(self, *timers: str) -> None:
        """The next clock-aligned samples (of `timers`, default both): AlignedDataCtrlr.Interval
        ("aligned": MeterValues, or Updated events) and AlignedDataCtrlr.TxEndedInterval
        ("ended_clock": kept for the Ended event)."""
        dm = self.device_model
        enabled = dm.bool_value("AlignedDataCtrlr.Enabled")
        now = self.clock.now().timestamp()
        for timer, variable in (("aligned", "Interval"), ("ended_clock", "TxEndedInterval")):
            if timers and timer not in timers:
                continue
            interval = dm.int_value(f"AlignedDataCtrlr.{variable}")
            if interval > 0 and enabled:
                wait = meter_values.seconds_to_aligned(now, interval)
                self.effects.add(Schedule(timer, wait))
            else:
                self.effects.add(Cancel(timer))

    def _ask_ended_sample(self, evse: int, context: str) -> None:
        tx = self.sessions[evse].transaction
        if tx is not None:
            self._ask_meter(evse, f"ended:{evse}:{tx.transaction_id}:{context}:{next(self._keys)}")

    def _ended_sampled(
        self, evse: int, transaction_id: str, context: str, data: dict[str, Any] | None
    ) -> None:
        """Keep a TxEndedInterval sample for the Ended event, also across a restart (its
        measurands: SampledDataCtrlr / AlignedDataCtrlr TxEndedMeasurands)."""
        tx = self.sessions[evse].transaction
        if data is None or tx is None or tx.transaction_id != transaction_id:
            return
        component = "AlignedDataCtrlr" if context == "Sample.Clock" else "SampledDataCtrlr"
        measurands = meter_values.measurand_list(
            self.device_model.value(f"{component}.TxEndedMeasurands")
        )
        value = meter_values.meter_value(data, measurands, context, data["timestamp"])
        if value is None:
            return
        if len(tx.ended_values) >= MAX_ENDED_VALUES:
            if len(tx.ended_values) == MAX_ENDED_VALUES:
                log.warning(
                    "EVSE %d: %d TxEndedInterval samples kept for the Ended event; no more",
                    evse,
                    MAX_ENDED_VALUES,
                )
            return
        tx.ended_values.append(value)
        self.store.save_ended_values(evse, transaction_id, tx.ended_values)

    def _ask_sample(self, evse: int, context: str) -> None:
        session = self.sessions[evse]
        if session.transaction is None:
            return
        if context == "Sample.Periodic":
            self._schedule_sample(evse)
        key = f"sample:{evse}:{session.transaction.transaction_id}:{context}:{next(self._keys)}"
        self._ask_meter(evse, key)

    def _aligned(self) -> None:
        self.schedule_aligned("aligned")
        idle_only = self.device_model.bool_value("AlignedDataCtrlr.SendDuringIdle")
        for evse, session in self.sessions.items():
            if session.transaction is not None:
                if not idle_only:
                    self._ask_sample(evse, "Sample.Clock")
            else:
                self._ask_meter(evse, f"idle:{evse}:{next(self._keys)}")

    def _ask_meter(self, evse: int, key: str) -> None:
        data = {"timestamp": self.clock.timestamp(), "evse_id": self.evse_name(evse)}
        self.effects.add(AskOem("meter_values", data, key))

    # --- answers from the OEM

    def oem_answered(self, key: str, reply: OemReply) -> bool:
        kind, _, rest = key.partition(":")
        data = reply.data if isinstance(reply, OemAnswer) else None
        if kind == "meter":
            pending = self._meter.pop(key, None)
            if pending is not None:
                self._meter_arrived(pending, data)
        elif kind == "sample":
            evse_text, transaction_id, context, _ = rest.split(":", 3)
            self._sampled(int(evse_text), transaction_id, context, data)
        elif kind == "ended":
            evse_text, transaction_id, context, _ = rest.split(":", 3)
            self._ended_sampled(int(evse_text), transaction_id, context, data)
        elif kind == "signed":
            session = self.sessions[int(rest)]
            if data is not None and data.get("signed_meter_values") and session.contactor:
                self._apply(session.evse, session.signed_data(self.settings(session.evse)))
        elif kind == "idle":
            self._idle_meter_values(int(rest.split(":")[0]), data)
        elif kind == "contactor":
            if data is not None:
                self.contactor(int(rest), data["status"])
            else:  # no answer: the contactor as last known
                self._contactor_known(int(rest))
        elif kind == "stop":
            if data is not None and data.get("status") != "accepted":
                log.warning("EVSE %s: the OEM refused stop_charging", rest)
        else:
            return False
        return True

    def _meter_arrived(self, pending: Pending, data: dict[str, Any] | None) -> None:
        pending.waiting = False
        if data is not None:
            evse = pending.evse
            context = _context(pending.event)
            value = meter_values.meter_value(
                data, pending.measurands, context, pending.payload["timestamp"]
            )
            if value is not None:
                pending.payload["meterValue"] = [*pending.payload.get("meterValue", ()), value]
            session = self.sessions[evse]
            if pending.event.event_type == "Started":
                tx = session.transaction
                if tx is not None and tx.transaction_id == pending.event.transaction_id:
                    tx.energy_start = meter_values.energy_wh(data)
                if data.get("signed_meter_values"):
                    self._apply(evse, session.signed_data(self.settings(evse)))
        self._flush(pending.evse)

    def _sampled(
        self, evse: int, transaction_id: str, context: str, data: dict[str, Any] | None
    ) -> None:
        session = self.sessions[evse]
        tx = session.transaction
        if data is None or tx is None or tx.transaction_id != transaction_id:
            return
        measurands = self._measurands(context)
        value = meter_values.meter_value(data, measurands, context, data["timestamp"])
        trigger = "MeterValueClock" if context == "Sample.Clock" else "MeterValuePeriodic"
        outcome = session.sample(trigger)
        for event in outcome.events:
            payload = self._payload(evse, event)
            if value is not None:
                payload["meterValue"] = [value]
            self._hold(Pending(evse, event, payload))
        self._apply(evse, session.energy(meter_values.energy_wh(data)))

    def _idle_meter_values(self, evse: int, data: dict[str, Any] | None) -> None:
        if data is None:
            return
        measurands = meter_values.measurand_list(
            self.device_model.value("AlignedDataCtrlr.Measurands")
        )
        value = meter_values.meter_value(data, measurands, "Sample.Clock", data["timestamp"])
        if value is None:
            return
        sent = self.queue.put("MeterValues", {"evseId": evse, "meterValue": [value]}, "meter")
        if isinstance(sent, NoAnswer):
            log.info("clock-aligned MeterValues of EVSE %d not sent: %s", evse, sent.description)

    # --- answers from the CSMS

    def answered(self, message: Outgoing, outcome: Outcome) -> bool:
        if message.origin == AUTHORIZE:
            self._authorizing.resolve(message.message_id, outcome)
            return True
        if not message.origin.startswith(TX_ORIGIN):
            return False
        if isinstance(outcome, CallResult):
            info = outcome.payload.get("idTokenInfo")
            token = message.payload.get("idToken")
            if info is not None and token is not None:
                self.authorization.remember(token, info)  # C10.FR.05
                if info.get("status") != ACCEPTED:
                    self._token_refused(int(message.origin.removeprefix(TX_ORIGIN)), message)
        return True

    def _token_refused(self, evse: int, message: Outgoing) -> None:
        session = self.sessions.get(evse)
        tx = session.transaction if session is not None else None
        if session is None or tx is None:
            return
        if tx.transaction_id != message.payload["transactionInfo"]["transactionId"]:
            return
        log.info("EVSE %d: the CSMS did not accept the transaction's token", evse)
        energy = None if tx.energy_start is None else tx.energy_start
        self._apply(evse, session.invalid_token(self.settings(evse), energy))

    # --- from the state machine to the queue

    def _apply(self, evse: int, outcome: SessionOutcome) -> None:
        for event in outcome.events:
            payload = self._payload(evse, event)
            measurands = self._measurands(_context(event)) if event.meter_context else []
            pending = Pending(evse, event, payload, measurands, bool(measurands))
            self._hold(pending)
            if event.event_type == "Started":
                self._schedule_sample(evse)
                self._schedule_ended_sample(evse)
                self.effects.add(Cancel(f"evconnect:{evse}"))
            elif event.event_type == "Ended":
                self.effects.add(Cancel(f"sample:{evse}"))
                self.effects.add(Cancel(f"ended:{evse}"))
                if event.ended_values:  # J01, J02: the samples, then the Transaction.End value
                    payload["meterValue"] = list(event.ended_values)
        if outcome.stop_charging:
            self.effects.add(
                AskOem("stop_charging", {"evse_id": self.evse_name(evse)}, f"stop:{evse}")
            )

    def _measurands(self, context: str) -> list[str]:
        dm = self.device_model
        if context == "Sample.Clock":
            return meter_values.measurand_list(dm.value("AlignedDataCtrlr.Measurands"))
        if not dm.bool_value("SampledDataCtrlr.Enabled"):
            return []
        variable = {
            "Transaction.Begin": "TxStartedMeasurands",
            "Transaction.End": "TxEndedMeasurands",
        }.get(context, "TxUpdatedMeasurands")
        return meter_values.measurand_list(dm.value(f"SampledDataCtrlr.{variable}"))

    def _payload(self, evse: int, event: TxEvent) -> dict[str, Any]:
        info: dict[str, Any] = {"transactionId": event.transaction_id}
        if event.charging_state is not None:
            info["chargingState"] = event.charging_state
        if event.stopped_reason is not None:
            info["stoppedReason"] = event.stopped_reason
        if event.remote_start_id is not None:
            info["remoteStartId"] = event.remote_start_id
        payload: dict[str, Any] = {
            "eventType": event.event_type,
            "timestamp": self.clock.timestamp(),
            "triggerReason": event.trigger,
            "seqNo": event.seq_no,
            "transactionInfo": info,
            "evse": {"id": evse, "connectorId": event.connector},
        }
        if not self.queue.connected:
            # Offline: no CSMS connection. A station whose boot is Pending is online: its
            # events wait for the Accepted boot but did not happen offline.
            payload["offline"] = True
        if event.id_token is not None:
            payload["idToken"] = event.id_token
        reservation_id = self.reservations.take_used(evse) if self.reservations else None
        if reservation_id is not None:
            payload["reservationId"] = reservation_id  # H01.FR.15
        return payload

    def _hold(self, pending: Pending) -> None:
        held = self._held[pending.evse]
        held.append(pending)
        if pending.waiting:
            key = f"meter:{next(self._keys)}"
            self._meter[key] = pending
            data = {
                "timestamp": pending.payload["timestamp"],
                "evse_id": self.evse_name(pending.evse),
            }
            self.effects.add(AskOem("meter_values", data, key))
        self._flush(pending.evse)

    def _flush(self, evse: int) -> None:
        held = self._held[evse]
        while held and not held[0].waiting:
            self._release(held.popleft())
        if not held:
            settled = self._settled.pop(evse, None)
            if settled is not None:
                settled.set()

    async def settled(self, evse: int) -> None:
        """Until this EVSE's events are all queued (each waits at most for one OEM answer)."""
        if self._held[evse]:
            event = self._settled.setdefault(evse, asyncio.Event())
            await event.wait()

    def _release(self, pending: Pending) -> None:
        """Queue the event and save the transaction in one store transaction."""
        event, evse = pending.event, pending.evse
        with self.store.transaction():
            self.queue.put("TransactionEvent", pending.payload, f"{TX_ORIGIN}{evse}", durable=True)
            if event.snapshot is None:
                self.store.delete_transaction(evse)
            else:
                snapshot = event.snapshot
                tx = self.sessions[evse].transaction
                if tx is not None and tx.transaction_id == event.transaction_id:
                    # samples taken since the event was made (it waited for its meter value)
                    snapshot = {**snapshot, "ended_values": tx.ended_values}
                self.store.save_transaction(evse, event.transaction_id, snapshot)
        if event.event_type == "Ended":
            for callback in self.on_ended:
                callback(evse)
        status = {"Started": "started", "Ended": "ended"}.get(event.event_type)
        if status is None and event.charging_state == "Charging" and event.seq_no > 0:
            status = "in_progress"
        if status is not None:
            data: dict[str, Any] = {
                "transaction_id": event.transaction_id,
                "evse_id": self.evse_name(evse),
                "status": status,
            }
            token = event.tx_token
            if token is not None and token.get("type") in SESSION_TYPES:
                if token.get("idToken"):
                    data["id_token"] = token["idToken"][:36]
                data["token_type"] = SESSION_TYPES[token["type"]]
            self.effects.add(Publish("transaction_status", data))

    # --- helpers

    def statuses(self, changed: list[tuple[int, int]]) -> None:
        """StatusNotification for these connectors when the CSMS can hear it (else B04 later)."""
        registration = self.registration
        if changed and registration is not None and registration.accepted and self.queue.connected:
            registration.send_statuses(changed)

    def _authorization_data(self, evse: int, token: Token) -> dict[str, Any]:
        data: dict[str, Any] = {
            "evse_id": self.evse_name(evse),
            "token_type": SESSION_TYPES.get(token.id_token.get("type", ""), "local"),
            "status": "deauthorized",
        }
        if token.id_token.get("idToken"):
            data["id_token"] = str(token.id_token["idToken"])[:36]
        return data

    # --- SetVariables that apply at once

    def variable_changed(self, variable: Variable, attribute: str, value: str) -> None:
        """A new sampling interval applies to running transactions at once; a new clock-aligned
        interval re-aligns the next sample."""
        if attribute != "Actual":
            return
        if variable.key in ("SampledDataCtrlr.TxUpdatedInterval", "SampledDataCtrlr.Enabled"):
            for evse, session in self.sessions.items():
                if session.transaction is not None:
                    self.effects.add(Cancel(f"sample:{evse}"))
                    self._schedule_sample(evse)
        elif variable.key in ALIGNED_TIMING:
            self.schedule_aligned()
        if variable.key in ("SampledDataCtrlr.TxEndedInterval", "SampledDataCtrlr.Enabled"):
            for evse, session in self.sessions.items():
                if session.transaction is not None:
                    self.effects.add(Cancel(f"ended:{evse}"))
                    self._schedule_ended_sample(evse)

    # --- remote control (bridge.station.remote_start_stop, remote_control)

    def trigger(self, evse: int | None) -> bool:
        """F06.FR.07: an Updated TransactionEvent (triggerReason Trigger, a meter value with
        context Trigger of TxUpdatedMeasurands) for the open transaction of `evse`, or of every
        EVSE with one; False when there was none. It goes through the EVSE's hold queue."""
        sent = False
        measurands = self._measurands("Trigger")
        for number, session in self.sessions.items():
            if (evse is not None and number != evse) or session.transaction is None:
                continue
            for event in session.sample("Trigger").events:
                event = replace(event, meter_context="Trigger")
                payload = self._payload(number, event)
                self._hold(Pending(number, event, payload, measurands, bool(measurands)))
                sent = True
        return sent

    def remote_authorized(self, session: EvseSession, token: Token) -> None:
        """A token the CSMS started the EVSE with (F01, F02): triggerReason RemoteStart."""
        if self.reservations is not None:
            self.reservations.use(session.evse, token.id_token, token.group)
        self._authorized(session, token, "RemoteStart")

    def stop_for_reset(self, session: EvseSession) -> None:
        """Reset Immediate (B12.FR.04): end the transaction with ResetCommand / ImmediateReset."""
        self._apply(session.evse, session.stop("ResetCommand", "ImmediateReset"))

    def remote_stop(self, session: EvseSession) -> None:
        """RequestStopTransaction (F03): RemoteStop, stoppedReason Remote, stop charging."""
        evse = session.evse
        outcome = session.deauthorized(self.settings(evse), "RemoteStop", "Remote")
        outcome.stop_charging = True
        self._apply(evse, outcome)

    def open_transaction(self, transaction_id: str) -> EvseSession | None:
        for session in self.sessions.values():
            tx = session.transaction
            if tx is not None and tx.transaction_id == transaction_id:
                return session
        return None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("idToken") == b.get("idToken") and a.get("type") == b.get("type")


def _context(event: TxEvent) -> str:
    return event.meter_context or "Sample.Periodic"


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
