"""The configuration file (SPEC §3): every problem is one sentence naming the key, never a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import ConfigError, Settings, load_settings

MINIMAL = '[station]\nid = "CP001"\nvendor = "Acme"\nmodel = "AC22"\n'


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings_ok(tmp_path, text)
    return str(info.value)


def load_settings_ok(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return load_settings(path)


def test_minimal_file_gets_the_spec_defaults(tmp_path: Path) -> None:
    settings = load_settings_ok(tmp_path, MINIMAL)
    assert settings.station.evses == [1]
    assert settings.csms.ocpp_versions == ["ocpp2.0.1"]
    assert settings.csms.security_profile == 0
    assert (settings.mqtt.host, settings.mqtt.port) == ("127.0.0.1", 1883)
    assert (settings.mqtt.request_topic, settings.mqtt.response_topic) == ("cs/josev", "josev/cs")
    assert settings.storage.path == "/var/lib/ocpp-bridge/bridge.db"


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("[station]\n", "station.id: required key is missing"),
        (MINIMAL + "[csms]\nurll = 'ws://x/y'\n", "csms.urll: unknown key"),
        (MINIMAL + "[mqttt]\n", "mqttt: unknown key"),
        (
            MINIMAL + "[mqtt]\nport = 70000\n",
            "mqtt.port: Input should be less than or equal to 65535",
        ),
        (MINIMAL + "[mqtt]\nport = 'x'\n", "mqtt.port:"),
        (MINIMAL + "[mqtt]\nrequest_topic = 'a/#'\n", "mqtt.request_topic: must be a plain topic"),
        (
            MINIMAL + "[mqtt]\nrequest_topic = 'josev/cs'\n",
            "request_topic and response_topic must differ",
        ),
        (MINIMAL + "[csms]\nurl = 'http://x/ocpp'\n", "csms.url: must be a ws:// or wss:// URL"),
        (MINIMAL + "[csms]\nurl = 'ws://u:p@x/ocpp'\n", "csms.url: must not carry credentials"),
        (
            MINIMAL + "[csms]\nurl = 'ws://x/ocpp'\nsecurity_profile = 2\n",
            "csms.url: security_profile 2 needs wss://",
        ),
        (
            MINIMAL + "[csms]\nurl = 'wss://x/ocpp'\nsecurity_profile = 1\n",
            "csms.url: security_profile 1 needs ws://",
        ),
        (MINIMAL + "[csms]\nsecurity_profile = 4\n", "csms.security_profile:"),
        (MINIMAL + "[csms]\nocpp_versions = ['ocpp1.6']\n", "csms.ocpp_versions.0:"),
        (
            MINIMAL + "[csms]\nurl = 'wss://x/o'\nsecurity_profile = 3\n",
            "client_cert and client_key are required",
        ),
        (MINIMAL + "[csms]\nca_file = '/no/such/ca.pem'\n", "csms.ca_file: no such file"),
        (MINIMAL.replace('"CP001"', '"CP:001"'), "station.id: must be 1 to 48 characters"),
        (
            MINIMAL.replace('"CP001"', '"' + "C" * 49 + '"'),
            "station.id: must be 1 to 48 characters",
        ),
        (MINIMAL + "evses = [0]\n", "station.evses: each EVSE needs between 1 and 8 connectors"),
        (MINIMAL + "evses = []\n", "station.evses:"),
        ("[station\n", "not valid TOML"),
    ],
)
def test_problems_name_the_key(tmp_path: Path, text: str, sentence: str) -> None:
    assert sentence in problem(tmp_path, text)


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    text = MINIMAL + "[mqtt]\npassword = 12345\n[csms]\npassword = ['Sup3rSecret']\n"
    message = problem(tmp_path, text)
    assert "Sup3rSecret" not in message
    assert "12345" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_settings(tmp_path / "missing.toml")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(tmp_path / "binary.toml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__URL", "ws://10.0.0.1:9000/ocpp")
    monkeypatch.setenv("OCPP_BRIDGE_MQTT__PORT", "1884")
    monkeypatch.setenv("OCPP_BRIDGE_STATION__EVSES", "[1, 2]")
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__PASSWORD", "from-the-environment-1")
    settings = load_settings_ok(tmp_path, MINIMAL + "[mqtt]\nport = 1883\n")
    assert settings.csms.url == "ws://10.0.0.1:9000/ocpp"
    assert settings.mqtt.port == 1884
    assert settings.station.evses == [1, 2]
    assert settings.csms.password.get_secret_value() == "from-the-environment-1"
    assert "from-the-environment-1" not in repr(settings)


def test_an_unknown_environment_key_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__PASWORD", "x")
    assert "csms.pasword: unknown key" in problem(tmp_path, MINIMAL)


def test_device_model_values_of_any_toml_scalar(tmp_path: Path) -> None:
    settings = load_settings_ok(
        tmp_path,
        MINIMAL + '[device_model]\n"A.B" = "60"\n"A.C" = 60\n"A.D" = true\n"A.E" = 1.5\n',
    )
    assert settings.device_model == {"A.B": "60", "A.C": 60, "A.D": True, "A.E": 1.5}
    assert 'device_model."A.F"' in problem(tmp_path, MINIMAL + '[device_model]\n"A.F" = [1]\n')


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_files_are_a_config_error_or_settings_never_a_crash(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bridge.toml"
        path.write_bytes(text.encode("utf-8", errors="replace"))
        try:
            load_settings(path)
        except ConfigError as e:
            assert str(e).startswith(str(path))  # noqa: PT017 - either outcome is fine


def test_every_key_type_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Integers, booleans and choices arrive as text from the environment."""
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__SECURITY_PROFILE", "1")
    monkeypatch.setenv("OCPP_BRIDGE_MQTT__TLS", "true")
    monkeypatch.setenv("OCPP_BRIDGE_LOGGING__LEVEL", "DEBUG")
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__OCPP_VERSIONS", '["ocpp2.0.1"]')
    settings = load_settings_ok(tmp_path, MINIMAL + '[csms]\nurl = "ws://h:9/o"\n')
    assert settings.csms.security_profile == 1
    assert settings.mqtt.tls is True
    assert settings.logging.level == "DEBUG"
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__SECURITY_PROFILE", "7")
    assert "csms.security_profile: Input should be less than or equal to 3" in problem(
        tmp_path, MINIMAL
    )
