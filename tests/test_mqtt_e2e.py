"""The MQTT transport against a real Mosquitto: topics, QoS 1, reconnect, bursts, garbage."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt

from bridge.app import Bridge
from tests.conftest import Broker, Oem, example, oem_client, running_bridge


async def test_garbage_is_dropped_and_service_goes_on(bridge: Bridge, oem: Oem) -> None:
    for raw in (
        b"\x00\x01",
        b"{",
        b"[]",
        json.dumps({"id": "nope", "name": "ocpp_message"}).encode(),
    ):
        await oem.send(raw)
    answer = await oem.request(example("request.GetVariables"))
    assert answer["data"]["message_type"] == "CallResult"
    await asyncio.sleep(0.2)
    assert oem.unexpected == []  # nothing was answered for the dropped messages


async def test_answers_go_to_josev_cs_at_qos_1(bridge: Bridge, broker: Broker) -> None:
    request = example("request.GetVariables")
    async with aiomqtt.Client(broker.host, broker.port, identifier="qos-check") as client:
        await client.subscribe("josev/cs", qos=1)
        await client.publish("cs/josev", json.dumps(request), qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert message.topic.matches("josev/cs")
                assert message.qos == 1
                if json.loads(message.payload)["type"] != "response":
                    continue  # the retained service_status, the bridge's own requests
                assert json.loads(message.payload)["id"] == request["id"]
                break


async def test_a_pipelined_burst_is_answered_once_each(bridge: Bridge, oem: Oem) -> None:
    requests = [example("request.GetVariables.multiple") for _ in range(300)]
    answers = await asyncio.gather(*(oem.request(r, timeout=30) for r in requests))
    assert [a["id"] for a in answers] == [r["id"] for r in requests]
    assert all(a["data"]["message_type"] == "CallResult" for a in answers)
    await asyncio.sleep(0.2)
    assert oem.unexpected == []


async def test_reconnects_and_resubscribes_after_the_broker_restarts(
    bridge: Bridge, broker: Broker
) -> None:
    async with oem_client(broker) as oem:
        assert (await oem.request(example("request.GetVariables")))["data"][
            "message_type"
        ] == "CallResult"
    broker.stop()
    for _ in range(200):
        if not bridge.mqtt.connected:
            break
        await asyncio.sleep(0.02)
    assert not bridge.mqtt.connected
    broker.start()
    for _ in range(1000):  # back-off is at most a few seconds this early
        if bridge.mqtt.connected:
            break
        await asyncio.sleep(0.02)
    assert bridge.mqtt.connected
    async with oem_client(broker) as oem:
        answers = [await oem.request(example("request.GetVariables")) for _ in range(5)]
        assert all(a["data"]["message_type"] == "CallResult" for a in answers)
        await asyncio.sleep(0.2)
        assert oem.unexpected == []


async def test_requests_published_while_the_bridge_is_down_are_answered_when_it_returns(
    config_file: Any, broker: Broker
) -> None:
    async with running_bridge(config_file):
        pass  # the first start creates the bridge's persistent session on the broker
    async with oem_client(broker) as oem:
        waiting = [example("request.GetVariables") for _ in range(3)]
        futures = [oem.expect(request["id"]) for request in waiting]
        for request in waiting:
            await oem.send(request)
        async with running_bridge(config_file):
            answers = await asyncio.wait_for(asyncio.gather(*futures), 15)
        assert [a["id"] for a in answers] == [r["id"] for r in waiting]


async def test_an_unknown_response_id_is_not_answered(bridge: Bridge, oem: Oem) -> None:
    await oem.send(
        {"id": str(uuid.uuid4()), "name": "cs_status_and_limits", "type": "response", "data": {}}
    )
    answer = await oem.request(example("request.GetVariables"))
    assert answer["data"]["message_type"] == "CallResult"
    await asyncio.sleep(0.2)
    assert oem.unexpected == []


async def test_a_flood_gets_an_answer_for_every_request(bridge: Bridge, oem: Oem) -> None:
    """More requests at once than the bridge queues: the overflow is answered "busy", not lost."""
    requests = [example("request.GetVariables") for _ in range(4000)]
    futures = [oem.expect(request["id"]) for request in requests]
    await asyncio.gather(*(oem.send(r) for r in requests))
    answers = await asyncio.wait_for(asyncio.gather(*futures), 60)
    kinds = {a["data"].get("error_code", a["data"]["message_type"]) for a in answers}
    assert kinds <= {"CallResult", "GenericError"}
    assert "CallResult" in kinds
    busy = [a for a in answers if a["data"].get("error_code") == "GenericError"]
    assert all("busy" in a["data"]["error_description"] for a in busy)
    await asyncio.sleep(0.3)
    assert oem.unexpected == []  # exactly one answer each
