"""Local Authorization List (D01 SendLocalList, D02 GetLocalListVersion) over a real SQLite file:
every rule of the use cases, the limits, persistence, and a Hypothesis model of random updates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.rpc import CallError
from bridge.rpc.request import Request
from bridge.station.authorization import Authorization
from bridge.station.device_model import DeviceModel
from bridge.store import Store
from tests.conftest import make_station, ocpp_call


class Wall:
    """An injected wall clock (seconds since the epoch) the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def authorization(path: Path, wall: Wall | None = None) -> tuple[Authorization, DeviceModel]:
    """The block over a store file at `path` (opened again when it exists)."""
    store = Store(path)
    device_model = DeviceModel.build([1], store)
    return Authorization(store, device_model, wall or Wall()), device_model


def setv(device_model: DeviceModel, key: str, value: str) -> None:
    device_model.write([(device_model[key], "Actual", value)])


def token(value: str, kind: str = "ISO14443") -> dict[str, Any]:
    return {"idToken": value, "type": kind}


def entry(value: str, status: str | None = "Accepted", **info: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"idToken": token(value)}
    if status is not None:
        item["idTokenInfo"] = {"status": status, **info}
    return item


def send(
    auth: Authorization, version: int, update: str, items: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"versionNumber": version, "updateType": update}
    if items is not None:
        payload["localAuthorizationList"] = items
    return auth.send_local_list(Request("csms", "ocpp2.0.1", "SendLocalList", payload))


def version(auth: Authorization) -> int:
    answer = auth.get_local_list_version(Request("csms", "ocpp2.0.1", "GetLocalListVersion", {}))
    result: int = answer["versionNumber"]
    return result


def stored_list(auth: Authorization) -> dict[tuple[str, str], str]:
    rows = auth.local_list._store.execute(
        "SELECT id_token, type, id_token_info FROM local_auth_list"
    )
    return {(t, k): info for t, k, info in rows}


@pytest.fixture
def auth(tmp_path: Path) -> Authorization:
    return authorization(tmp_path / "auth.db")[0]


def test_d02_fr02_version_is_0_before_any_list(auth: Authorization) -> None:
    assert version(auth) == 0
    assert auth.local_list.entries() == 0


def test_d01_fr15_a_full_update_replaces_the_list_and_sets_its_version(
    auth: Authorization,
) -> None:
    assert send(auth, 10, "Full", [entry("A1"), entry("B2", "Blocked")]) == {"status": "Accepted"}
    assert version(auth) == 10
    assert auth.local_info(token("A1")) == {"status": "Accepted"}
    assert auth.local_info(token("B2")) == {"status": "Blocked"}
    assert send(auth, 11, "Full", [entry("C3")]) == {"status": "Accepted"}
    assert auth.local_info(token("A1")) is None
    assert auth.local_info(token("C3")) == {"status": "Accepted"}
    assert auth.local_list.entries() == 1


def test_d01_fr04_a_full_update_without_a_list_empties_it(auth: Authorization) -> None:
    send(auth, 10, "Full", [entry("A1"), entry("B2")])
    assert send(auth, 20, "Full") == {"status": "Accepted"}
    assert version(auth) == 20
    assert auth.local_list.entries() == 0
    assert auth.local_info(token("A1")) is None


def test_a_full_update_may_set_a_lower_version(auth: Authorization) -> None:
    """D01.FR.19 binds Differential updates only: a full list starts afresh."""
    send(auth, 20, "Full", [entry("A1")])
    assert send(auth, 12, "Full", [entry("B2")]) == {"status": "Accepted"}
    assert version(auth) == 12


def test_d01_fr16_a_differential_update_adds_and_replaces_entries(auth: Authorization) -> None:
    send(auth, 1, "Full", [entry("A1"), entry("B2")])
    answer = send(auth, 2, "Differential", [entry("A1", "Blocked"), entry("C3")])
    assert answer == {"status": "Accepted"}
    assert auth.local_info(token("A1")) == {"status": "Blocked"}
    assert auth.local_info(token("B2")) == {"status": "Accepted"}
    assert auth.local_info(token("C3")) == {"status": "Accepted"}
    assert version(auth) == 2


