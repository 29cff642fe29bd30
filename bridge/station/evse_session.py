"""One EVSE's charging session as a state machine: OCPP 2.0.1 E01-E03, E05-E07, E09-E11 (with
C09 stop by group, StopTxOnInvalidId, MaxEnergyOnInvalidId) over the session inputs.

Plain Python: no store, no queue, no clock of its own. Every input (`plugged`, `ev_ready`,
`contactor`, `authorized`, `deauthorized`, `invalid_token`, `fault`, `stop`, ...) returns the
TransactionEvents it makes, in order, with their seqNo; the transactions block
(bridge.station.transactions) timestamps, persists and queues them.

The transaction starts when the first of the TxStartPoint conditions becomes true; it ends when
a TxStopPoint condition that was true during the transaction is no longer true (E01, E06). An
unplugged cable always ends it when StopTxOnEVSideDisconnect is true (E10).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Final

# The input that makes each TxStartPoint condition true, as the triggerReason of Started.
START_TRIGGER: Final = {
    "ParkingBayOccupancy": "EVDetected",
    "EVConnected": "CablePluggedIn",
    "Authorized": "Authorized",
    "DataSigned": "SignedDataReceived",
    "PowerPathClosed": "ChargingStateChanged",
    "EnergyTransfer": "ChargingStateChanged",
}
START_POINTS: Final = tuple(START_TRIGGER)
STOP_POINTS: Final = tuple(p for p in START_POINTS if p != "DataSigned")
# Stop points that a stop by the driver or the CSMS makes fall at once: the transaction ends
# with the stop itself.
ENERGY_STOP_POINTS: Final = frozenset({"Authorized", "PowerPathClosed", "EnergyTransfer"})


@dataclass(frozen=True, slots=True)
class TxSettings:
    """The TxCtrlr variables a session follows (read for every input: a change applies at once)."""

    start_points: tuple[str, ...] = ("Authorized", "EVConnected")
    stop_points: tuple[str, ...] = ("EVConnected", "Authorized")
    stop_on_ev_side_disconnect: bool = True
    stop_on_invalid_id: bool = True
    max_energy_on_invalid_id: int = 0  # Wh; 0: none
    may_start: bool = True  # False: TxBeforeAcceptedEnabled is false and the boot not accepted


@dataclass(slots=True)
class Token:
    """An authorization: the IdTokenType, its group, and the remote start that brought it."""

    id_token: dict[str, Any]
    group: dict[str, Any] | None = None
    remote_start_id: int | None = None


@dataclass(slots=True)
class Transaction:
    """What must survive a restart: saved with every event (bridge.store evse_transaction)."""

    transaction_id: str
    connector: int = 1
    seq_no: int = 0  # the next event's
    charging_state: str = "Idle"
    id_token: dict[str, Any] | None = None  # the token that authorized it
    group: dict[str, Any] | None = None
    token_sent: bool = False  # idToken goes in one event only, the first after it is known
    remote_start_id: int | None = None
    reached: list[str] = field(default_factory=list)  # stop points that were true
    stop_reason: str | None = None  # decided early: the transaction ends at its stop point
    energy_start: float | None = None  # Wh at Transaction.Begin (MaxEnergyOnInvalidId)
    energy_limit: float | None = None  # Wh more allowed after an invalid id
    authorized: bool = False
    # J02 / J01: meterValues sampled every TxEndedInterval for the Ended event.
    ended_values: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transaction:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class TxEvent:
    """A TransactionEvent to send, before its timestamp and meter value."""

    event_type: str  # Started, Updated, Ended
    trigger: str
    seq_no: int
    transaction_id: str
    connector: int
    charging_state: str | None  # None: unchanged since the last event
    id_token: dict[str, Any] | None = None
    stopped_reason: str | None = None
    remote_start_id: int | None = None
    meter_context: str | None = None  # Transaction.Begin / Transaction.End sample wanted
    snapshot: dict[str, Any] | None = None  # the transaction after this event (None: ended)
    tx_token: dict[str, Any] | None = None  # the token that authorized the transaction
    ended_values: tuple[dict[str, Any], ...] = ()  # an Ended event's TxEndedInterval samples


@dataclass(slots=True)
class Outcome:
    events: list[TxEvent] = field(default_factory=list)
    stop_charging: bool = False  # ask the OEM to stop delivering energy


class EvseSession:
    def __init__(self, evse: int) -> None:
        self.evse = evse
        self.connector = 1
        self.connected = False  # cp_status B, C or D
        self.ev_ready = False  # cp_status C or D: the EV asks for energy
        self.contactor = False  # closed
        self.signed = False  # a signed meter value came with the transaction's start
        self.faulted = False
        self.token: Token | None = None  # authorized, with or without a transaction
        self.transaction: Transaction | None = None
        self.recovering = False  # restored after a restart, waiting for the EV's state
        self.spent: set[str] = set()  # conditions true when the last transaction ended

    # --- inputs

    def plugged(self, settings: TxSettings, connected: bool, connector: int = 1) -> Outcome:
        if connected == self.connected:
            return Outcome()
        self.connected = connected
        if connected:
            self.connector = connector
            return self._evaluate(settings, "CablePluggedIn")
        self.ev_ready = False
        out = Outcome()
        tx = self.transaction
        if tx is not None and settings.stop_on_ev_side_disconnect:  # E10.FR.01
            self._end(out, "EVCommunicationLost", tx.stop_reason or "EVDisconnected")
            return out
        return self._evaluate(settings, "EVCommunicationLost", out)

    def ev_ready_changed(self, settings: TxSettings, ready: bool) -> Outcome:
        if ready == self.ev_ready:
            return Outcome()
        self.ev_ready = ready
        return self._evaluate(settings, "ChargingStateChanged")

    def contactor_changed(self, settings: TxSettings, closed: bool) -> Outcome:
        if closed == self.contactor:
            return Outcome()
        self.contactor = closed
        return self._evaluate(settings, "ChargingStateChanged")

    def authorized(
        self, settings: TxSettings, token: Token, trigger: str = "Authorized"
    ) -> Outcome:
        """A token was accepted for this EVSE (C01, C02; RemoteStart for F01)."""
        self.token = token
        tx = self.transaction
        if tx is not None and not tx.authorized:
            tx.id_token, tx.group, tx.authorized = token.id_token, token.group, True
            tx.token_sent = False
            if token.remote_start_id is not None:
                tx.remote_start_id = token.remote_start_id
        return self._evaluate(settings, trigger)

    def deauthorized(
        self,
        settings: TxSettings,
        trigger: str = "StopAuthorized",
        reason: str = "Local",
        token: dict[str, Any] | None = None,
    ) -> Outcome:
        """The driver (E07, C09), the CSMS (RemoteStop) or EVConnectionTimeOut (E03) took the
        authorization away: the transaction ends now when Authorized is a stop point, or when
        its stop points are the energy transfer this stop ends (E06.FR.06, E06.FR.07: one
        Ended StopAuthorized); else at its next stop point (the cable). The OEM is asked to
        stop charging. `token`: the IdToken that ended the authorization, sent in that event
        (E07.FR.02)."""
        self.token = None
        out = Outcome(stop_charging=self.contactor)
        tx = self.transaction
        if tx is None:
            return out
        tx.authorized = False
        tx.stop_reason = tx.stop_reason or reason
        stop_points = set(settings.stop_points)
        ends_now = "Authorized" in stop_points or stop_points <= ENERGY_STOP_POINTS
        if ends_now or not self._stop_point_reachable(settings):
            self._end(out, trigger, tx.stop_reason, token)
            return out
        self._event(out, "Updated", trigger, id_token=token)
        return out

    def invalid_token(self, settings: TxSettings, energy_wh: float | None) -> Outcome:
        """The CSMS says the transaction's token is not Accepted (E05, C StopTxOnInvalidId)."""
        tx = self.transaction
        if tx is None:
            self.token = None
            return Outcome()
        if settings.stop_on_invalid_id:  # E05.FR.09
            self.token = None
            tx.authorized = False
            out = Outcome(stop_charging=self.contactor)
            self._end(out, "Deauthorized", "DeAuthorized")
            return out
        # StopTxOnInvalidId false: the transaction stays, its Authorized stop point with it;
        # only the energy is limited or stopped.
        out = Outcome()
        if settings.max_energy_on_invalid_id > 0 and energy_wh is not None:  # E05.FR.03
            tx.energy_limit = energy_wh + settings.max_energy_on_invalid_id
            self._event(out, "Updated", "Deauthorized")
            return out
        out.stop_charging = self.contactor  # E05.FR.11: stop the energy, keep the transaction
        self._event(out, "Updated", "Deauthorized", charging_state="SuspendedEVSE")
        return out

    def energy(self, energy_wh: float | None) -> Outcome:
        """A meter reading during the transaction: MaxEnergyOnInvalidId reached?"""
        tx, out = self.transaction, Outcome()
        limit = tx.energy_limit if tx is not None else None
        if limit is not None and energy_wh is not None and energy_wh >= limit:
            assert tx is not None
            tx.energy_limit = None
            out.stop_charging = True
            self._event(out, "Updated", "EnergyLimitReached", charging_state="SuspendedEVSE")
        return out

    def sample(self, trigger: str) -> Outcome:
        """A meter-value event (MeterValuePeriodic, MeterValueClock) during the transaction."""
        out = Outcome()
        if self.transaction is not None:
            self._event(out, "Updated", trigger)
        return out

    def signed_data(self, settings: TxSettings) -> Outcome:
        """The OEM's meter signed a reading at the start (TxStartPoint DataSigned)."""
        if self.signed:
            return Outcome()
        self.signed = True
        return self._evaluate(settings, "SignedDataReceived")

    def fault(self, settings: TxSettings, faulted: bool, reason: str = "Other") -> Outcome:
        """The EVSE is faulted (or no longer): without its power path a transaction whose stop
        points include it ends; otherwise it waits, suspended by the EVSE."""
        if faulted == self.faulted:
            return Outcome()
        self.faulted = faulted
        out = Outcome()
        tx = self.transaction
        if tx is None or not faulted:
            return self._evaluate(settings, "AbnormalCondition", out) if tx else out
        out.stop_charging = self.contactor  # whatever the OEM did already: no energy now
        if {"PowerPathClosed", "EnergyTransfer"} & set(settings.stop_points):
            self._end(out, "AbnormalCondition", reason)
        else:
            self._event(out, "Updated", "AbnormalCondition", charging_state="SuspendedEVSE")
        return out

    def stop(self, trigger: str, reason: str) -> Outcome:
        """End the transaction now (e.g. the EVSE taken out of service, a reset, power loss)."""
        out = Outcome(stop_charging=self.contactor)
        if self.transaction is not None:
            self._end(out, trigger, reason)
        self.token = None
        return out

    def start_allowed(self, settings: TxSettings) -> Outcome:
        """Starting became allowed (the boot accepted with TxBeforeAcceptedEnabled false): a
        start point that already holds starts the transaction now."""
        if self.transaction is not None:
            return Outcome()
        return self._evaluate(settings, "Trigger")

    def connection_timeout(self) -> Outcome:
        """EVConnectionTimeOut passed since the authorization (E03): without an EV, the
        authorization lapses and a transaction it started ends (stoppedReason Timeout)."""
        out = Outcome()
        if self.connected or self.token is None:
            return out
        self.token = None
        tx = self.transaction
        if tx is not None and "EVConnected" not in tx.reached:
            self._end(out, "EVConnectTimeout", "Timeout")  # E03.FR.05
        return out

    # --- restart (power loss)

    def restore(self, transaction: Transaction) -> None:
        self.transaction = transaction
        self.connector = transaction.connector
        self.recovering = True
        # The contactor as last known (closed while Charging or SuspendedEV), until the OEM's
        # cs_contactor_status says otherwise.
        self.contactor = transaction.charging_state in ("Charging", "SuspendedEV")
        if transaction.authorized and transaction.id_token is not None:
            self.token = Token(transaction.id_token, transaction.group, transaction.remote_start_id)

    def recover(self, settings: TxSettings, charging: bool) -> Outcome:
        """After a restart: resume the transaction when the EV is still charging and the stop
        points allow it, else end it with PowerLoss (never twice: the record goes with Ended)."""
        out = Outcome()
        if not self.recovering or self.transaction is None:
            return out
        self.recovering = False
        tx = self.transaction
        still = self._conditions()
        if charging and all(still.get(p, True) for p in tx.reached if p in settings.stop_points):
            self._evaluate(settings, "ChargingStateChanged", out, force=True)
            return out
        out.stop_charging = self.contactor
        self._end(out, "AbnormalCondition", "PowerLoss")
        self.token = None
        return out

    # --- the rules

    def charging_state(self) -> str:
        if not self.connected:
            return "Idle"
        if self.contactor:
            return "Charging" if self.ev_ready else "SuspendedEV"
        if self.ev_ready and self.token is not None:
            return "SuspendedEVSE"
        return "EVConnected"

    def _conditions(self) -> dict[str, bool]:
        return {
            "ParkingBayOccupancy": self.connected,
            "EVConnected": self.connected,
            "Authorized": self.token is not None,
            "DataSigned": self.signed,
            "PowerPathClosed": self.connected and self.contactor,  # to the EV: none unplugged
            "EnergyTransfer": self.connected and self.contactor and self.ev_ready,
        }

    def _stop_point_reachable(self, settings: TxSettings) -> bool:
        """Can a stop point still end the transaction (one that holds now and may fall)?"""
        tx = self.transaction
        assert tx is not None
        now = self._conditions()
        return any(now[p] or p in tx.reached for p in settings.stop_points if p != "Authorized")

    def _evaluate(
        self, settings: TxSettings, trigger: str, out: Outcome | None = None, force: bool = False
    ) -> Outcome:
        out = out if out is not None else Outcome()
        now = self._conditions()
        tx = self.transaction
        if tx is None:
            if self.recovering or not settings.may_start or self.faulted:
                return out
            self.spent = {p for p in self.spent if now[p]}
            met = [p for p in settings.start_points if now.get(p) and p not in self.spent]
            if met:
                self._start(out, settings, START_TRIGGER[met[0]])
            return out
        if self.recovering:  # recover() decides, once the OEM's cp_status is known
            return out
        for point in settings.stop_points:
            if now[point] and point not in tx.reached:
                tx.reached.append(point)
        fallen = [p for p in tx.reached if p in settings.stop_points and not now[p]]
        if fallen:
            reason = tx.stop_reason or _stopped_reason(fallen[0], self)
            self._end(out, trigger, reason)
            return out
        state = self.charging_state()
        token_news = tx.authorized and not tx.token_sent
        if force or state != tx.charging_state or token_news or trigger == "CablePluggedIn":
            self._event(out, "Updated", trigger, report_state=force)
        return out

    def _start(self, out: Outcome, settings: TxSettings, trigger: str) -> None:
        token = self.token
        tx = Transaction(str(uuid.uuid4()), connector=self.connector)
        if token is not None:
            tx.id_token, tx.group, tx.authorized = token.id_token, token.group, True
            tx.remote_start_id = token.remote_start_id
            if token.remote_start_id is not None and trigger == "Authorized":
                trigger = "RemoteStart"
        now = self._conditions()
        tx.reached = [p for p in settings.stop_points if now[p]]
        self.transaction = tx
        self._event(out, "Started", trigger, meter_context="Transaction.Begin")

    def _event(
        self,
        out: Outcome,
        event_type: str,
        trigger: str,
        charging_state: str | None = None,
        meter_context: str | None = None,
        stopped_reason: str | None = None,
        id_token: dict[str, Any] | None = None,
        report_state: bool = False,
    ) -> None:
        tx = self.transaction
        assert tx is not None
        state = charging_state or self.charging_state()
        report = report_state or event_type == "Started" or state != tx.charging_state
        changed = state if report else None
        tx.charging_state = state
        token = id_token  # E07.FR.02: the token that ended the authorization
        first = token is None and tx.authorized and not tx.token_sent and tx.id_token is not None
        if first:
            token, tx.token_sent = tx.id_token, True  # once, after the authorization
        seq_no, tx.seq_no = tx.seq_no, tx.seq_no + 1
        out.events.append(
            TxEvent(
                event_type,
                trigger,
                seq_no,
                tx.transaction_id,
                tx.connector,
                changed,
                token,
                stopped_reason,
                # F02.FR.01: remoteStartId in the event that first carries the remote token.
                tx.remote_start_id if first or event_type == "Started" else None,
                meter_context,
                None if event_type == "Ended" else tx.to_json(),
                tx.id_token,
                tuple(tx.ended_values) if event_type == "Ended" else (),
            )
        )

    def _end(
        self, out: Outcome, trigger: str, reason: str, token: dict[str, Any] | None = None
    ) -> None:
        tx = self.transaction
        assert tx is not None
        self._event(
            out,
            "Ended",
            trigger,
            meter_context="Transaction.End",
            stopped_reason=reason,
            id_token=token,
        )
        self.transaction = None
        self.token = None
        self.signed = False
        self.recovering = False
        # What still holds (the EV still plugged in) does not start the next transaction.
        self.spent = {p for p, held in self._conditions().items() if held}


def _stopped_reason(point: str, session: EvseSession) -> str:
    """StoppedReasonEnumType for a stop point that fell without an earlier decision."""
    if point in ("EVConnected", "ParkingBayOccupancy") or not session.connected:
        return "EVDisconnected"  # also the power path and energy transfer of an unplugged EV
    if point == "Authorized":
        return "DeAuthorized"
    if point == "EnergyTransfer" and session.contactor and not session.ev_ready:
        return "StoppedByEV"
    return "Other"
