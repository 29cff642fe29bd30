"""A small demo CSMS on the `ocpp` library: for the quick start and, in-process, for the tests.

`python -m bridge.demo_csms --port 9000` serves `ws://127.0.0.1:9000/ocpp/<station id>`. In tests:

    async with DemoCsms(boot_status="Pending") as csms:   # port 0: a free port
        ...connect a station to csms.url + "/CS1"...
        await csms.wait_for("BootNotification", station_id="CS1")
        result = await csms.call("CS1", "GetVariables", {"getVariableData": [...]})

Incoming CALLs are validated against the official schemas by the library and answered by its
handlers; every frame is also recorded raw (camelCase, as on the wire), because the library's
snake_case conversion mangles free-form keys (`DataTransfer.data`, `customData`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import logging
import os
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, unpack, validate_payload
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result, datatypes
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from bridge.timeutil import ocpp_timestamp

log = logging.getLogger("bridge.demo_csms")
_F = TypeVar("_F", bound=Callable[..., Any])


def _on(action: str) -> Callable[[_F], _F]:
    """`ocpp.routing.on`, typed (the library ships no type hints)."""
    decorator: Callable[[_F], _F] = on(action)
    return decorator


@dataclass(frozen=True)
class Received:
    station_id: str
    action: str
    payload: dict[str, Any]  # raw JSON, camelCase
    at: float  # time.monotonic()


@dataclass(frozen=True)
class Attempt:
    station_id: str  # last path segment ("" when there is none)
    at: float
    status: int  # 101, or the HTTP status of the refusal (401, 404, 400…)
    authorization: str | None  # the Basic-auth user name only, never the password
    subprotocols_offered: list[str]


@dataclass(frozen=True)
class SchemaError:
    """A message from a station that the CSMS could not accept."""

    station_id: str
    action: str  # "" when the frame was not OCPP-J at all
    kind: str  # "request" (a CALL, answered with a CallError), "response" (to our call()), "frame"
    code: str  # the OCPP-J error code (FormatViolation, NotImplemented, …)
    description: str
    at: float


class CallErrorReceived(Exception):
    def __init__(self, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {description}")
        self.code, self.description, self.details = code, description, details


def _station_id(path: str) -> str | None:
    """`/ocpp/CP001` → `CP001`; None unless the path is `<something>/<id>`."""
    prefix, _, last = urlsplit(path).path.rpartition("/")
    return unquote(last) if last and prefix.strip("/") else None


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = (
            base64.b64decode(token.strip(), validate=True).decode().partition(":")
        )
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        return None
    return (user, password) if colon else None


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _explain(error: OCPPError) -> tuple[str, str]:
    """(code, description) of a library error; its details' `cause` says what was wrong."""
    cause = error.details.get("cause") if isinstance(error.details, dict) else None
    return str(error.code), str(cause or error.description)


