"""The outbound queue, without sockets: order, durability, retries, bounds, policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rpc import CallError, CallResult, NoAnswer
from bridge.station.device_model import DeviceModel
from bridge.station.message_queue import MessageQueue, Outgoing
from bridge.store import Store

EVENT = {"type": "TamperDetectionActivated", "timestamp": "2026-12-03T10:00:00.000Z"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_queue(
    store: Store, clock: FakeClock | None = None, max_queued: int = 100_000, **values: str
) -> MessageQueue:
    dm = DeviceModel.build([1], store)
    for key, value in values.items():
        dm.write([(dm[key.replace("__", ".")], "Actual", value)])
    return MessageQueue(store, dm, max_queued, clock or FakeClock())


def drain(queue: MessageQueue) -> list[Outgoing]:
    """Send everything sendable now, each answered with an empty CallResult."""
    sent = []
    while isinstance(message := queue.next(), Outgoing):
        sent.append(message)
        assert queue.done(message, CallResult({}))
    return sent


def test_nothing_but_boot_and_triggered_messages_before_accepted() -> None:
    queue = make_queue(Store(":memory:"))
    assert queue.put("Heartbeat", {}, "heartbeat") == NoAnswer("offline", "no CSMS connection")
    queue.open(accepted=False)
    refused = queue.put("NotifyEvent", {}, "oem:1")
    assert isinstance(refused, NoAnswer)
    assert "not accepted" in refused.description
    durable = queue.put("SecurityEventNotification", EVENT, "oem:2")
    boot = queue.put("BootNotification", {}, "boot")
    triggered = queue.put("StatusNotification", {}, "status", triggered=True)
    assert isinstance(durable, Outgoing)
    assert durable.durable
    # B02.FR.02: the durable message waits for Accepted; boot and triggered go.
    assert [m.action for m in drain(queue)] == ["BootNotification", "StatusNotification"]
    assert queue.next() is None
    queue.accepted = True
    assert [m.action for m in drain(queue)] == ["SecurityEventNotification"]
    assert isinstance(triggered, Outgoing)
    assert isinstance(boot, Outgoing)


def test_durable_messages_go_first_in_original_order_before_newer_ones() -> None:
    queue = make_queue(Store(":memory:"))
    for n in range(3):
        queue.put("SecurityEventNotification", {**EVENT, "techInfo": str(n)}, f"oem:{n}")
    queue.open(accepted=True)
    queue.put("Heartbeat", {}, "heartbeat")
    queue.put("SecurityEventNotification", {**EVENT, "techInfo": "3"}, "oem:3")
    sent = drain(queue)
    assert [m.payload.get("techInfo", m.action) for m in sent] == ["0", "1", "2", "Heartbeat", "3"]


def test_durable_messages_survive_a_restart_with_their_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "bridge.db")
    queue = make_queue(store)
    ids = [queue.put("SecurityEventNotification", EVENT, "oem:x").message_id for _ in range(5)]  # type: ignore[union-attr]
    store.close()
    store = Store(tmp_path / "bridge.db")
    queue = make_queue(store)
    assert queue.backlog == 5
    queue.open(accepted=True)
    first = queue.next()
    assert isinstance(first, Outgoing)
    # A closed connection is not an attempt: the same message, same id, next time.
    assert not queue.done(first, NoAnswer("offline"))
    assert queue.close() == []
    queue.open(accepted=True)
    assert [m.message_id for m in drain(queue)] == ids
    assert queue.backlog == 0
    store.close()


def test_in_memory_messages_are_lost_with_the_connection() -> None:
    queue = make_queue(Store(":memory:"))
    queue.open(accepted=True)
    heartbeat = queue.put("Heartbeat", {}, "heartbeat")
    queue.put("SecurityEventNotification", EVENT, "oem:1")
    assert queue.close() == [heartbeat]
    assert queue.backlog == 1


def test_retries_honour_message_attempts_times_the_interval() -> None:
    clock = FakeClock()
    queue = make_queue(
        Store(":memory:"),
        clock,
        **{
            "OCPPCommCtrlr__MessageAttempts[TransactionEvent]": "3",
            "OCPPCommCtrlr__MessageAttemptInterval[TransactionEvent]": "10",
        },
    )
    queue.put("SecurityEventNotification", EVENT, "oem:1")
    queue.put("SecurityEventNotification", {**EVENT, "techInfo": "next"}, "oem:2")
    queue.open(accepted=True)
    first = queue.next()
    assert isinstance(first, Outgoing)
    error = CallError("InternalError", "CSMS failed")
    assert not queue.done(first, error)  # attempt 1 failed: wait 10 s x 1
    assert queue.next() == 10.0
    clock.now += 10
    again = queue.next()
    assert isinstance(again, Outgoing)
    assert again.message_id == first.message_id  # the same messageId on every attempt
    assert not queue.done(again, NoAnswer("timeout"))  # attempt 2: wait 10 s x 2
    assert queue.next() == 20.0
    clock.now += 20
    third = queue.next()
    assert isinstance(third, Outgoing)
    assert queue.done(third, error)  # attempt 3 of 3: dropped, its origin hears the error
    following = queue.next()
    assert isinstance(following, Outgoing)
    assert following.payload["techInfo"] == "next"


def test_the_bound_drops_the_oldest_droppable_never_started_or_ended() -> None:
    queue = make_queue(Store(":memory:"), max_queued=3)
    started = {"eventType": "Started", "seqNo": 0}
    updated = {"eventType": "Updated", "seqNo": 1}
    for payload in (started, updated, {"eventType": "Updated", "seqNo": 2}):
        queue.put("TransactionEvent", payload, "transaction")
    queue.put("TransactionEvent", {"eventType": "Ended", "seqNo": 3}, "transaction")
    queue.open(accepted=True)
    assert [m.payload["seqNo"] for m in drain(queue)] == [0, 2, 3]  # seqNo 1 made room


def test_store_memory_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    queue = make_queue(Store(":memory:"))
    queue.put("SecurityEventNotification", EVENT, "oem:1")
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(
        st.sampled_from(["durable", "memory", "send-ok", "send-error", "reconnect"]), max_size=40
    )
)
def test_durable_messages_arrive_in_order_exactly_once(steps: list[str]) -> None:
    """Whatever happens in between, the durable messages are delivered (answered) in the order
    they were queued, none twice after its CallResult, none lost."""
    queue = make_queue(
        Store(":memory:"),
        **{"OCPPCommCtrlr__MessageAttemptInterval[TransactionEvent]": "0"},
    )
    queue.open(accepted=True)
    queued: list[str] = []
    delivered: list[str] = []
    for step in steps:
        if step == "durable":
            message = queue.put("SecurityEventNotification", EVENT, "oem:x")
            assert isinstance(message, Outgoing)
            queued.append(message.message_id)
        elif step == "memory":
            queue.put("Heartbeat", {}, "heartbeat")
        elif step == "reconnect":
            queue.close()
            queue.open(accepted=True)
        else:
            message = queue.next()
            if isinstance(message, Outgoing):
                outcome = CallResult({}) if step == "send-ok" else NoAnswer("offline")
                if queue.done(message, outcome) and message.durable:
                    delivered.append(message.message_id)
    delivered += [m.message_id for m in drain(queue) if m.durable]
    assert delivered == queued
