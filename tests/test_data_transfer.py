"""P01 / P02 DataTransfer both ways, end to end through a real Mosquitto and a real WebSocket
CSMS: the CSMS's DataTransfer gets UnknownVendorId (a CallResult) unless the OEM answers it
([oem] delegate); the OEM's DataTransfer goes to the CSMS and the OEM gets the CSMS's answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.demo_csms import CallErrorReceived, DemoCsms
from tests.conftest import Broker, Oem, make_station, ocpp_call
from tests.test_oem_link import accepted, answer_ocpp_requests, bridge_with

DELEGATED = 'startup_timeout = 0\nrequest_timeout = 2\ndelegate = ["DataTransfer"]'
REQUEST = {"vendorId": "com.example.charger", "messageId": "tariff", "data": {"eur_kwh": 0.42}}


@pytest.mark.parametrize(
    "payload", [REQUEST, {"vendorId": "org.openchargealliance.costmsg"}, {"vendorId": "x" * 255}]
)
async def test_p01_a_data_transfer_from_the_csms_is_answered_unknown_vendor_id(
    tmp_path: Path, broker: Broker, payload: dict[str, Any]
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        # P01.FR.05: a CallResult, not a CALLERROR, and no data
        assert await csms.call("CP001", "DataTransfer", payload) == {"status": "UnknownVendorId"}
        assert csms.schema_errors == []


async def test_p01_a_data_transfer_the_csms_sends_before_the_boot_is_accepted_is_refused(
    tmp_path: Path, broker: Broker
) -> None:
    """While the boot is Pending the station answers only the provisioning calls (B02.FR.09)."""
    async with DemoCsms(boot_status="Pending") as csms, bridge_with(tmp_path, broker, csms.url):
        await csms.wait_for("BootNotification")
        with pytest.raises(CallErrorReceived) as error:
            await csms.call("CP001", "DataTransfer", REQUEST)
        assert error.value.code == "SecurityError"


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "Accepted", "data": {"tariff": "applied", "items": [1, 2]}},
        {"status": "Rejected"},
        {"status": "UnknownMessageId"},
        {"status": "UnknownVendorId"},
    ],
)
async def test_p01_with_delegate_the_oem_answers_the_csms_data_transfer(
    tmp_path: Path, broker: Broker, oem: Oem, answer: dict[str, Any]
) -> None:
    """Each DataTransferStatus the OEM's implementation gives reaches the CSMS as is."""
    async with (
        DemoCsms() as csms,
        bridge_with(tmp_path, broker, csms.url, DELEGATED) as bridge,
    ):
        await accepted(bridge)
        seen = await answer_ocpp_requests(
            oem,
            lambda data: {
                "message_type": "CallResult",
                "ocpp_version": "ocpp2.0.1",
                "payload": answer,
            },
        )
        assert await csms.call("CP001", "DataTransfer", REQUEST) == answer
        assert seen[0]["data"] == {
            "ocpp_version": "ocpp2.0.1",
            "message_name": "DataTransfer",
            "payload": REQUEST,  # free-form data untouched
        }
        assert csms.schema_errors == []


@pytest.mark.parametrize("oem_config", ["startup_timeout = 0", DELEGATED])
async def test_p02_the_oem_data_transfer_goes_to_the_csms_and_the_oem_gets_its_answer(
    tmp_path: Path, broker: Broker, oem: Oem, oem_config: str
) -> None:
    """Also with DataTransfer delegated: the OEM's own DataTransfer is a station -> CSMS
    message, never answered by the station's P01 handler."""
    async with (
        DemoCsms() as csms,
        bridge_with(tmp_path, broker, csms.url, oem_config) as bridge,
    ):
        await accepted(bridge)
        data = await oem.ocpp("DataTransfer", REQUEST)
        # the demo CSMS answers every DataTransfer Rejected
        assert data == {
            "message_type": "CallResult",
            "ocpp_version": "ocpp2.0.1",
            "payload": {"status": "Rejected"},
        }
        (received,) = await csms.wait_for("DataTransfer")
        assert received.payload == REQUEST
        assert csms.schema_errors == []
        assert oem.requests == [r for r in oem.requests if r["name"] != "ocpp_message"]


async def test_p01_the_handler_runs_without_a_csms_too(tmp_path: Path) -> None:
    """The one dispatcher: the same handler for every door (here called directly)."""
    station = make_station(tmp_path)
    assert await ocpp_call(station, "DataTransfer", REQUEST) == {"status": "UnknownVendorId"}
