"""Applying the configuration file to the store (README "When configuration values apply").

A value from the file is written at first start and again whenever the file changes it; in
between, what the CSMS or the OEM set (SetVariables, SetNetworkProfile) stays. Each applied value
leaves a digest in `config_applied` (a digest, since the value may be a password).

`plan` checks the whole configuration against the device model and changes nothing: a refused
start (ConfigError) leaves the store as it was. `ConfigurationPlan.apply` then writes everything
in one store transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import ConfigError, Settings, device_model_key_name, device_model_text
from bridge.station.device_model import DeviceModel, UnknownKey, Variable
from bridge.station.provisioning.network_profiles import (
    CONFIG_SLOT,
    NetworkProfiles,
    check_connection_data,
)
from bridge.store import MEMORY, Store
from bridge.versions import OCPP201, PROFILE_VERSION

log = logging.getLogger(__name__)

PASSWORD = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name
SECURITY_PROFILE = "SecurityCtrlr.SecurityProfile"
MESSAGE_TIMEOUT = "OCPPCommCtrlr.MessageTimeout[Default]"


def digest(key: str, value: str) -> str:
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()


@dataclass
class ConfigurationPlan:
    """What the configuration changes in the store, already checked."""

    store: Store
    device_model: DeviceModel
    network_profiles: NetworkProfiles
    profile: dict[str, Any] | None = None  # the new slot-1 profile (from [csms])
    changes: list[tuple[Variable, str, str]] = field(default_factory=list)
    digests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.profile is None and not self.changes and not self.digests

    def apply(self) -> None:
        """Write the whole plan in one store transaction (nothing, if the store fails)."""
        if self.empty:
            return
        with self.store.transaction():
            if self.profile is not None:
                self.network_profiles.save(CONFIG_SLOT, self.profile)
            self.device_model.write(self.changes, self.digests)
        for variable, _, _ in self.changes:
            log.info("configuration applied to %s", variable.key)


def plan(
    settings: Settings, dm: DeviceModel, profiles: NetworkProfiles, store: Store
) -> ConfigurationPlan:
    """Check the configuration values that changed since they were last applied; ConfigError
    names the first wrong one. Nothing is written."""
    applied = store.applied_config()
    result = ConfigurationPlan(store, dm, profiles)

    def changed(key: str, value: str) -> str | None:
        new = digest(key, value)
        return new if applied.get(key) != new else None

    csms = settings.csms
    # (config key, variable, value): implicit ones first, so [device_model] can override them.
    wanted: list[tuple[str, Variable, str]] = [
        ("csms.security_profile", dm[SECURITY_PROFILE], str(csms.security_profile)),
        ("station.vendor", dm["SecurityCtrlr.OrganizationName"], settings.station.vendor),
    ]
    password = csms.password.get_secret_value()
    if password:
        wanted.append(("csms.password", dm[PASSWORD], password))
    for key, raw in settings.device_model.items():
        name = device_model_key_name(key)
        try:
            variable = dm.resolve(key)
        except UnknownKey as e:
            raise ConfigError(f"{name}: {e}") from None
        if variable.definition.source != "stored":
            raise ConfigError(f"{name}: the station keeps this value itself; it cannot be set")
        wanted.append((name, variable, device_model_text(raw)))

    if csms.url:  # slot 1: the installer's connection
        data: dict[str, Any] = {
            "ocppCsmsUrl": csms.url,
            "securityProfile": csms.security_profile,
            "ocppVersion": PROFILE_VERSION[OCPP201],
            "ocppTransport": "JSON",
            "ocppInterface": "Wired0",
            "messageTimeout": dm.int_value(MESSAGE_TIMEOUT),
        }
        profile_digest = changed("csms.url", repr(sorted(data.items())))
        if profile_digest is not None:
            # The installer's file may set any profile, including a lower one.
            why = check_connection_data(data, 0)
            if why is not None:  # pragma: no cover - the settings already checked the URL
                raise ConfigError(f"csms.url: {why.info}")
            result.profile = data
            result.digests.append(("csms.url", profile_digest))

    # The presets are checked as if slot 1 were already saved (a NetworkConfigurationPriority
    # preset may name it).
    staged = (
        profiles.assuming(CONFIG_SLOT, result.profile)
        if result.profile is not None
        else nullcontext()
    )
    with staged:
        for key, variable, value in wanted:
            new = changed(key, value)
            if new is None:
                continue
            why = dm.check(variable, value)
            if why is not None:
                raise ConfigError(f"{key}: {why.info}")
            result.changes.append((variable, "Actual", value))
            result.digests.append((key, new))

    if csms.security_profile in (1, 2) and _password_after(result, dm) is None:
        raise ConfigError(f"csms.password: required for security_profile {csms.security_profile}")
    return result


def _password_after(result: ConfigurationPlan, dm: DeviceModel) -> str | None:
    variable = dm[PASSWORD]
    planned = [value for v, _, value in result.changes if v is variable]
    return planned[-1] if planned else variable.read()


def apply_configuration(
    settings: Settings, dm: DeviceModel, profiles: NetworkProfiles, store: Store
) -> None:
    """Check, then apply in one transaction (Station.__init__)."""
    plan(settings, dm, profiles, store).apply()


@contextmanager
def checking_store(path: str) -> Iterator[Store]:
    """The store `check-config` checks against: an in-memory copy of the file when it exists
    (read without a lock, so also while the service runs), else an empty in-memory store, which
    is what a first start would create. The file itself is never written."""
    exists = path != MEMORY and Path(path).is_file()
    store = Store.read_only_copy(path) if exists else Store(MEMORY)
    try:
        yield store
    finally:
        store.close()


def dry_run(settings: Settings) -> list[str]:
    """Build the station over `checking_store` exactly as `run` does (ConfigError when it would
    refuse to start); what it would write to the store, one line each, values never shown."""
    from bridge.station import Station

    with checking_store(settings.storage.path) as store:
        values, profiles = store.variable_values(), store.network_profiles()
        Station(settings, store)
        lines = [
            f"would set {variable} ({attribute})"
            for (variable, attribute), value in sorted(store.variable_values().items())
            if values.get((variable, attribute)) != value
        ]
        lines += [
            f"would set network profile slot {slot}"
            for slot, data in sorted(store.network_profiles().items())
            if profiles.get(slot) != data
        ]
    return lines
