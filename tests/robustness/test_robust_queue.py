"""The durable outbound queue under kill -9: 1,000 transaction-related messages queued
while the CSMS is down survive two unclean restarts — one while offline, one in the middle of
the delivery — and reach the CSMS in their original order, each messageId with one payload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Broker, ocpp_message, write_config
from tests.robustness.robust_support import (
    BridgeProcess,
    RawCsms,
    fast_backoff,
    oem_client,
    tracebacks,
    until_answering,
)

TOTAL = 1_000
FIRST = 500


def security_event(n: int) -> dict[str, Any]:
    return ocpp_message(
        "SecurityEventNotification",
        {"type": "SettingSystemTime", "timestamp": "2026-12-03T10:00:00.000Z", "techInfo": str(n)},
    )


def delivered(csms: RawCsms) -> list[tuple[str, int]]:
    """(messageId, n) of every SecurityEventNotification CALL the CSMS received, in order."""
    out = []
    for frame in csms.frames:
        message = json.loads(frame.text)
        if message[0] == 2 and message[2] == "SecurityEventNotification":
            if message[3]["type"] == "StartupOfTheDevice":
                continue  # the bridge's own, at every start (A04)
            out.append((message[1], int(message[3]["techInfo"])))
    return out


async def test_a_thousand_queued_messages_survive_two_kill_9_in_order(
    tmp_path: Path, broker: Broker
) -> None:
    csms = RawCsms()
    await csms.start()
    await csms.stop()  # its port is known; nothing listens there until the CSMS "comes back"
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        csms=f'url = "{csms.url}"',
        extra=f"[device_model]\n{fast_backoff()}",
    )
    bridge = BridgeProcess(config, tmp_path / "bridge.log").start()
    try:
        async with oem_client(broker.host, broker.port) as oem:
            await until_answering(oem)
            for batch in (range(FIRST), range(FIRST, TOTAL)):
                messages = [security_event(n) for n in batch]
                await oem.publish_all(messages)
                missing = await oem.wait_for([m["id"] for m in messages], 60)
                assert missing == [], f"{len(missing)} unanswered"
                for message in messages:
                    (answer,) = oem.answers[message["id"]]
                    assert answer["data"]["error_details"]["queued"] is True
                if batch.start == 0:
                    bridge.kill9()  # 1: offline, with 500 queued
                    bridge.start()
                    await until_answering(oem)
        await csms.start()
        await csms.wait_calls("SecurityEventNotification", 300, timeout=60)
        bridge.kill9()  # 2: in the middle of the delivery
        await csms.kill()
        await csms.start()
        bridge.start()
        await csms.wait(lambda: len({i for i, _ in delivered(csms)}) >= TOTAL, 120, "every message")
        received = delivered(csms)
        ids: dict[str, int] = {}
        order: list[int] = []
        for message_id, n in received:
            assert ids.setdefault(message_id, n) == n  # one payload per messageId
            if len(ids) > len(order):
                order.append(n)
        assert order == list(range(TOTAL))  # in the order they were queued, none lost
        # A kill -9 while a CALL waits for its answer may repeat that one CALL, same id.
        assert len(received) - TOTAL <= 1
        # Nothing but BootNotification before the first queued message on each connection.
        actions = csms.actions()
        assert actions[0] == "BootNotification"
        assert bridge.stop() == 0
        assert tracebacks(bridge.log_text()) == []
    finally:
        bridge.kill9()
        await csms.stop()
