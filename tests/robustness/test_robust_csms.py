"""A CSMS that dies, talks nonsense, sends frames beyond max_size or never answers: the bridge keeps
serving MQTT throughout and gets back to a working OCPP session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from bridge.app import Bridge
from bridge.csms_link import LinkState
from bridge.rpc import ERROR_CODES
from bridge.timeutil import ocpp_timestamp
from bridge.transport.csms import MAX_FRAME
from tests.conftest import Broker, running_bridge, write_config
from tests.robustness.robust_support import (
    Liveness,
    Oem,
    RawCsms,
    Responder,
    default_responder,
    fast_backoff,
    keeps_answering,
    oem_client,
)

GET_OFFLINE = {
    "getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}}
    ]
}


@dataclass
class Running:
    bridge: Bridge
    oem: Oem
    liveness: Liveness


@asynccontextmanager
async def station(
    tmp_path: Path, broker: Broker, csms_url: str, message_timeout: int | None = None
) -> AsyncIterator[Running]:
    """The bridge (in this event loop) with its broker and CSMS, an OEM, and a background OEM
    request every 50 ms that must be answered within 3 s the whole time."""
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        evses="[1, 1]",
        csms=f'url = "{csms_url}"',
        extra="[device_model]\n" + fast_backoff(message_timeout),
    )
    async with running_bridge(config) as bridge, oem_client(broker.host, broker.port) as oem:
        async with keeps_answering(oem) as liveness:
            yield Running(bridge, oem, liveness)
        assert all(not t.done() for t in bridge._tasks), "a transport task of the bridge ended"
        assert liveness.failures == [], liveness.failures[:5]
        assert liveness.answered > 0


MakeCsms = Callable[..., Awaitable[RawCsms]]


@pytest.fixture
async def make_csms() -> AsyncIterator[MakeCsms]:
    """Start a RawCsms (stopped after the test, passed or failed)."""
    made: list[RawCsms] = []

    async def make(responder: Responder | None = None) -> RawCsms:
        csms = await RawCsms(responder).start()
        made.append(csms)
        return csms

    yield make
    for csms in made:
        await csms.stop()


async def connected(bridge: Bridge, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while bridge.csms.state is not LinkState.connected:
        assert time.monotonic() < deadline, f"not connected: {bridge.csms.last_error}"
        await asyncio.sleep(0.02)


# --- killed and restarted


@pytest.mark.timeout(60)
async def test_csms_killed_and_restarted_twice(
    tmp_path: Path, broker: Broker, make_csms: MakeCsms
) -> None:
    csms = await make_csms()
    async with station(tmp_path, broker, csms.url) as running:
        bridge, oem = running.bridge, running.oem
        await csms.wait_calls("StatusNotification", 2)
        for round_ in (1, 2):
            await csms.kill()
            killed = time.monotonic()
            while bridge.csms.state is LinkState.connected:
                assert time.monotonic() - killed < 10, "the bridge did not notice the dead CSMS"
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # down for a while: the bridge backs off, MQTT goes on
            await csms.start()  # the same port
            await csms.wait_connections(round_ + 1, timeout=15)
            await connected(bridge)
        # An accepted station does not boot again after a reconnect (OCPP-J 5.3)...
        assert csms.calls["BootNotification"] == 1
        # ...and the new session works both ways.
        reply = await csms.call("GetVariables", GET_OFFLINE)
        assert reply[0] == 3
        assert reply[2]["getVariableResult"][0]["attributeValue"] == "60"
        answer = await oem.ocpp("GetVariables", GET_OFFLINE)
        assert answer["message_type"] == "CallResult"


# --- malformed frames and unknown actions


def frames_to_send(rng: random.Random) -> list[tuple[str | bytes, str | None]]:
    """(frame, the id that must get exactly one reply, or None when no particular reply is due)."""

    def mid() -> str:
        return uuid.UUID(int=rng.getrandbits(128), version=4).hex[:30]

    out: list[tuple[str | bytes, str | None]] = []
    # Well-formed CALLs the station cannot take: each gets one CALLERROR (or CALLRESULT).
    for action, payload in (
        ("Teleport", {}),
        ("Reset", {"type": "Immediate"}),
        ("BootNotification", {}),
        ("Heartbeat", {}),
        ("GetVariables", {}),
        ("GetVariables", {"getVariableData": "all"}),
        ("GetVariables", {"getVariableData": [{"component": {}}]}),
        ("SetVariables", {"setVariableData": [{"component": {"name": "x" * 60}}]}),
        ("GetVariables", []),
        ("GetVariables", None),
        ("GetVariables", {"getVariableData": [[[[[[[[[[]]]]]]]]]]}),
        ("", {}),
        ("x" * 10_000, {}),
        ("GetVariables", {"getVariableData": [{"component": {"name": "\ud800"}}]}),
        ("TriggerMessage", {"requestedMessage": "Teleport"}),
        ("InstallCertificate", {"certificateType": "CSMSRootCertificate", "certificate": "no"}),
        ("DeleteCertificate", {"certificateHashData": {"hashAlgorithm": "MD5"}}),
    ):
        for _ in range(3):
            message_id = mid()
            out.append((json.dumps([2, message_id, action, payload]), message_id))
    # CALLs that are not OCPP-J: an RpcFrameworkError with their id.
    for shape in ([2, "{id}"], [2, "{id}", "GetVariables"], [2, "{id}", 5, {}]):
        message_id = mid()
        text = json.dumps(shape).replace("{id}", message_id)
        out.append((text, message_id))
    long_id = "i" * 37
    out.append((json.dumps([2, long_id, "GetVariables", GET_OFFLINE]), long_id))
    # Junk: not JSON, not an array, unknown message types, answers to nothing.
    junk: list[str | bytes] = [
        "this is not json",
        "",
        "[",
        "{}",
        "[]",
        "null",
        "42",
        '"text"',
        "[2]",
        '[true, "t1", "GetVariables", {}]',
        '["2", "s1", "GetVariables", {}]',
        '[NaN, "n1", "GetVariables", {}]',
        '[1e309, "e1", "GetVariables", {}]',
        '[5, "u1", "Foo", {}]',
        '[99, "u2"]',
        '[3, "nobody-asked", {}]',
        '[3, "nobody-asked"]',
        '[4, "nobody-asked", "GenericError", "x", {}]',
        '[4, "nobody-asked", "NoSuchCode", 7, []]',
        "[" * 100_000 + "]" * 100_000,
        b"\xff\xfe binary garbage \x00\x01",
        b'[2, "bin", "GetVariables", {}]',
        json.dumps([2, None, "GetVariables", {}]),
        json.dumps([2, 7, "GetVariables", {}]),
        '[2, "dup", "GetVariables", {}, {}]',
    ]
    for frame in junk:
        out.append((frame, None))
    # Byte-level mutations of a valid CALL.
    valid = json.dumps([2, "base", "GetVariables", GET_OFFLINE])
    for _ in range(150):
        data = bytearray(valid.encode())
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(32, 127)
        out.append((data.decode("latin-1"), None))
    rng.shuffle(out)
    return out


def is_reply(frame: Any) -> bool:
    """A well-formed CALLRESULT or CALLERROR from the station."""
    if not isinstance(frame, list) or not frame or not isinstance(frame[1], str):
        return False
    if frame[0] == 3:
        return len(frame) == 3 and isinstance(frame[2], dict)
    return (
        frame[0] == 4
        and len(frame) == 5
        and frame[2] in ERROR_CODES
        and isinstance(frame[3], str)
        and len(frame[3]) <= 255
        and isinstance(frame[4], dict)
    )


@pytest.mark.timeout(60)
async def test_malformed_frames_and_unknown_actions_are_answered_on_the_same_connection(
    tmp_path: Path, broker: Broker, make_csms: MakeCsms
) -> None:
    csms = await make_csms()
    async with station(tmp_path, broker, csms.url) as running:
        bridge = running.bridge
        await csms.wait_calls("StatusNotification", 2)
        frames = frames_to_send(random.Random(7))
        for frame, _ in frames:
            await csms.send(frame)
        must_reply = [message_id for _, message_id in frames if message_id is not None]
        await csms.wait(
            lambda: {r[1] for r in csms.replies()} >= set(must_reply), 15, "a reply to each CALL"
        )
        await asyncio.sleep(0.5)
        replies = csms.replies()
        bad = [r for r in replies if not is_reply(r)]
        assert not bad, bad[:5]
        by_id: dict[str, int] = {}
        for reply in replies:
            by_id[reply[1]] = by_id.get(reply[1], 0) + 1
        assert [i for i in must_reply if by_id.get(i) != 1] == []
        assert "nobody-asked" not in by_id  # answers are never answered
        # No message type (true, "2"): an RpcFrameworkError with the id; NaN and 1e309 are not
        # JSON (or, for 1e309, may be): "-1" or the id; unknown types (5, 99) are ignored.
        assert (by_id.get("t1"), by_id.get("s1")) == (1, 1)
        assert by_id.get("n1", 0) <= 1
        assert by_id.get("e1", 0) <= 1
        assert "u1" not in by_id
        assert "u2" not in by_id
        # Unknown action → NotImplemented (OCPP-J), as README says.
        calls = [json.loads(f) for f, i in frames if i and isinstance(f, str)]
        teleports = [c[1] for c in calls if len(c) == 4 and c[2] == "Teleport"]
        assert len(teleports) == 3
        assert {r[2] for r in replies if r[1] in teleports} == {"NotImplemented"}
        # The same connection still works, and MQTT never stopped.
        assert len(csms.connections) == 1
        assert bridge.csms.state is LinkState.connected
        reply = await csms.call("GetVariables", GET_OFFLINE)
        assert reply[0] == 3


# --- frames beyond max_size


@pytest.mark.timeout(60)
async def test_frames_beyond_max_size_close_the_connection_and_it_reconnects_with_back_off(
    tmp_path: Path, broker: Broker, make_csms: MakeCsms
) -> None:
    csms = await make_csms()
    async with station(tmp_path, broker, csms.url) as running:
        bridge = running.bridge
        await csms.wait_calls("StatusNotification", 2)
        # Exactly MAX_FRAME bytes is still a frame: answered (too big for BytesPerMessage).
        padding = "p" * MAX_FRAME
        head = json.dumps([2, "edge", "GetVariables", {**GET_OFFLINE, "customData": {}}])
        frame = head.replace('"customData": {}', '"customData": {"vendorId": "x", "pad": ""}')
        frame = frame.replace('"pad": ""', '"pad": "' + padding[: MAX_FRAME - len(frame)] + '"')
        assert len(frame.encode()) == MAX_FRAME
        await csms.send(frame)
        await csms.wait(lambda: any(r[1] == "edge" for r in csms.replies()), 10, "the reply")
        [reply] = [r for r in csms.replies() if r[1] == "edge"]
        assert reply[:3] == [4, "edge", "FormatViolation"]  # BytesPerMessage[GetVariables]
        assert len(csms.connections) == 1
        # One byte more, on every connection: closed each time (1009), reconnected, backing off.
        started = time.monotonic()
        while time.monotonic() - started < 6:
            if bridge.csms.state is LinkState.connected:
                with contextlib.suppress(ConnectionClosed):
                    await csms.send("x" * (MAX_FRAME + 1))
            await asyncio.sleep(0.05)
        attempts = csms.connected_at
        gaps = [b - a for a, b in zip(attempts[1:], attempts[2:], strict=False)]
        assert 3 <= len(attempts) <= 8, attempts  # back-off 1 s (FAST_BACKOFF): no hot loop
        assert all(gap >= 0.9 for gap in gaps), gaps
        closed = [code for i, code in csms.close_codes.items() if i < len(attempts) - 1]
        assert set(closed) == {1009}, csms.close_codes  # "message too big"
        # Left alone, the last connection stays up and serves.
        await connected(bridge)
        await asyncio.sleep(1.5)
        assert bridge.csms.state is LinkState.connected
        reply = await csms.call("GetVariables", GET_OFFLINE)
        assert reply[0] == 3


# --- a CSMS that never answers


def silent_for(*silences: tuple[str, int]) -> Responder:
    """Answers normally (heartbeat interval 1 s) except the n-th CALL of the given actions."""

    def answer(action: str, payload: Any, seen: int) -> Any:
        if (action, seen) in silences:
            return None
        if action == "BootNotification":
            return {"currentTime": ocpp_timestamp(), "interval": 1, "status": "Accepted"}
        return default_responder()(action, payload, seen)

    return answer


@pytest.mark.timeout(80)
async def test_a_csms_that_never_answers_the_boot_notification(
    tmp_path: Path, broker: Broker, make_csms: MakeCsms, caplog: pytest.LogCaptureFixture
) -> None:
    """MessageTimeout, then the BootNotification again (after the boot retry, 30 s: B02/B03);
    nothing else meanwhile; MQTT answered throughout."""
    caplog.set_level(logging.WARNING, logger="bridge")
    csms = await make_csms(silent_for(("BootNotification", 0)))
    async with station(tmp_path, broker, csms.url, message_timeout=1):
        await csms.wait_calls("BootNotification", 1)
        first = csms.frames[0].at
        await csms.wait_calls("BootNotification", 2, timeout=45)
        second = [f.at for f in csms.frames if '"BootNotification"' in str(f.text)][1]
        assert second - first >= 1.0
        assert csms.actions()[:2] == ["BootNotification", "BootNotification"]
        assert "BootNotification: no answer within MessageTimeout" in caplog.text
        await csms.wait_calls("StatusNotification", 2)
        assert len(csms.connections) == 1
        print(f"second BootNotification {second - first:.1f} s after the first")


@pytest.mark.timeout(60)
async def test_a_csms_that_never_answers_a_heartbeat(
    tmp_path: Path, broker: Broker, make_csms: MakeCsms
) -> None:
    """After MessageTimeout the station goes on: the next heartbeats are sent."""
    csms = await make_csms(silent_for(("Heartbeat", 0)))
    async with station(tmp_path, broker, csms.url, message_timeout=1):
        await csms.wait_calls("Heartbeat", 3, timeout=10)
        assert len(csms.connections) == 1


@pytest.mark.timeout(60)
async def test_a_csms_that_never_answers_a_status_notification(
    tmp_path: Path, broker: Broker, make_csms: MakeCsms
) -> None:
    """After MessageTimeout the station goes on: the other connector's StatusNotification and the
    heartbeats are sent (on this connection or a new one: OCPP-J gives a CALL up after
    MessageTimeout; nothing lets the station fall silent on an open connection)."""
    csms = await make_csms(silent_for(("StatusNotification", 0)))
    async with station(tmp_path, broker, csms.url, message_timeout=1):
        await csms.wait_calls("StatusNotification", 1)
        try:
            await csms.wait_calls("Heartbeat", 2, timeout=8)
        except AssertionError:
            raise AssertionError(
                "after an unanswered StatusNotification the station sent nothing more on an open "
                f"connection: {csms.actions()} in 8 s (heartbeat interval 1 s)"
            ) from None
        assert csms.calls["StatusNotification"] >= 2  # the other connector


@pytest.mark.timeout(60)
async def test_a_csms_that_never_completes_the_websocket_handshake(
    tmp_path: Path, broker: Broker
) -> None:
    """TCP accepted, no HTTP answer: each attempt times out (MessageTimeout) and is retried with
    back-off, while MQTT is answered."""
    accepted: list[float] = []
    held: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(time.monotonic())
        held.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with station(
            tmp_path, broker, f"ws://127.0.0.1:{port}/ocpp", message_timeout=1
        ) as running:
            bridge = running.bridge
            await asyncio.sleep(6)
            assert bridge.csms.state is not LinkState.connected
            assert "timed out" in bridge.csms.last_error or "no WebSocket upgrade" in (
                bridge.csms.last_error
            )
            gaps = [b - a for a, b in zip(accepted, accepted[1:], strict=False)]
            assert 2 <= len(accepted) <= 4, accepted  # 1 s timeout + 1, 2, 4 s back-off
            assert all(gap >= 1.9 for gap in gaps), gaps
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
