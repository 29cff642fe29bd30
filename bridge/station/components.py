"""The standardized OCPP 2.0.1 components and variables this station reports.

Every variable the OCPP 2.0.1 appendix (and a certified station's configuration) requires for the
controllers we ship is here, plus the optional ones the bridge uses. Defaults follow that
station's device model (`tests/data/ocpp201-device-model.json`, which the tests compare against);
where this file deviates it says why.

`source`:
- "stored": persisted in the store when set (SetVariables, or `[device_model]` in the config);
- "runtime": kept in memory by the code that owns it (availability, clock, counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal


class DataType(StrEnum):
    string = "string"
    decimal = "decimal"
    integer = "integer"
    dateTime = "dateTime"  # noqa: N815 - OCPP's spelling
    boolean = "boolean"
    OptionList = "OptionList"
    SequenceList = "SequenceList"
    MemberList = "MemberList"


class Mutability(StrEnum):
    ReadOnly = "ReadOnly"
    WriteOnly = "WriteOnly"
    ReadWrite = "ReadWrite"


ATTRIBUTE_TYPES: Final = ("Actual", "Target", "MinSet", "MaxSet")

# Component names with an EVSE (and connector) address instead of an instance name.
EVSE: Final = "EVSE"
CONNECTOR: Final = "Connector"


@dataclass(frozen=True, slots=True)
class VariableDef:
    component: str
    name: str
    data_type: DataType
    instance: str | None = None
    unit: str | None = None
    mutability: Mutability = Mutability.ReadWrite
    default: str | None = None
    min_limit: Decimal | None = None
    max_limit: Decimal | None = None
    values_list: tuple[str, ...] | None = None
    # Attribute types besides Actual, with their (read-only) values, e.g. EVSE.Power MaxSet.
    extra_attributes: tuple[str, ...] = ()
    source: Literal["stored", "runtime"] = "stored"
    constant: bool = False  # the value never changes while the station runs
    reboot_required: bool = False  # a new value takes effect after a restart only
    supports_monitoring: bool = True

    @property
    def attributes(self) -> tuple[str, ...]:
        return ("Actual", *self.extra_attributes)

    @property
    def text(self) -> str:
        return self.name + (f"[{self.instance}]" if self.instance else "")


RO, WO, RW = Mutability.ReadOnly, Mutability.WriteOnly, Mutability.ReadWrite
T = DataType

# What this station's meter (through the OEM's meter_values) can measure, in MeasurandEnumType
# order: every measurand bridge/station/meter_values.py maps (SESSION_API "meter_values response").
MEASURANDS: Final = (
    "Current.Import",
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Frequency",
    "Power.Active.Import",
    "Power.Factor",
    "SoC",
    "Voltage",
)
AVAILABILITY_STATES: Final = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
NETWORK_SLOTS: Final = ("1", "2", "3")


def _d(value: int | str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _var(
    component: str,
    name: str,
    data_type: DataType,
    default: str | None,
    *,
    instance: str | None = None,
    unit: str | None = None,
    mutability: Mutability = RW,
    min_limit: int | str | None = None,
    max_limit: int | str | None = None,
    values: tuple[str, ...] | None = None,
    extra_attributes: tuple[str, ...] = (),
    source: Literal["stored", "runtime"] = "stored",
    constant: bool = False,
) -> VariableDef:
    return VariableDef(
        component=component,
        name=name,
        data_type=data_type,
        instance=instance,
        unit=unit,
        mutability=mutability,
        default=default,
        min_limit=_d(min_limit),
        max_limit=_d(max_limit),
        values_list=values,
        extra_attributes=extra_attributes,
        source=source,
        constant=constant,
    )


def _not_available(component: str, instance: str | None = None) -> VariableDef:
    """An optional functional block this station does not implement: Available = false."""
    return _var(
        component, "Available", T.boolean, "false", instance=instance, mutability=RO, constant=True
    )


def _availability(component: str) -> tuple[VariableDef, ...]:
    """AvailabilityState and Available, kept by the station at run time (G01, G03)."""
    return (
        _var(
            component,
            "AvailabilityState",
            T.OptionList,
            "Available",
            mutability=RO,
            values=AVAILABILITY_STATES,
            source="runtime",
        ),
        _var(component, "Available", T.boolean, "true", mutability=RO, source="runtime"),
    )


def _supply_phases(component: str) -> VariableDef:
    return _var(
        component,
        "SupplyPhases",
        T.integer,
        "3",
        mutability=RO,
        min_limit=0,
        max_limit=3,
        constant=True,
    )


_PER_MESSAGE = ("GetReport", "GetVariables", "SetVariables")

# Components of the station itself (EVSE and Connector come from `evse_variables`).
STATION_VARIABLES: Final[tuple[VariableDef, ...]] = (
    # AlignedDataCtrlr (J01)
    _var("AlignedDataCtrlr", "Enabled", T.boolean, "true"),
    _var("AlignedDataCtrlr", "Available", T.boolean, "true", mutability=RO, constant=True),
    _var("AlignedDataCtrlr", "Interval", T.integer, "900", unit="s", min_limit=0),
    _var(
        "AlignedDataCtrlr",
        "Measurands",
        T.MemberList,
        "Energy.Active.Import.Register,Voltage",
        values=MEASURANDS,
    ),
    _var("AlignedDataCtrlr", "SendDuringIdle", T.boolean, "false"),
    _var("AlignedDataCtrlr", "TxEndedInterval", T.integer, "60", unit="s", min_limit=0),
    _var(
        "AlignedDataCtrlr",
        "TxEndedMeasurands",
        T.MemberList,
        "Energy.Active.Import.Register",
        values=MEASURANDS,
    ),
    # AuthCtrlr (C)
    _var("AuthCtrlr", "Enabled", T.boolean, "true"),
    _var("AuthCtrlr", "AuthorizeRemoteStart", T.boolean, "true"),
    _var("AuthCtrlr", "LocalAuthorizeOffline", T.boolean, "true"),
    _var("AuthCtrlr", "LocalPreAuthorize", T.boolean, "true"),
    _var("AuthCtrlr", "OfflineTxForUnknownIdEnabled", T.boolean, "true"),
    # AuthCacheCtrlr (C10-C12): bridge.station.auth_cache. LifeTime is in seconds since the
    # entry's last use, though neither the reference nor the OCPP appendix gives it a unit.
    _var("AuthCacheCtrlr", "Available", T.boolean, "true", mutability=RO, constant=True),
    _var("AuthCacheCtrlr", "Enabled", T.boolean, "true"),
    _var("AuthCacheCtrlr", "LifeTime", T.integer, "86400", min_limit=1),
    _var("AuthCacheCtrlr", "Policy", T.OptionList, "LRU", values=("LRU", "FIFO")),
    # Bytes in use; maxLimit the most the cache may take (C10.FR.07: entries make room).
    _var(
        "AuthCacheCtrlr",
        "Storage",
        T.integer,
        "0",
        unit="B",
        mutability=RO,
        max_limit=262144,
        source="runtime",
    ),
    _var("AuthCacheCtrlr", "DisablePostAuthorize", T.boolean, "false"),
    # LocalAuthListCtrlr (D01, D02): bridge.station.local_list. Entries and Storage are the
    # list's size; their maxLimits what fits (a bigger SendLocalList fails, D01.FR.12).
    _var("LocalAuthListCtrlr", "Available", T.boolean, "true", mutability=RO, constant=True),
    _var("LocalAuthListCtrlr", "Enabled", T.boolean, "true"),
    _var(
        "LocalAuthListCtrlr",
        "Entries",
        T.integer,
        "0",
        mutability=RO,
        max_limit=10000,
        source="runtime",
    ),
    _var("LocalAuthListCtrlr", "ItemsPerMessage", T.integer, "250", mutability=RO, constant=True),
    _var("LocalAuthListCtrlr", "BytesPerMessage", T.integer, "65536", mutability=RO, constant=True),
    _var(
        "LocalAuthListCtrlr",
        "Storage",
        T.integer,
        "0",
        unit="B",
        mutability=RO,
        max_limit=4194304,
        source="runtime",
    ),
    _var("LocalAuthListCtrlr", "DisablePostAuthorize", T.boolean, "false"),
    # ReservationCtrlr (H01-H04): bridge.station.reservations. NonEvseSpecific: ReserveNow
    # without evseId is accepted (H01.FR.18); `[device_model]` may set it false (H01.FR.19).
    _var("ReservationCtrlr", "Available", T.boolean, "true", mutability=RO, constant=True),
    _var("ReservationCtrlr", "Enabled", T.boolean, "true"),
    _var("ReservationCtrlr", "NonEvseSpecific", T.boolean, "true", mutability=RO),
    # Optional functional blocks not implemented (yet): say so instead of staying silent.
    _not_available("SmartChargingCtrlr"),
    _not_available("MonitoringCtrlr"),
    _not_available("DisplayMessageCtrlr"),
    _not_available("TariffCostCtrlr", "Tariff"),
    _not_available("TariffCostCtrlr", "Cost"),
    # ChargingStation
    *_availability("ChargingStation"),
    _supply_phases("ChargingStation"),
    _var(
        "ChargingStation", "Model", T.string, None, mutability=RO, source="runtime", constant=True
    ),
    _var(
        "ChargingStation",
        "VendorName",
        T.string,
        None,
        mutability=RO,
        source="runtime",
        constant=True,
    ),
    # ReadWrite as in the reference: the CSMS may set it, e.g. to clear a problem it handled.
    _var("ChargingStation", "Problem", T.boolean, "false"),
    # ClockCtrlr (B, heartbeat time source)
    _var("ClockCtrlr", "DateTime", T.dateTime, None, mutability=RO, source="runtime"),
    _var(
        "ClockCtrlr",
        "TimeSource",
        T.SequenceList,
        "Heartbeat",
        values=(
            "Heartbeat",
            "NTP",
            "GPS",
            "RealTimeClock",
            "MobileNetwork",
            "RadioTimeTransmitter",
        ),
    ),
    # A04: a clock adjustment beyond this many seconds is reported as the security event
    # SettingSystemTime (0: never). The reference gives no default; 20 s as MicroOcpp.
    _var("ClockCtrlr", "TimeAdjustmentReportingThreshold", T.integer, "20", min_limit=0),
    # DeviceDataCtrlr (B05, B06, B07/B08): limits of what one message may carry.
    *(
        _var(
            "DeviceDataCtrlr",
            "ItemsPerMessage",
            T.integer,
            "100",
            instance=kind,
            mutability=RO,
            constant=True,
        )
        for kind in _PER_MESSAGE
    ),
    *(
        _var(
            "DeviceDataCtrlr",
            "BytesPerMessage",
            T.integer,
            "65536",
            instance=kind,
            mutability=RO,
            constant=True,
        )
        for kind in _PER_MESSAGE
    ),
    _var(
        "DeviceDataCtrlr", "ConfigurationValueSize", T.integer, "1000", mutability=RO, constant=True
    ),
    _var("DeviceDataCtrlr", "ReportingValueSize", T.integer, "2500", mutability=RO, constant=True),
    _var("DeviceDataCtrlr", "ValueSize", T.integer, "2500", mutability=RO, constant=True),
    # OCPPCommCtrlr (B, connection)
    _var(
        "OCPPCommCtrlr",
        "ActiveNetworkProfile",
        T.integer,
        "1",
        mutability=RO,
        source="runtime",
    ),
    _var(
        "OCPPCommCtrlr",
        "FileTransferProtocols",
        T.MemberList,
        "HTTPS",
        mutability=RO,
        values=("FTP", "FTPS", "HTTP", "HTTPS", "SFTP"),
        constant=True,
    ),
    _var("OCPPCommCtrlr", "HeartbeatInterval", T.integer, "1800", unit="s", min_limit=1),
    _var(
        "OCPPCommCtrlr",
        "MessageTimeout",
        T.integer,
        "60",
        instance="Default",
        unit="s",
        mutability=RO,
        min_limit=1,
    ),
    _var(
        "OCPPCommCtrlr",
        "MessageAttemptInterval",
        T.integer,
        "10",
        instance="TransactionEvent",
        unit="s",
        min_limit=0,
    ),
    _var(
        "OCPPCommCtrlr",
        "MessageAttempts",
        T.integer,
        "5",
        instance="TransactionEvent",
        min_limit=0,
    ),
    # B10.FR.01: a new priority is used from the next start (or Reset): RebootRequired.
    VariableDef(
        "OCPPCommCtrlr",
        "NetworkConfigurationPriority",
        T.SequenceList,
        default="1",
        values_list=NETWORK_SLOTS,
        reboot_required=True,
    ),
    _var("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", T.integer, "3", min_limit=1),
    _var("OCPPCommCtrlr", "OfflineThreshold", T.integer, "60", unit="s", min_limit=0),
    _var("OCPPCommCtrlr", "QueueAllMessages", T.boolean, "false"),
    _var("OCPPCommCtrlr", "ResetRetries", T.integer, "3", min_limit=0),
    # Seconds (OCPP-J 5.3), but neither the reference nor the OCPP appendix gives them a unit.
    _var("OCPPCommCtrlr", "RetryBackOffRandomRange", T.integer, "2", min_limit=0),
    _var("OCPPCommCtrlr", "RetryBackOffRepeatTimes", T.integer, "2", min_limit=0),
    _var("OCPPCommCtrlr", "RetryBackOffWaitMinimum", T.integer, "1", min_limit=0),
    _var("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", T.boolean, "true"),
    _var("OCPPCommCtrlr", "WebSocketPingInterval", T.integer, "30", unit="s", min_limit=0),
    # SampledDataCtrlr (J02)
    _var("SampledDataCtrlr", "Enabled", T.boolean, "true"),
    _var("SampledDataCtrlr", "Available", T.boolean, "true", mutability=RO, constant=True),
    _var("SampledDataCtrlr", "TxEndedInterval", T.integer, "60", unit="s", min_limit=0),
    _var(
        "SampledDataCtrlr",
        "TxEndedMeasurands",
        T.MemberList,
        "Energy.Active.Import.Register,Current.Import",
        values=MEASURANDS,
    ),
    _var(
        "SampledDataCtrlr",
        "TxStartedMeasurands",
        T.MemberList,
        "Energy.Active.Import.Register,Current.Import",
        values=MEASURANDS,
    ),
    _var("SampledDataCtrlr", "TxUpdatedInterval", T.integer, "120", unit="s", min_limit=0),
    # The reference default also lists Power.Reactive.Import, which our meter interface
    # (meter_values) does not carry.
    _var(
        "SampledDataCtrlr",
        "TxUpdatedMeasurands",
        T.MemberList,
        "Energy.Active.Import.Register,Current.Import,Voltage,Power.Active.Import,Frequency",
        values=MEASURANDS,
    ),
    # SecurityCtrlr (A, M)
    _var("SecurityCtrlr", "AdditionalRootCertificateCheck", T.boolean, "false", mutability=RO),
    # No default: a well-known default password is a vulnerability; [csms] password sets it.
    _var(
        "SecurityCtrlr",
        "BasicAuthPassword",
        T.string,
        None,
        mutability=WO,
        min_limit=16,
        max_limit=40,
    ),
    _var(
        "SecurityCtrlr",
        "CertificateEntries",
        T.integer,
        "0",
        mutability=RO,
        max_limit=50,
        source="runtime",
    ),
    _var(
        "SecurityCtrlr",
        "Identity",
        T.string,
        None,
        mutability=RO,
        max_limit=48,
        source="runtime",
        constant=True,
    ),
    _var("SecurityCtrlr", "MaxCertificateChainSize", T.integer, "10000", mutability=RO),
    # Both from the configuration: [station] vendor and [csms] security_profile.
    _var("SecurityCtrlr", "OrganizationName", T.string, None, max_limit=50),
    _var(
        "SecurityCtrlr", "SecurityProfile", T.integer, "0", mutability=RO, min_limit=0, max_limit=3
    ),
    # TxCtrlr (E)
    _var("TxCtrlr", "Enabled", T.boolean, "true"),
    _var("TxCtrlr", "EVConnectionTimeOut", T.integer, "120", unit="s", min_limit=0),
    _var("TxCtrlr", "MaxEnergyOnInvalidId", T.integer, "1000", min_limit=0),  # Wh
    _var("TxCtrlr", "StopTxOnEVSideDisconnect", T.boolean, "true", mutability=RO),
    _var("TxCtrlr", "StopTxOnInvalidId", T.boolean, "true"),
    _var("TxCtrlr", "TxBeforeAcceptedEnabled", T.boolean, "false"),
    # Default as in the Josev MQTT API's ocpp_message example (the reference's is
    # PowerPathClosed): the transaction starts at whichever comes first, the EV plugged in or the
    # driver authorized.
    _var(
        "TxCtrlr",
        "TxStartPoint",
        T.MemberList,
        "Authorized,EVConnected",
        values=(
            "ParkingBayOccupancy",
            "EVConnected",
            "Authorized",
            "DataSigned",
            "PowerPathClosed",
            "EnergyTransfer",
        ),
    ),
    _var(
        "TxCtrlr",
        "TxStopPoint",
        T.MemberList,
        "EVConnected,Authorized",
        values=(
            "ParkingBayOccupancy",
            "EVConnected",
            "Authorized",
            "PowerPathClosed",
            "EnergyTransfer",
        ),
    ),
)

EVSE_VARIABLES: Final[tuple[VariableDef, ...]] = (
    *_availability(EVSE),
    # Actual is the instantaneous power; MaxSet (and maxLimit) the most this EVSE can deliver.
    _var(
        EVSE,
        "Power",
        T.decimal,
        "0",
        unit="W",
        mutability=RO,
        max_limit=22000,
        extra_attributes=("MaxSet",),
        source="runtime",
    ),
    _supply_phases(EVSE),
)

CONNECTOR_VARIABLES: Final[tuple[VariableDef, ...]] = (
    *_availability(CONNECTOR),
    # ConnectorEnumType value; "Unknown" until the OEM preloads its real type (e.g. "sType2").
    _var(CONNECTOR, "ConnectorType", T.string, "Unknown", mutability=RO, constant=True),
    _supply_phases(CONNECTOR),
)
