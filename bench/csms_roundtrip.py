"""CSMS → station → CSMS: GetVariables round trip over OCPP-J, CPU per request and RSS.

Measured against a bare `ocpp`-library charge point connected to the same CSMS in the same run,
so the figures say what the bridge costs compared with the library it replaced:

    python bench/csms_roundtrip.py [--requests N] [--csms raw|demo]

The CSMS lives in this process: by default a small OCPP-J server written directly on websockets
(`raw`: json.loads of every frame, a dict lookup, a future; no validation, no logging), or with
`--csms demo` the ocpp-library CSMS of `bridge/demo_csms.py`, which validates every answer with
the library's jsonschema in a thread pool and so adds its own cost to every round trip. The
CSMS's CPU per request is printed beside the stations' so its share is visible. The raw CSMS
negotiates no WebSocket compression with anyone; the demo CSMS accepts permessage-deflate, which
the bare stations offer and the bridge does not.

One run starts, in this order, each station as its own process connected to the same CSMS:

1. Mosquitto on a free loopback port with `set_tcp_nodelay true` (the bridge's MQTT side is
   connected and idle, as on a charger).
2. **bare (before)**: a bare `ocpp`-library station (`ocpp.v201.ChargePoint` subclass with an
   `@on("GetVariables")` handler answering from a dict, websockets client with its defaults,
   subprotocol ocpp2.0.1, the library's schema validation on), after its BootNotification.
3. **bridge**: `python -m bridge run --config FILE`, exactly as users run it.
4. **bare (after)**: the bare station again; the two bare runs bracket the bridge's in time.
5. **floor**: a websockets station that answers from a dict with json.loads/json.dumps and
   nothing else: the cost of the CSMS, websockets and loopback that every station pays.

For each: wait until it answers, 200 warm-up calls, then N sequential GetVariables CALLs for five
variables (OCPP-J allows one outstanding CALL per direction, so calls/s is the sequential rate):
p50/p90/p99/mean in ms (nearest rank), calls/s, the station process's user+system CPU per request
(`/proc/<pid>/stat`, all threads) and the CSMS's (`time.process_time()` of this process) over the
N calls, and RSS. Every answer must be a CALLRESULT with five `Accepted` results carrying a value
for the variables asked; anything else, or no answer within 10 s, counts as a failure.

Results go to stdout as one table with the targets; a missed target does not change the exit
status. Every process started here is stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from _common import (
    GET_VARIABLES,
    STATION_ID,
    VARIABLES,
    OcppServer,
    Processes,
    Sequential,
    bridge_config,
    bridge_log_report,
    column_table,
    cpu_seconds,
    free_port,
    git_revision,
    header_lines,
    log_lines,
    now_ocpp,
    num,
    rss_mb,
    run_benchmark,
    start_mosquitto,
    step,
    tail,
    verdict,
    wait_port,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

WARM_UP = 200
ANSWER_TIMEOUT = 10.0  # s for one answer before it counts as a failure
SETTLE = 0.5  # s after the first answer, for the post-boot StatusNotifications
HEARTBEAT_INTERVAL = 3600  # s, in the BootNotification answer: no heartbeats during the runs

TARGET_RATIO = 0.5  # bridge p50 / bare-library p50
TARGET_CPU_US = 200.0  # station CPU per request, the bar we aim at

PAYLOAD_JSON = json.dumps(GET_VARIABLES, separators=(",", ":"))

# The bare stations answer with the values the bridge answers with (HeartbeatInterval as set by
# the BootNotification answer), so the frames on the wire have the same size.
VALUES = {
    "OCPPCommCtrlr.OfflineThreshold": "60",
    "OCPPCommCtrlr.HeartbeatInterval": str(HEARTBEAT_INTERVAL),
    "AuthCtrlr.LocalAuthorizeOffline": "true",
    "TxCtrlr.TxStartPoint": "Authorized,EVConnected",
    "TxCtrlr.EVConnectionTimeOut": "120",
}

# Each baseline station is its own small script, run as `python FILE URL STATION_ID`, so its
# process imports what such a station imports and nothing of this benchmark.
BARE_STATION = f'''"""A bare ocpp-library station: GetVariables from a dict, library defaults."""

import asyncio
import sys

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from websockets.asyncio.client import connect

VALUES = {VALUES!r}


class Station(ChargePoint):
    @on("GetVariables")
    def on_get_variables(self, get_variable_data, **kwargs):
        results = []
        for item in get_variable_data:
            key = item["component"]["name"] + "." + item["variable"]["name"]
            result = {{"component": item["component"], "variable": item["variable"]}}
            if key in VALUES:
                result.update(attribute_status="Accepted", attribute_value=VALUES[key])
            else:
                result.update(attribute_status="UnknownVariable")
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)


async def main(url, station_id):
    async with connect(url + "/" + station_id, subprotocols=["ocpp2.0.1"]) as ws:
        station = Station(station_id, ws)
        reader = asyncio.create_task(station.start())
        await station.call(
            call.BootNotification(
                charging_station={{"model": "AC22", "vendor_name": "Acme"}}, reason="PowerUp"
            )
        )
        await reader


asyncio.run(main(sys.argv[1], sys.argv[2]))
'''

FLOOR_STATION = f'''"""The floor: a websockets station, GetVariables from a dict, no validation."""

import asyncio
import json
import sys

from websockets.asyncio.client import connect

VALUES = {VALUES!r}
BOOT = {{"chargingStation": {{"model": "AC22", "vendorName": "Acme"}}, "reason": "PowerUp"}}


def get_variables(payload):
    results = []
    for item in payload["getVariableData"]:
        key = item["component"]["name"] + "." + item["variable"]["name"]
        result = {{"component": item["component"], "variable": item["variable"]}}
        if key in VALUES:
            result.update(attributeStatus="Accepted", attributeValue=VALUES[key])
        else:
            result.update(attributeStatus="UnknownVariable")
        results.append(result)
    return {{"getVariableResult": results}}


async def main(url, station_id):
    async with connect(url + "/" + station_id, subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(json.dumps([2, "boot-1", "BootNotification", BOOT]))
        async for frame in ws:
            message = json.loads(frame)
            if message[0] != 2:
                continue
            if message[2] == "GetVariables":
                answer = [3, message[1], get_variables(message[3])]
            else:
                answer = [4, message[1], "NotImplemented", "", {{}}]
            await ws.send(json.dumps(answer, separators=(",", ":")))


asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


def answer_ok(payload: Any) -> bool:
    """Five Accepted results with a value, for exactly the variables asked."""
    results = payload.get("getVariableResult") if isinstance(payload, dict) else None
    if not isinstance(results, list) or len(results) != len(VARIABLES):
        return False
    seen = set()
    for r in results:
        if r.get("attributeStatus") != "Accepted" or not isinstance(r.get("attributeValue"), str):
            return False
        seen.add((r["component"]["name"], r["variable"]["name"]))
    return seen == set(VARIABLES)


# --- the CSMS (in this process) -----------------------------------------------------------------


class CallErrorAnswer(Exception):
    pass


class Csms(Protocol):
    url: str

    async def get_variables(self, station_id: str) -> Any: ...
    async def wait_booted(self, station_id: str, timeout: float) -> None: ...
    def extensions(self, station_id: str) -> str: ...


class RawConnection:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.pending: dict[str, asyncio.Future[list[Any]]] = {}
        self.booted = asyncio.Event()

    def fail(self) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the station disconnected"))


class RawCsms(OcppServer):
    """OCPP-J by hand on websockets: answers the station's CALLs, sends GetVariables."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: dict[str, RawConnection] = {}
        self._changed = asyncio.Event()

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        station_id = ws.request.path.rpartition("/")[2]
        connection = RawConnection(ws)
        self.connections[station_id] = connection
        self._changed.set()
        try:
            async for frame in ws:
                message = json.loads(frame)
                if message[0] == 2:
                    await ws.send(self._answer(connection, message))
                elif message[0] in (3, 4):
                    future = connection.pending.pop(message[1], None)
                    if future is not None and not future.done():
                        future.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            connection.fail()
            if self.connections.get(station_id) is connection:
                del self.connections[station_id]

    def _answer(self, connection: RawConnection, message: list[Any]) -> str:
        action = message[2]
        payload: dict[str, Any] = {}
        if action == "BootNotification":
            payload = {
                "currentTime": now_ocpp(),
                "interval": HEARTBEAT_INTERVAL,
                "status": "Accepted",
            }
            connection.booted.set()
        elif action == "Heartbeat":
            payload = {"currentTime": now_ocpp()}
        return json.dumps([3, message[1], payload], separators=(",", ":"))

    async def wait_booted(self, station_id: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while station_id not in self.connections:
                self._changed.clear()
                await self._changed.wait()
            await self.connections[station_id].booted.wait()

    async def get_variables(self, station_id: str) -> Any:
        connection = self.connections[station_id]
        message_id = str(uuid.uuid4())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        connection.pending[message_id] = future
        try:
            await connection.ws.send(f'[2,"{message_id}","GetVariables",{PAYLOAD_JSON}]')
            async with asyncio.timeout(ANSWER_TIMEOUT):
                answer = await future
        finally:
            connection.pending.pop(message_id, None)
        if answer[0] == 4:
            raise CallErrorAnswer(f"{answer[2]}: {answer[3]}")
        return answer[2]

    def extensions(self, station_id: str) -> str:
        connection = self.connections.get(station_id)
        response = connection.ws.response if connection else None
        return (response.headers.get("Sec-WebSocket-Extensions") if response else None) or "none"


class DemoAdapter:
    """bridge.demo_csms.DemoCsms behind the same three calls."""

    def __init__(self) -> None:
        from bridge.demo_csms import DemoCsms

        self.csms = DemoCsms(heartbeat_interval=HEARTBEAT_INTERVAL)
        self.url = ""

    async def __aenter__(self) -> DemoAdapter:
        await self.csms.__aenter__()
        self.url = self.csms.url
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.csms.__aexit__(*exc)

    async def wait_booted(self, station_id: str, timeout: float) -> None:
        await self.csms.wait_for("BootNotification", station_id=station_id, timeout=timeout)

    async def get_variables(self, station_id: str) -> Any:
        from bridge.demo_csms import CallErrorReceived

        try:
            return await self.csms.call(station_id, "GetVariables", GET_VARIABLES, ANSWER_TIMEOUT)
        except CallErrorReceived as e:
            raise CallErrorAnswer(str(e)) from None

    def extensions(self, station_id: str) -> str:
        connection = self.csms.connected.get(station_id)
        response = connection.ws.response if connection else None
        return (response.headers.get("Sec-WebSocket-Extensions") if response else None) or "none"


# --- measuring ----------------------------------------------------------------------------------


async def sequential(csms: Csms, station_id: str, n: int) -> Sequential:
    latencies: list[float] = []
    failures = 0
    perf_counter = time.perf_counter
    start = perf_counter()
    for _ in range(n):
        t0 = perf_counter()
        try:
            payload = await csms.get_variables(station_id)
        except (TimeoutError, CallErrorAnswer, ConnectionError) as e:
            failures += 1
            print(f"  failure: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        latencies.append((perf_counter() - t0) * 1000)
        if not answer_ok(payload):
            failures += 1
    return Sequential(latencies, failures, perf_counter() - start)


@dataclass
class Column:
    title: str
    sequential: Sequential | None = None
    station_cpu_us: float = math.nan  # station CPU per request, sequential run
    csms_cpu_us: float = math.nan  # this process's CPU per request, sequential run
    rss_start_mb: float = math.nan  # after the first answer
    rss_mb: float = math.nan  # after the runs
    hwm_mb: float = math.nan
    extensions: str = "-"
    log: list[str] = field(default_factory=list)


async def wait_until_answered(
    csms: Csms, station_id: str, process: subprocess.Popen[bytes], seconds: float = 60.0
) -> None:
    """Until the station has booted and answers a GetVariables correctly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with status {process.returncode}")
        try:
            await csms.wait_booted(station_id, 0.2)
            if answer_ok(await csms.get_variables(station_id)):
                return
        except (TimeoutError, CallErrorAnswer, ConnectionError, KeyError):
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{station_id} did not answer a GetVariables within {seconds:.0f} s")


async def measure(
    column: Column,
    csms: Csms,
    station_id: str,
    process: subprocess.Popen[bytes],
    log: Path,
    n: int,
) -> None:
    try:
        await wait_until_answered(csms, station_id, process)
        pid = process.pid
        column.rss_start_mb = rss_mb(pid)[0]
        column.extensions = csms.extensions(station_id)
        await asyncio.sleep(SETTLE)
        await sequential(csms, station_id, WARM_UP)
        cpu0, csms_cpu0 = cpu_seconds(pid), time.process_time()
        column.sequential = await sequential(csms, station_id, n)
        column.csms_cpu_us = (time.process_time() - csms_cpu0) / n * 1e6
        column.station_cpu_us = (cpu_seconds(pid) - cpu0) / n * 1e6
        column.rss_mb, column.hwm_mb = rss_mb(pid)
    except Exception:
        print(f"--- {column.title} log ---\n{tail(log)}", file=sys.stderr)
        raise
    finally:
        column.log = log_lines(log)


@dataclass
class Results:
    columns: list[Column]
    csms: str


async def run(args: argparse.Namespace, processes: Processes, directory: Path) -> Results:
    mqtt_port = free_port()
    start_mosquitto(processes, directory, mqtt_port)
    wait_port(mqtt_port)
    bare_script, floor_script = directory / "bare_station.py", directory / "floor_station.py"
    bare_script.write_text(BARE_STATION)
    floor_script.write_text(FLOOR_STATION)

    bare, bridge = Column("bare (before)"), Column("bridge")
    bare_after, floor = Column("bare (after)"), Column("floor")
    csms_server: RawCsms | DemoAdapter = RawCsms() if args.csms == "raw" else DemoAdapter()
    async with csms_server as csms:

        async def station(column: Column, argv: list[str], station_id: str, log: Path) -> None:
            process = processes.start(argv, log)
            await measure(column, csms, station_id, process, log, args.requests)
            await processes.stop_async(process)

        step("baseline: bare ocpp-library charge point")
        bare_argv = [sys.executable, str(bare_script), csms.url]
        await station(bare, [*bare_argv, "BARE1"], "BARE1", directory / "bare1.log")

        step("bridge: python -m bridge run")
        config = bridge_config(directory, mqtt_port, csms.url)
        bridge_argv = [sys.executable, "-m", "bridge", "run", "--config", str(config)]
        await station(bridge, bridge_argv, STATION_ID, directory / "bridge.log")

        step("baseline again: bare ocpp-library charge point")
        await station(bare_after, [*bare_argv, "BARE2"], "BARE2", directory / "bare2.log")

        step("floor: websockets station, json only")
        floor_argv = [sys.executable, str(floor_script), csms.url, "FLOOR"]
        await station(floor, floor_argv, "FLOOR", directory / "floor.log")
    return Results([bare, bridge, bare_after, floor], args.csms)


# --- report -------------------------------------------------------------------------------------


def header(args: argparse.Namespace) -> list[str]:
    csms = {
        "raw": "raw OCPP-J on websockets, in this process (no validation, no compression)",
        "demo": "bridge.demo_csms.DemoCsms, in this process (ocpp-library validation)",
    }[args.csms]
    v = importlib.metadata.version
    return header_lines(
        "CSMS -> station -> CSMS: GetVariables round trip over OCPP-J (one WebSocket, sequential)",
        f"libraries   ocpp {v('ocpp')}, websockets {v('websockets')}, jsonschema "
        f"{v('jsonschema')}, jsonschema-rs {v('jsonschema-rs')}",
        f"bridge      ocpp-bridge {v('ocpp-bridge')}, git {git_revision()}",
        f"csms        {csms}",
        "mqtt        private mosquitto, set_tcp_nodelay true (bridge connected, idle)",
    )


def compression(extensions: str) -> str:
    return "deflate" if "permessage-deflate" in extensions else extensions.split(";")[0]


def column_rows(c: Column) -> list[tuple[str, str]]:
    seq = c.sequential
    rows = [
        (f"round trip {name} ms", num(seq.stat(name), 3) if seq else "-")
        for name in ("p50", "p90", "p99", "mean")
    ]
    rows += [
        ("calls/s (sequential)", num(seq.rate, 0) if seq else "-"),
        ("failures", str(seq.failures) if seq else "-"),
        ("station CPU µs/request", num(c.station_cpu_us, 0)),
        ("CSMS CPU µs/request", num(c.csms_cpu_us, 0)),
        ("station RSS MB after first answer", num(c.rss_start_mb, 1)),
        ("station RSS MB after the run (peak)", f"{num(c.rss_mb, 1)} ({num(c.hwm_mb, 1)})"),
        ("WebSocket compression", compression(c.extensions)),
    ]
    return rows


def table(results: Results, args: argparse.Namespace) -> list[str]:
    columns = results.columns
    frame = f'[2,"{uuid.uuid4()}","GetVariables",{PAYLOAD_JSON}]'
    lines = [
        "",
        f"request: GetVariables, {len(VARIABLES)} variables, {len(frame)} bytes; "
        f"{args.requests} sequential after {WARM_UP} warm-up, one connection",
        "",
        *column_table([c.title for c in columns], [column_rows(c) for c in columns], 38, 15),
    ]

    bare, bridge = columns[0], columns[1]
    lines += bridge_log_report(bridge.log)
    bare_lines = sum(len(c.log) for c in (bare, columns[2]))
    lines.append(f"bare stations' output: {bare_lines} lines")

    # The baseline: both bare runs' round trips together (they bracket the bridge's in time).
    bare_ms = [ms for c in (bare, columns[2]) if c.sequential for ms in c.sequential.latencies_ms]
    bare_p50 = Sequential(bare_ms, 0).stat("p50")
    b_p50 = bridge.sequential.stat("p50") if bridge.sequential else math.nan
    ratio = b_p50 / bare_p50
    bad = sum(c.sequential.failures if c.sequential else 0 for c in columns)
    b_bad = bridge.sequential.failures if bridge.sequential else 0

    lines += [
        "",
        "targets (bridge)",
        f"  {verdict(ratio <= TARGET_RATIO)}  median round trip <= {TARGET_RATIO}x bare library"
        f"   {num(ratio, 2)}x ({num(b_p50, 3)} ms vs {num(bare_p50, 3)} ms, both bare runs)",
        f"  {verdict(bridge.station_cpu_us <= TARGET_CPU_US)}  station CPU <= "
        f"{TARGET_CPU_US:g} µs/request               {num(bridge.station_cpu_us, 0)} µs",
        f"  {verdict(b_bad == 0)}  every answer 5 Accepted with values"
        f"             {b_bad} failures (all columns: {bad})",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, metavar="N", help="sequential")
    parser.add_argument(
        "--csms", choices=["raw", "demo"], default="raw", help="the CSMS side (default: raw)"
    )
    args = parser.parse_args()

    return run_benchmark(
        lambda: header(args),
        "csms-bench-",
        lambda processes, directory: asyncio.run(run(args, processes, directory)),
        lambda results: table(results, args),
    )


if __name__ == "__main__":
    sys.exit(main())
