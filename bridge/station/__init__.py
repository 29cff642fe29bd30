"""The charging station as plain Python: device model, certificates, network profiles, and the one
dispatcher through which both the CSMS and the OEM execute OCPP requests."""

from __future__ import annotations

import hashlib
import logging

from bridge.config import ConfigError, Settings, device_model_text
from bridge.station.availability import Availability
from bridge.station.device_model import DeviceModel, UnknownKey, Variable
from bridge.station.dispatcher import Dispatcher
from bridge.station.outbox import Outbox
from bridge.station.provisioning.boot import Registration
from bridge.station.provisioning.network_profiles import (
    CONFIG_SLOT,
    NetworkProfiles,
    check_connection_data,
)
from bridge.station.provisioning.reports import Reports
from bridge.station.provisioning.variables import Provisioning
from bridge.station.security import CertificateStore, Security, check_password
from bridge.store import Store
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

PASSWORD = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name
SECURITY_PROFILE = "SecurityCtrlr.SecurityProfile"


def _digest(key: str, value: str) -> str:
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()


class Station:
    """Everything the station knows, built from the configuration over one store."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        station = settings.station
        self.clock = Clock()
        self.outbox = Outbox()
        self.device_model = dm = DeviceModel.build(station.evses, store)
        dm.bind("SecurityCtrlr.Identity", lambda: station.id)
        dm.bind("ChargingStation.Model", lambda: station.model)
        dm.bind("ChargingStation.VendorName", lambda: station.vendor)
        dm.bind("ClockCtrlr.DateTime", self.clock.timestamp)
        dm.add_validator(PASSWORD, check_password)
        self.certificates = CertificateStore(store, dm)
        csms = settings.csms
        self.network_profiles = NetworkProfiles(
            store,
            dm,
            has_csms_root=lambda: bool(csms.ca_file or self.certificates.trust_anchors()),
            has_client_certificate=lambda: bool(csms.client_cert and csms.client_key),
        )
        self.security = Security(self.certificates)
        self.provisioning = Provisioning(dm, self.network_profiles)
        self._apply_configuration()

        self.dispatcher = Dispatcher()
        self.availability = Availability(dm, station.evses, self.clock)
        self.registration = Registration(
            station, dm, self.availability, self.dispatcher, self.outbox, self.clock
        )
        self.reports = Reports(dm, self.outbox, self.clock)
        for action, handler in (
            ("GetVariables", self.provisioning.get_variables),
            ("SetVariables", self.provisioning.set_variables),
            ("SetNetworkProfile", self.provisioning.set_network_profile),
            ("GetBaseReport", self.reports.get_base_report),
            ("GetReport", self.reports.get_report),
            ("TriggerMessage", self.registration.trigger_message),
            ("InstallCertificate", self.security.install_certificate),
            ("GetInstalledCertificateIds", self.security.get_installed_certificate_ids),
            ("DeleteCertificate", self.security.delete_certificate),
        ):
            self.dispatcher.register(action, handler)

    def _apply_configuration(self) -> None:
        """Apply configuration values that changed since they were last applied.

        A value from the file is written at first start and again whenever the file changes it;
        in between, what the CSMS or the OEM set (SetVariables, SetNetworkProfile) stays.
        """
        settings, dm = self.settings, self.device_model
        applied = self.store.applied_config()

        def changed(key: str, value: str) -> str | None:
            digest = _digest(key, value)
            return digest if applied.get(key) != digest else None

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
            name = f'device_model."{key}"'
            try:
                variable = dm.resolve(key)
            except UnknownKey as e:
                raise ConfigError(f"{name}: {e}") from None
            if variable.definition.source != "stored":
                raise ConfigError(f"{name}: the station keeps this value itself; it cannot be set")
            wanted.append((name, variable, device_model_text(raw)))

        if csms.url:  # slot 1: the installer's connection
            data = {
                "ocppCsmsUrl": csms.url,
                "securityProfile": csms.security_profile,
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppInterface": "Wired0",
                "messageTimeout": dm.int_value("OCPPCommCtrlr.MessageTimeout[Default]"),
            }
            digest = changed("csms.url", repr(sorted(data.items())))
            if digest is not None:
                # The installer's file may set any profile, including a lower one.
                why = check_connection_data(data, 0)
                if why is not None:  # pragma: no cover - the settings already checked the URL
                    raise ConfigError(f"csms.url: {why.info}")
                self.network_profiles.save(CONFIG_SLOT, data)
                self.store.save_variable_values([], [("csms.url", digest)])

        changes: list[tuple[Variable, str, str]] = []
        digests: list[tuple[str, str]] = []
        for key, variable, value in wanted:
            digest = changed(key, value)
            if digest is None:
                continue
            why = dm.check(variable, value)
            if why is not None:
                raise ConfigError(f"{key}: {why.info}")
            changes.append((variable, "Actual", value))
            digests.append((key, digest))
        if changes:
            dm.write(changes, digests)
            for variable, _, _ in changes:
                log.info("configuration applied to %s", variable.key)

        if csms.security_profile in (1, 2) and dm[PASSWORD].read() is None:
            raise ConfigError(
                f"csms.password: required for security_profile {csms.security_profile}"
            )
