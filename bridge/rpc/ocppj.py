"""OCPP-J RPC over one WebSocket (OCPP 2.0.1 part 4, 4): frames, correlation, concurrency.

Owned here rather than taken from `ocpp.charge_point.ChargePoint`, whose read loop awaits each
handler (a handler that waits stalls the session) and which neither answers malformed frames nor
knows all RPC error codes.

- The reader never awaits a handler: each incoming CALL runs in its own task (at most
  `MAX_INCOMING` at once, which throttles the reader).
- At most one outgoing CALL is outstanding (4.1.1). Its messageId is the caller's: the outbound
  queue keeps a message's id across retries.
- A CALL of ours ends in a CallResult, a CallError or a NoAnswer (offline / timeout), never an
  exception.
- A frame whose message id cannot be read is answered with id "-1" (4.2.3); answers are never
  answered; unknown message types are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from websockets.exceptions import ConnectionClosed

from bridge import jsontext, schemas
from bridge.rpc import ERROR_CODES, CallError, CallResult, NoAnswer, Outcome
from bridge.rpc.correlator import Correlator
from bridge.rpc.request import Request
from bridge.versions import ERROR_CODE_ALIASES

log = logging.getLogger(__name__)

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MESSAGE_ID_MAX: Final = 36
MAX_INCOMING: Final = 8


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    action: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Answer:
    """A CALLRESULT or CALLERROR frame: the answer to one of our CALLs."""

    id: str
    result: CallResult | CallError


class FrameError(Exception):
    """A frame that is not valid OCPP-J; `reply` is the CALLERROR to send back, if any."""

    def __init__(self, reason: str, reply: str | None) -> None:
        super().__init__(reason)
        self.reply = reply


def encode_call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return jsontext.dumps([CALL, message_id, action, payload])


def encode_answer(message_id: str, result: CallResult | CallError) -> str:
    if isinstance(result, CallResult):
        return jsontext.dumps([CALLRESULT, message_id, result.payload])
    return jsontext.dumps([CALLERROR, message_id, result.code, result.description, result.details])


def _rpc_error(message_id: str, description: str) -> str:
    return encode_answer(message_id, CallError("RpcFrameworkError", description))


def parse(frame: str | bytes) -> Call | Answer | None:
    """One received frame; None for a message type to ignore. FrameError when it is not OCPP-J."""
    try:
        text = frame.decode() if isinstance(frame, bytes) else frame
        message = jsontext.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FrameError(
            "not valid JSON", _rpc_error("-1", "The frame is not valid JSON")
        ) from None
    if not isinstance(message, list) or not message:
        raise FrameError("not a JSON array", _rpc_error("-1", "The frame is not an OCPP-J array"))
    kind = message[0]
    raw_id = message[1] if len(message) > 1 else None
    readable_id = raw_id if isinstance(raw_id, str) and raw_id else None
    if kind == CALL and not isinstance(kind, bool):
        if readable_id is None or len(message) != 4:
            reply_id = readable_id or "-1"
            raise FrameError(
                "malformed CALL", _rpc_error(reply_id, "A CALL is [2, messageId, action, payload]")
            )
        if len(readable_id) > MESSAGE_ID_MAX:
            raise FrameError(
                "message id too long",
                _rpc_error(readable_id, f"messageId is longer than {MESSAGE_ID_MAX} characters"),
            )
        if not isinstance(message[2], str):
            raise FrameError(
                "action is not a string", _rpc_error(readable_id, "Action must be a string")
            )
        return Call(readable_id, message[2], message[3])
    if kind == CALLRESULT and not isinstance(kind, bool):
        if readable_id is None or len(message) != 3:
            raise FrameError("malformed CALLRESULT", None)
        return Answer(readable_id, CallResult(message[2] if isinstance(message[2], dict) else {}))
    if kind == CALLERROR and not isinstance(kind, bool):
        if readable_id is None or len(message) != 5:
            raise FrameError("malformed CALLERROR", None)
        code = message[2] if isinstance(message[2], str) else jsontext.dumps(message[2])
        code = ERROR_CODE_ALIASES.get(code, code)
        details = message[4] if isinstance(message[4], dict) else {}
        if code not in ERROR_CODES:
            details = {**details, "receivedCode": str(code)[:50]}
            code = "GenericError"
        description = str(message[3])[:255] if message[3] is not None else ""
        return Answer(readable_id, CallError(code, description, details))
    if isinstance(kind, int) and not isinstance(kind, bool):
        return None  # an unknown message type: ignored (OCPP 2.0.1 errata)
    raise FrameError(
        "no message type", _rpc_error(readable_id or "-1", "MessageTypeId must be 2, 3 or 4")
    )


class WebSocket(Protocol):
    """What we use of a websockets connection."""

    @property
    def subprotocol(self) -> Any: ...

    async def send(self, message: str) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...


HandleCall = Callable[[Request], Awaitable[CallResult | CallError]]
Answered = Callable[[CallResult | CallError], None]


class RpcConnection:
    """OCPP-J over one open WebSocket; `serve()` reads until the socket closes.

    `handle_call` executes each CALL from the CSMS; `answered` gets each result once its
    response is sent (to carry out the effects the handler asked for).
    """

    def __init__(
        self,
        websocket: WebSocket,
        version: str,
        handle_call: HandleCall,
        message_timeout: float,
        answered: Answered | None = None,
    ) -> None:
        self.websocket = websocket
        self.version = version
        self.handle_call = handle_call
        self.answered = answered
        self.message_timeout = message_timeout
        self.closed = asyncio.Event()
        self._call_lock = asyncio.Lock()
        self._pending: Correlator[Outcome] = Correlator()
        self._slots = asyncio.Semaphore(MAX_INCOMING)
        self._incoming: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def spawn(self, coroutine: Awaitable[None]) -> None:
        """Run work that belongs to this connection (cancelled when it closes)."""

        async def run() -> None:
            try:
                await coroutine
            except (ConnectionClosed, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("a task of the CSMS connection failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve(self) -> None:
        """Read frames until the WebSocket closes (returns normally then)."""
        try:
            while True:
                frame = await self.websocket.recv()
                try:
                    message = parse(frame)
                except FrameError as e:
                    log.warning("CSMS sent an invalid frame: %s", e)
                    if e.reply is not None:
                        await self.websocket.send(e.reply)
                    continue
                if isinstance(message, Call):
                    if message.id in self._incoming:  # 4.2.3: that id is being handled already
                        await self.websocket.send(
                            _rpc_error(message.id, "A CALL with this messageId is being handled")
                        )
                        continue
                    await self._slots.acquire()
                    self._incoming.add(message.id)
                    self._idle.clear()
                    self.spawn(self._answer(message))
                elif isinstance(message, Answer):
                    self._resolve(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._pending.close(NoAnswer("offline", "the CSMS connection closed"))
            for task in list(self._tasks):
                task.cancel()

    async def _answer(self, call: Call) -> None:
        try:
            request = Request("csms", self.version, call.action, call.payload, call.id)
            result = await self.handle_call(request)
            log.debug("CSMS %s %s → %s", call.action, call.id, type(result).__name__)
            await self.websocket.send(encode_answer(call.id, result))
            if self.answered is not None:
                self.answered(result)
        finally:
            self._incoming.discard(call.id)
            self._slots.release()
            if not self._incoming:
                self._idle.set()

    def _resolve(self, answer: Answer) -> None:
        action = self._pending.context(answer.id)
        if action is None:
            log.warning("CSMS answered an unknown messageId %s", answer.id[:36])
            return
        result = answer.result
        if isinstance(result, CallResult):
            errors = schemas.ocpp_validator(self.version, action, response=True)(result.payload)
            # Tolerant where OCPP allows: a malformed string (e.g. a currentTime without a UTC
            # offset) does not void the answer; whoever uses that field checks it.
            malformed = [e for e in errors if e.keyword == "format"]
            errors = [e for e in errors if e.keyword != "format"]
            if errors:
                first = schemas.primary(errors)
                log.warning("CSMS %s response is invalid: %s", action, first.sentence())
                result = CallError(first.code, f"{action} response: {first.sentence()}")
            elif malformed:
                log.warning("CSMS %s response: %s (accepted)", action, malformed[0].sentence())
        self._pending.resolve(answer.id, result)

    async def call(
        self, message_id: str, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> Outcome:
        """Send a CALL and wait for its answer (at most MessageTimeout). Never raises."""
        async with self._call_lock:
            if self.closed.is_set():
                return NoAnswer("offline", "the CSMS connection is closed")
            self._pending.open(message_id, action)
            try:
                await self.websocket.send(encode_call(message_id, action, payload))
            except ConnectionClosed:
                self._pending.forget(message_id)
                return NoAnswer("offline", "the CSMS connection closed")
            answer = await self._pending.wait(message_id, timeout or self.message_timeout)
            if answer is None:
                return NoAnswer("timeout", f"no answer to {action} within MessageTimeout")
            return answer

    async def close_when_idle(self, code: int = 1000, reason: str = "") -> None:
        """Close once every CALL received so far is answered and our own CALL has its answer."""
        await self._idle.wait()
        async with self._call_lock:
            await self.websocket.close(code, reason)
