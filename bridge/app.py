"""Wiring and shutdown: the store, the station, and the transports around it.

The station is plain Python; this module is its driver. It feeds it events (CSMS CALLs and
answers through the CSMS link, OEM messages through the MQTT API, timers) and carries out the
effects it returns: timers, updates and requests to the OEM, reconnections, messages to queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import TracebackType
from typing import Any, Final

from bridge import __version__
from bridge.config import Settings
from bridge.csms_link import CsmsLink
from bridge.health import StatusFile, status_path
from bridge.oem import envelope
from bridge.oem.api import MqttApi
from bridge.oem.link import OemAnswer, OemLink, OemReply
from bridge.station import Station
from bridge.station.effects import AskOem, Cancel, Effect, Publish, Reconnect, Schedule, Send
from bridge.store import Store
from bridge.transport.mqtt import MqttTransport

log = logging.getLogger(__name__)

DEVICE_MODEL_REPEAT: Final = 10.0  # the session API: device_model again every 10 s until answered
STOPPING_ACK_TIMEOUT: Final = 1.0


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
        self.link = OemLink(self._publish, settings.oem.request_timeout)
        self.mqtt_api = MqttApi(self.station, self.link)
        self.mqtt_api.after = lambda result: self.execute(list(result.effects))
        self.mqtt = MqttTransport(
            settings.mqtt,
            f"ocpp-bridge-{settings.station.id}",
            self._handle,
            self.mqtt_api.busy,
            will=self._service_status("error"),
            on_connected=self._mqtt_connected,
        )
        self.station.ask_oem = self.link.request
        self.csms = CsmsLink(self.station, self.execute)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._helpers: set[asyncio.Task[Any]] = set()
        self._mqtt_up = asyncio.Event()  # the broker was connected (at least once)
        self._effects_due = False
        self.station.effects.notify = self._effects_added

    async def __aenter__(self) -> Bridge:
        self._tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt"))
        self._tasks.append(asyncio.create_task(self._start(), name="csms"))
        self._tasks.append(asyncio.create_task(self._keep_status(), name="status"))
        log.info("ocpp-bridge %s started for station %s", __version__, self.settings.station.id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.mqtt_api.service_status = "stopping"
        await self.mqtt.publish_and_wait(self._service_status(), True, STOPPING_ACK_TIMEOUT)
        await self.csms.close()
        for handle in self._timers.values():
            handle.cancel()
        for task in [*self._tasks, *self._helpers]:
            task.cancel()
        for task in [*self._tasks, *self._helpers]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.link.close()
        self.store.close()
        log.info("ocpp-bridge stopped")

    # --- start-up (the session API: device_model, then the CSMS)

    async def _start(self) -> None:
        """Ask the OEM for its device model (again every 10 s until answered) and its EVSEs'
        status; connect to the CSMS once the answer is applied or after startup_timeout."""
        answered = asyncio.Event()
        asker = asyncio.create_task(self._ask_device_model(answered), name="device_model")
        self._helpers.add(asker)
        try:
            async with asyncio.timeout(self.settings.oem.startup_timeout):
                await answered.wait()  # (the asker waits for the broker first)
        except TimeoutError:
            log.info(
                "no device_model answer from the OEM within %g s: booting from the "
                "configuration file",
                self.settings.oem.startup_timeout,
            )
        self._spawn(self._ask_status_and_limits())
        self.station.started()
        self.execute(self.station.take_effects())
        self.mqtt_api.service_status = "ready"
        self._publish_service_status()
        await self.csms.run()

    async def _ask_device_model(self, answered: asyncio.Event) -> None:
        await self._mqtt_up.wait()
        while True:
            reply = await self.link.request("device_model", {}, DEVICE_MODEL_REPEAT)
            if isinstance(reply, OemAnswer):
                self.station.apply_device_model(reply.data)
                self.execute(self.station.take_effects())
                answered.set()
                return
            if reply.reason == "invalid":
                log.warning("device_model answer refused: %s; asking again", reply.description)
                await asyncio.sleep(DEVICE_MODEL_REPEAT)

    async def _ask_status_and_limits(self) -> None:
        await self._mqtt_up.wait()
        reply = await self.link.request("cs_status_and_limits", {})
        if isinstance(reply, OemAnswer):
            self.station.status_and_limits(reply.data)
            self.execute(self.station.take_effects())

    # --- effects

    def execute(self, effects: list[Effect]) -> None:
        """Carry out the station's effects (and any that these produce in turn)."""
        while effects:
            for effect in effects:
                try:
                    self._carry_out(effect)
                except Exception:
                    log.exception("carrying out %s failed", type(effect).__name__)
            effects = self.station.take_effects()

    def _effects_added(self) -> None:
        """An effect was added: carry it out soon, also while a handler awaits something."""
        if self._effects_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not running yet: the first event takes them
            return
        self._effects_due = True
        loop.call_soon(self._effects_soon)

    def _effects_soon(self) -> None:
        self._effects_due = False
        self.execute(self.station.take_effects())

    def _carry_out(self, effect: Effect) -> None:
        match effect:
            case Send():
                self.station.send(effect)
            case Schedule(timer, delay):
                old = self._timers.pop(timer, None)
                if old is not None:
                    old.cancel()
                loop = asyncio.get_running_loop()
                self._timers[timer] = loop.call_later(delay, self._timer, timer)
            case Cancel(timer):
                handle = self._timers.pop(timer, None)
                if handle is not None:
                    handle.cancel()
            case Publish(name, data, retain):
                self.link.update(name, data, retain)
            case AskOem(name, data, key, timeout):
                self._spawn(self._ask(name, data, key, timeout))
            case Reconnect(delay, reason):
                self.csms.reconnect(delay, reason)

    def _timer(self, name: str) -> None:
        self._timers.pop(name, None)
        self.station.timer(name)
        self.execute(self.station.take_effects())

    async def _ask(self, name: str, data: dict[str, Any], key: str, timeout: float | None) -> None:
        reply: OemReply = await self.link.request(name, data, timeout)
        self.station.oem_answered(key, reply)
        self.execute(self.station.take_effects())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # --- MQTT

    async def _handle(self, raw: bytes) -> bytes | None:
        """One OEM message through the MQTT API, then the effects it caused."""
        answer = await self.mqtt_api.handle(raw)
        self.execute(self.station.take_effects())
        return answer

    def _publish(self, payload: bytes, retain: bool) -> None:
        self.mqtt.publish(payload, retain)

    def _service_status(self, status: str | None = None) -> bytes:
        data = self.mqtt_api.service_status_data(status)
        return envelope.encode(envelope.update("service_status", data))

    def _publish_service_status(self) -> None:
        self.mqtt.publish(self._service_status(), retain=True)

    def _mqtt_connected(self) -> None:
        # A reconnection replaces the last will's "error" a broker may have published.
        self._publish_service_status()
        self._mqtt_up.set()

    # --- health

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
