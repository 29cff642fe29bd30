"""The configuration file: every problem is one sentence naming the key, never a value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import SECTIONS, ConfigError, Settings, load_configuration, load_settings
from bridge.schemas import ocpp_actions
from bridge.station.actions import STATION_TO_CSMS

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
        (MINIMAL + "[mqtt]\nport = 70000\n", "mqtt.port: must be at most 65535"),
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
        (
            MINIMAL + "[csms]\nocpp_versions = ['ocpp1.6']\n",
            'csms.ocpp_versions: entry 1 must be "ocpp2.0.1"',
        ),
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
    message = problem(tmp_path, MINIMAL)
    assert "csms.pasword: unknown key" in message
    assert message.startswith("environment OCPP_BRIDGE_CSMS__PASWORD: ")


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
            assert "Input should" not in str(e)  # noqa: PT017 - our words, not pydantic's


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
    assert problem(tmp_path, MINIMAL) == (
        "environment OCPP_BRIDGE_CSMS__SECURITY_PROFILE: must be at most 3"
    )


# --- strict TOML types (issue 8): the README promises TOML types; sentences in our words


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (MINIMAL + "[mqtt]\nport = '1883'\n", "mqtt.port: must be an integer"),
        (MINIMAL + "[mqtt]\nport = 1883.0\n", "mqtt.port: must be an integer"),
        (MINIMAL + "[mqtt]\nport = true\n", "mqtt.port: must be an integer"),
        (MINIMAL + "[mqtt]\nport = 0\n", "mqtt.port: must be at least 1"),
        (MINIMAL + "[mqtt]\ntls = 'yes'\n", "mqtt.tls: must be true or false"),
        (MINIMAL + "[mqtt]\ntls = 1\n", "mqtt.tls: must be true or false"),
        (MINIMAL + "[mqtt]\nhost = ''\n", "mqtt.host: must not be empty"),
        (MINIMAL + "evses = [1, '2']\n", "station.evses: must be a list of integers"),
        (MINIMAL + "evses = 2\n", "station.evses: must be a list of integers"),
        (
            MINIMAL + "evses = " + str([1] * 33) + "\n",
            "station.evses: must have at most 32 entries",
        ),
        (MINIMAL.replace('"Acme"', "5"), "station.vendor: must be a string"),
        (MINIMAL.replace('"AC22"', '"' + "M" * 21 + '"'), "station.model: must have at most 20"),
        (MINIMAL + "[csms]\nsecurity_profile = '1'\n", "csms.security_profile: must be an integer"),
        (MINIMAL + "[csms]\nsecurity_profile = 4\n", "csms.security_profile: must be at most 3"),
        (MINIMAL + "[csms]\nocpp_versions = 'ocpp2.0.1'\n", "csms.ocpp_versions: must be a list"),
        (MINIMAL + "[csms]\nocpp_versions = []\n", "csms.ocpp_versions: must not be empty"),
        (
            MINIMAL + "[logging]\nlevel = 'verbose'\n",
            'logging.level: must be "DEBUG", "INFO", "WARNING" or "ERROR"',
        ),
        (MINIMAL + "[logging]\nlevel = 10\n", "logging.level: must be"),
        (MINIMAL + "mqtt = 5\n", "station.mqtt: unknown key"),
        ("mqtt = 5\n" + MINIMAL, "mqtt: must be a table"),
        ("station = 'CP001'\n", "station: must be a table"),
        ("device_model = 5\n" + MINIMAL, "device_model: must be a table"),
        (
            MINIMAL + '[device_model]\n"A.B" = nan\n',
            'device_model."A.B": must be a finite number',
        ),
        (
            MINIMAL + '[device_model]\n"A.B" = 1979-05-27\n',
            'device_model."A.B": must be a string, a number or a boolean',
        ),
    ],
)
def test_toml_values_must_have_the_promised_type(tmp_path: Path, text: str, sentence: str) -> None:
    message = problem(tmp_path, text)
    assert sentence in message
    assert "Input should" not in message
    assert "Value error" not in message


def test_logging_level_is_case_insensitive(tmp_path: Path) -> None:
    settings = load_settings_ok(tmp_path, MINIMAL + "[logging]\nlevel = 'debug'\n")
    assert settings.logging.level == "DEBUG"


# Every key with values of the wrong kind: a sentence of ours that never shows the value.
WRONG_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.text(max_size=30),
    st.lists(
        st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=5)),
        max_size=3,
    ),
)
KEYS = [
    (section, key)
    for section, model in SECTIONS.items()
    for key in model.model_fields
    if (section, key) not in {("storage", "path")}  # any string is a path
]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), value=WRONG_VALUES)
def test_any_value_of_any_key_is_settings_or_one_sentence_of_ours(
    key: tuple[str, str], value: object
) -> None:
    import tempfile

    section, name = key
    station = {"id": '"CP001"', "vendor": '"Acme"', "model": '"AC22"'}
    if section == "station":
        station[name] = toml_value(value)
    text = "[station]\n" + "".join(f"{k} = {v}\n" for k, v in station.items())
    if section != "station":
        text += f"[{section}]\n{name} = {toml_value(value)}\n"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bridge.toml"
        path.write_text(text)
        try:
            load_settings(path)
        except ConfigError as e:
            message = str(e)
            assert message.startswith(f"{path}: ")
            assert "Input should" not in message
            assert "Value error" not in message
            assert "\n" not in message
            if isinstance(value, str) and len(value) >= 8 and name != "delegate":
                assert value not in message.removeprefix(f"{path}: ")


# --- environment overrides (issue 8)


def test_environment_values_are_converted_from_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCPP_BRIDGE_MQTT__PORT", "1883")
    monkeypatch.setenv("OCPP_BRIDGE_MQTT__TLS", "yes")
    monkeypatch.setenv("OCPP_BRIDGE_STATION__EVSES", "[1, 1]")
    monkeypatch.setenv("OCPP_BRIDGE_OEM__REQUEST_TIMEOUT", "2.5")
    monkeypatch.setenv("OCPP_BRIDGE_OEM__STARTUP_TIMEOUT", "0")
    monkeypatch.setenv("OCPP_BRIDGE_OEM__DELEGATE", '["UpdateFirmware", "DataTransfer"]')
    monkeypatch.setenv("OCPP_BRIDGE_STORAGE__MAX_QUEUED", "5000")
    monkeypatch.setenv("OCPP_BRIDGE_LOGGING__LEVEL", "warning")
    monkeypatch.setenv("OCPP_BRIDGE_DEVICE_MODEL__OCPPCommCtrlr.HeartbeatInterval", "90")
    settings = load_settings_ok(tmp_path, MINIMAL + "[mqtt]\nport = 1884\n")
    assert settings.mqtt.port == 1883
    assert settings.mqtt.tls is True
    assert settings.station.evses == [1, 1]
    assert settings.oem.request_timeout == 2.5
    assert settings.oem.startup_timeout == 0
    assert settings.oem.delegate == ["UpdateFirmware", "DataTransfer"]
    assert settings.storage.max_queued == 5000
    assert settings.logging.level == "WARNING"
    assert settings.device_model == {"OCPPCommCtrlr.HeartbeatInterval": "90"}


def test_the_device_model_section_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCPP_BRIDGE_DEVICE_MODEL", '{"A.B": 60, "A.C": "x"}')
    settings = load_settings_ok(tmp_path, MINIMAL + '[device_model]\n"A.B" = 30\n"A.D" = true\n')
    assert settings.device_model == {"A.B": 60, "A.C": "x", "A.D": True}
    monkeypatch.setenv("OCPP_BRIDGE_DEVICE_MODEL", "[1]")
    assert problem(tmp_path, MINIMAL).startswith("environment OCPP_BRIDGE_DEVICE_MODEL: must be")


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        ("OCPP_BRIDGE_STATION__EVSES", "[1, 1", "must be a JSON list, e.g. [1, 1]"),
        ("OCPP_BRIDGE_STATION__EVSES", "[1, true]", "must be a list of integers"),
        ("OCPP_BRIDGE_STATION__EVSES", "[9]", "each EVSE needs between 1 and 8 connectors"),
        ("OCPP_BRIDGE_MQTT__PORT", "70000", "must be at most 65535"),
        ("OCPP_BRIDGE_MQTT__PORT", "1883x", "must be an integer"),
        ("OCPP_BRIDGE_MQTT__PORT", "", "must be an integer"),
        ("OCPP_BRIDGE_MQTT__TLS", "maybe", "must be true or false"),
        ("OCPP_BRIDGE_OEM__REQUEST_TIMEOUT", "soon", "must be a number"),
        ("OCPP_BRIDGE_OEM__REQUEST_TIMEOUT", "nan", "must be a number"),
        ("OCPP_BRIDGE_OEM__DELEGATE", "Reset", 'must be a JSON list, e.g. ["a", "b"]'),
        (
            "OCPP_BRIDGE_OEM__DELEGATE",
            '["Heartbeat"]',
            "Heartbeat is sent by the station, not to it",
        ),
        ("OCPP_BRIDGE_CSMS__URL", "http://x/ocpp", "must be a ws:// or wss:// URL with a host"),
        ("OCPP_BRIDGE_LOGGING__LEVEL", "loud", 'must be "DEBUG", "INFO", "WARNING" or "ERROR"'),
    ],
)
def test_an_environment_error_names_the_variable_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, sentence: str
) -> None:
    monkeypatch.setenv(name, value)
    assert problem(tmp_path, MINIMAL) == f"environment {name}: {sentence}"


def test_a_file_key_wrong_only_with_an_environment_value_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCPP_BRIDGE_CSMS__SECURITY_PROFILE", "2")
    message = problem(tmp_path, MINIMAL + "[csms]\nurl = 'ws://h:9/o'\n")
    assert message == (
        f"{tmp_path / 'bridge.toml'}: csms.url: security_profile 2 needs wss:// "
        "(with environment OCPP_BRIDGE_CSMS__SECURITY_PROFILE)"
    )


def test_unknown_environment_names_are_warnings_not_errors(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(MINIMAL)
    environ = {
        "OCPP_BRIDGE_MQT__PORT": "1884",  # a misspelt section
        "OCPP_BRIDGE_MQTT_PORT": "1884",  # one underscore
        "OCPP_BRIDGE_TAG": "latest",  # compose.yaml's image tag
        "PATH": "/usr/bin",
    }
    configuration = load_configuration(path, environ)
    assert configuration.settings.mqtt.port == 1883
    assert configuration.warnings == [
        "environment OCPP_BRIDGE_MQTT_PORT: ignored, not a configuration variable "
        "(OCPP_BRIDGE_<SECTION>__<KEY>); did you mean OCPP_BRIDGE_MQTT__PORT?",
        "environment OCPP_BRIDGE_MQT__PORT: ignored, not a configuration variable "
        "(OCPP_BRIDGE_<SECTION>__<KEY>); did you mean OCPP_BRIDGE_MQTT__PORT?",
        "environment OCPP_BRIDGE_TAG: ignored, not a configuration variable "
        "(OCPP_BRIDGE_<SECTION>__<KEY>)",
    ]


def test_each_value_knows_its_source_and_secrets_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        MINIMAL + "[csms]\npassword = 'Sup3rSecretPassw0rd'\n[device_model]\n"
        '"SecurityCtrlr.BasicAuthPassword" = "An0therSecretPassw0rd"\n"A.B" = 5\n'
    )
    environ = {"OCPP_BRIDGE_MQTT__PASSWORD": "mqtt-secret", "OCPP_BRIDGE_MQTT__PORT": "1884"}
    rows = {
        name: (value, source)
        for name, value, source in load_configuration(path, environ).effective_values()
    }
    assert rows["station.id"] == ('"CP001"', "file")
    assert rows["mqtt.port"] == ("1884", "environment OCPP_BRIDGE_MQTT__PORT")
    assert rows["mqtt.host"] == ('"127.0.0.1"', "default")
    assert rows["csms.password"] == ("********", "file")
    assert rows["mqtt.password"] == ("********", "environment OCPP_BRIDGE_MQTT__PASSWORD")
    assert rows['device_model."SecurityCtrlr.BasicAuthPassword"'] == ("********", "file")
    assert rows['device_model."A.B"'] == ("5", "file")
    assert rows["oem.delegate"] == ("[]", "default")
    assert set(rows) >= {f"{s}.{k}" for s, m in SECTIONS.items() for k in m.model_fields}


# --- [oem] and [storage] max_queued


def test_new_keys_have_the_spec_defaults(tmp_path: Path) -> None:
    settings = load_settings_ok(tmp_path, MINIMAL)
    assert settings.oem.request_timeout == 5.0
    assert isinstance(settings.oem.request_timeout, float)
    assert settings.oem.startup_timeout == 10.0
    assert isinstance(settings.oem.startup_timeout, float)
    assert settings.oem.delegate == []
    assert settings.storage.max_queued == 100_000


def test_new_keys_accept_their_bounds(tmp_path: Path) -> None:
    settings = load_settings_ok(
        tmp_path,
        MINIMAL + "[oem]\nrequest_timeout = 300\nstartup_timeout = 0\n"
        "delegate = ['UpdateFirmware', 'GetLog', 'CertificateSigned', 'DataTransfer']\n"
        "[storage]\nmax_queued = 1000\n",
    )
    assert settings.oem.request_timeout == 300.0
    assert isinstance(settings.oem.request_timeout, float)
    assert settings.oem.startup_timeout == 0.0
    assert settings.oem.delegate == [
        "UpdateFirmware",
        "GetLog",
        "CertificateSigned",
        "DataTransfer",
    ]
    assert settings.storage.max_queued == 1000


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("[oem]\nrequest_timeout = 0\n", "oem.request_timeout: must be more than 0"),
        ("[oem]\nrequest_timeout = -1.5\n", "oem.request_timeout: must be more than 0"),
        ("[oem]\nrequest_timeout = 300.5\n", "oem.request_timeout: must be at most 300"),
        ("[oem]\nrequest_timeout = inf\n", "oem.request_timeout: must be a finite number"),
        ("[oem]\nrequest_timeout = '5'\n", "oem.request_timeout: must be a number"),
        ("[oem]\nstartup_timeout = -1\n", "oem.startup_timeout: must be at least 0"),
        ("[oem]\nstartup_timeout = 601\n", "oem.startup_timeout: must be at most 600"),
        ("[oem]\nstartup_timeout = nan\n", "oem.startup_timeout: must be a finite number"),
        ("[oem]\ndelegate = 'Reset'\n", "oem.delegate: must be a list of strings"),
        ("[oem]\ndelegate = [1]\n", "oem.delegate: must be a list of strings"),
        (
            "[oem]\ndelegate = ['BootNotification']\n",
            "oem.delegate: BootNotification is sent by the station, not to it",
        ),
        ("[oem]\ndelegate = ['Reset', 'Reset']\n", "oem.delegate: Reset is listed twice"),
        (
            "[oem]\ndelegate = ['reset']\n",
            "oem.delegate: reset is not an OCPP 2.0.1 action (did you mean Reset?)",
        ),
        ("[oem]\ndelegate = ['Reboot']\n", "oem.delegate: Reboot is not an OCPP 2.0.1 action"),
        (
            "[oem]\ndelegate = ['Reset', 'Sup3r Secret\\n']\n",
            "oem.delegate: entry 2 is not an OCPP 2.0.1 action",
        ),
        ("[oem]\ntimeout = 5\n", "oem.timeout: unknown key"),
        ("[storage]\nmax_queued = 999\n", "storage.max_queued: must be at least 1000"),
        ("[storage]\nmax_queued = 1e6\n", "storage.max_queued: must be an integer"),
    ],
)
def test_new_keys_are_checked(tmp_path: Path, text: str, sentence: str) -> None:
    message = problem(tmp_path, MINIMAL + text)
    assert message == f"{tmp_path / 'bridge.toml'}: {sentence}"


@pytest.mark.parametrize("action", sorted(ocpp_actions("ocpp2.0.1") - STATION_TO_CSMS["ocpp2.0.1"]))
def test_every_csms_to_station_action_may_be_delegated(tmp_path: Path, action: str) -> None:
    settings = load_settings_ok(tmp_path, MINIMAL + f"[oem]\ndelegate = ['{action}']\n")
    assert settings.oem.delegate == [action]


@pytest.mark.parametrize("action", sorted(STATION_TO_CSMS["ocpp2.0.1"]))
def test_no_station_to_csms_action_may_be_delegated(tmp_path: Path, action: str) -> None:
    assert problem(tmp_path, MINIMAL + f"[oem]\ndelegate = ['{action}']\n").endswith(
        f"oem.delegate: {action} is sent by the station, not to it"
    )


def test_the_example_configuration_is_valid_and_shows_every_key() -> None:
    example = Path(__file__).resolve().parent.parent / "deploy" / "bridge.toml"
    configuration = load_configuration(example, environ={})
    every = {
        f"{section}.{key}" for section, model in SECTIONS.items() for key in model.model_fields
    }
    assert {name for name, source in configuration.sources.items() if source == "file"} >= every
    assert configuration.settings.oem.request_timeout == 5.0
    assert configuration.settings.storage.max_queued == 100_000
