"""Reports of the device model (B07 GetBaseReport, B08 GetReport) sent as NotifyReport messages.

The CALLRESULT goes first; the NotifyReport messages follow on the CSMS connection, split by
`DeviceDataCtrlr.ItemsPerMessage[GetReport]` (and kept under `BytesPerMessage[GetReport]`), with
`seqNo` from 0 and `tbc` on every part but the last (B07.FR.03/04/10, B08.FR.14).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bridge import jsontext
from bridge.rpc import CallError, CallResult, NoAnswer, OcppError, Outcome
from bridge.rpc.request import Request
from bridge.station.components import CONNECTOR, EVSE, Mutability
from bridge.station.device_model import ComponentRef, DeviceModel, Rejection, Variable
from bridge.station.effects import Send
from bridge.station.message_queue import MessageQueue, Outgoing
from bridge.timeutil import Clock

log = logging.getLogger(__name__)

_NO_CONNECTION = Rejection("NotEnabled", "no CSMS connection to send the report on")


def _number(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def report_data(variable: Variable, value_size: int) -> dict[str, Any]:
    """ReportDataType of one variable, with its characteristics (B08.FR.12)."""
    definition = variable.definition
    attributes = []
    for attribute in definition.attributes:
        entry: dict[str, Any] = {
            "type": attribute,
            "mutability": definition.mutability.value,
            "persistent": definition.source == "stored",
            "constant": definition.constant,
        }
        # A WriteOnly value is never reported (VariableAttributeType.value; the password).
        if definition.mutability is not Mutability.WriteOnly:
            entry["value"] = (variable.read(attribute) or "")[: value_size or 2500]
        attributes.append(entry)
    characteristics: dict[str, Any] = {
        "dataType": definition.data_type.value,
        "supportsMonitoring": definition.supports_monitoring,
    }
    if definition.unit:
        characteristics["unit"] = definition.unit
    if definition.min_limit is not None:
        characteristics["minLimit"] = _number(definition.min_limit)
    if definition.max_limit is not None:
        characteristics["maxLimit"] = _number(definition.max_limit)
    if definition.values_list:
        characteristics["valuesList"] = ",".join(definition.values_list)
    return {
        "component": variable.component.to_ocpp(),
        "variable": variable.to_ocpp(),
        "variableAttribute": attributes,
        "variableCharacteristics": characteristics,
    }


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def matches(variable: Variable, wanted: dict[str, Any]) -> bool:
    """B08.FR.20-25: does a ComponentVariableType name this variable?"""
    component, ref = wanted["component"], variable.component
    if _fold(component["name"]) != _fold(ref.name):
        return False
    if "instance" in component and _fold(component["instance"]) != _fold(ref.instance):
        return False
    evse = component.get("evse")
    # B08.FR.22/23: absent evse → every EVSE and none; absent connectorId → every connector
    if evse is not None:
        if evse["id"] != ref.evse:
            return False
        if "connectorId" in evse and evse["connectorId"] != ref.connector:
            return False
    wanted_variable = wanted.get("variable")
    if wanted_variable is None:  # B08.FR.20: every variable of the component
        return True
    definition = variable.definition
    if _fold(wanted_variable["name"]) != _fold(definition.name):
        return False
    return "instance" not in wanted_variable or _fold(wanted_variable["instance"]) == _fold(
        definition.instance
    )


class Reports:
    def __init__(self, device_model: DeviceModel, queue: MessageQueue, clock: Clock) -> None:
        self.device_model = device_model
        self.queue = queue
        self.clock = clock

    # B07: GetBaseReport

    def get_base_report(self, request: Request) -> dict[str, Any] | CallResult:
        payload = request.payload
        base = payload["reportBase"]
        if not self.queue.connected:  # B07.FR.13: temporarily unable
            return _NO_CONNECTION.answer("Rejected")
        variables = list(self.device_model)
        if base == "ConfigurationInventory":  # B07.FR.07: what the operator can set
            variables = [v for v in variables if v.definition.mutability is not Mutability.ReadOnly]
        elif base == "SummaryInventory":  # B07.FR.09: availability and condition
            variables = [v for v in variables if _summary(v)]
        return self._accepted(payload["requestId"], variables)

    # B08: GetReport

    def get_report(self, request: Request) -> dict[str, Any] | CallResult:
        payload = request.payload
        dm = self.device_model
        wanted = payload.get("componentVariable") or []
        items_limit = dm.int_value("DeviceDataCtrlr.ItemsPerMessage[GetReport]")
        if items_limit and len(wanted) > items_limit:  # B08.FR.17
            raise OcppError(
                "OccurrenceConstraintViolation",
                f"GetReport names {len(wanted)} componentVariables; "
                f"ItemsPerMessage[GetReport] is {items_limit}",
            )
        bytes_limit = dm.int_value("DeviceDataCtrlr.BytesPerMessage[GetReport]")
        if bytes_limit and request.size > bytes_limit:  # B08.FR.18
            raise OcppError("FormatViolation", "GetReport exceeds BytesPerMessage[GetReport]")
        if not self.queue.connected:  # B08.FR.16
            return _NO_CONNECTION.answer("Rejected")
        variables = list(dm)
        if wanted:  # B08.FR.05/11
            variables = [v for v in variables if any(matches(v, w) for w in wanted)]
        criteria = payload.get("componentCriteria") or []
        if criteria:  # B08.FR.07-10, 13: components meeting any criterion
            meeting = set(self._components_meeting(criteria))
            variables = [v for v in variables if v.component in meeting]
        if not variables:  # B08.FR.15
            return {"status": "EmptyResultSet"}
        return self._accepted(payload["requestId"], variables)

    def _components_meeting(self, criteria: list[str]) -> Iterable[ComponentRef]:
        """B08.FR.07-10: the components meeting at least one criterion.

        "The variable Available" of a component is every variable of that name, whatever its
        instance: TariffCostCtrlr has only Available[Tariff] and Available[Cost]. The component
        has the variable set to true when any of them reads true, and does not have it when
        none exists (then it meets Active, Available and Enabled, B08.FR.07-09, but not
        Problem, B08.FR.10).
        """
        wanted = {c.casefold() for c in criteria}
        # component -> criterion (casefolded) -> the Actual values of its variables of that name
        by_component: dict[ComponentRef, dict[str, list[str | None]]] = {}
        for variable in self.device_model:
            values = by_component.setdefault(variable.component, {})
            name = variable.definition.name.casefold()
            if name in wanted:
                values.setdefault(name, []).append(variable.read())
        for component, values in by_component.items():
            for criterion in criteria:
                found = values.get(criterion.casefold())
                if criterion == "Problem":
                    met = found is not None and "true" in found  # B08.FR.10
                else:
                    met = found is None or "true" in found  # B08.FR.07-09
                if met:
                    yield component
                    break

    def _accepted(self, request_id: int, variables: list[Variable]) -> CallResult:
        """Accepted; the NotifyReport parts follow the response (B07.FR.03, B08.FR.14)."""
        parts = self._split(variables)
        generated_at = self.clock.timestamp()
        sends = []
        for seq_no, part in enumerate(parts):
            message: dict[str, Any] = {
                "requestId": request_id,
                "generatedAt": generated_at,
                "seqNo": seq_no,
                "reportData": part,
            }
            if seq_no < len(parts) - 1:
                message["tbc"] = True
            sends.append(Send("NotifyReport", message, "report"))
        return CallResult({"status": "Accepted"}, tuple(sends))

    def answered(self, message: Outgoing, outcome: Outcome) -> None:
        payload = message.payload
        if isinstance(outcome, CallError):
            log.warning(
                "NotifyReport %d/%d answered %s",
                payload["requestId"],
                payload["seqNo"],
                outcome.code,
            )
        elif isinstance(outcome, NoAnswer):
            log.warning(
                "NotifyReport %d/%d: %s", payload["requestId"], payload["seqNo"], outcome.reason
            )

    def _split(self, variables: list[Variable]) -> list[list[dict[str, Any]]]:
        dm = self.device_model
        items_limit = max(1, dm.int_value("DeviceDataCtrlr.ItemsPerMessage[GetReport]"))
        bytes_limit = dm.int_value("DeviceDataCtrlr.BytesPerMessage[GetReport]") or 65536
        value_size = dm.int_value("DeviceDataCtrlr.ReportingValueSize")
        parts: list[list[dict[str, Any]]] = [[]]
        size = 0
        for variable in variables:
            data = report_data(variable, value_size)
            data_size = len(jsontext.dumps(data)) + 1  # ASCII: characters are bytes
            part = parts[-1]
            if part and (len(part) >= items_limit or size + data_size + 200 > bytes_limit):
                parts.append([])
                part, size = parts[-1], 0
            part.append(data)
            size += data_size
        return parts


def _summary(variable: Variable) -> bool:
    name = variable.definition.name
    if (
        variable.component.name in ("ChargingStation", EVSE, CONNECTOR)
        and name == "AvailabilityState"
    ):
        return True
    return name in ("Problem", "Tripped", "Overload", "Fallback") and variable.read() == "true"
