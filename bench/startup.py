"""Process start → BootNotification at the CSMS: how long a (re)started station is silent.

Measured against a bare `ocpp`-library charge point script in the same run:

    python bench/startup.py [--runs R] [--imports K]

A CSMS in this process (websockets, OCPP-J by hand) timestamps, with `time.perf_counter()`, the
WebSocket upgrade request and the arrival of the BootNotification frame; the clock starts just
before `subprocess.Popen`. Each of R rounds starts, one after the other:

1. **bridge, first start**: `python -m bridge run --config FILE` on a fresh temp store.
2. **bridge, restart**: the same command on the store the first start left (after its boot was
   accepted and its StatusNotification sent, it was stopped with SIGTERM).
3. **bare library**: a script that imports `ocpp.v201` and websockets, connects (subprotocol
   ocpp2.0.1) and sends a BootNotification at once.
4. **python -c pass**: the interpreter's own start and exit, for scale.

One unmeasured start of the bridge and of the bare script comes first (page cache, bytecode).
The bridge's MQTT side points at a private Mosquitto started here (connected, idle), as on a
charger. Each process is stopped with SIGTERM after its boot; "SIGTERM → exit" is that stop.

Then where the bridge's start-up goes: `python -X importtime -c "import bridge.app"` K times
(median per module): the interpreter's own start (`site`), the import in total, the top 8
modules by cumulative and by self time; and, in one process, the phases after the import
(`load_settings`, `Bridge(settings)` on a fresh store).

Results go to stdout; a missed target prints MISS but does not change the exit status. Every
process started here is stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    STATION_ID,
    OcppServer,
    Processes,
    bridge_config,
    free_port,
    git_revision,
    header_lines,
    now_ocpp,
    run_benchmark,
    start_mosquitto,
    step,
    tail,
    verdict,
    wait_port,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

TARGET_S = 1.0  # process start → BootNotification
BOOT_TIMEOUT = 30.0
TOP = 8

BARE_STATION = '''"""A bare ocpp-library charge point that sends its BootNotification at once."""

import asyncio
import sys

from ocpp.v201 import ChargePoint, call
from websockets.asyncio.client import connect


async def main(url, station_id):
    async with connect(url + "/" + station_id, subprotocols=["ocpp2.0.1"]) as ws:
        station = ChargePoint(station_id, ws)
        reader = asyncio.create_task(station.start())
        await station.call(
            call.BootNotification(
                charging_station={"model": "AC22", "vendor_name": "Acme"}, reason="PowerUp"
            )
        )
        await reader


asyncio.run(main(sys.argv[1], sys.argv[2]))
'''

# The phases of the bridge's start after the interpreter is up, in one process (stdout: JSON).
PHASES = """
import json, sys, time
t0 = time.perf_counter()
import bridge.app
t1 = time.perf_counter()
from bridge.config import load_settings
settings = load_settings(sys.argv[1])
t2 = time.perf_counter()
b = bridge.app.Bridge(settings)
t3 = time.perf_counter()
b.store.close()
print(json.dumps({"import bridge.app": t1 - t0, "load_settings": t2 - t1,
                  "Bridge(settings), fresh store": t3 - t2}))
