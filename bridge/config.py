"""The configuration file (README.md, "Configuration"): TOML; every key is also settable as
`OCPP_BRIDGE_<SECTION>__<KEY>`.

A missing, unknown or wrong key stops start-up with one sentence that names it (`ConfigError`);
values are never echoed, since some of them are passwords. File values must have the TOML type
the README promises (`port = "1883"` is refused); environment values are text by nature and are
converted: integers, numbers and booleans from their usual spelling, lists and tables from JSON.
An error in an environment value names the variable, not the file.

An `OCPP_BRIDGE_` name that names no section (a typo, or a variable of some other tool) is not an
error: `load_configuration` returns a warning for it, which `run` logs and `check-config` prints.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.versions import OCPP201, RunningVersion

ENV_PREFIX: Final = "OCPP_BRIDGE_"
MASK: Final = "********"  # every secret, whatever its length

# OCPP 2.0.1 part 4, 3.1.1: the identity is at most 48 characters of identifierString, without ':'
# (it is also the Basic-auth user name, where ':' separates the password).
IDENTITY_PATTERN = r"^[A-Za-z0-9*\-_=+|@.]{1,48}$"


class ConfigError(Exception):
    """A configuration problem, as one sentence naming the key (or the environment variable)."""


class _Section(BaseModel):
    # strict: a TOML value must already have the key's type; the environment's text is converted
    # before validation (see _from_environment).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StationSettings(_Section):
    id: str
    vendor: str = Field(min_length=1, max_length=50)  # BootNotification chargingStation.vendorName
    model: str = Field(min_length=1, max_length=20)  # chargingStation.model
    serial_number: str = Field(default="", max_length=25)
    firmware_version: str = Field(default="", max_length=50)
    # Connectors per EVSE: [1, 1] = two EVSEs with one connector each.
    evses: list[int] = Field(default=[1], min_length=1, max_length=32)

    @field_validator("id")
    @classmethod
    def _identity(cls, value: str) -> str:
        if not re.fullmatch(IDENTITY_PATTERN, value):
            raise ValueError("must be 1 to 48 characters from A-Z a-z 0-9 * - _ = + | @ .")
        return value

    @field_validator("evses")
    @classmethod
    def _connectors(cls, value: list[int]) -> list[int]:
        if any(not 1 <= n <= 8 for n in value):
            raise ValueError("each EVSE needs between 1 and 8 connectors")
        return value


class CsmsSettings(_Section):
    url: str = ""  # empty: no CSMS configured yet (e.g. provisioning on the production line)
    ocpp_versions: list[RunningVersion] = Field(default=[OCPP201], min_length=1)
    security_profile: int = Field(default=0, ge=0, le=3)
    password: SecretStr = SecretStr("")
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("must be a ws:// or wss:// URL with a host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must not carry credentials, a query or a fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _profile_matches(self) -> CsmsSettings:
        if self.url:
            scheme = urlsplit(self.url).scheme
            if self.security_profile >= 2 and scheme != "wss":
                raise ValueError(f"url: security_profile {self.security_profile} needs wss://")
            if self.security_profile <= 1 and scheme != "ws":
                raise ValueError(f"url: security_profile {self.security_profile} needs ws://")
        if self.security_profile == 3 and not (self.client_cert and self.client_key):
            raise ValueError("client_cert and client_key are required for security_profile 3")
        for key in ("ca_file", "client_cert", "client_key"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                raise ValueError(f"{key}: no such file")
        return self


class MqttSettings(_Section):
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str = ""
    password: SecretStr = SecretStr("")
    tls: bool = False
    ca_file: str = ""  # with tls: the broker's CA; empty = the system's trust store
    request_topic: str = Field(default="cs/josev", min_length=1)
    response_topic: str = Field(default="josev/cs", min_length=1)

    @field_validator("request_topic", "response_topic")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if any(c in value for c in "+#\0"):
            raise ValueError("must be a plain topic without wildcards")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> MqttSettings:
        if self.request_topic == self.response_topic:
            raise ValueError("request_topic and response_topic must differ")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ValueError("ca_file: no such file")
        return self


class OemSettings(_Section):
    """The OEM link (README "The MQTT API")."""

    # Seconds the bridge waits for the OEM's answer to one of its requests.
    request_timeout: float = Field(default=5.0, gt=0, le=300, allow_inf_nan=False)
    # Seconds to wait for the OEM's device_model answer before booting from this file.
    startup_timeout: float = Field(default=10.0, ge=0, le=600, allow_inf_nan=False)
    # CSMS -> station actions the OEM answers itself (forwarded as ocpp_message requests).
    delegate: list[str] = Field(default_factory=list)

    @field_validator("delegate")
    @classmethod
    def _delegable(cls, value: list[str]) -> list[str]:
        if not value:
            return value
        from bridge.schemas import ocpp_actions
        from bridge.station.actions import STATION_TO_CSMS

        actions = ocpp_actions(OCPP201)
        seen: set[str] = set()
        for number, name in enumerate(value, start=1):
            # An action name is safe to repeat in a sentence; anything else is named by position.
            shown = name if re.fullmatch(r"[A-Za-z0-9]{1,64}", name) else f"entry {number}"
            if name not in actions:
                close = [a for a in actions if a.casefold() == name.casefold()]
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(f"{shown} is not an OCPP 2.0.1 action{hint}")
            if name in STATION_TO_CSMS[OCPP201]:
                raise ValueError(f"{shown} is sent by the station, not to it")
            if name in seen:
                raise ValueError(f"{shown} is listed twice")
            seen.add(name)
        return value


class StorageSettings(_Section):
    path: str = Field(default="/var/lib/ocpp-bridge/bridge.db", min_length=1)
    # Bound of the durable outbound queue.
    max_queued: int = Field(default=100_000, ge=1000)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class LoggingSettings(_Section):
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = "INFO"


def _scalar(value: object) -> object:
    if not isinstance(value, str | bool | int | float):
        raise ValueError("must be a string, a number or a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


DeviceModelValue = Annotated[str | StrictBool | int | float, BeforeValidator(_scalar)]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    station: StationSettings
    csms: CsmsSettings = CsmsSettings()
    mqtt: MqttSettings = MqttSettings()
    oem: OemSettings = OemSettings()
    storage: StorageSettings = StorageSettings()
    logging: LoggingSettings = LoggingSettings()
    # "Component[instance].Variable[instance]" → Actual value preloaded into the device model.
    device_model: dict[str, DeviceModelValue] = Field(default_factory=dict)


SECTIONS: Final[dict[str, type[_Section]]] = {
    "station": StationSettings,
    "csms": CsmsSettings,
    "mqtt": MqttSettings,
    "oem": OemSettings,
    "storage": StorageSettings,
    "logging": LoggingSettings,
}
DEVICE_MODEL: Final = "device_model"


def device_model_text(value: str | bool | int | float) -> str:
    """OCPP carries every value as a string; TOML booleans become 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def device_model_key_name(key: str) -> str:
    """How errors name a [device_model] entry: device_model."OCPPCommCtrlr.HeartbeatInterval"."""
    return f"{DEVICE_MODEL}.{json.dumps(key, ensure_ascii=False)}"


