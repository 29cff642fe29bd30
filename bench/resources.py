"""Memory and CPU of the bridge at idle and after 100,000 requests, beside a bare process.

The bare process is measured in the same run: it imports every module the bridge has loaded at
idle (except the bridge's own) and holds the same two connections, so `bridge / bare` is what the
bridge's own code, data and habits cost on top of its dependencies:

    python bench/resources.py [--requests N] [--idle-seconds S]

One run starts, in this order, each as its own process:

1. Mosquitto on a free loopback port with `set_tcp_nodelay true`, as our deploy config has it, and
   the demo CSMS (`python -m bridge.demo_csms --interval 10`: BootNotification answers with a
   heartbeat interval of 10 s).
2. probe: the bridge exactly as `python -m bridge run --config FILE` runs it (through `runpy`, in
   a small `python -c` wrapper), until it is booted plus 3 s; it writes its `sys.modules` and
   stops. That list is what the bridge has imported at idle.
3. bare: this file with `--bare`: imports every module of that list except `bridge.*`, then holds
   the same connections as the bridge: an aiomqtt client (the bridge's client options:
   clean_session=False, keepalive 30 s, TCP_NODELAY) subscribed to a topic at QoS 1 and
   iterating its messages, and a websockets client (subprotocol ocpp2.0.1, the bridge's ping
   interval of 30 s, no compression) that sends a BootNotification and then a Heartbeat every
   interval the CSMS gave.
4. bridge: `python -m bridge run --config FILE`, exactly as users run it (temp TOML, [csms] url
   of the demo CSMS, [mqtt] of the broker, the store in a temp dir).

Both booted, 5 s to settle, then RSS of both, then S seconds (default 60) of idle with only
heartbeats: user+system CPU of both from /proc/<pid>/stat as % of one core (in 10 ms clock
ticks; the threads' schedstat run time beside it, to the ns), and the CALLs each sent in that
window as the CSMS logged them. The bare process is stopped.

Then the OEM's side (this process; paho's non-blocking publish under aiomqtt and its on_message
callback, TCP_NODELAY, at most 200 requests unanswered) sends `ocpp_message` requests: 5,000 as
warm-up, then N (default 100,000) in ten steps, each drained before RSS is read. Every 20
requests: 15 GetVariables (5 variables), 1 SetVariables of TxCtrlr.EVConnectionTimeOut (121
and 120 in turn; each a durable SQLite write), 1 GetInstalledCertificateIds, 3 invalid (cycling:
a required field missing, a wrong type, a bad enum value, an extra property, an unknown action).
Every answer is checked. RSS growth is RSS after all N minus RSS after the warm-up.

Results go to stdout with the targets (PASS/MISS); a missed target does not change the exit
status. Every process started here is stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

# Only modules the bridge itself imports at the top: the bare process (this file with --bare)
# must not carry much that the bridge does not. aiomqtt, paho and websockets are imported where
# they are used (they are in the bridge's list anyway), and so is _common (the helpers shared by
# the benchmarks): the bare process does not load it.
if TYPE_CHECKING:
    import aiomqtt
    import paho.mqtt.client as paho
    from _common import Processes

BARE_ID = "BARE001"  # the bare process's station id (the bridge's: _common.STATION_ID)
REQUEST_TOPIC, RESPONSE_TOPIC = "cs/josev", "josev/cs"
BARE_TOPIC = "bench/bare"  # the bare process's subscription (nobody publishes there)
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
HEARTBEAT_INTERVAL = 10  # s, given by the demo CSMS in its BootNotification answer
SETTLE = 5.0  # s after both are booted before RSS is read
PROBE_SETTLE = 3.0  # s after the probe is booted before it lists its modules
WARM_UP = 5000
STEPS = 10  # RSS is read after each tenth of the requests
WINDOW = 200  # unanswered requests at most
ANSWER_TIMEOUT = 10.0  # s without any answer before the missing ones count as failures
STATUS_FILE = "ocpp-bridge.status.json"  # bridge.health.FILE_NAME, next to the store

# The project's performance targets (docs/BENCHMARKS.md).
TARGET_RSS_RATIO = 1.2  # bridge RSS at idle / bare RSS at idle
TARGET_GROWTH_MB = 5.0  # RSS after N requests - RSS after the warm-up
TARGET_IDLE_CPU = 1.0  # % of one core over the idle window

VARIABLES = [
    ("OCPPCommCtrlr", "OfflineThreshold"),
    ("OCPPCommCtrlr", "HeartbeatInterval"),
    ("AuthCtrlr", "LocalAuthorizeOffline"),
    ("TxCtrlr", "TxStartPoint"),
    ("TxCtrlr", "EVConnectionTimeOut"),
]

# The probe: `python -m bridge run --config FILE` (runpy, as -m does) plus a thread that waits
# until the bridge's status file says booted and connected, writes sys.modules, and stops it.
PROBE = r"""
import json, os, runpy, signal, sys, threading, time
config, status, out, settle = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

