"""What the OEM hears about the bridge, end to end through Mosquitto and a WebSocket CSMS:
boot_status, websocket_status (updates and request/response), the retained service_status with
its last will, set_ocpp_network_connection, and the bridge's own start-up requests."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from bridge.demo_csms import DemoCsms
from tests.conftest import (
    BRIDGE,
    RESPONSE_TOPIC,
    Broker,
    Oem,
    oem_client,
    oem_mqtt_client,
    running_bridge,
    write_config,
)
from tests.test_oem_link import accepted, bridge_with

PASSWORD = "Pa55word-for-CP001"


def request(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "type": "request", "data": data}


async def until(condition: Any, timeout: float = 10, step: float = 0.01) -> None:
    """Poll `condition()` (sync or async) until it is true."""
    for _ in range(int(timeout / step)):
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(step)
    raise AssertionError(f"not within {timeout} s")


async def updates(oem: Oem, name: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            found = [u["data"] for u in oem.updates if u["name"] == name]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.01)


async def retained_service_status(broker: Broker, wait: float = 5) -> dict[str, Any] | None:
    """What a subscriber that comes later sees first: the retained service_status (None when
    there is none within `wait` seconds)."""
    async with oem_mqtt_client(broker.host, broker.port) as client:
        await client.subscribe(RESPONSE_TOPIC, qos=1)
        try:
            async with asyncio.timeout(wait):
                async for message in client.messages:
                    body = json.loads(message.payload)
                    if body["name"] == "service_status" and message.retain:
                        data: dict[str, Any] = body["data"]
                        return data
        except TimeoutError:
            pass
    return None


async def status_is(broker: Broker, wanted: str) -> bool:
    status = await retained_service_status(broker, wait=1)
    return status is not None and status["status"] == wanted


async def test_boot_status_and_websocket_status_follow_the_csms_link(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        assert await updates(oem, "boot_status") == [{"status": "accepted"}]
        (connected,) = await updates(oem, "websocket_status")
        assert connected == {
            "status": "connected",
            "identity": "CP001",
            "csms_url": csms.url,
            "security_profile": 0,
        }
        answer = await oem.request(request("websocket_status", {}))
        assert answer["type"] == "response"
        assert answer["data"] == connected
        await csms.disconnect("CP001")
        updates_seen = await updates(oem, "websocket_status", 2)
        assert updates_seen[1] == {"status": "disconnected", "identity": "CP001"}


async def test_boot_status_pending(tmp_path: Path, broker: Broker, oem: Oem) -> None:
    async with (
        DemoCsms(boot_status="Pending") as csms,
        bridge_with(tmp_path, broker, csms.url),
    ):
        assert (await updates(oem, "boot_status"))[0] == {"status": "pending"}


async def test_the_bridge_asks_the_oem_at_start(tmp_path: Path, broker: Broker, oem: Oem) -> None:
    async with bridge_with(tmp_path, broker, "ws://127.0.0.1:9/ocpp"):
        await until(
            lambda: {r["name"] for r in oem.requests} >= {"device_model", "cs_status_and_limits"}
        )
        asked = {r["name"]: r["data"] for r in oem.requests}
        assert asked["device_model"] == {}
        assert asked["cs_status_and_limits"] == {}
        await until(lambda: any(r["name"] == "cs_contactor_status" for r in oem.requests))
        contactor = [r["data"] for r in oem.requests if r["name"] == "cs_contactor_status"]
        assert contactor == [{"evse_id": "1"}]  # each EVSE's contactor, once


async def test_service_status_is_retained_and_answered(tmp_path: Path, broker: Broker) -> None:
    async with oem_client(broker) as oem, bridge_with(tmp_path, broker, "ws://127.0.0.1:9/ocpp"):
        await updates(oem, "service_status")
        status = await retained_service_status(broker)
        assert status is not None
        assert status["status"] == "ready"
        assert status["service"] == "ocpp"
        answer = await oem.request(request("service_status", {"service": "ocpp"}))
        assert answer["data"]["status"] == "ready"
        assert answer["data"]["software_version"] == status["software_version"]
    assert await status_is(broker, "stopping")  # a clean stop


async def test_after_kill_9_a_late_subscriber_sees_the_last_will(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    process = await asyncio.create_subprocess_exec(
        *BRIDGE, "run", "--config", str(config), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await until(lambda: status_is(broker, "ready"), 15, 0.1)
        process.kill()
        await process.wait()
        # The broker publishes the will once it notices the dead connection (at once for a
        # reset socket, or after 1.5 x keepalive).
        await until(lambda: status_is(broker, "error"), 60, 0.2)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_set_ocpp_network_connection_switches_the_csms(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with (
        DemoCsms() as first,
        DemoCsms(password=PASSWORD) as second,
        bridge_with(tmp_path, broker, first.url) as bridge,
    ):
        await accepted(bridge)
        refused = await oem.request(
            request(
                "set_ocpp_network_connection",
                {"csms_url": second.url, "security_profile": 2},
            )
        )
        assert refused["data"]["status"] == "rejected"
        assert "wss://" in refused["data"]["reason"]
        answer = await oem.request(
            request(
                "set_ocpp_network_connection",
                {
                    "csms_url": second.url,
                    "security_profile": 1,
                    "basic_auth_password": PASSWORD,
                },
            )
        )
        assert answer["data"] == {"status": "accepted"}
        # A new CSMS: the station boots there, with Basic auth.
        await second.wait_for("BootNotification")
        assert second.attempts[-1].authorization == "CP001"
        connected = await updates(oem, "websocket_status", 3)
        assert connected[-1]["csms_url"] == second.url
        assert connected[-1]["security_profile"] == 1


async def test_an_update_with_an_unknown_field_is_dropped(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    config = write_config(tmp_path / "bridge.toml", broker, evses="[1, 1]")
    async with running_bridge(config) as bridge:

        def update(evse_id: str, **extra: Any) -> dict[str, Any]:
            data = {"evses": [{"evse_id": evse_id, "status_code": "evse_shutdown"}], **extra}
            return {
                "id": str(uuid.uuid4()),
                "name": "cs_status_and_limits",
                "type": "update",
                "data": data,
            }

        await oem.send(update("1", x=1))  # an unknown field: dropped, EVSE 1 stays Available
        await oem.send(update("2"))  # sent after it: once it is applied, the first was handled
        dm = bridge.station.device_model
        await until(lambda: dm.value("Connector[2,1].AvailabilityState") == "Unavailable")
        assert dm.value("Connector[1,1].AvailabilityState") == "Available"
