"""The charging station as plain Python: device model, certificates, network profiles, and the one
dispatcher through which both the CSMS and the OEM execute OCPP requests."""

from __future__ import annotations

import logging

from bridge.config import Settings
from bridge.station.availability import Availability
from bridge.station.configuration import apply_configuration
from bridge.station.device_model import DeviceModel
from bridge.station.dispatcher import Dispatcher
from bridge.station.outbox import Outbox
from bridge.station.provisioning.boot import Registration
from bridge.station.provisioning.network_profiles import NetworkProfiles
from bridge.station.provisioning.reports import Reports
from bridge.station.provisioning.variables import Provisioning
from bridge.station.security import CertificateStore, Security, check_password
from bridge.store import Store
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

PASSWORD = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name


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
        apply_configuration(settings, dm, self.network_profiles, store)  # ConfigError: unchanged

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
