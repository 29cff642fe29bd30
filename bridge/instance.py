"""One ocpp-bridge per store and per station (issue 8).

Two bridges on one store, or with one station id, fight: the broker hands the MQTT client id
`ocpp-bridge-<station id>` back and forth, and both connect to the CSMS as that station. So `run`
claims, for the life of the process:

- the store: `StoreLock`, an flock on `<storage.path>.lock`;
- the station on its broker and on its CSMS: an abstract Unix socket
  `\\0ocpp-bridge:<station id>:<digest of broker or CSMS URL>`, bound and listening. The kernel
  releases both when the process dies, also on kill -9; a second bridge learns the holder's pid
  from SO_PEERCRED.

Abstract sockets belong to the network namespace: bridges in separate containers do not see each
other (nor do they share a loopback broker). Two bridges with one station id but different brokers
and CSMSs do not fight, and are allowed (test suites run many stations "CP001" side by side).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bridge.config import Settings
from bridge.store import MEMORY, StoreError, StoreLock

_PREFIX: Final = "ocpp-bridge"


class InstanceError(Exception):
    """Another ocpp-bridge runs this station; one sentence with its pid."""


@dataclass
class Instance:
    """What this process holds; `release` (or the process's end) gives it back."""

    store_lock: StoreLock | None = None
    sockets: list[tuple[socket.socket, threading.Thread]] = field(default_factory=list)

    def release(self) -> None:
        for sock, answering in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
            # Its accept() holds the socket open: the name is free once the thread has left it.
            answering.join(timeout=5)
            sock.close()
        self.sockets.clear()
        if self.store_lock is not None:
            self.store_lock.release()
            self.store_lock = None


def guard_names(settings: Settings) -> list[tuple[bytes, str]]:
    """(abstract socket name, what it stands for) of each resource the station must not share."""
    station = settings.station.id
    mqtt = settings.mqtt
    shared = [f"MQTT broker {mqtt.host.lower()}:{mqtt.port}"]
    if settings.csms.url:
        shared.append(f"CSMS {settings.csms.url}")
    names = []
    for what in shared:
        tag = hashlib.sha256(what.encode()).hexdigest()[:16]
        names.append((f"\0{_PREFIX}:{station}:{tag}".encode(), what))
    return names


def claim(settings: Settings) -> Instance:
    """Claim the store and the station, or raise StoreError / InstanceError naming the pid."""
    instance = Instance()
    try:
        if settings.storage.path != MEMORY:
            store = Path(settings.storage.path)
            try:
                store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"storage.path: cannot open {store}: {e}") from None
            instance.store_lock = StoreLock.acquire(store)
        for name, what in guard_names(settings):
            instance.sockets.append(_bind(name, settings.station.id, what))
    except BaseException:
        instance.release()
        raise
    return instance


def _bind(name: bytes, station: str, what: str) -> tuple[socket.socket, threading.Thread]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(name)
    except OSError as e:
        sock.close()
        if e.errno != errno.EADDRINUSE:
            raise InstanceError(f"cannot claim station {station}: {e.strerror}") from None
        pid = _holder(name)
        raise InstanceError(
            f"another ocpp-bridge (pid {pid or 'unknown'}) runs station {station} (same {what})"
        ) from None
    sock.listen(8)
    # Accept and close at once: a refused second bridge only asks who holds the name.
    answering = threading.Thread(target=_answer, args=(sock,), name="instance-guard", daemon=True)
    answering.start()
    return sock, answering


def _answer(sock: socket.socket) -> None:
    while True:
        try:
            connection, _ = sock.accept()
        except OSError:
            return  # released
        connection.close()


def _holder(name: bytes) -> int | None:
    """The pid of the process listening on `name` (SO_PEERCRED), if it can be learnt."""
    for _ in range(50):  # the holder may be between bind() and listen()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(name)
            except ConnectionRefusedError:
                time.sleep(0.02)
                continue
            except OSError:
                return None
            credentials = probe.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            pid, _, _ = struct.unpack("3i", credentials)
            return pid or None  # 0: the holder is in a PID namespace this process cannot see
    return None
