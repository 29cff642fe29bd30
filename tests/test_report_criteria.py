"""B08 GetReport componentCriteria (B08.FR.07-10), including instanced criterion variables.

B08.FR.07-09: with Active / Available / Enabled, report every component that has that variable
set to true or does not have it; B08.FR.10: with Problem, only those whose Problem is true.
A component's "variable Available" is every variable of that name, whatever its instance
(TariffCostCtrlr has only Available[Tariff] and Available[Cost]): it is true when any is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.rpc.request import Request
from bridge.station.components import STATION_VARIABLES, DataType, Mutability, VariableDef
from bridge.station.device_model import ComponentRef, DeviceModel, Variable
from bridge.station.effects import Send
from bridge.station.message_queue import MessageQueue
from bridge.station.provisioning.reports import Reports
from bridge.store import Store
from bridge.timeutil import Clock
from tests.conftest import make_station


def make_reports(device_model: DeviceModel, store: Store) -> Reports:
    """Reports over a queue with an open, accepted connection (nothing is sent: the NotifyReport
    parts come back as the CallResult's effects)."""
    queue = MessageQueue(store, device_model)
    queue.open(accepted=True)
    return Reports(device_model, queue, Clock())


async def reported(reports: Reports, criteria: list[str]) -> set[str] | str:
    """The components (as `ComponentRef.text`) a GetReport with these criteria reports, or the
    status when it reports nothing."""
    request = Request(
        "csms", "ocpp2.0.1", "GetReport", {"requestId": 1, "componentCriteria": criteria}
    )
    result = reports.get_report(request)
    if isinstance(result, dict):
        status: str = result["status"]
        return status
    assert result.payload == {"status": "Accepted"}
    sends = [e for e in result.effects if isinstance(e, Send)]
    assert {send.action for send in sends} == {"NotifyReport"}
    return {
        ComponentRef(
            d["component"]["name"],
            d["component"].get("instance"),
            d["component"].get("evse", {}).get("id"),
            d["component"].get("evse", {}).get("connectorId"),
        ).text
        for send in sends
        for d in send.payload["reportData"]
    }


# --- the station's own device model


async def test_b08_fr08_tariff_cost_ctrlr_with_every_available_instance_false_is_not_reported(
    tmp_path: Path,
) -> None:
    """TariffCostCtrlr has no instance-less Available, only Available[Tariff] and [Cost] (both
    false here): it has the variable Available, and it is not true."""
    station = make_station(tmp_path)
    dm = station.device_model
    assert dm["TariffCostCtrlr.Available[Tariff]"].read() == "false"
    assert dm["TariffCostCtrlr.Available[Cost]"].read() == "false"
    assert not any(
        v.component.name == "TariffCostCtrlr" and v.definition.instance is None
        for v in dm
        if v.definition.name == "Available"
    )

    station.queue.open(accepted=True)  # as if connected: GetReport needs somewhere to report
    components = await reported(station.reports, ["Available"])
    assert isinstance(components, set)
    assert "TariffCostCtrlr" not in components
    assert "SmartChargingCtrlr" not in components  # Available = false
    assert {"AlignedDataCtrlr", "SampledDataCtrlr"} <= components  # Available = true
    assert {"ClockCtrlr", "OCPPCommCtrlr"} <= components  # no Available variable


# --- a device model built for the purpose: every combination of instances


def _flag(component: str, name: str, instance: str | None, value: str) -> Variable:
    definition = VariableDef(
        component, name, DataType.boolean, instance=instance, mutability=Mutability.ReadOnly
    )
    return Variable(ComponentRef(component), definition, {"Actual": value})


@pytest.fixture
def reports(tmp_path: Path) -> Reports:
    # GetReport reads its limits from DeviceDataCtrlr, which has no criterion variable.
    limits = [d for d in STATION_VARIABLES if d.component == "DeviceDataCtrlr"]
    variables = [Variable(ComponentRef(d.component), d, {"Actual": d.default}) for d in limits]
    variables += [
        _flag("SomeInstanceTrue", "Available", "Tariff", "true"),
        _flag("SomeInstanceTrue", "Available", "Cost", "false"),
        _flag("EveryInstanceFalse", "Available", "Tariff", "false"),
        _flag("EveryInstanceFalse", "Available", "Cost", "false"),
        _flag("PlainFalseInstanceTrue", "Available", None, "false"),
        _flag("PlainFalseInstanceTrue", "Available", "Extra", "true"),
        _flag("PlainTrue", "Available", None, "true"),
        _flag("BrokenSensor", "Problem", "Sensor", "true"),
        _flag("BrokenSensor", "Problem", "Relay", "false"),
        _flag("HealthySensor", "Problem", "Sensor", "false"),
        _flag("EnabledInstance", "Enabled", "Tariff", "true"),
        _flag("DisabledInstance", "Enabled", "Tariff", "false"),
        _flag("ActiveInstance", "Active", "One", "true"),
        _flag("InactiveInstance", "Active", "One", "false"),
    ]
    store = Store(tmp_path / "dm.db")
    return make_reports(DeviceModel(variables, store), store)


ALL = {
    "DeviceDataCtrlr",
    "SomeInstanceTrue",
    "EveryInstanceFalse",
    "PlainFalseInstanceTrue",
    "PlainTrue",
    "BrokenSensor",
    "HealthySensor",
    "EnabledInstance",
    "DisabledInstance",
    "ActiveInstance",
    "InactiveInstance",
}


async def test_b08_fr08_available_true_in_any_instance_or_not_reported(reports: Reports) -> None:
    assert await reported(reports, ["Available"]) == ALL - {"EveryInstanceFalse"}


async def test_b08_fr09_enabled_counts_instanced_variables(reports: Reports) -> None:
    assert await reported(reports, ["Enabled"]) == ALL - {"DisabledInstance"}


async def test_b08_fr07_active_counts_instanced_variables(reports: Reports) -> None:
    assert await reported(reports, ["Active"]) == ALL - {"InactiveInstance"}


async def test_b08_fr10_problem_only_where_an_instance_is_true(reports: Reports) -> None:
    assert await reported(reports, ["Problem"]) == {"BrokenSensor"}


async def test_several_criteria_report_the_components_meeting_any_of_them(
    reports: Reports,
) -> None:
    assert await reported(reports, ["Problem", "Enabled"]) == ALL - {"DisabledInstance"}
    assert await reported(reports, ["Problem", "Available"]) == ALL - {"EveryInstanceFalse"}


async def test_b08_fr15_no_component_meets_the_criterion(tmp_path: Path) -> None:
    flag = _flag("Fine", "Problem", "Sensor", "false")
    limits = [d for d in STATION_VARIABLES if d.component == "DeviceDataCtrlr"]
    variables = [Variable(ComponentRef(d.component), d, {"Actual": d.default}) for d in limits]
    store = Store(tmp_path / "dm.db")
    reports = make_reports(DeviceModel([*variables, flag], store), store)
    assert await reported(reports, ["Problem"]) == "EmptyResultSet"
