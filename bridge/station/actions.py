"""Which OCPP actions the station executes, sends itself, and forwards for the OEM (one place).

Used by the dispatcher, the MQTT API and `ocpp-bridge validate`, so that "valid" means "accepted
by the service".
"""

from __future__ import annotations

from functools import cache
from typing import Final

from bridge.versions import OCPP201

# CSMS -> station actions the station executes itself, per version.
IMPLEMENTED: Final[dict[str, frozenset[str]]] = {
    OCPP201: frozenset(
        {
            "DeleteCertificate",
            "GetBaseReport",
            "GetInstalledCertificateIds",
            "GetReport",
            "GetTransactionStatus",
            "GetVariables",
            "InstallCertificate",
            "SetNetworkProfile",
            "SetVariables",
            "TriggerMessage",
        }
    )
}

# Actions only a Charging Station sends (OCPP 2.0.1, CS -> CSMS). DataTransfer goes both ways
# and is not listed.
STATION_TO_CSMS: Final[dict[str, frozenset[str]]] = {
    OCPP201: frozenset(
        {
            "Authorize",
            "BootNotification",
            "ClearedChargingLimit",
            "FirmwareStatusNotification",
            "Get15118EVCertificate",
            "GetCertificateStatus",
            "Heartbeat",
            "LogStatusNotification",
            "MeterValues",
            "NotifyChargingLimit",
            "NotifyCustomerInformation",
            "NotifyDisplayMessages",
            "NotifyEVChargingNeeds",
            "NotifyEVChargingSchedule",
            "NotifyEvent",
            "NotifyMonitoringReport",
            "NotifyReport",
            "PublishFirmwareStatusNotification",
            "ReportChargingProfiles",
            "ReservationStatusUpdate",
            "SecurityEventNotification",
            "SignCertificate",
            "StatusNotification",
            "TransactionEvent",
        }
    )
}

# Station -> CSMS messages the station makes from its own state: the OEM drives them through the
# session messages (cp_status, authorization, ...), never through ocpp_message.
OWNED: Final[dict[str, frozenset[str]]] = {
    OCPP201: frozenset(
        {
            "Authorize",
            "BootNotification",
            "Heartbeat",
            "NotifyMonitoringReport",
            "NotifyReport",
            "StatusNotification",
            "TransactionEvent",
        }
    )
}

# Transaction-related messages (OCPP 2.0.1 part 2, E): written to the store and delivered after
# any outage.
# MeterValues joins them when OCPPCommCtrlr.QueueAllMessages is true.
TRANSACTION_RELATED: Final = frozenset({"TransactionEvent", "SecurityEventNotification"})


@cache
def implemented(version: str) -> frozenset[str]:
    return IMPLEMENTED.get(version, frozenset())


@cache
def forwarded(version: str) -> frozenset[str]:
    """Station -> CSMS actions the OEM may send through ocpp_message (the bridge sends them to
    the CSMS as its own CALL); DataTransfer too."""
    to_csms = STATION_TO_CSMS.get(version, frozenset())
    if not to_csms:
        return frozenset()
    return (to_csms - OWNED.get(version, frozenset())) | {"DataTransfer"}
