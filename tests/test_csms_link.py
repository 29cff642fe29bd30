"""The bridge against a real WebSocket CSMS (the demo CSMS on the `ocpp` library), per OCPP use case
and OCTT test case: boot, status, heartbeat, reports, triggers, security profiles, reconnects."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.csms_link import LinkState
from bridge.demo_csms import CallErrorReceived, DemoCsms
from bridge.rpc.request import Request
from bridge.timeutil import ocpp_timestamp
from bridge.transport.csms import tls_context
from tests.conftest import free_port, write_config

PASSWORD = "Pa55word-for-CP001"
FAST_BACKOFF = (
    '"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1\n'
    '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
    '"OCPPCommCtrlr.RetryBackOffRepeatTimes" = 2\n'
)


@asynccontextmanager
async def station(
    tmp_path: Path, url: str, *, csms: str = "", preload: str = "", evses: str = "[1, 1]"
) -> AsyncIterator[Bridge]:
    """The bridge with its CSMS at `url` (no MQTT broker needed for these tests)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(
        tmp_path / "bridge.toml",
        None,
        evses=evses,
        csms=f'url = "{url}"\n{csms}',
        extra=f"[device_model]\n{FAST_BACKOFF}{preload}",
        mqtt_port=free_port(),  # nothing listens there: these tests need no broker
    )
    async with Bridge(load_settings(config)) as bridge:
        yield bridge


def get_variable(component: str, variable: str) -> dict[str, Any]:
    return {"getVariableData": [{"component": {"name": component}, "variable": {"name": variable}}]}


def set_variable(component: str, variable: str, value: str) -> dict[str, Any]:
    return {
        "setVariableData": [
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "attributeValue": value,
            }
        ]
    }


def actions(csms: DemoCsms) -> list[str]:
    return [r.action for r in csms.received]


async def registered(bridge: Bridge, status: str) -> None:
    """Wait until the station has taken in the CSMS's answer to its BootNotification."""
    for _ in range(200):
        if bridge.station.registration.status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"registration is {bridge.station.registration.status}, not {status}")


# --- B01-B03: cold boot


async def test_tc_b_01_cold_boot_accepted(tmp_path: Path) -> None:
    async with DemoCsms(heartbeat_interval=1) as csms, station(tmp_path, csms.url) as bridge:
        [boot] = await csms.wait_for("BootNotification")
        assert boot.payload == {
            "chargingStation": {
                "model": "AC22",
                "vendorName": "Acme",
                "serialNumber": "SN-0001",
                "firmwareVersion": "1.0.0",
            },
            "reason": "PowerUp",
        }
        statuses = await csms.wait_for("StatusNotification", count=2)
        assert sorted((s.payload["evseId"], s.payload["connectorId"]) for s in statuses) == [
            (1, 1),
            (2, 1),
        ]
        assert {s.payload["connectorStatus"] for s in statuses} == {"Available"}
        assert all(s.payload["timestamp"].endswith("Z") for s in statuses)
        heartbeats = await csms.wait_for("Heartbeat", count=2, timeout=5)
        assert 0.7 < heartbeats[1].at - heartbeats[0].at < 2.0
        # B01.FR.04: the interval became the HeartbeatInterval
        assert bridge.station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "1"
        # B01.FR.08: nothing before the BootNotification
        assert actions(csms)[0] == "BootNotification"
        assert csms.schema_errors == []


