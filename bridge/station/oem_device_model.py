"""The OEM's `device_model` answer: who the station is, where its CSMS is, what its EVSEs are,
and the OEM's own components of the device model (README "device_model").

Its values apply like the configuration file's: at first start and again whenever the OEM
changes them; in between, what the CSMS set (SetVariables, SetNetworkProfile) stays. Each value
leaves a digest in `config_applied` under an `oem.` key. `OemDeviceModel.plan` checks the whole
answer and changes nothing (an unusable answer is refused whole, with one sentence naming the
field); `OemPlan.write` then stores it in one store transaction.

What is no device-model variable of its own (the identity, the BootNotification fields, each
EVSE's iso15118_id and power, the OEM's component definitions) is kept in the `oem_value` table
and loaded at start: a station that booted with the OEM's identity keeps it while the OEM is slow
to answer after a restart. Where the configuration file has the same value ([station] id, model,
vendor, serial_number, firmware_version) the newer one wins, as for network profile slot 1: a
file changed since the OEM's value was applied overrides it until the OEM changes that value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

from bridge.config import IDENTITY_PATTERN, StationSettings
from bridge.station.components import EVSE_VARIABLES, DataType, Mutability, VariableDef
from bridge.station.connectivity import PASSWORD_RECONNECT_DELAY
from bridge.station.device_model import ComponentRef, DeviceModel, Variable, check_value
from bridge.station.effects import Reconnect
from bridge.station.provisioning.network_profiles import CONFIG_SLOT, check_connection_data
from bridge.station.security import check_password
from bridge.store import Store

if TYPE_CHECKING:
    from bridge.station import Station

log = logging.getLogger(__name__)

PASSWORD: Final = "SecurityCtrlr.BasicAuthPassword"  # noqa: S105 - a variable name
SECURITY_PROFILE: Final = "SecurityCtrlr.SecurityProfile"
ORGANIZATION_NAME: Final = "SecurityCtrlr.OrganizationName"
MESSAGE_TIMEOUT: Final = "OCPPCommCtrlr.MessageTimeout[Default]"

# The answer's fields that the configuration file also has: field -> [station] key.
FILE_FIELDS: Final = {
    "identity": "id",
    "model": "model",
    "vendor": "vendor",
    "serial_number": "serial_number",
    "firmware_version": "firmware_version",
}
# BootNotificationRequest: ChargingStationType and ModemType (field: min, max length, required).
BOOT_FIELDS: Final = {
    "model": (1, 20, True),
    "vendor": (1, 50, True),
    "serial_number": (0, 25, True),
    "firmware_version": (0, 50, True),
    "sim_iccid": (0, 20, False),
    "sim_imsi": (0, 20, False),
}
# OCPP 2.0.1 ConnectorEnumType.
CONNECTOR_TYPES: Final = frozenset(
    {
        *("cCCS1", "cCCS2", "cG105", "cTesla", "cType1", "cType2"),
        *("s309-1P-16A", "s309-1P-32A", "s309-3P-16A", "s309-3P-32A"),
        *("sBS1361", "sCEE-7-7", "sType2", "sType3"),
        *("Other1PhMax16A", "Other1PhOver16A", "Other3Ph", "Pan"),
        *("wInductive", "wResonant", "Undetermined", "Unknown"),
    }
)
# OCPP 2.0.1 identifierString, as ComponentType/VariableType name and instance (at most 50).
IDENTIFIER: Final = re.compile(r"[A-Za-z0-9*\-_=+|@.]{1,50}")
URL_LIMIT: Final = 512  # NetworkConnectionProfileType.ocppCsmsUrl
VALUE_LIMIT: Final = 2500  # DeviceDataCtrlr.ValueSize
UNIT_LIMIT: Final = 16  # VariableCharacteristicsType.unit
VALUES_LIST_LIMIT: Final = 1000  # VariableCharacteristicsType.valuesList
LIST_TYPES: Final = (DataType.OptionList, DataType.MemberList, DataType.SequenceList)
POWER: Final = next(d for d in EVSE_VARIABLES if d.name == "Power")
_DECIMAL_ID = re.compile(r"[1-9][0-9]{0,8}")

Changed = Callable[[str, str], bool]  # (digest key, value): new since last applied? (recorded)
Check = Callable[[str, Variable, str, str], None]  # (digest key, variable, value, field)


def digest(key: str, value: str) -> str:
    """As the configuration's digests (config_applied): the value may be a password."""
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()


