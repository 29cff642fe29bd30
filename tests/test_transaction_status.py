"""E14 Check transaction status: GetTransactionStatus from a real WebSocket CSMS during a real
charging session (the OEM plugs an EV in and authorizes through a real Mosquitto), with the
CSMS holding its TransactionEvent answers so that the events wait in the station's queue."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from bridge.app import Bridge
from bridge.timeutil import ocpp_timestamp
from tests.conftest import Broker, Oem, make_station, ocpp_call, running_bridge, write_config
from tests.robustness.robust_support import RawCsms


class HoldingCsms(RawCsms):
    """Answers every CALL at once, except TransactionEvent while `holding`: those stay
    unanswered until `release()` (the station keeps them queued meanwhile)."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.holding = False
        self._answered: set[str] = set()

    def _answer(self, action: str, payload: Any, seen: int) -> Any:
        if action == "BootNotification":
            return {"currentTime": ocpp_timestamp(), "interval": 300, "status": "Accepted"}
        if action == "Heartbeat":
            return {"currentTime": ocpp_timestamp()}
        if action == "TransactionEvent" and self.holding:
            return None
        return {}

    def transaction_events(self) -> list[list[Any]]:
        events = []
        for frame in self.frames:
            message = json.loads(frame.text)
            if message[0] == 2 and message[2] == "TransactionEvent":
                events.append(message)
        return events

    async def release(self) -> None:
        self.holding = False
        for message in self.transaction_events():
            if message[1] not in self._answered:
                self._answered.add(message[1])
                await self.send(json.dumps([3, message[1], {}]))

    async def status(self, transaction_id: str | None = None) -> dict[str, Any]:
        """GetTransactionStatus; the station's CallResult payload."""
        payload = {} if transaction_id is None else {"transactionId": transaction_id}
        reply = await self.call("GetTransactionStatus", payload)
        assert reply[0] == 3, reply
        result: dict[str, Any] = reply[2]
        return result


async def until(condition: Any, what: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"waited {timeout} s for {what}")


def update(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data}


def drained(bridge: Bridge) -> bool:
    return bridge.station.queue.backlog == 0


async def test_e14_get_transaction_status_through_a_charging_session(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    csms = HoldingCsms()
    await csms.start()
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        csms=f'url = "{csms.url}"',
        # no meter_values requests to the OEM: the events go at once
        extra='[device_model]\n"SampledDataCtrlr.Enabled" = false\n',
    )
    try:
        async with running_bridge(config) as bridge:
            await csms.wait_calls("StatusNotification")
            await until(lambda: drained(bridge), "the start-up messages delivered")
            # E14.FR.06: no transactionId, no ongoingIndicator; E14.FR.08: nothing queued
            assert await csms.status() == {"messagesInQueue": False}
            # E14.FR.01: an unknown transaction
            assert await csms.status("no-such-transaction") == {
                "messagesInQueue": False,
                "ongoingIndicator": False,
            }

            csms.holding = True
            await oem.send(update("cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"}))
            answer = await oem.request(
                {
                    "id": str(uuid.uuid4()),
                    "name": "authorization",
                    "type": "request",
                    "data": {"evse_id": "1", "token_type": "no_authorization"},
                }
            )
            assert answer["data"] == {"status": "accepted"}
            await csms.wait_calls("TransactionEvent")
            started = csms.transaction_events()[0][3]
            assert started["eventType"] == "Started"
            tx = started["transactionInfo"]["transactionId"]
            # E14.FR.02 ongoing; E14.FR.04 its events not yet delivered (the CSMS holds them)
            assert await csms.status(tx) == {"messagesInQueue": True, "ongoingIndicator": True}
            # E14.FR.07: without a transactionId, whether any TransactionEvent is queued
            assert await csms.status() == {"messagesInQueue": True}
            # E14.FR.05 for another transaction (and E14.FR.01: unknown)
            assert await csms.status("another") == {
                "messagesInQueue": False,
                "ongoingIndicator": False,
            }

            await csms.release()
            await until(lambda: drained(bridge), "the transaction's events delivered")
            # E14.FR.05: nothing queued of it any more; still ongoing
            assert await csms.status(tx) == {"messagesInQueue": False, "ongoingIndicator": True}
            assert await csms.status() == {"messagesInQueue": False}

            csms.holding = True
            await oem.send(update("cp_status", {"evse_id": "1", "connector_id": 1, "state": "A1"}))
            await until(
                lambda: csms.transaction_events()[-1][3]["eventType"] == "Ended", "the Ended event"
            )
            # E14.FR.03 ended; E14.FR.04 its Ended event still waits for the CSMS's answer
            assert await csms.status(tx) == {"messagesInQueue": True, "ongoingIndicator": False}
            await csms.release()
            await until(lambda: drained(bridge), "the Ended event delivered")
            assert await csms.status(tx) == {"messagesInQueue": False, "ongoingIndicator": False}
            assert {
                e[3]["transactionInfo"]["transactionId"] for e in csms.transaction_events()
            } == {tx}
    finally:
        await csms.stop()


async def test_e14_messages_in_queue_counts_only_transaction_events_of_that_transaction(
    tmp_path: Path,
) -> None:
    """The queue's own query: a queued security event is no transaction-related message of E14,
    another transaction's event is not this one's (the CSMS asks through the same dispatcher)."""
    station = make_station(tmp_path)
    station.security_events.startup()
    assert await ocpp_call(station, "GetTransactionStatus", {}) == {"messagesInQueue": False}
    event = {
        "eventType": "Updated",
        "timestamp": ocpp_timestamp(),
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "tx-1"},
    }
    station.queue.put("TransactionEvent", event, "tx:1")
    assert await ocpp_call(station, "GetTransactionStatus", {}) == {"messagesInQueue": True}
    assert await ocpp_call(station, "GetTransactionStatus", {"transactionId": "tx-1"}) == {
        "messagesInQueue": True,
        "ongoingIndicator": False,  # queued after a restart: no session holds it open
    }
    assert await ocpp_call(station, "GetTransactionStatus", {"transactionId": "tx-2"}) == {
        "messagesInQueue": False,
        "ongoingIndicator": False,
    }
    # a transactionId that looks like JSON or SQL is just a string
    for odd in ('"tx-1"', "tx-1' OR 1=1 --", "%"):
        result = await ocpp_call(station, "GetTransactionStatus", {"transactionId": odd})
        assert result["messagesInQueue"] is False
