"""ocpp_message in both directions, end to end through a real Mosquitto and a real WebSocket CSMS:
station->CSMS actions from the OEM go to the CSMS as the station's own CALL; CSMS->station actions
named in `[oem] delegate` are answered by the OEM (answered, late, garbled, never)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.demo_csms import CallErrorReceived, DemoCsms, Received
from tests.conftest import Broker, Oem, running_bridge, write_config

FAST_BACKOFF = (
    "[device_model]\n"
    '"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1\n'
    '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
    '"OCPPCommCtrlr.RetryBackOffRepeatTimes" = 0\n'
)
NOTIFY_EVENT = {
    "generatedAt": "2026-12-03T10:00:00.000Z",
    "seqNo": 0,
    "eventData": [
        {
            "eventId": 1,
            "timestamp": "2026-12-03T10:00:00.000Z",
            "trigger": "Alerting",
            "actualValue": "true",
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "ChargingStation"},
            "variable": {"name": "Problem"},
        }
    ],
}
SECURITY_EVENT = {"type": "TamperDetectionActivated", "timestamp": "2026-12-03T10:00:00.000Z"}
UPDATE_FIRMWARE = {
    "requestId": 7,
    "firmware": {
        "location": "https://firmware.example.com/ac22-1.1.0.bin",
        "retrieveDateTime": "2026-12-03T10:00:00.000Z",
    },
}


@asynccontextmanager
async def bridge_with(
    tmp_path: Path, broker: Broker, url: str, oem: str = "startup_timeout = 0"
) -> AsyncIterator[Bridge]:
    config = write_config(
        tmp_path / "bridge.toml", broker, csms=f'url = "{url}"', oem=oem, extra=FAST_BACKOFF
    )
    async with running_bridge(config) as bridge:
        yield bridge


async def accepted(bridge: Bridge) -> None:
    for _ in range(500):
        if bridge.station.registration.accepted and bridge.station.queue.connected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the boot was not accepted")


def not_ours(received: Received) -> bool:
    """Not a security event of the bridge's own (A04: StartupOfTheDevice at every start)."""
    return received.payload.get("type") != "StartupOfTheDevice"


async def answer_ocpp_requests(oem: Oem, reply: Any, delay: float = 0.0) -> list[dict[str, Any]]:
    """Answer every ocpp_message request of the bridge with `reply(data)` (a data dict, raw
    bytes, or None for no answer); returns the list of requests seen, as it grows."""
    seen: list[dict[str, Any]] = []

    async def loop() -> None:
        done = 0
        while True:
            await asyncio.sleep(0.01)
            for request in oem.requests[done:]:
                done += 1
                if request["name"] != "ocpp_message":
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
                        {
                            "id": request["id"],
                            "name": "ocpp_message",
                            "type": "response",
                            "data": answer,
                        }
                    )

    task = asyncio.create_task(loop())
    oem.answer_task = task  # type: ignore[attr-defined]  # cancelled with the test's loop
    return seen


# --- station -> CSMS actions from the OEM


