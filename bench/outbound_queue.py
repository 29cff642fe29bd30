"""The outbound queue: drain rate after a (re)connection, and memory with a full queue.

Measured against a bare `ocpp`-library charge point sending the same messages to the same CSMS in
the same run, so the drain rate says what the bridge's durable queue costs compared with a
station that keeps nothing:

    python bench/outbound_queue.py [--messages N] [--queued M]

(Not `queue.py`: this folder is sys.path[0] of the scripts run from it, so a `queue.py` here
would hide the standard library's `queue`, which asyncio.to_thread and logging.handlers import.)

The CSMS lives in this process: a lean OCPP-J server written directly on websockets (json.loads
of every frame, the answer sent at once: BootNotification Accepted with a heartbeat interval of
an hour, `{}` to the rest; no validation, no logging, no compression), so the CSMS is not the
bottleneck; its CPU per message is printed beside the stations'. It notes the time it sends the
BootNotification's Accepted answer and the time each SecurityEventNotification arrives, with its
messageId and techInfo (which carries the message's number).

One run starts, in this order, each station as its own process connected to the same CSMS:

1. Mosquitto on a free loopback port with `set_tcp_nodelay true` (the bridge's MQTT side is
   connected, no OEM answers; `[oem] startup_timeout = 0`, so the bridge goes to the CSMS at
   once instead of waiting 10 s for a device model).
2. **bare (before)**: a bare `ocpp`-library station (`ocpp.v201.ChargePoint` on a websockets
   client with its defaults, the library's schema validation on) boots, then sends N
   SecurityEventNotifications one CALL at a time, awaiting each answer.
3. **bridge**: its store is filled first, by this process, before the bridge starts: N
   SecurityEventNotificationRequests (each checked against the schema with `bridge.schemas`)
   put with `bridge.station.message_queue.MessageQueue.put` — the code path the station's own
   messages take, messageId and row included — all in one `store.transaction()`, with origin
   `oem:bench-<i>` as a message the OEM forwarded while the CSMS was down. Then
   `python -m bridge run --config FILE`, exactly as users run it: it connects, boots, and drains
   the queue (one CALL at a time, the drain task being the only sender).
4. **bare (after)**: the bare station again; the two bare runs bracket the bridge's in time.

For each: messages per second from the BootNotification Accepted being sent to the N-th
SecurityEventNotification received (at the CSMS), the station's user+system CPU per message over
the same span (`/proc/<pid>/stat`, all threads, read by the CSMS at both instants) and the
CSMS's (`time.process_time()` of this process), and RSS at the end. Checked at the CSMS: every
message arrived in order (techInfo numbers 1..N), each messageId once, none before the boot was
accepted, and for the bridge the messageIds are exactly the ones queued, in the queue's order.
After the bridge stops, its queue must be empty. The baseline rate is both bare runs together
(2N messages over their two spans).

Memory: the bridge with M messages queued (filled as above) and the CSMS unreachable (a loopback
port nothing listens on), so nothing drains, against the same bridge with an empty queue: each
started on its own store, RSS (and VmHWM, RssAnon, RssFile; /proc/<pid>/status) read 3 s after
its first failed connection attempt, then stopped; the full queue must still hold M rows.

Results go to stdout with the targets (PASS/MISS); a missed target does not change the exit
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    STATION_ID,
    OcppServer,
    Processes,
    bridge_config,
    bridge_log_report,
    column_table,
    cpu_seconds,
    free_port,
    git_revision,
    header_lines,
    log_lines,
    memory_mb,
    now_ocpp,
    num,
    run_benchmark,
    start_mosquitto,
    step,
    tail,
    verdict,
    wait_port,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

ACTION = "SecurityEventNotification"
EVENT_TYPE = "SettingSystemTime"
TECH_INFO = "bench/outbound_queue.py message {} of {}"
HEARTBEAT_INTERVAL = 3600  # s, in the BootNotification answer: no heartbeats during the runs
MEMORY_SETTLE = 3.0  # s after the first failed connection attempt before RSS is read
ATTEMPT_FAILED = "CSMS connection attempt failed"  # the bridge's log line (bridge.csms_link)

TARGET_RATIO = 0.8  # bridge drain rate / bare-library rate
TARGET_GROWTH_MB = 5.0  # RSS with the full queue - RSS with an empty one

# The baseline station is its own small script, run as `python FILE URL STATION_ID N`, so its
# process imports what such a station imports and nothing of this benchmark.
BARE_STATION = f'''"""A bare ocpp-library station: boot, then N SecurityEventNotifications."""

import asyncio
import datetime
import sys

from ocpp.v201 import ChargePoint, call
from websockets.asyncio.client import connect


async def main(url, station_id, n):
    async with connect(url + "/" + station_id, subprotocols=["ocpp2.0.1"]) as ws:
        station = ChargePoint(station_id, ws)
        reader = asyncio.create_task(station.start())
        await station.call(
            call.BootNotification(
                charging_station={{"model": "AC22", "vendor_name": "Acme"}}, reason="PowerUp"
            )
        )
        now = datetime.datetime.now(datetime.UTC)
        timestamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{{now.microsecond // 1000:03d}}Z"
        for i in range(1, n + 1):
            await station.call(
                call.SecurityEventNotification(
                    type={EVENT_TYPE!r}, timestamp=timestamp, tech_info={TECH_INFO!r}.format(i, n)
                )
            )
        await reader


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
'''


def security_event(i: int, n: int, timestamp: str) -> dict[str, Any]:
    """The i-th SecurityEventNotificationRequest of n (the bare station builds the same)."""
    return {"type": EVENT_TYPE, "timestamp": timestamp, "techInfo": TECH_INFO.format(i, n)}


# --- the CSMS (in this process) -----------------------------------------------------------------


@dataclass
class Drain:
    """What the CSMS saw of one station: its boot, and every SecurityEventNotification."""

    expected: int
    pid: int = 0
    accepted_at: float = math.nan  # perf_counter when the Accepted answer was sent
    last_at: float = math.nan  # perf_counter when the expected-th message arrived
    station_cpu: list[float] = field(default_factory=list)  # at accepted_at, at last_at
    csms_cpu: list[float] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    tech_infos: list[str] = field(default_factory=list)
    before_boot: int = 0  # SecurityEventNotifications before the boot was accepted
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def mark(self) -> None:
        self.station_cpu.append(cpu_seconds(self.pid) if self.pid else math.nan)
        self.csms_cpu.append(time.process_time())

    @property
    def seconds(self) -> float:
        return self.last_at - self.accepted_at

    @property
    def rate(self) -> float:
        return len(self.message_ids) / self.seconds if self.done.is_set() else math.nan

    def cpu_us(self, which: list[float]) -> float:
        return (which[1] - which[0]) / self.expected * 1e6 if len(which) == 2 else math.nan

    def in_order(self, queued: list[str] | None = None) -> bool:
        """Numbers 1..expected in order, each messageId once (the queued ones, in order)."""
        n = self.expected
        numbers = [TECH_INFO.format(i, n) for i in range(1, n + 1)]
        unique = len(set(self.message_ids)) == len(self.message_ids)
        ids = queued is None or self.message_ids == queued
        return self.tech_infos == numbers and unique and ids and self.before_boot == 0


class CountingCsms(OcppServer):
    """OCPP-J by hand on websockets: answers every CALL at once and notes the drains."""

    def __init__(self) -> None:
        super().__init__()
        self.drains: dict[str, Drain] = {}

    def expect(self, station_id: str, n: int) -> Drain:
        drain = self.drains[station_id] = Drain(n)
        return drain

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        drain = self.drains.get(ws.request.path.rpartition("/")[2])
        try:
            async for frame in ws:
                message = json.loads(frame)
                if message[0] != 2:
                    continue
                message_id, action = message[1], message[2]
                if action == ACTION:
                    await ws.send(f"[3,{json.dumps(message_id)},{{}}]")
                    if drain is not None and ours(message[3]):
                        self._received(drain, message_id, message[3])
                elif action == "BootNotification":
                    answer = {
                        "currentTime": now_ocpp(),
                        "interval": HEARTBEAT_INTERVAL,
                        "status": "Accepted",
                    }
                    if drain is not None and math.isnan(drain.accepted_at):
                        drain.mark()
                        drain.accepted_at = time.perf_counter()
                    await ws.send(json.dumps([3, message_id, answer], separators=(",", ":")))
                else:
                    payload = {"currentTime": now_ocpp()} if action == "Heartbeat" else {}
                    await ws.send(json.dumps([3, message_id, payload], separators=(",", ":")))
        except ConnectionClosed:
            pass

    @staticmethod
    def _received(drain: Drain, message_id: str, payload: dict[str, Any]) -> None:
        if math.isnan(drain.accepted_at):
            drain.before_boot += 1
        drain.message_ids.append(message_id)
        drain.tech_infos.append(payload.get("techInfo", ""))
        if len(drain.message_ids) == drain.expected:
            drain.last_at = time.perf_counter()
            drain.mark()
            drain.done.set()


# --- the bridge's store -------------------------------------------------------------------------


def fill_queue(store_path: Path, n: int, max_queued: int) -> tuple[list[str], float]:
    """Put n SecurityEventNotifications in the store's queue through MessageQueue.put, in one
    store transaction: their messageIds in the queue's order, and the seconds it took."""
    from bridge import schemas, versions
    from bridge.station.device_model import DeviceModel
    from bridge.station.message_queue import MessageQueue, Outgoing
    from bridge.store import Store

    timestamp = now_ocpp()
    payloads = [security_event(i, n, timestamp) for i in range(1, n + 1)]
    validate = schemas.ocpp_validator(versions.OCPP201, ACTION)
    invalid = [p for p in payloads if validate(p)]
    if invalid:
        raise SystemExit(f"{len(invalid)} payloads are not valid {ACTION}Requests: {invalid[0]}")
    store_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(store_path)
    try:
        queue = MessageQueue(store, DeviceModel.build([1], store), max_queued)
        message_ids: list[str] = []
        start = time.perf_counter()
        with store.transaction():
            for i, payload in enumerate(payloads, start=1):
                message = queue.put(ACTION, payload, f"oem:bench-{i}")
                if not isinstance(message, Outgoing) or not message.durable:
                    raise SystemExit(f"MessageQueue.put did not queue {ACTION} durably: {message}")
                message_ids.append(message.message_id)
        seconds = time.perf_counter() - start
        if queue.backlog != n:
            raise SystemExit(f"the queue holds {queue.backlog} messages, not {n}")
    finally:
        store.close()
    return message_ids, seconds


