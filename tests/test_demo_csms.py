"""The demo CSMS (bridge.demo_csms) against a minimal station built on the ocpp library itself."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result, datatypes
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bridge.demo_csms import CallErrorReceived, DemoCsms
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")


class Station(ChargePoint):
    """A bare ocpp-library station that answers GetVariables (and fails on a magic name)."""

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            if item["component"]["name"] == "Broken":
                raise PropertyConstraintViolationError(
                    description="no such thing", details={"why": "test"}
                )
            results.append(
                datatypes.GetVariableResultType(
                    attribute_status="Accepted",
                    component=datatypes.ComponentType(name=item["component"]["name"]),
                    variable=datatypes.VariableType(name=item["variable"]["name"]),
                    attribute_value="60",
                )
            )
        return call_result.GetVariables(get_variable_result=results)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@contextlib.asynccontextmanager
async def raw_ws(
    csms: DemoCsms, station_id: str = "CS1", headers: dict[str, str] | None = None, **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    kwargs.setdefault("subprotocols", ["ocpp2.0.1"])
    async with connect(
        f"{csms.url}/{station_id}", additional_headers=headers or {}, open_timeout=5, **kwargs
    ) as ws:
        yield ws


@contextlib.asynccontextmanager
async def station(csms: DemoCsms, station_id: str = "CS1", **kwargs: Any) -> AsyncIterator[Station]:
    async with raw_ws(csms, station_id, **kwargs) as ws:
        cp = Station(station_id, ws, response_timeout=5)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def boot(cp: Station) -> Any:
    return await cp.call(
        call.BootNotification(
            charging_station=datatypes.ChargingStationType(vendor_name="Acme", model="M1"),
            reason="PowerUp",
        )
    )


@pytest.fixture
async def csms() -> AsyncIterator[DemoCsms]:
    async with DemoCsms(heartbeat_interval=42) as server:
        yield server


async def test_boot_accepted_raw_payload_and_answers(csms: DemoCsms) -> None:
    assert csms.port != 0
    assert csms.url == f"ws://127.0.0.1:{csms.port}/ocpp"
    async with station(csms) as cp:
        response = await boot(cp)
        assert response.status == "Accepted"
        assert response.interval == 42
        assert TIMESTAMP.match(response.current_time)
        heartbeat = await cp.call(call.Heartbeat())
        assert TIMESTAMP.match(heartbeat.current_time)
        await cp.call(
            call.StatusNotification(
                timestamp="2026-01-01T00:00:00.000Z",
                connector_status="Available",
                evse_id=1,
                connector_id=1,
            )
        )
        authorize = await cp.call(call.Authorize(id_token={"idToken": "ABC", "type": "ISO14443"}))
        assert authorize.id_token_info["status"] == "Accepted"
        transfer = await cp.call(call.DataTransfer(vendor_id="acme", data={"someKey": 1}))
        assert transfer.status == "Rejected"
    assert [r.action for r in csms.received] == [
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "Authorize",
        "DataTransfer",
    ]
    first = csms.received[0]
    assert first.station_id == "CS1"
    assert first.payload == {
        "chargingStation": {"vendorName": "Acme", "model": "M1"},
        "reason": "PowerUp",
    }
    # Free-form keys are recorded exactly as on the wire (the library would mangle them).
    assert csms.received[-1].payload["data"] == {"someKey": 1}
    assert csms.schema_errors == []
    frames = [json.loads(text) for sid, direction, text in csms.raw_frames if direction == "out"]
    assert frames[0][2]["interval"] == 42


@pytest.mark.parametrize("status", ["Accepted", "Pending", "Rejected"])
async def test_boot_status(csms: DemoCsms, status: str) -> None:
    csms.boot_status = status
    async with station(csms) as cp:
        assert (await boot(cp)).status == status


async def test_boot_statuses_sequence(csms: DemoCsms) -> None:
    csms.boot_status = "Rejected"
    csms.boot_statuses = ["Pending", "Accepted"]
    async with station(csms) as cp:
        assert [(await boot(cp)).status for _ in range(3)] == ["Pending", "Accepted", "Rejected"]
    assert csms.boot_statuses == []


async def test_call_get_variables_raw_round_trip(csms: DemoCsms) -> None:
    async with station(csms):
        await csms.wait_connected("CS1")
        result = await csms.call(
            "CS1",
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        )
    assert result == {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "attributeValue": "60",
            }
        ]
    }
    assert csms.schema_errors == []


async def test_call_error_from_station_raises(csms: DemoCsms) -> None:
    payload = {"getVariableData": [{"component": {"name": "Broken"}, "variable": {"name": "X"}}]}
    async with station(csms):
        await csms.wait_connected("CS1")
        with pytest.raises(CallErrorReceived) as caught:
            await csms.call("CS1", "GetVariables", payload)
        assert caught.value.code == "PropertyConstraintViolation"
        assert caught.value.description == "no such thing"
        assert caught.value.details == {"why": "test"}
        with pytest.raises(CallErrorReceived) as caught:  # no handler in the station
            await csms.call("CS1", "Reset", {"type": "Immediate"})
        assert caught.value.code == "NotImplemented"


async def test_call_timeout_and_unknown_station(csms: DemoCsms) -> None:
    with pytest.raises(ConnectionError):
        await csms.call("nobody", "Reset", {"type": "Immediate"})
    async with raw_ws(csms):  # connected, but never answers
        await csms.wait_connected("CS1")
        with pytest.raises(TimeoutError, match="did not answer Reset"):
            await csms.call("CS1", "Reset", {"type": "Immediate"}, timeout=0.2)


async def test_invalid_station_messages_are_answered_and_recorded(csms: DemoCsms) -> None:
    async with raw_ws(csms) as ws:
        bad = {"chargingStation": {"vendorName": "Acme", "model": "M1"}, "reason": "Bogus"}
        await ws.send(json.dumps([2, "m1", "BootNotification", bad]))
        answer = json.loads(await ws.recv())
        assert answer[:3] == [4, "m1", "FormatViolation"]
        await ws.send(json.dumps([2, "m2", "Heartbeat", {"extra": 1}]))
        assert json.loads(await ws.recv())[:3] == [4, "m2", "FormatViolation"]
        await ws.send("not json")  # not answered (nothing to answer), but recorded
        await ws.send(json.dumps([2, "m3", "Heartbeat", {}]))
        assert json.loads(await ws.recv())[:2] == [3, "m3"]
    assert [(e.action, e.kind, e.code) for e in csms.schema_errors] == [
        ("BootNotification", "request", "FormatViolation"),
        ("Heartbeat", "request", "FormatViolation"),
        ("", "frame", "FormatViolation"),
    ]
    assert "Bogus" in csms.schema_errors[0].description
    assert csms.received[0].payload == bad  # recorded even though invalid


async def test_invalid_call_result_from_station_is_recorded(csms: DemoCsms) -> None:
    async with raw_ws(csms) as ws:
        await csms.wait_connected("CS1")
        pending = asyncio.create_task(csms.call("CS1", "Reset", {"type": "Immediate"}))
        request = json.loads(await ws.recv())
        assert request[:3] == [2, request[1], "Reset"]
        await ws.send(json.dumps([3, request[1], {"status": "Whatever"}]))
        assert await pending == {"status": "Whatever"}  # returned raw all the same
    assert [(e.action, e.kind) for e in csms.schema_errors] == [("Reset", "response")]


async def test_password(csms: DemoCsms) -> None:
    csms.password = "s3cret-Passw0rd"
    with pytest.raises(InvalidStatus) as caught:
        async with raw_ws(csms):
            pass
    assert caught.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as caught:
        async with raw_ws(csms, headers=basic("CS1", "wrong")):
            pass
    assert caught.value.response.status_code == 401
    with pytest.raises(InvalidStatus):  # right password, wrong user name
        async with raw_ws(csms, headers=basic("CS2", "s3cret-Passw0rd")):
            pass
    async with raw_ws(csms, headers=basic("CS1", "s3cret-Passw0rd")) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
    csms.password = "n3w-Passw0rd"  # changed at runtime: the old one is refused
    with pytest.raises(InvalidStatus):
        async with raw_ws(csms, headers=basic("CS1", "s3cret-Passw0rd")):
            pass
    async with station(csms, headers=basic("CS1", "n3w-Passw0rd")) as cp:
        assert (await boot(cp)).status == "Accepted"
    assert [(a.station_id, a.status, a.authorization) for a in csms.attempts] == [
        ("CS1", 401, None),
        ("CS1", 401, "CS1"),
        ("CS1", 401, "CS2"),
        ("CS1", 101, "CS1"),
        ("CS1", 401, "CS1"),
        ("CS1", 101, "CS1"),
    ]
    assert all(a.subprotocols_offered == ["ocpp2.0.1"] for a in csms.attempts)
    assert "Passw0rd" not in repr(csms.attempts)


async def test_paths_and_subprotocols(csms: DemoCsms) -> None:
    for path in ("/ocpp", "/ocpp/", "/"):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"ws://127.0.0.1:{csms.port}{path}", open_timeout=5):
                pass
        assert caught.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as caught:  # nothing acceptable offered
        async with raw_ws(csms, subprotocols=["ocpp1.6"]):
            pass
    assert caught.value.response.status_code == 400
    assert [a.status for a in csms.attempts] == [404, 404, 404, 400]
    async with raw_ws(csms, "CP%7C7", subprotocols=["ocpp2.1", "ocpp2.0.1"]) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        await csms.wait_connected("CP|7")
    assert csms.attempts[-1].subprotocols_offered == ["ocpp2.1", "ocpp2.0.1"]


async def test_no_subprotocol_selected(csms: DemoCsms) -> None:
    csms.select_subprotocol = False
    async with raw_ws(csms) as ws:
        assert ws.subprotocol is None
    assert csms.attempts[-1].status == 101


async def test_wait_for_count_predicate_and_timeout(csms: DemoCsms) -> None:
    async with station(csms) as cp, station(csms, "CS2") as cp2:
        await boot(cp)
        waiter = asyncio.create_task(csms.wait_for("Heartbeat", station_id="CS1", count=2))
        await cp2.call(call.Heartbeat())
        await cp.call(call.Heartbeat())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await cp.call(call.Heartbeat())
        heartbeats = await waiter
        assert [h.station_id for h in heartbeats] == ["CS1", "CS1"]
        assert heartbeats[0].at <= heartbeats[1].at
        [pending] = await csms.wait_for(
            "BootNotification", predicate=lambda r: r.payload["reason"] == "PowerUp"
        )
        assert pending.station_id == "CS1"
        with pytest.raises(TimeoutError):
            await csms.wait_for("Heartbeat", count=4, timeout=0.1)
        assert len(await csms.wait_for("Heartbeat", count=3)) == 3


async def test_disconnect(csms: DemoCsms) -> None:
    async with raw_ws(csms) as ws:
        await csms.wait_connected("CS1")
        assert csms.connected["CS1"].ws.subprotocol == "ocpp2.0.1"
        await csms.disconnect("CS1", code=1001)
        assert "CS1" not in csms.connected
        await ws.wait_closed()
        assert ws.close_code == 1001


async def test_send_raw_and_raw_frames(csms: DemoCsms) -> None:
    async with raw_ws(csms) as ws:
        await csms.wait_connected("CS1")
        await csms.send_raw("CS1", '[2,"x","Bogus"')
        assert await ws.recv() == '[2,"x","Bogus"'
        await ws.send('[2,"h1","Heartbeat",{}]')
        answer = json.loads(await ws.recv())
        assert answer[0:2] == [3, "h1"]
    assert csms.raw_frames[0] == ("CS1", "out", '[2,"x","Bogus"')
    assert csms.raw_frames[1] == ("CS1", "in", '[2,"h1","Heartbeat",{}]')
    assert csms.raw_frames[2][:2] == ("CS1", "out")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with DemoCsms(ssl_context=server_context, password="pw-123456789012") as server:
        assert server.url.startswith("wss://127.0.0.1:")
        async with station(
            server, ssl=client_context, headers=basic("CS1", "pw-123456789012")
        ) as cp:
            assert (await boot(cp)).status == "Accepted"
        with pytest.raises(ssl.SSLCertVerificationError):  # the station must check the CA
            async with raw_ws(server, ssl=ssl.create_default_context()):
                pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_cli_serves_and_exits_0_on_signal(
    tmp_path: Path, ca: trustme.CA, sig: signal.Signals
) -> None:
    cert = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bridge.demo_csms", "--port", str(port), "--certfile", str(cert)),
        *("--boot-status", "Pending", "--interval", "7"),
        cwd=REPO,
        env={"DEMO_CSMS_PASSWORD": "cli-password-1", "PATH": "/usr/bin:/bin"},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stderr.readline(), 10)
        assert f"wss://127.0.0.1:{port}/ocpp/<station id>" in line.decode()
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        async with connect(
            f"wss://127.0.0.1:{port}/ocpp/CS9",
            subprotocols=["ocpp2.0.1"],
            additional_headers=basic("CS9", "cli-password-1"),
            ssl=client_context,
        ) as ws:
            cp = Station("CS9", ws)
            task = asyncio.create_task(cp.start())
            response = await boot(cp)
            task.cancel()
        assert (response.status, response.interval) == ("Pending", 7)
        process.send_signal(sig)
        rest = await asyncio.wait_for(process.stderr.read(), 10)
        assert await process.wait() == 0
        assert b"BootNotification" in rest
        assert b"cli-password-1" not in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
