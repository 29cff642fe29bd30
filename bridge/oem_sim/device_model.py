"""What the simulated charger answers to the bridge's `device_model` request.

`--device-model config` (the default) answers with the values of the bridge's own configuration
file (`--config`), so the answer changes nothing: identity, model, vendor, serial number,
firmware version, CSMS URL, security profile and password as `[station]` and `[csms]` have them,
each EVSE with 22 kW (the bridge's default EVSE.Power maximum) and the supply phases and
connector types the file's `[device_model]` presets give (else 3 phases, `Unknown`). A file
whose values the answer cannot carry (no `[csms] url`, security profile 0, profile 1 or 2
without a password), or no `--config` at all, leaves the request unanswered: the bridge then
boots from its file after `[oem] startup_timeout`. `demo` answers a built-in station
(`DEMO_DEVICE_MODEL`), `off` never answers.
"""

from __future__ import annotations

from typing import Any, Final

from bridge.config import Settings
from bridge.oem_sim.firmware import EvseSpec

Data = dict[str, Any]

EVSE_POWER_KW: Final = 22.0  # the bridge's default EVSE.Power maxLimit (22000 W)
CONNECTOR_TYPES: Final = frozenset(
    {
        *("cCCS1", "cCCS2", "cG105", "cTesla", "cType1", "cType2"),
        *("s309-1P-16A", "s309-1P-32A", "s309-3P-16A", "s309-3P-32A"),
        *("sBS1361", "sCEE-7-7", "sType2", "sType3"),
        *("Other1PhMax16A", "Other1PhOver16A", "Other3Ph", "Pan"),
        *("wInductive", "wResonant", "Undetermined", "Unknown"),
    }
)
# The built-in station of `--device-model demo`: the quick start's CP001 at the demo CSMS, with
# security profile 1 (the answer cannot say 0) and a demo password the demo CSMS does not check.
DEMO_DEVICE_MODEL: Final[Data] = {
    "model": "AC22",
    "vendor": "Acme",
    "identity": "CP001",
    "basic_auth_password": "oem-sim-demo-password",
    "ocpp_csms_url": "ws://127.0.0.1:9000/ocpp",
    "security_profile": 1,
    "serial_number": "SIM-0001",
    "firmware_version": "oem-sim 1.0",
}


def _preset(settings: Settings, key: str) -> Any:
    """A `[device_model]` preset of the file, its key compared without case."""
    wanted = key.casefold()
    for name, value in settings.device_model.items():
        if name.casefold() == wanted:
            return value
    return None


def layout(settings: Settings | None) -> list[EvseSpec]:
    """The station's EVSEs: `[station] evses` with the file's SupplyPhases presets; one EVSE
    with one three-phase connector without a file."""
    if settings is None:
        return [EvseSpec(1)]
    specs = []
    for number, connectors in enumerate(settings.station.evses, start=1):
        phases = _preset(settings, f"EVSE[{number}].SupplyPhases")
        try:
            supply = int(phases) if phases is not None and not isinstance(phases, bool) else 3
        except ValueError:
            supply = 3
        specs.append(EvseSpec(number, connectors, supply if 0 <= supply <= 3 else 3))
    return specs


def evse_entries(
    specs: list[EvseSpec], settings: Settings | None, default_type: str = "Unknown"
) -> list[Data]:
    """The answer's `evses`: the iso15118_id is the decimal OCPP id (so every session message
    names the EVSE the same way either mapping reads it)."""
    entries = []
    for spec in specs:
        connectors = []
        for connector in range(1, spec.connectors + 1):
            preset = (
                _preset(settings, f"Connector[{spec.ocpp_id},{connector}].ConnectorType")
                if settings is not None
                else None
            )
            kind = preset if isinstance(preset, str) and preset in CONNECTOR_TYPES else default_type
            connectors.append({"id": connector, "connector_type": kind})
        entries.append(
            {
                "ocpp_id": spec.ocpp_id,
                "iso15118_id": str(spec.ocpp_id),
                "power_kw": EVSE_POWER_KW,
                "supply_phases": spec.supply_phases,
                "connectors": connectors,
            }
        )
    return entries


def from_settings(settings: Settings | None) -> tuple[Data | None, str]:
    """The answer with the file's own values, or (None, why it cannot be given)."""
    if settings is None:
        return None, "no --config to take the station's values from"
    csms = settings.csms
    if not csms.url:
        return None, "the configuration has no [csms] url, which the answer must carry"
    if not 1 <= csms.security_profile <= 3:
        return None, (
            f"the configuration's [csms] security_profile {csms.security_profile} cannot be "
            "carried by the answer (1 to 3)"
        )
    password = csms.password.get_secret_value()
    if csms.security_profile in (1, 2) and not password:
        return None, "the configuration has no [csms] password, which its security profile needs"
    station = settings.station
    return {
        "model": station.model,
        "vendor": station.vendor,
        "identity": station.id,
        "basic_auth_password": password,
        "ocpp_csms_url": csms.url,
        "security_profile": csms.security_profile,
        "serial_number": station.serial_number,
        "firmware_version": station.firmware_version,
        "evses": evse_entries(layout(settings), settings),
    }, ""


def demo(specs: list[EvseSpec]) -> Data:
    return {**DEMO_DEVICE_MODEL, "evses": evse_entries(specs, None, "cType2")}
