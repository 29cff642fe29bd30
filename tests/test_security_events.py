"""A04 Security event notification: the security events the bridge sees itself, queued durably
and delivered to the CSMS once it is reachable (A04.FR.02), end to end through a real Mosquitto
and a real WebSocket CSMS (the demo CSMS, a CSMS whose answers the test writes, and a TLS server
that refuses the handshake)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridge.app import Bridge
from bridge.demo_csms import DemoCsms
from bridge.timeutil import ocpp_timestamp
from tests.conftest import Broker, Oem, make_station, running_bridge, write_config
from tests.robustness.robust_support import RawCsms

PASSWORD = "Pa55word-for-CP001"
FAST_BACKOFF = (
    '"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1\n'
    '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
    '"OCPPCommCtrlr.RetryBackOffRepeatTimes" = 1\n'
)


@asynccontextmanager
async def bridge_at(
    tmp_path: Path, broker: Broker, url: str, csms: str = ""
) -> AsyncIterator[Bridge]:
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        csms=f'url = "{url}"\n{csms}',
        extra=f"[device_model]\n{FAST_BACKOFF}",
    )
    async with running_bridge(config) as bridge:
        yield bridge


def queued_events(bridge: Bridge) -> list[str]:
    """The types of the SecurityEventNotifications in the store's outbound queue, oldest first."""
    rows = bridge.station.store.execute(
        "SELECT json_extract(payload, '$.type') FROM outbound_message "
        "WHERE action = 'SecurityEventNotification' ORDER BY seq"
    ).fetchall()
    return [str(kind) for (kind,) in rows]


async def until(condition: Any, what: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"waited {timeout} s for {what}")


def of_type(kind: str) -> Any:
    return lambda received: received.payload.get("type") == kind


def sent(csms: RawCsms, action: str) -> list[list[Any]]:
    """The CALL frames of `action` the station sent the raw CSMS."""
    calls = []
    for frame in csms.frames:
        message = json.loads(frame.text)
        if message[0] == 2 and message[2] == action:
            calls.append(message)
    return calls


def security_events(csms: DemoCsms) -> list[str]:
    return [r.payload["type"] for r in csms.received if r.action == "SecurityEventNotification"]


# --- StartupOfTheDevice, ResetOrReboot


async def test_a04_startup_of_the_device_once_per_start_after_the_accepted_boot(
    tmp_path: Path, broker: Broker
) -> None:
    async with DemoCsms() as csms:
        for start in (1, 2):
            async with bridge_at(tmp_path, broker, csms.url) as bridge:
                found = await csms.wait_for(
                    "SecurityEventNotification",
                    count=start,
                    predicate=of_type("StartupOfTheDevice"),
                )
                await until(lambda: bridge.station.queue.backlog == 0, "the answer taken")
                await csms.disconnect("CP001")  # a reconnection is not a start:
                await csms.wait_connected("CP001")
                trigger = {"requestedMessage": "Heartbeat"}
                assert await csms.call("CP001", "TriggerMessage", trigger) == {"status": "Accepted"}
                # (an event queued at the reconnection would go before this Heartbeat)
                await csms.wait_for("Heartbeat", count=start)
                assert security_events(csms) == ["StartupOfTheDevice"] * start
            event = found[-1].payload
            assert event["techInfo"].startswith("ocpp-bridge ")
            assert datetime.fromisoformat(event["timestamp"]) <= datetime.now(UTC)
        # B02.FR.02 / A04: nothing before the BootNotification is accepted
        order = [r.action for r in csms.received]
        assert order.index("BootNotification") < order.index("SecurityEventNotification")
        assert csms.schema_errors == []


async def test_a04_reset_or_reboot_survives_the_restart_and_reaches_the_csms(
    tmp_path: Path, broker: Broker
) -> None:
    dead = "ws://127.0.0.1:9/ocpp"
    async with bridge_at(tmp_path, broker, dead) as bridge:
        await until(lambda: "StartupOfTheDevice" in queued_events(bridge), "the startup event")
        bridge.station.security_events.reset_or_reboot("Reset Immediate from the CSMS")
        assert queued_events(bridge) == ["StartupOfTheDevice", "ResetOrReboot"]
    async with DemoCsms() as csms, bridge_at(tmp_path, broker, csms.url):
        await csms.wait_for("SecurityEventNotification", count=3)
        assert security_events(csms) == [
            "StartupOfTheDevice",
            "ResetOrReboot",
            "StartupOfTheDevice",
        ]
        reset = next(r for r in csms.received if r.payload.get("type") == "ResetOrReboot")
        assert reset.payload["techInfo"] == "Reset Immediate from the CSMS"
        assert csms.schema_errors == []


# --- FailedToAuthenticateAtCsms, InvalidCsmsCertificate, InvalidTLSVersion/CipherSuite