def test_d01_fr17_a_differential_entry_without_id_token_info_removes_it(
    auth: Authorization,
) -> None:
    send(auth, 1, "Full", [entry("A1"), entry("B2")])
    # Removing a token the list does not hold is no error.
    answer = send(auth, 2, "Differential", [entry("A1", None), entry("ZZ", None)])
    assert answer == {"status": "Accepted"}
    assert auth.local_info(token("A1")) is None
    assert auth.local_list.entries() == 1
    assert version(auth) == 2


def test_d01_fr05_a_differential_update_without_a_list_changes_only_the_version(
    auth: Authorization,
) -> None:
    send(auth, 1, "Full", [entry("A1")])
    before = stored_list(auth)
    assert send(auth, 7, "Differential") == {"status": "Accepted"}
    assert version(auth) == 7
    assert stored_list(auth) == before


@pytest.mark.parametrize("number", [5, 4])
def test_d01_fr19_a_differential_update_not_newer_is_a_version_mismatch(
    auth: Authorization, number: int
) -> None:
    send(auth, 5, "Full", [entry("A1")])
    before = stored_list(auth)
    answer = send(auth, number, "Differential", [entry("B2")])
    assert answer["status"] == "VersionMismatch"
    assert "version 5" in answer["statusInfo"]["additionalInfo"]
    assert version(auth) == 5
    assert stored_list(auth) == before


@pytest.mark.parametrize("update", ["Full", "Differential"])
@pytest.mark.parametrize("number", [0, -3])
def test_d01_fr18_a_version_of_0_or_less_fails(
    auth: Authorization, update: str, number: int
) -> None:
    send(auth, 3, "Full", [entry("A1")])
    answer = send(auth, number, update, [entry("B2")])
    assert answer["status"] == "Failed"
    assert answer["statusInfo"]["reasonCode"] == "InvalidValue"
    assert version(auth) == 3
    assert auth.local_info(token("B2")) is None


@pytest.mark.parametrize("update", ["Full", "Differential"])
def test_d01_fr06_a_token_twice_in_one_update_fails_and_changes_nothing(
    auth: Authorization, update: str
) -> None:
    send(auth, 3, "Full", [entry("A1")])
    before = stored_list(auth)
    # idToken is case insensitive: "b2" and "B2" are one token.
    answer = send(auth, 4, update, [entry("B2"), entry("C3"), entry("b2", "Blocked")])
    assert answer["status"] == "Failed"
    assert answer["statusInfo"]["reasonCode"] == "DuplicateIdToken"
    assert stored_list(auth) == before
    assert version(auth) == 3


def test_the_same_id_token_of_two_types_is_two_tokens(auth: Authorization) -> None:
    items = [entry("A1"), {"idToken": token("A1", "eMAID"), "idTokenInfo": {"status": "Blocked"}}]
    assert send(auth, 1, "Full", items) == {"status": "Accepted"}
    assert auth.local_info(token("A1", "eMAID")) == {"status": "Blocked"}
    assert auth.local_info(token("a1")) == {"status": "Accepted"}
    assert auth.local_info(token("A1", "KeyCode")) is None


def test_a_full_update_entry_without_id_token_info_fails_and_changes_nothing(
    auth: Authorization,
) -> None:
    send(auth, 3, "Full", [entry("A1")])
    before = stored_list(auth)
    answer = send(auth, 4, "Full", [entry("B2"), entry("C3", None)])
    assert answer["status"] == "Failed"
    assert answer["statusInfo"]["reasonCode"] == "MissingIdTokenInfo"
    assert stored_list(auth) == before
    assert version(auth) == 3