async def test_tc_b_02_cold_boot_pending_answers_the_csms_and_sends_nothing_else(
    tmp_path: Path,
) -> None:
    async with DemoCsms(heartbeat_interval=1) as csms:
        csms.boot_statuses = ["Pending", "Accepted"]
        async with station(tmp_path, csms.url) as bridge:
            await registered(bridge, "Pending")
            # B02.FR.01: the station answers B05-B08 while Pending
            result = await csms.call(
                "CP001", "GetVariables", get_variable("OCPPCommCtrlr", "OfflineThreshold")
            )
            assert result["getVariableResult"][0]["attributeValue"] == "60"
            result = await csms.call(
                "CP001", "SetVariables", set_variable("OCPPCommCtrlr", "OfflineThreshold", "90")
            )
            assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
            # CitrineOS's flow: Pending + GetBaseReport → NotifyReport, still while Pending
            assert await csms.call(
                "CP001", "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}
            ) == {"status": "Accepted"}
            await csms.wait_for("NotifyReport")
            # B02: other CALLs are refused while Pending
            with pytest.raises(CallErrorReceived) as info:
                await csms.call("CP001", "UnlockConnector", {"evseId": 1, "connectorId": 1})
            assert info.value.code == "SecurityError"
            before_accept = list(actions(csms))
            assert "StatusNotification" not in before_accept
            assert "Heartbeat" not in before_accept
            # B02.FR.08: the next BootNotification after `interval`, then Accepted
            boots = await csms.wait_for("BootNotification", count=2, timeout=5)
            assert 0.8 < boots[1].at - boots[0].at < 3
            await csms.wait_for("StatusNotification", count=2)
        assert csms.schema_errors == []


async def test_tc_b_03_cold_boot_rejected_sends_nothing_and_refuses_calls(tmp_path: Path) -> None:
    async with DemoCsms(boot_status="Rejected", heartbeat_interval=2) as csms:
        async with station(tmp_path, csms.url) as bridge:
            await registered(bridge, "Rejected")
            # TC_B_30: B03.FR.08 SecurityError for anything but a BootNotification trigger
            with pytest.raises(CallErrorReceived) as info:
                await csms.call(
                    "CP001", "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}
                )
            assert info.value.code == "SecurityError"
            boots = await csms.wait_for("BootNotification", count=2, timeout=6)
            assert boots[1].at - boots[0].at >= 1.9  # B03.FR.02: not before the interval
            assert set(actions(csms)) == {"BootNotification"}


async def test_seed_000_scenario_2_pending_then_triggered_boot(tmp_path: Path) -> None:
    """A local controller answers Pending, then asks for a BootNotification once the CSMS accepted."""
    async with DemoCsms(boot_status="Pending", heartbeat_interval=60) as csms:
        async with station(tmp_path, csms.url) as bridge:
            [first] = await csms.wait_for("BootNotification")
            await registered(bridge, "Pending")
            csms.boot_status = "Accepted"
            result = await csms.call(
                "CP001", "TriggerMessage", {"requestedMessage": "BootNotification"}
            )
            assert result == {"status": "Accepted"}
            boots = await csms.wait_for("BootNotification", count=2, timeout=3)
            assert boots[1].payload["reason"] == "Triggered"
            assert boots[1].at - first.at < 2  # at once, not after the 60 s interval
            await csms.wait_for("StatusNotification", count=2)
            # F06.FR.17: once accepted, a BootNotification trigger is Rejected
            result = await csms.call(
                "CP001", "TriggerMessage", {"requestedMessage": "BootNotification"}
            )
            assert result["status"] == "Rejected"


async def test_rejected_station_accepts_a_boot_trigger(tmp_path: Path) -> None:
    async with DemoCsms(boot_status="Rejected", heartbeat_interval=60) as csms:
        async with station(tmp_path, csms.url) as bridge:
            await registered(bridge, "Rejected")
            result = await csms.call(
                "CP001", "TriggerMessage", {"requestedMessage": "BootNotification"}
            )
            assert result == {"status": "Accepted"}
            await csms.wait_for("BootNotification", count=2, timeout=3)


# --- F06 TriggerMessage variants


