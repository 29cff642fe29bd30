"""The configuration file (README.md, "Configuration"): TOML; every key is also settable as
`OCPP_BRIDGE_<SECTION>__<KEY>`.

A missing, unknown or wrong key stops start-up with one sentence that names it (`ConfigError`);
values are never echoed, since some of them are passwords.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "OCPP_BRIDGE_"

# OCPP 2.0.1 part 4, 3.1.1: the identity is at most 48 characters of identifierString, without ':'
# (it is also the Basic-auth user name, where ':' separates the password).
IDENTITY_PATTERN = r"^[A-Za-z0-9*\-_=+|@.]{1,48}$"


class ConfigError(Exception):
    """A configuration problem, as one sentence naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    ocpp_versions: list[Literal["ocpp2.0.1"]] = Field(default=["ocpp2.0.1"], min_length=1)
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


class StorageSettings(_Section):
    path: str = Field(default="/var/lib/ocpp-bridge/bridge.db", min_length=1)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


DeviceModelValue = str | StrictBool | int | float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    station: StationSettings
    csms: CsmsSettings = CsmsSettings()
    mqtt: MqttSettings = MqttSettings()
    storage: StorageSettings = StorageSettings()
    logging: LoggingSettings = LoggingSettings()
    # "Component[instance].Variable[instance]" → Actual value preloaded into the device model.
    device_model: dict[str, DeviceModelValue] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return (env_settings, init_settings)


def device_model_text(value: DeviceModelValue) -> str:
    """OCPP carries every value as a string; TOML booleans become 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts[:1] == ["device_model"] and len(parts) > 1:
        return f'device_model."{parts[1]}"'
    return ".".join(parts)


def _sentence(error: dict[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "missing":
        return f"{_key_name(loc)}: required key is missing"
    if kind == "extra_forbidden":
        return f"{_key_name(loc)}: unknown key"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return message
    # A section-level check names its key first ("url: needs wss://") → "csms.url: needs wss://".
    key, sep, rest = message.partition(": ")
    if sep and key.isidentifier() and key.islower():
        return f"{_key_name(loc)}.{key}: {rest}"
    return f"{_key_name(loc)}: {message}"


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and check the configuration file (plus environment overrides)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise ConfigError(f"{file}: cannot read the configuration file ({e.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: the configuration file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from None
    try:
        return Settings(**data)
    except ValidationError as e:
        first = e.errors(include_input=False, include_url=False)[0]
        more = e.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(f"{file}: {_sentence(dict(first))}{suffix}") from None
