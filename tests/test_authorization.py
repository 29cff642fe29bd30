"""Authorization Cache (C10, C11) and the decisions the transaction code asks for (C09, C12-C15),
over a real SQLite file with an injected wall clock; and D01/D02/C11 end to end from a real
WebSocket CSMS through a running bridge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.demo_csms import DemoCsms
from bridge.rpc.request import Request
from bridge.station.authorization import Authorization, Known
from bridge.station.device_model import DeviceModel
from tests.conftest import Broker, Oem
from tests.test_local_list import Wall, authorization, entry, send, setv, token, version
from tests.test_oem_link import accepted, bridge_with

DAY = 86400


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def block(tmp_path: Path, wall: Wall) -> tuple[Authorization, DeviceModel]:
    return authorization(tmp_path / "auth.db", wall)


@pytest.fixture
def auth(block: tuple[Authorization, DeviceModel]) -> Authorization:
    return block[0]


@pytest.fixture
def dm(block: tuple[Authorization, DeviceModel]) -> DeviceModel:
    return block[1]


def clear_cache(auth: Authorization) -> dict[str, Any]:
    return auth.clear_cache(Request("csms", "ocpp2.0.1", "ClearCache", {}))


def cache_keys(auth: Authorization) -> set[tuple[str, str]]:
    return set(auth.cache._store.execute("SELECT id_token, type FROM auth_cache"))


# --- C10: what the CSMS said is cached


def test_c10_fr01_every_status_the_csms_gives_is_cached(auth: Authorization) -> None:
    auth.remember(token("A1"), {"status": "Accepted", "chargingPriority": 3})
    auth.remember(token("B2"), {"status": "Blocked"})
    assert auth.local_info(token("A1")) == {"status": "Accepted", "chargingPriority": 3}
    assert auth.local_info(token("b2")) == {"status": "Blocked"}  # case insensitive
    assert auth.local_info(token("C3")) is None


def test_c10_a_new_answer_replaces_the_cached_one(auth: Authorization) -> None:
    auth.remember(token("A1"), {"status": "Accepted"})
    auth.remember(token("a1"), {"status": "Blocked"})
    assert auth.local_info(token("A1")) == {"status": "Blocked"}
    assert auth.cache.entries() == 1


def test_nothing_is_cached_or_read_while_the_cache_is_disabled(
    auth: Authorization, dm: DeviceModel
) -> None:
    auth.remember(token("A1"), {"status": "Accepted"})
    setv(dm, "AuthCacheCtrlr.Enabled", "false")
    auth.remember(token("B2"), {"status": "Accepted"})
    assert auth.local_info(token("A1")) is None
    assert cache_keys(auth) == {("a1", "ISO14443")}


@pytest.mark.parametrize("kind", ["Central", "NoAuthorization"])
def test_c02_fr03_c03_fr02_central_and_no_authorization_tokens_are_never_cached(
    auth: Authorization, kind: str
) -> None:
    auth.remember(token("X", kind), {"status": "Accepted"})
    assert auth.cache.entries() == 0


def test_a_token_of_the_local_list_is_never_cached_and_the_list_has_priority(
    auth: Authorization,
) -> None:
    send(auth, 1, "Full", [entry("A1", "Blocked")])
    auth.remember(token("A1"), {"status": "Accepted"})
    assert auth.cache.entries() == 0
    assert auth.known(token("A1")) == Known({"status": "Blocked"}, "LocalList")


def test_a_token_the_local_list_takes_over_leaves_the_cache(auth: Authorization) -> None:
    auth.remember(token("A1"), {"status": "Accepted"})
    auth.remember(token("B2"), {"status": "Accepted"})
    send(auth, 1, "Full", [entry("a1", "Blocked")])
    assert cache_keys(auth) == {("b2", "ISO14443")}


def test_with_the_list_disabled_the_cache_answers_and_learns(
    auth: Authorization, dm: DeviceModel
) -> None:
    send(auth, 1, "Full", [entry("A1", "Blocked")])
    setv(dm, "LocalAuthListCtrlr.Enabled", "false")
    auth.remember(token("A1"), {"status": "Accepted"})
    assert auth.known(token("A1")) == Known({"status": "Accepted"}, "Cache")


# --- C10.FR.08: expiry


def test_c10_fr08_an_entry_expires_life_time_seconds_after_its_last_use(
    auth: Authorization, dm: DeviceModel, wall: Wall
) -> None:
    setv(dm, "AuthCacheCtrlr.LifeTime", "100")
    auth.remember(token("A1"), {"status": "Accepted"})
    wall.now += 99
    assert auth.local_info(token("A1")) == {"status": "Accepted"}  # a use: counts from here
    wall.now += 99
    assert auth.local_info(token("A1")) == {"status": "Accepted"}
    wall.now += 100
    assert auth.local_info(token("A1")) is None
    assert auth.cache.entries() == 0  # an expired entry leaves the cache: the token is unknown
    assert dm.value("AuthCacheCtrlr.Storage") == "0"


def test_a_cache_expiry_date_time_rules_instead_of_life_time(
    auth: Authorization, dm: DeviceModel, wall: Wall
) -> None:
    setv(dm, "AuthCacheCtrlr.LifeTime", "10")
    auth.remember(
        token("A1"), {"status": "Accepted", "cacheExpiryDateTime": "2027-01-15T08:00:30Z"}
    )
    auth.remember(
        token("B2"), {"status": "Accepted", "cacheExpiryDateTime": "2030-01-01T00:00:00Z"}
    )
    wall.now = 1_800_000_029.0  # 2027-01-15T08:00:29Z
    assert auth.local_info(token("A1")) is not None
    wall.now += 1
    assert auth.local_info(token("A1")) is None
    wall.now += DAY  # far beyond LifeTime, before its cacheExpiryDateTime
    assert auth.local_info(token("B2")) is not None


def test_same_group_and_peeks_do_not_count_as_a_use(
    auth: Authorization, dm: DeviceModel, wall: Wall
) -> None:
    setv(dm, "AuthCacheCtrlr.LifeTime", "100")
    auth.remember(token("A1"), {"status": "Accepted"})
    wall.now += 60
    auth.same_group(token("A1"), token("Z9"))
    wall.now += 60
    assert auth.local_info(token("A1")) is None


# --- C10.FR.07: a bounded cache


def fill(auth: Authorization, wall: Wall, tokens: dict[str, str]) -> None:
    for value, status in tokens.items():
        wall.now += 1
        auth.remember(token(value), {"status": status})


def test_c10_fr07_a_full_cache_drops_entries_not_valid_first_then_the_least_recently_used(
    auth: Authorization, dm: DeviceModel, wall: Wall
) -> None:
    fill(auth, wall, {"A1": "Accepted", "C3": "Accepted", "B2": "Blocked"})
    # Room for these three: B2's entry is a byte shorter ("Blocked") than an Accepted one.
    auth.cache.capacity = auth.cache.size() + 1
    wall.now += 1
    auth.local_info(token("A1"))  # A1 used last, B2 stored after C3
    fill(auth, wall, {"D4": "Accepted"})
    assert cache_keys(auth) == {("a1", "ISO14443"), ("c3", "ISO14443"), ("d4", "ISO14443")}
    fill(auth, wall, {"E5": "Accepted"})
    assert cache_keys(auth) == {("a1", "ISO14443"), ("d4", "ISO14443"), ("e5", "ISO14443")}
    assert int(dm.value("AuthCacheCtrlr.Storage") or 0) <= auth.cache.capacity


def test_an_expired_entry_is_dropped_before_a_valid_one(auth: Authorization, wall: Wall) -> None:
    fill(auth, wall, {"A1": "Accepted"})
    wall.now += 1
    auth.remember(
        token("B2"), {"status": "Accepted", "cacheExpiryDateTime": "2027-01-15T08:00:05Z"}
    )
    auth.cache.capacity = auth.cache.size()
    wall.now += 10  # B2 expired, though used after A1
    fill(auth, wall, {"C3": "Accepted"})
    assert cache_keys(auth) == {("a1", "ISO14443"), ("c3", "ISO14443")}


def test_the_fifo_policy_drops_the_oldest_stored_entry_even_when_used(
    auth: Authorization, dm: DeviceModel, wall: Wall
) -> None:
    setv(dm, "AuthCacheCtrlr.Policy", "FIFO")
    fill(auth, wall, {"A1": "Accepted", "B2": "Accepted"})
    auth.cache.capacity = auth.cache.size()
    wall.now += 1
    auth.local_info(token("A1"))  # the most recently used: LRU would keep it
    fill(auth, wall, {"C3": "Accepted"})
    assert cache_keys(auth) == {("b2", "ISO14443"), ("c3", "ISO14443")}


def test_storage_reports_the_bytes_the_cache_takes(auth: Authorization, dm: DeviceModel) -> None:
    assert dm.value("AuthCacheCtrlr.Storage") == "0"
    auth.remember(token("A1"), {"status": "Accepted"})
    used = int(dm.value("AuthCacheCtrlr.Storage") or 0)
    assert used == len("a1") + len("ISO14443") + len('{"status":"Accepted"}') + 16
    limit = dm["AuthCacheCtrlr.Storage"].definition.max_limit
    assert limit is not None
    assert auth.cache.capacity == int(limit)


def test_the_cache_survives_a_restart(tmp_path: Path, wall: Wall) -> None:
    auth, _ = authorization(tmp_path / "auth.db", wall)
    auth.remember(token("A1"), {"status": "Accepted", "language1": "nl"})
    auth.cache._store.close()
    again, _ = authorization(tmp_path / "auth.db", wall)
    assert again.local_info(token("A1")) == {"status": "Accepted", "language1": "nl"}


# --- C11: ClearCache


def test_c11_fr01_clear_cache_empties_the_cache_and_keeps_the_local_list(
    auth: Authorization,
) -> None:
    send(auth, 4, "Full", [entry("L1")])
    auth.remember(token("A1"), {"status": "Accepted"})
    assert clear_cache(auth) == {"status": "Accepted"}
    assert auth.cache.entries() == 0
    assert auth.local_info(token("L1")) == {"status": "Accepted"}
    assert version(auth) == 4


def test_c11_fr04_clear_cache_is_rejected_while_the_cache_is_disabled(
    auth: Authorization, dm: DeviceModel
) -> None:
    auth.remember(token("A1"), {"status": "Accepted"})
    setv(dm, "AuthCacheCtrlr.Enabled", "false")
    answer = clear_cache(auth)
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "NotEnabled"
    assert auth.cache.entries() == 1


# --- offline (C12, C13, C15) and online (C10.FR.03, C12.FR.05, C14.FR.03) decisions


@pytest.mark.parametrize("unknown_allowed", [True, False])
def test_c13_offline_the_local_list_decides_whatever_offline_tx_for_unknown_id_says(
    auth: Authorization, dm: DeviceModel, unknown_allowed: bool
) -> None:
    setv(dm, "AuthCtrlr.OfflineTxForUnknownIdEnabled", str(unknown_allowed).lower())
    send(auth, 1, "Full", [entry("OK"), entry("NO", "Blocked")])
    assert auth.offline_info(token("OK")) == {"status": "Accepted"}  # C13.FR.02/03
    assert auth.offline_info(token("NO")) == {"status": "Blocked"}  # C13.FR.01, C13.FR.04


def test_offline_an_accepted_cache_entry_is_used_and_a_blocked_one_refuses(
    auth: Authorization, dm: DeviceModel
) -> None:
    auth.remember(token("OK"), {"status": "Accepted", "evseId": [1]})
    auth.remember(token("NO"), {"status": "Invalid"})
    assert auth.offline_info(token("OK")) == {"status": "Accepted", "evseId": [1]}
    assert auth.offline_info(token("NO")) == {"status": "Invalid"}


def test_c15_offline_an_unknown_token_is_accepted_only_with_offline_tx_for_unknown_id(
    auth: Authorization, dm: DeviceModel
) -> None:
    assert auth.offline_info(token("NEW")) == {"status": "Accepted"}
    setv(dm, "AuthCtrlr.OfflineTxForUnknownIdEnabled", "false")
    assert auth.offline_info(token("NEW")) is None


def test_without_local_authorize_offline_a_known_token_counts_as_unknown_offline(
    auth: Authorization, dm: DeviceModel
) -> None:
    setv(dm, "AuthCtrlr.LocalAuthorizeOffline", "false")
    send(auth, 1, "Full", [entry("OK"), entry("NO", "Blocked")])
    assert auth.offline_info(token("OK")) == {"status": "Accepted"}  # by OfflineTxForUnknownId
    assert auth.offline_info(token("NO")) == {"status": "Blocked"}  # still refused
    setv(dm, "AuthCtrlr.OfflineTxForUnknownIdEnabled", "false")
    assert auth.offline_info(token("OK")) is None


def test_online_a_known_token_not_accepted_is_asked_for_unless_disable_post_authorize(
    auth: Authorization, dm: DeviceModel
) -> None:
    send(auth, 1, "Full", [entry("L-OK"), entry("L-NO", "Blocked")])
    auth.remember(token("C-NO"), {"status": "Expired"})
    known = {value: auth.known(token(value)) for value in ("L-OK", "L-NO", "C-NO")}
    assert all(k is not None for k in known.values())
    assert [auth.post_authorize(k) for k in known.values() if k] == [False, True, True]
    setv(dm, "AuthCacheCtrlr.DisablePostAuthorize", "true")  # C10.FR.03, C12.FR.05
    assert [auth.post_authorize(k) for k in known.values() if k] == [False, True, False]
    setv(dm, "LocalAuthListCtrlr.DisablePostAuthorize", "true")  # C14.FR.03
    assert [auth.post_authorize(k) for k in known.values() if k] == [False, False, False]


# --- C09: group tokens


def test_c09_tokens_belong_together_when_equal_or_of_one_known_group(
    auth: Authorization,
) -> None:
    group = token("FLEET-7", "Central")
    send(auth, 1, "Full", [entry("A1", groupIdToken=group), entry("L2")])
    auth.remember(token("B2"), {"status": "Accepted", "groupIdToken": token("fleet-7", "Central")})
    auth.remember(token("C3"), {"status": "Accepted", "groupIdToken": token("FLEET-8", "Central")})
    assert auth.same_group(token("X"), token("x"))
    assert auth.same_group(token("A1"), token("B2"))
    assert not auth.same_group(token("A1"), token("C3"))
    assert not auth.same_group(token("A1"), token("L2"))  # L2 has no group
    assert not auth.same_group(token("U1"), token("U2"))  # unknown tokens


# --- end to end: a real CSMS through a running bridge


async def test_d01_send_local_list_full_then_d02_get_version_then_c11_clear_cache(
    tmp_path: Path, broker: Broker, oem: Oem
) -> None:
    async with DemoCsms() as csms, bridge_with(tmp_path, broker, csms.url) as bridge:
        await accepted(bridge)
        assert await csms.call("CP001", "GetLocalListVersion", {}) == {"versionNumber": 0}
        answer = await csms.call(
            "CP001",
            "SendLocalList",
            {
                "versionNumber": 5,
                "updateType": "Full",
                "localAuthorizationList": [entry("04A1B2C3"), entry("04FFFF", "Blocked")],
            },
        )
        assert answer == {"status": "Accepted"}
        assert await csms.call("CP001", "GetLocalListVersion", {}) == {"versionNumber": 5}
        answer = await csms.call(
            "CP001", "SendLocalList", {"versionNumber": 5, "updateType": "Differential"}
        )
        assert answer["status"] == "VersionMismatch"
        # The OEM's ocpp_message reaches the same handler.
        data = await oem.ocpp("GetLocalListVersion", {})
        assert data["payload"] == {"versionNumber": 5}
        assert bridge.station.authorization.local_info(token("04a1b2c3")) == {"status": "Accepted"}

        bridge.station.authorization.remember(token("CACHED"), {"status": "Accepted"})
        assert await csms.call("CP001", "ClearCache", {}) == {"status": "Accepted"}
        assert bridge.station.authorization.cache.entries() == 0
        disable = {
            "component": {"name": "AuthCacheCtrlr"},
            "variable": {"name": "Enabled"},
            "attributeValue": "false",
        }
        result = await csms.call("CP001", "SetVariables", {"setVariableData": [disable]})
        assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
        answer = await csms.call("CP001", "ClearCache", {})
        assert answer["status"] == "Rejected"
        assert csms.schema_errors == []
