"""Secrets never appear in logs: the bridge at DEBUG through TLS with a password
(security profile 2), password changes from the CSMS and from the OEM, rejected passwords, an
HTTP 401, and mutual TLS with a private key (profile 3). Every byte the bridge writes is searched
for the passwords, the Basic-auth header values and the private key's base64."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridge.config import load_settings
from bridge.demo_csms import DemoCsms
from bridge.health import status_path
from tests.conftest import BRIDGE, Broker, write_config
from tests.robustness.robust_support import (
    BridgeProcess,
    fast_backoff,
    oem_client,
    until_answering,
)

STATION = "CP001"
# Random-looking, so that a hit is a leak and not a coincidence.
INITIAL = "Qz7vK2pWx9LmR4tN8cJd"
FROM_CSMS = "Hy3bF6nT1sPq8VwE5kUa"
TOO_SHORT = "Gk4rZ9mW2x"
FROM_OEM = "Ld6jX3cY8vBn1QsR7pTe"
REFUSED_BY_PATTERN = "Mw5 tH2 gK9 zP4 rV7 nC1"  # spaces: not a passwordString
IN_A_BAD_REQUEST = "Xe8uJ2wQ6hLz4TmA9dKf"
MQTT_PASSWORD = "Bn2rW7kP4xZq9LmT3vHs"
PASSWORDS = (INITIAL, FROM_CSMS, TOO_SHORT, FROM_OEM, REFUSED_BY_PATTERN, IN_A_BAD_REQUEST)


def set_password(value: str, **extra: Any) -> dict[str, Any]:
    return {
        "setVariableData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "attributeValue": value,
                **extra,
            }
        ]
    }


def leaks(text: str, key_pem: str) -> list[str]:
    """Every secret (or a 12-character piece of one) found in `text`."""
    found = []
    for secret in (*PASSWORDS, MQTT_PASSWORD):
        pieces = {secret[i : i + 12] for i in range(len(secret) - 11)}
        hits = [p for p in pieces if p in text]
        if hits:
            found.append(f"password {secret[:3]}…: {sorted(hits)[:3]}")
    for password in (INITIAL, FROM_CSMS, FROM_OEM):
        header = base64.b64encode(f"{STATION}:{password}".encode()).decode()
        if header in text or header[:16] in text:
            found.append(f"the Basic-auth header of {password[:3]}…")
    body = [line for line in key_pem.strip().splitlines() if not line.startswith("-----")]
    for line in body:
        if len(line) >= 16 and line[:16] in text:
            found.append(f"a line of the private key: {line[:10]}…")
    if "PRIVATE KEY" in text:
        found.append("a PEM private key header")
    return found


def health(config: Path) -> str:
    out = subprocess.run(
        [*BRIDGE, "health", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout + out.stderr


def server_context(server: trustme.LeafCert, ca: trustme.CA, client_auth: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(context)
    if client_auth:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.mark.timeout(90)
async def test_no_secret_in_any_log(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert(STATION)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cp.pem", tmp_path / "cp.key"
    ca.cert_pem.write_to_path(ca_file)
    client.cert_chain_pems[0].write_to_path(cert_file)
    client.private_key_pem.write_to_path(key_file)
    key_pem = client.private_key_pem.bytes().decode()
    outputs: list[tuple[str, str]] = []
    mqtt = f'username = "bridge"\npassword = "{MQTT_PASSWORD}"'

    # Profile 2: TLS + Basic auth, at DEBUG.
    async with DemoCsms(ssl_context=server_context(server, ca, False), password=INITIAL) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        (tmp_path / "p2").mkdir()
        config = write_config(
            tmp_path / "p2" / "bridge.toml",
            broker,
            csms=f'url = "{url}"\nsecurity_profile = 2\npassword = "{INITIAL}"\n'
            f'ca_file = "{ca_file}"',
            extra=f'[logging]\nlevel = "DEBUG"\n\n[device_model]\n{fast_backoff()}',
        )
        config.write_text(config.read_text().replace("[mqtt]\n", f"[mqtt]\n{mqtt}\n"))
        bridge = BridgeProcess(config, tmp_path / "p2" / "bridge.log").start()
        try:
            await csms.wait_for("StatusNotification", timeout=30)
            async with oem_client(broker.host, broker.port) as oem:
                await until_answering(oem)
                # A01: the CSMS sets a new password; the bridge reconnects with it.
                csms.password = FROM_CSMS
                result = await csms.call(STATION, "SetVariables", set_password(FROM_CSMS))
                assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
                await wait_until(lambda: accepted(csms) >= 2, "a reconnection with the new one")
                # TC_A_10: too short → Rejected, the old one stays.
                result = await csms.call(STATION, "SetVariables", set_password(TOO_SHORT))
                assert result["setVariableResult"][0]["attributeStatus"] == "Rejected"
                # The OEM sets one through ocpp_message; then a refused one; then a bad request.
                csms.password = FROM_OEM
                data = await oem.ocpp("SetVariables", set_password(FROM_OEM))
                assert data["payload"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
                await wait_until(lambda: accepted(csms) >= 3, "a reconnection with the OEM's")
                data = await oem.ocpp("SetVariables", set_password(REFUSED_BY_PATTERN))
                assert data["payload"]["setVariableResult"][0]["attributeStatus"] == "Rejected"
                data = await oem.ocpp(
                    "SetVariables", set_password(IN_A_BAD_REQUEST, bogus=IN_A_BAD_REQUEST)
                )
                assert data["error_code"] == "FormatViolation"
                outputs.append(("answers to the OEM", json.dumps(oem.answers)))
                data = await oem.ocpp(
                    "GetVariables",
                    {
                        "getVariableData": [
                            {
                                "component": {"name": "SecurityCtrlr"},
                                "variable": {"name": "BasicAuthPassword"},
                            }
                        ]
                    },
                )
                assert "attributeValue" not in data["payload"]["getVariableResult"][0]
                outputs.append(("ocpp-bridge health", health(config)))
                status = status_path(load_settings(config))  # what `health` read, searched too
                outputs.append((status.name, status.read_text()))
                # The CSMS changes its mind: the next connection is refused with HTTP 401.
                csms.password = "Not-the-stations-password-0"
                await csms.disconnect(STATION)
                await wait_until(lambda: any(a.status == 401 for a in csms.attempts), "a 401")
                await asyncio.sleep(0.5)
        finally:
            assert bridge.stop() == 0
        log = bridge.log_text()
        for expected in ("DEBUG", "HTTP 401", "BasicAuthPassword changed"):  # it did log
            assert expected in log
        outputs.append(("profile 2 bridge log", log))

    # Profile 3: mutual TLS with the station's private key, at DEBUG.
    async with DemoCsms(ssl_context=server_context(server, ca, True)) as csms:
        url = csms.url.replace("127.0.0.1", "localhost")
        (tmp_path / "p3").mkdir()
        config = write_config(
            tmp_path / "p3" / "bridge.toml",
            broker,
            station_id=STATION,
            csms=f'url = "{url}"\nsecurity_profile = 3\nca_file = "{ca_file}"\n'
            f'client_cert = "{cert_file}"\nclient_key = "{key_file}"',
            extra=f'[logging]\nlevel = "DEBUG"\n\n[device_model]\n{fast_backoff()}',
        )
        bridge = BridgeProcess(config, tmp_path / "p3" / "bridge.log").start()
        try:
            await csms.wait_for("StatusNotification", timeout=30)
            async with oem_client(broker.host, broker.port) as oem:
                await until_answering(oem)
                # An OEM that pastes a private key (alone, or after the certificate).
                for certificate in (key_pem, client.cert_chain_pems[0].bytes().decode() + key_pem):
                    data = await oem.ocpp(
                        "InstallCertificate",
                        {"certificateType": "CSMSRootCertificate", "certificate": certificate},
                    )
                    assert data["payload"]["status"] == "Rejected"
                outputs.append(("answers to the OEM (profile 3)", json.dumps(oem.answers)))
        finally:
            assert bridge.stop() == 0
        outputs.append(("profile 3 bridge log", bridge.log_text()))

    # What the bridge's own loggers said in this process (the demo CSMS is the CSMS, not us).
    ours = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("bridge") and not r.name.startswith("bridge.demo_csms")
    ]
    outputs.append(("caplog (bridge.*)", "\n".join(ours)))
    found = {name: leaks(text, key_pem) for name, text in outputs}
    found = {name: hits for name, hits in found.items() if hits}
    assert not found, found


def accepted(csms: DemoCsms) -> int:
    return sum(1 for a in csms.attempts if a.status == 101)


async def wait_until(condition: Any, what: str, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