def watch():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(status) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        if state.get("csms", {}).get("boot") == "Accepted" and (
            state.get("mqtt", {}).get("state") == "connected"
        ):
            break
        time.sleep(0.1)
    time.sleep(settle)
    with open(out, "w") as f:
        f.write("\n".join(list(sys.modules.copy())))
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.argv = ["bridge", "run", "--config", config]
runpy.run_module("bridge", run_name="__main__", alter_sys=True)
"""


# --- the requests -------------------------------------------------------------------------------


def _data(payload: Any) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    return data if isinstance(data, dict) else {}


def _result(body: dict[str, Any]) -> dict[str, Any]:
    data = _data(body)
    if body.get("type") != "response" or data.get("message_type") != "CallResult":
        return {}
    payload = data.get("payload")
    return payload if isinstance(payload, dict) else {}


def _error_code(body: dict[str, Any]) -> str | None:
    data = _data(body)
    if body.get("type") != "response" or data.get("message_type") != "CallError":
        return None
    return str(data.get("error_code"))


def _get_variables_ok(body: dict[str, Any]) -> bool:
    results = _result(body).get("getVariableResult") or []
    return len(results) == len(VARIABLES) and all(
        r.get("attributeStatus") == "Accepted" for r in results
    )


def _set_variables_ok(body: dict[str, Any]) -> bool:
    results = _result(body).get("setVariableResult") or []
    return len(results) == 1 and results[0].get("attributeStatus") == "Accepted"


def _certificates_ok(body: dict[str, Any]) -> bool:
    return _result(body).get("status") == "NotFound"  # none installed


def _error(code: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: _error_code(body) == code


GET_VARIABLES = {
    "getVariableData": [
        {"component": {"name": component}, "variable": {"name": variable}}
        for component, variable in VARIABLES
    ]
}
Kind = tuple[str, str, dict[str, Any], Callable[[dict[str, Any]], bool]]  # + its check


def _set(value: str) -> Kind:
    data = {"component": {"name": "TxCtrlr"}, "variable": {"name": "EVConnectionTimeOut"}}
    payload = {"setVariableData": [{"attributeValue": value, **data}]}
    return "SetVariables", "SetVariables", payload, _set_variables_ok


GET: Kind = "GetVariables", "GetVariables", GET_VARIABLES, _get_variables_ok
SET = [_set("121"), _set("120")]  # back and forth, one per block
CERTIFICATES: Kind = (
    "GetInstalledCertificateIds",
    "GetInstalledCertificateIds",
    {"certificateType": ["CSMSRootCertificate"]},
    _certificates_ok,
)
# The invalid requests, used in turn.
INVALID: list[Kind] = [
    ("invalid: required missing", "GetVariables", {}, _error("OccurrenceConstraintViolation")),
    (
        "invalid: wrong type",
        "GetVariables",
        {"getVariableData": [{"component": {"name": "TxCtrlr"}, "variable": {"name": 5}}]},
        _error("TypeConstraintViolation"),
    ),
    (
        "invalid: bad enum",
        "GetVariables",
        {
            "getVariableData": [
                {
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": "EVConnectionTimeOut"},
                    "attributeType": "Bogus",
                }
            ]
        },
        _error("PropertyConstraintViolation"),
    ),
    (
        "invalid: extra property",
        "GetVariables",
        {**GET_VARIABLES, "extra": 1},
        _error("FormatViolation"),
    ),
    ("invalid: unknown action", "NoSuchAction", {}, _error("NotImplemented")),
]
BLOCK = 20  # requests per block of the mix
MIX = "15 GetVariables (5 variables), 1 SetVariables, 1 GetInstalledCertificateIds, 3 invalid"


@dataclass(frozen=True)
class Request:
    id: str
    kind: str
    body: bytes
    check: Callable[[dict[str, Any]], bool]


def request(n: int) -> Request:
    """The n-th request of the mix (0-based), with a fresh uuid."""
    slot = n % BLOCK
    if slot < 15:
        kind, action, payload, check = GET
    elif slot == 15:
        kind, action, payload, check = SET[n // BLOCK % 2]
    elif slot == 16:
        kind, action, payload, check = CERTIFICATES
    else:
        kind, action, payload, check = INVALID[(n // BLOCK * 3 + slot - 17) % len(INVALID)]
    message_id = str(uuid.uuid4())
    message = {
        "id": message_id,
        "name": "ocpp_message",
        "type": "request",
        "data": {"ocpp_version": "ocpp2.0.1", "message_name": action, "payload": payload},
    }
    return Request(message_id, kind, json.dumps(message, separators=(",", ":")).encode(), check)


# --- processes ----------------------------------------------------------------------------------


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RUNTIME_DIRECTORY", None)  # the bridge's status file goes next to its store
    return env


@dataclass(frozen=True)
class Memory:
    rss: float  # MB (10^6 bytes)
    hwm: float  # peak RSS
    anon: float  # RssAnon: the heap, what the process built
    file: float  # RssFile: mapped files (the interpreter, extension modules)


def memory(pid: int) -> Memory:
    from _common import memory_mb

    mb = memory_mb(pid)
    return Memory(mb["VmRSS"], mb["VmHWM"], mb["RssAnon"], mb["RssFile"])


def rss_by_mapping(pid: int) -> dict[str, float]:
    """RSS in MB by what is mapped: a file's path, [heap], [anonymous], [stack], ..."""
    sizes: dict[str, float] = defaultdict(float)
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if not parts[0].endswith(":"):  # a mapping: address perms offset dev inode [path]
            name = " ".join(parts[5:]) or "[anonymous]"
        elif parts[0] == "Rss:":
            sizes[name] += int(parts[1]) * 1024 / 1e6
    return sizes


