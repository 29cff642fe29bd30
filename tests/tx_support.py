"""The harness of the transaction acceptance suite (tests/test_tx_*.py): the real bridge, a real
Mosquitto, a real WebSocket CSMS whose Authorize and TransactionEvent answers each test sets, and
a test OEM that publishes the session messages and answers the bridge's requests with the
simulator's firmware (bridge.oem_sim.firmware: contactor, control pilot, a meter whose energy
register rises while the EV charges).

    async with station(tmp_path, broker, {"TxCtrlr.TxStartPoint": "EVConnected"}) as s:
        await s.oem.plug()
        (started,) = await s.csms.wait_events(1)

`Event(...)` describes one TransactionEvent with every field; `check_events` compares what the
CSMS received against a list of them (the meter values by context and measurands, since their
numbers come from the meter).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiomqtt
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, unpack, validate_payload
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bridge.app import Bridge
from bridge.demo_csms import DemoCsms, Received, StationConnection
from bridge.oem_sim.firmware import Answer, EvseSpec, Firmware, Update
from tests.conftest import (
    REQUEST_TOPIC,
    RESPONSE_TOPIC,
    Broker,
    oem_mqtt_client,
    running_bridge,
    write_config,
)

Data = dict[str, Any]
STATION: Final = "CP001"
TOKEN: Final = "TAG-0001"
TOKEN_TYPE: Final = "ISO14443"
# Fast reconnection; meter values whose measurands each test knows exactly; no clock-aligned
# or periodic samples unless a test asks for them.
BASE_DEVICE_MODEL: Final[dict[str, str]] = {
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": "1",
    "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
    "OCPPCommCtrlr.RetryBackOffRepeatTimes": "0",
    "OCPPCommCtrlr.MessageTimeout[Default]": "5",
    "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]": "1",
    "SampledDataCtrlr.TxStartedMeasurands": "Energy.Active.Import.Register",
    "SampledDataCtrlr.TxUpdatedMeasurands": "Energy.Active.Import.Register,Power.Active.Import",
    "SampledDataCtrlr.TxEndedMeasurands": "Energy.Active.Import.Register,Voltage",
    "SampledDataCtrlr.TxUpdatedInterval": "0",
    "AlignedDataCtrlr.Interval": "0",
    # No TxEndedInterval samples (their clock-aligned ones fall on minute boundaries): tests
    # that want them set the interval.
    "SampledDataCtrlr.TxEndedInterval": "0",
    "AlignedDataCtrlr.TxEndedInterval": "0",
    "AlignedDataCtrlr.Measurands": "Energy.Active.Import.Register,Frequency",
    "TxCtrlr.EVConnectionTimeOut": "60",
}
BEGIN: Final = ("Transaction.Begin", ("Energy.Active.Import.Register",))
END: Final = ("Transaction.End", ("Energy.Active.Import.Register", "Voltage"))
PERIODIC: Final = ("Sample.Periodic", ("Energy.Active.Import.Register", "Power.Active.Import"))
CLOCK: Final = ("Sample.Clock", ("Energy.Active.Import.Register", "Frequency"))
WAIT: Final = 15.0  # seconds any one expected message may take (generous on 2 busy cores)


def id_token(value: str = TOKEN, kind: str = "ISO14443") -> Data:
    return {"idToken": value, "type": kind}


# --- the CSMS


class TxConnection(StationConnection):
    """The CSMS side of the station's WebSocket: Authorize and TransactionEvent answered as the
    test says (Csms.answer), every other CALL as the demo CSMS does."""

    async def route_message(self, raw_msg: str) -> None:
        csms = self._csms
        assert isinstance(csms, Csms)
        try:
            msg = unpack(raw_msg)
        except OCPPError:
            await super().route_message(raw_msg)
            return
        if msg.message_type_id != MessageType.Call or msg.action not in csms.answers:
            await super().route_message(raw_msg)
            return
        csms.raw_frames.append((self.id, "in", raw_msg))
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        csms.received.append(Received(self.id, str(msg.action), payload, time.monotonic()))
        try:
            await validate_payload(Call(msg.unique_id, msg.action, payload), "2.0.1")
        except OCPPError as error:
            csms._reject(self.id, str(msg.action), "request", str(error.code), str(error))
        answer = csms.answers[str(msg.action)](payload)
        await csms._notify()
        await self._send(CallResult(msg.unique_id, answer, msg.action).to_json())


class Csms(DemoCsms):
    """The demo CSMS, with the answers a test needs: `tokens` gives each idToken's
    IdTokenInfo (in AuthorizeResponse and in TransactionEventResponse for an event carrying
    it); an unknown token is Accepted unless `unknown` says otherwise."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.tokens: dict[str, Data] = {}
        self.unknown: Data = {"status": "Accepted"}
        # IdTokenInfo in TransactionEventResponse, by idToken, when it differs from Authorize's.
        self.tx_tokens: dict[str, Data] = {}
        self.answers: dict[str, Callable[[Data], Data]] = {
            "Authorize": self._authorize,
            "TransactionEvent": self._transaction_event,
        }

    def info(self, token: Data) -> Data:
        return dict(self.tokens.get(token["idToken"], self.unknown))

    def _authorize(self, payload: Data) -> Data:
        return {"idTokenInfo": self.info(payload["idToken"])}

    def _transaction_event(self, payload: Data) -> Data:
        token = payload.get("idToken")
        if token is None:
            return {}
        info = self.tx_tokens.get(token["idToken"]) or self.info(token)
        return {"idTokenInfo": dict(info)}

    async def _handler(self, ws: ServerConnection) -> None:  # DemoCsms's, with TxConnection
        assert ws.request is not None
        from bridge.demo_csms import _station_id  # the same path rule as the demo CSMS

        station_id = _station_id(ws.request.path) or ""
        connection = TxConnection(station_id, ws, self)
        self.connected[station_id] = connection
        await self._notify()
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    await connection.route_message(frame)
        except ConnectionClosed:
            pass
        finally:
            connection.fail_pending()
            if self.connected.get(station_id) is connection:
                del self.connected[station_id]
            await self._notify()

    # --- what the station sent

    def payloads(self, action: str) -> list[Data]:
        return [r.payload for r in self.received if r.action == action]

    def events(self) -> list[Data]:
        return self.payloads("TransactionEvent")

    async def wait_events(
        self, count: int, predicate: Callable[[Data], bool] | None = None, timeout: float = WAIT
    ) -> list[Data]:
        """The first `count` TransactionEvents (matching `predicate`), once they are there."""
        found = await self.wait_for(
            "TransactionEvent",
            count=count,
            timeout=timeout,
            predicate=None if predicate is None else lambda r: predicate(r.payload),
        )
        return [r.payload for r in found]

    async def wait_ended(self, count: int = 1, timeout: float = WAIT) -> list[Data]:
        return await self.wait_events(count, lambda e: e["eventType"] == "Ended", timeout)

    async def wait_payload(
        self, action: str, predicate: Callable[[Data], bool], timeout: float = WAIT
    ) -> Data:
        (found,) = await self.wait_for(
            action, timeout=timeout, predicate=lambda r: predicate(r.payload)
        )
        return found.payload

    async def set_variables(self, values: Mapping[str, str]) -> list[str]:
        """SetVariables from the CSMS ("Component.Variable": value); the attribute statuses."""
        items = []
        for key, value in values.items():
            component, variable = key.split(".")
            items.append(
                {
                    "component": {"name": component},
                    "variable": {"name": variable},
                    "attributeValue": value,
                }
            )
        result = await self.call(STATION, "SetVariables", {"setVariableData": items})
        return [r["attributeStatus"] for r in result["setVariableResult"]]


