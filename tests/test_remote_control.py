"""The CSMS controls the charger (F01-F03, B11/B12, G03/G04) end to end: a real WebSocket CSMS,
a real Mosquitto and an OEM test double that answers, answers garbage, or never answers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.demo_csms import DemoCsms, Received
from tests.conftest import Broker, Oem, running_bridge, write_config
from tests.test_oem_link import FAST_BACKOFF, accepted

CARD = {"idToken": "CARD1", "type": "ISO14443"}
Reply = Callable[[dict[str, Any]], dict[str, Any] | bytes | None]


class Firmware:
    """Answers the bridge's requests on josev/cs: `replies[name](data)` is the answer's data,
    raw bytes (garbage), or None (never answered). Unlisted requests: nothing."""

    def __init__(self, oem: Oem) -> None:
        self.oem = oem
        self.energy = 1000
        self.replies: dict[str, Reply] = {
            "meter_values": self._meter,
            "stop_charging": lambda data: {"evse_id": data["evse_id"], "status": "accepted"},
            "cs_contactor_status": lambda data: {"evse_id": data["evse_id"], "status": "opened"},
            "process_authorized_token": lambda data: {"status": "accepted"},
            "reset": lambda data: {"status": "accepted"},
            "change_availability": lambda data: {"status": "accepted"},
        }
        self.asked: list[dict[str, Any]] = []

    def _meter(self, data: dict[str, Any]) -> dict[str, Any]:
        self.energy += 100
        return {
            "evse_id": data.get("evse_id", "1"),
            "timestamp": data["timestamp"],
            "voltage": {"l1": 230, "l2": 230, "l3": 230},
            "current": {"l1": 16, "l2": 16, "l3": 16},
            "power_factor": 1,
            "frequency": 50,
            "total_active_energy_imported": self.energy,
            "total_reactive_energy_imported": 0,
        }

    async def run(self) -> None:
        done = 0
        while True:
            await asyncio.sleep(0.005)
            for request in self.oem.requests[done:]:
                done += 1
                self.asked.append(request)
                reply = self.replies.get(request["name"])
                answer = reply(request["data"]) if reply is not None else None
                if answer is None:
                    continue
                if isinstance(answer, bytes):
                    await self.oem.send(answer)
                    continue
                await self.oem.send(
                    {
                        "id": request["id"],
                        "name": request["name"],
                        "type": "response",
                        "data": answer,
                    }
                )

    def names(self) -> list[str]:
        return [r["name"] for r in self.asked]


@dataclass
class Rig:
    bridge: Bridge
    csms: DemoCsms
    firmware: Firmware


@asynccontextmanager
async def charger(
    tmp_path: Path, broker: Broker, oem: Oem, extra: str = "", timeout: float = 1.0
) -> AsyncIterator[Rig]:
    async with DemoCsms() as csms:
        config = write_config(
            tmp_path / "bridge.toml",
            broker,
            csms=f'url = "{csms.url}"',
            oem=f"startup_timeout = 0\nrequest_timeout = {timeout}",
            extra=FAST_BACKOFF + extra,
        )
        firmware = Firmware(oem)
        answering = asyncio.create_task(firmware.run())
        try:
            async with running_bridge(config) as bridge:
                await accepted(bridge)
                await csms.wait_for("StatusNotification")
                yield Rig(bridge, csms, firmware)
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering


async def update(oem: Oem, name: str, data: dict[str, Any]) -> None:
    await oem.send({"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data})


def events(csms: DemoCsms) -> list[dict[str, Any]]:
    return [r.payload for r in csms.received if r.action == "TransactionEvent"]


async def event(csms: DemoCsms, **fields: Any) -> dict[str, Any]:
    def match(r: Received) -> bool:
        return all(r.payload.get(k) == v for k, v in fields.items())

    found = await csms.wait_for("TransactionEvent", predicate=match)
    return found[0].payload


async def until(condition: Callable[[], bool], what: str, limit: float = 10) -> None:
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def updates(oem: Oem, name: str) -> list[dict[str, Any]]:
    return [u["data"] for u in oem.updates if u["name"] == name]


# --- F01-F03


async def test_f01_remote_start_before_the_ev_then_plug_in(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    """AuthorizeRemoteStart (default true): Authorize first, process_authorized_token to the OEM,
    Started with triggerReason RemoteStart and remoteStartId, the OEM hears authorization."""
    async with charger(tmp_path, broker, oem) as rig:
        answer = await rig.csms.call(
            "CP001", "RequestStartTransaction", {"evseId": 1, "remoteStartId": 7, "idToken": CARD}
        )
        assert answer == {"status": "Accepted"}
        authorize = await rig.csms.wait_for("Authorize")
        assert authorize[0].payload == {"idToken": CARD}
        started = await event(rig.csms, eventType="Started")
        assert started["triggerReason"] == "RemoteStart"
        assert started["transactionInfo"]["remoteStartId"] == 7
        assert started["idToken"] == CARD
        assert started["seqNo"] == 0
        assert "process_authorized_token" in rig.firmware.names()
        token_request = next(
            r for r in rig.firmware.asked if r["name"] == "process_authorized_token"
        )
        assert token_request["data"] == {
            "evse_id": "1",
            "token_type": "central",
            "id_token": "CARD1",
        }
        await until(lambda: updates(oem, "authorization"), "the authorization update")
        assert updates(oem, "authorization")[0] == {
            "evse_id": "1",
            "token_type": "central",
            "status": "accepted",
            "id_token": "CARD1",
        }
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        plugged = await event(rig.csms, triggerReason="CablePluggedIn")
        assert plugged["eventType"] == "Updated"
        assert plugged["seqNo"] == 1
        assert "idToken" not in plugged  # once per transaction
        assert "remoteStartId" not in plugged["transactionInfo"]


async def test_f02_remote_start_after_plug_in_answers_the_transaction_id(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    """F02: the EV first (TxStartPoint EVConnected): the answer carries the transactionId and the
    next event carries the token and remoteStartId (F02.FR.01); without AuthorizeRemoteStart no
    Authorize is sent (F01.FR.02)."""
    extra = '"AuthCtrlr.AuthorizeRemoteStart" = false\n'
    async with charger(tmp_path, broker, oem, extra) as rig:
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        started = await event(rig.csms, eventType="Started")
        transaction_id = started["transactionInfo"]["transactionId"]
        answer = await rig.csms.call(
            "CP001", "RequestStartTransaction", {"evseId": 1, "remoteStartId": 8, "idToken": CARD}
        )
        assert answer == {"status": "Accepted", "transactionId": transaction_id}
        remote = await event(rig.csms, triggerReason="RemoteStart")
        assert remote["eventType"] == "Updated"
        assert remote["idToken"] == CARD
        assert remote["transactionInfo"]["remoteStartId"] == 8
        assert remote["transactionInfo"]["transactionId"] == transaction_id
        assert not [r for r in rig.csms.received if r.action == "Authorize"]


async def test_f01_remote_start_rejected_for_unknown_busy_or_faulted_evse(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        unknown = await rig.csms.call(
            "CP001", "RequestStartTransaction", {"evseId": 9, "remoteStartId": 1, "idToken": CARD}
        )
        assert unknown["status"] == "Rejected"
        assert unknown["statusInfo"]["reasonCode"] == "UnknownEvse"
        await update(
            oem,
            "cs_status_and_limits",
            {"evses": [{"evse_id": "1", "status_code": "evse_malfunction"}]},
        )
        await rig.csms.wait_for(
            "StatusNotification", predicate=lambda r: r.payload["connectorStatus"] == "Faulted"
        )
        faulted = await rig.csms.call(
            "CP001", "RequestStartTransaction", {"evseId": 1, "remoteStartId": 2, "idToken": CARD}
        )
        assert faulted["status"] == "Rejected"  # F01.FR.23


async def test_f01_a_central_token_starts_without_authorize(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        answer = await rig.csms.call(
            "CP001",
            "RequestStartTransaction",
            {"evseId": 1, "remoteStartId": 3, "idToken": {"idToken": "", "type": "Central"}},
        )
        assert answer == {"status": "Accepted"}  # Central: no Authorize (F01.FR.02)
        started = await event(rig.csms, eventType="Started")
        assert started["triggerReason"] == "RemoteStart"
        assert not [r for r in rig.csms.received if r.action == "Authorize"]


async def test_f01_the_oem_discarding_the_token_starts_nothing(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        rig.firmware.replies["process_authorized_token"] = lambda data: {"status": "discarded"}
        await rig.csms.call(
            "CP001", "RequestStartTransaction", {"evseId": 1, "remoteStartId": 4, "idToken": CARD}
        )
        await until(lambda: "process_authorized_token" in rig.firmware.names(), "the OEM asked")
        await asyncio.sleep(0.3)
        assert events(rig.csms) == []
        assert rig.bridge.station.transactions.sessions[1].token is None


async def test_f01_a_silent_oem_counts_as_accepted(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    """process_authorized_token: on timeout the token is used (SESSION_API.md)."""
    async with charger(tmp_path, broker, oem, timeout=0.3) as rig:
        rig.firmware.replies["process_authorized_token"] = lambda data: None
        await rig.csms.call(
            "CP001", "RequestStartTransaction", {"evseId": 1, "remoteStartId": 5, "idToken": CARD}
        )
        started = await event(rig.csms, eventType="Started")
        assert started["transactionInfo"]["remoteStartId"] == 5


async def test_f03_remote_stop_ends_with_remote_stop_and_stop_charging(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        unknown = await rig.csms.call("CP001", "RequestStopTransaction", {"transactionId": "nope"})
        assert unknown["status"] == "Rejected"  # F03.FR.08
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        await oem.request(
            {
                "id": str(uuid.uuid4()),
                "name": "authorization",
                "type": "request",
                "data": {"evse_id": "1", "id_token": "CARD1", "token_type": "ISO14443"},
            }
        )
        started = await event(rig.csms, eventType="Started")
        transaction_id = started["transactionInfo"]["transactionId"]
        answer = await rig.csms.call(
            "CP001", "RequestStopTransaction", {"transactionId": transaction_id}
        )
        assert answer == {"status": "Accepted"}  # F03.FR.07
        ended = await event(rig.csms, eventType="Ended")
        assert ended["triggerReason"] == "RemoteStop"
        assert ended["transactionInfo"]["stoppedReason"] == "Remote"
        assert ended["transactionInfo"]["transactionId"] == transaction_id
        await until(lambda: "stop_charging" in rig.firmware.names(), "stop_charging")
        await until(
            lambda: any(u["status"] == "ended" for u in updates(oem, "transaction_status")),
            "transaction_status ended",
        )


async def test_f01_remote_start_from_the_oem_through_ocpp_message(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    """One dispatcher: the OEM's RequestStartTransaction starts a local transaction."""
    async with charger(tmp_path, broker, oem) as rig:
        data = await oem.ocpp(
            "RequestStartTransaction",
            {
                "evseId": 1,
                "remoteStartId": 11,
                "idToken": {"idToken": "", "type": "NoAuthorization"},
            },
        )
        assert data["message_type"] == "CallResult"
        assert data["payload"] == {"status": "Accepted"}
        started = await event(rig.csms, eventType="Started")
        assert started["transactionInfo"]["remoteStartId"] == 11


