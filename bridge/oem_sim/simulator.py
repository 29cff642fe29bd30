"""The simulator on the broker: answers the bridge's requests through `Firmware` and plays the
charging-session scenario (SESSION_API.md), printing one line per step.

Every message it publishes is checked against its schema in `bridge/schemas/` first (a message
that fails is a bug of the simulator: `InvalidMessage`). What the bridge sends is checked too; a
bridge message that fails its schema is reported as a warning line and still read where it can be.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiomqtt

from bridge import schemas
from bridge.oem_sim import DEFAULT_TOKEN, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bridge.oem_sim.firmware import Data, EvseSpec, Firmware, Update, call_error

WEBSOCKET_STATUS_TIMEOUT: Final = 5.0
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class ScenarioFailed(Exception):
    """The scenario cannot complete; the message is one sentence for stderr."""


class InvalidMessage(Exception):
    """The simulator built a message that fails its own schema (a bug of the simulator)."""


@dataclass
class Options:
    """Everything the simulator needs; the command line builds it (bridge.oem_sim.cli)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    request_topic: str = "cs/josev"  # the simulator (the OEM) publishes here
    response_topic: str = "josev/cs"  # the bridge publishes here
    layout: list[EvseSpec] = field(default_factory=lambda: [EvseSpec(1)])
    device_model: Data | None = field(default=None, repr=False)  # None: not answered
    device_model_note: str = "no --config to take the station's values from"
    scenario: Literal["session", "idle"] = "session"
    repeat: int = 1
    evse: int = 1
    connector: int = 1
    token: str = DEFAULT_TOKEN
    token_type: str = "ISO14443"  # noqa: S105 - an IdTokenEnumType
    charge_seconds: float = 10.0
    power_kw: float = 11.0
    stop: Literal["token", "unplug"] = "token"
    timeout: float = 30.0
    expect_transaction: bool = True
    wait_csms: float = 10.0
    ocpp_results: dict[str, Data] = field(default_factory=dict)


def _stdout(line: str) -> None:
    print(line, flush=True)


def _reason(error: Exception) -> str:
    """aiomqtt's `[Errno 111] Connection refused` as `connection refused`."""
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(error)).strip() or type(error).__name__
    return text[0].lower() + text[1:]


