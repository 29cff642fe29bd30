"""What the benchmark scripts of this folder share; not a benchmark itself.

The scripts run as `python bench/NAME.py`, so this folder is sys.path[0] and they import this
file as `_common` (as do the children a script starts with `sys.executable, __file__`, except
resources.py's bare process, which must not load it). The report lines built here are the ones
the scripts printed alike, to the character.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Self, TypeVar

# websockets is imported where it is used: not every script (nor every child a script starts)
# needs it.
if TYPE_CHECKING:
    from websockets.asyncio.server import Server, ServerConnection
    from websockets.http11 import Request, Response

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent  # the repository
STATION_ID = "BENCH001"  # the bridge's [station] id in bridge_config()

# The GetVariables request of the round-trip benchmarks: five variables.
VARIABLES = [
    ("OCPPCommCtrlr", "OfflineThreshold"),
    ("OCPPCommCtrlr", "HeartbeatInterval"),
    ("AuthCtrlr", "LocalAuthorizeOffline"),
    ("TxCtrlr", "TxStartPoint"),
    ("TxCtrlr", "EVConnectionTimeOut"),
]
GET_VARIABLES: dict[str, Any] = {
    "getVariableData": [
        {"component": {"name": component}, "variable": {"name": variable}}
        for component, variable in VARIABLES
    ]
}


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise SystemExit(f"{Path(sys.argv[0]).stem}: mosquitto is not installed")
    return binary


class Processes:
    """Every child started here; all are stopped (newest first) when the `with` ends.

    With `append`, a log is appended to (several starts share it) rather than overwritten; `env`
    is the children's environment (default: this process's).
    """

    def __init__(self, *, append: bool = False, env: dict[str, str] | None = None) -> None:
        self._running: list[subprocess.Popen[bytes]] = []
        self._mode = "ab" if append else "wb"
        self._env = env

    def start(self, argv: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
        with contextlib.ExitStack() as files:
            out = files.enter_context(log.open(self._mode)) if log else subprocess.DEVNULL
            # Own session: a Ctrl-C reaches only us, and we stop the children in order.
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self._env
            )
        self._running.append(process)
        return process

    async def stop_async(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM and wait, with the event loop running: the in-process CSMS must go on
        answering (a blocked loop cannot answer the station's WebSocket close)."""
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 10)
        self.stop(process)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self._running:
            self._running.remove(process)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        while self._running:
            self.stop(self._running[-1])


def start_mosquitto(processes: Processes, directory: Path, port: int) -> subprocess.Popen[bytes]:
    """Mosquitto on 127.0.0.1:`port` with `set_tcp_nodelay true`, as our deploy config has it;
    its config and log in `directory`. Not waited for: `wait_port(port)`."""
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        "persistence false\n"
    )
    return processes.start([mosquitto_binary(), "-c", str(conf)], directory / "mosquitto.log")


def bridge_config(directory: Path, mqtt_port: int, csms_url: str | None = None) -> Path:
    """`directory`/bridge.toml: station STATION_ID, the broker on `mqtt_port`, the store in
    `directory`; no [csms] section without `csms_url`; no wait for an OEM at start."""
    directory.mkdir(parents=True, exist_ok=True)
    csms = f'[csms]\nurl = "{csms_url}"\n\n' if csms_url is not None else ""
    config = directory / "bridge.toml"
    config.write_text(
        f"""[station]
id = "{STATION_ID}"
vendor = "Acme"
model = "AC22"
serial_number = "SN-0001"
firmware_version = "1.0.0"
evses = [1]

{csms}[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[storage]
path = "{directory / "bridge.db"}"

[oem]
startup_timeout = 0  # no OEM firmware answers device_model here: boot from this file at once
"""
    )
    return config


def tail(log: Path, characters: int = 4000) -> str:
    return log.read_text(errors="replace")[-characters:]


def log_lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines()


