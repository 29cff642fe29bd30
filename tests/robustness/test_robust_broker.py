"""The broker killed (-9) and restarted mid-stream: the bridge reconnects and resubscribes, and
every request published after the broker is back is answered exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.conftest import Broker, write_config
from tests.robustness.robust_support import (
    BridgeProcess,
    Oem,
    oem_client,
    probe,
    tracebacks,
    until_answering,
)

AFTER_RESTART = 1_000
WINDOW = 200  # unanswered requests at a time (see test_robust_fuzz: the bridge queues ≤ 1,000)


async def stream(oem: Oem, sent: list[str], stop: asyncio.Event) -> None:
    """Publish GetVariables requests, at most WINDOW unanswered, until stopped or cut off."""
    with contextlib.suppress(aiomqtt.MqttError):
        while not stop.is_set():
            waiting = [i for i in sent[-WINDOW:] if not oem.answers.get(i)]
            if len(waiting) >= WINDOW:
                await asyncio.sleep(0.005)
                continue
            message = probe()
            sent.append(message["id"])
            await oem.publish(message)


async def answered_exactly_once(oem: Oem, count: int) -> list[str]:
    """Publish `count` requests (at most WINDOW unanswered); the problems seen."""
    ids: list[str] = []
    for start in range(0, count, WINDOW):
        batch = [probe() for _ in range(min(WINDOW, count - start))]
        ids += [m["id"] for m in batch]
        await oem.publish_all(batch)
        await oem.wait_for([m["id"] for m in batch], 20)
    missing = await oem.wait_for(ids, 20)
    await asyncio.sleep(1.0)  # duplicates arrive late, if at all
    problems = [f"{len(missing)} of {count} requests got no answer"] if missing else []
    duplicated = [i for i in ids if oem.count(i) > 1]
    if duplicated:
        problems.append(f"{len(duplicated)} of {count} requests were answered more than once")
    wrong = [
        i
        for i in ids
        if oem.answers.get(i) and oem.answers[i][0]["data"].get("message_type") != "CallResult"
    ]
    if wrong:
        problems.append(f"{len(wrong)} answers were not CallResults")
    return problems


@pytest.mark.timeout(90)
async def test_broker_killed_mid_stream_twice(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    bridge = BridgeProcess(config, tmp_path / "bridge.log").start()
    report: list[str] = []
    try:
        async with oem_client(broker.host, broker.port) as oem:
            await until_answering(oem)
        for cycle in (1, 2):
            sent: list[str] = []
            stop = asyncio.Event()
            async with oem_client(broker.host, broker.port) as oem:
                streaming = asyncio.create_task(stream(oem, sent, stop))
                await asyncio.sleep(0.7)  # mid-stream: requests on the wire, answers in flight
                answered_before = sum(1 for i in sent if oem.answers.get(i))
                broker.process.kill()
                broker.process.wait(5)
                killed_at = time.monotonic()
                stop.set()
                streaming.cancel()  # a publish may wait for a PUBACK that will never come
                with contextlib.suppress(asyncio.CancelledError):
                    await streaming
            assert bridge.alive, bridge.log_tail()
            await asyncio.sleep(0.5)
            broker.start()
            async with oem_client(broker.host, broker.port) as oem:
                back_after = await until_answering(oem, timeout=30)
                problems = await answered_exactly_once(oem, AFTER_RESTART)
            report.append(
                f"cycle {cycle}: {len(sent)} requests streamed, {answered_before} answered before "
                f"the kill; the bridge answered again {time.monotonic() - killed_at:.1f} s after "
                f"the kill ({back_after:.1f} s of probing); {AFTER_RESTART} more: "
                + ("; ".join(problems) or "each answered once")
            )
            assert not problems, "\n".join(report)
            assert bridge.alive, bridge.log_tail()
    finally:
        code = bridge.stop()
    print("\n".join(report))
    assert code == 0, bridge.log_tail()
    log = bridge.log_text()
    assert not tracebacks(log), tracebacks(log)
    assert log.count("MQTT connected") == 3  # the start and two reconnections
