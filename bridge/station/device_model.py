"""The OCPP 2.0.1 device model: components, variables, attributes and their characteristics.

Values live in memory for fast reads; stored variables are written through the store first, so a
failed write changes nothing. Names and instances compare case-insensitively, as the OCPP
schemas say ("Case Insensitive").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from bridge.station.components import (
    CONNECTOR,
    CONNECTOR_VARIABLES,
    EVSE,
    EVSE_VARIABLES,
    STATION_VARIABLES,
    DataType,
    Mutability,
    VariableDef,
)
from bridge.store import Store
from bridge.timeutil import is_date_time

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ComponentRef:
    """A component as OCPP addresses it: name, optional instance, optional EVSE/connector."""

    name: str
    instance: str | None = None
    evse: int | None = None
    connector: int | None = None

    @property
    def text(self) -> str:
        """`OCPPCommCtrlr`, `EVSE[1]`, `Connector[1,2]`, `Foo[bar]`, `Meter@EVSE[1]`."""
        if self.name == EVSE and self.evse is not None and self.connector is None:
            return f"{EVSE}[{self.evse}]"
        if self.name == CONNECTOR and self.evse is not None and self.connector is not None:
            return f"{CONNECTOR}[{self.evse},{self.connector}]"
        text = self.name + (f"[{self.instance}]" if self.instance else "")
        if self.evse is not None:  # another component on an EVSE (an OEM's): `Meter@EVSE[1]`
            name = EVSE if self.connector is None else CONNECTOR
            text += "@" + ComponentRef(name, evse=self.evse, connector=self.connector).text
        return text

    def to_ocpp(self) -> dict[str, Any]:
        """ComponentType as JSON."""
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        if self.evse is not None:
            evse: dict[str, Any] = {"id": self.evse}
            if self.connector is not None:
                evse["connectorId"] = self.connector
            out["evse"] = evse
        return out


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


ComponentKey = tuple[str | None, str | None, int | None, int | None]
VariableKey = tuple[str | None, str | None]


def component_key(component: dict[str, Any]) -> ComponentKey:
    """Lookup key of an OCPP ComponentType (as validated JSON)."""
    evse = component.get("evse") or {}
    return (
        _fold(component["name"]),
        _fold(component.get("instance")),
        evse.get("id"),
        evse.get("connectorId"),
    )


def variable_key(variable: dict[str, Any]) -> VariableKey:
    return (_fold(variable["name"]), _fold(variable.get("instance")))


def _component_key(variable: Variable) -> ComponentKey:
    c = variable.component
    return (_fold(c.name), _fold(c.instance), c.evse, c.connector)


def _variable_key(variable: Variable) -> VariableKey:
    return (_fold(variable.definition.name), _fold(variable.definition.instance))


class Rejection(NamedTuple):
    """Why a value is refused: an OCPP reasonCode (≤ 20 characters) and a sentence."""

    reason: str
    info: str

    def status_info(self) -> dict[str, str]:
        """As a StatusInfoType."""
        return {"reasonCode": self.reason, "additionalInfo": self.info}

    def answer(self, status: str) -> dict[str, Any]:
        """A response payload with this `status` and the reason as its statusInfo."""
        return {"status": status, "statusInfo": self.status_info()}


@dataclass(slots=True)
class Variable:
    """One variable of one component, with the current value of each attribute type."""

    component: ComponentRef
    definition: VariableDef
    values: dict[str, str | None] = field(default_factory=dict)
    getter: Callable[[], str] | None = None

    @property
    def key(self) -> str:
        """`Component[instance].Variable[instance]`: the name in the config and the store."""
        return f"{self.component.text}.{self.definition.text}"

    def read(self, attribute: str = "Actual") -> str | None:
        if attribute == "Actual" and self.getter is not None:
            return self.getter()
        return self.values.get(attribute)

    def to_ocpp(self) -> dict[str, Any]:
        """VariableType as JSON."""
        out: dict[str, Any] = {"name": self.definition.name}
        if self.definition.instance is not None:
            out["instance"] = self.definition.instance
        return out


# OCPP 2.0.1 part 2, 2.1.4 primitive types: integers are 32-bit, "no leading 0's, no plus sign";
# decimals sent to a Charging Station have at most 6 decimal places.
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,9})")
_INT32 = (-(2**31), 2**31 - 1)
_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,6})?")
_KEY = re.compile(
    r"(?P<component>[A-Za-z0-9_-]+)(?:\[(?P<component_instance>[^\]]+)\])?"
    r"\.(?P<variable>[A-Za-z0-9_-]+)(?:\[(?P<variable_instance>[^\]]+)\])?"
)


def check_value(definition: VariableDef, value: str) -> Rejection | None:
    """Check a value against the variable's characteristics; None when it is acceptable."""
    kind = definition.data_type
    number: Decimal | None = None
    if kind is DataType.integer:
        if not _INTEGER.fullmatch(value) or not _INT32[0] <= int(value) <= _INT32[1]:
            return Rejection("InvalidValue", "must be a 32-bit integer without sign or leading 0")
        number = Decimal(value)
    elif kind is DataType.decimal:
        if not _DECIMAL.fullmatch(value):
            return Rejection("InvalidValue", "must be a decimal number with at most 6 decimals")
        number = Decimal(value)
    elif kind is DataType.boolean:
        if value not in ("true", "false"):
            return Rejection("InvalidValue", "must be 'true' or 'false'")
    elif kind is DataType.dateTime:
        if not is_date_time(value):
            return Rejection("InvalidValue", "must be an RFC 3339 date-time with a time zone")
    elif kind is DataType.OptionList:
        if value not in (definition.values_list or ()):
            return Rejection(
                "InvalidValue", "must be one of " + ",".join(definition.values_list or ())
            )
    elif kind in (DataType.MemberList, DataType.SequenceList):
        members = value.split(",") if value else []
        allowed = definition.values_list or ()
        if kind is DataType.SequenceList and not members:
            return Rejection("InvalidValue", "must list at least one value")
        if any(m not in allowed for m in members):
            return Rejection("InvalidValue", "members must be among " + ",".join(allowed))
        if len(set(members)) != len(members):
            return Rejection("InvalidValue", "must not repeat a member")
    if number is not None:
        if definition.min_limit is not None and number < definition.min_limit:
            return Rejection("ValueTooLow", f"must be at least {definition.min_limit}")
        if definition.max_limit is not None and number > definition.max_limit:
            return Rejection("ValueTooHigh", f"must be at most {definition.max_limit}")
    elif kind is DataType.string:
        if definition.min_limit is not None and len(value) < definition.min_limit:
            return Rejection("ValueTooLow", f"must be at least {definition.min_limit} characters")
        if definition.max_limit is not None and len(value) > definition.max_limit:
            return Rejection("ValueTooHigh", f"must be at most {definition.max_limit} characters")
    return None