class Refused(Exception):
    """An unusable answer: the message names the field and says why, never with its value."""


def decimal_evse(evse_id: str, evses: int) -> int | None:
    """`"2"` -> 2 when the station has that many EVSEs; anything else None."""
    if isinstance(evse_id, str) and _DECIMAL_ID.fullmatch(evse_id) and int(evse_id) <= evses:
        return int(evse_id)
    return None


@dataclass
class OemPlan:
    """What the answer changes, already checked."""

    fields: dict[str, Any] = field(default_factory=dict)  # identity, model, ...: new values
    rows: list[tuple[str, str, str | None]] = field(default_factory=list)  # oem_value rows
    deleted_rows: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None  # network profile slot 1
    changes: list[tuple[Variable, str, str]] = field(default_factory=list)
    digests: list[tuple[str, str]] = field(default_factory=list)
    evses: list[dict[str, Any]] | None = None  # the new [{ocpp_id, iso15118_id, power_w}]
    components: list[dict[str, Any]] | None = None  # the new OEM variable definitions
    added: list[Variable] = field(default_factory=list)
    removed: list[Variable] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)  # stored values of removed OEM variables
    warnings: list[str] = field(default_factory=list)

    def write(self, station: Station) -> None:
        """Everything in one store transaction: when a write fails, the store rolls back."""
        store = station.store
        with store.transaction():
            store.save_oem_values(self.rows, self.deleted_rows)
            if self.forget:
                store.delete_variable_values(self.forget)
            if self.profile is not None:
                station.network_profiles.save(CONFIG_SLOT, self.profile)
            # Last: its values reach memory only once the store took them.
            station.device_model.write(self.changes, self.digests)


