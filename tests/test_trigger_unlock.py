"""Remote control (F05 UnlockConnector, F06 TriggerMessage) end to end through a real Mosquitto,
a real WebSocket CSMS and an OEM test double that answers, answers `locked`, answers garbage,
answers late or never; plus the mappings as plain functions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge import schemas
from bridge.app import Bridge
from bridge.demo_csms import CallErrorReceived, DemoCsms, Received
from bridge.oem.link import OemAnswer, OemNoAnswer, OemReply
from bridge.rpc import CallResult
from bridge.rpc.request import Request
from bridge.station.connector_lock import ConnectorLock, unlock_answer
from bridge.station.effects import AskOem, Schedule, Send
from bridge.station.evse_session import EvseSession, Transaction
from bridge.station.remote_control import RemoteControl
from tests.conftest import Broker, Oem, running_bridge, write_config
from tests.test_oem_link import FAST_BACKOFF, accepted
from tests.test_registration import Harness

READING = {
    "timestamp": "2026-12-03T10:00:00.000Z",
    "voltage": {"l1": 230.1, "l2": 229.8, "l3": 231.0},
    "current": {"l1": 16.0, "l2": 15.9, "l3": 16.1},
    "power_factor": 0.99,
    "frequency": 50.0,
    "total_active_energy_imported": 123456,
    "total_reactive_energy_imported": 789,
}
UNLOCK_RESPONSE = schemas.ocpp_validator("ocpp2.0.1", "UnlockConnector", response=True)
TRIGGER_RESPONSE = schemas.ocpp_validator("ocpp2.0.1", "TriggerMessage", response=True)
Reply = Callable[[dict[str, Any]], dict[str, Any] | bytes | None]


@asynccontextmanager
async def bridge_for(
    tmp_path: Path, broker: Broker, url: str, evses: str = "[1, 1]", oem: str = ""
) -> AsyncIterator[Bridge]:
    """The bridge with a 1 s OEM request timeout (late and missing answers end quickly)."""
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        evses=evses,
        csms=f'url = "{url}"',
        oem=f"startup_timeout = 0\nrequest_timeout = 1\n{oem}",
        extra=FAST_BACKOFF,
    )
    async with running_bridge(config) as bridge:
        yield bridge


def answering(oem: Oem, name: str, reply: Reply, delay: float = 0.0) -> list[dict[str, Any]]:
    """The OEM test double: answers each request of the bridge named `name` with `reply(data)`
    (a data dict, raw bytes, or None: no answer), `delay` s late; returns the requests seen."""
    seen: list[dict[str, Any]] = []

    async def loop() -> None:
        done = 0
        while True:
            await asyncio.sleep(0.01)
            for request in oem.requests[done:]:
                done += 1
                if request["name"] != name:
                    continue
                seen.append(request)
                answer = reply(request["data"])
                if answer is None:
                    continue
                if delay:
                    await asyncio.sleep(delay)
                if isinstance(answer, bytes):
                    await oem.send(answer)
                else:
                    await oem.send(
                        {"id": request["id"], "name": name, "type": "response", "data": answer}
                    )

    tasks = getattr(oem, "doubles", [])
    tasks.append(asyncio.create_task(loop()))
    oem.doubles = tasks  # type: ignore[attr-defined]  # cancelled with the test's loop
    return seen


def lock_state(status: str, **extra: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: {
        "evse_id": data["evse_id"],
        "connector_id": data["connector_id"],
        "status": status,
        **extra,
    }


def ocpp_result(payload: dict[str, Any]) -> Reply:
    return lambda data: {
        "message_type": "CallResult",
        "ocpp_version": "ocpp2.0.1",
        "payload": payload,
    }


async def update(oem: Oem, name: str, data: dict[str, Any]) -> None:
    await oem.send({"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data})


async def until(condition: Callable[[], object], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited in vain for {what}")


async def unlock(csms: DemoCsms, evse: int, connector: int) -> dict[str, Any]:
    result = await csms.call("CP001", "UnlockConnector", {"evseId": evse, "connectorId": connector})
    assert UNLOCK_RESPONSE(result) == []
    return result


async def trigger(csms: DemoCsms, requested: str, **evse: int) -> dict[str, Any]:
    payload: dict[str, Any] = {"requestedMessage": requested}
    if evse:
        payload["evse"] = {"id": evse["id"], **({"connectorId": evse["c"]} if "c" in evse else {})}
    result = await csms.call("CP001", "TriggerMessage", payload)
    assert TRIGGER_RESPONSE(result) == []
    return result


def since(csms: DemoCsms, count: int, action: str) -> list[Received]:
    return [r for r in csms.received[count:] if r.action == action]


# --- F05 UnlockConnector: the mapping


@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        ("unlocked", "Unlocked", None),
        ("locked", "UnlockFailed", "StillLocked"),
        ("error", "UnlockFailed", "LockError"),
        ("unknown", "UnlockFailed", "LockStateUnknown"),
    ],
)
def test_f05_only_an_unlocked_lock_is_unlocked(
    status: str, expected: str, reason: str | None
) -> None:
    answer = unlock_answer(
        OemAnswer("cs_connector", {"evse_id": "1", "connector_id": 2, "status": status}), "1", 2
    )
    assert answer["status"] == expected
    assert answer.get("statusInfo", {}).get("reasonCode") == reason
    assert UNLOCK_RESPONSE(answer) == []


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (OemNoAnswer("timeout", "the OEM did not answer in 5 s"), "NoOemAnswer"),
        (OemNoAnswer("invalid", "status 'jammed' is not one of the values"), "InvalidOemAnswer"),
        (
            OemAnswer(
                "cs_connector",
                {
                    "message_type": "CallError",
                    "ocpp_version": "ocpp2.0.1",
                    "error_code": "InternalError",
                    "error_description": "lock driver crashed",
                    "error_details": {},
                },
            ),
            "OemError",
        ),
        (  # an answer about another connector is no answer to this request
            OemAnswer("cs_connector", {"evse_id": "1", "connector_id": 1, "status": "unlocked"}),
            "InvalidOemAnswer",
        ),
    ],
    ids=["timeout", "invalid", "call-error", "other-connector"],
)
def test_f05_no_usable_oem_answer_is_unlock_failed(reply: OemReply, reason: str) -> None:
    answer = unlock_answer(reply, "1", 2)
    assert answer["status"] == "UnlockFailed"
    assert answer["statusInfo"]["reasonCode"] == reason
    assert UNLOCK_RESPONSE(answer) == []


def test_f05_the_oem_is_asked_with_its_own_name_of_the_evse() -> None:
    asked: list[tuple[str, dict[str, Any]]] = []

    async def ask(name: str, data: dict[str, Any], timeout: float | None) -> OemReply:
        asked.append((name, data))
        return OemAnswer(name, lock_state("unlocked")(data))

    sessions = {1: EvseSession(1), 2: EvseSession(2)}
    lock = ConnectorLock([(1, 1), (2, 1)], sessions, lambda n: f"DE*ACM*E{n}", lambda: ask)
    request = Request("csms", "ocpp2.0.1", "UnlockConnector", {"evseId": 2, "connectorId": 1})
    assert asyncio.run(lock.unlock_connector(request)) == {"status": "Unlocked"}
    assert asked == [
        ("cs_connector", {"evse_id": "DE*ACM*E2", "connector_id": 1, "action": "unlock"})
    ]


def test_f05_fr02_only_an_authorized_transaction_keeps_the_connector_locked() -> None:
    asked: list[str] = []

    async def ask(name: str, data: dict[str, Any], timeout: float | None) -> OemReply:
        asked.append(data["evse_id"])
        return OemAnswer(name, lock_state("unlocked")(data))

    sessions = {1: EvseSession(1), 2: EvseSession(2)}
    sessions[1].transaction = Transaction("tx-1", authorized=True)
    sessions[2].transaction = Transaction("tx-2", authorized=False)  # EV plugged in, no token
    lock = ConnectorLock([(1, 1), (2, 1)], sessions, str, lambda: ask)

    def run(evse: int) -> dict[str, Any]:
        payload = {"evseId": evse, "connectorId": 1}
        request = Request("csms", "ocpp2.0.1", "UnlockConnector", payload)
        return asyncio.run(lock.unlock_connector(request))

    answer = run(1)
    assert answer["status"] == "OngoingAuthorizedTransaction"
    assert answer["statusInfo"]["reasonCode"] == "TxInProgress"
    assert run(2) == {"status": "Unlocked"}
    assert asked == ["2"]  # the OEM never heard of EVSE 1


# --- F05 UnlockConnector end to end


@pytest.mark.parametrize(
    ("reply", "delay", "status", "reason"),
    [
        (lock_state("unlocked"), 0.0, "Unlocked", None),  # TC_F_06_CS
        (lock_state("locked"), 0.0, "UnlockFailed", "StillLocked"),
        (lock_state("error", info="motor blocked"), 0.0, "UnlockFailed", "LockError"),
        (lock_state("jammed"), 0.0, "UnlockFailed", "InvalidOemAnswer"),  # schema-invalid
        (lambda data: b"{not json", 0.0, "UnlockFailed", "NoOemAnswer"),  # garbage: dropped
        (lock_state("unlocked"), 1.5, "UnlockFailed", "NoOemAnswer"),  # late
        (lambda data: None, 0.0, "UnlockFailed", "NoOemAnswer"),  # never
    ],
    ids=["unlocked", "locked", "error", "invalid", "not-json", "late", "never"],
)
async def test_f05_unlock_connector_is_the_oem_lock_state(
    tmp_path: Path,
    broker: Broker,
    oem: Oem,
    reply: Reply,
    delay: float,
    status: str,
    reason: str | None,
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        seen = answering(oem, "cs_connector", reply, delay)
        result = await unlock(csms, 2, 1)
        assert result["status"] == status
        assert result.get("statusInfo", {}).get("reasonCode") == reason
        if reason == "LockError":
            assert result["statusInfo"]["additionalInfo"] == "motor blocked"
        assert [r["data"] for r in seen] == [
            {"evse_id": "2", "connector_id": 1, "action": "unlock"}
        ]
        assert csms.schema_errors == []


async def test_f05_fr03_an_unknown_connector_or_evse_is_unknown_connector(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        seen = answering(oem, "cs_connector", lock_state("unlocked"))
        result = await unlock(csms, 1, 999)  # TC_F_10_CS
        assert result["status"] == "UnknownConnector"
        assert result["statusInfo"]["reasonCode"] == "UnknownConnectorId"
        result = await unlock(csms, 9, 1)
        assert result["status"] == "UnknownConnector"
        assert result["statusInfo"]["reasonCode"] == "UnknownEvse"
        assert (await unlock(csms, 1, 1))["status"] == "Unlocked"
        assert len(seen) == 1  # the OEM was asked for the connector that exists only


async def test_f05_fr02_no_unlock_while_an_authorized_transaction_runs(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url, evses="[1]") as bridge:
        await accepted(bridge)
        answering(oem, "meter_values", lambda data: READING)
        seen = answering(oem, "cs_connector", lock_state("unlocked"))
        session = bridge.station.transactions.sessions[1]
        # TxStartPoint Authorized,EVConnected: plugging in starts a transaction, not authorized.
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        await until(lambda: session.transaction is not None, "the transaction")
        assert (await unlock(csms, 1, 1))["status"] == "Unlocked"
        answer = await oem.request(
            {
                "id": str(uuid.uuid4()),
                "name": "authorization",
                "type": "request",
                "data": {"evse_id": "1", "token_type": "no_authorization"},
            }
        )
        assert answer["data"] == {"status": "accepted"}
        assert session.transaction is not None
        assert session.transaction.authorized
        result = await unlock(csms, 1, 1)
        assert result["status"] == "OngoingAuthorizedTransaction"
        assert len(seen) == 1  # not asked while the authorized transaction runs
        assert csms.schema_errors == []


async def test_f05_unlock_connector_from_the_oem_runs_the_same_handler(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with bridge_for(tmp_path, broker, "ws://127.0.0.1:9/ocpp"):
        seen = answering(oem, "cs_connector", lock_state("locked"))
        data = await oem.ocpp("UnlockConnector", {"evseId": 1, "connectorId": 1})
        assert data["message_type"] == "CallResult"
        assert data["payload"]["status"] == "UnlockFailed"
        assert [r["data"]["evse_id"] for r in seen] == ["1"]
        data = await oem.ocpp("UnlockConnector", {"evseId": 1, "connectorId": 7})
        assert data["payload"]["status"] == "UnknownConnector"
        assert len(seen) == 1


# --- F06 TriggerMessage: the decision table, no sockets


def decide(h: Harness, requested: str, evse: dict[str, int] | None = None) -> CallResult:
    payload: dict[str, Any] = {"requestedMessage": requested}
    if evse is not None:
        payload["evse"] = evse
    result = asyncio.run(
        h.station.csms_call(Request("csms", "ocpp2.0.1", "TriggerMessage", payload))
    )
    assert isinstance(result, CallResult), result
    assert TRIGGER_RESPONSE(result.payload) == []
    return result


def booted(tmp_path: Path) -> Harness:
    h = Harness(tmp_path)
    h.connect()
    h.boot()
    h.sent()
    h.station.take_effects()
    return h


@pytest.mark.parametrize(
    "requested",
    [
        "SignChargingStationCertificate",
        "SignV2GCertificate",
        "SignCombinedCertificate",
        "PublishFirmwareStatusNotification",
    ],
)
def test_f06_fr08_what_the_station_cannot_send_is_not_implemented(
    tmp_path: Path, requested: str
) -> None:
    result = decide(booted(tmp_path), requested)
    assert result.payload == {"status": "NotImplemented"}
    assert result.effects == ()


@pytest.mark.parametrize("requested", ["LogStatusNotification", "FirmwareStatusNotification"])
def test_f06_fr16_without_the_oem_doing_logs_or_firmware_the_station_is_idle(
    tmp_path: Path, requested: str
) -> None:
    h = booted(tmp_path)
    result = decide(h, requested)
    assert result.payload == {"status": "Accepted"}
    assert result.effects == (Send(requested, {"status": "Idle"}, "trigger"),)
    assert h.sent() == []  # F06.FR.04: after the response


def test_f06_meter_values_asks_the_oem_after_the_response_for_each_evse(tmp_path: Path) -> None:
    h = booted(tmp_path)
    result = decide(h, "MeterValues")
    assert result.payload == {"status": "Accepted"}
    asks = [e for e in result.effects if isinstance(e, AskOem)]
    assert [(a.name, a.data["evse_id"]) for a in asks] == [
        ("meter_values", "1"),
        ("meter_values", "2"),
    ]
    assert h.station.take_effects() == []  # nothing asked before the response is out
    (one,) = decide(h, "MeterValues", {"id": 2}).effects
    assert isinstance(one, AskOem)
    assert one.data["evse_id"] == "2"
    # The answers: one MeterValues per EVSE, context Trigger, AlignedDataCtrlr.Measurands only.
    h.station.oem_answered(asks[1].key, OemAnswer("meter_values", READING))
    h.station.oem_answered(asks[0].key, OemNoAnswer("timeout", "the OEM did not answer in 1 s"))
    (sent,) = h.sent()
    assert (sent.action, sent.payload["evseId"], sent.triggered) == ("MeterValues", 2, True)
    (value,) = sent.payload["meterValue"]
    assert value["timestamp"] == READING["timestamp"]
    sampled = value["sampledValue"]
    assert {s["context"] for s in sampled} == {"Trigger"}
    assert [s["measurand"] for s in sampled] == ["Energy.Active.Import.Register", *["Voltage"] * 3]
    assert schemas.ocpp_validator("ocpp2.0.1", "MeterValues")(sent.payload) == []


def test_f06_meter_values_without_aligned_measurands_is_rejected(tmp_path: Path) -> None:
    h = booted(tmp_path)
    dm = h.station.device_model
    dm.write([(dm["AlignedDataCtrlr.Measurands"], "Actual", "")])
    result = decide(h, "MeterValues")
    assert result.payload["status"] == "Rejected"
    assert result.effects == ()


@pytest.mark.parametrize("requested", ["MeterValues", "TransactionEvent", "Heartbeat"])
def test_f06_an_evse_the_station_has_not_is_an_occurrence_constraint_violation(
    tmp_path: Path, requested: str
) -> None:
    h = booted(tmp_path)
    payload = {"requestedMessage": requested, "evse": {"id": 3}}
    error = asyncio.run(
        h.station.csms_call(Request("csms", "ocpp2.0.1", "TriggerMessage", payload))
    )
    assert getattr(error, "code", None) == "OccurrenceConstraintViolation"


class FakeTransactions:
    """The transactions block as TriggerMessage(TransactionEvent) sees it."""

    def __init__(self) -> None:
        self.sessions = {1: EvseSession(1), 2: EvseSession(2)}
        self.triggered: list[int | None] = []

    def trigger(self, evse: int | None) -> bool:
        self.triggered.append(evse)
        return True


def test_f06_transaction_event_accepted_only_with_a_transaction_then_sent_after_the_response(
    tmp_path: Path,
) -> None:
    h = booted(tmp_path)
    fake = FakeTransactions()
    station = h.station
    station.remote_control = RemoteControl(
        station.registration,
        station.availability,
        station.queue,
        station.device_model,
        station.clock,
        fake,
        str,
    )
    station.dispatcher.register("TriggerMessage", station.remote_control.trigger_message)
    assert decide(h, "TransactionEvent").payload["status"] == "Rejected"
    assert decide(h, "TransactionEvent", {"id": 2}).payload["status"] == "Rejected"
    fake.sessions[2].transaction = Transaction("tx-2")
    assert decide(h, "TransactionEvent", {"id": 1}).payload["status"] == "Rejected"
    result = decide(h, "TransactionEvent", {"id": 2})
    assert result.payload == {"status": "Accepted"}
    assert result.effects == (Schedule("trigger:tx:2", 0),)  # F06.FR.04: after the response
    assert fake.triggered == []
    station.timer("trigger:tx:2")
    assert fake.triggered == [2]
    (every,) = decide(h, "TransactionEvent").effects
    assert isinstance(every, Schedule)
    station.timer(every.timer)
    assert fake.triggered == [2, None]  # every EVSE with a transaction


def test_f06_the_oem_is_not_handed_its_own_trigger(tmp_path: Path) -> None:
    h = booted(tmp_path)
    station = h.station
    handed: list[str] = []

    async def delegate(request: Request) -> dict[str, Any]:
        handed.append(request.origin)
        return {"status": "Accepted"}

    station.remote_control = RemoteControl(
        station.registration,
        station.availability,
        station.queue,
        station.device_model,
        station.clock,
        FakeTransactions(),
        str,
        ["UpdateFirmware"],
        delegate,
    )
    station.dispatcher.register("TriggerMessage", station.remote_control.trigger_message)
    payload = {"requestedMessage": "FirmwareStatusNotification"}
    for origin in ("csms", "oem"):
        request = Request(origin, "ocpp2.0.1", "TriggerMessage", payload)
        result = asyncio.run(station.dispatcher.call(request))
        assert isinstance(result, CallResult)
        assert result.payload["status"] == ("Accepted" if origin == "csms" else "Rejected")
    assert handed == ["csms"]
    # LogStatusNotification is not the OEM's here (GetLog is not delegated): Idle from the station.
    result = decide(h, "LogStatusNotification")
    assert result.effects == (Send("LogStatusNotification", {"status": "Idle"}, "trigger"),)


# --- F06 TriggerMessage end to end


async def test_f06_meter_values_of_one_evse_and_of_every_evse(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        asked = answering(oem, "meter_values", lambda data: {**READING, "evse_id": data["evse_id"]})
        count = len(csms.received)
        assert await trigger(csms, "MeterValues", id=2) == {"status": "Accepted"}
        (one,) = await csms.wait_for("MeterValues", predicate=lambda r: r.payload["evseId"] == 2)
        sampled = one.payload["meterValue"][0]["sampledValue"]
        assert {s["context"] for s in sampled} == {"Trigger"}
        assert {s["measurand"] for s in sampled} == {"Energy.Active.Import.Register", "Voltage"}
        assert [a["data"]["evse_id"] for a in asked] == ["2"]
        assert await trigger(csms, "MeterValues") == {"status": "Accepted"}  # TC_F_12_CS
        await until(lambda: len(since(csms, count, "MeterValues")) == 3, "a MeterValues per EVSE")
        assert sorted(r.payload["evseId"] for r in since(csms, count, "MeterValues")) == [1, 2, 2]
        with pytest.raises(CallErrorReceived) as info:
            await trigger(csms, "MeterValues", id=3)
        assert info.value.code == "OccurrenceConstraintViolation"
        assert csms.schema_errors == []


async def test_f06_meter_values_the_oem_does_not_give_send_nothing(
    tmp_path: Path, broker: Broker, oem: Oem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bridge.station.remote_control")
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url, evses="[1]") as bridge:
        await accepted(bridge)
        answering(oem, "meter_values", lambda data: None)  # never
        assert await trigger(csms, "MeterValues", id=1) == {"status": "Accepted"}
        await until(lambda: "no meter value" in caplog.text, "the warning")
        assert [r for r in csms.received if r.action == "MeterValues"] == []


async def test_f06_log_and_firmware_status_are_idle_when_the_oem_does_neither(
    tmp_path: Path, broker: Broker
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        for requested in ("LogStatusNotification", "FirmwareStatusNotification"):  # TC_F_18_CS
            assert await trigger(csms, requested) == {"status": "Accepted"}
            (sent,) = await csms.wait_for(requested)
            assert sent.payload == {"status": "Idle"}
        for requested in ("SignChargingStationCertificate", "PublishFirmwareStatusNotification"):
            assert await trigger(csms, requested) == {"status": "NotImplemented"}
        assert csms.schema_errors == []


DELEGATE = 'delegate = ["GetLog", "UpdateFirmware", "CertificateSigned"]'


@pytest.mark.parametrize(
    "requested", ["LogStatusNotification", "FirmwareStatusNotification", "SignV2GCertificate"]
)
async def test_f06_what_the_oem_works_on_is_triggered_by_the_oem(
    tmp_path: Path, broker: Broker, oem: Oem, requested: str
) -> None:
    async with (
        DemoCsms() as csms,
        bridge_for(tmp_path, broker, csms.url, oem=DELEGATE) as bridge,
    ):
        await accepted(bridge)
        seen = answering(oem, "ocpp_message", ocpp_result({"status": "Accepted"}))
        assert await trigger(csms, requested) == {"status": "Accepted"}
        (handed,) = seen
        assert handed["data"] == {
            "ocpp_version": "ocpp2.0.1",
            "message_name": "TriggerMessage",
            "payload": {"requestedMessage": requested},
        }
        assert [r for r in csms.received if r.action == requested] == []  # the OEM sends it


@pytest.mark.parametrize(
    ("reply", "delay"),
    [
        (ocpp_result({"status": "Maybe"}), 0.0),  # invalid
        (ocpp_result({"status": "Accepted"}), 1.5),  # late
        (lambda data: None, 0.0),  # never
        (
            lambda data: {
                "message_type": "CallError",
                "ocpp_version": "ocpp2.0.1",
                "error_code": "NotSupported",
                "error_description": "no firmware updates on this model",
                "error_details": {},
            },
            0.0,
        ),
    ],
    ids=["invalid", "late", "never", "call-error"],
)
async def test_f06_a_trigger_the_oem_fails_to_answer_is_rejected(
    tmp_path: Path, broker: Broker, oem: Oem, reply: Reply, delay: float
) -> None:
    async with (
        DemoCsms() as csms,
        bridge_for(tmp_path, broker, csms.url, oem=DELEGATE) as bridge,
    ):
        await accepted(bridge)
        answering(oem, "ocpp_message", reply, delay)
        result = await trigger(csms, "FirmwareStatusNotification")
        assert result["status"] == "Rejected"
        assert result["statusInfo"]["reasonCode"] == "OemFailed"
        assert [r for r in csms.received if r.action == "FirmwareStatusNotification"] == []


async def test_f06_transaction_event_without_a_transaction_is_rejected(
    tmp_path: Path, broker: Broker
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        assert (await trigger(csms, "TransactionEvent"))["status"] == "Rejected"
        assert (await trigger(csms, "TransactionEvent", id=1))["status"] == "Rejected"


async def test_f06_transaction_event_of_the_running_transaction(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url, evses="[1]") as bridge:
        await accepted(bridge)
        answering(oem, "meter_values", lambda data: READING)
        await update(oem, "cp_status", {"evse_id": "1", "connector_id": 1, "state": "B1"})
        (started,) = await csms.wait_for(
            "TransactionEvent", predicate=lambda r: r.payload["eventType"] == "Started"
        )
        assert await trigger(csms, "TransactionEvent", id=1) == {"status": "Accepted"}
        (event,) = await csms.wait_for(
            "TransactionEvent",
            predicate=lambda r: r.payload["triggerReason"] == "Trigger",
            timeout=3,
        )
        assert event.payload["eventType"] == "Updated"  # TC_F_13_CS
        info = event.payload["transactionInfo"]
        assert info["transactionId"] == started.payload["transactionInfo"]["transactionId"]
        assert event.payload["seqNo"] == started.payload["seqNo"] + 1
        assert {s["context"] for s in event.payload["meterValue"][0]["sampledValue"]} == {"Trigger"}
        assert csms.schema_errors == []


async def test_f06_trigger_message_from_the_oem_runs_the_same_handler(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_for(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        answering(oem, "meter_values", lambda data: READING)
        data = await oem.ocpp(
            "TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}}
        )
        assert data["payload"] == {"status": "Accepted"}
        (sent,) = await csms.wait_for("MeterValues")
        assert sent.payload["evseId"] == 1
        data = await oem.ocpp("TriggerMessage", {"requestedMessage": "SignV2GCertificate"})
        assert data["payload"] == {"status": "NotImplemented"}