# --- B11, B12


async def test_b11_reset_without_transactions_is_the_oems_answer(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        assert await rig.csms.call("CP001", "Reset", {"type": "Immediate"}) == {
            "status": "Accepted"
        }
        assert rig.firmware.asked[-1]["name"] == "reset"
        assert rig.firmware.asked[-1]["data"] == {}
        assert rig.bridge.station.store.station_value("boot_reason") == "RemoteReset"
        rig.firmware.replies["reset"] = lambda data: {"status": "rejected"}
        refused = await rig.csms.call("CP001", "Reset", {"type": "OnIdle", "evseId": 1})
        assert refused["status"] == "Rejected"
        assert rig.firmware.asked[-1]["data"] == {"evse_id": "1"}
        rig.firmware.replies["reset"] = lambda data: b'{"id": "garbage"'
        assert (await rig.csms.call("CP001", "Reset", {"type": "Immediate"}))[
            "status"
        ] == "Rejected"
        assert rig.bridge.station.store.station_value("boot_reason") is None
        unknown = await rig.csms.call("CP001", "Reset", {"type": "Immediate", "evseId": 5})
        assert unknown["status"] == "Rejected"


async def test_b11_after_the_reset_the_boot_reason_is_remote_reset(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        assert await rig.csms.call("CP001", "Reset", {"type": "Immediate"}) == {
            "status": "Accepted"
        }
    # The OEM's reset restarted the board: the rig.bridge starts again on the same store.
    async with charger(tmp_path, broker, oem) as rig:
        boots = await rig.csms.wait_for("BootNotification")
        assert boots[0].payload["reason"] == "RemoteReset"
        assert rig.bridge.station.store.station_value("boot_reason") is None


async def test_b12_on_idle_is_scheduled_until_the_transaction_ends(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        await event(rig.csms, eventType="Started")
        assert await rig.csms.call("CP001", "Reset", {"type": "OnIdle"}) == {"status": "Scheduled"}
        assert "reset" not in rig.firmware.names()
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "A1"})
        await event(rig.csms, eventType="Ended")
        await until(lambda: "reset" in rig.firmware.names(), "the scheduled reset")


async def test_b12_immediate_ends_the_transaction_with_immediate_reset(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        await event(rig.csms, eventType="Started")
        assert await rig.csms.call("CP001", "Reset", {"type": "Immediate"}) == {
            "status": "Accepted"
        }
        ended = await event(rig.csms, eventType="Ended")
        assert ended["triggerReason"] == "ResetCommand"
        assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
        assert rig.firmware.names().index("reset") > 0


# --- G03, G04


async def test_g03_change_availability_inoperative_and_back(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        answer = await rig.csms.call(
            "CP001", "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}
        )
        assert answer == {"status": "Accepted"}
        asked = next(r for r in rig.firmware.asked if r["name"] == "change_availability")
        assert asked["data"] == {"operational_status": "inoperative", "evse_id": "1"}
        await rig.csms.wait_for(
            "StatusNotification", predicate=lambda r: r.payload["connectorStatus"] == "Unavailable"
        )
        again = await rig.csms.call(
            "CP001", "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}
        )
        assert again == {"status": "Accepted"}  # already so: nothing asked
        assert len([n for n in rig.firmware.names() if n == "change_availability"]) == 1
        back = await rig.csms.call(
            "CP001", "ChangeAvailability", {"operationalStatus": "Operative"}
        )
        assert back == {"status": "Accepted"}
        await rig.csms.wait_for(
            "StatusNotification",
            predicate=lambda r: r.payload["connectorStatus"] == "Available",
            count=2,
        )


async def test_g03_refused_or_unanswered_change_is_rejected_and_changes_nothing(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem, timeout=0.3) as rig:
        rig.firmware.replies["change_availability"] = lambda data: None
        answer = await rig.csms.call(
            "CP001", "ChangeAvailability", {"operationalStatus": "Inoperative"}
        )
        assert answer["status"] == "Rejected"
        assert rig.bridge.station.availability.status((1, 1)) == "Available"
        unknown = await rig.csms.call(
            "CP001", "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 4}}
        )
        assert unknown["status"] == "Rejected"


async def test_g03_inoperative_persists_across_a_restart(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        await rig.csms.call("CP001", "ChangeAvailability", {"operationalStatus": "Inoperative"})
    async with charger(tmp_path, broker, oem) as rig:
        statuses = await rig.csms.wait_for("StatusNotification")
        assert statuses[0].payload["connectorStatus"] == "Unavailable"  # G03.FR.05


async def test_g04_a_running_transaction_is_not_interrupted(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        await event(rig.csms, eventType="Started")
        answer = await rig.csms.call(
            "CP001", "ChangeAvailability", {"operationalStatus": "Inoperative"}
        )
        assert answer == {"status": "Scheduled"}
        assert "change_availability" not in rig.firmware.names()
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "A1"})
        ended = await event(rig.csms, eventType="Ended")
        assert ended["triggerReason"] == "EVCommunicationLost"
        await until(lambda: "change_availability" in rig.firmware.names(), "the scheduled change")
        await rig.csms.wait_for(
            "StatusNotification", predicate=lambda r: r.payload["connectorStatus"] == "Unavailable"
        )


@pytest.mark.parametrize("status", ["Inoperative"])
async def test_g03_change_availability_from_the_oem_through_ocpp_message(
    tmp_path: Path, broker: Broker, oem: Oem, status: str
) -> None:
    async with charger(tmp_path, broker, oem) as rig:
        data = await oem.ocpp("ChangeAvailability", {"operationalStatus": status})
        assert data["payload"] == {"status": "Accepted"}
        assert rig.bridge.station.availability.status((1, 1)) == "Unavailable"


# --- SetVariables side effects


async def test_a_new_tx_updated_interval_applies_to_the_running_transaction(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    """The default (120 s) would send no periodic sample during this test; 1 s set by the CSMS
    during the transaction does, at once."""
    async with charger(tmp_path, broker, oem) as rig:
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        await event(rig.csms, eventType="Started")
        answer = await rig.csms.call(
            "CP001",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "SampledDataCtrlr"},
                        "variable": {"name": "TxUpdatedInterval"},
                        "attributeValue": "1",
                    }
                ]
            },
        )
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
        periodic = await event(rig.csms, triggerReason="MeterValuePeriodic")
        contexts = {v["context"] for v in periodic["meterValue"][0]["sampledValue"]}
        assert contexts == {"Sample.Periodic"}