class UnknownKey(Exception):
    """A `Component.Variable` text that names nothing in this device model."""


Validator = Callable[[str], Rejection | None]
Listener = Callable[["Variable", str, str], None]


class DeviceModel:
    """All variables of the station, indexed by component and variable (case-insensitively)."""

    def __init__(
        self, variables: Iterable[Variable], store: Store, extra: Iterable[Variable] = ()
    ) -> None:
        self._store = store
        self._components: dict[ComponentKey, dict[VariableKey, Variable]] = {}
        self._by_key: dict[str, Variable] = {}
        self._index(variables)
        for variable in extra:
            if self.clash(variable) is not None:
                log.warning("%s is already a variable of this station; dropped", variable.key)
                continue
            self._index([variable])
        self._validators: dict[str, list[Validator]] = {}
        self._listeners: list[Listener] = []
        for (key, attribute), value in store.variable_values().items():
            stored = self._by_key.get(key.casefold())
            if stored is None or attribute not in stored.definition.attributes:
                log.warning("store holds %s/%s, which this version does not know", key, attribute)
                continue
            stored.values[attribute] = value

    def _index(self, variables: Iterable[Variable]) -> None:
        for variable in variables:
            self._components.setdefault(_component_key(variable), {})[_variable_key(variable)] = (
                variable
            )
            self._by_key[variable.key.casefold()] = variable

    @classmethod
    def build(cls, evses: list[int], store: Store, extra: Iterable[Variable] = ()) -> DeviceModel:
        """The standardized components, one EVSE per entry of `evses` with that many connectors,
        and `extra` variables with their values (the OEM's components); an extra one with the
        address or key of a standardized variable is dropped with a warning."""
        variables = [Variable(ComponentRef(d.component), d) for d in STATION_VARIABLES]
        for evse_id, connectors in enumerate(evses, start=1):
            variables += [Variable(ComponentRef(EVSE, evse=evse_id), d) for d in EVSE_VARIABLES]
            for connector_id in range(1, connectors + 1):
                ref = ComponentRef(CONNECTOR, evse=evse_id, connector=connector_id)
                variables += [Variable(ref, d) for d in CONNECTOR_VARIABLES]
        for variable in variables:
            definition = variable.definition
            variable.values["Actual"] = definition.default
            if "MaxSet" in definition.extra_attributes and definition.max_limit is not None:
                variable.values["MaxSet"] = str(definition.max_limit)
        return cls(variables, store, extra)

    # --- variables added after build (the OEM's components)

    def clash(self, variable: Variable) -> Variable | None:
        """The variable already here under the same address or the same key, if any."""
        same = self._components.get(_component_key(variable), {}).get(_variable_key(variable))
        return same if same is not None else self._by_key.get(variable.key.casefold())

    def add(self, variables: Iterable[Variable]) -> None:
        """Add variables (with their values); stored values of theirs are loaded as at build.

        ValueError when one has the address or key of a variable already here (nothing added).
        """
        added = list(variables)
        keys = [v.key.casefold() for v in added]
        if len(set(keys)) != len(keys) or any(self.clash(v) is not None for v in added):
            raise ValueError("a variable with this address or key exists already")
        if any(v.definition.source == "stored" for v in added):
            by_key = {key: v for key, v in zip(keys, added, strict=True)}
            for (key, attribute), value in self._store.variable_values().items():
                stored = by_key.get(key.casefold())
                if stored is not None and stored.definition.source == "stored":
                    stored.values[attribute] = value
        self._index(added)

    def remove(self, variables: Iterable[Variable]) -> None:
        """Take variables out (their stored values stay in the store: the caller decides)."""
        for variable in variables:
            ckey = _component_key(variable)
            component = self._components.get(ckey, {})
            if component.get(_variable_key(variable)) is variable:
                del component[_variable_key(variable)]
                if not component:
                    del self._components[ckey]
            if self._by_key.get(variable.key.casefold()) is variable:
                del self._by_key[variable.key.casefold()]
                self._validators.pop(variable.key, None)

    # --- lookup

    def component_exists(self, component: dict[str, Any]) -> bool:
        return component_key(component) in self._components

    def lookup(self, component: dict[str, Any], variable: dict[str, Any]) -> Variable | str:
        """The variable, or the OCPP status `UnknownComponent` / `UnknownVariable`."""
        variables = self._components.get(component_key(component))
        if variables is None:
            return "UnknownComponent"
        found = variables.get(variable_key(variable))
        return found if found is not None else "UnknownVariable"

    def __getitem__(self, key: str) -> Variable:
        """A variable by name, e.g. `OCPPCommCtrlr.HeartbeatInterval` or `EVSE[1].Power`."""
        variable = self._by_key.get(key.casefold())
        if variable is None:
            raise KeyError(key)
        return variable

    def __iter__(self) -> Iterator[Variable]:
        for variables in self._components.values():
            yield from variables.values()

    def __len__(self) -> int:
        return len(self._by_key)

    def resolve(self, text: str) -> Variable:
        """The variable a config key `Component[inst].Variable[inst]` names, or UnknownKey."""
        match = _KEY.fullmatch(text)
        if match is None:
            raise UnknownKey("is not of the form Component[instance].Variable[instance]")
        variable = self._by_key.get(text.casefold())
        if variable is not None:
            return variable
        component = match["component"]
        if not any(c[0] == component.casefold() for c in self._components):
            raise UnknownKey(f"unknown component {component}")
        raise UnknownKey(f"unknown variable of {component} (or unknown instance)")

    # --- values

    def value(self, key: str, attribute: str = "Actual") -> str | None:
        return self[key].read(attribute)

    def int_value(self, key: str) -> int:
        text = self.value(key)
        return int(text) if text is not None else 0

    def bool_value(self, key: str) -> bool:
        return self.value(key) == "true"

    def bind(self, key: str, getter: Callable[[], str]) -> None:
        """Compute a runtime variable's Actual value on every read (e.g. the clock)."""
        self[key].getter = getter

    def set_runtime(self, key: str, value: str, attribute: str = "Actual") -> None:
        """Set a runtime (not stored) value from the station's own logic."""
        variable = self[key]
        assert variable.definition.source == "runtime", key
        if variable.values.get(attribute) != value:
            variable.values[attribute] = value
            self._notify(variable, attribute, value)

    def add_validator(self, key: str, validator: Validator) -> None:
        """Extra semantic check for values of one variable (e.g. network profile slots)."""
        self._validators.setdefault(self[key].key, []).append(validator)

    def on_change(self, listener: Listener) -> None:
        """Call `listener(variable, attribute, value)` after a value changed."""
        self._listeners.append(listener)

    def check(self, variable: Variable, value: str) -> Rejection | None:
        """Characteristics, then any semantic validators of this variable."""
        size = self.int_value("DeviceDataCtrlr.ConfigurationValueSize")
        if size and len(value) > size:
            return Rejection("TooLargeElement", f"must be at most {size} characters")
        rejection = check_value(variable.definition, value)
        if rejection is None:
            for validator in self._validators.get(variable.key, ()):
                rejection = validator(value)
                if rejection is not None:
                    break
        return rejection

    def write(
        self,
        changes: list[tuple[Variable, str, str]],
        applied: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Store (variable, attribute, value) changes in one transaction, then apply them.

        Values must already be checked. If the store fails, nothing changes and the error rises.
        """
        stored = [
            (v.key, attribute, value)
            for v, attribute, value in changes
            if v.definition.source == "stored"
        ]
        self._store.save_variable_values(stored, applied)
        for variable, attribute, value in changes:
            if variable.values.get(attribute) != value:
                variable.values[attribute] = value
                self._notify(variable, attribute, value)

    def _notify(self, variable: Variable, attribute: str, value: str) -> None:
        for listener in self._listeners:
            try:
                listener(variable, attribute, value)
            except Exception:
                log.exception("a listener failed on the change of %s", variable.key)


__all__ = [
    "ComponentRef",
    "DataType",
    "DeviceModel",
    "Mutability",
    "Rejection",
    "UnknownKey",
    "Variable",
    "check_value",
]