class Simulator:
    """`code = await Simulator(options).run()`: 0 completed, 1 failed, 2 broker unreachable.

    `sent` and `received` keep every message published and taken in (for tests and benchmarks);
    `firmware.ocpp_handlers[action]` answers a delegated `ocpp_message` in process."""

    def __init__(
        self,
        options: Options,
        write: Callable[[str], None] = _stdout,
        complain: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self._write = write
        self._complain = complain or write
        self.firmware = Firmware(
            options.layout,
            options.power_kw,
            options.device_model,
            options.device_model_note,
            options.ocpp_results,
        )
        self.sent: list[Data] = []
        self.received: list[Data] = []
        self.service_status: str | None = None
        self.boot_status: str | None = None
        self.saw_connection = False  # a websocket_status update "connected" came in
        self.transactions: list[Data] = []  # transaction_status data, in order
        self.stops: list[str] = []  # evse_id of every stop_charging request
        self._client: aiomqtt.Client | None = None
        self._answers: dict[str, asyncio.Future[Data]] = {}
        self._changed = asyncio.Condition()

    def step(self, text: str) -> None:
        self._write(f"{time.strftime('%H:%M:%S')} {text}")

    # --- the connection

    def _mqtt_client(self) -> aiomqtt.Client:
        o = self.options
        context = None
        if o.tls:
            context = ssl.create_default_context(cafile=o.ca_file or None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        return aiomqtt.Client(
            o.host,
            o.port,
            username=o.username or None,
            password=o.password or None,
            identifier=f"oem-sim-{uuid.uuid4().hex[:8]}",
            keepalive=30,
            timeout=10,
            tls_context=context,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Connect, play the scenario (or answer until `stop` is set, for idle), disconnect."""
        o = self.options
        where = f"{o.host}:{o.port}"
        try:
            async with self._mqtt_client() as client:
                self._client = client
                await client.subscribe(o.response_topic, qos=1)
                self.step(
                    f"connected to the MQTT broker at {where}, listening on {o.response_topic}"
                )
                return await self._serve(client, stop)
        except aiomqtt.MqttError as e:
            if self._client is None:
                self._complain(f"cannot reach the MQTT broker at {where}: {_reason(e)}.")
                return EXIT_USAGE
            self._complain(f"lost the connection to the MQTT broker at {where}: {_reason(e)}.")
            return EXIT_FAILED
        except ssl.SSLError as e:
            self._complain(f"cannot reach the MQTT broker at {where}: TLS failed ({e.reason}).")
            return EXIT_USAGE
        finally:
            self._client = None

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event | None) -> int:
        reader = asyncio.create_task(self._read(client), name="oem-sim-read")
        play = asyncio.create_task(self._play(), name="oem-sim-play")
        tasks: set[asyncio.Task[Any]] = {reader, play}
        stopper = asyncio.create_task(stop.wait()) if stop is not None else None
        if stopper is not None:
            tasks.add(stopper)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if play in done:
                error = play.exception()
                if isinstance(error, ScenarioFailed):
                    self._complain(f"{error}")
                    return EXIT_FAILED
                if error is not None:
                    raise error
                return EXIT_OK
            if reader in done:
                error = reader.exception()
                raise error if error is not None else aiomqtt.MqttError("the broker ended it")
            await _cancel(play)  # stopped (signal): leave no EV plugged in behind
            for evse in self.firmware.evses.values():
                for connector, state in evse.pilot.items():
                    if state[0] != "A":
                        await self._publish_updates(self.firmware.unplug(evse, connector))
            if self.options.scenario == "idle":
                self.step("stopped")
                return EXIT_OK
            self._complain("stopped before the scenario completed.")
            return EXIT_FAILED
        finally:
            for task in tasks:
                await _cancel(task)

    # --- what the bridge sends

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                await self._take(bytes(payload))

    async def _take(self, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            self.step("warning: dropped a message from the bridge that is not JSON")
            return
        if not isinstance(body, dict) or not schemas.is_uuid(body.get("id")):
            self.step("warning: dropped a message from the bridge without an envelope id")
            return
        self.received.append(body)
        kind, name = body.get("type"), body.get("name")
        if kind == "request":
            await self._answer(body)
        elif kind == "response":
            future = self._answers.pop(body["id"], None)
            if future is not None and not future.done():
                future.set_result(body)
        elif kind == "update" and isinstance(name, str):
            self._check(body, f"{name}.update")
            data = body.get("data")
            if isinstance(data, dict):
                self._bridge_update(name, data)
        async with self._changed:
            self._changed.notify_all()

    def _check(self, body: Data, schema: str) -> list[schemas.SchemaError]:
        """A bridge message against its schema; a mismatch is reported, not fatal."""
        try:
            errors = schemas.envelope_validator(schema)(body)
        except KeyError:
            errors = schemas.envelope_validator("envelope")(body)
        if errors:
            self.step(
                f"warning: the bridge's {schema} does not match its schema: "
                f"{schemas.primary(errors).sentence()}"
            )
        return errors

    def _bridge_update(self, name: str, data: Data) -> None:
        status = data.get("status")
        match name:
            case "service_status":
                if status != self.service_status:
                    self.service_status = str(status)
                    self.step(f"bridge: service {status} (service_status)")
            case "transaction_status":
                self.transactions.append(data)
                token = f", token {data['id_token']}" if data.get("id_token") else ""
                self.step(
                    f"bridge: transaction {data.get('transaction_id')} {status} on EVSE "
                    f"{data.get('evse_id')}{token} (transaction_status)"
                )
            case "authorization":
                self.step(
                    f"bridge: token {data.get('id_token', '')} ({data.get('token_type')}) "
                    f"{status} on EVSE {data.get('evse_id')} (authorization update)"
                )
            case "boot_status":
                self.boot_status = str(status)
                self.step(f"bridge: boot {status} by the CSMS (boot_status)")
            case "websocket_status":
                self.saw_connection = self.saw_connection or status == "connected"
                url = f" {data['csms_url']}" if data.get("csms_url") else ""
                self.step(f"bridge: CSMS{url} {status} (websocket_status)")
            case _:
                self.step(f"bridge: {name} update {json.dumps(data)[:200]}")

    async def _answer(self, body: Data) -> None:
        name = body.get("name")
        shown = name if isinstance(name, str) and _NAME.fullmatch(name) else "unknown"
        errors = self._request_errors(body, shown)
        if errors:
            first = schemas.primary(errors)
            self.step(f"bridge asked {shown}: refused, {first.sentence()}")
            await self._respond(body["id"], shown, call_error(first.code, first.sentence()))
            return
        try:
            answer = self.firmware.answer(shown, body["data"])
        except Exception as e:  # a bug of the simulator must not cost the bridge its answer
            self.step(f"bridge asked {shown}: failed ({type(e).__name__}: {e})")
            await self._respond(
                body["id"], shown, call_error("InternalError", "The charger failed to answer")
            )
            return
        self.step(answer.text)
        if answer.data is not None:
            await self._respond(body["id"], shown, answer.data)
        await self._publish_updates(answer.updates)
        if shown == "stop_charging":  # counted once its updates are out: the scenario goes on
            self.stops.append(body["data"]["evse_id"])

    def _request_errors(self, body: Data, name: str) -> list[schemas.SchemaError]:
        try:
            validate = schemas.envelope_validator(f"{name}.request")
        except KeyError:
            return schemas.envelope_validator("envelope")(body)
        errors = validate(body)
        if name == "ocpp_message":
            # Any action may be delegated; which the charger handles is its own to say.
            errors = [
                e for e in errors if (e.path, e.keyword) != (("data", "message_name"), "enum")
            ]
        return errors

    # --- what the simulator sends

    async def _send(self, body: Data) -> None:
        key = f"{body['name']}.{body['type']}"
        try:
            validate = schemas.envelope_validator(key)
        except KeyError:
            if body["type"] != "response":
                raise InvalidMessage(f"there is no schema for {key}") from None
            validate = schemas.envelope_validator("error.response")
        errors = validate(body)
        if errors:
            raise InvalidMessage(f"{key} fails its schema: {schemas.primary(errors).sentence()}")
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected")
        self.sent.append(body)
        await client.publish(self.options.request_topic, json.dumps(body), qos=1)

    async def _respond(self, message_id: str, name: str, data: Data) -> None:
        await self._send({"id": message_id, "name": name, "type": "response", "data": data})

    async def _update(self, name: str, data: Data) -> None:
        await self._send({"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data})

    async def _publish_updates(self, updates: list[Update]) -> None:
        for update in updates:
            await self._update(update.name, update.data)
            self.step(update.text)

    async def request(self, name: str, data: Data, timeout: float | None = None) -> Data:
        """Ask the bridge; its response's data (checked against its schema)."""
        timeout = self.options.timeout if timeout is None else timeout
        message_id = str(uuid.uuid4())
        future: asyncio.Future[Data] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = future
        try:
            await self._send({"id": message_id, "name": name, "type": "request", "data": data})
            async with asyncio.timeout(timeout):
                body = await future
        except TimeoutError:
            raise ScenarioFailed(
                f"the bridge did not answer {name} within {timeout:g} s."
            ) from None
        finally:
            self._answers.pop(message_id, None)
        self._check(body, f"{name}.response")
        answer = body.get("data")
        if not isinstance(answer, dict):
            raise ScenarioFailed(f"the bridge's {name} answer has no data object.")
        return answer

    # --- waiting

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until `done()` holds (re-checked after every message), at most `timeout`."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            return done()
        return True

    async def expect(self, done: Callable[[], bool], what: str) -> None:
        if not await self.until(done, self.options.timeout):
            raise ScenarioFailed(f"no {what} from the bridge within {self.options.timeout:g} s.")

    # --- the scenario

    async def _play(self) -> None:
        o = self.options
        if o.scenario == "idle":
            self.step("idle: answering the bridge's requests until stopped (Ctrl-C)")
            await asyncio.Future()  # until cancelled
        await self.expect(lambda: self.service_status == "ready", "service_status ready")
        if o.wait_csms > 0:
            await self._wait_csms()
        for number in range(1, o.repeat + 1):
            await self.session(number)
        self.step(f"scenario completed: {o.repeat} session{'s' if o.repeat > 1 else ''}")

    async def _wait_csms(self) -> None:
        """Authorize needs the CSMS: wait a little for the bridge's connection and boot."""
        try:
            answer = await self.request("websocket_status", {}, WEBSOCKET_STATUS_TIMEOUT)
        except ScenarioFailed:
            answer = {}
        if answer.get("status") == "connected":
            self.step("bridge: CSMS connected (websocket_status response)")
            # Seen connecting, it has yet to boot; connected before we came, it has booted.
            if self.boot_status == "accepted" or not self.saw_connection:
                return
        self.step(f"waiting up to {self.options.wait_csms:g} s for the bridge's CSMS boot")
        if not await self.until(lambda: self.boot_status == "accepted", self.options.wait_csms):
            self.step("the CSMS has not accepted the station yet: playing the session anyway")

    def _authorization(self) -> Data:
        o = self.options
        data: Data = {"evse_id": str(o.evse), "token_type": o.token_type}
        if o.token_type != "no_authorization":  # noqa: S105 - an IdTokenEnumType
            data["id_token"] = o.token
        return data

    async def _present_token(self, why: str) -> tuple[str, str]:
        """The token at the reader: the bridge's authorization status ("error" when it could
        not take the request) and how to say it."""
        o = self.options
        self.step(f"EVSE {o.evse} token {o.token} presented {why} (authorization request)")
        answer = await self.request("authorization", self._authorization())
        if answer.get("message_type") == "CallError":
            status = "error"
            shown = f"refused ({answer.get('error_code')}: {answer.get('error_description')})"
        else:
            status = shown = str(answer.get("status"))
        self.step(f"bridge: token {o.token} {shown} (authorization response)")
        return status, shown

    async def session(self, number: int) -> None:
        """One charging session on the chosen EVSE (SESSION_API.md, "Transactions")."""
        o = self.options
        evse = self.firmware.evses[o.evse]
        firmware, eid, connector = self.firmware, evse.evse_id, o.connector
        if o.repeat > 1:
            self.step(f"EVSE {eid} session {number} of {o.repeat}")
        start_wh = evse.energy_wh
        seen, stops = len(self.transactions), self.stops.count(eid)
        await self._publish_updates([evse.set_pilot(connector, "A1")])
        await self._publish_updates(firmware.plug_in(evse, connector))
        status, shown = await self._present_token("to start")
        if status != "accepted":
            await self._publish_updates(firmware.unplug(evse, connector))
            if status == "error":
                raise ScenarioFailed(
                    f"the bridge could not take the authorization of token {o.token} on EVSE "
                    f"{eid}: {shown}."
                )
            raise ScenarioFailed(f"the bridge answered {status} for token {o.token} on EVSE {eid}.")
        await self._publish_updates(firmware.start_charging(evse, connector))

        def stopped() -> bool:
            return self.stops.count(eid) > stops

        def ended() -> bool:
            return any(
                t.get("evse_id") == eid and t.get("status") == "ended"
                for t in self.transactions[seen:]
            )

        if await self.until(stopped, o.charge_seconds):
            self.step(f"EVSE {eid} charging stopped by the bridge")
        elif o.stop == "token":
            status, shown = await self._present_token("again to stop")
            if status != "accepted" or not await self.until(stopped, o.timeout):
                what = "no stop_charging" if status == "accepted" else f"token {shown}"
                if o.expect_transaction:
                    await self._publish_updates(firmware.stop(evse))
                    await self._publish_updates(firmware.unplug(evse, connector))
                    raise ScenarioFailed(
                        f"the bridge did not stop charging on EVSE {eid} after the stopping "
                        f"token ({what})."
                    )
                self.step(f"EVSE {eid} stops charging itself ({what})")
                await self._publish_updates(firmware.stop(evse))
        await self._publish_updates(firmware.unplug(evse, connector))
        if o.expect_transaction:
            await self.expect(ended, f"transaction_status ended for EVSE {eid}")
        self.step(f"EVSE {eid} session done: {evse.energy_wh - start_wh:.1f} Wh charged")


async def _cancel(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