"""


# --- the CSMS (in this process) -----------------------------------------------------------------


@dataclass
class Arrival:
    """What the CSMS saw of one station process, as time.perf_counter() values."""

    upgrade: asyncio.Future[float]
    boot: asyncio.Future[float]
    status: asyncio.Future[float]  # the first StatusNotification (the bridge, after Accepted)


class Csms(OcppServer):
    """Answers BootNotification with Accepted and everything else with {}; timestamps arrivals."""

    def __init__(self) -> None:
        super().__init__()
        self.expected: dict[str, Arrival] = {}

    def expect(self, station_id: str) -> Arrival:
        loop = asyncio.get_running_loop()
        arrival = Arrival(loop.create_future(), loop.create_future(), loop.create_future())
        self.expected[station_id] = arrival
        return arrival

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        at = time.perf_counter()
        arrival = self.expected.get(request.path.rpartition("/")[2])
        if arrival is not None and not arrival.upgrade.done():
            arrival.upgrade.set_result(at)
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        arrival = self.expected.get(ws.request.path.rpartition("/")[2])
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                at = time.perf_counter()
                message = json.loads(frame)
                if message[0] != 2:
                    continue
                payload: dict[str, Any] = {}
                if message[2] == "BootNotification":
                    payload = {"currentTime": now_ocpp(), "interval": 3600, "status": "Accepted"}
                    if arrival is not None and not arrival.boot.done():
                        arrival.boot.set_result(at)
                elif message[2] == "StatusNotification":
                    if arrival is not None and not arrival.status.done():
                        arrival.status.set_result(at)
                elif message[2] == "Heartbeat":
                    payload = {"currentTime": now_ocpp()}
                await ws.send(json.dumps([3, message[1], payload]))


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Series:
    """One kind of start, all rounds: seconds from just before Popen."""

    title: str
    upgrade: list[float] = field(default_factory=list)
    boot: list[float] = field(default_factory=list)
    stop: list[float] = field(default_factory=list)  # SIGTERM → exit
    exit_codes: list[int] = field(default_factory=list)


async def start_once(
    processes: Processes,
    csms: Csms,
    argv: list[str],
    station_id: str,
    log: Path,
    series: Series | None,
    wait_status: bool,
) -> None:
    arrival = csms.expect(station_id)
    t0 = time.perf_counter()
    process = processes.start(argv, log)
    try:
        async with asyncio.timeout(BOOT_TIMEOUT):
            boot = await arrival.boot
            upgrade = await arrival.upgrade
            if wait_status:  # the bridge has taken in the Accepted before it is stopped
                await arrival.status
    except TimeoutError:
        print(f"--- {log.name} ---\n{tail(log)}", file=sys.stderr)
        raise RuntimeError(f"no BootNotification from {shlex.join(argv)}") from None
    await asyncio.sleep(0.1)
    t1 = time.perf_counter()
    await processes.stop_async(process)
    stopped = time.perf_counter() - t1
    if series is not None:
        series.boot.append(boot - t0)
        series.upgrade.append(upgrade - t0)
        series.stop.append(stopped)
        series.exit_codes.append(process.returncode)


def time_python_pass() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


@dataclass
class Results:
    first: Series
    restart: Series
    bare: Series
    python_pass: list[float]
    imports: ImportTimes | None = None
    bare_import_s: float = math.nan
    phases: dict[str, float] = field(default_factory=dict)


async def rounds(
    args: argparse.Namespace, processes: Processes, directory: Path, mqtt_port: int
) -> Results:
    results = Results(Series("bridge (first)"), Series("bridge (restart)"), Series("bare"), [])
    bare_script = directory / "bare_station.py"
    bare_script.write_text(BARE_STATION)
    async with Csms() as csms:
        bare_argv = [sys.executable, str(bare_script), csms.url, "BARE1"]

        def bridge_argv(config: Path) -> list[str]:
            return [sys.executable, "-m", "bridge", "run", "--config", str(config)]

        step("warm-up: one unmeasured start of each")
        config = bridge_config(directory / "warm-up", mqtt_port, csms.url)
        log = directory / "bridge.log"
        await start_once(processes, csms, bridge_argv(config), STATION_ID, log, None, True)
        await start_once(processes, csms, bare_argv, "BARE1", directory / "bare.log", None, False)
        for i in range(args.runs):
            step(f"round {i + 1} of {args.runs}")
            config = bridge_config(directory / f"round-{i}", mqtt_port, csms.url)
            argv = bridge_argv(config)
            await start_once(processes, csms, argv, STATION_ID, log, results.first, True)
            await start_once(processes, csms, argv, STATION_ID, log, results.restart, True)
            bare_log = directory / "bare.log"
            await start_once(processes, csms, bare_argv, "BARE1", bare_log, results.bare, False)
            results.python_pass.append(time_python_pass())
    return results


# --- import time --------------------------------------------------------------------------------


@dataclass
class ImportTimes:
    """Median over runs, in seconds, per module; `order` is importtime's (a module after its
    imports), `depth` 0 for a module imported by the statement or the interpreter itself."""

    runs: int
    order: list[str]
    self_s: dict[str, float]
    cumulative_s: dict[str, float]
    depth: dict[str, int]

    def statement_s(self) -> float:
        """Everything imported after the interpreter's start (`site`)."""
        after_site = self.order[self.order.index("site") + 1 :]
        return sum(self.cumulative_s[n] for n in after_site if self.depth[n] == 0)

    def tree(self) -> tuple[list[str], dict[str, str]]:
        """(modules in pre-order, each module's importer) from importtime's post-order."""
        pending: list[tuple[str, list[Any]]] = []
        for name in self.order:
            children: list[tuple[str, list[Any]]] = []
            while pending and self.depth[pending[-1][0]] > self.depth[name]:
                children.insert(0, pending.pop())
            pending.append((name, children))
        preorder: list[str] = []
        parent: dict[str, str] = {}
        stack = list(reversed(pending))
        while stack:
            name, children = stack.pop()
            preorder.append(name)
            for child in children:
                parent[child[0]] = name
            stack.extend(reversed(children))
        return preorder, parent

    def inside(self, module: str) -> list[str]:
        """The modules that `module`'s import imported."""
        end = self.order.index(module)
        start = end
        while start > 0 and self.depth[self.order[start - 1]] > 0:
            start -= 1
        return self.order[start:end]