def run_seconds(pid: int) -> float:
    """Time on a CPU so far of the process's live threads, to the nanosecond (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, seconds: float = 30.0
) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready within {seconds:.0f} s")
        time.sleep(0.1)


def booted(status: Path) -> Callable[[], bool]:
    def ready() -> bool:
        state = read_json(status)
        return bool(
            state.get("csms", {}).get("boot") == "Accepted"
            and state.get("mqtt", {}).get("state") == "connected"
        )

    return ready


CSMS_CALL = re.compile(r'^\S+ \S+ (\S+) → CSMS: \[2,"[^"]*","(\w+)"')


def csms_calls(log: Path) -> Counter[tuple[str, str]]:
    """CALLs received by the demo CSMS so far, by (station, action), from its log."""
    calls: Counter[tuple[str, str]] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        match = CSMS_CALL.match(line)
        if match:
            calls[(match[1], match[2])] += 1
    return calls


# --- the bare process (a child process of this script) -----------------------------------------


def own_module(name: str) -> bool:
    """Modules the bare process does not import: the bridge's own, and the script's entry."""
    return (
        name in ("__main__", "__mp_main__")
        or name == "bridge"
        or name.startswith(("bridge.", "__editable__"))
    )


def bare_main(port: int, url: str, modules_file: Path, ready_file: Path) -> None:
    """Import the bridge's modules, then hold the connections (see `bare`) until SIGTERM."""
    import importlib

    modules = modules_file.read_text().split()
    wanted = [m for m in modules if not own_module(m)]
    failed = []
    for name in wanted:
        try:
            importlib.import_module(name)
        except Exception:  # e.g. a module that exists only on another platform
            failed.append(name)

    def ready(boot: dict[str, Any]) -> None:
        known = set(modules)
        extra = sorted(m for m in sys.modules if m not in known)
        state = {"boot": boot.get("status"), "imported": len(wanted), "failed": failed}
        ready_file.write_text(json.dumps(state | {"extra": extra}))

    asyncio.run(bare(port, url, ready))