async def test_a04_failed_to_authenticate_at_csms_is_delivered_after_the_next_connection(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    async with DemoCsms(password="Wrong-password-xyz123") as csms:
        async with bridge_at(
            tmp_path, broker, csms.url, f'security_profile = 1\npassword = "{PASSWORD}"'
        ) as bridge:
            await until(lambda: sum(a.status == 401 for a in csms.attempts) >= 3, "3 refusals")
            # One event for the whole streak of refusals, not one per attempt of the back-off.
            assert queued_events(bridge).count("FailedToAuthenticateAtCsms") == 1
            csms.password = PASSWORD
            (event,) = await csms.wait_for(
                "SecurityEventNotification", predicate=of_type("FailedToAuthenticateAtCsms")
            )
            assert "HTTP 401" in event.payload["techInfo"]
            assert PASSWORD not in event.payload["techInfo"]
            await until(lambda: queued_events(bridge) == [], "the queue emptied")
            # A new streak after a successful connection is reported again.
            csms.password = "Another-wrong-one-42"
            await csms.disconnect("CP001")
            await until(lambda: "FailedToAuthenticateAtCsms" in queued_events(bridge), "again")
    assert PASSWORD not in caplog.text
    assert csms.schema_errors == []


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)

    def context(maximum: ssl.TLSVersion | None = None, ciphers: str = "") -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.configure_cert(context)
        if maximum is not None:
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum
        if ciphers:
            context.set_ciphers(ciphers)
        return context

    return {"ca": ca, "ca_file": ca_file, "context": context}


def tls_profile(ca_file: Path) -> str:
    return f'security_profile = 2\npassword = "{PASSWORD}"\nca_file = "{ca_file}"'


