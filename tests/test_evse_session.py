"""The EVSE session state machine on its own (no store, no sockets): E01-E11 rules as unit tests,
and Hypothesis sequences of session inputs against its invariants."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.station.evse_session import (
    START_POINTS,
    STOP_POINTS,
    EvseSession,
    Outcome,
    Token,
    Transaction,
    TxEvent,
    TxSettings,
)

CARD = {"idToken": "CARD1", "type": "ISO14443"}
OTHER = {"idToken": "CARD2", "type": "ISO14443"}
DEFAULT = TxSettings()


def kinds(outcome: Outcome) -> list[tuple[str, str, str | None]]:
    return [(e.event_type, e.trigger, e.stopped_reason) for e in outcome.events]


# --- unit tests of the rules


def test_e01_ev_connected_starts_then_authorized_updates_with_the_token() -> None:
    session = EvseSession(1)
    started = session.plugged(DEFAULT, True)
    assert kinds(started) == [("Started", "CablePluggedIn", None)]
    event = started.events[0]
    assert (event.seq_no, event.charging_state, event.id_token) == (0, "EVConnected", None)
    assert event.meter_context == "Transaction.Begin"
    authorized = session.authorized(DEFAULT, Token(CARD))
    assert kinds(authorized) == [("Updated", "Authorized", None)]
    assert authorized.events[0].id_token == CARD
    assert authorized.events[0].seq_no == 1


def test_e02_authorized_first_starts_with_the_token_then_plug_in_updates() -> None:
    session = EvseSession(1)
    started = session.authorized(DEFAULT, Token(CARD))
    assert kinds(started) == [("Started", "Authorized", None)]
    assert started.events[0].id_token == CARD
    assert started.events[0].charging_state == "Idle"
    plugged = session.plugged(DEFAULT, True)
    assert kinds(plugged) == [("Updated", "CablePluggedIn", None)]
    assert plugged.events[0].charging_state == "EVConnected"
    assert plugged.events[0].id_token is None  # once per transaction


def test_charging_states_follow_the_contactor_and_the_ev() -> None:
    session = EvseSession(1)
    session.plugged(DEFAULT, True)
    session.authorized(DEFAULT, Token(CARD))
    assert session.ev_ready_changed(DEFAULT, True).events[0].charging_state == "SuspendedEVSE"
    charging = session.contactor_changed(DEFAULT, True).events[0]
    assert (charging.trigger, charging.charging_state) == ("ChargingStateChanged", "Charging")
    assert session.ev_ready_changed(DEFAULT, False).events[0].charging_state == "SuspendedEV"


def test_e07_same_token_stops_with_stop_authorized_local_and_stop_charging() -> None:
    session = EvseSession(1)
    session.plugged(DEFAULT, True)
    session.authorized(DEFAULT, Token(CARD))
    session.contactor_changed(DEFAULT, True)
    stopped = session.deauthorized(DEFAULT)
    assert kinds(stopped) == [("Ended", "StopAuthorized", "Local")]
    assert stopped.stop_charging
    assert stopped.events[0].meter_context == "Transaction.End"
    assert session.transaction is None
    # The cable still in does not start the next transaction.
    assert session.contactor_changed(DEFAULT, False).events == []


def test_e07_without_authorized_stop_point_the_transaction_ends_at_unplug_with_local() -> None:
    only_cable = TxSettings(start_points=("EVConnected",), stop_points=("EVConnected",))
    session = EvseSession(1)
    session.plugged(only_cable, True)
    session.authorized(only_cable, Token(CARD))
    updated = session.deauthorized(only_cable)
    assert kinds(updated) == [("Updated", "StopAuthorized", None)]
    ended = session.plugged(only_cable, False)
    assert kinds(ended) == [("Ended", "EVCommunicationLost", "Local")]


def test_e10_unplug_ends_with_ev_disconnected() -> None:
    session = EvseSession(1)
    session.plugged(DEFAULT, True)
    session.authorized(DEFAULT, Token(CARD))
    assert kinds(session.plugged(DEFAULT, False)) == [
        ("Ended", "EVCommunicationLost", "EVDisconnected")
    ]


def test_e03_authorized_without_ev_times_out() -> None:
    session = EvseSession(1)
    session.authorized(DEFAULT, Token(CARD))
    ended = session.connection_timeout()
    assert kinds(ended) == [("Ended", "EVConnectTimeout", "Timeout")]
    assert session.token is None


def test_e03_without_transaction_only_the_authorization_lapses() -> None:
    cable_first = TxSettings(start_points=("EVConnected",), stop_points=("EVConnected",))
    session = EvseSession(1)
    assert session.authorized(cable_first, Token(CARD)).events == []
    assert session.connection_timeout().events == []
    assert session.token is None
    assert session.plugged(cable_first, True).events[0].id_token is None


def test_power_path_closed_start_point_waits_for_the_contactor() -> None:
    power = TxSettings(start_points=("PowerPathClosed",), stop_points=("PowerPathClosed",))
    session = EvseSession(1)
    assert session.plugged(power, True).events == []
    assert session.authorized(power, Token(CARD)).events == []
    session.ev_ready_changed(power, True)
    started = session.contactor_changed(power, True)
    assert kinds(started) == [("Started", "ChargingStateChanged", None)]
    assert started.events[0].id_token == CARD
    assert started.events[0].charging_state == "Charging"
    assert kinds(session.contactor_changed(power, False)) == [
        ("Ended", "ChargingStateChanged", "Other")
    ]


def test_e05_invalid_id_ends_or_suspends_per_stop_tx_on_invalid_id() -> None:
    session = EvseSession(1)
    session.plugged(DEFAULT, True)
    session.authorized(DEFAULT, Token(CARD))
    assert kinds(session.invalid_token(DEFAULT, 100.0)) == [
        ("Ended", "Deauthorized", "DeAuthorized")
    ]
    keep = TxSettings(stop_on_invalid_id=False, max_energy_on_invalid_id=0)
    session = EvseSession(1)
    session.plugged(keep, True)
    session.authorized(keep, Token(CARD))
    session.contactor_changed(keep, True)
    suspended = session.invalid_token(keep, 100.0)
    assert kinds(suspended) == [("Updated", "Deauthorized", None)]
    assert suspended.events[0].charging_state == "SuspendedEVSE"
    assert suspended.stop_charging


def test_max_energy_on_invalid_id_stops_energy_at_the_limit() -> None:
    limited = TxSettings(stop_on_invalid_id=False, max_energy_on_invalid_id=500)
    session = EvseSession(1)
    session.plugged(limited, True)
    session.authorized(limited, Token(CARD))
    session.contactor_changed(limited, True)
    assert not session.invalid_token(limited, 1000.0).stop_charging
    assert session.energy(1400.0).events == []
    reached = session.energy(1500.0)
    assert kinds(reached) == [("Updated", "EnergyLimitReached", None)]
    assert reached.stop_charging


def test_restart_resumes_a_charging_transaction_with_the_next_seq_no() -> None:
    session = EvseSession(1)
    session.plugged(DEFAULT, True)
    last = session.authorized(DEFAULT, Token(CARD)).events[-1]
    assert last.snapshot is not None
    again = EvseSession(1)
    again.restore(Transaction.from_json(last.snapshot))
    again.connected, again.ev_ready, again.contactor = True, True, True
    resumed = again.recover(DEFAULT, charging=True)
    assert kinds(resumed) == [("Updated", "ChargingStateChanged", None)]
    assert resumed.events[0].seq_no == last.seq_no + 1
    assert resumed.events[0].transaction_id == last.transaction_id


def test_restart_without_the_ev_charging_ends_with_power_loss_once() -> None:
    session = EvseSession(1)
    last = session.plugged(DEFAULT, True).events[-1]
    assert last.snapshot is not None
    again = EvseSession(1)
    again.restore(Transaction.from_json(last.snapshot))
    ended = again.recover(DEFAULT, charging=False)
    assert kinds(ended) == [("Ended", "AbnormalCondition", "PowerLoss")]
    assert again.recover(DEFAULT, charging=False).events == []
    assert again.transaction is None


def test_tx_before_accepted_disabled_blocks_the_start() -> None:
    blocked = TxSettings(may_start=False)
    session = EvseSession(1)
    assert session.plugged(blocked, True).events == []
    assert session.transaction is None


# --- Hypothesis: random sessions keep the invariants

point_sets = st.lists(st.sampled_from(START_POINTS), min_size=1, max_size=3, unique=True)
stop_sets = st.lists(st.sampled_from(STOP_POINTS), min_size=1, max_size=3, unique=True)
tx_settings = st.builds(
    TxSettings,
    start_points=point_sets.map(tuple),
    stop_points=stop_sets.map(tuple),
    stop_on_ev_side_disconnect=st.booleans(),
    stop_on_invalid_id=st.booleans(),
    max_energy_on_invalid_id=st.sampled_from([0, 100]),
    may_start=st.just(True),
)
inputs = st.one_of(
    st.tuples(st.just("plugged"), st.booleans()),
    st.tuples(st.just("ev_ready"), st.booleans()),
    st.tuples(st.just("contactor"), st.booleans()),
    st.tuples(st.just("authorized"), st.sampled_from([CARD, OTHER])),
    st.tuples(st.just("deauthorized"), st.none()),
    st.tuples(st.just("invalid"), st.floats(0, 1e6)),
    st.tuples(st.just("energy"), st.floats(0, 1e6)),
    st.tuples(st.just("signed"), st.none()),
    st.tuples(st.just("fault"), st.booleans()),
    st.tuples(st.just("stop"), st.none()),
    st.tuples(st.just("timeout"), st.none()),
    st.tuples(st.just("restart"), st.booleans()),
)


class Ledger:
    """What the CSMS would have received, checked as it arrives."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}  # transactionId -> last seqNo
        self.ended: set[str] = set()
        self.open: str | None = None
        self.tokens: dict[str, int] = {}

    def take(self, outcome: Outcome) -> None:
        for event in outcome.events:
            self._event(event)

    def _event(self, event: TxEvent) -> None:
        tx = event.transaction_id
        assert tx not in self.ended, "an event after Ended"
        if event.event_type == "Started":
            assert self.open is None, "a second open transaction on the EVSE"
            assert tx not in self.seq
            assert event.seq_no == 0
            self.open = tx
        else:
            assert self.open == tx, "an event of a transaction that is not open"
            assert event.seq_no == self.seq[tx] + 1, "seqNo not continuous"
        self.seq[tx] = event.seq_no
        if event.id_token is not None:
            self.tokens[tx] = self.tokens.get(tx, 0) + 1
        if event.event_type == "Ended":
            assert event.stopped_reason, "Ended without stoppedReason"
            assert event.snapshot is None
            self.ended.add(tx)
            self.open = None
        else:
            assert event.stopped_reason is None
            assert event.snapshot is not None
            assert event.snapshot["seq_no"] == event.seq_no + 1


