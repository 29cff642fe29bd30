"""Shared pieces of the robustness tests.

- `BridgeProcess`: `ocpp-bridge run` as a subprocess (a crash is an exit, RSS is readable).
- `Oem`: an OEM MQTT client that keeps *every* answer per id (to see losses and duplicates).
- `RawCsms`: a WebSocket CSMS whose every frame the test controls (huge frames, silence, kills).
- `keeps_answering`: a background OEM that asks the bridge something every few ms.
- `store_snapshot`: the store's tables, read through a read-only SQLite connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bridge.timeutil import ocpp_timestamp
from tests.conftest import BRIDGE, REQUEST_TOPIC, ocpp_message, oem_mqtt_client, reading_answers

# aiomqtt logs a WARNING for every publish beyond 10 awaiting their PUBACK: the test client
# pipelines on purpose, so its own logger stays quiet.
_QUIET = logging.getLogger("tests.robustness.oem")
_QUIET.setLevel(logging.ERROR)


# --- the bridge as users start it


class BridgeProcess:
    """`python -m bridge run --config FILE`, stdout and stderr appended to `log`."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*BRIDGE, "run", "--config", str(self.config)], stdout=out, stderr=out
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kb(self) -> int:
        """VmRSS of the running bridge, in kB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def kill9(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM; the exit status (the service must exit 0)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return int(self.process.returncode)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# --- the OEM side


@dataclass
class Oem:
    """Publishes on cs/josev; keeps every answer on josev/cs, by id, in arrival order."""

    client: aiomqtt.Client
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    undecodable: list[bytes] = field(default_factory=list)
    received: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(self, raw: bytes | str | dict[str, Any]) -> None:
        payload = json.dumps(raw) if isinstance(raw, dict) else raw
        await self.client.publish(REQUEST_TOPIC, payload, qos=1)

    async def publish_all(self, messages: Iterable[bytes | str | dict[str, Any]]) -> None:
        """Pipelined: every publish started at once (paho keeps them in order)."""
        await asyncio.gather(*(self.publish(m) for m in messages))

    def count(self, message_id: str) -> int:
        return len(self.answers.get(message_id, ()))

    async def wait_for(self, ids: Iterable[str], timeout: float) -> list[str]:
        """Wait until each id has at least one answer; the ids still unanswered at the timeout."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = [i for i in wanted if not self.answers.get(i)]
            if not missing or time.monotonic() >= deadline:
                return missing
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.5, max(deadline - time.monotonic(), 0.01))):
                    await self._changed.wait()

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        await self.publish(message)
        if await self.wait_for([message["id"]], timeout):
            raise TimeoutError(f"no answer to {message['id']} within {timeout} s")
        return self.answers[message["id"]][0]

    async def ocpp(self, action: str, payload: dict[str, Any], timeout: float = 10.0) -> Any:
        """An ocpp_message request; the response's `data`."""
        answer = await self.request(ocpp_message(action, payload), timeout)
        return answer["data"]

    async def read_answers(self) -> None:
        async for message in self.client.messages:
            self.received += 1
            raw = message.payload
            try:
                body = json.loads(raw) if isinstance(raw, bytes | bytearray | str) else None
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                self.answers[body["id"]].append(body)
            else:
                self.undecodable.append(bytes(raw) if isinstance(raw, bytes | bytearray) else b"")
            self._changed.set()


@asynccontextmanager
async def oem_client(host: str, port: int, connect_timeout: float = 10.0) -> AsyncIterator[Oem]:
    """An OEM connected to the broker (retrying while the broker comes up), subscribed."""
    deadline = time.monotonic() + connect_timeout
    while True:
        client = oem_mqtt_client(host, port, logger=_QUIET, max_inflight_messages=100)
        try:
            await client.__aenter__()
            break
        except aiomqtt.MqttError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    try:
        async with reading_answers(Oem(client)) as oem:
            yield oem
    finally:
        # Bounded: with the broker gone, a clean disconnect would wait for it.
        with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
            async with asyncio.timeout(2):
                await client.__aexit__(None, None, None)