async def bare(port: int, url: str, ready: Callable[[dict[str, Any]], None]) -> None:
    """The two connections of the bridge and nothing else: MQTT subscribed, BootNotification and
    Heartbeats on the WebSocket. `ready` is called with the BootNotification answer."""
    import aiomqtt
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    # The bridge's MQTT client options (bridge/transport/mqtt.py).
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"bare-{uuid.uuid4().hex[:8]}",
        clean_session=False,
        keepalive=30,
        max_queued_incoming_messages=1000,
        socket_options=NODELAY,
    )

    async def drain() -> None:
        async for _ in client.messages:
            pass

    async def call(ws: Any, action: str, payload: dict[str, Any]) -> Any:
        message_id = str(uuid.uuid4())
        await ws.send(json.dumps([2, message_id, action, payload], separators=(",", ":")))
        while True:
            frame = json.loads(await ws.recv())
            if frame[0] == 2:  # a CALL from the CSMS: not implemented here
                await ws.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))
            elif frame[1] == message_id:
                return frame[2]

    async with client:
        await client.subscribe(BARE_TOPIC, qos=1)
        messages = asyncio.create_task(drain())
        # The bridge's WebSocket options (bridge/transport/csms.py; WebSocketPingInterval 30 s).
        async with connect(
            f"{url}/{BARE_ID}",
            subprotocols=[Subprotocol("ocpp2.0.1")],
            ping_interval=30,
            ping_timeout=30,
            open_timeout=30,
            close_timeout=5,
            max_size=256 * 1024,
            compression=None,
            proxy=None,
        ) as ws:
            boot = await call(
                ws,
                "BootNotification",
                {"chargingStation": {"model": "AC22", "vendorName": "Acme"}, "reason": "PowerUp"},
            )
            ready(boot)
            interval = max(1, int(boot.get("interval") or HEARTBEAT_INTERVAL))
            while True:
                await asyncio.sleep(interval)
                await call(ws, "Heartbeat", {})
        messages.cancel()


# --- the measuring client (the OEM's side) ------------------------------------------------------


