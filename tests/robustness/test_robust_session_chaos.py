"""A charging session of 1,000+ TransactionEvents survives a CSMS that is down for most of it and
two `kill -9` of the bridge: the CSMS gets every event exactly once (after dedup by
(transactionId, seqNo)), in order, `offline: true` on those made offline, and the transaction is
resumed after each restart (SESSION_API.md "Transactions", SPEC §5).

Real parts: Mosquitto (the `broker` fixture), `python -m bridge run` as a subprocess
(`BridgeProcess`), a `RawCsms` killed and restarted on the same port, and a test OEM on aiomqtt
that answers the bridge's requests with the OEM simulator's firmware model
(bridge.oem_sim.firmware: meter_values, cs_contactor_status, stop_charging, ...).

How 1,000 events come about. `SampledDataCtrlr.TxUpdatedInterval` is whole seconds (here 1: a
MeterValuePeriodic Updated event a second, its meter value asked from the OEM), so most events
come from OEM inputs every 0.05 s instead: with the contactor closed, the EV's control pilot
alternates C2 (draws energy) and B2 (pauses), and every change is an Updated event with
triggerReason ChargingStateChanged (Charging <-> SuspendedEV).

The session:
1. CSMS up, boot accepted; plug in (Started), token authorized online (Authorize), C2 and the
   contactor closed (Charging); ONLINE_TOGGLES changes.
2. CSMS killed. Once the bridge says websocket_status disconnected: TOGGLES_PER_LIFE changes.
3. twice: the OEM leaves the EV in C2 (and checks the bridge has taken that in: a request it
   answers after it), `kill -9` of the bridge; the OEM keeps reporting cp_status C2 while the
   bridge is down and restarts it, then TOGGLES_PER_LIFE changes: the first ones, published
   while the bridge still starts, reach it from its persistent MQTT session (clean_session
   false). The EV still charges, so the bridge must resume the saved transaction: same
   transactionId, seqNo continuing (no PowerLoss end, no second transaction).
4. CSMS back on the same port; after boot_status accepted, FINAL_TOGGLES changes online, then
   the EV is unplugged (Ended, EVDisconnected) and the test waits for the CSMS to have it.

`offline` is checked by the bridge's own event timestamps against moments the test knows
causally: an event stamped after the OEM heard websocket_status disconnected and before the CSMS
came back must say offline; one stamped after the initial boot_status accepted and before the
CSMS was killed (minus a guard band for a periodic event in flight), or after the final
boot_status accepted, must not. A (transactionId, seqNo) that arrives twice must be a resend of
the same message (same messageId and payload), e.g. an event in flight when the CSMS died.

Two smaller tests look at one restart with the CSMS up: the resumed transaction goes on with its
TxUpdatedInterval samples, and reports no charging state the EV did not take (it charged
throughout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.oem_sim import DEFAULT_TOKEN
from bridge.oem_sim.firmware import EvseSpec, Firmware, Update
from bridge.timeutil import ocpp_timestamp, parse_timestamp
from tests.conftest import REQUEST_TOPIC, RESPONSE_TOPIC, Broker, oem_mqtt_client, write_config
from tests.robustness.robust_support import BridgeProcess, RawCsms, fast_backoff, tracebacks

PERIOD = 0.05  # s between two OEM inputs
ONLINE_TOGGLES = 40
TOGGLES_PER_LIFE = 310  # in each of the bridge's three lives while the CSMS is down
FINAL_TOGGLES = 20
KILLS = 2
DOWN_REPORTS = 4  # cp_status C2 reports the OEM publishes while the bridge is down
MIN_EVENTS = 1_000
TX_UPDATED_INTERVAL = 1  # s: SampledDataCtrlr.TxUpdatedInterval
GUARD = 0.2  # s before the CSMS kill in which an event may or may not be offline
WAIT = 30.0  # s: the longest any single step may take


# --- the OEM


@dataclass
class ChaosOem:
    """The charger's firmware on the broker: answers the bridge's requests (the simulator's
    firmware model), keeps every update it gets with the wall-clock time it came, and plays the
    EV's control pilot."""

    client: aiomqtt.Client
    firmware: Firmware = field(default_factory=lambda: Firmware([EvseSpec(1)], power_kw=11.0))
    updates: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # requests answered, by name
    _answers: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def pilot(self) -> str:
        return self.firmware.evses[1].pilot[1]

    async def read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            body = json.loads(payload)
            kind, name = body.get("type"), body.get("name")
            if kind == "update":
                self.updates.append((time.time(), name, body["data"]))
            elif kind == "response":
                future = self._answers.pop(body["id"], None)
                if future is not None and not future.done():
                    future.set_result(body["data"])
            elif kind == "request":
                self.requests[name] += 1
                task = asyncio.create_task(self._answer(body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._changed.set()

    async def _answer(self, body: dict[str, Any]) -> None:
        answer = self.firmware.answer(body["name"], body["data"])
        if answer.data is not None:
            await self._publish({**body, "type": "response", "data": answer.data})
            self.answered[body["name"]] += 1
        for update in answer.updates:
            await self.send(update)

    async def _publish(self, body: dict[str, Any]) -> None:
        await self.client.publish(REQUEST_TOPIC, json.dumps(body), qos=1)

    async def send(self, update: Update) -> None:
        await self._publish(
            {"id": str(uuid.uuid4()), "name": update.name, "type": "update", "data": update.data}
        )

    async def request(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = future
        await self._publish({"id": message_id, "name": name, "type": "request", "data": data})
        async with asyncio.timeout(WAIT):
            return await future

    def seen(self, name: str, **match: Any) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, data) of the updates `name` whose data has these values."""
        return [
            (at, data)
            for at, got, data in self.updates
            if got == name and all(data.get(k) == v for k, v in match.items())
        ]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the OEM waited {WAIT:g} s for {what} in vain")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._changed.wait()

    async def next_update(self, name: str, **match: Any) -> float:
        """Wait for a new update `name` with these values; when it arrived."""
        before = len(self.seen(name, **match))
        await self.until(lambda: len(self.seen(name, **match)) > before, f"{name} {match}")
        return self.seen(name, **match)[-1][0]

    # --- the EV

    async def pilot_to(self, state: str) -> None:
        await self.send(self.firmware.evses[1].set_pilot(1, state))

    async def toggle(self, count: int) -> None:
        """`count` changes C2 <-> B2, one every PERIOD."""
        for _ in range(count):
            await self.pilot_to("B2" if self.pilot == "C2" else "C2")
            await asyncio.sleep(PERIOD)

    async def settle_in_c2(self) -> None:
        """Leave the EV drawing energy, and make sure the bridge has taken that in: it handles
        the OEM's messages in order, so its answer to a later request proves it."""
        if self.pilot != "C2":
            await self.pilot_to("C2")
        answer = await self.request("service_status", {"service": "ocpp"})
        assert answer["status"] == "ready", answer


@asynccontextmanager
async def chaos_oem(broker: Broker) -> AsyncIterator[ChaosOem]:
    async with oem_mqtt_client(broker.host, broker.port, max_inflight_messages=100) as client:
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        oem = ChaosOem(client)
        reader = asyncio.create_task(oem.read())
        try:
            yield oem
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


# --- the CSMS


@dataclass
class Boots:
    """When the CSMS answered each BootNotification (wall clock)."""

    at: list[float] = field(default_factory=list)


def responder(boots: Boots) -> Callable[[str, Any, int], Any]:
    def answer(action: str, payload: Any, seen: int) -> Any:
        if action == "BootNotification":
            boots.at.append(time.time())
            return {"currentTime": ocpp_timestamp(), "interval": 300, "status": "Accepted"}
        if action == "Heartbeat":
            return {"currentTime": ocpp_timestamp()}
        if action == "Authorize":
            return {"idTokenInfo": {"status": "Accepted"}}
        if action == "TransactionEvent" and "idToken" in payload:
            return {"idTokenInfo": {"status": "Accepted"}}
        return {}

    return answer


@dataclass(frozen=True)
class Received:
    message_id: str
    payload: dict[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        return (self.payload["transactionInfo"]["transactionId"], self.payload["seqNo"])

    @property
    def stamped(self) -> float:
        moment = parse_timestamp(self.payload["timestamp"])
        assert moment is not None, self.payload
        return moment.timestamp()


def transaction_events(csms: RawCsms) -> list[Received]:
    """Every TransactionEvent CALL the CSMS received, in order of arrival (resends included)."""
    out = []
    for frame in csms.frames:
        message = json.loads(frame.text)
        if message[0] == 2 and message[2] == "TransactionEvent":
            out.append(Received(message[1], message[3]))
    return out


def ended_arrived(csms: RawCsms) -> bool:
    return any(r.payload["eventType"] == "Ended" for r in transaction_events(csms))


def energy(event: Received) -> float | None:
    """The Energy.Active.Import.Register of an event's last meter value (None: it has none;
    an Ended event's last is its Transaction.End value, after any TxEndedInterval samples)."""
    for meter_value in reversed(event.payload.get("meterValue", [])):
        for sampled in meter_value["sampledValue"]:
            if sampled.get("measurand") == "Energy.Active.Import.Register":
                return float(sampled["value"])
    return None


# --- the parts together


def bridge_config(tmp_path: Path, broker: Broker, csms: RawCsms) -> Path:
    return write_config(
        tmp_path / "bridge.toml",
        broker,
        csms=f'url = "{csms.url}"',
        extra=(
            "[device_model]\n"
            f"{fast_backoff()}"
            f'"SampledDataCtrlr.TxUpdatedInterval" = {TX_UPDATED_INTERVAL}\n'
            '"OCPPCommCtrlr.HeartbeatInterval" = 300\n'
        ),
    )


async def start_charging(oem: ChaosOem, csms: RawCsms) -> None:
    """Plug in (Started), present the token (Authorize online), C2 and the contactor closed."""
    evse = oem.firmware.evses[1]
    for update in oem.firmware.plug_in(evse, 1):
        await oem.send(update)
    token = {"evse_id": "1", "id_token": DEFAULT_TOKEN, "token_type": "ISO14443"}
    assert (await oem.request("authorization", token))["status"] == "accepted"
    assert csms.calls["Authorize"] == 1  # decided online
    for update in oem.firmware.start_charging(evse, 1):
        await oem.send(update)


async def unplug(oem: ChaosOem, csms: RawCsms) -> None:
    """The EV leaves; until the CSMS has the Ended and the OEM its transaction_status ended."""
    for update in oem.firmware.unplug(oem.firmware.evses[1], 1):
        await oem.send(update)
    await csms.wait(lambda: ended_arrived(csms), 60, "the Ended event at the CSMS")
    await oem.until(
        lambda: bool(oem.seen("transaction_status", status="ended")), "transaction_status ended"
    )


def distinct(received: list[Received]) -> tuple[list[Received], int]:
    """The events after dedup by (transactionId, seqNo), in order of arrival, and how many
    repeats there were (each must be a resend of the same message)."""
    first: dict[tuple[str, int], Received] = {}
    resends = 0
    for event in received:
        seen = first.setdefault(event.key, event)
        if seen is not event:
            resends += 1
            assert (seen.message_id, seen.payload) == (event.message_id, event.payload), (
                f"two different events with transactionId/seqNo {event.key}"
            )
    return list(first.values()), resends


# --- the chaos test


@pytest.mark.timeout(120)
async def test_session_survives_csms_outage_and_two_kill_9_every_event_once_in_order(
    tmp_path: Path, broker: Broker
) -> None:
    started = time.monotonic()
    boots = Boots()
    csms = await RawCsms(responder(boots)).start()
    bridge = BridgeProcess(bridge_config(tmp_path, broker, csms), tmp_path / "bridge.log")
    report: list[str] = []
    try:
        async with chaos_oem(broker) as oem:
            # 1. online: boot, plug in, authorize, charge
            bridge.start()
            accepted_first = await oem.next_update("boot_status", status="accepted")
            await start_charging(oem, csms)
            await oem.toggle(ONLINE_TOGGLES)
            await oem.settle_in_c2()

            # 2. the CSMS goes away for most of the session
            csms_killed = time.time()
            await csms.kill()
            offline_from = await oem.next_update("websocket_status", status="disconnected")
            await oem.toggle(TOGGLES_PER_LIFE)

            # 3. kill -9 twice; the EV goes on charging, the OEM goes on talking
            for kill in range(1, KILLS + 1):
                await oem.settle_in_c2()
                bridge.kill9()
                for _ in range(DOWN_REPORTS):  # queued for the bridge's persistent session
                    await oem.pilot_to("C2")
                    await asyncio.sleep(PERIOD)
                bridge.start()
                report.append(f"kill -9 #{kill} at {time.monotonic() - started:.1f} s")
                await oem.toggle(TOGGLES_PER_LIFE)
            await oem.settle_in_c2()

            # 4. the CSMS comes back; a little more charging online, then the EV leaves
            boots_before = len(oem.seen("boot_status", status="accepted"))
            csms_back = time.time()
            await csms.start()
            await oem.until(
                lambda: len(oem.seen("boot_status", status="accepted")) > boots_before,
                "boot_status accepted after the outage",
            )
            accepted_again = oem.seen("boot_status", status="accepted")[-1][0]
            report.append(f"CSMS back at {time.monotonic() - started:.1f} s")
            await oem.toggle(FINAL_TOGGLES)
            await unplug(oem, csms)
            stop_charging_asked = oem.requests["stop_charging"]
        assert bridge.stop() == 0, bridge.log_tail()
    finally:
        bridge.kill9()
        await csms.stop()
    elapsed = time.monotonic() - started

    received = transaction_events(csms)
    events, resends = distinct(received)
    by_transaction: dict[str, list[Received]] = defaultdict(list)
    for event in events:
        by_transaction[event.key[0]].append(event)
    print(
        f"{len(received)} TransactionEvents received, {resends} resends, {len(events)} distinct, "
        f"{len(by_transaction)} transaction(s), in {elapsed:.1f} s; " + "; ".join(report)
    )

    assert len(events) >= MIN_EVENTS
    # Resumed, not ended with PowerLoss and started anew: the EV never stopped charging.
    endings = [
        (e.payload["triggerReason"], e.payload["transactionInfo"].get("stoppedReason"))
        for e in events
        if e.payload["eventType"] == "Ended"
    ]
    assert len(by_transaction) == 1, f"transactions {list(by_transaction)} ended with {endings}"
    assert endings == [("EVCommunicationLost", "EVDisconnected")]
    assert stop_charging_asked == 0, "the bridge asked the OEM to stop charging"
    for transaction_id, tx_events in by_transaction.items():
        seq_nos = [e.payload["seqNo"] for e in tx_events]
        assert seq_nos == list(range(len(seq_nos))), (
            f"transaction {transaction_id}: seqNo in arrival order, without gaps"
        )
        kinds = [e.payload["eventType"] for e in tx_events]
        assert kinds[0] == "Started"
        assert kinds[-1] == "Ended"
        assert kinds.count("Started") == kinds.count("Ended") == 1
        # Transaction.Begin and Transaction.End samples; the meter ran in between.
        begin, end = energy(tx_events[0]), energy(tx_events[-1])
        assert begin is not None
        assert end is not None
        assert end > begin

    # offline exactly where it was made offline
    online_before = [e for e in events if accepted_first <= e.stamped < csms_killed - GUARD]
    made_offline = [e for e in events if offline_from <= e.stamped < csms_back]
    online_after = [e for e in events if e.stamped >= accepted_again]
    assert len(made_offline) >= 3 * TOGGLES_PER_LIFE, len(made_offline)
    assert len(online_before) >= ONLINE_TOGGLES, len(online_before)
    assert len(online_after) >= FINAL_TOGGLES, len(online_after)
    assert [e.key for e in made_offline if e.payload.get("offline") is not True] == []
    assert [e.key for e in online_before + online_after if "offline" in e.payload] == []

    # the OEM heard of the start and the end of every transaction
    for transaction_id in by_transaction:
        statuses = [
            d["status"]
            for _, d in oem.seen("transaction_status", transaction_id=transaction_id)
            if d["status"] in ("started", "ended")
        ]
        assert statuses == ["started", "ended"], (transaction_id, statuses)

    assert len(boots.at) == 2  # the boot at the start and the one after the outage
    assert tracebacks(bridge.log_text()) == []


# --- one restart, looked at closely


async def one_restart(
    tmp_path: Path, broker: Broker, *, report_while_down: bool
) -> tuple[list[Received], float]:
    """Charge with the CSMS up, `kill -9` the bridge once while the EV charges (C2, contactor
    closed) and restart it, then unplug: the distinct TransactionEvents and when the kill was.

    `report_while_down`: the OEM publishes cp_status C2 while the bridge is down (its persistent
    session delivers them at once); otherwise it stays silent and republishes its state once the
    bridge says service_status ready, after it has answered its cs_contactor_status request."""
    csms = await RawCsms(responder(Boots())).start()
    bridge = BridgeProcess(bridge_config(tmp_path, broker, csms), tmp_path / "bridge.log")
    try:
        async with chaos_oem(broker) as oem:
            bridge.start()
            await oem.next_update("boot_status", status="accepted")
            await start_charging(oem, csms)
            await csms.wait(
                lambda: periodic(transaction_events(csms), 0.0) >= 2, WAIT, "periodic samples"
            )
            await oem.settle_in_c2()
            boots = len(oem.seen("boot_status", status="accepted"))
            killed = time.time()
            bridge.kill9()
            if report_while_down:
                for _ in range(DOWN_REPORTS):
                    await oem.pilot_to("C2")
                    await asyncio.sleep(PERIOD)
            asked = oem.answered["cs_contactor_status"]
            bridge.start()
            if not report_while_down:
                await oem.until(
                    lambda: (
                        oem.answered["cs_contactor_status"] > asked
                        and oem.seen("service_status", status="ready")[-1][0] > killed
                    ),
                    "the restarted bridge ready, its cs_contactor_status answered",
                )
                await oem.pilot_to("C2")
            await oem.until(
                lambda: len(oem.seen("boot_status", status="accepted")) > boots,
                "boot_status accepted after the restart",
            )
            # A few TxUpdatedIntervals of charging after the restart.
            with contextlib.suppress(AssertionError):
                await csms.wait(
                    lambda: periodic(transaction_events(csms), killed) >= 2,
                    4 * TX_UPDATED_INTERVAL + 2,
                    "periodic samples after the restart",
                )
            await unplug(oem, csms)
        assert bridge.stop() == 0, bridge.log_tail()
        assert tracebacks(bridge.log_text()) == []
    finally:
        bridge.kill9()
        await csms.stop()
    events, _ = distinct(transaction_events(csms))
    assert len({e.key[0] for e in events}) == 1, "the transaction was not resumed"
    assert [e.payload["seqNo"] for e in events] == list(range(len(events)))
    return events, killed


def periodic(events: list[Received], after: float) -> int:
    return sum(
        1
        for e in events
        if e.payload["triggerReason"] == "MeterValuePeriodic" and e.stamped > after
    )


@pytest.mark.timeout(60)
async def test_resumed_transaction_keeps_its_tx_updated_interval_meter_values(
    tmp_path: Path, broker: Broker
) -> None:
    events, killed = await one_restart(tmp_path, broker, report_while_down=True)
    after = [e for e in events if e.stamped > killed and e.payload["eventType"] == "Updated"]
    assert after, "no event after the restart"
    # SampledDataCtrlr.TxUpdatedInterval: MeterValuePeriodic events go on after the restart.
    assert periodic(events, killed) >= 2, [e.payload["triggerReason"] for e in after]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("report_while_down", [True, False], ids=["reported", "republished"])
async def test_resumed_transaction_reports_no_charging_state_the_ev_did_not_take(
    tmp_path: Path, broker: Broker, report_while_down: bool
) -> None:
    events, killed = await one_restart(tmp_path, broker, report_while_down=report_while_down)
    states = [
        (e.payload["seqNo"], e.payload["triggerReason"], e.payload["transactionInfo"])
        for e in events
        if e.stamped > killed and e.payload["eventType"] == "Updated"
    ]
    assert states, "no event after the restart"
    # The EV charged (C2, contactor closed) before, during and after the restart: the resumed
    # transaction is still Charging; no Idle, SuspendedEVSE or EVConnected in between.
    assert [s for s in states if s[2].get("chargingState", "Charging") != "Charging"] == [], states
