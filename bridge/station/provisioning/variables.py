"""Provisioning functional block (B): get and set variables (B05, B06), network profiles (B09)."""

from __future__ import annotations

import logging
from typing import Any

from bridge.rpc import OcppError
from bridge.rpc.request import Request
from bridge.station.components import Mutability
from bridge.station.device_model import DeviceModel, Rejection, Variable
from bridge.station.provisioning.network_profiles import NetworkProfiles

log = logging.getLogger(__name__)


def _check_message_limits(
    device_model: DeviceModel, kind: str, items: list[Any], request: Request
) -> None:
    """Refuse a request over ItemsPerMessage or BytesPerMessage with a CALLERROR.

    GetVariables: B06.FR.16 (OccurrenceConstraintViolation) and B06.FR.17 (FormatViolation).
    SetVariables: B05.FR.11 tells the CSMS to stay within these limits; the station answers a
    request over them as B06.FR.16/17 say.
    """
    items_limit = device_model.int_value(f"DeviceDataCtrlr.ItemsPerMessage[{kind}]")
    if items_limit and len(items) > items_limit:
        raise OcppError(
            "OccurrenceConstraintViolation",
            f"{kind} carries {len(items)} items; ItemsPerMessage[{kind}] is {items_limit}",
            {"limit": items_limit},
        )
    bytes_limit = device_model.int_value(f"DeviceDataCtrlr.BytesPerMessage[{kind}]")
    if bytes_limit:
        size = request.size
        if size > bytes_limit:
            raise OcppError(
                "FormatViolation",
                f"{kind} is {size} bytes; BytesPerMessage[{kind}] is {bytes_limit}",
                {"limit": bytes_limit},
            )


class Provisioning:
    def __init__(self, device_model: DeviceModel, network_profiles: NetworkProfiles) -> None:
        self.device_model = device_model
        self.network_profiles = network_profiles

    def _result(self, item: dict[str, Any]) -> tuple[dict[str, Any], str, Variable | str]:
        """A Get/SetVariableResult echoing the item (B05.FR.02/03, B06.FR.02/03; Actual by
        default, B05.FR.12, B06.FR.11), the attribute type, and the variable or
        UnknownComponent/UnknownVariable."""
        attribute = item.get("attributeType", "Actual")
        result = {
            "attributeStatus": "Accepted",
            "component": item["component"],
            "variable": item["variable"],
            "attributeType": attribute,
        }
        return result, attribute, self.device_model.lookup(item["component"], item["variable"])

    # B06: GetVariables

    def get_variables(self, request: Request) -> dict[str, Any]:
        items = request.payload["getVariableData"]
        _check_message_limits(self.device_model, "GetVariables", items, request)
        reporting_size = self.device_model.int_value("DeviceDataCtrlr.ReportingValueSize")
        return {"getVariableResult": [self._get(item, reporting_size) for item in items]}

    def _get(self, item: dict[str, Any], reporting_size: int) -> dict[str, Any]:
        result, attribute, found = self._result(item)
        if isinstance(found, str):
            result["attributeStatus"] = found  # UnknownComponent / UnknownVariable
        elif attribute not in found.definition.attributes:
            result["attributeStatus"] = "NotSupportedAttributeType"
        elif found.definition.mutability is Mutability.WriteOnly:
            # B06.FR.09: the value of a WriteOnly variable is never returned.
            result["attributeStatus"] = "Rejected"
            why = Rejection("WriteOnly", f"{found.key} is write-only")
            result["attributeStatusInfo"] = why.status_info()
        else:
            # B06.FR.13: a supported attribute without a value reads as the empty string.
            value = found.read(attribute) or ""
            # ReportingValueSize: longer values are truncated to it.
            result["attributeValue"] = value[:reporting_size] if reporting_size else value
        return result

    # B05: SetVariables

    def set_variables(self, request: Request) -> dict[str, Any]:
        items = request.payload["setVariableData"]
        _check_message_limits(self.device_model, "SetVariables", items, request)
        results: list[dict[str, Any]] = []
        changes: list[tuple[Variable, str, str]] = []
        for item in items:
            result, change = self._set(item)
            results.append(result)
            if change is not None:
                changes.append(change)
        if changes:
            try:
                self.device_model.write(changes)
            except Exception:
                log.exception("storing SetVariables values failed")
                raise OcppError(
                    "InternalError", "The station could not store the new values; none was set"
                ) from None
            for variable, attribute, _ in changes:
                # Never the value itself: it may be the BasicAuthPassword.
                log.info("SetVariables: %s %s changed", variable.key, attribute)
        return {"setVariableResult": results}

    def _set(self, item: dict[str, Any]) -> tuple[dict[str, Any], tuple[Variable, str, str] | None]:
        result, attribute, found = self._result(item)
        value = item["attributeValue"]
        if isinstance(found, str):
            result["attributeStatus"] = found
            return result, None
        if attribute not in found.definition.attributes:
            result["attributeStatus"] = "NotSupportedAttributeType"
            return result, None
        why: Rejection | None
        if (
            found.definition.mutability is Mutability.ReadOnly
            or found.definition.source != "stored"
        ):
            why = Rejection("ReadOnly", f"{found.key} is read-only")
        else:
            why = self.device_model.check(found, value)
        if why is not None:
            result["attributeStatus"] = "Rejected"
            result["attributeStatusInfo"] = why.status_info()
            return result, None
        if found.definition.reboot_required:
            result["attributeStatus"] = "RebootRequired"  # e.g. B10.FR.01
        return result, (found, attribute, value)

    # B09: SetNetworkProfile

    def set_network_profile(self, request: Request) -> dict[str, Any]:
        slot, data = request.payload["configurationSlot"], request.payload["connectionData"]
        why = self.network_profiles.check(slot, data)
        if why is not None:
            return why.answer("Rejected")  # B09.FR.02/04/05
        try:
            self.network_profiles.save(slot, data)
        except Exception:
            log.exception("storing network profile slot %d failed", slot)
            return {"status": "Failed"}  # B09.FR.03
        return {"status": "Accepted"}  # B09.FR.01