def import_times(statement: str, runs: int) -> ImportTimes:
    samples: dict[str, list[tuple[int, int]]] = {}
    depth: dict[str, int] = {}
    line_re = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        seen: Counter[str] = Counter()
        for match in line_re.finditer(out):
            own, cumulative, indent, module = match.groups()
            # A module can be listed twice: `import a.b` first imports package a, which may
            # import a.b itself; the outer line then only waited for the package.
            seen[module] += 1
            name = module if seen[module] == 1 else f"{module} (outer)"
            samples.setdefault(name, []).append((int(own), int(cumulative)))
            depth.setdefault(name, (len(indent) - 1) // 2)
    return ImportTimes(
        runs,
        list(depth),
        {name: statistics.median(s[0] for s in v) / 1e6 for name, v in samples.items()},
        {name: statistics.median(s[1] for s in v) / 1e6 for name, v in samples.items()},
        depth,
    )


def phases(directory: Path, mqtt_port: int, runs: int) -> dict[str, float]:
    """Median seconds of each phase after the interpreter's start, `runs` processes."""
    samples: dict[str, list[float]] = {}
    for i in range(runs):
        config = bridge_config(directory / f"phases-{i}", mqtt_port, "ws://127.0.0.1:9/ocpp")
        out = subprocess.run(
            [sys.executable, "-c", PHASES, str(config)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for name, seconds in json.loads(out).items():
            samples.setdefault(name, []).append(seconds)
    return {name: statistics.median(v) for name, v in samples.items()}


# --- report -------------------------------------------------------------------------------------


def header() -> list[str]:
    v = importlib.metadata.version
    return header_lines(
        "Process start -> BootNotification at the CSMS",
        f"libraries   ocpp {v('ocpp')}, websockets {v('websockets')}, pydantic {v('pydantic')}, "
        f"cryptography {v('cryptography')}",
        f"bridge      ocpp-bridge {v('ocpp-bridge')}, git {git_revision()}",
        "csms        raw OCPP-J on websockets, in this process; Mosquitto for the bridge's MQTT",
    )


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f}"


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def worst(values: list[float]) -> float:
    return max(values) if values else math.nan


def table(results: Results, args: argparse.Namespace) -> list[str]:
    series = [results.first, results.restart, results.bare]
    lines = [
        "",
        f"{args.runs} rounds (each: bridge first start, bridge restart, bare library, "
        "python -c pass) after one unmeasured start of each; ms from just before Popen",
        "",
        f"{'':34}" + "".join(f"{s.title:>18}" for s in series),
    ]
    rows: list[tuple[str, list[str]]] = [
        ("start -> WebSocket upgrade p50", [ms(p50(s.upgrade)) for s in series]),
        ("start -> WebSocket upgrade max", [ms(worst(s.upgrade)) for s in series]),
        ("start -> BootNotification p50", [ms(p50(s.boot)) for s in series]),
        ("start -> BootNotification max", [ms(worst(s.boot)) for s in series]),
        ("start -> BootNotification min", [ms(min(s.boot, default=math.nan)) for s in series]),
        ("SIGTERM -> exit p50", [ms(p50(s.stop)) for s in series]),
        ("exit statuses", [",".join(sorted({str(c) for c in s.exit_codes})) for s in series]),
    ]
    for label, cells in rows:
        lines.append(f"{label:34}" + "".join(f"{c:>18}" for c in cells))
    lines.append(
        f"python -c pass, start -> exit: p50 {ms(p50(results.python_pass))} ms, "
        f"max {ms(worst(results.python_pass))} ms"
    )

    imports = results.imports
    if imports is not None:
        inside = imports.inside("bridge.app")
        lines += [
            "",
            f'where the bridge\'s start goes: python -X importtime -c "import bridge.app", '
            f"median of {imports.runs} runs",
            f"  interpreter start (site), before any import of ours  "
            f"{ms(imports.cumulative_s.get('site', math.nan)):>5} ms",
            f"  import bridge.app, cumulative                         "
            f"{ms(imports.statement_s()):>5} ms",
            f"  the bare script's imports, the same way               "
            f"{ms(results.bare_import_s):>5} ms  (ocpp.v201, websockets.asyncio.client)",
            f"  top {TOP} cumulative inside bridge.app, in import order (cumulative includes "
            "what a module imports first)",
        ]
        preorder, parent = imports.tree()
        by_cumulative = sorted(inside, key=lambda n: -imports.cumulative_s[n])[:TOP]
        for name in sorted(by_cumulative, key=preorder.index):
            indent = "  " * (imports.depth[name] - 1)
            lines.append(
                f"    {ms(imports.cumulative_s[name]):>5} ms  {indent}{name}"
                f"  (self {ms(imports.self_s[name])} ms, imported by {parent.get(name, '-')})"
            )
        lines.append(f"  top {TOP} self time inside bridge.app, by module")
        for name in sorted(inside, key=lambda n: -imports.self_s[n])[:TOP]:
            lines.append(f"    {ms(imports.self_s[name]):>5} ms  {name}")
        packages: dict[str, float] = {}
        for name in inside:
            package = name.split(".")[0].split(" ")[0]
            packages[package] = packages.get(package, 0.0) + imports.self_s[name]
        lines.append(
            f"  top {TOP} self time inside bridge.app, by top-level package "
            f"({len(packages)} packages; their self times add up to the import)"
        )
        for package, seconds in sorted(packages.items(), key=lambda kv: -kv[1])[:TOP]:
            lines.append(f"    {ms(seconds):>5} ms  {package}")
    if results.phases:
        lines.append(f"  in one process after the interpreter's start, median of {args.imports}")
        for name, seconds in results.phases.items():
            lines.append(f"    {ms(seconds):>5} ms  {name}")

    first, restart = p50(results.first.boot), p50(results.restart.boot)
    lines += [
        "",
        "targets (bridge)",
        f"  {verdict(first < TARGET_S)}  first start -> BootNotification p50 < {TARGET_S:g} s"
        f"   {ms(first)} ms (max {ms(worst(results.first.boot))} ms)",
        f"  {verdict(restart < TARGET_S)}  restart -> BootNotification p50 < {TARGET_S:g} s"
        f"       {ms(restart)} ms (max {ms(worst(results.restart.boot))} ms)",
    ]
    return lines


async def run(args: argparse.Namespace, processes: Processes, directory: Path) -> Results:
    mqtt_port = free_port()
    start_mosquitto(processes, directory, mqtt_port)
    wait_port(mqtt_port)
    results = await rounds(args, processes, directory, mqtt_port)
    step(f"import times, {args.imports} runs each")
    results.imports = import_times("import bridge.app", args.imports)
    bare = import_times("import ocpp.v201, websockets.asyncio.client", args.imports)
    results.bare_import_s = bare.statement_s()
    results.phases = phases(directory, mqtt_port, args.imports)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, metavar="R", help="rounds (default 10)")
    parser.add_argument(
        "--imports", type=int, default=5, metavar="K", help="importtime runs (default 5)"
    )
    args = parser.parse_args()

    # The bridge's and the bare script's logs are appended to: every start of each writes there.
    return run_benchmark(
        header,
        "startup-bench-",
        lambda processes, directory: asyncio.run(run(args, processes, directory)),
        lambda results: table(results, args),
        Processes(append=True),
    )


if __name__ == "__main__":
    sys.exit(main())