# --- the OEM


def counting_clock(step: float = 60.0) -> Callable[[], float]:
    """A clock that moves `step` seconds on every reading: the simulated meter's energy register
    rises at every sample while the EV charges, however fast the test runs."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


@dataclass
class TestOem:
    """The OEM firmware on MQTT: publishes session messages on cs/josev; answers each request of
    the bridge with the simulator's firmware (`answer` and `silent` let a test change that)."""

    client: aiomqtt.Client
    firmware: Firmware
    updates: list[Data] = field(default_factory=list)  # the bridge's updates, in order
    requests: list[Data] = field(default_factory=list)  # the bridge's requests, in order
    silent: set[str] = field(default_factory=set)  # request names left unanswered
    # Change a firmware answer's data before it goes (e.g. add signed_meter_values).
    tweak: dict[str, Callable[[Data], Data]] = field(default_factory=dict)
    _answers: dict[str, asyncio.Future[Data]] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    __test__ = False  # not a pytest class

    # --- what the OEM does

    async def send(self, body: Data) -> None:
        await self.client.publish(REQUEST_TOPIC, json.dumps(body), qos=1)

    async def update(self, name: str, data: Data) -> None:
        await self.send({"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data})

    async def publish(self, updates: list[Update]) -> None:
        for item in updates:
            await self.update(item.name, item.data)

    async def request(self, name: str, data: Data, timeout: float = WAIT) -> Data:
        message_id = str(uuid.uuid4())
        future: asyncio.Future[Data] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = future
        await self.send({"id": message_id, "name": name, "type": "request", "data": data})
        return await asyncio.wait_for(future, timeout)

    def evse(self, evse: int = 1) -> Any:
        return self.firmware.evses[evse]

    async def plug(self, evse: int = 1, connector: int = 1) -> None:
        """The driver plugs the EV in: cp_status B1."""
        await self.publish(self.firmware.plug_in(self.evse(evse), connector))

    async def pilot(self, state: str, evse: int = 1, connector: int = 1) -> None:
        await self.publish([self.evse(evse).set_pilot(connector, state)])

    async def contactor(self, status: str, evse: int = 1) -> None:
        await self.publish([self.evse(evse).set_contactor(status)])

    async def charge(self, evse: int = 1, connector: int = 1) -> None:
        """Authorized: PWM on (B2), the EV asks for energy (C2), the contactor closes."""
        await self.publish(self.firmware.start_charging(self.evse(evse), connector))

    async def suspend_ev(self, evse: int = 1, connector: int = 1) -> None:
        """The EV stops drawing energy (C2 -> B2), the contactor stays closed."""
        await self.pilot("B2", evse, connector)

    async def stop(self, evse: int = 1) -> None:
        """The charger stops on its own: contactor open, PWM off."""
        await self.publish(self.firmware.stop(self.evse(evse)))

    async def unplug(self, evse: int = 1, connector: int = 1) -> None:
        await self.publish(self.firmware.unplug(self.evse(evse), connector))

    async def present(
        self, token: str = TOKEN, token_type: str = TOKEN_TYPE, evse: str | None = "1"
    ) -> str:
        """A token at the reader (`authorization` request); the bridge's answer status."""
        data: Data = {"token_type": token_type}
        if token_type != "no_authorization":
            data["id_token"] = token
        if evse is not None:
            data["evse_id"] = evse
        answer = await self.request("authorization", data)
        return str(answer["data"].get("status", answer["data"]))

    # --- what the bridge told the OEM

    def named(self, name: str, kind: str = "update") -> list[Data]:
        source = self.updates if kind == "update" else self.requests
        return [m["data"] for m in source if m["name"] == name]

    def transaction_status(self) -> list[tuple[str, str]]:
        return [(d["status"], d["transaction_id"]) for d in self.named("transaction_status")]

    async def until(self, done: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            raise AssertionError(f"waited {timeout} s for {what}") from None

    async def wait_request(self, name: str, count: int = 1) -> list[Data]:
        await self.until(lambda: len(self.named(name, "request")) >= count, f"{count} {name}")
        return self.named(name, "request")

    async def wait_update(self, name: str, predicate: Callable[[Data], bool]) -> Data:
        def found() -> Data | None:
            return next((d for d in self.named(name) if predicate(d)), None)

        await self.until(lambda: found() is not None, f"a matching {name} update")
        result = found()
        assert result is not None
        return result

    # --- the loop behind it

    async def read(self) -> None:
        async for message in self.client.messages:
            body = json.loads(message.payload) if isinstance(message.payload, bytes) else {}
            kind = body.get("type")
            if kind == "response":
                future = self._answers.pop(body.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(body)
            elif kind == "update":
                self.updates.append(body)
            elif kind == "request":
                self.requests.append(body)
                await self._answer(body)
            async with self._changed:
                self._changed.notify_all()

    async def _answer(self, body: Data) -> None:
        name = body["name"]
        if name in self.silent:
            return
        answer: Answer = self.firmware.answer(name, body["data"])
        if answer.data is None:
            return
        data = answer.data
        if name in self.tweak:
            data = self.tweak[name](dict(data))
        response = {"id": body["id"], "name": name, "type": "response", "data": data}
        await self.client.publish(REQUEST_TOPIC, json.dumps(response), qos=1)
        await self.publish(answer.updates)


@asynccontextmanager
async def firmware_oem(broker: Broker, evses: int) -> AsyncIterator[TestOem]:
    firmware = Firmware(
        [EvseSpec(n) for n in range(1, evses + 1)], power_kw=11, clock=counting_clock()
    )
    async with oem_mqtt_client(broker.host, broker.port) as client:
        oem = TestOem(client, firmware)
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        reader = asyncio.create_task(oem.read())
        try:
            yield oem
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


# --- the station under test


def config(
    tmp_path: Path,
    broker: Broker,
    url: str,
    device_model: Mapping[str, str] | None = None,
    evses: int = 1,
    oem: str = "startup_timeout = 0\nrequest_timeout = 2",
) -> Path:
    values = {**BASE_DEVICE_MODEL, **(device_model or {})}
    lines = "\n".join(f'"{key}" = "{value}"' for key, value in values.items())
    return write_config(
        tmp_path / "bridge.toml",
        broker,
        csms=f'url = "{url}"',
        evses=json.dumps([1] * evses),
        oem=oem,
        extra=f"[device_model]\n{lines}\n",
    )


@dataclass
class Station:
    csms: Csms
    oem: TestOem
    bridge: Bridge | None
    config: Path
    stack: contextlib.AsyncExitStack

    async def csms_down(self) -> None:
        """The CSMS goes away (server closed, connections dropped) until `csms_back`."""
        before = self._disconnects()
        await self.csms.__aexit__(None, None, None)
        await self.oem.until(lambda: self._disconnects() > before, "websocket_status disconnected")

    async def csms_back(self) -> Csms:
        """A CSMS on the same port again, with the same answers; the station connects to it."""
        old = self.csms
        new = Csms(port=old.port)
        new.tokens, new.unknown, new.tx_tokens = old.tokens, old.unknown, old.tx_tokens
        await self.stack.enter_async_context(new)
        self.csms = new
        await new.wait_connected(STATION, timeout=WAIT)  # no new boot: the station ran on
        return new

    def _disconnects(self) -> int:
        return sum(1 for d in self.oem.named("websocket_status") if d["status"] == "disconnected")


async def booted(csms: Csms, connectors: int = 1) -> None:
    """Until the station is accepted and has sent a StatusNotification for every connector."""
    await csms.wait_for("BootNotification", timeout=WAIT)
    await csms.wait_for("StatusNotification", count=connectors, timeout=WAIT)


@asynccontextmanager
async def station(
    tmp_path: Path,
    broker: Broker,
    device_model: Mapping[str, str] | None = None,
    *,
    evses: int = 1,
    csms: Csms | None = None,
    boot: bool = True,
) -> AsyncIterator[Station]:
    """CSMS, OEM and bridge (in this event loop) running; the boot accepted unless `boot`."""
    own = csms is None
    server = csms or Csms()
    async with contextlib.AsyncExitStack() as stack:
        if own:
            await stack.enter_async_context(server)
        oem = await stack.enter_async_context(firmware_oem(broker, evses))
        path = config(tmp_path, broker, server.url, device_model, evses)
        bridge = await stack.enter_async_context(running_bridge(path))
        if boot:
            await booted(server, evses)
        running = Station(server, oem, bridge, path, stack)
        yield running
        assert server.schema_errors == [], server.schema_errors
        assert running.csms.schema_errors == [], running.csms.schema_errors


# --- TransactionEvents


@dataclass(frozen=True)
class Event:
    """One expected TransactionEvent: every field but transactionId and the timestamps (the
    same transactionId for a whole transaction is checked apart); `meter` lists the meter
    values as (context, measurands in order of first appearance)."""

    event_type: str
    trigger: str
    seq_no: int
    charging_state: str | None = None
    stopped_reason: str | None = None
    id_token: Data | None = None
    meter: tuple[tuple[str, tuple[str, ...]], ...] = ()
    offline: bool = False
    evse: int = 1
    connector: int = 1


def meter_shape(event: Data) -> tuple[tuple[str, tuple[str, ...]], ...]:
    shapes = []
    for value in event.get("meterValue", []):
        datetime.fromisoformat(value["timestamp"].replace("Z", "+00:00"))
        contexts = {s.get("context", "Sample.Periodic") for s in value["sampledValue"]}
        assert len(contexts) == 1, f"one meter value of mixed contexts: {contexts}"
        measurands: list[str] = []
        for sampled in value["sampledValue"]:
            name = sampled.get("measurand", "Energy.Active.Import.Register")
            if name not in measurands:
                measurands.append(name)
        shapes.append((contexts.pop(), tuple(measurands)))
    return tuple(shapes)


def shape(event: Data) -> Event:
    """The Event a received TransactionEvent is; an unexpected field fails here."""
    known = {"eventType", "timestamp", "triggerReason", "seqNo", "transactionInfo", "evse"}
    known |= {"idToken", "meterValue", "offline"}
    extra = set(event) - known
    assert not extra, f"unexpected fields {extra} in {event}"  # remoteStartId, reservationId…
    info = dict(event["transactionInfo"])
    info.pop("transactionId")
    state = info.pop("chargingState", None)
    reason = info.pop("stoppedReason", None)
    assert not info, f"unexpected transactionInfo fields {info}"
    datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert event.get("offline", False) is not False or "offline" not in event
    evse = event["evse"]
    assert set(evse) == {"id", "connectorId"}, evse
    return Event(
        event["eventType"],
        event["triggerReason"],
        event["seqNo"],
        state,
        reason,
        event.get("idToken"),
        meter_shape(event),
        bool(event.get("offline", False)),
        evse["id"],
        evse["connectorId"],
    )


def check_events(received: list[Data], expected: list[Event]) -> str:
    """`received` is exactly `expected`, all of one transaction; its transactionId."""
    got = [shape(e) for e in received]
    if got != expected:
        raise AssertionError("TransactionEvents differ:\n" + _diff(got, expected))
    ids = {e["transactionInfo"]["transactionId"] for e in received}
    assert len(ids) == 1, ids
    (transaction_id,) = ids
    assert 0 < len(transaction_id) <= 36
    uuid.UUID(transaction_id)  # E01: a UUID
    return transaction_id


def _short(event: Event | None) -> str:
    if event is None:
        return "-"
    fields = [f"{event.event_type} {event.trigger} #{event.seq_no}"]
    defaults = Event("", "", 0)
    for name in ("charging_state", "stopped_reason", "id_token", "meter", "offline", "evse"):
        value = getattr(event, name)
        if value != getattr(defaults, name):
            fields.append(f"{name}={value}")
    return " ".join(fields)


def _diff(got: list[Event], expected: list[Event]) -> str:
    lines = []
    for index in range(max(len(got), len(expected))):
        a = got[index] if index < len(got) else None
        b = expected[index] if index < len(expected) else None
        mark = "  " if a == b else "!!"
        lines.append(f"{mark} got      {_short(a)}\n{mark} expected {_short(b)}")
    return "\n".join(lines)


def transactions(events: list[Data]) -> dict[str, list[Data]]:
    """The events by transactionId, in order."""
    out: dict[str, list[Data]] = {}
    for event in events:
        out.setdefault(event["transactionInfo"]["transactionId"], []).append(event)
    return out


def energies(event: Data) -> Iterator[float]:
    for value in event.get("meterValue", []):
        for sampled in value["sampledValue"]:
            if sampled.get("measurand", "Energy.Active.Import.Register") == (
                "Energy.Active.Import.Register"
            ):
                yield float(sampled["value"])


async def settle(seconds: float = 0.3) -> None:
    """Give the bridge a moment to show a message that must NOT come (the only sleeps here:
    nothing can be awaited for an absence)."""
    await asyncio.sleep(seconds)
