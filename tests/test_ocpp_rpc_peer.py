"""The bridge against an independent peer: a strict-mode CSMS on the npm package `ocpp-rpc`.

`tests/ocpp_rpc/csms.js` validates every CALL and CALLRESULT in both directions against the
OCPP 2.0.1 JSON schemas ocpp-rpc ships, plus the OCPP-J rules no schema expresses (message id
length, CALLERROR shape, RFC 3339 time offsets), while it runs a scripted session: boot, status,
heartbeat, GetVariables, SetVariables, GetBaseReport, GetReport and TriggerMessage; or, with
`--scenario=session`, a charging session that the OEM simulator (bridge.oem_sim) plays through a
real Mosquitto: Authorize, TransactionEvent Started/Updated/Ended with their meter values, and
clock-aligned MeterValues of an idle EVSE. It prints one JSON summary line; these tests assert on
it. `scripts/test` (CI) installs the npm package.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.oem_sim import DEFAULT_TOKEN, cli
from bridge.oem_sim.simulator import Simulator
from tests.conftest import Broker, free_port, write_config

PEER = Path(__file__).resolve().parent / "ocpp_rpc"
CONNECTORS = [(1, 1), (2, 1)]  # evses = [1, 1]
ITEMS_PER_REPORT = 20
PRELOAD = (
    '"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1\n'
    '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
    f'"DeviceDataCtrlr.ItemsPerMessage[GetReport]" = {ITEMS_PER_REPORT}\n'
)
# The charging session: a periodic sample and a clock-aligned one every second (the idle EVSE 2
# sends its clock-aligned values as MeterValues, EVSE 1's transaction as TransactionEvents), and
# both kinds of TxEndedInterval sample every second for the Ended event.
SESSION_PRELOAD = (
    '"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1\n'
    '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
    '"SampledDataCtrlr.TxUpdatedInterval" = 1\n'
    '"AlignedDataCtrlr.Interval" = 1\n'
    '"SampledDataCtrlr.TxEndedInterval" = 1\n'
    '"AlignedDataCtrlr.TxEndedInterval" = 1\n'
)


def _node_or_skip() -> str:
    """The node binary; without node or ocpp-rpc, fail in CI and skip elsewhere."""
    node = shutil.which("node")
    if node is None:
        problem = "node is not installed"
    elif not (PEER / "node_modules" / "ocpp-rpc" / "package.json").is_file():
        problem = "tests/ocpp_rpc/node_modules/ocpp-rpc is missing"
    else:
        return node
    message = f"{problem}; scripts/test installs it (npm ci in tests/ocpp_rpc)"
    if os.environ.get("CI"):
        pytest.fail(f"the ocpp-rpc peer cannot run in CI: {message}", pytrace=False)
    pytest.skip(message)


@dataclass
class Peer:
    """csms.js running: its URL, its process, where its stderr goes."""

    url: str
    process: asyncio.subprocess.Process
    stderr: Path


@asynccontextmanager
async def _strict_csms(node: str, tmp_path: Path, *args: str) -> AsyncIterator[Peer]:
    """csms.js with these arguments, listening; killed on exit if still running."""
    stderr_path = tmp_path / "csms.stderr"
    with stderr_path.open("wb") as stderr:
        peer = await asyncio.create_subprocess_exec(
            node, str(PEER / "csms.js"), "0", *args, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    assert peer.stdout is not None
    try:
        first = (await asyncio.wait_for(peer.stdout.readline(), 10)).decode()
        assert first.startswith("listening 127.0.0.1:"), (
            f"csms.js did not start: {first!r}\n{stderr_path.read_text()}"
        )
        yield Peer(f"ws://{first.split()[1]}", peer, stderr_path)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()


async def _summary(peer: Peer, timeout: float) -> tuple[dict[str, Any], int, str]:
    """csms.js's JSON summary line, its exit code and its log."""
    assert peer.process.stdout is not None
    line = await asyncio.wait_for(peer.process.stdout.readline(), timeout)
    returncode = await asyncio.wait_for(peer.process.wait(), 5)
    log = peer.stderr.read_text()
    assert line, f"csms.js printed no summary (exit {peer.process.returncode})\n{log}"
    return json.loads(line), returncode, log


