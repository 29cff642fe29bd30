"""Connectivity as station policy (B10, A01, A05, OCPP-J 5.3), without sockets: targets,
back-off, fail-over, reconnecting for a new password, the OEM's set_ocpp_network_connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.backoff import Backoff, Parameters
from bridge.config import load_settings
from bridge.station import Station
from bridge.station.connectivity import NoTarget, Target
from bridge.station.effects import Reconnect
from bridge.store import Store
from tests.conftest import write_config

PASSWORD = "Pa55word-for-CP001"


def station(tmp_path: Path, csms: str, preload: str = "") -> Station:
    extra = f"[device_model]\n{preload}" if preload else ""
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_config(tmp_path / "bridge.toml", None, csms=csms, extra=extra))
    return Station(settings, Store(":memory:"))


def target(s: Station) -> Target:
    found = s.connectivity.next_target()
    assert isinstance(found, Target)
    return found


def set_password(s: Station, value: str) -> None:
    dm = s.device_model
    dm.write([(dm["SecurityCtrlr.BasicAuthPassword"], "Actual", value)])


def test_the_target_carries_url_identity_and_basic_auth(tmp_path: Path) -> None:
    s = station(
        tmp_path, f'url = "ws://csms.example/ocpp"\nsecurity_profile = 1\npassword = "{PASSWORD}"'
    )
    t = target(s)
    assert t.url == "ws://csms.example/ocpp/CP001"
    assert t.security_profile == 1
    assert t.authorization == "Basic Q1AwMDE6UGE1NXdvcmQtZm9yLUNQMDAx"  # CP001:<password>
    assert PASSWORD not in repr(t)
    assert t.tls is None


def test_no_profile_no_target_and_tls_needs_a_root(tmp_path: Path) -> None:
    assert station(tmp_path / "a", "").connectivity.next_target() is None
    s = station(tmp_path / "b", 'url = "ws://csms.example/ocpp"')
    s.network_profiles.save(
        1,
        {
            "ocppCsmsUrl": "wss://csms.example/ocpp",
            "securityProfile": 2,
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppInterface": "Wired0",
            "messageTimeout": 30,
        },
    )
    set_password(s, PASSWORD)
    with pytest.raises(NoTarget, match="CSMS root certificate"):
        s.connectivity.next_target()


@pytest.mark.parametrize(("profile", "reconnects"), [(0, False), (1, True)])
def test_a01_a_new_password_reconnects_only_where_it_is_used(
    tmp_path: Path, profile: int, reconnects: bool
) -> None:
    password = f'\npassword = "{PASSWORD}"' if profile else ""
    s = station(tmp_path, f'url = "ws://csms.example/ocpp"\nsecurity_profile = {profile}{password}')
    s.csms_connected(target(s))
    s.take_effects()
    set_password(s, "An0ther-pa55word-here")
    effects = [e for e in s.take_effects() if isinstance(e, Reconnect)]
    if not reconnects:
        assert effects == []
    else:
        (reconnect,) = effects
        assert 1.0 <= reconnect.delay <= 2.0  # not at once: a CSMS may still clean up


def test_b10_fail_over_after_network_profile_connection_attempts(tmp_path: Path) -> None:
    preload = (
        '"OCPPCommCtrlr.NetworkProfileConnectionAttempts" = 2\n'
        '"OCPPCommCtrlr.RetryBackOffRandomRange" = 0\n'
    )
    s = station(tmp_path, 'url = "ws://one.example/ocpp"', preload)
    s.network_profiles.save(
        2,
        {
            "ocppCsmsUrl": "ws://two.example/ocpp",
            "securityProfile": 0,
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppInterface": "Wired0",
            "messageTimeout": 30,
        },
    )
    dm = s.device_model
    dm.write([(dm["OCPPCommCtrlr.NetworkConfigurationPriority"], "Actual", "1,2")])
    assert target(s).slot == 1
    assert s.connectivity.failed() == 1.0
    assert target(s).slot == 1
    assert s.connectivity.failed() == 2.0  # doubled
    assert target(s).slot == 2  # B10.FR.03: the next slot after 2 failures


def test_the_backoff_doubles_repeat_times_then_stays() -> None:
    backoff = Backoff(lambda: Parameters(3, 0, 2))
    assert [backoff.next() for _ in range(5)] == [3, 6, 12, 12, 12]
    backoff.reset()
    assert backoff.next() == 3


def test_set_ocpp_network_connection_checks_then_switches(tmp_path: Path) -> None:
    s = station(tmp_path, 'url = "ws://one.example/ocpp"')
    s.csms_connected(target(s))
    s.take_effects()
    refused = s.set_network_connection({"csms_url": "ws://two.example/ocpp", "security_profile": 2})
    assert refused["status"] == "rejected"
    assert "wss://" in refused["reason"]
    refused = s.set_network_connection(
        {"csms_url": "ws://two.example/ocpp/CP001", "security_profile": 1}
    )
    assert "identity" in refused["reason"]
    assert s.network_profiles.get(2) is None  # nothing stored on a refusal
    answer = s.set_network_connection(
        {
            "csms_url": "ws://two.example/ocpp",
            "security_profile": 1,
            "basic_auth_password": PASSWORD,
        }
    )
    assert answer == {"status": "accepted"}
    assert [e for e in s.take_effects() if isinstance(e, Reconnect)]
    t = target(s)
    assert (t.slot, t.url, t.security_profile) == (2, "ws://two.example/ocpp/CP001", 1)
    assert s.device_model.value("OCPPCommCtrlr.NetworkConfigurationPriority") == "2,1"


def test_the_identity_from_set_ocpp_network_connection_survives_a_restart(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(tmp_path / "bridge.toml", None, csms='url = "ws://one.example/ocpp"')
    )
    store = Store(tmp_path / "bridge.db")
    s = Station(settings, store)
    answer = s.set_network_connection(
        {"csms_url": "ws://two.example/ocpp", "security_profile": 0, "identity": "CP-NEW-7"}
    )
    assert answer == {"status": "accepted"}
    assert target(s).url == "ws://two.example/ocpp/CP-NEW-7"
    store.close()
    store = Store(tmp_path / "bridge.db")
    again = Station(settings, store)
    assert again.identity == "CP-NEW-7"
    assert again.device_model.value("SecurityCtrlr.Identity") == "CP-NEW-7"
    assert target(again).url == "ws://two.example/ocpp/CP-NEW-7"
    store.close()
