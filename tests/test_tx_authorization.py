"""C01-C15 end to end: the OEM's `authorization` request decided by the bridge (Authorize to the
CSMS, the Authorization Cache, the Local Authorization List, the offline rules) and what it does
to the transaction, through the real bridge, Mosquitto and a WebSocket CSMS.

Which C use cases apply to this station (its tokens come from the OEM's reader as the session
API's token_type):
- C01 RFID (ISO14443 / ISO15693), C02 start button (no_authorization), C04 PIN code (key_code:
  KeyCode), C06 local id (local: Local), eMAID over ISO 15118 EIM (e_maid: eMAID, the C08-style
  token) and Plug & Charge done by the OEM's own stack (an `authorization` update): Authorize
  like C01 and the same transaction rules.
- C03 (credit/debit card terminal) has no token type in the session API: not applicable.
- C05 (a CSMS initiated transaction, RequestStartTransaction) and C07 (contract certificates
  checked by the CSMS) are not implemented by this bridge: not covered here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker
from tests.tx_support import (
    BEGIN,
    END,
    TOKEN,
    Event,
    check_events,
    id_token,
    settle,
    shape,
    station,
)

TAG = id_token()
GROUP = {"idToken": "FLEET-7", "type": "Central"}
CACHE_OFF = {"AuthCacheCtrlr.Enabled": "false"}


def authorizes(csms: Any) -> list[Any]:
    return [p["idToken"] for p in csms.payloads("Authorize")]


# --- C01 / C04 / C06 / eMAID: online authorization by the CSMS


@pytest.mark.parametrize(
    ("token_type", "ocpp_type", "value"),
    [
        ("ISO14443", "ISO14443", "04A1B2C3D4E5F6"),  # C01 RFID
        ("ISO15693", "ISO15693", "E004010012345678"),
        ("key_code", "KeyCode", "1234"),  # C04 PIN code
        ("local", "Local", "LOCAL-42"),  # C06 local id type
        ("e_maid", "eMAID", "NL-TNM-C00122045-K"),  # ISO 15118 EIM (eMAID)
        ("mac_address", "MacAddress", "00:1A:2B:3C:4D:5E"),
    ],
)
async def test_c01_authorize_online_then_the_transaction_carries_the_token(
    tmp_path: Path, broker: Broker, token_type: str, ocpp_type: str, value: str
) -> None:
    async with station(tmp_path, broker, CACHE_OFF) as s:
        await s.oem.plug()
        assert await s.oem.present(value, token_type) == "accepted"
        await s.csms.wait_events(2)
        await settle()
    token = {"idToken": value, "type": ocpp_type}
    # C01.FR.01: AuthorizeRequest with the idToken only (no certificate data for these types).
    assert s.csms.payloads("Authorize") == [{"idToken": token}]
    check_events(
        s.csms.events(),
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=token),
        ],
    )


@pytest.mark.parametrize("status", ["Invalid", "Blocked", "Expired", "Unknown", "NoCredit"])
async def test_c01_a_token_the_csms_refuses_is_rejected_and_changes_no_transaction(
    tmp_path: Path, broker: Broker, status: str
) -> None:
    async with station(tmp_path, broker, CACHE_OFF) as s:
        s.csms.tokens[TOKEN] = {"status": status}
        await s.oem.plug()
        assert await s.oem.present() == "rejected"
        await s.csms.wait_events(1)
        await settle()
        # Not authorized: nothing to charge; the EV unplugged ends the transaction.
        await s.oem.unplug()
        await s.csms.wait_ended()
    check_events(
        s.csms.events(),
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event(
                "Ended",
                "EVCommunicationLost",
                1,
                charging_state="Idle",
                stopped_reason="EVDisconnected",
                meter=(END,),
            ),
        ],
    )
    assert s.oem.named("authorization") == []


async def test_tc_e_10_start_point_authorized_starts_on_the_accepted_token(
    tmp_path: Path, broker: Broker
) -> None:
    points = {**CACHE_OFF, "TxCtrlr.TxStartPoint": "Authorized"}
    async with station(tmp_path, broker, points) as s:
        await s.oem.plug()
        await settle()
        assert s.csms.events() == []
        assert await s.oem.present() == "accepted"
        await s.csms.wait_events(1)
    check_events(
        s.csms.events(),
        [
            Event(
                "Started",
                "Authorized",
                0,
                charging_state="EVConnected",
                id_token=TAG,
                meter=(BEGIN,),
            )
        ],
    )


async def test_plug_and_charge_by_the_oem_counts_as_authorized(
    tmp_path: Path, broker: Broker
) -> None:
    """An `authorization` update: the OEM's ISO 15118 stack authorized the contract itself;
    no Authorize, and TxStartPoint Authorized starts the transaction with that token."""
    points = {"TxCtrlr.TxStartPoint": "Authorized"}
    async with station(tmp_path, broker, points) as s:
        await s.oem.plug()
        await s.oem.update(
            "authorization",
            {
                "evse_id": "1",
                "id_token": "NL-TNM-C00122045-K",
                "token_type": "e_maid",
                "status": "accepted",
            },
        )
        await s.csms.wait_events(1)
        await settle()
    assert s.csms.payloads("Authorize") == []
    token = {"idToken": "NL-TNM-C00122045-K", "type": "eMAID"}
    check_events(
        s.csms.events(),
        [
            Event(
                "Started",
                "Authorized",
                0,
                charging_state="EVConnected",
                id_token=token,
                meter=(BEGIN,),
            )
        ],
    )


# --- C02: a start button (free charging)


async def test_c02_no_authorization_is_accepted_at_once_and_never_cached(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        await s.oem.plug()
        assert await s.oem.present(token_type="no_authorization") == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(4)
        # The button again stops it (the same NoAuthorization token).
        assert await s.oem.present(token_type="no_authorization") == "accepted"
        await s.csms.wait_ended()
        await settle()
        assert s.bridge is not None
        assert s.bridge.station.authorization.cache.size() == 0  # C02.FR.03
    assert s.csms.payloads("Authorize") == []
    free = {"idToken": "", "type": "NoAuthorization"}
    check_events(
        s.csms.events(),
        [
            Event("Started", "CablePluggedIn", 0, charging_state="EVConnected", meter=(BEGIN,)),
            Event("Updated", "Authorized", 1, id_token=free),
            Event("Updated", "ChargingStateChanged", 2, charging_state="SuspendedEVSE"),
            Event("Updated", "ChargingStateChanged", 3, charging_state="Charging"),
            Event(
                "Ended", "StopAuthorized", 4, stopped_reason="Local", id_token=free, meter=(END,)
            ),
        ],
    )


async def test_auth_ctrlr_disabled_charges_without_asking(tmp_path: Path, broker: Broker) -> None:
    async with station(tmp_path, broker, {"AuthCtrlr.Enabled": "false"}) as s:
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.csms.wait_events(2)
    assert s.csms.payloads("Authorize") == []


# --- C09: a token of the same group stops it


async def test_c09_stop_by_group_id(tmp_path: Path, broker: Broker) -> None:
    async with station(tmp_path, broker, CACHE_OFF) as s:
        s.csms.tokens[TOKEN] = {"status": "Accepted", "groupIdToken": GROUP}
        s.csms.tokens["TAG-SPOUSE"] = {"status": "Accepted", "groupIdToken": GROUP}
        s.csms.tokens["TAG-STRANGER"] = {"status": "Accepted"}
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.oem.charge()
        await s.csms.wait_events(4)
        assert await s.oem.present("TAG-STRANGER") == "rejected"  # no group: no stop
        await settle()
        assert len(s.csms.events()) == 4
        assert await s.oem.present("TAG-SPOUSE") == "accepted"  # C09: same groupIdToken
        await s.csms.wait_ended()
        await s.oem.wait_request("stop_charging")
    spouse = id_token("TAG-SPOUSE")
    assert authorizes(s.csms) == [TAG, id_token("TAG-STRANGER"), spouse]
    ended = s.csms.events()[-1]
    # E07.FR.02: the token that ended the authorization.
    assert shape(ended) == Event(
        "Ended", "StopAuthorized", 4, stopped_reason="Local", id_token=spouse, meter=(END,)
    )


# --- C10 / C12: the Authorization Cache


async def test_c12_a_cached_accepted_token_starts_without_authorize(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        assert await s.oem.present() == "accepted"  # C10.FR.01: the answer is cached
        assert await s.oem.present() == "accepted"  # the same token, another time: cached
        assert authorizes(s.csms) == [TAG]  # C12.FR.02: LocalPreAuthorize, no second Authorize


async def test_c10_fr05_id_token_info_in_a_transaction_event_response_updates_the_cache(
    tmp_path: Path, broker: Broker
) -> None:
    """TC_C_16-like: the cache says Accepted, the CSMS's TransactionEventResponse says Blocked:
    StopTxOnInvalidId ends the transaction, and the cache learns Blocked: with
    DisablePostAuthorize the next presentation is refused without asking."""
    points = {"AuthCacheCtrlr.DisablePostAuthorize": "true", "TxCtrlr.TxStartPoint": "EVConnected"}
    async with station(tmp_path, broker, points) as s:
        assert await s.oem.present() == "accepted"  # cached Accepted
        s.csms.tx_tokens[TOKEN] = {"status": "Blocked"}
        await s.oem.plug()
        await s.csms.wait_ended()
        await s.oem.unplug()
        assert await s.oem.present() == "rejected"  # the cache says Blocked now
        assert authorizes(s.csms) == [TAG]
    check_events(
        s.csms.events(),
        [
            Event(
                "Started",
                "CablePluggedIn",
                0,
                charging_state="EVConnected",
                id_token=TAG,
                meter=(BEGIN,),
            ),
            Event("Ended", "Deauthorized", 1, stopped_reason="DeAuthorized", meter=(END,)),
        ],
    )


async def test_c12_fr05_a_cached_token_not_accepted_is_asked_for_again_online(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        s.csms.tokens[TOKEN] = {"status": "Blocked"}
        assert await s.oem.present() == "rejected"  # cached Blocked
        s.csms.tokens[TOKEN] = {"status": "Accepted"}  # unblocked at the CSMS
        assert await s.oem.present() == "accepted"  # asked again (DisablePostAuthorize false)
        assert authorizes(s.csms) == [TAG, TAG]


# --- C14: the Local Authorization List online


async def send_local_list(s: Any, entries: dict[str, dict[str, Any]]) -> None:
    items = [{"idToken": id_token(value), "idTokenInfo": info} for value, info in entries.items()]
    result = await s.csms.call(
        "CP001",
        "SendLocalList",
        {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": items},
    )
    assert result == {"status": "Accepted"}


async def test_c14_an_accepted_token_of_the_local_list_starts_without_authorize(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        await send_local_list(s, {TOKEN: {"status": "Accepted"}})
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.csms.wait_events(2)
    assert authorizes(s.csms) == []  # C14.FR.02
    assert s.csms.events()[1]["idToken"] == TAG


@pytest.mark.parametrize(("disable", "answer"), [("false", "accepted"), ("true", "rejected")])
async def test_c14_fr03_a_list_entry_not_accepted_is_asked_for_unless_disable_post_authorize(
    tmp_path: Path, broker: Broker, disable: str, answer: str
) -> None:
    points = {"LocalAuthListCtrlr.DisablePostAuthorize": disable}
    async with station(tmp_path, broker, points) as s:
        await send_local_list(s, {TOKEN: {"status": "Expired"}})
        assert await s.oem.present() == answer
    assert authorizes(s.csms) == ([TAG] if disable == "false" else [])


async def test_c09_a_group_of_the_local_list_stops_without_asking_the_csms(
    tmp_path: Path, broker: Broker
) -> None:
    async with station(tmp_path, broker) as s:
        info = {"status": "Accepted", "groupIdToken": GROUP}
        await send_local_list(s, {TOKEN: info, "TAG-SPOUSE": info})
        await s.oem.plug()
        assert await s.oem.present() == "accepted"
        await s.csms.wait_events(2)
        assert await s.oem.present("TAG-SPOUSE") == "accepted"
        (ended,) = await s.csms.wait_ended()
    assert authorizes(s.csms) == []  # C14.FR.02 for both
    assert ended["idToken"] == id_token("TAG-SPOUSE")
    assert ended["triggerReason"] == "StopAuthorized"
