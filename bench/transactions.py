"""Transactions: the OEM's cp_status to the CSMS's StatusNotification and TransactionEvent,
station CPU per meter-value event, and RSS after 10,000 transactions.

Measured beside, in the same run, a bare MQTT echo through the same Mosquitto and a bare
`ocpp`-library charge point sending the same StatusNotifications and TransactionEvents to the same
CSMS, so the figures say what the bridge adds on top of the broker and the library:

    python bench/transactions.py [--cycles N] [--events M] [--evses K] [--transactions T]
                                 [--csms raw|demo]

The CSMS and the OEM firmware live in this process. The CSMS is by default a lean OCPP-J server
written directly on websockets (`raw`, as in csms_roundtrip.py and outbound_queue.py: json.loads
of every frame, the answer sent at once, no validation, no compression), or with `--csms demo`
the `ocpp`-library v201 central system of `bridge/demo_csms.py` (validates every CALL). It notes
the arrival time of every CALL and checks every TransactionEvent (each transaction Started once,
then seqNo 0, 1, 2, ... to its Ended; each messageId once). The OEM (aiomqtt, TCP_NODELAY, paho's
callback for what the bridge publishes) publishes cp_status updates and authorization requests on
cs/josev and answers the bridge's requests at once: meter_values (a three-phase sample whose
energy grows by 10 Wh a sample), cs_contactor_status (opened), cs_status_and_limits (every EVSE
ready), stop_charging (accepted); device_model is not answered (`[oem] startup_timeout = 0`: the
bridge boots from its configuration file, as the OEM simulator does without a device model). All
times are CLOCK_MONOTONIC (`time.monotonic()`), one clock for every process of the machine, so a
child's send times and this process's arrival times compare.

One run, in this order:

1. **in-process**: the station's code path alone, in this process: a `bridge.station.Station` on
   a real store in a temp dir, fed as the bridge's driver feeds it (`Station.timer("sample:1")`
   for a TxUpdatedInterval sample, `Station.cp_status`, the meter_values answers through
   `Station.oem_answered`, the queue's `next`/`done` with an empty CallResult as the drain task
   does); CPU (`time.process_time()`) per meter-value TransactionEvent and per transaction
   (plug-in and unplug, meter values at start and end), counted as queued. No MQTT, no envelope,
   no WebSocket. Its first StatusNotification and TransactionEvents are what the bare stations
   send.
2. Mosquitto on a free loopback port with `set_tcp_nodelay true`; the OEM connects.
3. **echo (before)**: `bench/mqtt_roundtrip.py --echo` (the echo mqtt_roundtrip.py measures);
   the OEM publishes a cp_status update (as it sends the bridge) and waits for it to come back,
   sequentially, after a warm-up of 200.
4. **bare (before)**: a bare `ocpp`-library station (`ocpp.v201.ChargePoint`, websockets client
   with its defaults, the library's schema validation on) boots, then runs N+20 plug-in/unplug
   cycles: StatusNotification (Occupied), TransactionEvent Started, then StatusNotification
   (Available), TransactionEvent Ended, each CALL awaiting its answer, 5 ms between two halves;
   then one transaction with 2M TransactionEvents Updated (MeterValuePeriodic, with the meter
   value): M one CALL after the other, then M evenly spread at K a second, the bridge's rate
   below. Latency: its send time of each half's StatusNotification to that StatusNotification's
   and that TransactionEvent's arrival at the CSMS. CPU per event: its process's user+system time
   from the arrival of Updated no. M/10 to no. M (back to back) and from no. M + M/10 to no. 2M
   (at the bridge's rate), over those events. CPU times here are schedstat's run time of all the
   process's threads (/proc/<pid>/task/*/schedstat, to the ns, as resources.py reads it; the same
   time /proc/<pid>/stat gives in 10 ms ticks).
5. **bridge**: `python -m bridge run --config FILE` exactly as users run it, K EVSEs with one
   connector each, `AlignedDataCtrlr.Interval` 0 (no clock-aligned samples), TxStartPoint and
   TxStopPoint as they come (`Authorized,EVConnected` / `EVConnected,Authorized`: plug-in starts
   the transaction, unplug ends it):
   - latency, **meter answered**: N+20 cycles on EVSE 1 (cp_status B1, then A1, 5 ms after the
     previous half's StatusNotification and TransactionEvent arrived): the OEM's publish to the
     StatusNotification (Occupied / Available) and to the TransactionEvent (Started / Ended) at
     the CSMS. Started and Ended carry a meter value (TxStartedMeasurands, TxEndedMeasurands),
     so each waits for one meter_values round trip to the OEM.
   - latency, **no meter**: the same after SetVariables of both to "" (no meter_values asked).
   - CPU per meter-value event: SetVariables `SampledDataCtrlr.TxUpdatedInterval` 1 (its
     minimum: it is in seconds), all K EVSEs plugged in; the bridge process's user+system CPU
     from the arrival of MeterValuePeriodic event no. K to no. K+M, over M (each event: the
     timer, a meter_values request and its answer over MQTT, the event saved and queued in one
     durable store transaction, sent, answered, removed); then the interval back, and 1.5 s
     later as long again with the same transactions open and no events: the background, which
     is subtracted ("net"). Then unplugged. (TxUpdatedInterval is in whole seconds, so the
     bridge's meter-value events cannot come back to back; this VM charges each wake-up from
     idle to the woken process, hence the bare library at the same rate as well.)
   - RSS: T transactions after a warm-up of 500, in 10 steps, the K EVSEs in parallel, each
     EVSE one transaction after the other: cp_status B1, an `authorization` request with
     `no_authorization` (answered `accepted` once its Updated with the idToken is queued),
     cp_status A1, until its Ended reached the CSMS. VmRSS (VmHWM, RssAnon) after each step,
     0.5 s after its last Ended, with the step's transactions/s and the bridge's CPU per
     transaction. Growth = after all T minus after the warm-up.
   After it stops: its store must hold no open transaction and an empty queue.
6. **bare (after)**, **echo (after)**: again; before and after bracket the bridge in time.

The bridge's share of a latency: its median minus the floor that the same message pays without
it: the MQTT leg OEM -> bridge (half the echo's median round trip), plus the bare library's
median from its send to the arrival (both bare runs pooled), plus, where the bridge waits for a
meter value, one more echo round trip. Target: the median at most 1.3x its floor (as
mqtt_roundtrip.py's bridge against its echo), for each of the four. Results go to stdout as
tables with the targets; a missed target does not change the exit status. Every process started
here is stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from _common import (
    ROOT,
    STATION_ID,
    OcppServer,
    Processes,
    Sequential,
    bridge_config,
    bridge_log_report,
    column_table,
    free_port,
    git_revision,
    header_lines,
    log_lines,
    memory_mb,
    mosquitto_binary,
    now_ocpp,
    num,
    run_benchmark,
    start_mosquitto,
    step,
    tail,
    verdict,
    version,
    wait_port,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

# The bridge of this repository, in this process (the in-process run, the store checks) and in
# the children (PYTHONPATH): the installed package may be another checkout's.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

CLOCK = time.monotonic  # CLOCK_MONOTONIC: the same clock in every process of this machine
REQUEST_TOPIC, RESPONSE_TOPIC = "cs/josev", "josev/cs"
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
HEARTBEAT_INTERVAL = 3600  # s, in the BootNotification answer: no heartbeats during the runs
WARM_UP = 20  # latency cycles not counted
ECHO_WARM_UP = 200
ECHO_ROUND_TRIPS = 1000
PAUSE = 0.005  # s between two halves of a latency cycle: each finds the station idle
SETTLE = 0.5  # s after the boot's StatusNotifications before the bridge is measured
ANSWER_TIMEOUT = 10.0  # s for a message that must come before the run counts as failed
RSS_WARM_UP = 500  # transactions before the RSS the growth is counted from
RSS_STEPS = 10
RSS_SETTLE = 0.5  # s after a step's last Ended before RSS is read
BACKGROUND_SETTLE = 1.5  # s after TxUpdatedInterval is set back, before the background CPU
IN_PROCESS_EVENTS = 2000
IN_PROCESS_TRANSACTIONS = 500
COMMITS = 200  # durable SQLite commits timed, before and after the runs
MEASURANDS = ("SampledDataCtrlr.TxStartedMeasurands", "SampledDataCtrlr.TxEndedMeasurands")
INTERVAL = "SampledDataCtrlr.TxUpdatedInterval"
PERIODIC = "MeterValuePeriodic"
DEVICE_MODEL_UNANSWERED = "the OEM did not answer device_model"  # bridge.oem.link's warning

TARGET_RATIO = 1.3  # bridge median / (MQTT one way + bare library median), as mqtt_roundtrip's
TARGET_GROWTH_MB = 5.0  # RSS after T transactions - RSS after the warm-up


# --- the OEM's and the CSMS's answers (also the in-process run's) --------------------------------


class Meter:
    """The OEM's meter: a three-phase 16 A sample; the energy grows 10 Wh a sample per EVSE."""

    def __init__(self, evses: int) -> None:
        self.evse_ids = [str(n) for n in range(1, evses + 1)]
        self.energy: dict[str, float] = {}

    def answer(self, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """The data of the OEM's response to the bridge's request `name`; None: not answered."""
        if name == "meter_values":
            evse = str(data.get("evse_id", "1"))
            energy = self.energy[evse] = self.energy.get(evse, 0.0) + 10.0
            return {
                "evse_id": evse,
                "timestamp": data["timestamp"],
                "voltage": {"l1": 230.0, "l2": 230.0, "l3": 230.0},
                "current": {"l1": 16.0, "l2": 16.0, "l3": 16.0},
                "power_factor": 1.0,
                "frequency": 50.0,
                "total_active_energy_imported": energy,
                "total_reactive_energy_imported": 0.0,
                "power_active_import": 11040.0,
            }
        if name == "cs_contactor_status":
            return {"evse_id": data["evse_id"], "status": "opened"}
        if name == "cs_status_and_limits":
            return {"evses": [{"evse_id": e, "status_code": "evse_ready"} for e in self.evse_ids]}
        if name == "stop_charging":
            return {"evse_id": data["evse_id"], "status": "accepted"}
        return None  # device_model: the bridge boots from its configuration file


def csms_answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The CSMS's CallResult payload: Accepted at once."""
    if action == "BootNotification":
        return {"currentTime": now_ocpp(), "interval": HEARTBEAT_INTERVAL, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": now_ocpp()}
    if action == "Authorize" or (action == "TransactionEvent" and "idToken" in payload):
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


def run_seconds(pid: int) -> float:
    """Time on a CPU so far of the process's live threads, to the nanosecond (schedstat; as
    resources.py reads it: the same user+system time as /proc/<pid>/stat without its 10 ms
    ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def cp_status(evse: int, state: str) -> dict[str, Any]:
    return {"evse_id": str(evse), "connector_id": 1, "state": state}


def set_variables(values: dict[str, str]) -> dict[str, Any]:
    data = []
    for key, value in values.items():
        component, _, variable = key.partition(".")
        data.append(
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "attributeValue": value,
            }
        )
    return {"setVariableData": data}


# --- 1. the station's code path, in this process -------------------------------------------------


@dataclass
class InProcess:
    event_cpu_us: float
    events: int
    transaction_cpu_us: float
    transactions: int
    payloads: dict[str, dict[str, Any]]  # what the bare stations send
    defaults: dict[str, str]  # the device model's values of MEASURANDS and INTERVAL


def in_process(directory: Path, events: int, transactions: int) -> InProcess:
    """The station's code path alone: a Station on a real store, driven as the bridge's driver
    drives it, without MQTT or WebSocket; CPU per meter-value event and per transaction."""
    from bridge.config import load_settings
    from bridge.oem.link import OemAnswer
    from bridge.rpc import CallResult
    from bridge.station import Station
    from bridge.station.effects import AskOem
    from bridge.station.message_queue import Outgoing
    from bridge.store import Store

    settings = load_settings(config_file(directory, 1, "ws://127.0.0.1:1/ocpp", 1))
    store = Store(settings.storage.path)
    try:
        station = Station(settings, store)
        meter = Meter(1)
        queued: Counter[str] = Counter()  # TransactionEvent eventTypes and other actions
        first: dict[str, dict[str, Any]] = {}

        def carry_out() -> None:
            """The effects that need the OEM: answered at once (timers, updates: not ours)."""
            while effects := station.take_effects():
                for effect in effects:
                    if isinstance(effect, AskOem):
                        data = meter.answer(effect.name, effect.data)
                        if data is not None:
                            station.oem_answered(effect.key, OemAnswer(effect.name, data))

        def drain() -> None:
            """What the drain task does, the CSMS answering each CALL at once."""
            while isinstance(message := station.queue.next(), Outgoing):
                kind = message.payload.get("eventType", message.action)
                queued[kind] += 1
                first.setdefault(kind, message.payload)
                outcome = CallResult(csms_answer(message.action, message.payload))
                if station.queue.done(message, outcome):
                    station.answered(message, outcome)
                carry_out()

        def status(state: str) -> None:
            station.cp_status(cp_status(1, state))
            carry_out()
            drain()

        def sample() -> None:
            station.timer("sample:1")
            carry_out()
            drain()

        station.started()
        station.registration.connected()
        carry_out()
        drain()
        if not station.registration.accepted:
            raise RuntimeError("the in-process station's boot was not accepted")
        first.pop("StatusNotification", None)  # the boot's Available: the bare stations send ours
        status("B1")
        sample()
        status("A1")
        payloads = {k: first[k] for k in ("StatusNotification", "Started", "Updated", "Ended")}

        status("B1")
        before = queued["Updated"]
        cpu = time.process_time()
        for _ in range(events):
            sample()
        event_cpu = time.process_time() - cpu
        counted = queued["Updated"] - before
        status("A1")

        before = queued["Ended"]
        cpu = time.process_time()
        for _ in range(transactions):
            status("B1")
            status("A1")
        transaction_cpu = time.process_time() - cpu
        ended = queued["Ended"] - before
        dm = station.device_model
        defaults = {key: dm.value(key) or "" for key in (*MEASURANDS, INTERVAL)}
    finally:
        store.close()
    if counted != events or ended != transactions:
        raise RuntimeError(
            f"in process: {counted} of {events} meter-value events and {ended} of "
            f"{transactions} transactions were queued"
        )
    return InProcess(
        event_cpu / counted * 1e6,
        counted,
        transaction_cpu / ended * 1e6,
        ended,
        payloads,
        defaults,
    )


def durable_commits(directory: Path, n: int = COMMITS) -> list[float]:
    """ms per durable SQLite commit on this disk, as the store makes them (WAL, synchronous=FULL:
    fsync before COMMIT returns) of one 1.5 kB row: the floor of a TransactionEvent's queuing."""
    import sqlite3

    directory.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(directory / "commits.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS row(seq INTEGER PRIMARY KEY, payload TEXT)")
        times = []
        for _ in range(n):
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO row(payload) VALUES (?)", ("x" * 1500,))
            db.execute("COMMIT")
            times.append((time.perf_counter() - start) * 1000)
    finally:
        db.close()
    return times


# --- the CSMS (in this process) ------------------------------------------------------------------


Listener = Callable[[float, str, dict[str, Any]], None]  # arrival time, action, payload
Predicate = Callable[[str, dict[str, Any]], bool]


@dataclass
class Ledger:
    """One station's TransactionEvents as the CSMS saw them, checked."""

    started: int = 0
    updated: int = 0
    ended: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _next_seq: dict[str, int] = field(default_factory=dict)  # open transactions
    _closed: set[str] = field(default_factory=set)
    _ids: set[str] = field(default_factory=set)

    def see(self, message_id: str | None, payload: dict[str, Any]) -> None:
        if message_id is not None:
            if message_id in self._ids:
                self.errors["a messageId twice"] += 1
                return
            self._ids.add(message_id)
        transaction = payload["transactionInfo"]["transactionId"]
        kind, seq = payload["eventType"], payload["seqNo"]
        if kind == "Started":
            self.started += 1
            if transaction in self._next_seq or transaction in self._closed:
                self.errors["Started twice"] += 1
            expected: int | None = 0
        else:
            expected = self._next_seq.get(transaction)
            if expected is None:
                self.errors["an event of no open transaction"] += 1
        if expected is not None and seq != expected:
            self.errors["seqNo not the previous + 1"] += 1
        self._next_seq[transaction] = seq + 1
        if kind == "Ended":
            self.ended += 1
            self._next_seq.pop(transaction, None)
            self._closed.add(transaction)
        elif kind == "Updated":
            self.updated += 1

    @property
    def open(self) -> int:
        return len(self._next_seq)


class Observer:
    """What the CSMS does with every CALL it receives: counted, checked, recorded (for the bare
    stations), handed to listeners, and matched against what a run waits for."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.ledgers: defaultdict[str, Ledger] = defaultdict(Ledger)
        self.recorded: dict[str, list[tuple[float, str, dict[str, Any]]]] = {}
        self.listeners: defaultdict[str, list[Listener]] = defaultdict(list)
        self._expected: defaultdict[str, list[tuple[Predicate, asyncio.Future[float]]]] = (
            defaultdict(list)
        )

    def seen(
        self, station_id: str, at: float, message_id: str | None, action: str, payload: Any
    ) -> None:
        if not isinstance(payload, dict):
            return
        self.counts[station_id][action] += 1
        if action == "TransactionEvent":
            self.ledgers[station_id].see(message_id, payload)
        record = self.recorded.get(station_id)
        if record is not None:
            record.append((at, action, payload))
        for listener in self.listeners.get(station_id, ()):
            listener(at, action, payload)
        expected = self._expected.get(station_id)
        if expected:
            for entry in [e for e in expected if e[0](action, payload)]:
                expected.remove(entry)
                if not entry[1].done():
                    entry[1].set_result(at)

    def expect(self, station_id: str, predicate: Predicate) -> asyncio.Future[float]:
        """The arrival time of the next CALL of that station that matches."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._expected[station_id].append((predicate, future))
        return future


class RawCsms(OcppServer, Observer):
    """OCPP-J by hand on websockets: every CALL answered at once; CALLs to the stations."""

    name = (
        "raw OCPP-J on websockets, in this process (answers at once; no validation, no compression)"
    )

    def __init__(self) -> None:
        OcppServer.__init__(self)
        Observer.__init__(self)
        self._connections: dict[str, ServerConnection] = {}
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        station_id = ws.request.path.rpartition("/")[2]
        self._connections[station_id] = ws
        try:
            async for frame in ws:
                at = CLOCK()
                message = json.loads(frame)
                if message[0] == 2:
                    answer = [3, message[1], csms_answer(message[2], message[3])]
                    await ws.send(json.dumps(answer, separators=(",", ":")))
                    self.seen(station_id, at, message[1], message[2], message[3])
                elif message[0] in (3, 4):
                    future = self._pending.pop(message[1], None)
                    if future is not None and not future.done():
                        future.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            if self._connections.get(station_id) is ws:
                del self._connections[station_id]

    async def call(self, station_id: str, action: str, payload: dict[str, Any]) -> Any:
        message_id = str(uuid.uuid4())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        try:
            await self._connections[station_id].send(json.dumps([2, message_id, action, payload]))
            async with asyncio.timeout(ANSWER_TIMEOUT):
                answer = await future
        finally:
            self._pending.pop(message_id, None)
        if answer[0] == 4:
            raise RuntimeError(f"{station_id} answered {action} with {answer[2]}: {answer[3]}")
        return answer[2]


class DemoAdapter(Observer):
    """bridge.demo_csms.DemoCsms (the `ocpp` library's v201 central system) behind the same calls:
    each CALL it records is handed to the Observer (its lists are emptied as they are read)."""

    name = "bridge.demo_csms.DemoCsms, in this process (ocpp-library v201; validates every CALL)"

    def __init__(self) -> None:
        from bridge.demo_csms import DemoCsms

        super().__init__()
        adapter = self

        class Observed(DemoCsms):
            async def _notify(self) -> None:
                frames = [f for f in self.raw_frames if f[1] == "in"]
                calls = [json.loads(f[2]) for f in frames]
                ids = [c[1] for c in calls if isinstance(c, list) and c and c[0] == 2]
                self.raw_frames.clear()
                for received, message_id in zip(self.received, ids, strict=False):
                    adapter.seen(
                        received.station_id,
                        received.at,
                        message_id,
                        received.action,
                        received.payload,
                    )
                self.received.clear()
                await super()._notify()

        self.csms = Observed(heartbeat_interval=HEARTBEAT_INTERVAL)
        self.url = ""

    async def __aenter__(self) -> DemoAdapter:
        await self.csms.__aenter__()
        self.url = self.csms.url
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.csms.__aexit__(*exc)

    async def call(self, station_id: str, action: str, payload: dict[str, Any]) -> Any:
        return await self.csms.call(station_id, action, payload, ANSWER_TIMEOUT)


Csms = RawCsms | DemoAdapter


async def configure(csms: Csms, values: dict[str, str]) -> None:
    """SetVariables from the CSMS; every value must be Accepted."""
    answer = await csms.call(STATION_ID, "SetVariables", set_variables(values))
    statuses = [r.get("attributeStatus") for r in answer.get("setVariableResult", [])]
    if statuses != ["Accepted"] * len(values):
        raise RuntimeError(f"SetVariables {values} was answered {statuses}")


# --- the OEM (in this process) -------------------------------------------------------------------


class Oem:
    """Publishes on cs/josev; reads josev/cs in paho's callback (no Task per message, so that
    this client costs little): answers the bridge's requests at once, hands the answers to its
    own requests (and the echo's copies of its updates) to whoever waits for them."""

    def __init__(self, client: aiomqtt.Client, evses: int) -> None:
        self.client = client
        self.meter = Meter(evses)
        self.asked: Counter[str] = Counter()  # the bridge's requests, by name
        self.unanswered: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()  # the bridge's updates, by name
        self._waiting: dict[str, asyncio.Future[tuple[float, dict[str, Any]]]] = {}

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        at = CLOCK()
        body = json.loads(message.payload)
        kind, name = body.get("type"), body.get("name")
        future = self._waiting.pop(body.get("id"), None)
        if future is not None:
            if not future.done():
                future.set_result((at, body))
        elif kind == "request":
            self.asked[name] += 1
            data = self.meter.answer(str(name), body.get("data") or {})
            if data is None:
                self.unanswered[name] += 1
                return
            self._publish({"id": body["id"], "name": name, "type": "response", "data": data})
        elif kind == "update" and name != "cp_status":  # (late copies of the echo's probes)
            self.updates[name] += 1

    def _publish(self, body: dict[str, Any]) -> float:
        payload = json.dumps(body, separators=(",", ":")).encode()
        at = CLOCK()
        # paho's non-blocking publish under aiomqtt (aiomqtt's would wait for each PUBACK).
        info = self.client._client.publish(REQUEST_TOPIC, payload, qos=1)
        if info.rc != 0:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        return at

    def update(self, name: str, data: dict[str, Any]) -> float:
        """Publish an update; the time it was published."""
        return self._publish(
            {"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data}
        )

    async def request(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        future: asyncio.Future[tuple[float, dict[str, Any]]]
        future = self._waiting[message_id] = asyncio.get_running_loop().create_future()
        self._publish({"id": message_id, "name": name, "type": "request", "data": data})
        async with asyncio.timeout(ANSWER_TIMEOUT):
            _, body = await future
        return body

    async def echoed(self, timeout: float = ANSWER_TIMEOUT) -> float:
        """One cp_status update through the echo: its round trip in ms."""
        message_id = str(uuid.uuid4())
        future: asyncio.Future[tuple[float, dict[str, Any]]]
        future = self._waiting[message_id] = asyncio.get_running_loop().create_future()
        body = {"id": message_id, "name": "cp_status", "type": "update", "data": cp_status(1, "B1")}
        sent = self._publish(body)
        try:
            async with asyncio.timeout(timeout):
                at, _ = await future
        finally:
            self._waiting.pop(message_id, None)
        return (at - sent) * 1000


@contextlib.asynccontextmanager
async def oem(port: int, evses: int) -> AsyncIterator[Oem]:
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"oem-{uuid.uuid4().hex[:8]}",
        max_inflight_messages=0,
        socket_options=NODELAY,
    )
    o = Oem(client, evses)
    client._client.on_message = o.on_message
    async with client:
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        yield o


# --- 3. the echo ---------------------------------------------------------------------------------


async def echo_run(processes: Processes, o: Oem, port: int, log: Path, n: int) -> Sequential:
    argv = [sys.executable, str(Path(__file__).with_name("mqtt_roundtrip.py")), "--echo", str(port)]
    process = processes.start(argv, log)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:  # until the echo is subscribed
            if process.poll() is not None:
                raise RuntimeError(f"the echo exited with status {process.returncode}")
            try:
                await o.echoed(0.2)
                break
            except TimeoutError:
                if loop.time() > deadline:
                    raise RuntimeError("the echo did not answer within 60 s") from None
        await asyncio.sleep(0.2)  # copies of earlier probes may still come
        for _ in range(ECHO_WARM_UP):
            await o.echoed()
        return Sequential([await o.echoed() for _ in range(n)], 0)
    finally:
        await processes.stop_async(process)


# --- 4. the bare ocpp-library station ------------------------------------------------------------

# Its own small script, run as `python FILE URL STATION_ID PAYLOADS TIMES N M PAUSE R`, so its
# process imports what such a station imports and nothing of this benchmark.
BARE_STATION = '''"""A bare ocpp-library station: boot, N plug-in/unplug cycles (StatusNotification,
then TransactionEvent, each awaited), one transaction of 2 M meter-value events (M one after the
other, then M at R a second); the send times of the cycles' StatusNotifications to a file."""

import asyncio
import datetime
import json
import re
import sys
import time
import uuid

from ocpp.v201 import ChargePoint, call
from websockets.asyncio.client import connect


HALVES = (("Occupied", "Started", 0), ("Available", "Ended", 1))


def now():
    t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def fields(payload):
    """The library's keyword arguments: snake_case at the top (it converts nested keys back)."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in payload.items()}


def event(template, transaction, seq):
    payload = dict(template, timestamp=now(), seqNo=seq)
    payload["transactionInfo"] = dict(template["transactionInfo"], transactionId=transaction)
    if "meterValue" in payload:
        values = payload["meterValue"]
        payload["meterValue"] = [dict(v, timestamp=payload["timestamp"]) for v in values]
    return call.TransactionEvent(**fields(payload))


async def main(url, station_id, payloads, times, cycles, events, pause, rate):
    with open(payloads) as f:
        templates = json.load(f)
    sent = []
    async with connect(url + "/" + station_id, subprotocols=["ocpp2.0.1"]) as ws:
        station = ChargePoint(station_id, ws)
        reader = asyncio.create_task(station.start())
        await station.call(
            call.BootNotification(
                charging_station={"model": "AC22", "vendor_name": "Acme"}, reason="PowerUp"
            )
        )
        status = templates["StatusNotification"]
        for _ in range(cycles):
            transaction = str(uuid.uuid4())
            for connector_status, kind, seq in HALVES:
                sent.append(time.monotonic())
                await station.call(
                    call.StatusNotification(
                        **fields(dict(status, timestamp=now(), connectorStatus=connector_status))
                    )
                )
                await station.call(event(templates[kind], transaction, seq))
                await asyncio.sleep(pause)
        transaction = str(uuid.uuid4())
        await station.call(event(templates["Started"], transaction, 0))
        for seq in range(1, events + 1):
            await station.call(event(templates["Updated"], transaction, seq))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(events):  # evenly spread, as the bridge's timers spread its events
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            await station.call(event(templates["Updated"], transaction, events + 1 + i))
        await station.call(event(templates["Ended"], transaction, 2 * events + 1))
        reader.cancel()
    with open(times, "w") as f:
        json.dump(sent, f)


asyncio.run(main(*sys.argv[1:5], *map(int, sys.argv[5:7]), *map(float, sys.argv[7:9])))
'''


@dataclass
class Latency:
    """Milliseconds from the trigger to each message's arrival at the CSMS."""

    status_ms: list[float] = field(default_factory=list)
    event_ms: list[float] = field(default_factory=list)


@dataclass
class CpuWindow:
    """A station's CPU over meter-value events: marked as event no. `first` and no. `last`
    arrive at the CSMS (a listener of the Observer)."""

    first: int
    last: int
    pid: int = 0
    count: int = 0
    marks: list[tuple[float, float]] = field(default_factory=list)  # (arrival, station CPU s)
    rss_mb: float = math.nan  # the station's, at the last mark
    background_cpu_s: float = math.nan  # the same time after the events, none coming
    background_events: int = 0  # events that came all the same
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, at: float, action: str, payload: dict[str, Any]) -> None:
        if action != "TransactionEvent" or payload.get("triggerReason") != PERIODIC:
            return
        self.count += 1
        if self.count in (self.first, self.last):
            self.marks.append((at, run_seconds(self.pid)))
            if self.count == self.last:
                self.rss_mb = memory_mb(self.pid)["VmRSS"]
                self.done.set()

    @property
    def events(self) -> int:
        return self.last - self.first

    @property
    def cpu_us(self) -> float:
        if len(self.marks) != 2:
            return math.nan
        return (self.marks[1][1] - self.marks[0][1]) / self.events * 1e6

    @property
    def seconds(self) -> float:
        return self.marks[1][0] - self.marks[0][0] if len(self.marks) == 2 else math.nan

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def net_cpu_us(self) -> float:
        """Per event, less the background CPU of as long without events."""
        return self.cpu_us - self.background_cpu_s / self.events * 1e6


@dataclass
class Bare:
    title: str
    station_id: str
    latency: Latency = field(default_factory=Latency)
    cpu: CpuWindow | None = None  # its events one after the other
    paced: CpuWindow | None = None  # at the bridge's rate
    rss_mb: float = math.nan
    output: list[str] = field(default_factory=list)


async def bare_run(
    title: str,
    station_id: str,
    processes: Processes,
    csms: Csms,
    script: Path,
    payloads: Path,
    directory: Path,
    args: argparse.Namespace,
) -> Bare:
    result = Bare(title, station_id)
    cycles, m = WARM_UP + args.cycles, args.events
    record = csms.recorded[station_id] = []
    result.cpu = CpuWindow(max(1, m // 10), m)
    window = result.paced = CpuWindow(m + max(1, m // 10), 2 * m)
    csms.listeners[station_id] += [result.cpu, window]
    times, log = directory / f"{station_id}.times.json", directory / f"{station_id}.log"
    argv = [sys.executable, str(script), csms.url, station_id, str(payloads), str(times)]
    process = processes.start([*argv, str(cycles), str(m), str(PAUSE), str(args.evses)], log)
    result.cpu.pid = window.pid = process.pid
    try:
        async with asyncio.timeout(120 + cycles * 0.05 + m * 0.01 + m / args.evses):
            await window.done.wait()
            status = await asyncio.to_thread(process.wait)
        if status != 0:
            raise RuntimeError(f"the bare station exited with status {status}")
    except Exception:
        print(f"--- {title} output ---\n{tail(log)}", file=sys.stderr)
        raise
    finally:
        await processes.stop_async(process)
        result.output = log_lines(log)
        del csms.recorded[station_id]
        del csms.listeners[station_id]
    result.rss_mb = window.rss_mb
    sent = json.loads(times.read_text())
    statuses = [at for at, action, _ in record if action == "StatusNotification"]
    events = [at for at, action, p in record if action == "TransactionEvent"]
    # Each half: one StatusNotification, then one TransactionEvent (Started or Ended).
    for i in range(2 * WARM_UP, 2 * cycles):
        result.latency.status_ms.append((statuses[i] - sent[i]) * 1000)
        result.latency.event_ms.append((events[i] - sent[i]) * 1000)
    return result


# --- 5. the bridge -------------------------------------------------------------------------------


@dataclass
class RssStep:
    transactions: int  # done in all, warm-up included
    seconds: float  # of this step
    cpu_s: float  # the bridge's, this step (schedstat)
    memory: dict[str, float]
    store_mb: float


@dataclass
class BridgeRun:
    meter: Latency = field(default_factory=Latency)
    plain: Latency = field(default_factory=Latency)  # TxStarted/EndedMeasurands ""
    cpu: CpuWindow | None = None
    rss_boot_mb: float = math.nan
    rss: list[RssStep] = field(default_factory=list)
    refused: int = 0  # authorization answers other than accepted
    open_after: int = -1  # open transactions in the store after the stop
    queued_after: int = -1  # rows in its queue after the stop
    log: list[str] = field(default_factory=list)


def config_file(directory: Path, mqtt_port: int, csms_url: str, evses: int) -> Path:
    """_common.bridge_config with K EVSEs of one connector, no clock-aligned samples."""
    config = bridge_config(directory, mqtt_port, csms_url)
    text = config.read_text().replace("evses = [1]\n", f"evses = {[1] * evses}\n")
    text += '\n[device_model]\n"AlignedDataCtrlr.Interval" = 0\n'
    config.write_text(text)
    return config


def status_of(evse: int, status: str) -> Predicate:
    return lambda action, p: (
        action == "StatusNotification" and p["evseId"] == evse and p["connectorStatus"] == status
    )


def event_of(evse: int, kind: str) -> Predicate:
    return lambda action, p: (
        action == "TransactionEvent"
        and p["eventType"] == kind
        and p.get("evse", {}).get("id") == evse
    )


async def arrivals(*futures: Awaitable[float]) -> list[float]:
    async with asyncio.timeout(ANSWER_TIMEOUT):
        return [await f for f in futures]


async def latency_cycles(o: Oem, csms: Csms, cycles: int) -> Latency:
    """cp_status B1 then A1 on EVSE 1: publish -> StatusNotification, -> TransactionEvent."""
    result = Latency()
    for i in range(WARM_UP + cycles):
        for state, status, kind in (("B1", "Occupied", "Started"), ("A1", "Available", "Ended")):
            notified = csms.expect(STATION_ID, status_of(1, status))
            event = csms.expect(STATION_ID, event_of(1, kind))
            sent = o.update("cp_status", cp_status(1, state))
            at_status, at_event = await arrivals(notified, event)
            if i >= WARM_UP:
                result.status_ms.append((at_status - sent) * 1000)
                result.event_ms.append((at_event - sent) * 1000)
            await asyncio.sleep(PAUSE)
    return result


async def meter_events(
    o: Oem, csms: Csms, pid: int, evses: int, m: int, interval: str
) -> CpuWindow:
    """All EVSEs plugged in with TxUpdatedInterval 1 s: CPU over M MeterValuePeriodic events;
    then, TxUpdatedInterval back to `interval`, the same transactions open for as long without
    events: the background CPU."""
    window = CpuWindow(evses, evses + m, pid)
    csms.listeners[STATION_ID].append(window)
    try:
        await configure(csms, {INTERVAL: "1"})
        started = [csms.expect(STATION_ID, event_of(e, "Started")) for e in range(1, evses + 1)]
        for evse in range(1, evses + 1):
            o.update("cp_status", cp_status(evse, "B1"))
        await arrivals(*started)
        async with asyncio.timeout(m / evses + 30):
            await window.done.wait()
        await configure(csms, {INTERVAL: interval})
        await asyncio.sleep(BACKGROUND_SETTLE)  # the timers set at 1 s fire once more
        count, cpu = window.count, run_seconds(pid)
        await asyncio.sleep(window.seconds)
        window.background_cpu_s = run_seconds(pid) - cpu
        window.background_events = window.count - count
    finally:
        csms.listeners[STATION_ID].remove(window)
    ended = [csms.expect(STATION_ID, event_of(e, "Ended")) for e in range(1, evses + 1)]
    for evse in range(1, evses + 1):
        o.update("cp_status", cp_status(evse, "A1"))
    await arrivals(*ended)
    return window


async def transactions(o: Oem, csms: Csms, evses: int, n: int) -> int:
    """n transactions, the EVSEs in parallel, each one after the other; the authorizations
    not answered `accepted`."""
    tickets = [n]
    refused = [0]

    async def evse_sessions(evse: int) -> None:
        while tickets[0] > 0:
            tickets[0] -= 1
            ended = csms.expect(STATION_ID, event_of(evse, "Ended"))
            o.update("cp_status", cp_status(evse, "B1"))
            data = {"evse_id": str(evse), "token_type": "no_authorization"}
            answer = await o.request("authorization", data)
            if answer.get("data", {}).get("status") != "accepted":
                refused[0] += 1
            o.update("cp_status", cp_status(evse, "A1"))
            await arrivals(ended)

    await asyncio.gather(*(evse_sessions(e) for e in range(1, evses + 1)))
    return refused[0]


def store_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.glob("bridge.db*")) / 1e6


def store_state(path: Path) -> tuple[int, int]:
    """(open transactions, queued messages) of a stopped bridge's store."""
    from bridge.store import QueueTable, Store

    store = Store(path)
    try:
        return len(store.open_transactions()), QueueTable(store).count()
    finally:
        store.close()


async def wait_booted(csms: Csms, process: subprocess.Popen[bytes], evses: int) -> None:
    """Until the boot's StatusNotification of every connector arrived (B01.FR.05)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while csms.counts[STATION_ID]["StatusNotification"] < evses:
        if process.poll() is not None:
            raise RuntimeError(f"the bridge exited with status {process.returncode}")
        if loop.time() > deadline:
            raise RuntimeError("the bridge did not boot within 60 s")
        await asyncio.sleep(0.02)


async def bridge_run(
    processes: Processes,
    csms: Csms,
    o: Oem,
    mqtt_port: int,
    directory: Path,
    args: argparse.Namespace,
    defaults: dict[str, str],
) -> BridgeRun:
    result = BridgeRun()
    config = config_file(directory, mqtt_port, csms.url, args.evses)
    log = directory / "bridge.log"
    process = processes.start([sys.executable, "-m", "bridge", "run", "--config", str(config)], log)
    pid = process.pid
    try:
        await wait_booted(csms, process, args.evses)
        await asyncio.sleep(SETTLE)
        result.rss_boot_mb = memory_mb(pid)["VmRSS"]

        step(f"bridge: latency, meter answered, {args.cycles} cycles")
        result.meter = await latency_cycles(o, csms, args.cycles)
        step(f'bridge: latency, no meter (both Measurands ""), {args.cycles} cycles')
        await configure(csms, dict.fromkeys(MEASURANDS, ""))
        result.plain = await latency_cycles(o, csms, args.cycles)
        await configure(csms, {k: defaults[k] for k in MEASURANDS})

        step(f"bridge: CPU over {args.events} meter-value events, {args.evses} EVSEs at 1 s")
        result.cpu = await meter_events(o, csms, pid, args.evses, args.events, defaults[INTERVAL])

        step(f"bridge: RSS, {RSS_WARM_UP} + {args.transactions:,} transactions")
        done = 0
        for size in (RSS_WARM_UP, *[args.transactions // RSS_STEPS] * RSS_STEPS):
            start, cpu = time.perf_counter(), run_seconds(pid)
            result.refused += await transactions(o, csms, args.evses, size)
            seconds, cpu = time.perf_counter() - start, run_seconds(pid) - cpu
            done += size
            await asyncio.sleep(RSS_SETTLE)
            memory = memory_mb(pid)
            result.rss.append(RssStep(done, seconds, cpu, memory, store_mb(directory)))
    except Exception:
        print(f"--- bridge log ---\n{tail(log)}", file=sys.stderr)
        raise
    finally:
        await processes.stop_async(process)
        result.log = log_lines(log)
    result.open_after, result.queued_after = store_state(directory / "bridge.db")
    return result


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Results:
    in_process: InProcess
    echo: list[Sequential]
    bare: list[Bare]
    bridge: BridgeRun
    ledger: Ledger
    oem_asked: Counter[str]
    oem_unanswered: Counter[str]
    oem_updates: Counter[str]
    csms: str
    payload_bytes: dict[str, int]
    commits_ms: list[list[float]] = field(default_factory=list)  # before, after the runs


async def run(
    args: argparse.Namespace, processes: Processes, directory: Path, local: InProcess
) -> Results:
    payloads = directory / "payloads.json"
    payloads.write_text(json.dumps(local.payloads))
    script = directory / "bare_station.py"
    script.write_text(BARE_STATION)
    mqtt_port = free_port()
    start_mosquitto(processes, directory, mqtt_port)
    wait_port(mqtt_port)

    csms_server: Csms = RawCsms() if args.csms == "raw" else DemoAdapter()
    async with csms_server as csms, oem(mqtt_port, args.evses) as o:
        step(
            f"baseline: MQTT echo (bench/mqtt_roundtrip.py --echo), {ECHO_ROUND_TRIPS} round trips"
        )
        echo_before = await echo_run(
            processes, o, mqtt_port, directory / "echo.log", ECHO_ROUND_TRIPS
        )
        step("baseline: bare ocpp-library charge point")
        bare_before = await bare_run(
            "bare (before)", "BARE1", processes, csms, script, payloads, directory, args
        )
        step("bridge: python -m bridge run")
        bridge = await bridge_run(
            processes, csms, o, mqtt_port, directory / "bridge", args, local.defaults
        )
        step("baseline again: bare ocpp-library charge point")
        bare_after = await bare_run(
            "bare (after)", "BARE2", processes, csms, script, payloads, directory, args
        )
        step("baseline again: MQTT echo")
        echo_after = await echo_run(
            processes, o, mqtt_port, directory / "echo.log", ECHO_ROUND_TRIPS
        )
        ledger = csms.ledgers[STATION_ID]
        asked, unanswered, updates = o.asked, o.unanswered, o.updates

    for bare in (bare_before, bare_after):
        bare_ledger = csms.ledgers[bare.station_id]
        bare_ledger_errors = sum(bare_ledger.errors.values())
        if bare_ledger_errors:
            bare.output.append(f"CSMS: {dict(bare_ledger.errors)}")
    sizes = {
        kind: len(json.dumps([2, str(uuid.uuid4()), "TransactionEvent", p], separators=(",", ":")))
        for kind, p in local.payloads.items()
    }
    return Results(
        local,
        [echo_before, echo_after],
        [bare_before, bare_after],
        bridge,
        ledger,
        asked,
        unanswered,
        updates,
        csms.name,
        sizes,
    )


# --- report --------------------------------------------------------------------------------------


def header(args: argparse.Namespace) -> list[str]:
    v = importlib.metadata.version
    csms = RawCsms.name if args.csms == "raw" else DemoAdapter.name
    return header_lines(
        "Transactions: OEM cp_status -> bridge -> CSMS StatusNotification / TransactionEvent",
        f"libraries   ocpp {v('ocpp')}, websockets {v('websockets')}, aiomqtt {v('aiomqtt')}, "
        f"paho-mqtt {v('paho-mqtt')}, jsonschema-rs {v('jsonschema-rs')}",
        f"mosquitto   {version([mosquitto_binary(), '-h'])}, set_tcp_nodelay true",
        f"bridge      ocpp-bridge {v('ocpp-bridge')}, git {git_revision()}",
        f"csms        {csms}",
        "oem         this process: answers meter_values, cs_contactor_status, "
        "cs_status_and_limits at once; not device_model ([oem] startup_timeout = 0)",
    )


def pooled(values: list[list[float]]) -> Sequential:
    return Sequential([v for vs in values for v in vs], 0)


def stat(values: list[float], name: str) -> float:
    return Sequential(values, 0).stat(name)


def latency_rows(latency: Latency | None) -> list[tuple[str, str]]:
    rows = []
    for label, values in (
        ("-> StatusNotification", latency.status_ms if latency else []),
        ("-> TransactionEvent", latency.event_ms if latency else []),
    ):
        for name in ("p50", "p95"):
            rows.append((f"{label} {name} ms", num(stat(values, name), 3) if values else "-"))
    return rows


def report(results: Results, args: argparse.Namespace) -> list[str]:
    local, bridge = results.in_process, results.bridge
    bare_before, bare_after = results.bare
    echo_before, echo_after = results.echo
    sizes = results.payload_bytes
    n = len(bridge.meter.status_ms)
    lines = [
        "",
        f"latency: {n} samples each ({args.cycles} plug-in/unplug cycles after {WARM_UP}, "
        f"{PAUSE * 1000:g} ms between halves); bridge: from the OEM's cp_status publish, "
        "bare: from its StatusNotification send; to the arrival at the CSMS",
        f"TransactionEvent CALLs: Started {sizes['Started']}, Updated {sizes['Updated']}, "
        f"Ended {sizes['Ended']} bytes (with meter values); StatusNotification "
        f"{sizes['StatusNotification']} bytes",
        "",
    ]

    def bare_rows(b: Bare) -> list[tuple[str, str]]:
        cpu = b.paced
        return [
            *latency_rows(b.latency),
            ("station CPU µs/meter-value event", num(cpu.cpu_us, 0) if cpu else "-"),
            ("meter-value events measured", f"{cpu.events:,}" if cpu else "-"),
            ("station RSS MB at the end", num(b.rss_mb, 1)),
        ]

    cpu = bridge.cpu
    columns = [
        ("bare (before)", bare_rows(bare_before)),
        (
            "bridge, meter",
            [
                *latency_rows(bridge.meter),
                ("station CPU µs/meter-value event", num(cpu.net_cpu_us, 0) if cpu else "-"),
                ("meter-value events measured", f"{cpu.events:,}" if cpu else "-"),
                ("station RSS MB at the end", num(bridge.rss[-1].memory["VmRSS"], 1)),
            ],
        ),
        (
            "bridge, no meter",
            [*latency_rows(bridge.plain), ("", ""), ("", ""), ("", "")],
        ),
        ("bare (after)", bare_rows(bare_after)),
    ]
    lines += column_table([t for t, _ in columns], [c for _, c in columns], 36, 18)
    lines.append(
        "(bridge, meter: Started and Ended wait for a meter_values answer; no meter: "
        'TxStartedMeasurands and TxEndedMeasurands "". CPU: the events at '
        f"{args.evses} a second; the bridge's net of its background, see below)"
    )

    echo = pooled([e.latencies_ms for e in results.echo])
    one_way = echo.stat("p50") / 2
    paced = " and ".join(num(b.paced.cpu_us, 0) for b in results.bare if b.paced)
    paced_windows = [b.paced for b in results.bare if b.paced]
    paced_us = sum(w.cpu_us for w in paced_windows) / len(paced_windows)
    dense = " and ".join(num(b.cpu.cpu_us, 0) for b in results.bare if b.cpu)
    lines += [
        "",
        f"MQTT echo (bench/mqtt_roundtrip.py --echo), {ECHO_ROUND_TRIPS} round trips of the "
        f"cp_status update after {ECHO_WARM_UP}:",
        f"  before: p50 {num(echo_before.stat('p50'), 3)} ms, p95 {num(echo_before.stat('p95'), 3)}"
        f" ms; after: p50 {num(echo_after.stat('p50'), 3)} ms, p95 "
        f"{num(echo_after.stat('p95'), 3)} ms; one way (half the pooled p50) {num(one_way, 3)} ms",
        f"durable SQLite commit on this disk ({COMMITS}, WAL, synchronous=FULL, one 1.5 kB row, "
        "as the store queues a TransactionEvent):",
        "  "
        + "; ".join(
            f"{when}: p50 {num(stat(ms, 'p50'), 3)} ms, p95 {num(stat(ms, 'p95'), 3)} ms"
            for when, ms in zip(("before", "after"), results.commits_ms, strict=False)
        ),
        "",
        f"CPU per meter-value TransactionEvent (Updated, {PERIODIC}; user+system of all "
        "threads, from /proc/<pid>/task/*/schedstat):",
        f"  bridge process    {num(cpu.net_cpu_us, 0) if cpu else '-'} µs net = "
        f"{num(cpu.cpu_us, 0) if cpu else '-'} µs over {cpu.events if cpu else 0} events "
        f"({args.evses} EVSEs at TxUpdatedInterval 1 s, {num(cpu.rate, 1) if cpu else '-'}/s,"
        f" {num(cpu.seconds, 1) if cpu else '-'} s) less the background "
        f"{num(cpu.background_cpu_s * 1e3, 0) if cpu else '-'} ms of as long after, the "
        f"transactions open, {cpu.background_events if cpu else 0} events",
        f"  bare library      {paced} µs (before, after) at the bridge's rate "
        f"({args.evses}/s), {dense} µs one CALL after the other "
        f"({bare_before.cpu.events if bare_before.cpu else 0} events each)",
        f"  bridge net / bare library at the same rate (both bare runs): "
        f"{num((cpu.net_cpu_us if cpu else math.nan) / paced_us, 2)}x",
        f"  station code path {num(local.event_cpu_us, 0)} µs in this process "
        f"({local.events:,} events; Station.timer -> meter_values answer -> queued, sent, "
        "removed; real store, no MQTT or WebSocket)",
        f"  station code path {num(local.transaction_cpu_us, 0)} µs per transaction in this "
        f"process ({local.transactions:,}; cp_status B1 and A1, meter values at start and end)",
    ]

    first, last = bridge.rss[0], bridge.rss[-1]
    per_step = args.transactions // RSS_STEPS
    lines += [
        "",
        f"bridge RSS: {RSS_WARM_UP} + {args.transactions:,} transactions, {args.evses} EVSEs in "
        "parallel, each: cp_status B1, authorization no_authorization, cp_status A1, until its "
        f"Ended arrived; read {RSS_SETTLE:g} s after each step",
        "",
        f"{'':28}{'VmRSS MB':>10}{'VmHWM MB':>10}{'RssAnon MB':>12}{'store MB':>10}{'tx/s':>8}"
        f"{'bridge CPU ms/tx':>18}{'CPU %':>7}",
        f"{'after boot':28}{num(bridge.rss_boot_mb, 1):>10}",
    ]
    for i, s in enumerate(bridge.rss):
        label = f"after warm-up ({RSS_WARM_UP})" if i == 0 else f"+ {i * per_step:,} transactions"
        size = RSS_WARM_UP if i == 0 else per_step
        lines.append(
            f"{label:28}{num(s.memory['VmRSS'], 1):>10}{num(s.memory['VmHWM'], 1):>10}"
            f"{num(s.memory.get('RssAnon', math.nan), 1):>12}{num(s.store_mb, 2):>10}"
            f"{num(size / s.seconds, 0):>8}{num(s.cpu_s / size * 1e3, 2):>18}"
            f"{num(s.cpu_s / s.seconds * 100, 0):>7}"
        )

    ledger = results.ledger
    total = RSS_WARM_UP + args.transactions + 2 * (WARM_UP + args.cycles) + args.evses
    errors = sum(ledger.errors.values())
    lines += [
        "",
        f"at the CSMS (bridge): {ledger.started:,} Started, {ledger.updated:,} Updated, "
        f"{ledger.ended:,} Ended ({total:,} transactions run), {ledger.open} left open; "
        f"{errors} errors" + (f" {dict(ledger.errors)}" if errors else ""),
        f"the bridge's store after stop: {bridge.open_after} open transactions, "
        f"{bridge.queued_after} queued messages; authorization answers not accepted: "
        f"{bridge.refused}",
        "the bridge asked the OEM: "
        + ", ".join(f"{name} {k:,}" for name, k in sorted(results.oem_asked.items()))
        + (
            f" (not answered: {', '.join(f'{k} {v}' for k, v in results.oem_unanswered.items())})"
            if results.oem_unanswered
            else ""
        ),
        "the bridge's updates: "
        + ", ".join(f"{name} {k:,}" for name, k in sorted(results.oem_updates.items())),
    ]
    lines += bridge_log_report(bridge.log)
    unanswered = sum(DEVICE_MODEL_UNANSWERED in line for line in bridge.log)
    if unanswered:
        lines.append(f"  ({unanswered} of them: {DEVICE_MODEL_UNANSWERED}, every 10 s, on purpose)")
    lines.append(
        f"bare stations' output: {sum(len(b.output) for b in results.bare)} lines"
        + "".join(f"; {line}" for b in results.bare for line in b.output[-2:])
    )

    # The floors: what the same message costs without the bridge (module docstring).
    bare_status = pooled([b.latency.status_ms for b in results.bare]).stat("p50")
    bare_event = pooled([b.latency.event_ms for b in results.bare]).stat("p50")
    echo_p50 = echo.stat("p50")
    shares = [
        ("StatusNotification, meter", bridge.meter.status_ms, one_way + bare_status),
        ("TransactionEvent, meter", bridge.meter.event_ms, one_way + echo_p50 + bare_event),
        ("StatusNotification, no meter", bridge.plain.status_ms, one_way + bare_status),
        ("TransactionEvent, no meter", bridge.plain.event_ms, one_way + bare_event),
    ]
    lines += [
        "",
        "the bridge's share of the median latency (floor: MQTT one way + bare library"
        " [+ one echo round trip for the meter value]):",
    ]
    targets = []
    for label, values, floor in shares:
        median = stat(values, "p50")
        ratio = median / floor
        lines.append(
            f"  cp_status -> {label:30} {num(median, 3)} ms = floor {num(floor, 3)} ms + "
            f"{num(median - floor, 3)} ms ({num(ratio, 2)}x)"
        )
        targets.append(
            (
                ratio <= TARGET_RATIO,
                f"cp_status -> {label} median <= {TARGET_RATIO}x floor",
                f"{num(ratio, 2)}x (bridge's share {num(median - floor, 3)} ms)",
            )
        )
    growth = last.memory["VmRSS"] - first.memory["VmRSS"]
    checked = errors == 0 and ledger.open == 0 and bridge.open_after == 0
    checked = checked and bridge.queued_after == 0 and bridge.refused == 0
    targets += [
        (
            growth < TARGET_GROWTH_MB,
            f"RSS growth over {args.transactions:,} transactions < {TARGET_GROWTH_MB:g} MB",
            f"{growth:+.1f} MB ({num(first.memory['VmRSS'], 1)} -> "
            f"{num(last.memory['VmRSS'], 1)} MB)",
        ),
        (
            checked,
            "every transaction Started..Ended, seqNo continuous",
            f"{errors} errors, {ledger.open} open at the CSMS, store: {bridge.open_after} open, "
            f"{bridge.queued_after} queued",
        ),
    ]
    lines += ["", "targets (bridge)"]
    lines += [f"  {verdict(ok)}  {label:<58} {value}" for ok, label, value in targets]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cycles", type=int, default=200, metavar="N", help="latency cycles a mode (default 200)"
    )
    parser.add_argument(
        "--events", type=int, default=200, metavar="M", help="meter-value events (default 200)"
    )
    parser.add_argument(
        "--evses", type=int, default=20, metavar="K", help="EVSEs of the bridge (default 20)"
    )
    parser.add_argument(
        "--transactions",
        type=int,
        default=10_000,
        metavar="T",
        help="for the RSS (default 10,000)",
    )
    parser.add_argument(
        "--csms", choices=["raw", "demo"], default="raw", help="the CSMS side (default: raw)"
    )
    args = parser.parse_args()
    if min(args.cycles, args.events, args.transactions) < 1 or not 1 <= args.evses <= 32:
        parser.error("--cycles, --events, --transactions must be at least 1, --evses 1 to 32")
    if args.transactions % RSS_STEPS:
        parser.error(f"--transactions must be a multiple of {RSS_STEPS}")

    def one_run(processes: Processes, directory: Path) -> Results:
        step(
            f"in process: the station's code path, {IN_PROCESS_EVENTS:,} meter-value events, "
            f"{IN_PROCESS_TRANSACTIONS:,} transactions"
        )
        local = in_process(directory / "in-process", IN_PROCESS_EVENTS, IN_PROCESS_TRANSACTIONS)
        step(f"this disk: {COMMITS} durable SQLite commits")
        before = durable_commits(directory / "commits")
        results = asyncio.run(run(args, processes, directory, local))
        step(f"this disk again: {COMMITS} durable SQLite commits")
        results.commits_ms = [before, durable_commits(directory / "commits")]
        return results

    # The children run this repository's bridge (python -m bridge), wherever this runs from.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return run_benchmark(
        lambda: header(args),
        "tx-bench-",
        one_run,
        lambda results: report(results, args),
        Processes(env={**os.environ, "PYTHONPATH": path}),
    )


if __name__ == "__main__":
    sys.exit(main())