class StationConnection(ChargePoint):  # type: ignore[misc]  # ocpp ships no type hints
    """The CSMS side of one station's WebSocket: the library's v201 ChargePoint.

    Why `call()` does not use the library's `ChargePoint.call()`: that one takes a dataclass whose
    class name is the action, converts snake_case→camelCase and back (mangling free-form keys),
    validates the outgoing request (tests must be able to send invalid ones), and reads responses
    from a single queue. `skip_schema_validation` turns off only the validation, not the conversion.
    So `call()` builds the frame with `ocpp.messages.Call`, and `route_message` — the one place
    every incoming frame passes — resolves responses by unique id and records CALLs raw before the
    library's `_handle_call` validates them, converts them and runs the `@on` handlers below.
    """

    def __init__(self, station_id: str, ws: ServerConnection, csms: DemoCsms) -> None:
        super().__init__(station_id, ws)
        self.ws = ws
        self._csms = csms
        self._pending: dict[str, asyncio.Future[Any]] = {}

    async def _send(self, message: str) -> None:
        self._csms.raw_frames.append((self.id, "out", message))
        log.info("CSMS → %s: %s", self.id, _short(message))
        try:
            await self.ws.send(message)
        except ConnectionClosed:
            # The station closed meanwhile; keep reading the frames it sent before closing.
            log.info("%s: closed before this frame could be sent", self.id)

    async def route_message(self, raw_msg: str) -> None:
        csms = self._csms
        csms.raw_frames.append((self.id, "in", raw_msg))
        log.info("%s → CSMS: %s", self.id, _short(raw_msg))
        try:
            msg = unpack(raw_msg)
        except OCPPError as error:  # like the library: logged and recorded, not answered
            csms._reject(self.id, "", "frame", *_explain(error))
            return
        if msg.message_type_id != MessageType.Call:
            future = self._pending.get(msg.unique_id)
            if future is not None and not future.done():
                future.set_result(msg)
            else:
                log.warning("%s: response to no pending call: %s", self.id, _short(raw_msg))
            return
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        csms.received.append(Received(self.id, str(msg.action), payload, time.monotonic()))
        await csms._notify()
        try:  # the library validates (request and response), converts and calls the handler
            await self._handle_call(msg)
        except OCPPError as error:
            csms._reject(self.id, str(msg.action), "request", *_explain(error))
            await self._send(msg.create_call_error(error).to_json())

    async def raw_call(self, action: str, payload: dict[str, Any], limit: float) -> dict[str, Any]:
        message = Call(str(uuid.uuid4()), action, payload)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(limit):
                async with self._call_lock:  # OCPP-J: one outstanding CALL per direction
                    self._pending[message.unique_id] = future
                    await self._send(message.to_json())
                    response = await future
        except TimeoutError:
            raise TimeoutError(f"{self.id} did not answer {action} within {limit} s") from None
        finally:
            self._pending.pop(message.unique_id, None)
        if response.message_type_id == MessageType.CallError:
            details = response.error_details if isinstance(response.error_details, dict) else {}
            raise CallErrorReceived(response.error_code, response.error_description, details)
        try:
            await validate_payload(CallResult(message.unique_id, response.payload, action), "2.0.1")
        except OCPPError as error:
            if error.code != "NotImplemented":  # NotImplemented: no schema for this action
                self._csms._reject(self.id, action, "response", *_explain(error))
        result: dict[str, Any] = response.payload
        return result

    def fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.id} disconnected"))

    @_on("BootNotification")
    def on_boot_notification(self, **_: Any) -> Any:
        csms = self._csms
        status = csms.boot_statuses.pop(0) if csms.boot_statuses else csms.boot_status
        return call_result.BootNotification(
            current_time=ocpp_timestamp(), interval=csms.heartbeat_interval, status=status
        )

    @_on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=ocpp_timestamp())

    @_on("Authorize")
    def on_authorize(self, **_: Any) -> Any:
        return call_result.Authorize(id_token_info=datatypes.IdTokenInfoType(status="Accepted"))

    @_on("SignCertificate")
    def on_sign_certificate(self, **_: Any) -> Any:
        return call_result.SignCertificate(status="Accepted")

    @_on("DataTransfer")
    def on_data_transfer(self, **_: Any) -> Any:
        return call_result.DataTransfer(status="Rejected")


# Actions answered with an empty payload. The library routes by method name (`ocpp.routing.on`
# records func.__name__), so each generated handler gets its own name before it is decorated.
_EMPTY_ANSWERS = (
    *("StatusNotification", "NotifyReport", "NotifyEvent", "SecurityEventNotification"),
    *("TransactionEvent", "MeterValues", "FirmwareStatusNotification", "LogStatusNotification"),
    "ReservationStatusUpdate",
)


def _empty_answer(action: str) -> Callable[..., Any]:
    def handler(self: StationConnection, **_: Any) -> Any:
        return getattr(call_result, action)()

    handler.__name__ = f"on_{action}"
    return _on(action)(handler)


for _action in _EMPTY_ANSWERS:
    setattr(StationConnection, f"on_{_action}", _empty_answer(_action))


