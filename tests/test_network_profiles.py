"""B09 SetNetworkProfile, B10/A05 NetworkConfigurationPriority, at station level.

Every request goes through the station's one dispatcher, as both doors (CSMS and OEM) send it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.rpc import CallError, CallResult
from bridge.rpc.request import Request
from bridge.station import Station
from bridge.station.provisioning.network_profiles import check_connection_data
from bridge.store import Store
from tests.conftest import make_station, ocpp_call

PASSWORD = "Sixteen-Chars-Pw.42"  # passwordString: 16 to 40 characters
WS_URL = "ws://127.0.0.1:9000/ocpp"
WSS_URL = "wss://csms.example.com/ocpp"
REASONS = {
    "InvalidConfSlot",
    "InvalidValue",
    "NoSecurityDowngrade",
    "UnsupportedParam",
    "InvalidURL",
}


def csms_section(tmp_path: Path, security_profile: int, *, client_cert: bool = False) -> str:
    """[csms] of a station at this security profile (profile 2+: wss, a CA file that exists)."""
    if security_profile == 0:
        return f'url = "{WS_URL}"\nsecurity_profile = 0'
    if security_profile == 1:
        return f'url = "{WS_URL}"\nsecurity_profile = 1\npassword = "{PASSWORD}"'
    ca = trustme.CA()
    ca_file = tmp_path / "csms-root.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    lines = [
        f'url = "{WSS_URL}"',
        f"security_profile = {security_profile}",
        f'password = "{PASSWORD}"',
        f'ca_file = "{ca_file}"',
    ]
    if client_cert or security_profile == 3:
        leaf = ca.issue_cert("CP001")
        cert_file, key_file = tmp_path / "cp001.pem", tmp_path / "cp001.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert_file))
        leaf.private_key_pem.write_to_path(str(key_file))
        lines += [f'client_cert = "{cert_file}"', f'client_key = "{key_file}"']
    return "\n".join(lines)


def open_station(tmp_path: Path, csms: str = "") -> Station:
    return make_station(tmp_path, csms=csms)


def reopen(station: Station, tmp_path: Path, csms: str) -> Station:
    """Close the store and build a new station on the same file, as after a restart."""
    station.store.close()
    return open_station(tmp_path, csms)


def profile(url: str = WS_URL, security_profile: int = 0, **extra: Any) -> dict[str, Any]:
    """A NetworkConnectionProfileType."""
    return {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": url,
        "messageTimeout": 30,
        "securityProfile": security_profile,
        "ocppInterface": "Wired0",
        **extra,
    }


async def call(station: Station, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = await station.dispatcher.call(Request("csms", "ocpp2.0.1", action, payload))
    assert isinstance(result, CallResult), result
    return result.payload


async def set_profile(station: Station, slot: int, data: dict[str, Any]) -> dict[str, Any]:
    return await call(
        station, "SetNetworkProfile", {"configurationSlot": slot, "connectionData": data}
    )


def variable(component: str, name: str) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": name}}


async def set_priority(station: Station, value: str) -> dict[str, Any]:
    item = variable("OCPPCommCtrlr", "NetworkConfigurationPriority") | {"attributeValue": value}
    payload = await call(station, "SetVariables", {"setVariableData": [item]})
    (result,) = payload["setVariableResult"]
    return result


async def get_value(station: Station, component: str, name: str) -> str:
    payload = await call(station, "GetVariables", {"getVariableData": [variable(component, name)]})
    (result,) = payload["getVariableResult"]
    assert result["attributeStatus"] == "Accepted"
    value: str = result["attributeValue"]
    return value


def stored_profiles(station: Station) -> dict[int, dict[str, Any]]:
    return {slot: json.loads(data) for slot, data in station.store.network_profiles().items()}


def stored_profiles_in(path: Path) -> dict[int, dict[str, Any]]:
    store = Store(path)
    try:
        return {slot: json.loads(data) for slot, data in store.network_profiles().items()}
    finally:
        store.close()


def config_profile(url: str, security_profile: int) -> dict[str, Any]:
    """What the [csms] section puts into slot 1."""
    return profile(url, security_profile) | {"messageTimeout": 60}  # MessageTimeout[Default]


# --- B09.FR.01: a valid profile is stored


@pytest.mark.parametrize("slot", [2, 3])
async def test_b09_fr01_valid_profile_is_accepted_and_stored(tmp_path: Path, slot: int) -> None:
    csms = csms_section(tmp_path, 0)
    station = open_station(tmp_path, csms)
    slot_1 = station.network_profiles.get(1)
    assert slot_1 is not None
    assert slot_1["ocppCsmsUrl"] == WS_URL
    data = profile(
        "ws://backup.example.com:8080/ocpp/v201",
        1,
        messageTimeout=45,
        ocppInterface="Wireless0",
        apn={"apn": "internet.example", "apnAuthentication": "AUTO", "simPin": 1234},
        vpn={"server": "vpn.example", "user": "cp", "password": "pw", "key": "k", "type": "IKEv2"},
    )
    assert await set_profile(station, slot, data) == {"status": "Accepted"}
    assert station.network_profiles.get(slot) == data
    assert stored_profiles(station) == {1: slot_1, slot: data}

    station.store.close()
    assert stored_profiles_in(tmp_path / "bridge.db") == {1: slot_1, slot: data}
    station = open_station(tmp_path, csms)
    assert station.network_profiles.get(slot) == data
    assert station.network_profiles.get(1) == slot_1


async def test_b09_fr01_accepted_profile_replaces_the_one_in_the_slot(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    first, second = profile("ws://one.example/ocpp"), profile("ws://two.example/ocpp", 1)
    assert await set_profile(station, 2, first) == {"status": "Accepted"}
    assert await set_profile(station, 2, second) == {"status": "Accepted"}
    assert station.network_profiles.get(2) == second
    assert stored_profiles(station) == {2: second}


@pytest.mark.parametrize(("slot", "level"), [(2, 2), (3, 2), (2, 3), (3, 3)])
async def test_b09_fr04_equal_or_higher_security_profile_is_accepted(
    tmp_path: Path, slot: int, level: int
) -> None:
    station = open_station(tmp_path, csms_section(tmp_path, 2))
    assert await get_value(station, "SecurityCtrlr", "SecurityProfile") == "2"
    data = profile("wss://other.example.com:443/ocpp", level)
    assert await set_profile(station, slot, data) == {"status": "Accepted"}
    assert stored_profiles(station)[slot] == data


async def test_b09_a_station_without_csms_url_starts_with_no_profile(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    assert stored_profiles(station) == {}
    assert station.network_profiles.get(1) is None
    assert station.network_profiles.priority() == []


# --- B09.FR.02, FR.04, FR.05: Rejected, and nothing stored


@pytest.mark.parametrize("slot", [-1, 0, 4, 99, 999])
async def test_b09_fr05_slot_outside_the_values_list_is_rejected(tmp_path: Path, slot: int) -> None:
    station = open_station(tmp_path, csms_section(tmp_path, 0))
    before = stored_profiles(station)
    assert await set_profile(station, slot, profile()) == {
        "status": "Rejected",
        "statusInfo": {
            "reasonCode": "InvalidConfSlot",
            "additionalInfo": "configurationSlot must be one of 1,2,3",
        },
    }
    assert station.network_profiles.get(slot) is None
    assert stored_profiles(station) == before


@pytest.mark.parametrize(
    ("current", "lower", "url"),
    [(2, 0, WS_URL), (2, 1, WS_URL), (3, 2, WSS_URL), (1, 0, WS_URL)],
)
async def test_b09_fr04_lower_security_profile_is_rejected(
    tmp_path: Path, current: int, lower: int, url: str
) -> None:
    station = open_station(tmp_path, csms_section(tmp_path, current))
    assert await get_value(station, "SecurityCtrlr", "SecurityProfile") == str(current)
    before = stored_profiles(station)
    response = await set_profile(station, 2, profile(url, lower))
    assert response["status"] == "Rejected"
    assert response["statusInfo"]["reasonCode"] == "NoSecurityDowngrade"
    assert stored_profiles(station) == before
    assert station.network_profiles.get(2) is None


INVALID: list[Any] = [
    # (changes to a valid security profile 1 ws:// profile, reasonCode)
    pytest.param({"ocppTransport": "SOAP"}, "UnsupportedParam", id="soap"),
    pytest.param({"ocppVersion": "OCPP16"}, "UnsupportedParam", id="ocpp16"),
    pytest.param({"ocppVersion": "OCPP15"}, "UnsupportedParam", id="ocpp15"),
    pytest.param({"ocppVersion": "OCPP12"}, "UnsupportedParam", id="ocpp12"),
    pytest.param({"securityProfile": 4}, "InvalidValue", id="profile-4"),
    pytest.param({"securityProfile": -1}, "InvalidValue", id="profile-minus-1"),
    pytest.param({"securityProfile": 2}, "InvalidURL", id="profile-2-with-ws"),
    pytest.param({"securityProfile": 3}, "InvalidURL", id="profile-3-with-ws"),
    pytest.param({"ocppCsmsUrl": WSS_URL}, "InvalidURL", id="profile-1-with-wss"),
    pytest.param({"ocppCsmsUrl": WSS_URL, "securityProfile": 0}, "InvalidURL", id="profile-0-wss"),
    pytest.param({"ocppCsmsUrl": "ws://"}, "InvalidURL", id="no-host"),
    pytest.param({"ocppCsmsUrl": "ws:///ocpp"}, "InvalidURL", id="empty-host"),
    pytest.param({"ocppCsmsUrl": "ws://:9000/ocpp"}, "InvalidURL", id="port-only"),
    pytest.param(
        {"ocppCsmsUrl": "ws://cp001:secret@csms.example.com/ocpp"}, "InvalidURL", id="creds"
    ),
    pytest.param({"ocppCsmsUrl": "ws://cp001@csms.example.com/ocpp"}, "InvalidURL", id="user"),
    pytest.param({"ocppCsmsUrl": "not a url"}, "InvalidURL", id="not-a-url"),
    pytest.param({"ocppCsmsUrl": ""}, "InvalidURL", id="empty"),
    pytest.param({"ocppCsmsUrl": "csms.example.com/ocpp"}, "InvalidURL", id="no-scheme"),
    pytest.param({"ocppCsmsUrl": "http://csms.example.com/ocpp"}, "InvalidURL", id="http"),
    pytest.param({"ocppCsmsUrl": "https://csms.example.com/ocpp"}, "InvalidURL", id="https"),
    pytest.param({"ocppCsmsUrl": "ws://csms.example.com/ocpp?cp=1"}, "InvalidURL", id="query"),
    pytest.param({"ocppCsmsUrl": "ws://csms.example.com/ocpp#x"}, "InvalidURL", id="fragment"),
    pytest.param({"ocppCsmsUrl": "ws://csms.example.com:99999/ocpp"}, "InvalidURL", id="bad-port"),
    pytest.param({"ocppCsmsUrl": "ws://csms.example.com:x/ocpp"}, "InvalidURL", id="text-port"),
    pytest.param({"ocppCsmsUrl": "ws://[::1/ocpp"}, "InvalidURL", id="broken-ipv6"),
    pytest.param({"ocppCsmsUrl": "ws://csms.exa mple.com/ocpp"}, "InvalidURL", id="space-in-host"),
    pytest.param({"ocppCsmsUrl": "ws://csms.example.com/oc pp"}, "InvalidURL", id="space-in-path"),
    pytest.param({"ocppCsmsUrl": " ws://csms.example.com/ocpp"}, "InvalidURL", id="leading-space"),
    pytest.param({"ocppCsmsUrl": "ws://csms.example.com/ocpp\n"}, "InvalidURL", id="newline"),
    pytest.param({"ocppCsmsUrl": "ws://csms\t.example.com/ocpp"}, "InvalidURL", id="tab"),
    pytest.param({"ocppCsmsUrl": "ws://csms.example.com/\x00"}, "InvalidURL", id="nul"),
    pytest.param(
        {"ocppCsmsUrl": "ws://csms.example.com/ocpp\r\nINFO forged log line"},
        "InvalidURL",
        id="crlf-log-injection",
    ),
]


@pytest.mark.parametrize(("changes", "reason"), INVALID)
async def test_b09_fr02_invalid_profile_is_rejected_and_stores_nothing(
    tmp_path: Path, changes: dict[str, Any], reason: str
) -> None:
    station = open_station(tmp_path, csms_section(tmp_path, 0))
    held = profile("ws://held.example.com/ocpp", 1)
    assert await set_profile(station, 2, held) == {"status": "Accepted"}
    before = stored_profiles(station)

    for slot in (2, 3):
        response = await set_profile(station, slot, profile(WS_URL, 1) | changes)
        assert response["status"] == "Rejected", response
        assert set(response) == {"status", "statusInfo"}
        assert response["statusInfo"]["reasonCode"] == reason
        assert response["statusInfo"]["additionalInfo"]

    assert station.network_profiles.get(2) == held
    assert station.network_profiles.get(3) is None
    assert stored_profiles(station) == before
    station.store.close()
    assert stored_profiles_in(tmp_path / "bridge.db") == before


@pytest.mark.parametrize(
    ("connection_data", "code"),
    [
        pytest.param(
            {k: v for k, v in profile().items() if k != "ocppInterface"},
            "OccurrenceConstraintViolation",
            id="missing-interface",
        ),
        pytest.param(profile("ws://h/" + "x" * 510), "PropertyConstraintViolation", id="url-513"),
        pytest.param(profile() | {"securityProfile": "1"}, "TypeConstraintViolation", id="text"),
        pytest.param(
            profile() | {"ocppInterface": "Wired9"}, "PropertyConstraintViolation", id="if"
        ),
        pytest.param(
            profile() | {"ocppVersion": "OCPP21"}, "PropertyConstraintViolation", id="v21"
        ),
        pytest.param(profile() | {"extra": True}, "FormatViolation", id="extra-field"),
    ],
)
async def test_b09_payload_outside_the_schema_is_a_call_error(
    tmp_path: Path, connection_data: dict[str, Any], code: str
) -> None:
    station = open_station(tmp_path)
    result = await station.dispatcher.call(
        Request(
            "csms",
            "ocpp2.0.1",
            "SetNetworkProfile",
            {"configurationSlot": 2, "connectionData": connection_data},
        )
    )
    assert isinstance(result, CallError)
    assert result.code == code
    assert stored_profiles(station) == {}


async def test_b09_fr03_failed_when_the_store_cannot_write(tmp_path: Path) -> None:
    station = open_station(tmp_path)
    station.store.close()  # every write now fails: a real sqlite3 error, nothing faked
    assert await set_profile(station, 2, profile()) == {"status": "Failed"}
    assert station.network_profiles.get(2) is None
    assert stored_profiles_in(tmp_path / "bridge.db") == {}


# --- the configuration slot


async def test_b09_profile_set_in_the_config_slot_stays_until_the_file_changes(
    tmp_path: Path,
) -> None:
    csms = csms_section(tmp_path, 0)
    station = open_station(tmp_path, csms)
    assert station.network_profiles.get(1) == config_profile(WS_URL, 0)
    replacement = profile("ws://replacement.example.com/ocpp", 0)
    assert await set_profile(station, 1, replacement) == {"status": "Accepted"}

    station = reopen(station, tmp_path, csms)  # same file: what OCPP set stays
    assert station.network_profiles.get(1) == replacement

    new_url = "ws://10.0.0.7:9000/ocpp"
    station = reopen(station, tmp_path, csms.replace(WS_URL, new_url))  # the installer changed it
    assert station.network_profiles.get(1) == config_profile(new_url, 0)


# --- B10 / A05: NetworkConfigurationPriority names slots that hold usable profiles


async def test_b10_priority_rejected_while_a_slot_is_empty_accepted_once_filled(
    tmp_path: Path,
) -> None:
    csms = csms_section(tmp_path, 0)
    station = open_station(tmp_path, csms)
    assert await get_value(station, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1"

    result = await set_priority(station, "1,2")
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"]["reasonCode"] == "InvalidValue"
    assert "slot 2" in result["attributeStatusInfo"]["additionalInfo"]
    assert await get_value(station, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1"

    assert await set_profile(station, 2, profile("ws://backup.example.com/ocpp")) == {
        "status": "Accepted"
    }
    result = await set_priority(station, "1,2")
    assert result["attributeStatus"] in ("Accepted", "RebootRequired")  # B10.FR.01
    assert await get_value(station, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1,2"
    assert station.network_profiles.priority() == [1, 2]

    for bad in ("2,1,3", "3", "1,4", "1,1", "0", ""):
        result = await set_priority(station, bad)
        assert result["attributeStatus"] == "Rejected", bad
        assert result["attributeStatusInfo"]["reasonCode"] == "InvalidValue", bad
    assert await get_value(station, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1,2"

    station = reopen(station, tmp_path, csms)
    assert await get_value(station, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1,2"
    assert station.network_profiles.priority() == [1, 2]


async def test_a00_fr005_priority_naming_a_lower_security_profile_is_rejected(
    tmp_path: Path,
) -> None:
    station = open_station(tmp_path, csms_section(tmp_path, 1))
    old = profile("ws://old.example.com/ocpp", 1)
    assert await set_profile(station, 2, old) == {"status": "Accepted"}

    # The installer raises the station to security profile 2; slot 2 still holds profile 1.
    station = reopen(station, tmp_path, csms_section(tmp_path, 2))
    assert await get_value(station, "SecurityCtrlr", "SecurityProfile") == "2"
    assert station.network_profiles.get(2) == old
    for value in ("1,2", "2", "2,1"):
        result = await set_priority(station, value)
        assert result["attributeStatus"] == "Rejected", value
        assert result["attributeStatusInfo"]["reasonCode"] == "NoSecurityDowngrade", value
    assert await get_value(station, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "1"
    # And the slot cannot be refilled with profile 1 either (B09.FR.04).
    response = await set_profile(station, 2, old)
    assert response["statusInfo"]["reasonCode"] == "NoSecurityDowngrade"


async def test_a05_fr02_priority_with_tls_profile_needs_an_installed_csms_root(
    tmp_path: Path,
) -> None:
    """OCTT TC_A_20: SetNetworkProfile Accepted, the priority Rejected until a CSMS root is in."""
    station = open_station(tmp_path, csms_section(tmp_path, 1))
    assert await set_profile(station, 2, profile(WSS_URL, 2)) == {"status": "Accepted"}

    result = await set_priority(station, "2,1")
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"]["reasonCode"] == "NoCert"

    other_root = trustme.CA().cert_pem.bytes().decode()
    install = {"certificateType": "V2GRootCertificate", "certificate": other_root}
    assert await call(station, "InstallCertificate", install) == {"status": "Accepted"}
    result = await set_priority(station, "2,1")
    assert result["attributeStatus"] == "Rejected"  # a V2G root does not verify a CSMS
    assert result["attributeStatusInfo"]["reasonCode"] == "NoCert"

    csms_root = trustme.CA().cert_pem.bytes().decode()
    install = {"certificateType": "CSMSRootCertificate", "certificate": csms_root}
    assert await call(station, "InstallCertificate", install) == {"status": "Accepted"}
    result = await set_priority(station, "2,1")
    assert result["attributeStatus"] in ("Accepted", "RebootRequired")
    assert station.network_profiles.priority() == [2, 1]


async def test_a05_fr03_priority_with_profile_3_needs_a_station_certificate(
    tmp_path: Path,
) -> None:
    """OCTT TC_A_21: without a Charging Station certificate, profile 3 cannot be made primary."""
    station = open_station(tmp_path, csms_section(tmp_path, 1))
    csms_root = trustme.CA().cert_pem.bytes().decode()
    install = {"certificateType": "CSMSRootCertificate", "certificate": csms_root}
    assert await call(station, "InstallCertificate", install) == {"status": "Accepted"}
    assert await set_profile(station, 3, profile(WSS_URL, 3)) == {"status": "Accepted"}
    result = await set_priority(station, "3,1")
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"]["reasonCode"] == "NoCert"


async def test_a05_fr04_priority_with_profile_3_accepted_with_a_station_certificate(
    tmp_path: Path,
) -> None:
    station = open_station(tmp_path, csms_section(tmp_path, 2, client_cert=True))
    assert await set_profile(station, 3, profile(WSS_URL, 3)) == {"status": "Accepted"}
    result = await set_priority(station, "3,1")
    assert result["attributeStatus"] in ("Accepted", "RebootRequired")
    assert station.network_profiles.priority() == [3, 1]


# --- property: check_connection_data never raises; Accepted stores exactly the input

INTERFACES = ["Wired0", "Wired1", "Wired2", "Wired3", "Wireless0", "Wireless1", "Wireless2"]
SCHEMES = st.sampled_from(["ws", "wss", "WS", "Wss", "http", "https", "ftp", "", "ws:"])
HOSTS = st.one_of(
    st.sampled_from(
        [
            "csms.example.com",
            "127.0.0.1",
            "[::1]",
            "[::1",
            "",
            "cp:pw@csms.example.com",
            "csms.example.com:9000",
            "csms.example.com:0",
            "csms.example.com:65536",
            "csms.example.com:-1",
            "exa mple.com",
            "bücher.example",
        ]
    ),
    st.text(max_size=20),
)
PATHS = st.one_of(
    st.sampled_from(["", "/", "/ocpp", "/ocpp/", "/ocpp?x=1", "/ocpp#f", "/a b", "/a\nb"]),
    st.text(max_size=20),
)
URLS = st.one_of(
    st.builds(lambda scheme, host, path: f"{scheme}://{host}{path}", SCHEMES, HOSTS, PATHS),
    st.text(max_size=60),
)
OPTIONAL = {
    "apn": st.fixed_dictionaries(
        {
            "apn": st.text(max_size=30),
            "apnAuthentication": st.sampled_from(["CHAP", "NONE", "PAP", "AUTO"]),
        },
        optional={"simPin": st.integers(0, 9999), "useOnlyPreferredNetwork": st.booleans()},
    ),
    "vpn": st.fixed_dictionaries(
        {
            "server": st.text(max_size=30),
            "user": st.text(max_size=20),
            "password": st.text(max_size=20),
            "key": st.text(max_size=30),
            "type": st.sampled_from(["IKEv2", "IPSec", "L2TP", "PPTP"]),
        }
    ),
}
# Anything the schema's field types allow.
ANY_CONNECTION_DATA = st.fixed_dictionaries(
    {
        "ocppVersion": st.sampled_from(["OCPP12", "OCPP15", "OCPP16", "OCPP20"]),
        "ocppTransport": st.sampled_from(["JSON", "SOAP"]),
        "ocppCsmsUrl": URLS,
        "messageTimeout": st.integers(-(2**31), 2**31),
        "securityProfile": st.integers(),
        "ocppInterface": st.sampled_from(INTERFACES),
    },
    optional=OPTIONAL,
)


@st.composite
def plausible_connection_data(draw: st.DrawFn) -> dict[str, Any]:
    """OCPP 2.0.1 over JSON at profile 0-3 with the matching scheme; host and path vary."""
    level = draw(st.integers(0, 3))
    scheme = "wss" if level >= 2 else "ws"
    url = f"{scheme}://{draw(HOSTS)}{draw(PATHS)}"
    data = {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": url,
        "messageTimeout": draw(st.integers(0, 3600)),
        "securityProfile": level,
        "ocppInterface": draw(st.sampled_from(INTERFACES)),
    }
    extra: dict[str, Any] = draw(st.fixed_dictionaries({}, optional=OPTIONAL))
    return data | extra


CONNECTION_DATA = st.one_of(plausible_connection_data(), ANY_CONNECTION_DATA)


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return open_station(tmp_path, csms_section(tmp_path, 0))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=CONNECTION_DATA, current=st.integers(0, 3), slot=st.sampled_from([2, 3]))
def test_b09_property_random_connection_data(
    station: Station, data: dict[str, Any], current: int, slot: int
) -> None:
    why = check_connection_data(data, current)  # never raises
    if why is None:
        level, url = data["securityProfile"], data["ocppCsmsUrl"]
        assert level in (0, 1, 2, 3)
        assert level >= current
        assert (data["ocppTransport"], data["ocppVersion"]) == ("JSON", "OCPP20")
        parts = urlsplit(url)
        assert parts.scheme == ("wss" if level >= 2 else "ws")
        assert parts.hostname
        assert (parts.username, parts.password, parts.query, parts.fragment) == (None, None, "", "")
        assert url.isprintable()
        assert not any(c.isspace() for c in url)
    else:
        assert why.reason in REASONS
        assert why.info

    # Through the dispatcher (the station is at security profile 0).
    before = station.network_profiles.get(slot), stored_profiles(station).get(slot)
    request = {"configurationSlot": slot, "connectionData": data}
    result = asyncio.run(
        station.dispatcher.call(Request("csms", "ocpp2.0.1", "SetNetworkProfile", request))
    )
    assert isinstance(result, CallResult), result
    expected = check_connection_data(data, 0)
    event("Accepted" if expected is None else f"Rejected {expected.reason}")
    if expected is None:
        assert result.payload == {"status": "Accepted"}
        assert station.network_profiles.get(slot) == data
        assert stored_profiles(station)[slot] == data
    else:
        assert result.payload == {
            "status": "Rejected",
            "statusInfo": {"reasonCode": expected.reason, "additionalInfo": expected.info},
        }
        assert (station.network_profiles.get(slot), stored_profiles(station).get(slot)) == before


async def test_a05_fr06_accepted_on_a_higher_profile_raises_the_floor_and_drops_lower_slots(
    tmp_path: Path,
) -> None:
    """A05.FR.06: after the BootNotification is Accepted on the new slot (the CSMS link calls
    `confirm`), SecurityProfile is raised and the profiles below it are removed everywhere."""
    csms = csms_section(tmp_path, 1)
    station = open_station(tmp_path, csms)
    assert await set_profile(station, 3, profile("ws://spare.example.com/ocpp", 1)) == {
        "status": "Accepted"
    }
    csms_root = trustme.CA().cert_pem.bytes().decode()
    install = {"certificateType": "CSMSRootCertificate", "certificate": csms_root}
    assert await call(station, "InstallCertificate", install) == {"status": "Accepted"}
    tls = profile(WSS_URL, 2)
    assert await set_profile(station, 2, tls) == {"status": "Accepted"}
    assert (await set_priority(station, "2,1,3"))["attributeStatus"] in (
        "Accepted",
        "RebootRequired",
    )

    station.network_profiles.confirm(1)  # no higher profile: nothing changes
    assert await get_value(station, "SecurityCtrlr", "SecurityProfile") == "1"
    assert set(stored_profiles(station)) == {1, 2, 3}

    station.network_profiles.confirm(2)
    assert await get_value(station, "SecurityCtrlr", "SecurityProfile") == "2"
    assert await get_value(station, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "2"
    assert stored_profiles(station) == {2: tls}
    assert station.network_profiles.get(1) is None
    assert station.network_profiles.priority() == [2]

    # A restart with the unchanged file keeps the raised floor (A05.FR.07: no way back via OCPP).
    station = reopen(station, tmp_path, csms)
    assert await get_value(station, "SecurityCtrlr", "SecurityProfile") == "2"
    assert stored_profiles(station) == {2: tls}
    response = await set_profile(station, 1, profile(WS_URL, 1))
    assert response["statusInfo"]["reasonCode"] == "NoSecurityDowngrade"


async def test_a_message_timeout_below_one_second_is_rejected(tmp_path: Path) -> None:
    station = make_station(tmp_path)
    payload = {
        "configurationSlot": 2,
        "connectionData": {
            "messageTimeout": 0,
            "ocppCsmsUrl": "ws://csms.example:9000/ocpp",
            "ocppInterface": "Wired0",
            "ocppTransport": "JSON",
            "ocppVersion": "OCPP20",
            "securityProfile": 0,
        },
    }
    result = await ocpp_call(station, "SetNetworkProfile", payload)
    assert result["status"] == "Rejected"
    assert result["statusInfo"]["reasonCode"] == "InvalidValue"
    assert station.store.network_profiles() == {}