async def _run_session(node: str, tmp_path: Path) -> tuple[dict[str, Any], int, str]:
    """Run csms.js and the bridge against each other; the summary, node's exit code, its log."""
    async with _strict_csms(
        node, tmp_path, f"--connectors={len(CONNECTORS)}", "--timeout=15"
    ) as peer:
        config = write_config(
            tmp_path / "bridge.toml",
            None,
            evses=json.dumps([1] * len(CONNECTORS)),
            csms=f'url = "{peer.url}"',
            extra=f"[device_model]\n{PRELOAD}",
            mqtt_port=free_port(),  # nothing listens there: this test needs no broker
        )
        async with Bridge(load_settings(config)):
            return await _summary(peer, 17)


def _result(response: dict[str, Any], key: str, component: str, variable: str) -> dict[str, Any]:
    [found] = [
        r
        for r in response[key]
        if r["component"]["name"] == component
        and r["variable"]["name"] == variable
        and r.get("attributeType", "Actual") == "Actual"
    ]
    return found


async def test_strict_ocpp_rpc_csms_sees_no_schema_violation(tmp_path: Path) -> None:
    node = _node_or_skip()
    started = time.monotonic()
    summary, returncode, log = await _run_session(node, tmp_path)
    elapsed = time.monotonic() - started
    context = f"summary: {json.dumps(summary, indent=1)}\ncsms.js log:\n{log}"

    assert summary["violations"] == [], (
        "the strict ocpp-rpc CSMS saw violations:\n"
        + "\n".join(json.dumps(v) for v in summary["violations"])
        + f"\n{context}"
    )
    assert summary["error"] is None, context
    assert returncode == 0, context
    assert summary["ok"] is True, context
    assert summary["steps"][-1] == "done", context
    assert elapsed < 20, f"the session took {elapsed:.1f} s"

    # the handshake: ocpp2.0.1 offered and selected, the station id as identity
    assert "ocpp2.0.1" in summary["offered"]
    assert summary["protocol"] == "ocpp2.0.1"
    assert summary["identity"] == "CP001"

    # boot, status for every connector, heartbeats
    received = summary["received"]
    assert received["BootNotification"] == 1
    assert summary["boot"]["reason"] == "PowerUp"
    assert summary["boot"]["chargingStation"]["vendorName"] == "Acme"
    first_statuses = summary["statuses"][: len(CONNECTORS)]
    assert sorted((s[0], s[1]) for s in first_statuses) == CONNECTORS
    assert {s[2] for s in first_statuses} == {"Available"}
    assert received["StatusNotification"] == len(CONNECTORS) + 1  # + the triggered one
    assert tuple(summary["statuses"][-1][:2]) == CONNECTORS[-1]
    assert received["Heartbeat"] >= 3  # the triggered one and two periodic ones
    assert summary["unexpected"] == []
    assert set(received) == {
        "BootNotification",
        "StatusNotification",
        "Heartbeat",
        "NotifyReport",
        "SecurityEventNotification",  # A04: StartupOfTheDevice
    }

    # GetVariables: every attribute status the request provokes
    responses = summary["responses"]
    first, after_set = responses["GetVariables"]
    statuses = [
        (r["component"]["name"], r["variable"]["name"], r["attributeStatus"])
        for r in first["getVariableResult"]
    ]
    assert statuses == [
        ("OCPPCommCtrlr", "HeartbeatInterval", "Accepted"),
        ("OCPPCommCtrlr", "OfflineThreshold", "Accepted"),
        ("SecurityCtrlr", "BasicAuthPassword", "Rejected"),  # WriteOnly
        ("NoSuchCtrlr", "Enabled", "UnknownComponent"),
        ("OCPPCommCtrlr", "NoSuchVariable", "UnknownVariable"),
        ("EVSE", "AvailabilityState", "Accepted"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "NotSupportedAttributeType"),  # MaxSet
    ]
    get = first["getVariableResult"]
    assert get[0]["attributeValue"] == "1"  # the BootNotification's interval
    assert "attributeValue" not in get[2]
    assert get[5]["attributeValue"] == "Available"

    # SetVariables: one Accepted, one Rejected; the rejected value changed nothing
    [set_result] = responses["SetVariables"]
    assert [r["attributeStatus"] for r in set_result["setVariableResult"]] == [
        "Accepted",
        "Rejected",
    ]
    assert (
        _result(after_set, "getVariableResult", "OCPPCommCtrlr", "OfflineThreshold")[
            "attributeValue"
        ]
        == "90"
    )
    assert (
        _result(after_set, "getVariableResult", "OCPPCommCtrlr", "HeartbeatInterval")[
            "attributeValue"
        ]
        == "1"
    )

    # GetBaseReport(FullInventory): NotifyReport parts seqNo 0.., tbc on all but the last
    assert responses["GetBaseReport"] == [{"status": "Accepted"}]
    parts = summary["reports"]["101"]
    assert len(parts) >= 2, parts
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all(0 < p["items"] <= ITEMS_PER_REPORT for p in parts)

    # GetReport by componentVariable and by componentCriteria
    by_variable, by_criteria = responses["GetReport"]
    assert by_variable == {"status": "Accepted"}
    [(seq_no, tbc, items)] = [(p["seqNo"], p["tbc"], p["items"]) for p in summary["reports"]["102"]]
    assert (seq_no, tbc, items) == (0, False, 2)
    assert by_criteria["status"] in ("Accepted", "EmptyResultSet")
    if by_criteria["status"] == "Accepted":
        assert summary["reports"]["103"][-1]["tbc"] is False

    # TriggerMessage(Heartbeat) and TriggerMessage(StatusNotification, evse): both Accepted
    assert responses["TriggerMessage"] == [{"status": "Accepted"}, {"status": "Accepted"}]


