"""Boot, heartbeat and resynchronisation as a state machine (B01-B04, G02, F06), with a fake
clock: events in, queued messages and effects out, no sockets and no waiting."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_settings
from bridge.rpc import CallResult, NoAnswer, Outcome
from bridge.rpc.request import Request
from bridge.station import Station
from bridge.station.connectivity import Target
from bridge.station.effects import Cancel, Effect, Publish, Schedule, Send
from bridge.station.message_queue import Outgoing
from bridge.store import Store
from tests.conftest import write_config

NOW = "2026-12-03T10:00:00.000Z"


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A station over an in-memory store and a fake clock, with a pretend CSMS connection."""

    def __init__(self, tmp_path: Path, evses: str = "[1, 1]", store: Store | None = None) -> None:
        settings = load_settings(
            write_config(
                tmp_path / "bridge.toml",
                None,
                evses=evses,
                csms='url = "ws://csms/ocpp"',
                # NOW is not the real time: no SettingSystemTime security event (A04) in the queue
                extra='[device_model]\n"ClockCtrlr.TimeAdjustmentReportingThreshold" = 0\n',
            )
        )
        self.clock = FakeClock()
        store = Store(":memory:") if store is None else store
        self.station = Station(settings, store, monotonic=self.clock)
        self.target = self.station.connectivity.next_target()
        assert isinstance(self.target, Target)

    def connect(self) -> list[Effect]:
        self.station.csms_connected(self.target)  # type: ignore[arg-type]
        return self.station.take_effects()

    def sent(self) -> list[Outgoing]:
        """Take what the drain task would send now (without answering it)."""
        out = []
        while isinstance(message := self.station.queue.next(), Outgoing):
            out.append(message)
        return out

    def answer(self, message: Outgoing, outcome: Outcome) -> list[Effect]:
        if self.station.queue.done(message, outcome):
            self.station.answered(message, outcome)
        return self.station.take_effects()

    def boot(self, status: str = "Accepted", interval: int = 300) -> list[Effect]:
        (boot,) = self.sent()
        assert boot.action == "BootNotification"
        return self.answer(
            boot, CallResult({"status": status, "currentTime": NOW, "interval": interval})
        )


def test_b01_boot_then_statuses_then_heartbeat(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.connect()
    effects = h.boot(interval=300)
    assert Publish("boot_status", {"status": "accepted"}) in effects
    assert Schedule("heartbeat", 300.0) in effects
    assert h.station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "300"  # B01.FR.04
    statuses = h.sent()
    assert [(m.action, m.payload["evseId"]) for m in statuses] == [
        ("StatusNotification", 1),
        ("StatusNotification", 2),
    ]  # B01.FR.05
    h.station.timer("heartbeat")
    assert [m.action for m in h.sent()] == ["Heartbeat"]
    assert Schedule("heartbeat", 300.0) in h.station.take_effects()


@pytest.mark.parametrize(
    ("status", "interval", "wait"), [("Pending", 12, 12.0), ("Rejected", 0, 30.0)]
)
def test_b02_b03_boot_again_after_interval(
    tmp_path: Path, status: str, interval: int, wait: float
) -> None:
    h = Harness(tmp_path)
    h.connect()
    effects = h.boot(status, interval)
    assert Schedule("boot", wait) in effects
    assert Publish("boot_status", {"status": status.lower()}) in effects
    assert h.sent() == []  # B02.FR.02: nothing else
    h.station.timer("boot")
    assert [m.action for m in h.sent()] == ["BootNotification"]


def test_b02_a_pending_csms_triggers_a_boot_right_after_its_response(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.connect()
    h.boot("Pending", 600)
    result = _call(h.station, "TriggerMessage", {"requestedMessage": "BootNotification"})
    assert result.payload == {"status": "Accepted"}
    assert Schedule("boot", 0) in result.effects  # after the response (F06.FR.04)
    assert h.sent() == []
    h.station.timer("boot")
    (boot,) = h.sent()
    assert boot.payload["reason"] == "Triggered"


def test_a_boot_without_an_answer_is_retried_and_a_closed_connection_boots_anew(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    h.connect()
    (boot,) = h.sent()
    assert Schedule("boot", 30.0) in h.answer(boot, NoAnswer("timeout"))
    h.station.timer("boot")
    h.station.take_effects()
    (boot,) = h.sent()
    assert h.answer(boot, NoAnswer("offline")) == []  # no retry on a connection that is gone
    h.station.csms_disconnected()
    assert Cancel("boot") in h.station.take_effects()
    h.connect()
    assert [m.action for m in h.sent()] == ["BootNotification"]


def test_b04_short_outage_resends_changed_statuses_long_outage_all(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.connect()
    h.boot()
    for message in h.sent():
        h.answer(message, CallResult({}))
    h.station.csms_disconnected()
    h.station.take_effects()
    h.clock.now += 10  # shorter than OfflineThreshold (60 s)
    effects = h.connect()
    assert h.sent() == []  # B04.FR.02: nothing changed; no new boot either
    assert Schedule("heartbeat", 300.0) in effects
    h.station.csms_disconnected()
    h.clock.now += 61
    h.connect()
    assert len(h.sent()) == 2  # B04.FR.01


def test_a_current_time_without_offset_keeps_the_status_not_the_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path)
    h.connect()
    (boot,) = h.sent()
    offset = h.station.clock.offset
    with caplog.at_level(logging.WARNING):
        h.answer(
            boot,
            CallResult(
                {"status": "Accepted", "currentTime": "2026-12-03T10:00:00", "interval": 60}
            ),
        )
    assert h.station.registration.status == "Accepted"
    assert h.station.clock.offset == offset
    assert "clock is not synchronized" in caplog.text


def test_g02_a_new_heartbeat_interval_applies_at_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.connect()
    h.boot()
    h.station.take_effects()
    result = _call(
        h.station,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeValue": "42",
                }
            ]
        },
    )
    assert Schedule("heartbeat", 42.0) in result.effects


def test_f06_triggered_messages_follow_the_response(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.connect()
    h.boot()
    h.sent()
    result = _call(h.station, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert result.effects == (Send("Heartbeat", {}, "heartbeat"),)
    assert h.sent() == []  # nothing before the response is out
    result = _call(
        h.station,
        "TriggerMessage",
        {"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}},
    )
    (send,) = result.effects
    assert (send.action, send.payload["evseId"], send.triggered) == ("StatusNotification", 2, True)


def _call(station: Station, action: str, payload: dict[str, Any]) -> CallResult:
    import asyncio

    result = asyncio.run(station.csms_call(Request("csms", "ocpp2.0.1", action, payload)))
    assert isinstance(result, CallResult), result
    return result
