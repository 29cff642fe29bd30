"""The transport's bookkeeping of answers awaiting their PUBACK, on paho's own MQTTMessageInfo."""

from __future__ import annotations

import asyncio
from collections import deque

import paho.mqtt.client as mqtt
import pytest

from bridge.transport.mqtt import _forget_acknowledged, _until_acknowledged


def info(mid: int, rc: mqtt.MQTTErrorCode = mqtt.MQTT_ERR_SUCCESS) -> mqtt.MQTTMessageInfo:
    i = mqtt.MQTTMessageInfo(mid)
    i.rc = rc
    return i


def test_acknowledged_answers_are_forgotten_from_the_front_only() -> None:
    a, b, c = info(1), info(2), info(3)
    a._set_as_published()
    c._set_as_published()
    sent = deque([a, b, c])
    assert _forget_acknowledged(sent) == 2
    assert list(sent) == [b, c]  # b is still waiting; c stays behind it
    b._set_as_published()
    assert _forget_acknowledged(sent) == 0


@pytest.mark.parametrize(
    "rc", [mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_QUEUE_SIZE, mqtt.MQTT_ERR_CONN_LOST]
)
def test_an_answer_paho_cannot_track_does_not_block_the_others(rc: mqtt.MQTTErrorCode) -> None:
    """paho's is_published() raises for these; the bookkeeping must neither raise nor wait."""
    sent = deque([info(1, rc), info(2)])
    assert _forget_acknowledged(sent) == 1


async def test_handling_waits_while_too_many_answers_are_unacknowledged() -> None:
    sent = deque([info(1), info(2)])
    waiting = asyncio.create_task(_until_acknowledged(sent, limit=2))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    sent[0]._set_as_published()
    await asyncio.wait_for(waiting, 5)
    assert len(sent) == 1