def _feed(session: EvseSession, config: TxSettings, name: str, value: Any) -> Outcome:
    match name:
        case "plugged":
            return session.plugged(config, value)
        case "ev_ready":
            return session.ev_ready_changed(config, value)
        case "contactor":
            return session.contactor_changed(config, value)
        case "authorized":
            return session.authorized(config, Token(value))
        case "deauthorized":
            return session.deauthorized(config)
        case "invalid":
            return session.invalid_token(config, value)
        case "energy":
            return session.energy(value)
        case "signed":
            return session.signed_data(config)
        case "fault":
            return session.fault(config, value)
        case "stop":
            return session.stop("AbnormalCondition", "Other")
        case "timeout":
            return session.connection_timeout()
    raise AssertionError(name)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=tx_settings, steps=st.lists(inputs, max_size=40))
def test_random_sessions_keep_the_transaction_invariants(
    config: TxSettings, steps: list[tuple[str, Any]]
) -> None:
    session = EvseSession(1)
    ledger = Ledger()
    saved: dict[str, Any] | None = None  # what the store holds: the last event's snapshot
    for name, value in steps:
        if name == "restart":  # kill -9 and start again: only the saved state survives
            session = EvseSession(1)
            if saved is not None:
                session.restore(Transaction.from_json(saved))
                session.connected = session.ev_ready = session.contactor = value
                outcome = session.recover(config, charging=value)
            else:
                outcome = Outcome()
        else:
            outcome = _feed(session, config, name, value)
        ledger.take(outcome)
        for event in outcome.events:
            saved = event.snapshot
        assert (session.transaction is None) == (ledger.open is None)
        if session.transaction is not None:
            assert session.transaction.transaction_id == ledger.open
    # Every Started is eventually Ended: the EV leaves and the EVSE stops.
    ledger.take(session.plugged(config, False))
    ledger.take(session.stop("AbnormalCondition", "Other"))
    assert ledger.open is None
    assert set(ledger.seq) == ledger.ended
    assert all(count <= 2 for count in ledger.tokens.values())