def ours(payload: dict[str, Any]) -> bool:
    """One of the bench's messages (not a security event of the bridge's own, such as its
    StartupOfTheDevice at every start)."""
    return str(payload.get("techInfo", "")).startswith(TECH_INFO.split("{", 1)[0])


def queued_rows(store_path: Path) -> int:
    """The bench's messages still in the bridge's queue."""
    from bridge.store import Store

    store = Store(store_path)
    try:
        (n,) = store.execute(
            "SELECT count(*) FROM outbound_message WHERE json_extract(payload, '$.techInfo') "
            "LIKE ?",
            (TECH_INFO.split("{", 1)[0] + "%",),
        ).fetchone()
        return int(n)
    finally:
        store.close()


def config_file(directory: Path, mqtt_port: int, csms_url: str, max_queued: int) -> Path:
    """_common.bridge_config (which already has `[oem] startup_timeout = 0`), with
    `[storage] max_queued`."""
    config = bridge_config(directory, mqtt_port, csms_url)
    text = config.read_text().replace("[storage]\n", f"[storage]\nmax_queued = {max_queued}\n")
    config.write_text(text)
    return config


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Column:
    title: str
    drain: Drain | None = None
    queued_ids: list[str] | None = None  # the bridge: the messageIds it was given
    rss_mb: float = math.nan  # at the end of the drain
    hwm_mb: float = math.nan
    rows_left: int | None = None  # the bridge: rows in its queue after it stopped
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.drain is not None
            and self.drain.done.is_set()
            and (self.drain.in_order(self.queued_ids))
        )


