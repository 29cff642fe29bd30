"""A transaction open at an unclean stop, decided by the restarted station (no sockets): it waits
for both the EV's pilot state and the OEM's contactor answer, in either order, before it
resumes the transaction or ends it with PowerLoss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.oem.link import OemAnswer, OemNoAnswer
from bridge.rpc import CallResult
from bridge.station.effects import AskOem, Effect
from bridge.station.evse_session import EvseSession, Token, TxSettings
from bridge.station.message_queue import Outgoing
from bridge.store import Store
from tests.test_registration import Harness

CARD = {"idToken": "CARD1", "type": "ISO14443"}


def charging_snapshot() -> tuple[str, object]:
    """The saved state of a transaction that was Charging (contactor closed) when it stopped."""
    settings = TxSettings()
    session = EvseSession(1)
    session.plugged(settings, True)
    session.authorized(settings, Token(CARD))
    session.contactor_changed(settings, True)
    last = session.ev_ready_changed(settings, True).events[-1]
    assert last.charging_state == "Charging"
    assert last.snapshot is not None
    return last.transaction_id, last.snapshot


def restarted(tmp_path: Path) -> tuple[Harness, str]:
    """A station started over a store holding that open transaction, connected and booted;
    the key of its contactor question."""
    store = Store(str(tmp_path / "bridge.db"))
    transaction_id, snapshot = charging_snapshot()
    store.save_transaction(1, transaction_id, snapshot)
    h = Harness(tmp_path, evses="[1]", store=store)
    h.station.started()
    (ask,) = [e for e in h.station.take_effects() if is_ask(e, "cs_contactor_status")]
    assert isinstance(ask, AskOem)
    h.connect()
    h.boot()
    delivered(h)
    return h, ask.key


def is_ask(effect: Effect, name: str) -> bool:
    return isinstance(effect, AskOem) and effect.name == name


def delivered(h: Harness) -> list[Outgoing]:
    """Send what is queued, the CSMS answering each (durable messages wait for that)."""
    out = []
    while isinstance(message := h.station.queue.next(), Outgoing):
        out.append(message)
        if message.durable:
            h.answer(message, CallResult({}))
    return out


def without_meter(h: Harness, effects: list[Effect]) -> None:
    """The OEM gives no meter reading: the events that wait for one go without it."""
    for effect in effects:
        if isinstance(effect, AskOem) and effect.name == "meter_values":
            h.station.oem_answered(effect.key, TIMEOUT)


def events(h: Harness) -> list[dict[str, Any]]:
    return [m.payload for m in delivered(h) if m.action == "TransactionEvent"]


OPENED = OemAnswer("cs_contactor_status", {"evse_id": "1", "status": "opened"})
TIMEOUT = OemNoAnswer("timeout", "the OEM did not answer in 2 s")


@pytest.mark.parametrize("pilot_first", [True, False])
def test_the_contactor_answer_decides_the_end_whatever_comes_first(
    tmp_path: Path, pilot_first: bool
) -> None:
    h, key = restarted(tmp_path)
    if pilot_first:
        h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "B1"})
        assert events(h) == []  # the contactor is not known yet: nothing decided
        h.station.oem_answered(key, OPENED)
    else:
        h.station.oem_answered(key, OPENED)
        assert events(h) == []  # the EV's state is not known yet
        h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "B1"})
    effects = h.station.take_effects()
    without_meter(h, effects)
    (ended,) = events(h)
    assert ended["eventType"] == "Ended"
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended["transactionInfo"]["chargingState"] == "EVConnected"  # the contactor opened
    assert not any(is_ask(e, "stop_charging") for e in effects)  # nothing to stop


def test_without_a_contactor_answer_the_last_known_contactor_is_stopped(tmp_path: Path) -> None:
    h, key = restarted(tmp_path)
    h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "B1"})
    assert events(h) == []
    h.station.oem_answered(key, TIMEOUT)
    effects = h.station.take_effects()
    without_meter(h, effects)
    without_meter(h, effects)
    (ended,) = events(h)
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended["transactionInfo"]["chargingState"] == "SuspendedEV"  # still closed, EV not
    assert any(is_ask(e, "stop_charging") for e in effects)  # so the OEM is told to stop


def test_the_ev_still_charging_resumes_once_the_contactor_is_known(tmp_path: Path) -> None:
    h, key = restarted(tmp_path)
    h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "C2"})
    assert events(h) == []
    h.station.oem_answered(
        key, OemAnswer("cs_contactor_status", {"evse_id": "1", "status": "closed"})
    )
    (resumed,) = events(h)
    assert (resumed["eventType"], resumed["triggerReason"]) == ("Updated", "ChargingStateChanged")
    assert resumed["seqNo"] == 4


def test_the_first_pilot_state_after_the_restart_decides(tmp_path: Path) -> None:
    """The EV charged when the bridge came back (C2), then paused (B2) before the OEM's
    contactor answer: the session went on, so the transaction resumes, reporting SuspendedEV."""
    h, key = restarted(tmp_path)
    h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "C2"})
    h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "B2"})
    assert events(h) == []
    closed = OemAnswer("cs_contactor_status", {"evse_id": "1", "status": "closed"})
    h.station.oem_answered(key, closed)
    without_meter(h, h.station.take_effects())
    (resumed,) = events(h)
    assert resumed["eventType"] == "Updated"
    assert resumed["transactionInfo"]["chargingState"] == "SuspendedEV"
