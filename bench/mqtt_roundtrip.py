"""OEM → bridge → OEM over MQTT: round-trip latency, pipelined throughput and RSS.

Measured against a bare MQTT echo through the same Mosquitto in the same run, so the figures
say what the bridge adds on top of the broker and the MQTT client library:

    python bench/mqtt_roundtrip.py [--requests N] [--pipelined M]

One run starts, in this order, each as its own process:

1. Mosquitto on a free loopback port with `set_tcp_nodelay true`, as our deploy config has it.
2. The echo (this file with `--echo`): aiomqtt, subscribes to cs/josev, republishes every payload
   unchanged on josev/cs at QoS 1, one task per message, at most 64 at once, TCP_NODELAY on its
   socket: the bridge's MQTT transport minus everything the bridge does with a message.
3. The same echo without TCP_NODELAY on the echo or the measuring client (the Nagle trap), briefly.
4. The bridge, `python -m bridge run --config FILE`, exactly as users run it, without a CSMS.
5. The echo of 2. again: the two echo runs bracket the bridge's, so drift of a noisy machine shows.

Only one of them listens on cs/josev at a time. The measuring client (this process, aiomqtt,
TCP_NODELAY) sends the same GetVariables `ocpp_message` request for five variables (561 bytes):

- sequential: publish one request at QoS 1 with a fresh id, wait for the answer with that id;
  N of them after a warm-up of 200; p50/p90/p99/mean;
- pipelined: M requests published as fast as possible with at most 200 unanswered at a time;
  requests/s from the first publish to the last answer.

Every answer is checked (the bridge's must be a CallResult with five Accepted results). Results
go to stdout as one table with the targets; a missed target does not change the exit status.
Every process started here is stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from _common import (
    GET_VARIABLES,
    ROOT,
    VARIABLES,
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
    mosquitto_binary,
    num,
    rss_mb,
    run_benchmark,
    start_mosquitto,
    step,
    tail,
    verdict,
    version,
    wait_port,
)

REQUEST_TOPIC, RESPONSE_TOPIC = "cs/josev", "josev/cs"
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
WARM_UP = 200
WINDOW = 200  # unanswered requests at most, pipelined
NAGLE_REQUESTS = 100
# The echo mirrors bridge/transport/mqtt.py: MAX_IN_FLIGHT handlers, MAX_QUEUED messages queued.
ECHO_IN_FLIGHT, ECHO_QUEUED = 64, 1000
ANSWER_TIMEOUT = 10.0  # s without any answer before the missing ones count as failures

# The project's performance targets (docs/BENCHMARKS.md).
TARGET_RATIO = 1.3  # bridge p50 / echo p50
TARGET_RATE = 2000.0  # requests/s, pipelined
TARGET_P50_MS = 2.0
TARGET_RSS_MB = 50.0

# The example InstallCertificate (a CSMS root): the first certificate operation loads cryptography
CERTIFICATE_REQUEST = ROOT / "tests/examples/ocpp_message/request.InstallCertificate.json"


def request(message_id: str) -> bytes:
    """The GetVariables `ocpp_message` request the OEM firmware sends."""
    return json.dumps(
        {
            "id": message_id,
            "name": "ocpp_message",
            "type": "request",
            "data": {
                "ocpp_version": "ocpp2.0.1",
                "message_name": "GetVariables",
                "payload": GET_VARIABLES,
            },
        },
        separators=(",", ":"),
    ).encode()


def echo_answer_ok(body: dict[str, Any]) -> bool:
    return body.get("type") == "request" and body["data"]["message_name"] == "GetVariables"


def bridge_answer_ok(body: dict[str, Any]) -> bool:
    data = body.get("data") or {}
    if body.get("type") != "response" or data.get("message_type") != "CallResult":
        return False
    results = data["payload"]["getVariableResult"]
    return len(results) == len(VARIABLES) and all(
        r.get("attributeStatus") == "Accepted" for r in results
    )


# --- the echo (a child process of this script) --------------------------------------------------


async def echo(port: int, nodelay: bool) -> None:
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"echo-{uuid.uuid4().hex[:8]}",
        max_queued_incoming_messages=ECHO_QUEUED,
        socket_options=NODELAY if nodelay else [],
    )
    slots = asyncio.Semaphore(ECHO_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def forward(payload: bytes) -> None:
        try:
            await client.publish(RESPONSE_TOPIC, payload, qos=1)
        finally:
            slots.release()

    async with client:
        await client.subscribe(REQUEST_TOPIC, qos=1)
        async for message in client.messages:
            if isinstance(message.payload, bytes | bytearray):
                await slots.acquire()
                task = asyncio.create_task(forward(bytes(message.payload)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)


# --- the measuring client (the OEM's side) ------------------------------------------------------


@dataclass
class Pipelined:
    requests: int
    seconds: float
    failures: int
    latencies_ms: list[float]
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return (self.requests - self.failures) / self.seconds


@dataclass
class Oem:
    """Publishes requests on cs/josev and matches answers on josev/cs by id."""

    client: aiomqtt.Client
    check: Callable[[dict[str, Any]], bool] = echo_answer_ok
    pending: dict[str, float] = field(default_factory=dict)  # id -> perf_counter() at publish
    latencies: list[float] = field(default_factory=list)
    failures: int = 0  # answers that are wrong
    unexpected: int = 0  # answers nobody waits for
    _wake: asyncio.Future[None] | None = None

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """paho's callback for each answer, in place of aiomqtt's message queue.

        aiomqtt's `async for message in client.messages` costs a Task and an asyncio.wait per
        message; this does a json.loads and a dict lookup, so that the pipelined test measures
        the server, not this client.
        """
        body = json.loads(message.payload)
        sent = self.pending.pop(body.get("id"), None)
        if sent is None:
            self.unexpected += 1
            return
        self.latencies.append(time.perf_counter() - sent)
        if not self.check(body):
            self.failures += 1
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _until_fewer_pending(self, limit: int) -> None:
        """Wait until fewer than `limit` answers are missing; a timeout drops the missing ones."""
        loop = asyncio.get_running_loop()
        while len(self.pending) >= limit:
            self._wake = loop.create_future()
            try:
                await asyncio.wait_for(self._wake, ANSWER_TIMEOUT)
            except TimeoutError:
                self.failures += len(self.pending)
                self.pending.clear()

    def _reset(self) -> None:
        self.latencies.clear()
        self.failures = 0

    async def sequential(self, n: int) -> Sequential:
        self._reset()
        for _ in range(n):
            message_id = str(uuid.uuid4())
            payload = request(message_id)
            self.pending[message_id] = time.perf_counter()
            await self.client.publish(REQUEST_TOPIC, payload, qos=1)
            await self._until_fewer_pending(1)
        return Sequential([s * 1000 for s in self.latencies], self.failures)

    async def pipelined(self, m: int, window: int = WINDOW) -> Pipelined:
        self._reset()
        requests = [(i, request(i)) for i in (str(uuid.uuid4()) for _ in range(m))]
        # paho's non-blocking publish under aiomqtt: aiomqtt's publish() would wait for each
        # PUBACK, and one task per request would cost this client more than the echo costs.
        publish = self.client._client.publish
        pending, perf_counter = self.pending, time.perf_counter
        cpu0, start = time.process_time(), perf_counter()
        for message_id, payload in requests:
            if len(pending) >= window:
                await self._until_fewer_pending(window)
            pending[message_id] = perf_counter()
            info = publish(REQUEST_TOPIC, payload, qos=1)
            if info.rc != 0:
                raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        await self._until_fewer_pending(1)
        seconds = perf_counter() - start
        return Pipelined(
            m,
            seconds,
            self.failures,
            [s * 1000 for s in self.latencies],
            time.process_time() - cpu0,
        )

    async def wait_until_answered(
        self, server: subprocess.Popen[bytes], seconds: float = 60.0
    ) -> None:
        """Send a request every 0.2 s until one is answered (the server is subscribed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"process {server.pid} exited with status {server.returncode}")
            message_id = str(uuid.uuid4())
            self.pending[message_id] = time.perf_counter()
            self._wake = loop.create_future()
            await self.client.publish(REQUEST_TOPIC, request(message_id), qos=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake, 0.2)
            if message_id not in self.pending:
                await asyncio.sleep(0.2)  # answers to earlier probes may still come
                self.pending.clear()
                self.unexpected = 0
                return
        raise RuntimeError(f"no answer on {RESPONSE_TOPIC} within {seconds:.0f} s")