class OemDeviceModel:
    """The OEM's values the station uses (the configuration file's where the OEM gave none)."""

    def __init__(self, settings: StationSettings, store: Store) -> None:
        self.settings = settings
        self._store = store
        self._values: dict[str, Any] = {}
        superseded = []
        for name, (text, replaces) in store.oem_values().items():
            config = FILE_FIELDS.get(name)
            if config is not None and replaces != getattr(settings, config):
                superseded.append(name)
                continue
            self._values[name] = json.loads(text)
        if superseded:
            store.save_oem_values([], superseded)
            log.info(
                "the configuration file changed [station] %s since the OEM's value was applied: "
                "the file's value is used",
                ", ".join(FILE_FIELDS[name] for name in superseded),
            )
        # The OEM's components, for DeviceModel.build; `attach` keeps those it took.
        self.variables = [_variable(entry) for entry in self._values.get("components", [])]
        self._by_iso: dict[str, int] = {}
        self._by_number: dict[int, str] = {}
        self._index_evses()
        self._device_model: DeviceModel | None = None

    def attach(self, device_model: DeviceModel) -> None:
        """Bind the station's variables to these values (once, after DeviceModel.build)."""
        self._device_model = dm = device_model
        self.variables = [v for v in self.variables if dm.clash(v) is v]
        dm.bind("ChargingStation.Model", lambda: self.model)
        dm.bind("ChargingStation.VendorName", lambda: self.vendor)
        for evse in range(1, len(self.settings.evses) + 1):
            _set_power(dm, evse, self._power(evse))

    # --- the values

    def _value(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        config = FILE_FIELDS.get(name)
        return getattr(self.settings, config) if config is not None else None

    @property
    def identity(self) -> str:
        return str(self._value("identity"))

    def set_identity(self, identity: str) -> None:
        """A new identity from the OEM's set_ocpp_network_connection: kept like the device
        model's (until the file's [station] id or the OEM's device_model changes it)."""
        self._store.save_oem_values([("identity", json.dumps(identity), self.settings.id)])
        self._values["identity"] = identity

    @property
    def model(self) -> str:
        return str(self._value("model"))

    @property
    def vendor(self) -> str:
        return str(self._value("vendor"))

    def charging_station(self) -> dict[str, Any]:
        """BootNotification's chargingStation."""
        out: dict[str, Any] = {"model": self.model, "vendorName": self.vendor}
        if serial := self._value("serial_number"):
            out["serialNumber"] = serial
        if firmware := self._value("firmware_version"):
            out["firmwareVersion"] = firmware
        modem = {
            key: value
            for key, name in (("iccid", "sim_iccid"), ("imsi", "sim_imsi"))
            if (value := self._value(name))
        }
        if modem:
            out["modem"] = modem
        return out

    def evse_number(self, evse_id: str) -> int | None:
        """The OCPP EVSE id a session message's `evse_id` names: through the answer's
        iso15118_id mapping, else the decimal OCPP id; None when the station has no such EVSE."""
        number = self._by_iso.get(evse_id) if isinstance(evse_id, str) else None
        return number if number is not None else decimal_evse(evse_id, len(self.settings.evses))

    def evse_name(self, evse: int) -> str:
        """The `evse_id` session messages to the OEM use for an OCPP EVSE id."""
        return self._by_number.get(evse, str(evse))

    def _index_evses(self) -> None:
        self._by_iso = {e["iso15118_id"]: e["ocpp_id"] for e in self._values.get("evses", [])}
        self._by_number = {number: iso for iso, number in self._by_iso.items()}

    def _power(self, evse: int) -> str | None:
        for entry in self._values.get("evses", []):
            if entry["ocpp_id"] == evse:
                return str(entry["power_w"])
        return None

    # --- a new answer

    def apply(self, station: Station, data: dict[str, Any]) -> bool:
        """Check the answer, store it, use it; False when it was refused (nothing changed)."""
        if data.get("message_type") == "CallError":
            log.error("the OEM answered device_model with an error; nothing applied")
            return False
        try:
            plan = self.plan(station, data)
        except Refused as e:
            log.error("device_model answer refused, nothing applied: %s", e)
            return False
        except Exception:  # a bug must not stop the start-up
            log.exception("checking the OEM's device_model failed; nothing applied")
            return False
        before = self._connection_state(station)
        mark = len(station.effects.items)
        try:
            plan.write(station)
        except Exception:
            log.exception("storing the OEM's device_model failed; nothing applied")
            return False
        self._adopt(station, plan)
        for warning in plan.warnings:
            log.warning("device_model: %s", warning)
        self._reconnect(station, before, mark)
        log.info(
            "device_model from the OEM applied: %d values changed, %d OEM variables",
            len(plan.digests) + len(plan.added) + len(plan.removed),
            len(self.variables),
        )
        return True

    def plan(self, station: Station, data: dict[str, Any]) -> OemPlan:
        """What the answer changes; Refused names the first unusable part. Nothing is written."""
        dm = station.device_model
        applied = station.store.applied_config()
        plan = OemPlan()

        def changed(key: str, value: str) -> bool:
            new = digest(key, value)
            if applied.get(key) == new:
                return False
            plan.digests.append((key, new))
            return True

        def variable(key: str, target: Variable, value: str, where: str) -> None:
            why = dm.check(target, value)
            if why is not None:
                raise Refused(f"{where}: {why.info}")
            if changed(key, value):
                plan.changes.append((target, "Actual", value))

        # Who the station is (BootNotification, SecurityCtrlr.Identity).
        identity = data.get("identity")
        if not isinstance(identity, str) or not re.fullmatch(IDENTITY_PATTERN, identity):
            raise Refused("identity: must be 1 to 48 characters from A-Z a-z 0-9 * - _ = + | @ .")
        values: dict[str, Any] = {"identity": identity}
        for name, (shortest, longest, required) in BOOT_FIELDS.items():
            value = data.get(name)
            if value is None and not required:
                values[name] = None
                continue
            if not isinstance(value, str) or not shortest <= len(value) <= longest:
                raise Refused(
                    f"{name}: must be {shortest} to {longest} characters (BootNotification)"
                )
            values[name] = value
        for name, value in values.items():
            if not changed(f"oem.{name}", json.dumps(value)):
                continue
            plan.fields[name] = value
            if value is None:
                plan.deleted_rows.append(name)
            else:
                config = FILE_FIELDS.get(name)
                replaces = getattr(self.settings, config) if config is not None else None
                plan.rows.append((name, json.dumps(value), replaces))
            if name == "vendor":  # like [station] vendor
                why = dm.check(dm[ORGANIZATION_NAME], value)
                if why is not None:
                    raise Refused(f"vendor: {why.info}")
                plan.changes.append((dm[ORGANIZATION_NAME], "Actual", value))

        self._plan_csms(station, data, identity, plan, changed, variable)
        by_iso = self._plan_evses(station, data, plan, variable)
        self._plan_components(station, data, by_iso, plan)
        return plan

    def _plan_csms(
        self,
        station: Station,
        data: dict[str, Any],
        identity: str,
        plan: OemPlan,
        changed: Changed,
        variable: Check,
    ) -> None:
        """Network profile slot 1, SecurityCtrlr.SecurityProfile and BasicAuthPassword."""
        dm = station.device_model
        profile = data.get("security_profile")
        if isinstance(profile, bool) or profile not in (1, 2, 3):
            raise Refused("security_profile: must be 1, 2 or 3")
        url = data.get("ocpp_csms_url")
        if not isinstance(url, str) or len(url) > URL_LIMIT:
            raise Refused(f"ocpp_csms_url: must be a URL of at most {URL_LIMIT} characters")
        url = url.rstrip("/")
        connection = {
            "ocppCsmsUrl": url,
            "securityProfile": profile,
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppInterface": "Wired0",
            "messageTimeout": dm.int_value(MESSAGE_TIMEOUT) or 30,
        }
        # Like the installer's file, the OEM may set any profile (no downgrade check).
        why = check_connection_data(connection, 0)
        if why is not None:
            raise Refused(f"ocpp_csms_url: {why.info}")
        if url.rsplit("/", 1)[-1] == identity:
            raise Refused("ocpp_csms_url: must not end with the identity (the station appends it)")
        csms = station.settings.csms
        if profile == 3 and not (csms.client_cert and csms.client_key):
            raise Refused("security_profile: 3 needs [csms] client_cert and client_key")
        password = data.get("basic_auth_password")
        if not isinstance(password, str):
            raise Refused("basic_auth_password: must be a string")
        if password:
            why = check_password(password)
            if why is not None:
                raise Refused(f"basic_auth_password: {why.info}")
        elif profile in (1, 2):
            raise Refused(f"basic_auth_password: security profile {profile} needs one")

        if changed("oem.csms", json.dumps([url, profile])):
            plan.profile = connection
        variable("oem.security_profile", dm[SECURITY_PROFILE], str(profile), "security_profile")
        if password:  # profile 3 needs none: an empty one leaves the variable as it is
            variable("oem.password", dm[PASSWORD], password, "basic_auth_password")

    def _plan_evses(
        self, station: Station, data: dict[str, Any], plan: OemPlan, variable: Check
    ) -> dict[str, int]:
        """EVSE[n].SupplyPhases, EVSE[n].Power's maxLimit/MaxSet, Connector[n,c].ConnectorType;
        the iso15118_id mapping (returned)."""
        dm = station.device_model
        layout = self.settings.evses  # connectors per EVSE: the configuration's
        entries = data.get("evses")
        if not isinstance(entries, list) or not entries:
            raise Refused("evses: must list at least one EVSE")
        kept: list[dict[str, Any]] = []
        seen: set[int] = set()
        by_iso: dict[str, int] = {}
        for i, entry in enumerate(entries):
            where = f"evses[{i}]"
            if not isinstance(entry, dict):
                raise Refused(f"{where}: must be an object")
            ocpp_id = entry.get("ocpp_id")
            if isinstance(ocpp_id, bool) or not isinstance(ocpp_id, int) or ocpp_id < 1:
                raise Refused(f"{where}.ocpp_id: must be an integer of at least 1")
            if ocpp_id in seen:
                raise Refused(f"{where}.ocpp_id: EVSE {ocpp_id} is listed twice")
            seen.add(ocpp_id)
            iso = entry.get("iso15118_id")
            if not isinstance(iso, str) or not iso:
                raise Refused(f"{where}.iso15118_id: must be a non-empty string")
            if iso in by_iso:
                raise Refused(f"{where}.iso15118_id: another EVSE has the same one")
            if _DECIMAL_ID.fullmatch(iso) and int(iso) != ocpp_id:
                # The decimal form always names that OCPP EVSE (the session API).
                raise Refused(f"{where}.iso15118_id: a decimal id must be the EVSE's own ocpp_id")
            by_iso[iso] = ocpp_id
            watts = _watts(entry.get("power_kw"))
            if watts is None:
                raise Refused(f"{where}.power_kw: must be a number of at least 0")
            phases = entry.get("supply_phases")
            if isinstance(phases, bool) or phases not in (0, 1, 2, 3):
                raise Refused(f"{where}.supply_phases: must be 0, 1, 2 or 3")
            connectors = entry.get("connectors")
            if not isinstance(connectors, list) or not connectors:
                raise Refused(f"{where}.connectors: must list at least one connector")
            types: dict[int, str] = {}
            for j, connector in enumerate(connectors):
                cwhere = f"{where}.connectors[{j}]"
                number = connector.get("id") if isinstance(connector, dict) else None
                if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                    raise Refused(f"{cwhere}.id: must be an integer of at least 1")
                if number in types:
                    raise Refused(f"{cwhere}.id: connector {number} is listed twice")
                kind = connector.get("connector_type")
                if not isinstance(kind, str) or kind not in CONNECTOR_TYPES:
                    raise Refused(f"{cwhere}.connector_type: must be an OCPP ConnectorEnumType")
                types[number] = str(kind)

            if ocpp_id > len(layout):
                plan.warnings.append(
                    f"EVSE {ocpp_id} skipped: the station has {len(layout)} ([station] evses)"
                )
                del by_iso[iso]
                continue
            evse_key = f"EVSE[{ocpp_id}].SupplyPhases"
            variable(f"oem.{evse_key}", dm[evse_key], str(phases), f"{where}.supply_phases")
            for number, kind in types.items():
                if number > layout[ocpp_id - 1]:
                    plan.warnings.append(
                        f"connector {number} of EVSE {ocpp_id} skipped: that EVSE has "
                        f"{layout[ocpp_id - 1]} ([station] evses)"
                    )
                    continue
                key = f"Connector[{ocpp_id},{number}].ConnectorType"
                variable(f"oem.{key}", dm[key], kind, f"{where}.connectors")
            kept.append({"ocpp_id": ocpp_id, "iso15118_id": iso, "power_w": watts})
        kept.sort(key=lambda e: e["ocpp_id"])
        if kept != self._values.get("evses", []):
            plan.evses = kept
            plan.rows.append(("evses", json.dumps(kept), None))
        return by_iso

    def _plan_components(
        self, station: Station, data: dict[str, Any], by_iso: dict[str, int], plan: OemPlan
    ) -> None:
        """The OEM's variables: new ones added, changed ones replaced, missing ones removed."""
        dm = station.device_model
        layout = self.settings.evses
        components = data.get("components", [])
        if not isinstance(components, list):
            raise Refused("components: must be a list")
        current = {v.key.casefold(): v for v in self.variables}
        ours = {id(v) for v in self.variables}
        wanted: dict[str, Variable] = {}
        addresses: set[tuple[Any, ...]] = set()
        for i, component in enumerate(components):
            where = f"components[{i}]"
            if not isinstance(component, dict):
                raise Refused(f"{where}: must be an object")
            name = _identifier(component, "name", where)
            instance = _identifier(component, "instance", where, required=False)
            evse_id, connector_id = component.get("evse_id"), component.get("connector_id")
            evse: int | None = None
            if connector_id is not None and (
                isinstance(connector_id, bool) or not isinstance(connector_id, int)
            ):
                raise Refused(f"{where}.connector_id: must be an integer")
            if connector_id is not None and evse_id is None:
                raise Refused(f"{where}.connector_id: needs an evse_id")
            skip = None
            if evse_id is not None:
                if not isinstance(evse_id, str):
                    raise Refused(f"{where}.evse_id: must be a string")
                evse = by_iso.get(evse_id) or decimal_evse(evse_id, len(layout))
                if evse is None:
                    skip = f"component {name} skipped: its EVSE is not one of this station's"
                elif connector_id is not None and not 1 <= connector_id <= layout[evse - 1]:
                    skip = f"component {name} skipped: EVSE {evse} has no connector {connector_id}"
            ref = ComponentRef(name, instance, evse, connector_id if evse is not None else None)
            entries = component.get("variables")
            if not isinstance(entries, list) or not entries:
                raise Refused(f"{where}.variables: must list at least one variable")
            variables = [
                _oem_variable(ref, e, f"{where}.variables[{j}]") for j, e in enumerate(entries)
            ]
            if skip is not None:
                plan.warnings.append(skip)
                continue
            for j, new in enumerate(variables):
                vwhere = f"{where}.variables[{j}]"
                key = new.key.casefold()
                address = (ref, new.definition.name.casefold(), _fold(new.definition.instance))
                if key in wanted or address in addresses:
                    raise Refused(f"{vwhere}: {new.key} is listed twice")
                existing = dm.clash(new)
                if existing is not None and id(existing) not in ours:
                    raise Refused(
                        f"{vwhere}: {existing.key} is a variable of the station itself; an OEM "
                        "component cannot replace it"
                    )
                wanted[key] = new
                addresses.add(address)

        kept: list[Variable] = []
        for key, new in wanted.items():
            old = current.get(key)
            if (
                old is not None
                and old.component == new.component
                and old.definition == new.definition
            ):
                kept.append(old)
                continue
            value = new.definition.default or ""
            if (
                old is not None
                and old.definition.source == new.definition.source == "stored"
                and old.definition.default == new.definition.default
                and (current_value := old.read()) is not None
                and check_value(new.definition, current_value) is None
            ):
                value = current_value  # only the definition changed: the CSMS's value stays
            new.values["Actual"] = value
            if new.definition.source == "stored":
                plan.changes.append((new, "Actual", value))
            plan.added.append(new)
            if old is not None:
                plan.removed.append(old)
        for key, old in current.items():
            if key not in wanted:
                plan.removed.append(old)
        stored_now = {v.key.casefold() for v in plan.added if v.definition.source == "stored"}
        plan.forget = [
            v.key
            for v in plan.removed
            if v.definition.source == "stored" and v.key.casefold() not in stored_now
        ]
        if plan.added or plan.removed:
            order = {key: n for n, key in enumerate(wanted)}  # as the answer lists them
            final = sorted([*kept, *plan.added], key=lambda v: order[v.key.casefold()])
            plan.components = [_definition(v) for v in final]
            plan.rows.append(("components", json.dumps(plan.components), None))

    # --- after the store took it

    def _adopt(self, station: Station, plan: OemPlan) -> None:
        dm = station.device_model
        for name, value in plan.fields.items():
            if value is None:
                self._values.pop(name, None)
            else:
                self._values[name] = value
        if plan.evses is not None:
            self._values["evses"] = plan.evses
            self._index_evses()
            for evse in range(1, len(self.settings.evses) + 1):
                _set_power(dm, evse, self._power(evse))
        if plan.components is not None:
            self._values["components"] = plan.components
            dm.remove(plan.removed)
            dm.add(plan.added)
            removed = {id(v) for v in plan.removed}
            self.variables = [v for v in self.variables if id(v) not in removed] + plan.added
        station.identity = self.identity

    def _connection_state(self, station: Station) -> tuple[str, Any, str | None]:
        slot = station.network_profiles.get(CONFIG_SLOT) or {}
        return (
            station.identity,
            (slot.get("ocppCsmsUrl"), slot.get("securityProfile")),
            station.device_model.value(SECURITY_PROFILE),
        )

    def _reconnect(self, station: Station, before: tuple[str, Any, str | None], mark: int) -> None:
        """A change of identity, URL, profile or password while connected: one Reconnect."""
        if station.connectivity.active is None:
            return  # the next connection uses the new values
        identity, slot, profile = before
        now = self._connection_state(station)
        reasons = []
        if now[0] != identity:
            reasons.append("identity")
        if now[1] != slot or now[2] != profile:
            reasons.append("CSMS connection")
        effects = station.effects.items
        # A new BasicAuthPassword on profile 1 or 2 reconnects already (Connectivity, A01).
        password = [e for e in effects[mark:] if isinstance(e, Reconnect)]
        if not reasons:
            return
        for effect in password:
            effects.remove(effect)
        if password:
            reasons.append("BasicAuthPassword")
        delay = PASSWORD_RECONNECT_DELAY * (1 + random.random())  # noqa: S311 - jitter
        reason = "the OEM's device_model changed the " + " and the ".join(reasons)
        log.info("%s; reconnecting in %.1f s", reason, delay)
        effects.append(Reconnect(delay, reason))


# --- helpers


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def _watts(power_kw: Any) -> str | None:
    """kW as W in OCPP decimal text (`7.4` -> `7400`); None when unusable."""
    if isinstance(power_kw, bool) or not isinstance(power_kw, int | float):
        return None
    try:
        watts = Decimal(str(power_kw)) * 1000
    except InvalidOperation:
        return None
    if not watts.is_finite() or watts < 0:
        return None
    text = format(watts.normalize(), "f")
    if check_value(replace(POWER, max_limit=None), text) is not None:
        return None
    return text


def _set_power(dm: DeviceModel, evse: int, watts: str | None) -> None:
    """EVSE[n].Power: maxLimit and MaxSet are the EVSE's maximum power (the OEM's, else the
    station's default)."""
    variable = dm[f"EVSE[{evse}].Power"]
    definition = POWER if watts is None else replace(POWER, max_limit=Decimal(watts))
    variable.definition = definition
    dm.set_runtime(variable.key, str(definition.max_limit), "MaxSet")


def _identifier(entry: dict[str, Any], name: str, where: str, required: bool = True) -> Any:
    value = entry.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise Refused(
            f"{where}.{name}: must be 1 to 50 characters from A-Z a-z 0-9 * - _ = + | @ . "
            "(OCPP identifierString)"
        )
    return value


def _value_text(value: Any) -> str | None:
    """OCPP carries every value as text; JSON true/false become 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value if isinstance(value, str) else None


def _oem_variable(ref: ComponentRef, entry: Any, where: str) -> Variable:
    """One of the OEM's variables, checked; ReadOnly unless `mutability` says otherwise."""
    if not isinstance(entry, dict):
        raise Refused(f"{where}: must be an object")
    name = _identifier(entry, "name", where)
    instance = _identifier(entry, "instance", where, required=False)
    try:
        data_type = DataType(entry.get("data_type", "string"))
    except ValueError:
        raise Refused(f"{where}.data_type: must be an OCPP DataEnumType") from None
    try:
        mutability = Mutability(entry.get("mutability", "ReadOnly"))
    except ValueError:
        raise Refused(f"{where}.mutability: must be ReadOnly, WriteOnly or ReadWrite") from None
    constant = entry.get("constant", False)
    if not isinstance(constant, bool):
        raise Refused(f"{where}.constant: must be true or false")
    unit = entry.get("unit")
    if unit is not None and (not isinstance(unit, str) or not 0 < len(unit) <= UNIT_LIMIT):
        raise Refused(f"{where}.unit: must be 1 to {UNIT_LIMIT} characters")
    values_list: tuple[str, ...] | None = None
    raw_list = entry.get("values_list")
    if raw_list is not None:
        if not isinstance(raw_list, str) or not 0 < len(raw_list) <= VALUES_LIST_LIMIT:
            raise Refused(f"{where}.values_list: must be 1 to {VALUES_LIST_LIMIT} characters")
        values_list = tuple(raw_list.split(","))
        if not all(values_list):
            raise Refused(f"{where}.values_list: must not have an empty member")
    if data_type in LIST_TYPES and values_list is None:
        raise Refused(f"{where}.values_list: required for a {data_type.value}")
    value = _value_text(entry.get("value"))
    if value is None or len(value) > VALUE_LIMIT:
        raise Refused(f"{where}.value: must be a value of at most {VALUE_LIMIT} characters")
    definition = VariableDef(
        component=ref.name,
        name=name,
        data_type=data_type,
        instance=instance,
        unit=unit,
        mutability=mutability,
        default=value,  # the OEM's value: written when it changes
        values_list=values_list,
        # Writable ones (SetVariables) persist like the station's own; the rest is the OEM's.
        source="runtime" if mutability is Mutability.ReadOnly else "stored",
        constant=constant,
    )
    why = check_value(definition, value)
    if why is not None:
        raise Refused(f"{where}.value: {why.info} (data type {data_type.value})")
    return Variable(ref, definition, {"Actual": value})


def _definition(variable: Variable) -> dict[str, Any]:
    """An OEM variable as the `components` row keeps it."""
    ref, d = variable.component, variable.definition
    out: dict[str, Any] = {
        "component": ref.name,
        "component_instance": ref.instance,
        "evse": ref.evse,
        "connector": ref.connector,
        "name": d.name,
        "instance": d.instance,
        "data_type": d.data_type.value,
        "mutability": d.mutability.value,
        "constant": d.constant,
        "unit": d.unit,
        "values_list": ",".join(d.values_list) if d.values_list is not None else None,
        "value": d.default,
    }
    return out


def _variable(entry: dict[str, Any]) -> Variable:
    """An OEM variable from the `components` row (checked when it was applied)."""
    ref = ComponentRef(
        entry["component"], entry["component_instance"], entry["evse"], entry["connector"]
    )
    mutability = Mutability(entry["mutability"])
    definition = VariableDef(
        component=ref.name,
        name=entry["name"],
        data_type=DataType(entry["data_type"]),
        instance=entry["instance"],
        unit=entry["unit"],
        mutability=mutability,
        default=entry["value"],
        values_list=tuple(entry["values_list"].split(",")) if entry["values_list"] else None,
        source="runtime" if mutability is Mutability.ReadOnly else "stored",
        constant=entry["constant"],
    )
    return Variable(ref, definition, {"Actual": entry["value"]})