async def test_a04_invalid_csms_certificate_is_delivered_once_the_csms_is_trusted(
    tmp_path: Path, broker: Broker, pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    trusted = pki["ca_file"].read_bytes()
    trustme.CA().cert_pem.write_to_path(pki["ca_file"])  # a CA that did not issue the CSMS's
    async with DemoCsms(ssl_context=pki["context"](), password=PASSWORD) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        async with bridge_at(tmp_path, broker, url, tls_profile(pki["ca_file"])) as bridge:

            def failures() -> int:
                return caplog.text.count("CSMS connection attempt failed")

            await until(lambda: failures() >= 2, "two failed attempts")
            assert queued_events(bridge).count("InvalidCsmsCertificate") == 1
            pki["ca_file"].write_bytes(trusted)  # the operator installs the right root
            (event,) = await csms.wait_for(
                "SecurityEventNotification", predicate=of_type("InvalidCsmsCertificate"), timeout=15
            )
            assert "not trusted" in event.payload["techInfo"]
    assert csms.schema_errors == []


@contextlib.contextmanager
def refusing_tls_server(context: ssl.SSLContext) -> Iterator[int]:
    """A TLS server on a free loopback port whose every handshake fails as `context` makes it
    (it alerts the client, as a real server does); yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection, contextlib.suppress(OSError):  # ssl.SSLError is an OSError
                connection.settimeout(5)
                context.wrap_socket(connection, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
@pytest.mark.parametrize(
    ("kind", "maximum", "ciphers"),
    [
        ("InvalidTLSVersion", ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"),
        # TLS 1.2 with a CBC suite only: none of the suites the station offers.
        ("InvalidTLSCipherSuite", ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA"),
    ],
)
async def test_a04_a_csms_with_a_forbidden_tls_version_or_cipher_suite(
    tmp_path: Path,
    broker: Broker,
    pki: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    kind: str,
    maximum: ssl.TLSVersion,
    ciphers: str,
) -> None:
    caplog.set_level(logging.WARNING)
    try:
        refusing = pki["context"](maximum=maximum, ciphers=ciphers)
    except (ValueError, ssl.SSLError):  # pragma: no cover - an OpenSSL without them
        pytest.skip(f"this OpenSSL cannot serve {maximum.name} with {ciphers}")
    with refusing_tls_server(refusing) as port:
        url = f"wss://localhost:{port}/ocpp"
        async with bridge_at(tmp_path, broker, url, tls_profile(pki["ca_file"])) as bridge:
            await until(
                lambda: caplog.text.count("CSMS connection attempt failed") >= 2, "two attempts"
            )
            assert queued_events(bridge) == ["StartupOfTheDevice", kind]
    # The CSMS fixed, on the same port; the event waited in the store across the restart.
    async with DemoCsms(port=port, ssl_context=pki["context"](), password=PASSWORD) as csms:
        async with bridge_at(tmp_path, broker, url, tls_profile(pki["ca_file"])):
            (event,) = await csms.wait_for(
                "SecurityEventNotification", predicate=of_type(kind), timeout=15
            )
            assert "TLS handshake failed" in event.payload["techInfo"]
    assert csms.schema_errors == []


# --- SettingSystemTime


async def test_a04_setting_system_time_when_the_csms_clock_moves_the_station_clock(
    tmp_path: Path, broker: Broker
) -> None:
    ahead = timedelta(hours=1)

    def answer(action: str, payload: Any, seen: int) -> Any:
        now = ocpp_timestamp(datetime.now(UTC) + ahead)
        if action == "BootNotification":
            return {"currentTime": now, "interval": 300, "status": "Accepted"}
        if action == "Heartbeat":
            return {"currentTime": now}
        return {}

    csms = await RawCsms(answer).start()
    try:
        async with bridge_at(tmp_path, broker, csms.url) as bridge:
            await csms.wait_calls("SecurityEventNotification", 2)
            events = [m[3] for m in sent(csms, "SecurityEventNotification")]
            assert [e["type"] for e in events] == ["StartupOfTheDevice", "SettingSystemTime"]
            assert events[1]["techInfo"] == "clock set from the CSMS by +3600 s"
            # its timestamp is the new (CSMS) time
            stamp = datetime.fromisoformat(events[1]["timestamp"])
            assert stamp - datetime.now(UTC) > ahead - timedelta(minutes=1)
            assert bridge.station.clock.offset > ahead - timedelta(minutes=1)
    finally:
        await csms.stop()


@pytest.mark.parametrize(
    ("threshold", "jump", "reported"),
    [
        ("20", timedelta(seconds=19), False),
        ("20", timedelta(seconds=-21), True),
        ("20", timedelta(days=365 * 20), True),  # a board whose clock is 20 years behind
        ("0", timedelta(hours=5), False),  # 0: never reported
    ],
)
def test_a04_setting_system_time_only_beyond_the_time_adjustment_reporting_threshold(
    tmp_path: Path, threshold: str, jump: timedelta, reported: bool
) -> None:
    station = make_station(
        tmp_path,
        extra=f'[device_model]\n"ClockCtrlr.TimeAdjustmentReportingThreshold" = {threshold}\n',
    )
    table = station.store.execute
    station.clock.synchronize(ocpp_timestamp(datetime.now(UTC) + jump))
    rows = table("SELECT payload FROM outbound_message").fetchall()
    assert len(rows) == int(reported)
    station.clock.synchronize(ocpp_timestamp(datetime.now(UTC) + jump))  # the same time again
    assert len(table("SELECT payload FROM outbound_message").fetchall()) == int(reported)


# --- FirmwareUpdated, InvalidFirmwareSignature (L01) from the OEM's FirmwareStatusNotification


async def test_a04_firmware_updated_when_the_oem_reports_the_firmware_installed(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_at(tmp_path, broker, csms.url) as bridge:
        await until(lambda: bridge.station.registration.accepted, "the accepted boot")
        for status, request_id in (
            ("Downloading", 7),
            ("Installing", 7),
            ("Installed", 7),
            ("Installed", 7),  # said twice: one security event
            ("InvalidSignature", 8),
        ):
            data = await oem.ocpp(
                "FirmwareStatusNotification", {"status": status, "requestId": request_id}
            )
            assert data["message_type"] == "CallResult"
        await csms.wait_for(
            "SecurityEventNotification", predicate=of_type("InvalidFirmwareSignature")
        )
        # Both events were queued in order, so FirmwareUpdated is there before the other.
        assert security_events(csms) == [
            "StartupOfTheDevice",
            "FirmwareUpdated",
            "InvalidFirmwareSignature",
        ]
        updated = next(r for r in csms.received if r.payload.get("type") == "FirmwareUpdated")
        assert updated.payload["techInfo"] == "firmware update 7: Installed"
        actions = [
            (r.action, r.payload.get("status", r.payload.get("type"))) for r in csms.received
        ]
        # L01.FR.31: the FirmwareStatusNotification Installed first, then the security event
        assert actions.index(("FirmwareStatusNotification", "Installed")) < actions.index(
            ("SecurityEventNotification", "FirmwareUpdated")
        )
        assert csms.schema_errors == []


def test_a04_the_criticality_table_follows_the_appendix() -> None:
    from bridge.station.security_events import CONNECTION_EVENTS, CRITICAL, FIRMWARE_EVENTS

    # OCPP 2.0.1 part 2, appendix 1: FailedToAuthenticateAtCsms is the one non-critical event
    # the bridge reports (it keeps no security log of its own).
    raised = {"StartupOfTheDevice", "ResetOrReboot", "SettingSystemTime"}
    raised |= set(CONNECTION_EVENTS.values()) | set(FIRMWARE_EVENTS.values())
    assert raised - CRITICAL == {"FailedToAuthenticateAtCsms"}
    assert not {"InvalidMessages", "ReconfigurationOfSecurityParameters"} & CRITICAL
