"""OCPP-J framing and the RPC connection (OCPP 2.0.1 part 4), with an in-memory WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosedOK
from websockets.frames import Close

from bridge.backoff import delay as backoff_delay
from bridge.rpc import CallError, CallResult, NoAnswer
from bridge.rpc.ocppj import (
    Answer,
    Call,
    FrameError,
    HandleCall,
    RpcConnection,
    parse,
)
from bridge.rpc.request import Request


def test_parse_the_three_message_types() -> None:
    assert parse('[2,"a","Heartbeat",{}]') == Call("a", "Heartbeat", {})
    assert parse('[3,"a",{"x":1}]') == Answer("a", CallResult({"x": 1}))
    answer = parse('[4,"a","NotImplemented","no",{}]')
    assert answer == Answer("a", CallError("NotImplemented", "no", {}))


@pytest.mark.parametrize(
    ("frame", "reply_id"),
    [
        ("not json", "-1"),
        ("{}", "-1"),
        ("[]", "-1"),
        ('["2","a","Heartbeat",{}]', "a"),
        ("[2]", "-1"),
        ('[2,"a","Heartbeat"]', "a"),
        ('[2,17,"Heartbeat",{}]', "-1"),
        ('[2,"a",5,{}]', "a"),
        ('[2,"' + "x" * 37 + '","Heartbeat",{}]', "x" * 37),
    ],
)
def test_a_broken_call_is_answered_with_rpc_framework_error(frame: str, reply_id: str) -> None:
    with pytest.raises(FrameError) as info:
        parse(frame)
    assert info.value.reply is not None
    reply = json.loads(info.value.reply)
    assert reply[:3] == [4, reply_id, "RpcFrameworkError"]
    assert isinstance(reply[4], dict)


@pytest.mark.parametrize("frame", ['[3,"a"]', "[3,7,{}]", '[4,"a","X"]'])
def test_broken_answers_are_never_answered(frame: str) -> None:
    with pytest.raises(FrameError) as info:
        parse(frame)
    assert info.value.reply is None


def test_unknown_message_types_are_ignored() -> None:
    assert parse('[5,"a",{}]') is None


def test_old_error_code_spellings_and_unknown_codes_are_understood() -> None:
    assert parse('[4,"a","OccurenceConstraintViolation","",{}]') == Answer(
        "a", CallError("OccurrenceConstraintViolation", "", {})
    )
    answer = parse('[4,"a","WeirdCode","",{}]')
    assert isinstance(answer, Answer)
    assert isinstance(answer.result, CallError)
    assert answer.result.code == "GenericError"
    assert answer.result.details["receivedCode"] == "WeirdCode"


@settings(max_examples=500, deadline=None)
@given(frame=st.text(max_size=80) | st.binary(max_size=80))
def test_any_frame_parses_or_raises_frame_error(frame: str | bytes) -> None:
    try:
        parse(frame)
    except FrameError as e:
        if e.reply is not None:
            reply = json.loads(e.reply)
            assert reply[0] == 4
            assert len(reply) == 5


@settings(max_examples=300, deadline=None)
@given(
    frame=st.lists(
        st.one_of(
            st.integers(0, 6),
            st.text(max_size=40),
            st.none(),
            st.dictionaries(st.text(max_size=5), st.integers()),
        ),
        max_size=6,
    )
)
def test_any_json_array_parses_or_raises_frame_error(frame: list[Any]) -> None:
    _parses_or_raises_frame_error(frame)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@given(
    kind=st.sampled_from([2, 3, 4]),
    message_id=st.text(min_size=1, max_size=40),
    rest=st.lists(_json, max_size=4),
)
def test_nearly_valid_frames_parse_or_raise_frame_error(
    kind: int, message_id: str, rest: list[Any]
) -> None:
    """Frames of a known type and a readable id, with any JSON after: e.g. a CALLERROR whose code
    is an object must not escape as a TypeError (it would end the connection's reader)."""
    _parses_or_raises_frame_error([kind, message_id, *rest])


def test_a_call_error_code_that_is_not_a_string_is_a_generic_error() -> None:
    answer = parse('[4,"x",{"a":1},"",{}]')
    assert isinstance(answer, Answer)
    assert answer.result == CallError("GenericError", "", {"receivedCode": '{"a":1}'})


def _parses_or_raises_frame_error(frame: list[Any]) -> None:
    kind = frame[0] if frame else None
    error: FrameError | None = None
    try:
        parsed = parse(json.dumps(frame))
    except FrameError as e:
        error = e
    if error is not None:
        if kind in (3, 4):
            assert error.reply is None  # a broken answer is never answered
        elif error.reply is not None:
            reply = json.loads(error.reply)
            assert reply[0] == 4
            assert len(reply) == 5
        return
    if parsed is None:  # an unknown message type
        assert isinstance(kind, int)
        assert kind not in (2, 3, 4)
    elif isinstance(parsed, Call):
        assert [2, parsed.id, parsed.action, parsed.payload] == frame
    else:
        assert kind in (3, 4)
        assert parsed.id == frame[1]


def test_backoff_follows_ocpp_j_5_3() -> None:
    # WaitMinimum 3, no randomness, doubled RepeatTimes (2) times, then constant.
    assert [backoff_delay(n, 3, 0, 2) for n in range(1, 6)] == [3, 6, 12, 12, 12]
    delays = [backoff_delay(1, 3, 5, 2) for _ in range(200)]
    assert all(3 <= d <= 8 for d in delays)
    assert max(delays) - min(delays) > 1  # the random part is there


class FakeWebSocket:
    """An in-memory peer: frames we send are collected; frames to receive are queued."""

    subprotocol = "ocpp2.0.1"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent_event = asyncio.Event()

    async def send(self, message: str) -> None:
        self.sent.append(message)
        self.sent_event.set()

    async def recv(self) -> str:
        frame = await self.inbox.get()
        if frame is None:
            raise ConnectionClosedOK(Close(1000, ""), Close(1000, ""), True)
        return frame

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inbox.put(None)

    async def next_sent(self) -> list[Any]:
        while not self.sent:
            self.sent_event.clear()
            await asyncio.wait_for(self.sent_event.wait(), 5)
        return json.loads(self.sent.pop(0))


@asynccontextmanager
async def serving(
    handle: HandleCall | None = None, message_timeout: float = 5, answered: Any = None
) -> AsyncIterator[tuple[FakeWebSocket, RpcConnection]]:
    """An RpcConnection reading from a FakeWebSocket; closed (and its reader done) at the end."""
    ws = FakeWebSocket()
    connection = RpcConnection(ws, "ocpp2.0.1", handle, message_timeout, answered)  # type: ignore[arg-type]
    reader = asyncio.create_task(connection.serve())
    try:
        yield ws, connection
    finally:
        await ws.close()
        await reader


async def test_one_outgoing_call_at_a_time_and_answers_correlate() -> None:
    async def handle(request: Request) -> CallResult | CallError:
        return CallResult({})

    async with serving(handle) as (ws, connection):
        first = asyncio.create_task(connection.call("id-1", "Heartbeat", {}))
        second = asyncio.create_task(connection.call("id-2", "Heartbeat", {}))
        frame = await ws.next_sent()
        await asyncio.sleep(0.05)
        assert ws.sent == []  # the second CALL waits for the first answer
        await ws.inbox.put(json.dumps([3, frame[1], {"currentTime": "2026-11-22T10:00:00Z"}]))
        frame2 = await ws.next_sent()
        assert (frame[1], frame2[1]) == ("id-1", "id-2")  # the caller's message ids
        await ws.inbox.put(json.dumps([3, frame2[1], {"currentTime": "2026-11-22T10:00:01Z"}]))
        assert isinstance(await first, CallResult)
        assert isinstance(await second, CallResult)


async def test_an_invalid_answer_becomes_a_call_error() -> None:
    async with serving() as (ws, connection):
        call = asyncio.create_task(connection.call("id-1", "Heartbeat", {}))
        frame = await ws.next_sent()
        await ws.inbox.put(json.dumps([3, frame[1], {"currentTime": 5}]))
        result = await call
        assert isinstance(result, CallError)
        assert result.code == "TypeConstraintViolation"


async def test_a_call_times_out_and_a_lost_connection_ends_waiting_calls() -> None:
    async with serving(message_timeout=0.1) as (ws, connection):
        assert await connection.call("id-1", "Heartbeat", {}) == NoAnswer(
            "timeout", "no answer to Heartbeat within MessageTimeout"
        )
        waiting = asyncio.create_task(connection.call("id-2", "Heartbeat", {}, timeout=5))
        await ws.next_sent()
        await ws.next_sent()
        await ws.close()
        outcome = await waiting
        assert isinstance(outcome, NoAnswer)
        assert outcome.reason == "offline"
        # A CALL on the closed connection: offline at once, nothing sent.
        assert (await connection.call("id-3", "Heartbeat", {})).reason == "offline"  # type: ignore[union-attr]
        assert ws.sent == []


async def test_a_format_error_in_an_answer_is_tolerated() -> None:
    """A CSMS that sends currentTime without a UTC offset still gets its answer taken."""
    async with serving() as (ws, connection):
        call = asyncio.create_task(connection.call("id-1", "Heartbeat", {}))
        frame = await ws.next_sent()
        await ws.inbox.put(json.dumps([3, frame[1], {"currentTime": "2026-11-22T10:00:00"}]))
        assert await call == CallResult({"currentTime": "2026-11-22T10:00:00"})


async def test_incoming_calls_do_not_block_the_reader_and_effects_run_after_the_answer() -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def handle(request: Request) -> CallResult | CallError:
        if request.action == "Slow":
            await release.wait()
        order.append(f"handled {request.action}")
        return CallResult({}, ("effect",) if request.action == "Fast" else ())

    def answered(result: CallResult | CallError) -> None:
        if isinstance(result, CallResult) and result.effects:
            order.append(f"answered, then {result.effects[0]}")

    async with serving(handle, answered=answered) as (ws, _):
        await ws.inbox.put('[2,"1","Slow",{}]')
        await ws.inbox.put('[2,"2","Fast",{}]')
        assert (await ws.next_sent())[1] == "2"  # answered while "Slow" still waits
        await asyncio.sleep(0.01)
        assert order == ["handled Fast", "answered, then effect"]
        release.set()
        assert (await ws.next_sent())[1] == "1"
        # A second CALL with an id being handled is refused.
        release.clear()
        await ws.inbox.put('[2,"3","Slow",{}]')
        await ws.inbox.put('[2,"3","Slow",{}]')
        duplicate = await ws.next_sent()
        assert duplicate[:3] == [4, "3", "RpcFrameworkError"]
        release.set()
        await ws.next_sent()


async def test_malformed_frames_are_answered_and_the_connection_goes_on() -> None:
    async def handle(request: Request) -> CallResult | CallError:
        return CallResult({"status": "Accepted"})

    async with serving(handle) as (ws, _):
        await ws.inbox.put("{{{")
        assert (await ws.next_sent())[:3] == [4, "-1", "RpcFrameworkError"]
        await ws.inbox.put('[3,"unknown-id",{}]')  # an answer to nothing: ignored
        await ws.inbox.put('[2,"ok","ClearCache",{}]')
        assert await ws.next_sent() == [3, "ok", {"status": "Accepted"}]


@pytest.mark.parametrize(
    "frame", ['[2,"a","Heartbeat",{"x":NaN}]', '[2,"a","Heartbeat",{"x":1e400}]']
)
def test_non_json_numbers_are_not_json(frame: str) -> None:
    with pytest.raises(FrameError) as info:
        parse(frame)
    assert info.value.reply is not None
    assert json.loads(info.value.reply)[:3] == [4, "-1", "RpcFrameworkError"]