def is_secret_device_model_key(key: str) -> bool:
    """A preset whose value must never be shown (BasicAuthPassword and any other password)."""
    return "password" in key.casefold()


# --- the environment


@dataclass(frozen=True)
class _Key:
    """Where a key's effective value came from: 'file', 'default' or `environment NAME`."""

    section: str
    key: str

    @property
    def name(self) -> str:
        if self.section == DEVICE_MODEL:
            return device_model_key_name(self.key)
        return f"{self.section}.{self.key}"


def _annotation(section: str, key: str) -> Any:
    if section == DEVICE_MODEL:
        return DeviceModelValue
    model = SECTIONS.get(section)
    info = model.model_fields.get(key) if model else None
    return info.annotation if info is not None else None


def _plain(annotation: Any) -> Any:
    """Annotated[X, ...] → X."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _convert(annotation: Any, text: str) -> Any:
    """An environment string as a value of the key's type; ValueError with our sentence."""
    annotation = _plain(annotation)
    origin = get_origin(annotation)
    if origin in (list, dict) or annotation in (list, dict):
        try:
            return json.loads(text)
        except ValueError:
            kind = "list" if list in (origin, annotation) else "object"
            raise ValueError(f"must be a JSON {kind}, e.g. {_example(annotation)}") from None
    if annotation is bool:
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise ValueError("must be true or false")
    if annotation is int:
        if not _INTEGER.fullmatch(text.strip()):
            raise ValueError("must be an integer")
        return int(text)
    if annotation is float:
        if not _NUMBER.fullmatch(text.strip()):
            raise ValueError("must be a number")
        return float(text)
    return text  # str, SecretStr, Literal, and [device_model] values (OCPP values are text)