def get_variables(*keys: tuple[str, str]) -> dict[str, Any]:
    return {
        "getVariableData": [{"component": {"name": c}, "variable": {"name": v}} for c, v in keys]
    }


def probe() -> dict[str, Any]:
    """A cheap request every bridge answers with a CallResult."""
    return ocpp_message("GetVariables", get_variables(("OCPPCommCtrlr", "OfflineThreshold")))


async def until_answering(oem: Oem, timeout: float = 20.0) -> float:
    """Probe until the bridge answers; how long it took."""
    started = time.monotonic()
    while True:
        message = probe()
        await oem.publish(message)
        if not await oem.wait_for([message["id"]], 0.5):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"the bridge did not answer within {timeout} s")


@dataclass
class Liveness:
    """What `keeps_answering` saw."""

    answered: int = 0
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0


@asynccontextmanager
async def keeps_answering(
    oem: Oem, every: float = 0.05, limit: float = 3.0
) -> AsyncIterator[Liveness]:
    """Ask the bridge a GetVariables every `every` s in the background; each must be answered
    (a CallResult) within `limit` s. Check `failures` afterwards."""
    seen = Liveness()

    async def one() -> None:
        message = probe()
        started = time.monotonic()
        try:
            answer = await oem.request(message, timeout=limit)
        except TimeoutError:
            seen.failures.append(f"no answer within {limit} s at {time.strftime('%X')}")
            return
        seen.slowest = max(seen.slowest, time.monotonic() - started)
        if answer["data"].get("message_type") != "CallResult":
            seen.failures.append(f"not a CallResult: {answer}")
        else:
            seen.answered += 1

    async def loop() -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                group.create_task(one())
                await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the store


TABLES = ("variable_attribute", "config_applied", "certificate", "network_profile")


def store_snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the store's tables, through a read-only connection (works while the bridge
    runs: WAL readers see the last committed state)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {table: sorted(db.execute(f"SELECT * FROM {table}").fetchall()) for table in TABLES}
    finally:
        db.close()