@contextlib.asynccontextmanager
async def oem(port: int, nodelay: bool = True) -> AsyncIterator[Oem]:
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"oem-{uuid.uuid4().hex[:8]}",
        # No limit: paho's default (20) queues pipelined publishes, and any limit costs a scan
        # of all unacknowledged messages per PUBACK.
        max_inflight_messages=0,
        socket_options=NODELAY if nodelay else [],
    )
    o = Oem(client)
    client._client.on_message = o.on_message
    async with client:
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        yield o


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Column:
    sequential: Sequential | None = None
    pipelined: Pipelined | None = None
    cpu_per_request_us: float = math.nan  # server CPU per pipelined request
    cpu_share: float = math.nan  # server CPU time / pipelined wall time
    rss_start_mb: float = math.nan  # after the first answer
    rss_mb: float = math.nan  # after the runs
    hwm_mb: float = math.nan


@dataclass
class Results:
    echo: Column = field(default_factory=Column)
    bridge: Column = field(default_factory=Column)
    echo_after: Column = field(default_factory=Column)  # the echo again, to see the drift
    nagle: Sequential | None = None
    bridge_log: list[str] = field(default_factory=list)
    rss_after_certificate_mb: float = math.nan  # the bridge, after one InstallCertificate


async def measure(
    column: Column,
    port: int,
    server: subprocess.Popen[bytes],
    n: int,
    m: int,
    check: Callable[[dict[str, Any]], bool],
) -> None:
    async with oem(port) as o:
        o.check = check
        await o.wait_until_answered(server)
        pid = server.pid
        column.rss_start_mb = rss_mb(pid)[0]
        await o.sequential(WARM_UP)
        column.sequential = await o.sequential(n)
        cpu0 = cpu_seconds(pid)
        column.pipelined = await o.pipelined(m)
        cpu = cpu_seconds(pid) - cpu0
        column.cpu_per_request_us = cpu / m * 1e6
        column.cpu_share = cpu / column.pipelined.seconds
        column.rss_mb, column.hwm_mb = rss_mb(pid)
        if o.unexpected:
            print(f"  ({o.unexpected} unexpected answers)", file=sys.stderr)