@pytest.mark.parametrize(
    ("action", "payload", "answer"),
    [
        ("NotifyEvent", NOTIFY_EVENT, {}),
        ("SecurityEventNotification", SECURITY_EVENT, {}),
        ("DataTransfer", {"vendorId": "com.acme", "messageId": "x"}, {"status": "Rejected"}),
        ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Accepted"}),
        ("FirmwareStatusNotification", {"status": "Downloading", "requestId": 7}, {}),
        ("LogStatusNotification", {"status": "Uploading", "requestId": 8}, {}),
    ],
)
async def test_a_station_to_csms_action_from_the_oem_gets_the_csms_answer(
    tmp_path: Path, broker: Broker, oem: Oem, action: str, payload: dict[str, Any], answer: Any
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        data = await oem.ocpp(action, payload)
        assert data == {
            "message_type": "CallResult",
            "ocpp_version": "ocpp2.0.1",
            "payload": answer,
        }
        (received,) = await csms.wait_for(action, predicate=not_ours)
        assert received.payload == payload  # sent as it came, free-form keys untouched
        assert csms.schema_errors == []


async def test_without_a_csms_the_oem_hears_no_csms_connection(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with bridge_with(tmp_path, broker, "ws://127.0.0.1:9/ocpp"):
        data = await oem.ocpp("NotifyEvent", NOTIFY_EVENT)
        assert data["message_type"] == "CallError"
        assert data["error_code"] == "GenericError"
        assert data["error_description"] == "No CSMS connection"


async def test_before_the_boot_is_accepted_nothing_unsolicited_goes(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with (
        DemoCsms(boot_status="Pending", heartbeat_interval=300) as csms,
        bridge_with(tmp_path, broker, csms.url) as bridge,
    ):
        await csms.wait_for("BootNotification")
        for _ in range(200):
            if bridge.station.registration.status == "Pending":
                break
            await asyncio.sleep(0.01)
        data = await oem.ocpp("NotifyEvent", NOTIFY_EVENT)
        assert data["error_code"] == "GenericError"
        assert "not accepted" in data["error_description"]
        await asyncio.sleep(0.2)
        assert [r.action for r in csms.received] == ["BootNotification"]  # B02.FR.02


async def test_a_security_event_made_offline_is_queued_and_delivered_later(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    csms = DemoCsms()
    await csms.__aenter__()
    url, port = csms.url, csms.port
    await csms.__aexit__(None, None, None)  # the port is known; nothing listens yet
    async with bridge_with(tmp_path, broker, url) as bridge:
        for _ in range(500):
            if bridge.mqtt_api.service_status == "ready":
                break
            await asyncio.sleep(0.01)
        data = await oem.ocpp("SecurityEventNotification", SECURITY_EVENT)
        assert data["error_code"] == "GenericError"
        assert data["error_details"]["queued"] is True
        assert bridge.station.queue.backlog == 2  # and the bridge's own StartupOfTheDevice
        async with DemoCsms(port=port) as csms:
            (received,) = await csms.wait_for(
                "SecurityEventNotification", timeout=15, predicate=not_ours
            )
            assert received.payload == SECURITY_EVENT
            order = [r.action for r in csms.received]
            assert order.index("BootNotification") < order.index("SecurityEventNotification")
            for _ in range(200):  # removed from the store once answered
                if bridge.station.queue.backlog == 0:
                    break
                await asyncio.sleep(0.01)
            assert bridge.station.queue.backlog == 0


@pytest.mark.parametrize("action", ["BootNotification", "Heartbeat", "StatusNotification"])
async def test_what_the_station_sends_itself_is_not_taken_from_the_oem(
    tmp_path: Path, broker: Broker, oem: Oem, action: str
) -> None:
    async with bridge_with(tmp_path, broker, "ws://127.0.0.1:9/ocpp"):
        data = await oem.ocpp(action, {})
        assert data["error_code"] == "NotSupported"
        assert "sent by the station itself" in data["error_description"]


async def test_a_forwarded_payload_that_fails_its_schema_is_not_sent(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        data = await oem.ocpp("NotifyEvent", {"seqNo": 0})
        assert data["error_code"] == "OccurrenceConstraintViolation"
        await asyncio.sleep(0.1)
        assert "NotifyEvent" not in [r.action for r in csms.received]


# --- CSMS -> station actions the OEM answers ([oem] delegate)

DELEGATE = 'startup_timeout = 0\nrequest_timeout = 1\ndelegate = ["UpdateFirmware", "GetLog", "DataTransfer"]'


async def test_l01_a_delegated_update_firmware_is_answered_by_the_oem(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url, DELEGATE) as bridge:
        await accepted(bridge)
        seen = await answer_ocpp_requests(
            oem,
            lambda data: {
                "message_type": "CallResult",
                "ocpp_version": "ocpp2.0.1",
                "payload": {"status": "Accepted"},
            },
        )
        assert await csms.call("CP001", "UpdateFirmware", UPDATE_FIRMWARE) == {"status": "Accepted"}
        assert seen[0]["data"] == {
            "ocpp_version": "ocpp2.0.1",
            "message_name": "UpdateFirmware",
            "payload": UPDATE_FIRMWARE,
        }
        # The OEM then reports the download through the station (L01.FR.01).
        data = await oem.ocpp(
            "FirmwareStatusNotification", {"status": "Downloading", "requestId": 7}
        )
        assert data["message_type"] == "CallResult"
        assert (await csms.wait_for("FirmwareStatusNotification"))[0].payload["requestId"] == 7
        assert csms.schema_errors == []


async def test_a_delegated_call_error_from_the_oem_reaches_the_csms(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url, DELEGATE) as bridge:
        await accepted(bridge)
        await answer_ocpp_requests(
            oem,
            lambda data: {
                "message_type": "CallError",
                "ocpp_version": "ocpp2.0.1",
                "error_code": "NotSupported",
                "error_description": "no log upload on this model",
                "error_details": {},
            },
        )
        with pytest.raises(CallErrorReceived) as info:
            await csms.call(
                "CP001",
                "GetLog",
                {
                    "logType": "DiagnosticsLog",
                    "requestId": 1,
                    "log": {"remoteLocation": "https://x"},
                },
            )
        assert info.value.code == "NotSupported"
        assert "no log upload" in str(info.value)


@pytest.mark.parametrize(
    ("reply", "delay", "words"),
    [
        (lambda data: None, 0.0, "did not answer in 1 s"),  # never
        (  # late: after request_timeout
            lambda data: {
                "message_type": "CallResult",
                "ocpp_version": "ocpp2.0.1",
                "payload": {"status": "Accepted"},
            },
            1.5,
            "did not answer in 1 s",
        ),
        (  # garbled: not a valid UpdateFirmwareResponse
            lambda data: {
                "message_type": "CallResult",
                "ocpp_version": "ocpp2.0.1",
                "payload": {"status": "Maybe"},
            },
            0.0,
            "invalid",
        ),
        (lambda data: b"{not json", 0.0, "did not answer in 1 s"),  # garbage: dropped
    ],
    ids=["never", "late", "garbled", "not-json"],
)
async def test_a_delegated_call_the_oem_fails_to_answer_gets_a_generic_error(
    tmp_path: Path, broker: Broker, oem: Oem, reply: Any, delay: float, words: str
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url, DELEGATE) as bridge:
        await accepted(bridge)
        await answer_ocpp_requests(oem, reply, delay)
        with pytest.raises(CallErrorReceived) as info:
            await csms.call("CP001", "UpdateFirmware", UPDATE_FIRMWARE)
        assert info.value.code == "GenericError"
        assert words in str(info.value)
        # The station goes on: a CALL it answers itself still works.
        result = await csms.call(
            "CP001",
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        )
        assert result["getVariableResult"][0]["attributeStatus"] == "Accepted"


async def test_the_oem_cannot_send_itself_a_delegated_action(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with bridge_with(tmp_path, broker, "ws://127.0.0.1:9/ocpp", DELEGATE):
        data = await oem.ocpp("UpdateFirmware", UPDATE_FIRMWARE)
        assert data["error_code"] == "NotSupported"
        assert "[oem] delegate" in data["error_description"]
        assert [r for r in oem.requests if r["name"] == "ocpp_message"] == []


async def test_without_delegation_update_firmware_is_not_supported(
    tmp_path: Path, broker: Broker
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        with pytest.raises(CallErrorReceived) as info:
            await csms.call("CP001", "UpdateFirmware", UPDATE_FIRMWARE)
        assert info.value.code == "NotSupported"


async def test_a_station_request_to_the_oem_ends_with_its_answer_or_a_timeout(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    """AskOem: the driver publishes the request, matches the OEM's response by id (checked
    against its schema) and hands the station the answer — or OemNoAnswer after the timeout."""
    from bridge.oem.link import OemAnswer, OemNoAnswer
    from bridge.station.effects import AskOem

    async with bridge_with(tmp_path, broker, "ws://127.0.0.1:9/ocpp") as bridge:
        replies: dict[str, Any] = {}
        bridge.station.oem_answered = lambda key, reply: replies.__setitem__(key, reply)  # type: ignore[method-assign]
        for _ in range(200):  # the station asks the contactor itself at start: let that pass
            if any(r["name"] == "cs_contactor_status" for r in oem.requests):
                break
            await asyncio.sleep(0.01)
        before = len(oem.requests)
        bridge.execute(
            [
                AskOem("cs_contactor_status", {"evse_id": "1"}, "answered", 2.0),
                AskOem("cs_contactor_status", {"evse_id": "1"}, "silent", 0.5),
            ]
        )

        def asked() -> list[dict[str, Any]]:
            return [r for r in oem.requests[before:] if r["name"] == "cs_contactor_status"]

        for _ in range(200):
            if len(asked()) >= 2:
                break
            await asyncio.sleep(0.01)
        first = asked()[0]
        assert first["data"] == {"evse_id": "1"}
        await oem.send(
            {
                "id": first["id"],
                "name": "cs_contactor_status",
                "type": "response",
                "data": {"evse_id": "1", "status": "closed"},
            }
        )
        for _ in range(200):
            if len(replies) == 2:
                break
            await asyncio.sleep(0.01)
        assert replies["answered"] == OemAnswer(
            "cs_contactor_status", {"evse_id": "1", "status": "closed"}
        )
        assert isinstance(replies["silent"], OemNoAnswer)
        assert replies["silent"].reason == "timeout"


async def test_a_forwarded_message_in_flight_when_the_csms_goes_hears_no_connection(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    from tests.robustness.robust_support import RawCsms, default_responder

    answer = default_responder()

    def silent_on_notify_event(action: str, payload: Any, seen: int) -> Any:
        return None if action == "NotifyEvent" else answer(action, payload, seen)

    csms = await RawCsms(silent_on_notify_event).start()
    try:
        async with bridge_with(tmp_path, broker, csms.url) as bridge:
            await accepted(bridge)
            pending = asyncio.create_task(oem.ocpp("NotifyEvent", NOTIFY_EVENT))
            await csms.wait_calls("NotifyEvent")
            await csms.current.close(1001, "going away")
            data = await asyncio.wait_for(pending, 5)  # not after 2 x MessageTimeout
            assert data["error_code"] == "GenericError"
            assert data["error_description"] == "No CSMS connection"
    finally:
        await csms.stop()