async def wait_drained(drain: Drain, process: subprocess.Popen[bytes], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not drain.done.is_set():
        if process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with status {process.returncode}")
        if loop.time() > deadline:
            raise RuntimeError(
                f"the CSMS received {len(drain.message_ids)} of {drain.expected} messages "
                f"within {timeout:.0f} s"
            )
        try:
            async with asyncio.timeout(0.2):
                await drain.done.wait()
        except TimeoutError:
            pass


async def measure_drain(
    column: Column,
    csms: CountingCsms,
    processes: Processes,
    argv: list[str],
    station_id: str,
    log: Path,
    n: int,
) -> None:
    drain = csms.expect(station_id, n)
    process = processes.start(argv, log)
    drain.pid = process.pid
    try:
        await wait_drained(drain, process, 60 + n / 100)
        column.drain = drain
        memory = memory_mb(process.pid)
        column.rss_mb, column.hwm_mb = memory["VmRSS"], memory["VmHWM"]
    except Exception:
        print(f"--- {column.title} log ---\n{tail(log)}", file=sys.stderr)
        raise
    finally:
        await processes.stop_async(process)
        column.log = log_lines(log)


@dataclass
class Idle:
    """The bridge with the CSMS unreachable: RSS with its queue as filled."""

    title: str
    queued: int
    start_to_attempt_s: float = math.nan  # process start → first failed connection attempt
    memory: dict[str, float] = field(default_factory=dict)
    rows_left: int = -1
    store_mb: float = math.nan


async def measure_idle(idle: Idle, processes: Processes, argv: list[str], directory: Path) -> None:
    log = directory / "bridge.log"
    start = time.perf_counter()
    process = processes.start(argv, log)
    try:
        deadline = start + 60
        while not log.exists() or ATTEMPT_FAILED not in log.read_text(errors="replace"):
            if process.poll() is not None:
                raise RuntimeError(f"the bridge exited with status {process.returncode}")
            if time.perf_counter() > deadline:
                raise RuntimeError("the bridge made no CSMS connection attempt within 60 s")
            await asyncio.sleep(0.02)
        idle.start_to_attempt_s = time.perf_counter() - start
        await asyncio.sleep(MEMORY_SETTLE)
        idle.memory = memory_mb(process.pid)
    except Exception:
        print(f"--- {idle.title} log ---\n{tail(log)}", file=sys.stderr)
        raise
    finally:
        await processes.stop_async(process)
    database = directory / "bridge.db"
    idle.store_mb = database.stat().st_size / 1e6
    idle.rows_left = queued_rows(database)


@dataclass
class Results:
    columns: list[Column]
    fill_seconds: float
    frame_bytes: int
    idle: list[Idle]


async def run(args: argparse.Namespace, processes: Processes, directory: Path) -> Results:
    n, queued = args.messages, args.queued
    max_queued = max(100_000, n, queued)
    mqtt_port = free_port()
    start_mosquitto(processes, directory, mqtt_port)
    wait_port(mqtt_port)
    bare_script = directory / "bare_station.py"
    bare_script.write_text(BARE_STATION)
    bridge_argv = [sys.executable, "-m", "bridge", "run", "--config"]

    bare, bridge, bare_after = Column("bare (before)"), Column("bridge"), Column("bare (after)")
    async with CountingCsms() as csms:
        bare_argv = [sys.executable, str(bare_script), csms.url]

        step(f"baseline: bare ocpp-library charge point, {n:,} messages")
        await measure_drain(
            bare,
            csms,
            processes,
            [*bare_argv, "BARE1", str(n)],
            "BARE1",
            directory / "bare1.log",
            n,
        )

        step(f"bridge: {n:,} messages queued through MessageQueue.put, then python -m bridge run")
        drain_dir = directory / "drain"
        config = config_file(drain_dir, mqtt_port, csms.url, max_queued)
        bridge.queued_ids, fill_seconds = fill_queue(drain_dir / "bridge.db", n, max_queued)
        await measure_drain(
            bridge,
            csms,
            processes,
            [*bridge_argv, str(config)],
            STATION_ID,
            drain_dir / "bridge.log",
            n,
        )
        bridge.rows_left = queued_rows(drain_dir / "bridge.db")

        step(f"baseline again: bare ocpp-library charge point, {n:,} messages")
        await measure_drain(
            bare_after,
            csms,
            processes,
            [*bare_argv, "BARE2", str(n)],
            "BARE2",
            directory / "bare2.log",
            n,
        )

    unreachable = f"ws://127.0.0.1:{free_port()}/ocpp"  # nothing listens there
    idles = [Idle("empty queue", 0), Idle(f"{queued:,} queued", queued)]
    for idle in idles:
        step(f"memory: the bridge with {idle.title}, CSMS unreachable")
        idle_dir = directory / ("idle-full" if idle.queued else "idle-empty")
        config = config_file(idle_dir, mqtt_port, unreachable, max_queued)
        if idle.queued:
            fill_queue(idle_dir / "bridge.db", idle.queued, max_queued)
        await measure_idle(idle, processes, [*bridge_argv, str(config)], idle_dir)

    frame = json.dumps([2, "0" * 36, ACTION, security_event(n, n, now_ocpp())])
    return Results([bare, bridge, bare_after], fill_seconds, len(frame), idles)


# --- report -------------------------------------------------------------------------------------


def header() -> list[str]:
    v = importlib.metadata.version
    return header_lines(
        "Outbound queue: drain after a (re)connection, and memory with a full queue",
        f"libraries   ocpp {v('ocpp')}, websockets {v('websockets')}, jsonschema "
        f"{v('jsonschema')}, jsonschema-rs {v('jsonschema-rs')}",
        f"bridge      ocpp-bridge {v('ocpp-bridge')}, git {git_revision()}",
        "csms        lean OCPP-J on websockets, in this process (answers at once; no validation,"
        " no compression)",
        "mqtt        private mosquitto, set_tcp_nodelay true (bridge connected, no OEM;"
        " [oem] startup_timeout = 0)",
    )


def column_rows(c: Column) -> list[tuple[str, str]]:
    d = c.drain
    left = "-" if c.rows_left is None else f"{c.rows_left:,}"
    return [
        ("messages received", f"{len(d.message_ids):,}" if d else "-"),
        ("in order, each messageId once", ("yes" if c.ok else "NO") if d else "-"),
        ("received before the boot was accepted", str(d.before_boot) if d else "-"),
        ("boot accepted -> last received, s", num(d.seconds, 3) if d else "-"),
        ("messages/s", num(d.rate, 0) if d else "-"),
        ("station CPU µs/message", num(d.cpu_us(d.station_cpu), 0) if d else "-"),
        ("CSMS CPU µs/message", num(d.cpu_us(d.csms_cpu), 0) if d else "-"),
        ("station RSS MB at the end (peak)", f"{num(c.rss_mb, 1)} ({num(c.hwm_mb, 1)})"),
        ("rows left in the queue after stop", left),
    ]


def report(results: Results, args: argparse.Namespace) -> list[str]:
    columns = results.columns
    n = args.messages
    lines = [
        "",
        f"drain: {n:,} {ACTION}s ({results.frame_bytes} bytes a CALL), one CALL at a time, "
        "timed at the CSMS from its BootNotification Accepted to the last one received",
        f"bridge's queue: filled before its start with MessageQueue.put (origin oem:bench-<i>) in "
        f"one store transaction, {num(results.fill_seconds, 2)} s",
        "",
        *column_table([c.title for c in columns], [column_rows(c) for c in columns], 40, 15),
    ]

    empty, full = results.idle
    lines += [
        "",
        f"memory: CSMS unreachable (nothing drains), read {MEMORY_SETTLE:g} s after the first "
        "failed connection attempt",
        "",
        f"{'':40}{empty.title:>18}{full.title:>18}",
    ]
    for label, key in (
        ("VmRSS MB", "VmRSS"),
        ("VmHWM MB (peak)", "VmHWM"),
        ("RssAnon MB", "RssAnon"),
        ("RssFile MB", "RssFile"),
    ):
        lines.append(
            f"{label:40}{num(empty.memory.get(key, math.nan), 1):>18}"
            f"{num(full.memory.get(key, math.nan), 1):>18}"
        )
    lines += [
        f"{'start -> first connection attempt, s':40}{num(empty.start_to_attempt_s, 2):>18}"
        f"{num(full.start_to_attempt_s, 2):>18}",
        f"{'store file MB':40}{num(empty.store_mb, 2):>18}{num(full.store_mb, 2):>18}",
        f"{'rows in the queue after stop':40}{empty.rows_left:>18,}{full.rows_left:>18,}",
    ]

    bridge = columns[1]
    lines += bridge_log_report(bridge.log)
    lines.append(
        f"bare stations' output: {sum(len(c.log) for c in (columns[0], columns[2]))} lines"
    )

    bares = [c.drain for c in (columns[0], columns[2]) if c.drain and c.drain.done.is_set()]
    bare_rate = (
        sum(len(d.message_ids) for d in bares) / sum(d.seconds for d in bares)
        if bares
        else math.nan
    )
    bridge_rate = bridge.drain.rate if bridge.drain else math.nan
    ratio = bridge_rate / bare_rate
    full_rss, empty_rss = full.memory.get("VmRSS", math.nan), empty.memory.get("VmRSS", math.nan)
    growth = full_rss - empty_rss
    in_order = bridge.ok and bridge.rows_left == 0
    targets = [
        (
            ratio >= TARGET_RATIO,
            f"drain rate >= {TARGET_RATIO}x bare library",
            f"{num(ratio, 2)}x ({num(bridge_rate, 0)}/s vs {num(bare_rate, 0)}/s, both bare runs)",
        ),
        (
            in_order,
            "in order, each messageId once, queue emptied",
            f"{'yes' if bridge.ok else 'no'}, {bridge.rows_left} rows left after stop "
            f"(every column in order: {'yes' if all(c.ok for c in columns) else 'no'})",
        ),
        (
            growth < TARGET_GROWTH_MB and full.rows_left == full.queued,
            f"RSS growth with {full.queued:,} queued < {TARGET_GROWTH_MB:g} MB",
            f"{growth:+.1f} MB ({num(full_rss, 1)} vs {num(empty_rss, 1)} MB; "
            f"{full.rows_left:,} rows kept)",
        ),
    ]
    lines += ["", "targets (bridge)"]
    lines += [f"  {verdict(ok)}  {label:<48} {value}" for ok, label, value in targets]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=10_000, metavar="N", help="drained (default 10,000)"
    )
    parser.add_argument(
        "--queued",
        type=int,
        default=100_000,
        metavar="M",
        help="held for the RSS (default 100,000)",
    )
    args = parser.parse_args()
    if args.messages < 1 or args.queued < 1:
        parser.error("--messages and --queued must be at least 1")

    return run_benchmark(
        header,
        "queue-bench-",
        lambda processes, directory: asyncio.run(run(args, processes, directory)),
        lambda results: report(results, args),
    )


if __name__ == "__main__":
    sys.exit(main())