async def test_f06_trigger_message_variants(tmp_path: Path) -> None:
    async with (
        DemoCsms(heartbeat_interval=300) as csms,
        station(tmp_path, csms.url, evses="[1, 1]"),
    ):
        await csms.wait_for("StatusNotification", count=2)
        count = len(csms.received)

        def statuses_since(n: int) -> list[tuple[int, int]]:
            return [
                (r.payload["evseId"], r.payload["connectorId"])
                for r in csms.received[n:]
                if r.action == "StatusNotification"
            ]

        assert await csms.call("CP001", "TriggerMessage", {"requestedMessage": "Heartbeat"}) == {
            "status": "Accepted"
        }
        await csms.wait_for("Heartbeat")
        count = len(csms.received)
        # F06.FR.12: a StatusNotification trigger must name the EVSE and the connector.
        for incomplete in ({}, {"evse": {"id": 1}}):
            result = await csms.call(
                "CP001", "TriggerMessage", {"requestedMessage": "StatusNotification", **incomplete}
            )
            assert result["status"] == "Rejected"
            assert result["statusInfo"]["reasonCode"] == "MissingParam"
        result = await csms.call(
            "CP001",
            "TriggerMessage",
            {"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}},
        )
        assert result == {"status": "Accepted"}
        await csms.wait_for("StatusNotification", count=3)
        assert statuses_since(count) == [(2, 1)]
        for evse in ({"id": 3, "connectorId": 1}, {"id": 1, "connectorId": 2}):
            with pytest.raises(CallErrorReceived) as info:
                await csms.call(
                    "CP001",
                    "TriggerMessage",
                    {"requestedMessage": "StatusNotification", "evse": evse},
                )
            assert info.value.code == "OccurrenceConstraintViolation"
        result = await csms.call(
            "CP001", "TriggerMessage", {"requestedMessage": "PublishFirmwareStatusNotification"}
        )
        assert result == {"status": "NotImplemented"}  # F06.FR.08
        assert csms.schema_errors == []


# --- B07/B08 reports


async def test_b07_get_base_report_splits_by_items_per_message(tmp_path: Path) -> None:
    preload = '"DeviceDataCtrlr.ItemsPerMessage[GetReport]" = 10\n'
    async with (
        DemoCsms() as csms,
        station(
            tmp_path,
            csms.url,
            preload=preload,
            csms=f'security_profile = 1\npassword = "{PASSWORD}"',
        ) as bridge,
    ):
        csms.password = None
        await csms.wait_for("StatusNotification", count=2)
        result = await csms.call(
            "CP001", "GetBaseReport", {"requestId": 42, "reportBase": "FullInventory"}
        )
        assert result == {"status": "Accepted"}
        total = len(bridge.station.device_model)
        parts = (total + 9) // 10
        reports = await csms.wait_for("NotifyReport", count=parts)
        assert [r.payload["seqNo"] for r in reports] == list(range(parts))
        assert [r.payload.get("tbc", False) for r in reports] == [True] * (parts - 1) + [False]
        assert {r.payload["requestId"] for r in reports} == {42}
        data = [d for r in reports for d in r.payload["reportData"]]
        assert all(len(r.payload["reportData"]) <= 10 for r in reports)
        assert len(data) == total
        password = [d for d in data if d["variable"]["name"] == "BasicAuthPassword"]
        assert password
        assert "value" not in password[0]["variableAttribute"][0]  # WriteOnly: never reported
        assert PASSWORD not in str(reports)
        option_lists = [
            d
            for d in data
            if d["variableCharacteristics"]["dataType"]
            in ("OptionList", "MemberList", "SequenceList")
        ]
        assert option_lists  # TxStartPoint, NetworkConfigurationPriority, ... are in the report
        assert all("valuesList" in d["variableCharacteristics"] for d in option_lists)
        await asyncio.sleep(0.2)
        assert csms.schema_errors == []


async def test_b07_configuration_and_summary_inventory(tmp_path: Path) -> None:
    async with DemoCsms() as csms, station(tmp_path, csms.url):
        await csms.wait_for("StatusNotification", count=2)
        await csms.call(
            "CP001", "GetBaseReport", {"requestId": 1, "reportBase": "ConfigurationInventory"}
        )
        [config] = await csms.wait_for("NotifyReport")
        mutabilities = {
            a["mutability"] for d in config.payload["reportData"] for a in d["variableAttribute"]
        }
        assert mutabilities  # the station has writable variables: the report is not empty
        assert mutabilities <= {"ReadWrite", "WriteOnly"}
        await csms.call(
            "CP001", "GetBaseReport", {"requestId": 2, "reportBase": "SummaryInventory"}
        )
        summary = (await csms.wait_for("NotifyReport", count=2))[1]
        names = sorted(
            (d["component"]["name"], d["variable"]["name"]) for d in summary.payload["reportData"]
        )
        assert names == [
            ("ChargingStation", "AvailabilityState"),
            ("Connector", "AvailabilityState"),
            ("Connector", "AvailabilityState"),
            ("EVSE", "AvailabilityState"),
            ("EVSE", "AvailabilityState"),
        ]


async def test_b08_get_report_by_component_variable_and_criteria(tmp_path: Path) -> None:
    async with DemoCsms() as csms, station(tmp_path, csms.url):
        await csms.wait_for("StatusNotification", count=2)
        evse1 = {
            "component": {"name": "EVSE", "evse": {"id": 1}},
            "variable": {"name": "AvailabilityState"},
        }
        # TC_B_17: EVSE #1 AvailabilityState with its characteristics
        assert await csms.call(
            "CP001", "GetReport", {"requestId": 5, "componentVariable": [evse1]}
        ) == {"status": "Accepted"}
        [report] = await csms.wait_for("NotifyReport")
        [data] = report.payload["reportData"]
        assert (
            data["variableCharacteristics"]["valuesList"]
            == "Available,Occupied,Reserved,Unavailable,Faulted"
        )
        assert data["variableAttribute"] == [
            {
                "type": "Actual",
                "mutability": "ReadOnly",
                "persistent": False,
                "constant": False,
                "value": "Available",
            }
        ]
        # TC_B_18: criteria and componentVariables intersect
        result = await csms.call(
            "CP001",
            "GetReport",
            {"requestId": 6, "componentVariable": [evse1], "componentCriteria": ["Available"]},
        )
        assert result == {"status": "Accepted"}
        result = await csms.call(
            "CP001",
            "GetReport",
            {"requestId": 7, "componentVariable": [evse1], "componentCriteria": ["Problem"]},
        )
        assert result == {"status": "EmptyResultSet"}  # B08.FR.15
        # B08.FR.20/22: a component without variable, an EVSE without connector id
        result = await csms.call(
            "CP001",
            "GetReport",
            {
                "requestId": 8,
                "componentVariable": [{"component": {"name": "Connector", "evse": {"id": 2}}}],
            },
        )
        assert result == {"status": "Accepted"}
        reports = await csms.wait_for("NotifyReport", count=3)
        connector_report = next(r for r in reports if r.payload["requestId"] == 8)
        assert {d["component"]["evse"]["id"] for d in connector_report.payload["reportData"]} == {2}
        assert len(connector_report.payload["reportData"]) == 4
        # B08.FR.17
        with pytest.raises(CallErrorReceived) as info:
            await csms.call(
                "CP001", "GetReport", {"requestId": 9, "componentVariable": [evse1] * 101}
            )
        assert info.value.code == "OccurrenceConstraintViolation"


# --- A01, A00: security profiles


async def test_tc_a_01_basic_auth_and_seed_000_scenario_1_http_401_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with DemoCsms(password="Wrong-password-xyz123") as csms:
        async with station(
            tmp_path, csms.url, csms=f'security_profile = 1\npassword = "{PASSWORD}"'
        ) as bridge:
            await asyncio.sleep(4.5)
            refused = [a for a in csms.attempts if a.status == 401]
            # back-off 1, 2, 4 s (RetryBackOffRepeatTimes 2): at most 4 attempts in 4.5 s, never a hot loop
            assert 2 <= len(refused) <= 4
            gaps = [b.at - a.at for a, b in zip(refused, refused[1:], strict=False)]
            assert all(gap >= 0.9 for gap in gaps)
            assert all(a.authorization == "CP001" for a in refused)
            assert "HTTP 401" in caplog.text
            assert PASSWORD not in caplog.text
            assert bridge.csms.state is not LinkState.connected
            csms.password = PASSWORD  # the operator fixes the CSMS side
            await csms.wait_for("BootNotification", timeout=10)
            assert csms.attempts[-1].status == 101


async def test_tc_a_09_password_change_reconnects_with_the_new_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new = "New-Password-0123456789"
    caplog.set_level(logging.INFO)
    async with DemoCsms(password=PASSWORD) as csms:
        async with station(
            tmp_path, csms.url, csms=f'security_profile = 1\npassword = "{PASSWORD}"'
        ):
            await csms.wait_for("StatusNotification", count=2)
            old = csms.connected["CP001"]
            csms.password = new
            result = await csms.call(
                "CP001", "SetVariables", set_variable("SecurityCtrlr", "BasicAuthPassword", new)
            )
            answered = time.monotonic()
            assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
            for _ in range(200):  # the old connection closes, a new one opens
                if csms.connected.get("CP001") not in (None, old):
                    break
                await asyncio.sleep(0.05)
            accepted = [a for a in csms.attempts if a.status == 101]
            assert len(accepted) == 2
            assert accepted[1].authorization == "CP001"
            # Not at once: a CSMS may still be cleaning up the old session (>= 1 s, jittered).
            assert accepted[1].at - answered >= 1.0
            closes = [r for r in caplog.records if "CSMS connection closed" in r.getMessage()]
            assert [r.levelname for r in closes] == ["INFO"]  # our own close
            assert actions(csms).count("BootNotification") == 1  # a reconnect, not a reboot
            # TC_A_10: a short password is rejected and the old one stays
            result = await csms.call(
                "CP001", "SetVariables", set_variable("SecurityCtrlr", "BasicAuthPassword", "short")
            )
            assert result["setVariableResult"][0]["attributeStatus"] == "Rejected"


async def test_a01_a_password_change_on_profile_0_keeps_the_connection(tmp_path: Path) -> None:
    async with DemoCsms() as csms, station(tmp_path, csms.url):
        await csms.wait_for("StatusNotification", count=2)
        result = await csms.call(
            "CP001",
            "SetVariables",
            set_variable("SecurityCtrlr", "BasicAuthPassword", "New-Password-0123456789"),
        )
        assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
        await asyncio.sleep(2.5)  # longer than the reconnect delay on profiles 1 and 2
        assert len(csms.attempts) == 1


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, Any]:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("CP001")
    files = {
        "ca": tmp_path / "ca.pem",
        "client_cert": tmp_path / "client.pem",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(files["ca"])
    client.cert_chain_pems[0].write_to_path(files["client_cert"])
    client.private_key_pem.write_to_path(files["client_key"])

    def server_context(
        *, client_auth: bool = False, maximum: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.configure_cert(context)
        if client_auth:
            ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        if maximum is not None:
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum
        return context

    return {"ca": ca, "files": files, "server_context": server_context}


async def test_tc_a_04_tls_with_a_valid_server_certificate(
    tmp_path: Path, tls: dict[str, Any]
) -> None:
    async with DemoCsms(ssl_context=tls["server_context"](), password=PASSWORD) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        csms_config = (
            f'security_profile = 2\npassword = "{PASSWORD}"\nca_file = "{tls["files"]["ca"]}"'
        )
        async with station(tmp_path, url, csms=csms_config) as bridge:
            await csms.wait_for("StatusNotification", count=2)
            assert bridge.station.device_model.value("SecurityCtrlr.SecurityProfile") == "2"


async def test_tc_a_05_invalid_server_certificate_is_refused(
    tmp_path: Path, tls: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    other = trustme.CA()
    other_ca = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(other_ca)
    async with DemoCsms(ssl_context=tls["server_context"](), password=PASSWORD) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        csms_config = f'security_profile = 2\npassword = "{PASSWORD}"\nca_file = "{other_ca}"'
        async with station(tmp_path, url, csms=csms_config) as bridge:
            await asyncio.sleep(1.5)
            assert csms.received == []
            assert bridge.csms.state is not LinkState.connected
            assert "not trusted" in caplog.text


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
async def test_tc_a_06_tls_version_below_1_2_is_refused(
    tmp_path: Path, tls: dict[str, Any]
) -> None:
    assert tls_context(str(tls["files"]["ca"]), []).minimum_version is ssl.TLSVersion.TLSv1_2
    try:
        old = tls["server_context"](maximum=ssl.TLSVersion.TLSv1_1)
    except (ValueError, ssl.SSLError):  # pragma: no cover - an OpenSSL without TLS 1.1 at all
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    async with DemoCsms(ssl_context=old, password=PASSWORD) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        csms_config = (
            f'security_profile = 2\npassword = "{PASSWORD}"\nca_file = "{tls["files"]["ca"]}"'
        )
        async with station(tmp_path, url, csms=csms_config) as bridge:
            await asyncio.sleep(1.5)
            # The handshake fails (the peer resets or alerts); no OCPP message gets through.
            assert csms.received == []
            assert bridge.csms.state is not LinkState.connected
            assert bridge.csms.last_error


async def test_installed_csms_root_certificate_is_used_on_the_next_tls_connection(
    tmp_path: Path, tls: dict[str, Any]
) -> None:
    """An InstallCertificate of a CSMSRootCertificate verifies the CSMS next time."""
    async with DemoCsms(ssl_context=tls["server_context"](), password=PASSWORD) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        # Slot 1 plain ws to a dead port; the TLS CSMS comes through SetNetworkProfile later.
        dead = f"ws://127.0.0.1:{free_port()}/ocpp"
        async with station(
            tmp_path, dead, csms=f'security_profile = 1\npassword = "{PASSWORD}"'
        ) as bridge:
            dispatcher = bridge.station.dispatcher

            async def prefer_slot_2() -> str:
                """SetVariables NetworkConfigurationPriority = "2,1"; the attribute status."""
                result = await dispatcher.call(
                    Request(
                        "csms",
                        "ocpp2.0.1",
                        "SetVariables",
                        set_variable("OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1"),
                    )
                )
                status: str = result.payload["setVariableResult"][0]["attributeStatus"]
                return status

            profile = {
                "configurationSlot": 2,
                "connectionData": {
                    "messageTimeout": 30,
                    "ocppCsmsUrl": url,
                    "ocppInterface": "Wired0",
                    "ocppTransport": "JSON",
                    "ocppVersion": "OCPP20",
                    "securityProfile": 2,
                },
            }
            assert (
                await dispatcher.call(Request("csms", "ocpp2.0.1", "SetNetworkProfile", profile))
            ).payload["status"] == "Accepted"
            # A05.FR.02: no CSMS root yet → the priority naming slot 2 is refused
            assert await prefer_slot_2() == "Rejected"
            install = {
                "certificateType": "CSMSRootCertificate",
                "certificate": tls["ca"].cert_pem.bytes().decode(),
            }
            assert (
                await dispatcher.call(Request("csms", "ocpp2.0.1", "InstallCertificate", install))
            ).payload["status"] == "Accepted"
            assert await prefer_slot_2() == "RebootRequired"
            await csms.wait_for("StatusNotification", count=2, timeout=15)
            assert bridge.station.device_model.value("OCPPCommCtrlr.ActiveNetworkProfile") == "2"
            # A05.FR.06: connected on profile 2 → the new floor; slot 1 (profile 1) is removed
            assert bridge.station.device_model.value("SecurityCtrlr.SecurityProfile") == "2"
            assert bridge.station.network_profiles.get(1) is None
            assert (
                bridge.station.device_model.value("OCPPCommCtrlr.NetworkConfigurationPriority")
                == "2"
            )


async def test_tc_a_07_client_certificate(tmp_path: Path, tls: dict[str, Any]) -> None:
    files = tls["files"]
    async with DemoCsms(ssl_context=tls["server_context"](client_auth=True)) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        csms_config = (
            f'security_profile = 3\nca_file = "{files["ca"]}"\n'
            f'client_cert = "{files["client_cert"]}"\nclient_key = "{files["client_key"]}"'
        )
        async with station(tmp_path, url, csms=csms_config):
            await csms.wait_for("StatusNotification", count=2)
    # A client certificate from an unknown CA is refused by the CSMS.
    stranger = trustme.CA().issue_cert("CP001")
    stranger.cert_chain_pems[0].write_to_path(files["client_cert"])
    stranger.private_key_pem.write_to_path(files["client_key"])
    async with DemoCsms(ssl_context=tls["server_context"](client_auth=True)) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        async with station(tmp_path / "stranger", url, csms=csms_config) as bridge:
            await asyncio.sleep(1.5)
            assert csms.received == []
            assert bridge.csms.state is not LinkState.connected


# --- connection loss, fail-over, subprotocol, bad frames


async def test_connection_loss_reconnects_and_resynchronizes_status(tmp_path: Path) -> None:
    async with DemoCsms(heartbeat_interval=300) as csms, station(tmp_path, csms.url) as bridge:
        await csms.wait_for("StatusNotification", count=2)
        await csms.disconnect("CP001", code=1001)
        # B04.FR.02: a short outage → only the connectors whose status changed
        bridge.station.availability.set_evse(2, "Unavailable")
        [third] = (await csms.wait_for("StatusNotification", count=3, timeout=10))[2:]
        assert (third.payload["evseId"], third.payload["connectorStatus"]) == (2, "Unavailable")
        assert actions(csms).count("BootNotification") == 1
        # B04.FR.01: longer than OfflineThreshold → all connectors
        bridge.station.device_model.write(
            [(bridge.station.device_model["OCPPCommCtrlr.OfflineThreshold"], "Actual", "0")]
        )
        await csms.disconnect("CP001", code=1001)
        await csms.wait_for("StatusNotification", count=5, timeout=10)
        assert csms.schema_errors == []


async def test_b10_fails_over_to_the_next_slot_and_never_downgrades(tmp_path: Path) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/ocpp"
    preload = '"OCPPCommCtrlr.NetworkProfileConnectionAttempts" = 2\n'
    async with DemoCsms() as csms, DemoCsms() as downgrade:
        async with station(tmp_path, dead, preload=preload) as bridge:
            st = bridge.station
            # A profile below the current security profile, stored behind OCPP's back: never used.
            st.device_model.write(
                [(st.device_model["SecurityCtrlr.SecurityProfile"], "Actual", "1")]
            )
            st.network_profiles.save(
                3,
                {
                    "ocppCsmsUrl": downgrade.url,
                    "securityProfile": 0,
                    "ocppVersion": "OCPP20",
                    "ocppTransport": "JSON",
                    "ocppInterface": "Wired0",
                    "messageTimeout": 30,
                },
            )
            st.network_profiles.save(
                2,
                {
                    "ocppCsmsUrl": csms.url,
                    "securityProfile": 1,
                    "ocppVersion": "OCPP20",
                    "ocppTransport": "JSON",
                    "ocppInterface": "Wired0",
                    "messageTimeout": 30,
                },
            )
            st.device_model.write(
                [
                    (
                        st.device_model["OCPPCommCtrlr.NetworkConfigurationPriority"],
                        "Actual",
                        "3,1,2",
                    ),
                    (st.device_model["SecurityCtrlr.BasicAuthPassword"], "Actual", PASSWORD),
                ]
            )
            await csms.wait_for("BootNotification", timeout=15)
            assert st.device_model.value("OCPPCommCtrlr.ActiveNetworkProfile") == "2"
            assert downgrade.attempts == []


async def test_a_csms_that_selects_no_subprotocol_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with DemoCsms(select_subprotocol=False) as csms, station(tmp_path, csms.url) as bridge:
        await asyncio.sleep(1.5)
        assert csms.received == []
        assert bridge.csms.state is not LinkState.connected
        assert "selected no subprotocol" in caplog.text


async def test_malformed_frames_and_unknown_actions_are_answered_and_survived(
    tmp_path: Path,
) -> None:
    async with DemoCsms() as csms, station(tmp_path, csms.url):
        await csms.wait_for("StatusNotification", count=2)
        await csms.send_raw("CP001", "this is not json")
        await csms.send_raw("CP001", '[2, "x1", "Teleport", {}]')
        await csms.send_raw("CP001", '[3, "nobody-asked", {}]')
        for _ in range(50):
            outs = [t for _, d, t in csms.raw_frames if d == "in" and t.startswith("[4,")]
            if len(outs) >= 2:
                break
            await asyncio.sleep(0.05)
        assert any(t.startswith('[4,"-1","RpcFrameworkError"') for t in outs)
        assert any(t.startswith('[4,"x1","NotImplemented"') for t in outs)
        result = await csms.call(
            "CP001", "GetVariables", get_variable("AuthCtrlr", "LocalAuthorizeOffline")
        )
        assert result["getVariableResult"][0]["attributeValue"] == "true"


async def test_heartbeat_interval_change_reschedules_the_heartbeat(tmp_path: Path) -> None:
    async with DemoCsms(heartbeat_interval=300) as csms, station(tmp_path, csms.url):
        await csms.wait_for("StatusNotification", count=2)
        result = await csms.call(
            "CP001", "SetVariables", set_variable("OCPPCommCtrlr", "HeartbeatInterval", "1")
        )
        assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
        await csms.wait_for("Heartbeat", count=2, timeout=4)


async def test_the_clock_follows_the_csms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B01.FR.06: the station takes its time from the CSMS's currentTime, here an hour ahead of
    the system clock (both run on this machine: without the shift the offset is 0 either way)."""
    monkeypatch.setattr(
        "bridge.demo_csms.ocpp_timestamp",
        lambda: ocpp_timestamp(datetime.now(UTC) + timedelta(hours=1)),
    )
    async with DemoCsms() as csms, station(tmp_path, csms.url) as bridge:
        await csms.wait_for("StatusNotification", count=2)
        offset = bridge.station.clock.offset.total_seconds()
        assert abs(offset - 3600) < 1


async def test_an_unexpected_error_costs_one_attempt_not_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: the WebSocket library raising something nobody anticipated."""
    import bridge.transport.csms as link

    real_connect = link.connect
    calls = 0

    def flaky_connect(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a library")
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(link, "connect", flaky_connect)
    caplog.set_level(logging.ERROR)
    async with DemoCsms() as csms, station(tmp_path, csms.url) as bridge:
        await csms.wait_for("BootNotification", timeout=10)
        assert calls == 2
        assert "unexpected error while connecting to the CSMS" in caplog.text
        assert bridge.csms.state is LinkState.connected


async def test_a_csms_that_closes_during_a_pending_boot_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ordinary close while BootNotification waits for its answer: the station boots again on
    the next connection, and nothing is logged as an ERROR (it used to be ConnectionLost)."""
    from tests.robustness.robust_support import RawCsms

    def silent_first_boot(action: str, payload: Any, seen: int) -> Any:
        if action == "BootNotification":
            return (
                None
                if seen == 0
                else {"currentTime": ocpp_timestamp(), "interval": 300, "status": "Accepted"}
            )
        return {}

    csms = await RawCsms(silent_first_boot).start()
    try:
        with caplog.at_level(logging.INFO):
            async with station(tmp_path, csms.url) as bridge:
                await csms.wait_calls("BootNotification")
                await csms.current.close(1000, "maintenance")
                await csms.wait_calls("BootNotification", 2, timeout=15)
                await registered(bridge, "Accepted")
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        await csms.stop()
