"""The driver of the CSMS connection: carries out what the station's connectivity policy decides.

One loop: ask the station for the next target, open the WebSocket (bridge.transport.csms), run
OCPP-J on it (bridge.rpc.ocppj) with the station answering CALLs, and one drain task — the only
sender — taking messages from the station's outbound queue. When the connection closes, the
station says how long to wait before the next attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final

from websockets.asyncio.client import ClientConnection

from bridge.rpc import CallResult, NoAnswer
from bridge.rpc.ocppj import RpcConnection
from bridge.station import Station
from bridge.station.connectivity import NO_PROFILE_WAIT, NoTarget, Target
from bridge.station.device_model import Variable
from bridge.station.effects import Effect
from bridge.transport.csms import ConnectFailure, open_websocket, tls_context

log = logging.getLogger(__name__)

CLOSE_TIMEOUT: Final = 10.0  # seconds a closing connection may take to answer what it started
DRAIN_GRACE: Final = 2.0  # seconds the drain may take to finish once the connection closed


class LinkState(StrEnum):
    disconnected = "disconnected"
    connecting = "connecting"
    connected = "connected"


class CsmsLink:
    def __init__(self, station: Station, execute: Callable[[list[Effect]], None]) -> None:
        self.station = station
        self.execute = execute
        self.state = LinkState.disconnected
        self.last_error = ""
        self.connection: RpcConnection | None = None
        self._wake = asyncio.Event()
        self._drain_wake = asyncio.Event()
        self._reconnect_delay: float | None = None
        self._closing_reason = ""
        station.queue.on_put = self._drain_wake.set
        station.device_model.on_change(self._variable_changed)

    @property
    def active_slot(self) -> int | None:
        target = self.station.connectivity.active
        return target.slot if target is not None else None

    # --- the loop

    async def run(self) -> None:
        """Stay connected to the CSMS until cancelled."""
        connectivity = self.station.connectivity
        while True:
            try:
                target = connectivity.next_target()
            except NoTarget as e:
                await self._failed(str(e), connectivity.active)
                continue
            if target is None:
                if self.last_error != "no usable network profile":
                    log.info("no CSMS network profile to connect with; waiting for one")
                self._set_state(LinkState.disconnected, "no usable network profile")
                await self._sleep(NO_PROFILE_WAIT)
                continue
            self._set_state(LinkState.connecting, "")
            try:
                websocket = await self._open(target)
            except ConnectFailure as e:
                self.station.csms_failed(e.reason, str(e))  # A04: the security events it implies
                await self._failed(str(e), target)
                continue
            try:
                wait = await self._hold(target, websocket)
            except Exception:
                log.exception("the CSMS connection failed unexpectedly")
                wait = connectivity.lost()
            await self._sleep(wait)

    async def _open(self, target: Target) -> ClientConnection:
        context = None
        if target.tls is not None:
            tls = target.tls
            context = tls_context(tls.ca_file, tls.roots, tls.client_cert, tls.client_key)
        try:
            return await open_websocket(
                target.url,
                target.subprotocols,
                authorization=target.authorization,
                ssl_context=context,
                ping_interval=target.ping_interval,
                open_timeout=target.message_timeout,
                identity=self.station.identity,
            )
        except ConnectFailure:
            raise
        except Exception as e:  # a surprise must cost one attempt, not the service
            log.exception("unexpected error while connecting to the CSMS")
            raise ConnectFailure(f"unexpected error: {type(e).__name__}") from None

    async def _failed(self, reason: str, target: Target | None) -> None:
        slot = f" (slot {target.slot})" if target is not None else ""
        self._set_state(LinkState.disconnected, reason)
        log.warning("CSMS connection attempt failed%s: %s", slot, reason)
        await self._sleep(self.station.connectivity.failed())

    async def _hold(self, target: Target, websocket: ClientConnection) -> float:
        """Run OCPP over this connection until it closes; the wait before the next attempt."""
        station = self.station
        version = websocket.subprotocol or ""
        connection = RpcConnection(
            websocket,
            version,
            station.csms_call,
            float(target.message_timeout),
            answered=self._answered,
        )
        self.connection = connection
        self._reconnect_delay = None
        self._closing_reason = ""
        self._set_state(LinkState.connected, "")
        log.info("connected to the CSMS (slot %d, %s)", target.slot, version)
        station.csms_connected(target)
        self.execute(station.take_effects())
        reader = asyncio.create_task(connection.serve(), name="csms-reader")
        drain = asyncio.create_task(self._drain(connection), name="csms-drain")
        try:
            await asyncio.wait({reader, drain}, return_when=asyncio.FIRST_COMPLETED)
            if drain.done() and not drain.cancelled() and drain.exception() is not None:
                # The sender must outlive the connection; if it died, start over cleanly.
                log.error("the CSMS drain task failed", exc_info=drain.exception())
                await websocket.close(1011, "station error")
            await reader
        finally:
            # Let the drain take the outcome of its CALL in flight (offline, now that the reader
            # closed it), so whoever sent that message hears of it; then stop it.
            self._drain_wake.set()
            _, running = await asyncio.wait({drain}, timeout=DRAIN_GRACE)
            for task in running:
                task.cancel()
            await asyncio.gather(drain, return_exceptions=True)
            self.connection = None
            wait = station.csms_disconnected()
            self.execute(station.take_effects())
            self._set_state(LinkState.disconnected, "connection closed")
            await websocket.close()
            if self._closing_reason:  # our own close: not a problem
                log.info("CSMS connection closed (%s)", self._closing_reason)
            else:
                log.warning("CSMS connection closed (%s)", websocket.close_code)
        if self._reconnect_delay is not None:
            return self._reconnect_delay
        return wait

    async def _drain(self, connection: RpcConnection) -> None:
        """The only sender: one CALL at a time, in the queue's order (OCPP-J 4.1.1)."""
        queue, station = self.station.queue, self.station
        while not connection.closed.is_set():
            self._drain_wake.clear()
            message = queue.next()
            if message is None or isinstance(message, float):
                try:
                    async with asyncio.timeout(message):
                        await self._drain_wake.wait()
                except TimeoutError:
                    pass
                continue
            outcome = await connection.call(message.message_id, message.action, message.payload)
            if queue.done(message, outcome):
                station.answered(message, outcome)
            self.execute(station.take_effects())
            if isinstance(outcome, NoAnswer) and outcome.reason == "offline":
                return

    def _answered(self, result: Any) -> None:
        """A CALL from the CSMS is answered: now its effects (F06.FR.04)."""
        if isinstance(result, CallResult) and result.effects:
            self.execute(list(result.effects))
        self.execute(self.station.take_effects())

    async def _sleep(self, seconds: float) -> None:
        """Wait, unless something asks for a connection attempt now (e.g. a new profile)."""
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _set_state(self, state: LinkState, error: str) -> None:
        self.state = state
        if error:
            self.last_error = error

    # --- effects

    def reconnect(self, delay: float, reason: str) -> None:
        """Close the current connection once its CALLs are answered; connect again after
        `delay` seconds (at once when there is no connection)."""
        connection = self.connection
        if connection is None:
            self._wake.set()
            return
        self._reconnect_delay = delay
        self._closing_reason = reason
        connection.spawn(connection.close_when_idle(1000, reason[:120]))

    def _variable_changed(self, variable: Variable, attribute: str, value: str) -> None:
        if variable.key == "OCPPCommCtrlr.NetworkConfigurationPriority":
            self._wake.set()  # used from the next connection (RebootRequired); wake a waiting loop
        elif variable.key == "OCPPCommCtrlr.WebSocketPingInterval" and self.connection is not None:
            websocket: Any = self.connection.websocket
            if websocket.ping_interval and int(value) > 0:
                websocket.ping_interval = websocket.ping_timeout = int(value)

    async def close(self, reason: str = "shutting down") -> None:
        """A clean close on shutdown (code 1000), logged as ours."""
        connection = self.connection
        if connection is not None:
            self._closing_reason = reason
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await connection.websocket.close(1000, reason)
            except (TimeoutError, OSError):
                pass
