"""TxEndedInterval (J02 SampledDataCtrlr, J01 AlignedDataCtrlr): samples taken during the
transaction ride in its Ended event, before the Transaction.End value, each with its own
TxEndedMeasurands and context; they survive a restart (no sockets: the station over a store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.oem.link import OemAnswer
from bridge.station.effects import AskOem, Effect, Schedule
from bridge.store import Store
from tests.test_registration import Harness
from tests.test_trigger_unlock import READING
from tests.test_tx_recovery import TIMEOUT, delivered, restarted

CLOSED = OemAnswer("cs_contactor_status", {"evse_id": "1", "status": "closed"})


def asks(effects: list[Effect]) -> list[AskOem]:
    return [e for e in effects if isinstance(e, AskOem) and e.name == "meter_values"]


def reading(energy: int, timestamp: str) -> OemAnswer:
    return OemAnswer("meter_values", {**READING, "total_active_energy_imported": energy,
                                      "timestamp": timestamp})  # fmt: skip


def charging(tmp_path: Path, store: Store | None = None) -> Harness:
    """A restored transaction resumed (the EV charging, the contactor closed)."""
    h, key = restarted(tmp_path)
    h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "C2"})
    h.station.oem_answered(key, CLOSED)
    for ask in asks(h.station.take_effects()):
        h.station.oem_answered(ask.key, TIMEOUT)
    delivered(h)
    return h


def sample(h: Harness, timer: str, energy: int, timestamp: str) -> None:
    h.station.timer(timer)
    (ask,) = asks(h.station.take_effects())
    h.station.oem_answered(ask.key, reading(energy, timestamp))


def end(h: Harness) -> dict[str, Any]:
    h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "A1"})
    (ask,) = asks(h.station.take_effects())
    h.station.oem_answered(ask.key, reading(3000, "2026-12-03T10:05:00.000Z"))
    (ended,) = [m.payload for m in delivered(h) if m.action == "TransactionEvent"]
    assert ended["eventType"] == "Ended"
    return ended


def shape(ended: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return [
        (
            value["timestamp"],
            value["sampledValue"][0]["context"],
            sorted({s.get("measurand", "") for s in value["sampledValue"]}),
        )
        for value in ended["meterValue"]
    ]


def test_j02_samples_every_tx_ended_interval_go_in_the_ended_event(tmp_path: Path) -> None:
    h = charging(tmp_path)
    sample(h, "ended:1", 1000, "2026-12-03T10:01:00.000Z")
    sample(h, "ended:1", 2000, "2026-12-03T10:02:00.000Z")
    assert [m.action for m in delivered(h)] == []  # nothing sent before the end
    ended = shape(end(h))
    both = ["Current.Import", "Energy.Active.Import.Register"]  # SampledDataCtrlr's
    assert ended[:2] == [
        ("2026-12-03T10:01:00.000Z", "Sample.Periodic", both),
        ("2026-12-03T10:02:00.000Z", "Sample.Periodic", both),
    ]
    assert ended[2][1:] == ("Transaction.End", both)
    assert len(ended) == 3


def test_j01_clock_aligned_ended_samples_use_the_aligned_measurands(tmp_path: Path) -> None:
    h = charging(tmp_path)
    sample(h, "ended_clock", 1500, "2026-12-03T10:01:00.000Z")
    ended = end(h)
    assert shape(ended)[0] == (
        "2026-12-03T10:01:00.000Z",
        "Sample.Clock",
        ["Energy.Active.Import.Register"],  # AlignedDataCtrlr.TxEndedMeasurands
    )
    assert ended["meterValue"][0]["sampledValue"][0]["value"] == 1500


def test_the_next_sample_is_scheduled_and_stops_with_the_transaction(tmp_path: Path) -> None:
    h = charging(tmp_path)
    h.station.timer("ended:1")
    assert Schedule("ended:1", 60.0) in h.station.take_effects()
    h.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "A1"})
    h.station.timer("ended:1")  # a timer that was already due: no transaction, no sample
    assert asks(h.station.take_effects())[1:] == []  # only the Transaction.End reading


def test_ended_samples_survive_a_restart(tmp_path: Path) -> None:
    h = charging(tmp_path)
    sample(h, "ended:1", 1000, "2026-12-03T10:01:00.000Z")
    saved = h.station.store.open_transactions()[1]
    assert saved["seq_no"] == 5  # the rest of the saved state is as of the last event
    h.station.store.close()
    again = Harness(tmp_path, evses="[1]", store=Store(str(tmp_path / "bridge.db")))
    again.station.started()
    (ask,) = [e for e in again.station.take_effects() if isinstance(e, AskOem)
              and e.name == "cs_contactor_status"]  # fmt: skip
    again.connect()
    again.boot()
    delivered(again)
    again.station.cp_status({"evse_id": "1", "connector_id": 1, "state": "C2"})
    again.station.oem_answered(ask.key, CLOSED)
    for meter in asks(again.station.take_effects()):
        again.station.oem_answered(meter.key, TIMEOUT)
    delivered(again)
    ended = shape(end(again))
    assert ended[0][:2] == ("2026-12-03T10:01:00.000Z", "Sample.Periodic")
    assert [context for _, context, _ in ended] == ["Sample.Periodic", "Transaction.End"]