async def test_strict_ocpp_rpc_csms_sees_no_schema_violation_in_a_charging_session(
    tmp_path: Path, broker: Broker
) -> None:
    node = _node_or_skip()
    args = ("--scenario=session", f"--connectors={len(CONNECTORS)}", "--timeout=45")
    async with _strict_csms(node, tmp_path, *args) as peer:
        config = write_config(
            tmp_path / "bridge.toml",
            broker,
            evses=json.dumps([1] * len(CONNECTORS)),
            csms=f'url = "{peer.url}"',
            extra=f"[device_model]\n{SESSION_PRELOAD}",
        )
        argv = ["--config", str(config), "--device-model", "off", "--charge-seconds", "3"]
        lines: list[str] = []
        errors: list[str] = []
        simulator = Simulator(
            cli.options(cli.parser().parse_args(argv)), write=lines.append, complain=errors.append
        )
        sim = asyncio.create_task(simulator.run())  # first: it is there when the bridge asks
        try:
            async with Bridge(load_settings(config)):
                assert await asyncio.wait_for(sim, 60) == 0, (errors, lines)
                summary, returncode, log = await _summary(peer, 30)
        finally:
            sim.cancel()
            await asyncio.gather(sim, return_exceptions=True)
    context = f"summary: {json.dumps(summary, indent=1)}\ncsms.js log:\n{log}"

    assert summary["violations"] == [], (
        "the strict ocpp-rpc CSMS saw violations:\n"
        + "\n".join(json.dumps(v) for v in summary["violations"])
        + f"\n{context}"
    )
    assert summary["error"] is None, context
    assert returncode == 0, context
    assert summary["ok"] is True, context
    assert summary["steps"][-1] == "done", context
    assert summary["unexpected"] == []

    # The strict CSMS answered every CALL of the station with a CALLRESULT (its own answers
    # pass strict validation too: one that failed would have gone out as a CALLERROR).
    received = summary["received"]
    assert {"BootNotification", "StatusNotification", "Authorize"} <= set(received)
    assert {"TransactionEvent", "MeterValues"} <= set(received)
    assert summary["answered"] == received, context
    assert summary["refused"] == {}

    # C01: the token, authorized online
    assert summary["authorizations"] == [{"idToken": DEFAULT_TOKEN, "type": "ISO14443"}]

    # E01-E09: one transaction, Started, Updated, Ended, seqNo from 0 without gaps
    events = summary["transactions"]
    kinds = [e["eventType"] for e in events]
    assert kinds[0] == "Started"
    assert kinds[-1] == "Ended"
    assert set(kinds[1:-1]) == {"Updated"}
    assert len({e["transactionId"] for e in events}) == 1
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert not any(e["offline"] for e in events)
    # once after the authorization, and in the Ended the same token made (E07.FR.02)
    token = {"idToken": DEFAULT_TOKEN, "type": "ISO14443"}
    assert [e["idToken"] for e in events if e["idToken"]] == [token, token]
    assert events[-1]["idToken"] == token
    triggers = {e["triggerReason"] for e in events}
    assert {"CablePluggedIn", "Authorized", "ChargingStateChanged"} <= triggers
    assert {"MeterValuePeriodic", "MeterValueClock"} <= triggers  # J02, J01
    assert "Charging" in {e["chargingState"] for e in events}
    assert events[0]["contexts"] == ["Transaction.Begin"]
    # the TxEndedInterval samples (J02 periodic, J01 clock-aligned), then Transaction.End
    assert set(events[-1]["contexts"]) == {"Sample.Periodic", "Sample.Clock", "Transaction.End"}
    assert events[-1]["contexts"][-1] == "Transaction.End"
    assert (events[-1]["triggerReason"], events[-1]["stoppedReason"]) == ("StopAuthorized", "Local")

    # J01: clock-aligned MeterValues outside a transaction (EVSE 2 never had one)
    meter_values = summary["meterValues"]
    assert 2 in {m["evseId"] for m in meter_values}
    assert all(m["contexts"] == ["Sample.Clock"] and m["readings"] > 0 for m in meter_values)