class DemoCsms:
    """A WebSocket CSMS serving `<url>/<station id>`; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        boot_status: str = "Accepted",
        heartbeat_interval: int = 300,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        subprotocols: Sequence[str] = ("ocpp2.0.1",),
        select_subprotocol: bool = True,
    ) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.boot_status = boot_status
        self.boot_statuses: list[str] = []
        self.heartbeat_interval = heartbeat_interval
        self.password = password
        self.subprotocols = list(subprotocols)
        self.select_subprotocol = select_subprotocol
        self.received: list[Received] = []
        self.attempts: list[Attempt] = []
        self.schema_errors: list[SchemaError] = []
        self.raw_frames: list[tuple[str, str, str]] = []
        self.connected: dict[str, StationConnection] = {}
        self._changed = asyncio.Condition()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.ssl_context else 'ws'}://{host}:{self.port}/ocpp"

    async def __aenter__(self) -> DemoCsms:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            ssl=self.ssl_context,
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=self._select_subprotocol,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_connected(self, station_id: str, timeout: float = 10) -> None:
        await self._wait(lambda: station_id in self.connected, timeout, f"{station_id} to connect")

    async def wait_for(
        self,
        action: str,
        *,
        station_id: str | None = None,
        count: int = 1,
        timeout: float = 10,
        predicate: Callable[[Received], bool] | None = None,
    ) -> list[Received]:
        """The first `count` matching CALLs received (also those received before the call)."""

        def matching() -> list[Received]:
            return [
                r
                for r in self.received
                if r.action == action
                and (station_id is None or r.station_id == station_id)
                and (predicate is None or predicate(r))
            ]

        what = f"{count} {action} from {station_id or 'any station'}"
        await self._wait(lambda: len(matching()) >= count, timeout, what)
        return matching()[:count]

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float = 10
    ) -> dict[str, Any]:
        """Send a CALL; return the raw CallResult payload or raise CallErrorReceived."""
        return await self._connection(station_id).raw_call(action, payload, timeout)

    async def disconnect(self, station_id: str, code: int = 1000) -> None:
        connection = self._connection(station_id)
        await connection.ws.close(code)
        await self._wait(lambda: self.connected.get(station_id) is not connection, 10, "close")

    async def send_raw(self, station_id: str, text: str) -> None:
        await self._connection(station_id)._send(text)

    def _connection(self, station_id: str) -> StationConnection:
        try:
            return self.connected[station_id]
        except KeyError:
            raise ConnectionError(f"station {station_id!r} is not connected") from None

    async def _wait(self, done: Callable[[], bool], limit: float, what: str) -> None:
        try:
            async with asyncio.timeout(limit), self._changed:
                await self._changed.wait_for(done)
        except TimeoutError:
            raise TimeoutError(f"waited {limit} s for {what}") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _reject(self, station_id: str, action: str, kind: str, code: str, text: str) -> None:
        log.warning("%s: %s %s rejected: %s: %s", station_id, kind, action, code, text)
        now = time.monotonic()
        self.schema_errors.append(SchemaError(station_id, action, kind, code, text, now))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        station_id = _station_id(request.path)
        if station_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Connect to <url>/<station id>.\n")
        if self.password is not None:
            credentials = _basic_auth(request.headers.get("Authorization"))
            expected = (station_id, self.password)
            if credentials is None or not all(
                hmac.compare_digest(a.encode(), b.encode())
                for a, b in zip(credentials, expected, strict=True)
            ):
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid credentials.\n")
                response.headers["WWW-Authenticate"] = 'Basic realm="demo-csms"'
                return response
        return None

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        station_id = urlsplit(request.path).path.rpartition("/")[2]
        credentials = _basic_auth(request.headers.get("Authorization"))
        offered = [
            p.strip()
            for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in header.split(",")
        ]
        user = credentials[0] if credentials else None
        attempt = Attempt(station_id, time.monotonic(), response.status_code, user, offered)
        self.attempts.append(attempt)
        selected = response.headers.get("Sec-WebSocket-Protocol")
        log.info(
            "%s: HTTP %d (user %s, offered %s, selected %s)",
            station_id or request.path,
            *(response.status_code, user, offered, selected),
        )

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        if not self.select_subprotocol:
            return None
        for subprotocol in self.subprotocols:
            if subprotocol in offered:
                return Subprotocol(subprotocol)
        raise NegotiationError(f"no subprotocol of {self.subprotocols} offered")  # → HTTP 400

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        station_id = _station_id(ws.request.path) or ""
        connection = StationConnection(station_id, ws, self)
        self.connected[station_id] = connection
        log.info("%s: connected from %s", station_id, ws.remote_address)
        await self._notify()
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    await connection.route_message(frame)
                else:
                    self.raw_frames.append((station_id, "in", repr(frame)))
                    self._reject(station_id, "", "frame", "FormatViolation", "binary frame")
        except ConnectionClosed:
            pass
        finally:
            connection.fail_pending()
            if self.connected.get(station_id) is connection:
                del self.connected[station_id]
            log.info("%s: disconnected (code %s)", station_id, ws.close_code)
            await self._notify()


def _server_ssl(certfile: str, keyfile: str | None, client_ca: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _serve(csms: DemoCsms) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with csms:
        log.info("demo CSMS listening: stations connect to %s/<station id>", csms.url)
        await stop.wait()
    log.info("demo CSMS stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.demo_csms", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--boot-status", default="Accepted", choices=["Accepted", "Pending", "Rejected"]
    )
    parser.add_argument("--interval", type=int, default=300, help="heartbeat interval (s)")
    parser.add_argument(
        "--password",
        default=os.environ.get("DEMO_CSMS_PASSWORD"),
        help="require Basic auth '<station id>:PW' (default: env DEMO_CSMS_PASSWORD)",
    )
    parser.add_argument("--certfile", help="serve wss:// with this certificate (PEM)")
    parser.add_argument("--keyfile", help="its private key (PEM), unless in --certfile")
    parser.add_argument("--client-ca", help="require client certificates issued by this CA")
    args = parser.parse_args(argv)
    if (args.keyfile or args.client_ca) and not args.certfile:
        parser.error("--keyfile and --client-ca need --certfile")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    for noisy in ("websockets", "ocpp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        context = (
            _server_ssl(args.certfile, args.keyfile, args.client_ca) if args.certfile else None
        )
        csms = DemoCsms(
            args.host,
            args.port,
            boot_status=args.boot_status,
            heartbeat_interval=args.interval,
            password=args.password or None,
            ssl_context=context,
        )
        asyncio.run(_serve(csms))
    except (OSError, ssl.SSLError) as error:  # unreadable certificate, port in use, …
        print(f"demo_csms: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