def _example(annotation: Any) -> str:
    args = get_args(annotation)
    if get_origin(annotation) is list and args and _plain(args[0]) is int:
        return "[1, 1]"
    if get_origin(annotation) is list:
        return '["a", "b"]'
    return '{"key": "value"}'


def _from_environment(
    environ: Mapping[str, str],
) -> tuple[list[tuple[_Key, str, Any]], list[str]]:
    """(key, variable name, converted value) of each OCPP_BRIDGE_ variable, and warnings.

    Names are matched case-insensitively (as pydantic-settings did), except the key of a
    `[device_model]` entry, which keeps its case: OCPP_BRIDGE_DEVICE_MODEL__<Component.Variable>,
    or the whole section as a JSON object in OCPP_BRIDGE_DEVICE_MODEL.
    """
    found: list[tuple[_Key, str, Any]] = []
    warnings: list[str] = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        text = environ[name]
        rest = name[len(ENV_PREFIX) :]
        section, delimiter, key = rest.partition("__")
        section = section.lower()
        if section == DEVICE_MODEL:
            if delimiter and key:
                found.append((_Key(section, key), name, text))
                continue
            if not delimiter:
                try:
                    table = json.loads(text)
                except ValueError:
                    table = None
                if not isinstance(table, dict):
                    raise ConfigError(
                        f"environment {name}: must be a JSON object of "
                        '"Component.Variable": value entries'
                    )
                found.extend((_Key(section, k), name, v) for k, v in table.items())
                continue
        if section not in SECTIONS or not delimiter or not key:
            close = difflib.get_close_matches(rest.upper(), _variable_names(), n=1, cutoff=0.75)
            hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
            warnings.append(
                f"environment {name}: ignored, not a configuration variable "
                f"({ENV_PREFIX}<SECTION>__<KEY>){hint}"
            )
            continue
        # A known section: a wrong key is an error, as it is in the file.
        key = key.lower()
        annotation = _annotation(section, key)
        if annotation is None:
            found.append((_Key(section, key), name, text))  # validation says "unknown key"
            continue
        try:
            value = _convert(annotation, text)
        except ValueError as e:
            raise ConfigError(f"environment {name}: {e}") from None
        found.append((_Key(section, key), name, value))
    return found, warnings


def _variable_names() -> list[str]:
    """Every variable name without the prefix: STATION__ID, ..., DEVICE_MODEL."""
    names = [DEVICE_MODEL.upper()]
    for section, model in SECTIONS.items():
        names += [f"{section.upper()}__{key.upper()}" for key in model.model_fields]
    return names


# --- error sentences in our words


def _expected(annotation: Any) -> str:
    """'an integer', 'a list of integers', ... for the type of a key."""
    annotation = _plain(annotation)
    origin = get_origin(annotation)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation in (str, SecretStr):
        return "a string"
    if origin is Literal:
        choices = [f'"{a}"' for a in get_args(annotation)]
        return " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1 else choices)
    if origin is list:
        (item,) = get_args(annotation)
        item = _plain(item)
        items = {int: "integers", str: "strings"}.get(item, "strings")
        return f"a list of {items}"
    if annotation is dict or origin is dict:
        return "a table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a table"
    if origin in (Union, UnionType):
        return "a string, a number or a boolean"
    return "a value of another type"


_TYPE_ERRORS: Final = (
    "_type",
    "_parsing",
    "model_attributes_type",
    "is_instance_of",
)