def integrity_check(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        (result,) = db.execute("PRAGMA integrity_check").fetchone()
        return str(result)
    finally:
        db.close()


# --- a CSMS under the test's control


Responder = Callable[[str, Any, int], Any]
"""(action, payload, how many of this action came before) → the CALLRESULT payload, or None to
stay silent."""


def default_responder(interval: int = 300) -> Responder:
    def answer(action: str, payload: Any, seen: int) -> Any:
        if action == "BootNotification":
            return {"currentTime": ocpp_timestamp(), "interval": interval, "status": "Accepted"}
        if action == "Heartbeat":
            return {"currentTime": ocpp_timestamp()}
        return {}

    return answer


@dataclass
class Frame:
    at: float
    connection: int
    text: str | bytes


class RawCsms:
    """A WebSocket CSMS on 127.0.0.1 that answers the station's CALLs through `responder`,
    records every frame, and can send anything, be killed and come back on the same port."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder = responder or default_responder()
        self.port = 0
        self.connections: list[ServerConnection] = []
        self.connected_at: list[float] = []
        self.close_codes: dict[int, int | None] = {}
        self.frames: list[Frame] = []  # from the station
        self.calls: dict[str, int] = defaultdict(int)  # CALLs from the station, per action
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._server: Server | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> RawCsms:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            self.port,
            subprotocols=[Subprotocol("ocpp2.0.1")],
            compression=None,
            ping_interval=None,
            max_size=None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def kill(self) -> None:
        """As if the CSMS process died: connections reset, no close frame, nothing listens."""
        for ws in self.connections:
            ws.transport.abort()
        await self._close_server()

    async def stop(self) -> None:
        await self._close_server()

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def current(self) -> ServerConnection:
        return self.connections[-1]

    async def send(self, frame: str | bytes) -> None:
        await self.current.send(frame)

    async def call(self, action: str, payload: Any, timeout: float = 10.0) -> list[Any]:
        """Send a CALL to the station; its reply frame (CALLRESULT or CALLERROR) as a list."""
        message_id = str(uuid.uuid4())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        try:
            await self.send(json.dumps([2, message_id, action, payload]))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(message_id, None)

    def replies(self, connection: int | None = None) -> list[list[Any]]:
        """The station's CALLRESULT/CALLERROR frames (answers to what the CSMS sent)."""
        out = []
        for frame in self.frames:
            if connection is not None and frame.connection != connection:
                continue
            try:
                message = json.loads(frame.text)
            except ValueError:
                continue
            if isinstance(message, list) and message and message[0] in (3, 4):
                out.append(message)
        return out

    def actions(self, connection: int | None = None) -> list[str]:
        out = []
        for frame in self.frames:
            if connection is not None and frame.connection != connection:
                continue
            with contextlib.suppress(ValueError):
                message = json.loads(frame.text)
                if isinstance(message, list) and len(message) == 4 and message[0] == 2:
                    out.append(str(message[2]))
        return out

    async def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._changed.wait()

    async def wait_connections(self, count: int, timeout: float = 10.0) -> None:
        await self.wait(lambda: len(self.connections) >= count, timeout, f"{count} connections")

    async def wait_calls(self, action: str, count: int = 1, timeout: float = 10.0) -> None:
        await self.wait(lambda: self.calls[action] >= count, timeout, f"{count}× {action}")

    async def _handler(self, ws: ServerConnection) -> None:
        index = len(self.connections)
        self.connections.append(ws)
        self.connected_at.append(time.monotonic())
        self._changed.set()
        try:
            async for frame in ws:
                self.frames.append(Frame(time.monotonic(), index, frame))
                self._changed.set()
                try:
                    message = json.loads(frame)
                except ValueError:
                    continue
                if not isinstance(message, list) or len(message) < 3:
                    continue
                if message[0] == 2 and len(message) == 4:
                    action = str(message[2])
                    seen = self.calls[action]
                    self.calls[action] += 1
                    payload = self.responder(action, message[3], seen)
                    if payload is not None:
                        await ws.send(json.dumps([3, message[1], payload]))
                elif message[0] in (3, 4):
                    future = self._pending.get(str(message[1]))
                    if future is not None and not future.done():
                        future.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_codes[index] = ws.close_code
            self._changed.set()


# --- small things

_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.MULTILINE)
# paho/aiomqtt, when the broker vanishes: paho asks asyncio to watch a socket it has just closed
# (aiomqtt's add_writer callback). asyncio logs it with a traceback; the bridge carries on.
KNOWN_NOISE = ("ERROR asyncio: Exception in callback BaseSelectorEventLoop.add_writer(",)


def log_records(log: str) -> list[str]:
    """The log split into records (a record runs until the next timestamped line)."""
    starts = [m.start() for m in _RECORD.finditer(log)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    return [log[a:b] for a, b in zip(starts, [*starts[1:], len(log)], strict=True)]


def tracebacks(log: str) -> list[str]:
    """Log records with a traceback, except the known asyncio/paho noise."""
    return [
        record
        for record in log_records(log)
        if "Traceback" in record and not any(noise in record for noise in KNOWN_NOISE)
    ]


def fast_backoff(message_timeout: int | None = None) -> str:
    """`[device_model]` lines: OCPP back-off of 1 s, doubled twice, no random part."""
    lines = (
        '"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1\n'
        '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
        '"OCPPCommCtrlr.RetryBackOffRepeatTimes" = 2\n'
    )
    if message_timeout is not None:
        lines += f'"OCPPCommCtrlr.MessageTimeout[Default]" = {message_timeout}\n'
    return lines
