"""Remote start round trip (issue 10): a CSMS's RequestStartTransaction through the bridge to
the OEM's firmware and back, beside a bare MQTT echo and a bare WebSocket echo in the same run.

What the bridge does for one remote start (bridge/station/remote_start_stop.py), with
`AuthCtrlr.AuthorizeRemoteStart` false (no Authorize round trip) and `SampledDataCtrlr.Enabled`
false (no meter value asked for the Started event):

1. the CSMS's CALL arrives; the CALLRESULT (Accepted) goes back at once (F01);
2. `process_authorized_token` goes to the OEM on josev/cs; the OEM (in this process) answers
   `accepted` at once on cs/josev;
3. the token authorizes the EVSE (TxStartPoint Authorized): TransactionEvent Started, triggerReason
   RemoteStart, through the durable queue (one SQLite commit) to the CSMS.

Measured per start: CALL sent → CALLRESULT received ("answer"), and CALL sent → the Started event
received ("whole start": steps 1-3, the OEM's round trip inside). Baselines, same machine, same
run: the WebSocket echo — a websockets station in its own process answering the same CALL with a
canned CALLRESULT (json only) — and the MQTT echo of mqtt_roundtrip.py through the same Mosquitto.
The whole start's floor is one WebSocket echo plus one MQTT echo (the CALL in and the event out,
the request out and the answer in); the bridge's share is the whole start's median minus that
floor, target < 1 ms. Between timed starts an untimed RequestStopTransaction ends the transaction.

    python bench/remote_start.py [--n N]   # ~30 s with the defaults
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    STATION_ID,
    Processes,
    Sequential,
    bridge_config,
    bridge_log_report,
    column_table,
    free_port,
    git_revision,
    header_lines,
    log_lines,
    num,
    start_mosquitto,
    step,
    tail,
    verdict,
    wait_port,
)
from transactions import CLOCK, Meter, RawCsms, durable_commits, echo_run, oem, wait_booted

TARGET_MS = 1.0
WARM_UP = 20
TOKEN = {"idToken": "BENCHTOKEN01", "type": "ISO14443"}
DEVICE_MODEL = {
    "AuthCtrlr.AuthorizeRemoteStart": "false",
    "SampledDataCtrlr.Enabled": "false",
    "AlignedDataCtrlr.Enabled": "false",
    "TxCtrlr.TxStartPoint": "Authorized",
    "TxCtrlr.TxStopPoint": "Authorized",
    "TxCtrlr.EVConnectionTimeOut": "600",
}

ECHO_STATION = '''"""The WebSocket echo: every CALL answered from a constant."""

import asyncio
import json
import sys

from websockets.asyncio.client import connect

BOOT = {"chargingStation": {"model": "AC22", "vendorName": "Acme"}, "reason": "PowerUp"}
ANSWER = {"status": "Accepted"}


async def main(url, station_id):
    async with connect(url + "/" + station_id, subprotocols=["ocpp2.0.1"], compression=None) as ws:
        await ws.send(json.dumps([2, "boot-1", "BootNotification", BOOT]))
        async for frame in ws:
            message = json.loads(frame)
            if message[0] == 2:
                await ws.send(json.dumps([3, message[1], ANSWER], separators=(",", ":")))


asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


class RemoteStartMeter(Meter):
    """The firmware's answers, process_authorized_token accepted among them."""

    def answer(self, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if name == "process_authorized_token":
            return {"status": "accepted"}
        return super().answer(name, data)


@dataclass
class Results:
    answer: Sequential = field(default_factory=lambda: Sequential([], 0))
    whole: Sequential = field(default_factory=lambda: Sequential([], 0))
    ws_echo: Sequential = field(default_factory=lambda: Sequential([], 0))
    mqtt_echo: Sequential = field(default_factory=lambda: Sequential([], 0))
    commit_ms: float = float("nan")  # median durable SQLite commit on this disk
    refused: int = 0
    oem_asked: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def start_payload(n: int) -> dict[str, Any]:
    return {"idToken": TOKEN, "remoteStartId": n, "evseId": 1}


async def remote_starts(csms: RawCsms, n: int, results: Results) -> None:
    started: list[str] = []

    def listen(at: float, action: str, payload: dict[str, Any]) -> None:
        if action == "TransactionEvent" and payload.get("eventType") == "Started":
            started.append(payload["transactionInfo"]["transactionId"])

    csms.listeners[STATION_ID].append(listen)
    for i in range(WARM_UP + n):
        event = csms.expect(
            STATION_ID,
            lambda a, p: (
                a == "TransactionEvent"
                and p.get("eventType") == "Started"
                and p.get("triggerReason") == "RemoteStart"
            ),
        )
        sent = CLOCK()
        answer = await csms.call(STATION_ID, "RequestStartTransaction", start_payload(i + 1))
        answered = CLOCK()
        if answer.get("status") != "Accepted":
            results.refused += 1
            event.cancel()
            continue
        async with asyncio.timeout(10):
            arrived = await event
        if i >= WARM_UP:
            results.answer.latencies_ms.append((answered - sent) * 1000)
            results.whole.latencies_ms.append((arrived - sent) * 1000)
        ended = csms.expect(
            STATION_ID, lambda a, p: a == "TransactionEvent" and p.get("eventType") == "Ended"
        )
        stop = await csms.call(STATION_ID, "RequestStopTransaction", {"transactionId": started[-1]})
        if stop.get("status") != "Accepted":
            raise RuntimeError(f"RequestStopTransaction was answered {stop}")
        async with asyncio.timeout(10):
            await ended


async def ws_echo(csms: RawCsms, processes: Processes, directory: Path, n: int) -> Sequential:
    script = directory / "echo_station.py"
    script.write_text(ECHO_STATION)
    process = processes.start(
        [sys.executable, str(script), csms.url, "ECHO001"], directory / "echo_station.log"
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while csms.counts["ECHO001"]["BootNotification"] < 1:
            if loop.time() > deadline or process.poll() is not None:
                raise RuntimeError("the WebSocket echo station did not connect")
            await asyncio.sleep(0.02)
        latencies = []
        for i in range(WARM_UP + n):
            sent = CLOCK()
            await csms.call("ECHO001", "RequestStartTransaction", start_payload(i + 1))
            if i >= WARM_UP:
                latencies.append((CLOCK() - sent) * 1000)
        return Sequential(latencies, 0)
    finally:
        await processes.stop_async(process)


async def run_async(processes: Processes, directory: Path, args: argparse.Namespace) -> Results:
    results = Results()
    step("durable SQLite commits on this disk")
    commits = sorted(durable_commits(directory / "commits"))
    results.commit_ms = commits[len(commits) // 2]
    port = free_port()
    start_mosquitto(processes, directory, port)
    wait_port(port)
    async with RawCsms() as csms, oem(port, 1) as o:
        o.meter = RemoteStartMeter(1)
        step(f"MQTT echo, {args.n} round trips")
        results.mqtt_echo = await echo_run(processes, o, port, directory / "mqtt_echo.log", args.n)
        step(f"WebSocket echo, {args.n} round trips")
        results.ws_echo = await ws_echo(csms, processes, directory, args.n)
        config = bridge_config(directory / "bridge", port, csms.url)
        lines = "\n".join(f'"{k}" = "{v}"' for k, v in DEVICE_MODEL.items())
        config.write_text(config.read_text() + f"\n[device_model]\n{lines}\n")
        log = directory / "bridge.log"
        process = processes.start(
            [sys.executable, "-m", "bridge", "run", "--config", str(config)], log
        )
        try:
            await wait_booted(csms, process, 1)
            await asyncio.sleep(0.5)
            step(f"bridge: {WARM_UP} + {args.n} remote starts (each stopped, untimed)")
            await remote_starts(csms, args.n, results)
        except Exception:
            print(f"--- bridge log ---\n{tail(log)}", file=sys.stderr)
            raise
        finally:
            await processes.stop_async(process)
            results.log = log_lines(log)
        results.oem_asked = dict(o.asked)
    return results


def header(args: argparse.Namespace) -> list[str]:
    return header_lines(
        "remote start round trip (CSMS RequestStartTransaction -> OEM -> CSMS)",
        f"revision    {git_revision()}",
        f"starts      {args.n} timed (after {WARM_UP} warm-up), each then stopped untimed",
        "bridge      " + ", ".join(f"{k} = {v}" for k, v in DEVICE_MODEL.items()),
    )


def report(results: Results) -> list[str]:
    def rows(s: Sequential) -> list[tuple[str, str]]:
        return [(name, num(s.stat(name), 3)) for name in ("p50", "p90", "p99", "mean")] + [
            ("n", str(len(s.latencies_ms)))
        ]

    titles = ["whole start", "answer", "WS echo", "MQTT echo"]
    columns = [results.whole, results.answer, results.ws_echo, results.mqtt_echo]
    floor = results.ws_echo.stat("p50") + results.mqtt_echo.stat("p50")
    share = results.whole.stat("p50") - floor
    processing = share - results.commit_ms
    answer_share = results.answer.stat("p50") - results.ws_echo.stat("p50")
    lines = [
        "",
        "round trips in ms (whole start: CALL -> CALLRESULT ... process_authorized_token to the",
        "OEM and its answer ... TransactionEvent Started at the CSMS; answer: CALL -> CALLRESULT)",
        *column_table(titles, [rows(c) for c in columns], 8, 14),
        "",
        f"floor of the whole start (WS echo p50 + MQTT echo p50)   {num(floor, 3)} ms",
        f"bridge's share of the whole start (p50 - floor)           {num(share, 3)} ms"
        f"   target < {TARGET_MS:g} ms: {verdict(share < TARGET_MS)}",
        f"  of which one durable commit (the Started event, SPEC 5)  {num(results.commit_ms, 3)} ms"
        f" (median of this disk's), the rest {num(processing, 3)} ms"
        f"   target < {TARGET_MS:g} ms: {verdict(processing < TARGET_MS)}",
        f"bridge's share of the answer (answer p50 - WS echo p50)   {num(answer_share, 3)} ms"
        f"   target < {TARGET_MS:g} ms: {verdict(answer_share < TARGET_MS)}",
        f"remote starts refused: {results.refused}; the OEM was asked: "
        + ", ".join(f"{k} {v}" for k, v in sorted(results.oem_asked.items())),
    ]
    return lines + bridge_log_report(results.log)


def main() -> int:
    from _common import run_benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="timed remote starts (300)")
    args = parser.parse_args()
    return run_benchmark(
        lambda: header(args),
        "remote-start-",
        lambda processes, directory: asyncio.run(run_async(processes, directory, args)),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