def memory_mb(pid: int) -> dict[str, float]:
    """The kB fields of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, ...) in MB (10^6 bytes)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.endswith(" kB"):
            fields[key] = int(value.split()[0]) * 1024 / 1e6
    return fields


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB (10^6 bytes)."""
    memory = memory_mb(pid)
    return memory["VmRSS"], memory["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), in clock ticks (10 ms)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def step(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def terminated(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM handler: stop as on Ctrl-C."""
    raise KeyboardInterrupt


def run_benchmark(
    header: Callable[[], list[str]],
    prefix: str,
    run: Callable[[Processes, Path], T],
    report: Callable[[T], list[str]],
    processes: Processes | None = None,
) -> int:
    """A script's main run: SIGTERM as Ctrl-C, the header to stdout, `run(processes, directory)`
    in a temporary directory, then the report of its results to stdout. Every child the run
    started is stopped before the report, also on Ctrl-C or SIGTERM ("interrupted" on stderr).
    The exit status: 0, or 130 when interrupted."""
    signal.signal(signal.SIGTERM, terminated)
    print("\n".join(header()), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        processes or Processes() as children,
    ):
        try:
            results = run(children, Path(tmp))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    print("\n".join(report(results)), flush=True)
    return 0


# --- a CSMS in this process ---------------------------------------------------------------------


def now_ocpp() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class OcppServer:
    """A websockets server for OCPP 2.0.1 stations on a free loopback port, no compression;
    `async with` starts it (then `url` is set) and stops it. A subclass answers the stations in
    `_handler` and may look at each upgrade request in `_process_request`."""

    def __init__(self) -> None:
        self.url = ""
        self._server: Server | None = None

    async def _handler(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        return None

    async def __aenter__(self) -> Self:
        from websockets.asyncio.server import serve
        from websockets.typing import Subprotocol

        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            select_subprotocol=lambda _, offered: (
                Subprotocol("ocpp2.0.1") if "ocpp2.0.1" in offered else None
            ),
            compression=None,
        )
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/ocpp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# --- measuring ----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


@dataclass
class Sequential:
    """Calls one after the other: each answer's round trip, the failures, and (where measured)
    the wall time of all of them."""

    latencies_ms: list[float]
    failures: int
    seconds: float = math.nan

    def stat(self, name: str) -> float:
        values = sorted(self.latencies_ms)
        if not values:
            return math.nan
        if name == "mean":
            return sum(values) / len(values)
        return percentile(values, float(name.removeprefix("p")))

    @property
    def rate(self) -> float:
        return (len(self.latencies_ms) + self.failures) / self.seconds


# --- report -------------------------------------------------------------------------------------


def version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "?"


def git_revision() -> str:
    """HEAD ("?" where git cannot tell), and whether bridge/ has uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "bridge"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return "?"
    return (head or "?") + (" + uncommitted changes in bridge/" if status.strip() else "")


def column_table(
    titles: list[str], cells: list[list[tuple[str, str]]], label_width: int, width: int
) -> list[str]:
    """The side-by-side table every report prints: a title row, then one row per label, each
    column's value right-aligned (`cells[c]` is column c's (label, value) rows)."""
    lines = [f"{'':{label_width}}" + "".join(f"{t:>{width}}" for t in titles)]
    for i, (label, _) in enumerate(cells[0]):
        lines.append(f"{label:{label_width}}" + "".join(f"{rows[i][1]:>{width}}" for rows in cells))
    return lines


def header_lines(title: str, *lines: str) -> list[str]:
    """A report's first lines: `title`, date, machine, python, then `lines`, then the command."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        title,
        f"date        {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine     {platform.machine()}, {os.cpu_count()} CPUs, load average {load}",
        f"python      {platform.python_version()} ({sys.executable})",
        *lines,
        f"command     {shlex.join(sys.orig_argv)}",
    ]


def num(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bridge_log_report(log: list[str]) -> list[str]:
    """The bridge's log in the report: its length, and its warnings and errors (digits as N),
    the three most frequent."""
    warnings = Counter(
        re.sub(r"\d+", "N", line.split(" ", 2)[2])
        for line in log
        if re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ", line)
    )
    return [
        "",
        f"bridge log: {len(log)} lines, {warnings.total()} warnings or errors",
        *(f"  {n} x {text}" for text, n in warnings.most_common(3)),
    ]