def test_d02_fr03_a_disabled_list_reports_0_refuses_updates_and_is_not_consulted(
    tmp_path: Path,
) -> None:
    auth, dm = authorization(tmp_path / "auth.db")
    send(auth, 9, "Full", [entry("A1")])
    setv(dm, "LocalAuthListCtrlr.Enabled", "false")
    assert version(auth) == 0
    answer = send(auth, 10, "Full", [entry("B2")])
    assert answer["status"] == "Failed"
    assert answer["statusInfo"]["reasonCode"] == "NotEnabled"
    assert auth.local_info(token("A1")) is None
    # Enabled again, the stored list is back as it was.
    setv(dm, "LocalAuthListCtrlr.Enabled", "true")
    assert version(auth) == 9
    assert auth.local_info(token("A1")) == {"status": "Accepted"}


def test_d01_fr12_a_list_over_the_entries_max_limit_fails_and_changes_nothing(
    auth: Authorization,
) -> None:
    auth.local_list.max_entries = 2
    assert send(auth, 1, "Full", [entry("A1"), entry("B2")]) == {"status": "Accepted"}
    before = stored_list(auth)
    for answer in (
        send(auth, 2, "Full", [entry("A1"), entry("B2"), entry("C3")]),
        send(auth, 2, "Differential", [entry("C3")]),
    ):
        assert answer["status"] == "Failed"
        assert answer["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert stored_list(auth) == before
    assert version(auth) == 1
    # Replacing and removing in the same update fits.
    answer = send(auth, 2, "Differential", [entry("A1", None), entry("C3")])
    assert answer == {"status": "Accepted"}


def test_a_list_over_the_storage_max_limit_fails_and_changes_nothing(
    auth: Authorization,
) -> None:
    send(auth, 1, "Full", [entry("A1")])
    auth.local_list.max_bytes = auth.local_list.size() + 100
    big = {"format": "UTF8", "content": "x" * 200}
    answer = send(auth, 2, "Differential", [entry("B2", personalMessage=big)])
    assert answer["status"] == "Failed"
    assert answer["statusInfo"]["reasonCode"] == "OutOfStorage"
    assert auth.local_info(token("B2")) is None
    assert send(auth, 2, "Differential", [entry("B2")]) == {"status": "Accepted"}


def test_the_list_and_its_version_survive_a_restart(tmp_path: Path) -> None:
    auth, _ = authorization(tmp_path / "auth.db")
    send(auth, 42, "Full", [entry("A1", "Accepted", groupIdToken=token("G", "Central"))])
    auth.local_list._store.close()
    again, _ = authorization(tmp_path / "auth.db")
    assert version(again) == 42
    assert again.local_info(token("A1")) == {
        "status": "Accepted",
        "groupIdToken": {"idToken": "G", "type": "Central"},
    }


# --- through the station's dispatcher: schema, limits, device-model variables


async def test_d01_fr11_more_entries_than_items_per_message_is_a_call_error(
    tmp_path: Path,
) -> None:
    station = make_station(tmp_path)
    items = [entry(f"T{i}") for i in range(251)]
    error = await ocpp_call(
        station,
        "SendLocalList",
        {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": items},
    )
    assert isinstance(error, CallError)
    assert error.code == "OccurrenceConstraintViolation"
    assert "LocalAuthListCtrlr.ItemsPerMessage" in error.description
    assert station.authorization.local_list.entries() == 0


async def test_d01_fr11_more_bytes_than_bytes_per_message_is_a_format_violation(
    tmp_path: Path,
) -> None:
    station = make_station(tmp_path)
    message = {"format": "UTF8", "content": "m" * 512}
    items = [entry(f"T{i}", personalMessage=message) for i in range(200)]
    error = await ocpp_call(
        station,
        "SendLocalList",
        {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": items},
    )
    assert isinstance(error, CallError)
    assert error.code == "FormatViolation"
    assert "LocalAuthListCtrlr.BytesPerMessage" in error.description


async def test_entries_and_storage_report_the_list_through_get_variables(tmp_path: Path) -> None:
    station = make_station(tmp_path)
    payload = {
        "versionNumber": 3,
        "updateType": "Full",
        "localAuthorizationList": [entry("A1"), entry("B2")],
    }
    assert await ocpp_call(station, "SendLocalList", payload) == {"status": "Accepted"}
    asked = [
        {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": name}}
        for name in ("Entries", "Storage", "Available")
    ]
    result = await ocpp_call(station, "GetVariables", {"getVariableData": asked})
    values = [r["attributeValue"] for r in result["getVariableResult"]]
    assert values[0] == "2"
    assert int(values[1]) == station.authorization.local_list.size() > 0
    assert values[2] == "true"
    assert await ocpp_call(station, "GetLocalListVersion", {}) == {"versionNumber": 3}


async def test_a_send_local_list_that_fails_its_schema_changes_nothing(tmp_path: Path) -> None:
    station = make_station(tmp_path)
    payload = {"versionNumber": 3, "updateType": "Full", "localAuthorizationList": []}
    error = await ocpp_call(station, "SendLocalList", payload)  # minItems 1
    assert isinstance(error, CallError)
    assert await ocpp_call(station, "GetLocalListVersion", {}) == {"versionNumber": 0}


# --- a model of random updates

TOKENS = st.sampled_from(["a1", "A1", "b2", "c3"])
KINDS = st.sampled_from(["ISO14443", "eMAID"])
STATUSES = st.sampled_from(["Accepted", "Blocked", None])
ITEMS = st.lists(
    st.builds(
        lambda value, kind, status: {
            "idToken": token(value, kind),
            **({"idTokenInfo": {"status": status}} if status else {}),
        },
        TOKENS,
        KINDS,
        STATUSES,
    ),
    max_size=4,
)
UPDATES = st.tuples(
    st.sampled_from(["Full", "Differential"]), st.integers(-1, 8), st.none() | ITEMS
)
OPERATIONS = st.lists(
    st.one_of(
        UPDATES.map(lambda u: ("send", u)),
        st.tuples(TOKENS, KINDS, STATUSES).map(lambda t: ("remember", t)),
        st.just(("clear", None)),
    ),
    max_size=10,
)


def expected_status(
    model: dict[tuple[str, str], Any], current: int, update: str, number: int, items: list[Any]
) -> str:
    keys = [(i["idToken"]["idToken"].casefold(), i["idToken"]["type"]) for i in items]
    if number <= 0 or len(set(keys)) != len(keys):
        return "Failed"
    if update == "Full":
        return "Failed" if any("idTokenInfo" not in i for i in items) else "Accepted"
    return "VersionMismatch" if number <= current else "Accepted"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_random_updates_keep_the_stored_list_equal_to_a_simple_model(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, Any]]
) -> None:
    auth, _ = authorization(tmp_path_factory.mktemp("model") / "auth.db")
    model: dict[tuple[str, str], Any] = {}
    current = 0
    for kind, argument in operations:
        if kind == "send":
            update, number, items = argument
            status = expected_status(model, current, update, number, items or [])
            answer = send(auth, number, update, items)
            assert answer["status"] == status, (argument, answer)
            if status == "Accepted":
                current = number  # the version changes on success only
                if update == "Full":
                    model.clear()
                for item in items or []:
                    key = (item["idToken"]["idToken"].casefold(), item["idToken"]["type"])
                    if "idTokenInfo" in item:
                        model[key] = item["idTokenInfo"]
                    else:
                        model.pop(key, None)
        elif kind == "remember":
            value, id_type, status = argument
            auth.remember(token(value, id_type), {"status": status or "Invalid"})
        else:
            auth.clear_cache(Request("csms", "ocpp2.0.1", "ClearCache", {}))
        assert version(auth) == current
        assert {key: json.loads(info) for key, info in stored_list(auth).items()} == model
        # The list has priority: none of its tokens is ever in the cache.
        cached = set(auth.cache._store.execute("SELECT id_token, type FROM auth_cache"))
        assert cached.isdisjoint(model)
    auth.local_list._store.close()