async def rss_after_certificate(port: int, server: subprocess.Popen[bytes]) -> float:
    """The bridge's RSS after its first certificate operation (not a target: the measured runs
    have none, and `cryptography` is only imported for certificates)."""
    body = json.loads(CERTIFICATE_REQUEST.read_text())
    body["id"] = str(uuid.uuid4())
    async with oem(port) as o:
        o.check = lambda answer: answer["data"].get("payload", {}).get("status") == "Accepted"
        o.pending[body["id"]] = time.perf_counter()
        await o.client.publish(REQUEST_TOPIC, json.dumps(body), qos=1)
        await o._until_fewer_pending(1)
        if o.failures:
            raise RuntimeError("the bridge did not accept the example InstallCertificate")
    return rss_mb(server.pid)[0]


async def run(args: argparse.Namespace, processes: Processes, directory: Path) -> Results:
    results = Results()
    port = free_port()
    start_mosquitto(processes, directory, port)
    wait_port(port)

    def start_echo(nodelay: bool) -> subprocess.Popen[bytes]:
        argv = [sys.executable, __file__, "--echo", str(port)]
        return processes.start(argv + ([] if nodelay else ["--stock"]), directory / "echo.log")

    step("baseline: bare aiomqtt echo, TCP_NODELAY")
    echo_process = start_echo(nodelay=True)
    await measure(results.echo, port, echo_process, args.requests, args.pipelined, echo_answer_ok)
    processes.stop(echo_process)

    step(f"Nagle trap: the same echo, no TCP_NODELAY on client and echo, {NAGLE_REQUESTS} requests")
    echo_process = start_echo(nodelay=False)
    async with oem(port, nodelay=False) as o:
        await o.wait_until_answered(echo_process)
        await o.sequential(10)
        results.nagle = await o.sequential(NAGLE_REQUESTS)
    processes.stop(echo_process)

    step("bridge: python -m bridge run")
    config = bridge_config(directory, port)
    log = directory / "bridge.log"
    bridge = processes.start([sys.executable, "-m", "bridge", "run", "--config", str(config)], log)
    try:
        await measure(results.bridge, port, bridge, args.requests, args.pipelined, bridge_answer_ok)
        results.rss_after_certificate_mb = await rss_after_certificate(port, bridge)
    except Exception:
        print(f"--- bridge log ---\n{tail(log)}", file=sys.stderr)
        raise
    processes.stop(bridge)
    results.bridge_log = log_lines(log)

    step("baseline again: the echo, TCP_NODELAY")
    echo_process = start_echo(nodelay=True)
    await measure(
        results.echo_after, port, echo_process, args.requests, args.pipelined, echo_answer_ok
    )
    processes.stop(echo_process)
    return results


# --- report -------------------------------------------------------------------------------------


def header() -> list[str]:
    return header_lines(
        "MQTT round trip: OEM -> cs/josev -> server -> josev/cs -> OEM (QoS 1)",
        f"mosquitto   {version([mosquitto_binary(), '-h'])}, set_tcp_nodelay true",
        f"aiomqtt     {importlib.metadata.version('aiomqtt')}, "
        f"paho-mqtt {importlib.metadata.version('paho-mqtt')}",
        f"bridge      ocpp-bridge {importlib.metadata.version('ocpp-bridge')}, "
        f"git {git_revision()}",
    )


