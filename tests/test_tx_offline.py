"""Offline and power loss, end to end (E11, E12, C12-C15 offline, the power-loss rule of
SESSION_API "Transactions"): the CSMS goes away and comes back on the same port; the bridge runs
in this event loop, or as `python -m bridge run` killed with SIGKILL and started again.

- E12: events made while offline carry `offline: true`, are queued durably and reach the CSMS
  after the reconnect in their order, the seqNo continuous, each once.
- C13 / C15 / C12 offline: the local list, the cache and OfflineTxForUnknownIdEnabled decide.
- Power loss: a transaction open when the bridge died is ended after the restart with
  stoppedReason PowerLoss (triggerReason AbnormalCondition, as libocpp maps PowerLoss), or goes on
  when the OEM's cp_status shows the EV still charging; never two Ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker
from tests.robustness.robust_support import BridgeProcess
from tests.tx_support import (
    BEGIN,
    END,
    TOKEN,
    WAIT,
    Csms,
    Data,
    Event,
    check_events,
    config,
    firmware_oem,
    id_token,
    settle,
    station,
    transactions,
)

TAG = id_token()


# --- E12: a transaction made offline


@pytest.mark.parametrize(("unknown_allowed", "answer"), [(True, "accepted"), (False, "rejected")])
async def test_c15_offline_unknown_id(
    tmp_path: Path, broker: Broker, unknown_allowed: bool, answer: str
) -> None:
    points = {
        "AuthCtrlr.OfflineTxForUnknownIdEnabled": str(unknown_allowed).lower(),
        "TxCtrlr.TxStartPoint": "EVConnected",
    }
    async with station(tmp_path, broker, points) as s:
        await s.csms_down()
        await s.oem.plug()
        assert await s.oem.present() == answer  # C15.FR.01 / C15.FR.02
        if unknown_allowed:
            await s.oem.charge()
        await settle()
        first = s.csms
        csms = await s.csms_back()
        await csms.wait_events(4 if unknown_allowed else 1)
        await settle()
    assert first.events() == []
    offline = {"offline": True}
    if unknown_allowed:
        expected = [
            Event(
                "Started",
                "CablePluggedIn",
                0,
                charging_state="EVConnected",
                meter=(BEGIN,),
                **offline,
            ),
            Event("Updated", "Authorized", 1, id_token=TAG, **offline),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE", **offline),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging", **offline),
        ]
    else:  # the transaction of the cable, never authorized
        expected = [
            Event(
                "Started",
                "CablePluggedIn",
                0,
                charging_state="EVConnected",
                meter=(BEGIN,),
                **offline,
            ),
        ]
    check_events(csms.events(), expected)
    assert csms.payloads("Authorize") == []  # nothing queued for later


async def test_e12_offline_events_are_delivered_in_order_after_the_reconnect(
    tmp_path: Path, broker: Broker
) -> None:
    """E11 / E12: online start, the CSMS lost while charging, the driver stops offline (E08),
    unplugs; after the reconnect every event of the outage arrives, `offline: true`, in order,
    before anything newer, and the seqNo never restarts."""
    async with station(tmp_path, broker, {"TxCtrlr.TxStartPoint": "EVConnected"}) as s:
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(4)
        await settle()  # the last one acknowledged
        first = s.csms
        await s.csms_down()
        assert await s.oem.present() == "accepted"  # E08: the same token stops offline
        await s.oem.wait_request("stop_charging")
        await s.oem.unplug()
        await settle()
        # A second transaction, all offline.
        await s.oem.plug()
        await settle()
        csms = await s.csms_back()
        await csms.wait_events(2)
        await settle()
    offline = {"offline": True}
    online = [
        Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
        Event("Updated", "Authorized", 1, id_token=TAG),
        Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
        Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
    ]
    by_tx = transactions(csms.events())
    assert len(by_tx) == 2
    (tx1, tx2) = by_tx
    first_id = check_events(first.events(), online)
    assert tx1 == first_id
    check_events(
        by_tx[tx1],
        [
            Event(
                "Ended",
                "StopAuthorized",
                4,
                stopped_reason="Local",
                id_token=TAG,
                meter=(END,),
                **offline,
            ),
        ],
    )
    check_events(
        by_tx[tx2],
        [
            Event(
                "Started",
                "CablePluggedIn",
                0,
                charging_state="EVConnected",
                meter=(BEGIN,),
                **offline,
            )
        ],
    )
    # In their original order: the first transaction's end before the second's start.
    kinds = [(e["transactionInfo"]["transactionId"], e["eventType"]) for e in csms.events()]
    assert kinds == [(tx1, "Ended"), (tx2, "Started")]


@pytest.mark.parametrize(
    ("entry", "local_offline", "unknown_allowed", "answer"),
    [
        ("Accepted", "true", "false", "accepted"),  # C13.FR.02: the list decides offline
        ("Blocked", "true", "true", "rejected"),  # C13.FR.01: known not Accepted: refused
        ("Accepted", "false", "false", "rejected"),  # LocalAuthorizeOffline false: unknown
        ("Accepted", "false", "true", "accepted"),  # ... and unknown ids allowed
    ],
)
async def test_c13_offline_authorization_through_the_local_list(
    tmp_path: Path,
    broker: Broker,
    entry: str,
    local_offline: str,
    unknown_allowed: str,
    answer: str,
) -> None:
    points = {
        "AuthCtrlr.LocalAuthorizeOffline": local_offline,
        "AuthCtrlr.OfflineTxForUnknownIdEnabled": unknown_allowed,
    }
    async with station(tmp_path, broker, points) as s:
        items = [{"idToken": TAG, "idTokenInfo": {"status": entry}}]
        result = await s.csms.call(
            "CP001",
            "SendLocalList",
            {"versionNumber": 3, "updateType": "Full", "localAuthorizationList": items},
        )
        assert result == {"status": "Accepted"}
        await s.csms_down()
        assert await s.oem.present() == answer


@pytest.mark.parametrize(("cached", "answer"), [("Accepted", "accepted"), ("Blocked", "rejected")])
async def test_c12_offline_a_cached_token_decides_with_local_authorize_offline(
    tmp_path: Path, broker: Broker, cached: str, answer: str
) -> None:
    points = {"AuthCtrlr.OfflineTxForUnknownIdEnabled": "true"}
    async with station(tmp_path, broker, points) as s:
        s.csms.tokens[TOKEN] = {"status": cached}
        await s.oem.present()  # cached now
        await s.csms_down()
        assert await s.oem.present() == answer


# --- power loss: the bridge killed with an open transaction


@contextlib.asynccontextmanager
async def bridge_process(path: Path, log: Path) -> AsyncIterator[BridgeProcess]:
    process = BridgeProcess(path, log).start()
    try:
        yield process
    finally:
        process.kill9()


def unique(events: list[Data]) -> list[Data]:
    """The events without exact repeats: one the CSMS received just before the kill may come
    again after the restart (at least once: its answer did not reach the store in time)."""
    out: list[Data] = []
    for event in events:
        if event not in out:
            out.append(event)
    return out


async def charging_then_killed(
    tmp_path: Path, broker: Broker, csms: Csms, oem: Any
) -> tuple[Path, Path]:
    path = config(tmp_path, broker, csms.url, {"TxCtrlr.TxStartPoint": "EVConnected"})
    log = tmp_path / "bridge.log"
    async with bridge_process(path, log) as process:
        await csms.wait_for("StatusNotification", timeout=WAIT)
        await oem.plug()
        assert await oem.present() == "accepted"
        await oem.charge()
        await csms.wait_events(4)
        await settle(0.5)  # acknowledged and removed from the queue
        process.kill9()  # power loss: no clean stop
    return path, log


async def test_power_loss_ends_the_open_transaction_with_power_loss_after_the_restart(
    tmp_path: Path, broker: Broker
) -> None:
    async with Csms() as csms, firmware_oem(broker, 1) as oem:
        path, log = await charging_then_killed(tmp_path, broker, csms, oem)
        # The power came back: the EV is still plugged in but not charging (the contactor
        # opened with the power).
        oem.evse().contactor = "opened"
        async with bridge_process(path, log):
            await csms.wait_for("BootNotification", count=2, timeout=WAIT)
            await csms.wait_for("StatusNotification", count=2, timeout=WAIT)
            await oem.pilot("B1")
            (ended,) = await csms.wait_ended()
            await settle()
    events = unique(csms.events())
    check_events(
        events,
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
            # The seqNo goes on after the restart; PowerLoss, never a second Ended.
            Event(
                "Ended",
                "AbnormalCondition",
                4,
                charging_state="EVConnected",
                stopped_reason="PowerLoss",
                meter=(END,),
            ),
        ],
    )
    assert oem.transaction_status()[-1] == ("ended", ended["transactionInfo"]["transactionId"])


async def test_power_loss_with_a_silent_oem_ends_the_transaction_after_the_wait(
    tmp_path: Path, broker: Broker
) -> None:
    async with Csms() as csms, firmware_oem(broker, 1) as oem:
        path, log = await charging_then_killed(tmp_path, broker, csms, oem)
        async with bridge_process(path, log):
            (ended,) = await csms.wait_ended(timeout=30)  # 2 x MessageTimeout, at least 10 s
            await settle()
    assert [e["eventType"] for e in unique(csms.events())].count("Ended") == 1
    assert ended["seqNo"] == 4
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended["triggerReason"] == "AbnormalCondition"


async def test_power_loss_resumes_the_transaction_when_the_ev_still_charges(
    tmp_path: Path, broker: Broker
) -> None:
    async with Csms() as csms, firmware_oem(broker, 1) as oem:
        path, log = await charging_then_killed(tmp_path, broker, csms, oem)
        async with bridge_process(path, log):
            await csms.wait_for("BootNotification", count=2, timeout=WAIT)
            await csms.wait_for("StatusNotification", count=2, timeout=WAIT)
            # The OEM republishes its state: the contactor closed, the EV charging.
            await oem.contactor("closed")
            await oem.pilot("C2")
            await csms.wait_events(5)
            await settle(1)
            assert [e["eventType"] for e in unique(csms.events())].count("Ended") == 0
            assert await oem.present() == "accepted"  # the driver stops it as usual
            (ended,) = await csms.wait_ended()
            await oem.unplug()
            await settle()
    events = unique(csms.events())
    transaction_id = check_events(
        events,
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
            # Resumed after the restart: the state as the bridge found it.
            Event("Updated", "ChargingStateChanged", 4, charging_state="Charging"),
            Event("Ended", "StopAuthorized", 5, stopped_reason="Local", id_token=TAG, meter=(END,)),
        ],
    )
    assert ended["transactionInfo"]["transactionId"] == transaction_id


async def test_power_loss_while_offline_keeps_the_queued_events_and_their_order(
    tmp_path: Path, broker: Broker
) -> None:
    """E12 across a power loss: an event made offline is in the store when the bridge dies;
    after the restart it reaches the CSMS first, still `offline: true`, then the PowerLoss end
    (made online), the seqNo continuous."""
    async with firmware_oem(broker, 1) as oem:
        first = Csms()
        await first.__aenter__()
        port = first.port
        path = config(tmp_path, broker, first.url, {"TxCtrlr.TxStartPoint": "EVConnected"})
        log = tmp_path / "bridge.log"
        async with bridge_process(path, log) as process:
            await first.wait_for("StatusNotification", timeout=WAIT)
            await oem.plug()
            assert await oem.present() == "accepted"
            await oem.charge()
            await first.wait_events(4)
            await settle(0.5)
            await first.__aexit__(None, None, None)
            await oem.until(
                lambda: any(d["status"] == "disconnected" for d in oem.named("websocket_status")),
                "the CSMS link lost",
            )
            await oem.suspend_ev()  # offline: Updated SuspendedEV, queued
            await settle(0.5)
            process.kill9()
        async with Csms(port=port) as csms, bridge_process(path, log):
            await csms.wait_for("BootNotification", timeout=WAIT)
            await csms.wait_for("StatusNotification", timeout=WAIT)
            await oem.contactor("closed")  # republished: the contactor still closed,
            await oem.pilot("B2")  # plugged in, not charging
            await csms.wait_ended()
            await settle()
    before = check_events(
        unique(first.events()),
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=TAG),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
        ],
    )
    after = check_events(
        unique(csms.events()),
        [
            Event("Updated", "ChargingStateChanged", 4, charging_state="SuspendedEV", offline=True),
            Event("Ended", "AbnormalCondition", 5, stopped_reason="PowerLoss", meter=(END,)),
        ],
    )
    assert after == before  # one transaction across the power loss
    assert oem.named("stop_charging", "request") == [{"evse_id": "1"}]