@dataclass
class Oem:
    """Publishes requests on cs/josev and checks answers on josev/cs by id."""

    client: aiomqtt.Client
    pending: dict[str, Request] = field(default_factory=dict)
    answered: Counter[str] = field(default_factory=Counter)
    wrong: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    wrong_samples: list[str] = field(default_factory=list)
    unexpected: int = 0  # answers nobody waits for
    _wake: asyncio.Future[None] | None = None

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """paho's callback for each answer (no Task per message, unlike aiomqtt's queue)."""
        body = json.loads(message.payload)
        sent = self.pending.pop(body.get("id"), None)
        if sent is None:
            self.unexpected += 1
            return
        self.answered[sent.kind] += 1
        if not sent.check(body):
            self.wrong[sent.kind] += 1
            if len(self.wrong_samples) < 3:
                self.wrong_samples.append(f"{sent.kind}: {json.dumps(body.get('data'))[:300]}")
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
                for sent in self.pending.values():
                    self.missing[sent.kind] += 1
                self.pending.clear()

    async def pipelined(self, first: int, count: int) -> None:
        """Requests first..first+count-1 of the mix, at most WINDOW unanswered; drained after."""
        import aiomqtt

        # paho's non-blocking publish: aiomqtt's publish() would wait for each PUBACK.
        publish = self.client._client.publish
        pending = self.pending
        for n in range(first, first + count):
            if len(pending) >= WINDOW:
                await self._until_fewer_pending(WINDOW)
            sent = request(n)
            pending[sent.id] = sent
            info = publish(REQUEST_TOPIC, sent.body, qos=1)
            if info.rc != 0:
                raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        await self._until_fewer_pending(1)

    async def wait_until_answered(self, seconds: float = 30.0) -> None:
        """Send a GetVariables every 0.2 s until one is answered (the bridge is subscribed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            sent = request(0)
            message_id = sent.id
            self.pending[message_id] = sent
            self._wake = loop.create_future()
            await self.client.publish(REQUEST_TOPIC, sent.body, qos=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake, 0.2)
            if message_id not in self.pending:
                await asyncio.sleep(0.2)  # answers to earlier probes may still come
                self.pending.clear()
                self.answered.clear()
                self.wrong.clear()
                self.wrong_samples.clear()
                self.unexpected = 0
                return
        raise RuntimeError(f"no answer on {RESPONSE_TOPIC} within {seconds:.0f} s")


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Results:
    modules: list[str] = field(default_factory=list)  # the bridge's sys.modules at idle
    bare_ready: dict[str, Any] = field(default_factory=dict)
    bare_settled: Memory | None = None
    bridge_settled: Memory | None = None
    bare_maps: dict[str, float] = field(default_factory=dict)  # RSS by mapping, when settled
    bridge_maps: dict[str, float] = field(default_factory=dict)
    bare_after_idle: Memory | None = None
    bridge_after_idle: Memory | None = None
    idle_seconds: float = math.nan
    bare_idle_cpu: float = math.nan  # s, utime + stime
    bridge_idle_cpu: float = math.nan
    bare_idle_run: float = math.nan  # s, schedstat
    bridge_idle_run: float = math.nan
    idle_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    steps: list[tuple[int, Memory]] = field(default_factory=list)  # (requests so far, memory)
    requests_seconds: float = math.nan
    requests_cpu: float = math.nan  # bridge CPU s over the N requests
    answered: Counter[str] = field(default_factory=Counter)
    wrong: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    wrong_samples: list[str] = field(default_factory=list)
    unexpected: int = 0
    bridge_log: list[str] = field(default_factory=list)


async def drive(args: argparse.Namespace, port: int, pid: int, results: Results) -> None:
    import aiomqtt
    from _common import cpu_seconds, step

    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"oem-{uuid.uuid4().hex[:8]}",
        # No limit: paho's default (20) queues pipelined publishes.
        max_inflight_messages=0,
        socket_options=NODELAY,
    )
    oem = Oem(client)
    client._client.on_message = oem.on_message
    async with client:
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        await oem.wait_until_answered()
        step(f"warm-up: {WARM_UP:,} requests")
        await oem.pipelined(0, WARM_UP)
        results.steps.append((0, memory(pid)))
        done = 0
        cpu0, start = cpu_seconds(pid), time.perf_counter()
        for i in range(1, STEPS + 1):
            count = args.requests * i // STEPS - done
            await oem.pipelined(WARM_UP + done, count)
            done += count
            results.steps.append((done, memory(pid)))
            step(f"{done:,} requests, RSS {results.steps[-1][1].rss:.1f} MB")
        results.requests_seconds = time.perf_counter() - start
        results.requests_cpu = cpu_seconds(pid) - cpu0
    results.answered, results.wrong, results.missing = oem.answered, oem.wrong, oem.missing
    results.wrong_samples, results.unexpected = oem.wrong_samples, oem.unexpected


def run(args: argparse.Namespace, processes: Processes, directory: Path) -> Results:
    from _common import (
        bridge_config,
        cpu_seconds,
        free_port,
        log_lines,
        start_mosquitto,
        step,
        tail,
        wait_port,
    )

    results = Results()
    mqtt_port, csms_port = free_port(), free_port()
    step("Mosquitto and the demo CSMS")
    start_mosquitto(processes, directory, mqtt_port)
    csms_log = directory / "csms.log"
    csms = [sys.executable, "-m", "bridge.demo_csms", "--port", str(csms_port)]
    processes.start([*csms, "--interval", str(HEARTBEAT_INTERVAL)], csms_log)
    wait_port(mqtt_port)
    wait_port(csms_port)
    csms_url = f"ws://127.0.0.1:{csms_port}/ocpp"

    step("probe: the bridge's modules at idle")
    probe_dir = directory / "probe"
    probe_config = bridge_config(probe_dir, mqtt_port, csms_url)
    modules_file = directory / "modules.txt"
    probe = processes.start(
        [
            sys.executable,
            "-c",
            PROBE,
            str(probe_config),
            str(probe_dir / STATUS_FILE),
            str(modules_file),
            str(PROBE_SETTLE),
        ],
        probe_dir / "bridge.log",
    )
    try:
        probe.wait(60)
    except subprocess.TimeoutExpired:
        raise RuntimeError("the probe did not finish within 60 s") from None
    processes.stop(probe)
    if not modules_file.exists():
        raise RuntimeError(
            f"the probe wrote no module list:\n{(probe_dir / 'bridge.log').read_text()}"
        )
    results.modules = modules_file.read_text().split()

    step("bare process: the same modules and connections")
    bare_ready = directory / "bare.json"
    bare_process = processes.start(
        [
            sys.executable,
            __file__,
            "--bare",
            str(mqtt_port),
            csms_url,
            str(modules_file),
            str(bare_ready),
        ],
        directory / "bare.log",
    )
    wait_until(bare_ready.exists, bare_process, "bare process")
    results.bare_ready = read_json(bare_ready)

    step("bridge: python -m bridge run")
    bridge_dir = directory / "bridge"
    config = bridge_config(bridge_dir, mqtt_port, csms_url)
    log = bridge_dir / "bridge.log"
    bridge = processes.start([sys.executable, "-m", "bridge", "run", "--config", str(config)], log)
    try:
        wait_until(booted(bridge_dir / STATUS_FILE), bridge, "bridge")
        time.sleep(SETTLE)
        results.bare_settled = memory(bare_process.pid)
        results.bridge_settled = memory(bridge.pid)
        results.bare_maps = rss_by_mapping(bare_process.pid)
        results.bridge_maps = rss_by_mapping(bridge.pid)

        step(f"idle: {args.idle_seconds:g} s, heartbeats only")
        calls0 = csms_calls(csms_log)
        bare0, bridge0 = cpu_seconds(bare_process.pid), cpu_seconds(bridge.pid)
        bare_run0, bridge_run0 = run_seconds(bare_process.pid), run_seconds(bridge.pid)
        start = time.monotonic()
        time.sleep(args.idle_seconds)
        results.bare_idle_cpu = cpu_seconds(bare_process.pid) - bare0
        results.bridge_idle_cpu = cpu_seconds(bridge.pid) - bridge0
        results.bare_idle_run = run_seconds(bare_process.pid) - bare_run0
        results.bridge_idle_run = run_seconds(bridge.pid) - bridge_run0
        results.idle_seconds = time.monotonic() - start
        results.idle_calls = csms_calls(csms_log) - calls0
        results.bare_after_idle = memory(bare_process.pid)
        results.bridge_after_idle = memory(bridge.pid)
        processes.stop(bare_process)

        step(f"requests: {WARM_UP:,} warm-up, then {args.requests:,}")
        asyncio.run(drive(args, mqtt_port, bridge.pid, results))
    except Exception:
        print(f"--- bridge log ---\n{tail(log)}", file=sys.stderr)
        raise
    processes.stop(bridge)
    results.bridge_log = log_lines(log)
    return results


# --- report -------------------------------------------------------------------------------------


def header() -> list[str]:
    import importlib.metadata

    from _common import git_revision, header_lines, mosquitto_binary, version

    def v(name: str) -> str:
        return importlib.metadata.version(name)

    return header_lines(
        "Resources: the bridge at idle and after many requests, beside a bare process",
        f"mosquitto   {version([mosquitto_binary(), '-h'])}, set_tcp_nodelay true",
        f"libraries   aiomqtt {v('aiomqtt')}, paho-mqtt {v('paho-mqtt')}, "
        f"websockets {v('websockets')}, pydantic {v('pydantic')}, "
        f"jsonschema-rs {v('jsonschema_rs')}",
        f"bridge      ocpp-bridge {v('ocpp-bridge')}, git {git_revision()}",
    )


def module_summary(modules: list[str]) -> list[str]:
    imported = [m for m in modules if not own_module(m)]
    own = [m for m in modules if m == "bridge" or m.startswith("bridge.")]
    tops = {m.split(".")[0] for m in imported}
    third = sorted(
        t
        for t in tops
        if t not in sys.stdlib_module_names
        and not t.startswith("_")
        and t not in ("sitecustomize", "usercustomize")
    )
    third_count = sum(1 for m in imported if m.split(".")[0] in third)
    return [
        f"the bridge at idle had {len(modules)} modules in sys.modules: {len(own)} its own "
        f"(bridge.*), {len(imported)} others, the bare process imports those {len(imported)}:",
        f"  third-party ({third_count} modules): {', '.join(third)}",
        f"  standard library and interpreter start-up: {len(imported) - third_count} modules",
        "  'cryptography' is "
        + (
            "loaded"
            if "cryptography" in tops
            else "not loaded (the bridge imports it on first use)"
        ),
    ]


def memory_cells(m: Memory | None) -> tuple[str, str, str]:
    from _common import num

    if m is None:
        return "-", "-", "-"
    return num(m.rss, 1), f"{num(m.anon, 1)} / {num(m.file, 1)}", num(m.hwm, 1)


def report(results: Results, args: argparse.Namespace) -> list[str]:
    from _common import STATION_ID, bridge_log_report, num, verdict

    lines = ["", *module_summary(results.modules)]
    ready = results.bare_ready
    failed = ready.get("failed") or []
    extra = ready.get("extra") or []
    failed_text = f": {', '.join(failed)}" if failed else ""
    lines.append(
        f"  bare: {len(failed)} of them failed to import{failed_text};"
        f" {len(extra)} modules of its own not in the bridge's list"
        + (f" ({', '.join(extra[:12])}{', …' if len(extra) > 12 else ''})" if extra else "")
    )

    bare_idle = results.bare_idle_cpu / results.idle_seconds * 100
    bridge_idle = results.bridge_idle_cpu / results.idle_seconds * 100
    bare_calls = {a: n for (s, a), n in results.idle_calls.items() if s == BARE_ID}
    bridge_calls = {a: n for (s, a), n in results.idle_calls.items() if s == STATION_ID}

    def calls(c: dict[str, int]) -> str:
        return ", ".join(f"{n} {a}" for a, n in sorted(c.items())) or "none"

    table: list[tuple[str, str, str]] = [
        (
            f"RSS MB, {SETTLE:g} s after boot",
            memory_cells(results.bare_settled)[0],
            memory_cells(results.bridge_settled)[0],
        ),
        (
            "  anonymous / file-backed MB",
            memory_cells(results.bare_settled)[1],
            memory_cells(results.bridge_settled)[1],
        ),
        (
            "RSS MB after the idle window",
            memory_cells(results.bare_after_idle)[0],
            memory_cells(results.bridge_after_idle)[0],
        ),
        (
            f"CPU ms over {results.idle_seconds:.1f} s idle",
            num(results.bare_idle_cpu * 1000, 0),
            num(results.bridge_idle_cpu * 1000, 0),
        ),
        ("CPU % of one core, idle", num(bare_idle, 3), num(bridge_idle, 3)),
        (
            "  same from schedstat, ms",
            num(results.bare_idle_run * 1000, 1),
            num(results.bridge_idle_run * 1000, 1),
        ),
        ("CALLs sent in the idle window", calls(bare_calls), calls(bridge_calls)),
    ]
    lines += ["", f"{'':34}{'bare':>22}{'bridge':>22}"]
    lines += [f"{label:34}{a:>22}{b:>22}" for label, a, b in table]

    lines += ["", "RSS by mapping, bridge - bare, largest differences (MB, settled):"]
    names = set(results.bare_maps) | set(results.bridge_maps)
    differences = sorted(
        names,
        key=lambda n: abs(results.bridge_maps.get(n, 0.0) - results.bare_maps.get(n, 0.0)),
        reverse=True,
    )
    for name in differences[:8]:
        bare_mb, bridge_mb = results.bare_maps.get(name, 0.0), results.bridge_maps.get(name, 0.0)
        lines.append(
            f"  {bridge_mb - bare_mb:+6.1f}  {(Path(name).name or name)[:40]:40}"
            f" bare {bare_mb:5.1f}, bridge {bridge_mb:5.1f}"
        )

    lines += [
        "",
        f"requests: {WARM_UP:,} warm-up, then {args.requests:,}; every {BLOCK}: {MIX}; "
        f"pipelined, window {WINDOW}",
        "",
        f"{'bridge after':34}{'RSS MB':>12}{'anon MB':>12}{'VmHWM MB':>12}",
    ]
    for done, m in results.steps:
        label = f"warm-up ({WARM_UP:,})" if done == 0 else f"+ {done:,} requests"
        lines.append(f"{label:34}{num(m.rss, 1):>12}{num(m.anon, 1):>12}{num(m.hwm, 1):>12}")
    rate = args.requests / results.requests_seconds
    per_request = results.requests_cpu / args.requests * 1e6
    lines += [
        f"throughput {num(rate, 0)} requests/s, bridge CPU {num(per_request, 0)} µs/request "
        f"({num(results.requests_cpu / results.requests_seconds * 100, 0)} % of a core)",
    ]
    kinds = sorted(results.answered | results.missing)
    lines.append(
        f"answers (warm-up included, {results.answered.total():,}): "
        + ", ".join(
            f"{k} {results.answered[k]:,}"
            + (f" ({results.wrong[k]} wrong)" if results.wrong[k] else "")
            + (f" ({results.missing[k]} missing)" if results.missing[k] else "")
            for k in kinds
        )
    )
    lines += [f"  wrong: {sample}" for sample in results.wrong_samples]
    if results.unexpected:
        lines.append(f"  {results.unexpected} answers to no pending request")

    lines += bridge_log_report(results.bridge_log)

    bare_rss = results.bare_settled.rss if results.bare_settled else math.nan
    bridge_rss = results.bridge_settled.rss if results.bridge_settled else math.nan
    ratio = bridge_rss / bare_rss
    first, last = results.steps[0][1], results.steps[-1][1]
    growth = last.rss - first.rss
    failures = results.wrong.total() + results.missing.total()
    lines += [
        "",
        "targets (bridge)",
        f"  {verdict(ratio <= TARGET_RSS_RATIO)}  RSS idle <= {TARGET_RSS_RATIO}x bare"
        f"                      {num(ratio, 2)}x"
        f" ({num(bridge_rss, 1)} MB vs {num(bare_rss, 1)} MB)",
        f"  {verdict(growth < TARGET_GROWTH_MB)}  RSS growth over {args.requests:,} requests"
        f" < {TARGET_GROWTH_MB:g} MB  {growth:+.1f} MB ({num(first.rss, 1)} -> {num(last.rss, 1)};"
        f" VmHWM {num(last.hwm, 1)} MB)",
        f"  {verdict(bridge_idle < TARGET_IDLE_CPU)}  CPU at idle < {TARGET_IDLE_CPU:g} % of a core"
        f"                {num(bridge_idle, 3)} % (bare {num(bare_idle, 3)} %)",
        f"  {verdict(failures == 0)}  every answer as expected"
        f"                      {failures} failures",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, metavar="N")
    parser.add_argument("--idle-seconds", type=float, default=60.0, metavar="S")
    parser.add_argument("--bare", nargs=4, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.bare:
        port, url, modules, ready = args.bare
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, terminated)
            bare_main(int(port), url, Path(modules), Path(ready))
        return 0
    if args.requests < STEPS:
        parser.error(f"--requests must be at least {STEPS}")

    from _common import Processes, run_benchmark

    return run_benchmark(
        header,
        "resources-bench-",
        lambda processes, directory: run(args, processes, directory),
        lambda results: report(results, args),
        Processes(env=child_environment()),
    )


def terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C in the bare process (which does not import _common)."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