def column_rows(c: Column) -> list[tuple[str, str]]:
    """(label, value) of one server's column."""
    rows: list[tuple[str, str]] = []
    seq, pipe = c.sequential, c.pipelined
    for name in ("p50", "p90", "p99", "mean"):
        rows.append((f"sequential {name} ms", num(seq.stat(name), 3) if seq else "-"))
    rows.append(("sequential failures", str(seq.failures) if seq else "-"))
    rows += [
        ("pipelined requests/s", num(pipe.rate, 0) if pipe else "-"),
        (
            f"pipelined p50 ms ({WINDOW} in flight)",
            num(Sequential(pipe.latencies_ms, 0).stat("p50"), 1) if pipe else "-",
        ),
        ("pipelined failures", str(pipe.failures) if pipe else "-"),
        ("server CPU µs/request (pipelined)", num(c.cpu_per_request_us, 0)),
        ("server CPU % of pipelined time", num(c.cpu_share * 100, 0)),
        (
            "client CPU % of pipelined time",
            num(pipe.client_cpu_s / pipe.seconds * 100, 0) if pipe else "-",
        ),
        ("server RSS MB after first answer", num(c.rss_start_mb, 1)),
        ("server RSS MB after the runs (peak)", f"{num(c.rss_mb, 1)} ({num(c.hwm_mb, 1)})"),
    ]
    return rows


def table(results: Results, args: argparse.Namespace) -> list[str]:
    columns = [
        ("echo (before)", results.echo),
        ("bridge", results.bridge),
        ("echo (after)", results.echo_after),
    ]
    size = len(request(str(uuid.uuid4())))
    lines = [
        "",
        f"request: GetVariables, {len(VARIABLES)} variables, {size} bytes; "
        f"sequential {args.requests} after {WARM_UP} warm-up; "
        f"pipelined {args.pipelined}, window {WINDOW}",
        "",
        *column_table(
            [title for title, _ in columns], [column_rows(c) for _, c in columns], 36, 16
        ),
    ]

    if results.nagle:
        nagle = results.nagle
        lines += [
            "",
            f"Nagle trap: echo, no TCP_NODELAY on client and echo, {NAGLE_REQUESTS} sequential",
            f"  p50 {num(nagle.stat('p50'), 2)} ms, p90 {num(nagle.stat('p90'), 2)} ms, "
            f"mean {num(nagle.stat('mean'), 2)} ms, {nagle.failures} failures",
        ]

    lines += [
        "",
        "bridge RSS MB after the runs and one InstallCertificate (imports cryptography; "
        f"not a target): {num(results.rss_after_certificate_mb, 1)}",
    ]

    lines += bridge_log_report(results.bridge_log)

    b = results.bridge
    # The baseline: both echo runs' round trips together (they bracket the bridge's in time).
    echo_ms = [
        ms
        for c in (results.echo, results.echo_after)
        if c.sequential
        for ms in c.sequential.latencies_ms
    ]
    echo_p50 = Sequential(echo_ms, 0).stat("p50")
    b_p50 = b.sequential.stat("p50") if b.sequential else math.nan
    ratio = b_p50 / echo_p50
    b_rate = b.pipelined.rate if b.pipelined else math.nan
    bad = (b.sequential.failures if b.sequential else 0) + (
        b.pipelined.failures if b.pipelined else 0
    )

    lines += [
        "",
        "targets (bridge)",
        f"  {verdict(ratio <= TARGET_RATIO)}  median round trip <= {TARGET_RATIO}x bare echo"
        f"        {num(ratio, 2)}x (echo p50 of both runs {num(echo_p50, 3)} ms)",
        f"  {verdict(b_rate >= TARGET_RATE)}  pipelined >= {TARGET_RATE:,.0f} requests/s"
        f"              {num(b_rate, 0)}/s",
        f"  {verdict(b_p50 < TARGET_P50_MS)}  QoS-1 median < {TARGET_P50_MS:g} ms"
        f"                       {num(b_p50, 3)} ms",
        f"  {verdict(b.rss_mb <= TARGET_RSS_MB)}  RSS <= {TARGET_RSS_MB:g} MB"
        f"                             {num(b.rss_mb, 1)} MB",
        f"  {verdict(bad == 0)}  every answer a CallResult with {len(VARIABLES)} Accepted"
        f"    {bad} failures",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, metavar="N", help="sequential")
    parser.add_argument("--pipelined", type=int, default=10000, metavar="M", help="pipelined")
    parser.add_argument("--echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--stock", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.echo:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(echo(args.echo, nodelay=not args.stock))
        return 0

    return run_benchmark(
        header,
        "mqtt-bench-",
        lambda processes, directory: asyncio.run(run(args, processes, directory)),
        lambda results: table(results, args),
    )


if __name__ == "__main__":
    sys.exit(main())