def _phrase(error: Mapping[str, Any], annotation: Any) -> str:
    """The sentence for one pydantic error, in our words (never pydantic's, never the value)."""
    kind: str = error.get("type", "")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("value_error", "assertion_error"):
        return (
            str(error.get("msg", ""))
            .removeprefix("Value error, ")
            .removeprefix("Assertion failed, ")
        )
    if kind == "literal_error":
        return f"must be {_expected(annotation)}" if annotation else "is not one of the choices"
    if kind.endswith(_TYPE_ERRORS) or kind == "int_from_float":
        return f"must be {_expected(annotation)}"
    if kind == "finite_number":
        return "must be a finite number"
    bounds = {
        "greater_than_equal": ("must be at least", "ge"),
        "less_than_equal": ("must be at most", "le"),
        "greater_than": ("must be more than", "gt"),
        "less_than": ("must be less than", "lt"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        return f"{words} {_number(ctx.get(name))}"
    if kind in ("string_too_short", "too_short"):
        least = ctx.get("min_length", 1)
        if least == 1:
            return "must not be empty"
        unit = "characters" if kind.startswith("string") else "entries"
        return f"must have at least {least} {unit}"
    if kind in ("string_too_long", "too_long"):
        unit = "characters" if kind.startswith("string") else "entries"
        return f"must have at most {ctx.get('max_length')} {unit}"
    return "has a value that is not allowed"


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _blame(
    error: Mapping[str, Any], file: Path, sources: Mapping[_Key, str], environ_keys: set[_Key]
) -> str:
    """One sentence: `FILE: section.key: ...` or `environment NAME: ...`."""
    loc = tuple(error.get("loc", ()))
    if not loc:
        return f"{file}: {_phrase(error, None)}"
    section = str(loc[0])
    if len(loc) == 1:
        if section not in SECTIONS or error.get("type") != "value_error":
            annotation = SECTIONS.get(section) or (dict if section == DEVICE_MODEL else None)
            return f"{file}: {section}: {_phrase(error, annotation)}"
        # A section-level check names its key first ("url: needs wss://") → "csms.url: ...".
        message = _phrase(error, None)
        key, sep, rest = message.partition(": ")
        others = sorted(sources[k] for k in environ_keys if k.section == section)
        if sep and key.isidentifier() and key.islower() and _annotation(section, key):
            named = _Key(section, key)
            sentence = _located(named, rest, file, sources, environ_keys)
            others = [] if named in environ_keys else others
        else:
            sentence = f"{file}: {section}: {message}"
        # The file's key may be wrong only together with an environment value: say which.
        return sentence + (f" (with {', '.join(others)})" if others else "")
    where = _Key(section, str(loc[1]))
    annotation = _annotation(section, where.key)
    if len(loc) > 2 and isinstance(loc[2], int):
        # An entry of a list: a wrong type describes the list; anything else names the entry.
        item = next(iter(get_args(_plain(annotation))), None)
        phrase = _phrase(error, item)
        if str(error.get("type", "")).endswith(_TYPE_ERRORS):
            phrase = f"must be {_expected(annotation)}"
        elif error.get("type") != "value_error":
            phrase = f"entry {loc[2] + 1} {phrase}"
        return _located(where, phrase, file, sources, environ_keys)
    return _located(where, _phrase(error, annotation), file, sources, environ_keys)


def _located(
    key: _Key, phrase: str, file: Path, sources: Mapping[_Key, str], environ_keys: set[_Key]
) -> str:
    if key in environ_keys:
        named = f"{key.name}: " if phrase == "unknown key" else ""
        return f"{sources[key]}: {named}{phrase}"
    return f"{file}: {key.name}: {phrase}"


# --- loading


@dataclass(frozen=True)
class Configuration:
    """The checked settings, where each value came from, and warnings about the environment."""

    file: Path
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)  # key name → file / environment NAME
    warnings: list[str] = field(default_factory=list)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def effective_values(self) -> list[tuple[str, str, str]]:
        """(key name, value as TOML, source) of every key, secrets as MASK."""
        rows: list[tuple[str, str, str]] = []
        for section in SECTIONS:
            values: BaseModel = getattr(self.settings, section)
            for key in type(values).model_fields:
                name = f"{section}.{key}"
                rows.append((name, _shown(getattr(values, key)), self.source(name)))
        for key, value in self.settings.device_model.items():
            name = device_model_key_name(key)
            shown = MASK if is_secret_device_model_key(key) else _shown(value)
            rows.append((name, shown, self.source(name)))
        return rows


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def load_configuration(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Configuration:
    """Read and check the configuration file plus the environment's overrides."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise ConfigError(f"{file}: cannot read the configuration file ({e.strerror})") from None
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: the configuration file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from None

    sources: dict[_Key, str] = {}
    for section, table in data.items():
        if isinstance(table, dict):
            sources.update({_Key(section, str(k)): "file" for k in table})
    overrides, warnings = _from_environment(os.environ if environ is None else environ)
    environ_keys: set[_Key] = set()
    for key, name, value in overrides:
        table = data.setdefault(key.section, {})
        if not isinstance(table, dict):  # the file's `mqtt = 5` is its own error
            continue
        table[key.key] = value
        sources[key] = f"environment {name}"
        environ_keys.add(key)

    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_input=False, include_url=False)[0]
        more = e.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(_blame(first, file, sources, environ_keys) + suffix) from None
    return Configuration(
        file=file,
        settings=settings,
        sources={key.name: source for key, source in sources.items()},
        warnings=warnings,
    )


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and check the configuration file (plus environment overrides)."""
    return load_configuration(path).settings
