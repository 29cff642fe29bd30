"""Wiring and shutdown: the store, the station, and the transports around it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import TracebackType
from typing import Any

from bridge import __version__
from bridge.config import Settings
from bridge.health import StatusFile, status_path
from bridge.oem.api import MqttApi
from bridge.station import Station
from bridge.store import Store
from bridge.transport.csms import CsmsLink
from bridge.transport.mqtt import MqttTransport

log = logging.getLogger(__name__)


class Bridge:
    """The running service: `async with Bridge(settings) as bridge: ...` (stops on exit)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.storage.path)
        try:
            self.station = Station(settings, self.store)
        except BaseException:
            self.store.close()
            raise
        self.mqtt_api = MqttApi(self.station.dispatcher)
        self.mqtt = MqttTransport(
            settings.mqtt,
            f"ocpp-bridge-{settings.station.id}",
            self.mqtt_api.handle,
            self.mqtt_api.busy,
        )
        registration = self.station.registration
        self.csms = CsmsLink(self.station, settings, registration.handle_call, registration.run)
        registration.on_accepted.append(self.csms.confirm)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Bridge:
        self._tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt"))
        self._tasks.append(asyncio.create_task(self.csms.run(), name="csms"))
        self._tasks.append(asyncio.create_task(self._keep_status(), name="status"))
        log.info("ocpp-bridge %s started for station %s", __version__, self.settings.station.id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.store.close()
        log.info("ocpp-bridge stopped")

    def state(self) -> dict[str, Any]:
        """What `ocpp-bridge health` reports."""
        mqtt = self.settings.mqtt
        return {
            "mqtt": {
                "state": "connected" if self.mqtt.connected else "disconnected",
                "broker": f"{mqtt.host}:{mqtt.port}",
                "error": self.mqtt.last_error,
            },
            "csms": {
                "state": self.csms.state.value,
                "slot": self.csms.active_slot,
                "boot": self.station.registration.status,
                "error": self.csms.last_error,
            },
        }

    async def _keep_status(self) -> None:
        status = StatusFile(status_path(self.settings))
        try:
            while True:
                status.update(self.state())
                await asyncio.sleep(2)
        finally:
            status.remove()

    async def wait(self) -> None:
        """Until a transport task ends on its own (it should not): then raise what ended it."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        task = done.pop()
        error = task.exception() if not task.cancelled() else None
        raise RuntimeError(f"the {task.get_name()} task ended") from error


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Bridge(settings) as bridge:
        stopping = asyncio.create_task(stop.wait())
        running = asyncio.create_task(bridge.wait())
        await asyncio.wait({stopping, running}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stop.is_set():
            running.cancel()
            log.info("shutting down on signal")
        else:
            await running  # raises: a transport ended, the service must not pretend to run
