"""`ocpp-bridge health`: is the running service up and connected to the broker?

The service keeps a small status file: rewritten (atomically) whenever its state changes and
refreshed every `REFRESH` seconds. It lives in `$RUNTIME_DIRECTORY` when set (systemd's
RuntimeDirectory=, or a tmpfs in the container: no flash wear), else next to the store.
`health` reads it: the process named there must be alive, the file fresh, MQTT connected.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Final

from bridge.config import ConfigError, Settings, load_settings

REFRESH: Final = 30.0  # seconds between refreshes when nothing changes
STALE: Final = 3 * REFRESH + 5  # older than this: the service is hung or gone
FILE_NAME: Final = "ocpp-bridge.status.json"


SYSTEMD_RUNTIME: Final = Path("/run/ocpp-bridge")  # RuntimeDirectory= of deploy/ocpp-bridge.service


def status_path(settings: Settings, reading: bool = False) -> Path:
    """Where the service writes its status: $RUNTIME_DIRECTORY, else next to the store. A reader
    without $RUNTIME_DIRECTORY (an operator's shell) also looks in systemd's runtime directory."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / FILE_NAME
    if reading and (SYSTEMD_RUNTIME / FILE_NAME).is_file():
        return SYSTEMD_RUNTIME / FILE_NAME
    return Path(settings.storage.path).parent / FILE_NAME


def _process_start(pid: int) -> int | None:
    """The start time of a process in clock ticks (to tell a live service from a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


class StatusFile:
    """Written by the service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self.started = time.time()
        self._last: dict[str, Any] | None = None
        self._written = 0.0

    def update(self, state: dict[str, Any]) -> None:
        """Write the state if it changed, or if the last write is REFRESH seconds old."""
        now = time.time()
        if state == self._last and now - self._written < REFRESH:
            return
        body = {
            "pid": self.pid,
            "process_start": _process_start(self.pid),
            "started": self.started,
            "updated": now,
            **state,
        }
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(body))
            temporary.replace(self.path)
        except OSError:
            return  # health will report a stale file; the service itself goes on
        self._last, self._written = state, now

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def check(settings: Settings, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line) from the status file."""
    path = status_path(settings, reading=True)
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return False, f"not running (no status file {path})"
    except (OSError, ValueError):
        return False, f"unreadable status file {path}"
    now = time.time() if now is None else now
    pid, recorded = body.get("pid"), body.get("process_start")
    started = _process_start(pid) if isinstance(pid, int) else None
    # A tick or two of slack: emulators (qemu-user) round the start time differently per read.
    if started is None or not isinstance(recorded, int) or abs(started - recorded) > 2:
        return False, f"not running (process {pid} is gone)"
    age = now - float(body.get("updated", 0))
    if age > STALE:
        return False, f"hung: no status update for {int(age)} s (process {pid})"
    mqtt, csms = body.get("mqtt", {}), body.get("csms", {})
    mqtt_line = f"mqtt {mqtt.get('state', '?')} to {mqtt.get('broker', '?')}"
    if mqtt.get("error") and mqtt.get("state") != "connected":
        mqtt_line += f" ({mqtt['error']})"
    csms_line = f"csms {csms.get('state', '?')}"
    if csms.get("state") == "connected":
        csms_line += f" (slot {csms.get('slot')}, boot {csms.get('boot') or 'pending answer'})"
    elif csms.get("error"):
        csms_line += f" ({csms['error']})"
    up = _duration(now - float(body.get("started", now)))
    healthy = mqtt.get("state") == "connected"
    return healthy, f"{'ok' if healthy else 'unhealthy'}: {mqtt_line}; {csms_line}; up {up}"


def main(config: str) -> int:
    try:
        settings = load_settings(config)
    except ConfigError as e:
        print(f"ocpp-bridge health: {e}", file=sys.stderr)
        return 2
    healthy, line = check(settings)
    print(line)
    return 0 if healthy else 1