async def test_strict_ocpp_rpc_csms_drives_remote_control_without_schema_violations(
    tmp_path: Path, broker: Broker
) -> None:
    """Remote start, remote stop (unknown and known), change availability, unlock and reset from
    the strict peer; the OEM simulator answers the bridge's requests like firmware would."""
    node = _node_or_skip()
    async with _strict_csms(node, tmp_path, "--scenario=remote", "--connectors=1") as peer:
        config = write_config(tmp_path / "bridge.toml", broker, csms=f'url = "{peer.url}"')
        argv = ["--config", str(config), "--device-model", "off", "--scenario", "idle"]
        errors: list[str] = []
        simulator = Simulator(
            cli.options(cli.parser().parse_args(argv)),
            write=lambda line: None,
            complain=errors.append,
        )
        sim = asyncio.create_task(simulator.run())
        try:
            async with Bridge(load_settings(config)):
                summary, returncode, log = await _summary(peer, 40)
        finally:
            sim.cancel()
            await asyncio.gather(sim, return_exceptions=True)
    context = f"summary: {json.dumps(summary, indent=1)}\ncsms.js log:\n{log}"
    assert summary["violations"] == [], context
    assert (summary["error"], returncode, summary["ok"]) == (None, 0, True), context
    assert summary["steps"][-6:] == [
        "RequestStartTransaction",
        "RequestStopTransaction",
        "ChangeAvailability",
        "UnlockConnector",
        "Reset",
        "done",
    ], context
    assert summary["answered"] == summary["received"], context
    events = summary["transactions"]
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert (events[0]["eventType"], events[0]["triggerReason"]) == ("Started", "RemoteStart")
    assert (events[-1]["triggerReason"], events[-1]["stoppedReason"]) == ("RemoteStop", "Remote")
    assert summary["authorizations"] == [{"idToken": "RFID42", "type": "ISO14443"}]  # F01.FR.01
