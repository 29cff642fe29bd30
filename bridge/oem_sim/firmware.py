"""The simulated charger firmware: EVSEs with their control pilot, contactor, cable lock and meter,
and its answer to each request of the bridge. No I/O: every method returns the response `data`
and the updates to publish after it, each with a line for the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bridge import schemas, versions

Data = dict[str, Any]
Clock = Callable[[], float]

NOMINAL_VOLTAGE: Final = 230.0  # V, phase to neutral
DC_VOLTAGE: Final = 400.0  # V, an EVSE with supply_phases 0
FREQUENCY: Final = 50.0  # Hz
MAX_CURRENT: Final = 32.0  # A per phase, cs_status_and_limits
PHASES: Final = ("l1", "l2", "l3")
CHARGING_STATES: Final = frozenset({"C2", "D2"})  # the EV draws current (PWM on, state C/D)
# Control pilot voltages of each IEC 61851-1 state (V); PWM states swing down to -12 V.
PILOT_VOLTS: Final = {"A": 12.0, "B": 9.0, "C": 6.0, "D": 3.0, "E": 0.0, "F": -12.0}
PWM_DUTY_CYCLE: Final = 26.7  # % — 16 A offered (IEC 61851-1 annex A: I = duty x 0.6 A)


@dataclass(frozen=True)
class EvseSpec:
    """One EVSE as the station is built: its OCPP id, connector count and supply phases."""

    ocpp_id: int
    connectors: int = 1
    supply_phases: int = 3


@dataclass(frozen=True)
class Update:
    """An update to publish (`name`, `data`) and what it means, for the log."""

    name: str
    data: Data
    text: str


@dataclass
class Answer:
    """The response `data` to a bridge request (None: no answer at all), the log line, and the
    updates that follow the response."""

    data: Data | None
    text: str
    updates: list[Update] = field(default_factory=list)


def call_error(code: str, description: str) -> Data:
    """A CallError as the `data` of a response (error.response's shape)."""
    return {
        "message_type": "CallError",
        "ocpp_version": versions.OCPP201,
        "error_code": code,
        "error_description": description[:255],
        "error_details": {},
    }


def _cp_text(before: str, after: str) -> str:
    match after[0], before[0]:
        case "A", "A":
            return "no EV connected"
        case "A", _:
            return "EV unplugged"
        case "B", "A":
            return "EV plugged in"
        case "B", ("C" | "D"):
            return "EV stopped drawing energy"
        case "B", _:
            return "EV connected, charging offered" if after == "B2" else "EV connected"
        case (("C" | "D"), _):
            return "EV draws energy" if after in CHARGING_STATES else "EV asks for energy"
        case "E", _:
            return "control pilot shorted (state E)"
        case _:
            return "EVSE fault (state F)"


class Evse:
    """The live state of one EVSE; the meter integrates the power while the EV charges."""

    def __init__(self, spec: EvseSpec, power_w: float, clock: Clock) -> None:
        self.spec = spec
        self.power_w = power_w
        self._clock = clock
        self.pilot: dict[int, str] = dict.fromkeys(range(1, spec.connectors + 1), "A1")
        self.locked: dict[int, bool] = dict.fromkeys(self.pilot, False)
        self.contactor = "opened"
        self._energy_wh = 0.0
        self._since: float | None = None  # clock() when the present charging stretch started

    @property
    def evse_id(self) -> str:
        return str(self.spec.ocpp_id)

    @property
    def charging(self) -> bool:
        return self.contactor == "closed" and any(s in CHARGING_STATES for s in self.pilot.values())

    @property
    def energy_wh(self) -> float:
        """Energy.Active.Import.Register: every Wh delivered since the simulator started."""
        self._settle()
        return self._energy_wh

    def _settle(self) -> None:
        if self._since is not None:
            now = self._clock()
            self._energy_wh += self.power_w * (now - self._since) / 3600
            self._since = now

    def _changed(self) -> None:
        """After a state change: the meter runs exactly while the EV charges."""
        if self.charging and self._since is None:
            self._since = self._clock()
        elif not self.charging:
            self._since = None

    def set_pilot(self, connector: int, state: str) -> Update:
        self._settle()
        before = self.pilot[connector]
        self.pilot[connector] = state
        self.locked[connector] = state[0] in "BCD"  # the cable is locked while it is plugged in
        self._changed()
        data: Data = {"evse_id": self.evse_id, "connector_id": connector, "state": state}
        volts = PILOT_VOLTS[state[0]]
        data["max_voltage"] = volts
        pwm = state.endswith("2")
        data["min_voltage"] = -12.0 if pwm else volts
        if pwm:
            data["duty_cycle"] = PWM_DUTY_CYCLE
        return Update(
            "cp_status",
            data,
            f"EVSE {self.evse_id} {_cp_text(before, state)} (cp_status {state})",
        )

    def set_contactor(self, status: str) -> Update:
        self._settle()
        self.contactor = status
        self._changed()
        text = f"EVSE {self.evse_id} contactor {status}"
        if self.charging:
            text += f", charging at {self.power_w / 1000:g} kW"
        return Update(
            "cs_contactor_status",
            {"evse_id": self.evse_id, "status": status},
            f"{text} (cs_contactor_status {status})",
        )

    def meter(self) -> Data:
        """A meter_values sample, without timestamp and evse_id."""
        energy = self.energy_wh
        power = self.power_w if self.charging else 0.0
        phases = self.spec.supply_phases
        sample: Data = {
            "voltage": {p: NOMINAL_VOLTAGE if i < phases else 0.0 for i, p in enumerate(PHASES)},
            "current": {p: 0.0 for p in PHASES},
            "power_factor": 1.0,
            "frequency": FREQUENCY,
            "total_active_energy_imported": round(energy, 3),
            "total_reactive_energy_imported": 0.0,
            "power_active_import": power,
        }
        if phases == 0:
            sample["dc_voltage"] = DC_VOLTAGE
            sample["dc_current"] = round(power / DC_VOLTAGE, 2)
        else:
            per_phase = round(power / (NOMINAL_VOLTAGE * phases), 2)
            sample["current"] = {p: per_phase if i < phases else 0.0 for i, p in enumerate(PHASES)}
        return sample


class Firmware:
    """The charger: its EVSEs and how it answers the bridge (SESSION_API.md, "Bridge → OEM")."""

    def __init__(
        self,
        layout: list[EvseSpec],
        power_kw: float,
        device_model: Data | None = None,
        device_model_note: str = "",
        ocpp_results: dict[str, Data] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.evses = {s.ocpp_id: Evse(s, power_kw * 1000, clock) for s in layout}
        self.device_model = device_model
        self.device_model_note = device_model_note
        # CallResult payloads of delegated CSMS actions (ocpp_message), by action name.
        self.ocpp_results: dict[str, Data] = dict(ocpp_results or {})
        self.ocpp_handlers: dict[str, Callable[[Data], Data]] = {}
        self._answers: dict[str, Callable[[Data], Answer]] = {
            "device_model": self._device_model,
            "cs_status_and_limits": self._status_and_limits,
            "meter_values": self._meter_values,
            "stop_charging": self._stop_charging,
            "cs_contactor_status": self._contactor_status,
            "cs_connector": self._connector,
            "change_availability": self._change_availability,
            "reset": self._reset,
            "process_authorized_token": self._process_authorized_token,
            "ocpp_message": self._ocpp_message,
        }

    def answer(self, name: str, data: Data) -> Answer:
        """The answer to the bridge's request `name` (its data already checked)."""
        handler = self._answers.get(name)
        if handler is None:
            return Answer(
                call_error("NotSupported", f"The charger does not know the request '{name}'"),
                f"bridge asked {name}: not supported",
            )
        return handler(data)

    def evse(self, evse_id: object) -> Evse | None:
        """The EVSE a session message names (decimal OCPP id, as our iso15118_id is too)."""
        if isinstance(evse_id, str) and evse_id.isdecimal():
            return self.evses.get(int(evse_id))
        return None

    # --- the answers

    def _no_evse(self, name: str, evse_id: object) -> Answer:
        shown = str(evse_id)[:20]
        return Answer(
            call_error("PropertyConstraintViolation", f"The charger has no EVSE '{shown}'"),
            f"bridge asked {name} for EVSE {shown}: no such EVSE",
        )

    def _device_model(self, data: Data) -> Answer:
        if self.device_model is None:
            return Answer(
                None, f"bridge asked device_model: not answered ({self.device_model_note})"
            )
        shown = self.device_model["identity"]
        return Answer(self.device_model, f"bridge asked device_model: station {shown}")

    def _status_and_limits(self, data: Data) -> Answer:
        entries = []
        for evse in self.evses.values():
            phases = evse.spec.supply_phases
            entry: Data = {"evse_id": evse.evse_id, "status_code": "evse_ready"}
            if phases:
                entry["ac"] = {
                    "max_current": {
                        p: MAX_CURRENT if i < phases else 0.0 for i, p in enumerate(PHASES)
                    },
                    "nominal_voltage": NOMINAL_VOLTAGE,
                    "rcd_error": False,
                }
            entries.append(entry)
        return Answer({"evses": entries}, "bridge asked cs_status_and_limits: all EVSEs ready")

    def _meter_values(self, data: Data) -> Answer:
        evse_id = data.get("evse_id")
        if evse_id is None:
            sample = self.station_meter()
            where = "the station"
        else:
            evse = self.evse(evse_id)
            if evse is None:
                return self._no_evse("meter_values", evse_id)
            sample = {"evse_id": evse.evse_id, **evse.meter()}
            where = f"EVSE {evse.evse_id}"
        sample["timestamp"] = data["timestamp"]  # the moment the bridge asked about
        energy = sample["total_active_energy_imported"]
        power = sample["power_active_import"] / 1000
        return Answer(sample, f"bridge asked meter_values of {where}: {energy:g} Wh, {power:g} kW")

    def station_meter(self) -> Data:
        """The station's sample: the sum of its EVSEs' energy, currents and power."""
        samples = [e.meter() for e in self.evses.values()]
        phases = max(e.spec.supply_phases for e in self.evses.values())
        total: Data = {
            "voltage": {p: NOMINAL_VOLTAGE if i < phases else 0.0 for i, p in enumerate(PHASES)},
            "current": {p: round(sum(s["current"][p] for s in samples), 2) for p in PHASES},
            "power_factor": 1.0,
            "frequency": FREQUENCY,
            "total_active_energy_imported": round(
                sum(s["total_active_energy_imported"] for s in samples), 3
            ),
            "total_reactive_energy_imported": 0.0,
            "power_active_import": sum(s["power_active_import"] for s in samples),
        }
        return total

    def _stop_charging(self, data: Data) -> Answer:
        evse = self.evse(data["evse_id"])
        if evse is None:
            shown = str(data["evse_id"])[:20]
            return Answer(
                {"evse_id": data["evse_id"], "status": "rejected"},
                f"bridge asked stop_charging on EVSE {shown}: rejected, no such EVSE",
            )
        updates = self.stop(evse)
        what = "accepted" if updates else "accepted (not charging)"
        return Answer(
            {"evse_id": evse.evse_id, "status": "accepted"},
            f"bridge asked stop_charging on EVSE {evse.evse_id}: {what}",
            updates,
        )

    def plug_in(self, evse: Evse, connector: int) -> list[Update]:
        """The driver plugs the EV in (state B, no PWM until authorized)."""
        return [evse.set_pilot(connector, "B1")] if evse.pilot[connector][0] == "A" else []

    def start_charging(self, evse: Evse, connector: int) -> list[Update]:
        """Authorized: the PWM offers current (B2), the EV asks for it (C2), the contactor
        closes and the meter runs."""
        return [
            evse.set_pilot(connector, "B2"),
            evse.set_pilot(connector, "C2"),
            evse.set_contactor("closed"),
        ]

    def unplug(self, evse: Evse, connector: int) -> list[Update]:
        """The driver unplugs (state A); a contactor still closed opens at once."""
        if evse.pilot[connector][0] == "A":
            return []
        updates = [evse.set_pilot(connector, "A1")]
        if evse.contactor == "closed" and all(s[0] == "A" for s in evse.pilot.values()):
            updates.append(evse.set_contactor("opened"))
        return updates

    def stop(self, evse: Evse) -> list[Update]:
        """Stop charging: open the contactor, switch the PWM off (the EV goes to B1)."""
        updates = []
        if evse.contactor == "closed":
            updates.append(evse.set_contactor("opened"))
        for connector, state in evse.pilot.items():
            if state[0] in "CD" or state == "B2":
                updates.append(evse.set_pilot(connector, "B1"))
        return updates

    def _contactor_status(self, data: Data) -> Answer:
        evse = self.evse(data["evse_id"])
        if evse is None:
            shown = str(data["evse_id"])[:20]
            return Answer(
                {"evse_id": data["evse_id"], "status": "error", "info": "no such EVSE"},
                f"bridge asked cs_contactor_status of EVSE {shown}: no such EVSE",
            )
        return Answer(
            {"evse_id": evse.evse_id, "status": evse.contactor},
            f"bridge asked cs_contactor_status of EVSE {evse.evse_id}: {evse.contactor}",
        )

    def _connector(self, data: Data) -> Answer:
        evse, connector, action = self.evse(data["evse_id"]), data["connector_id"], data["action"]
        where = f"connector {connector} of EVSE {str(data['evse_id'])[:20]}"
        answer: Data = {"evse_id": data["evse_id"], "connector_id": connector}
        if evse is None or connector not in evse.locked:
            answer.update(status="error", info="no such connector")
            return Answer(
                answer, f"bridge asked cs_connector {action} of {where}: no such connector"
            )
        if action != "status":
            evse.locked[connector] = action == "lock"
        answer["status"] = "locked" if evse.locked[connector] else "unlocked"
        return Answer(answer, f"bridge asked cs_connector {action} of {where}: {answer['status']}")

    def _change_availability(self, data: Data) -> Answer:
        where = f"EVSE {data['evse_id'][:20]}" if "evse_id" in data else "the station"
        if "connector_id" in data:
            where = f"connector {data['connector_id']} of {where}"
        status = data["operational_status"]
        return Answer(
            {"status": "accepted"},
            f"bridge asked change_availability {status} of {where}: accepted",
        )

    def _reset(self, data: Data) -> Answer:
        where = f"EVSE {data['evse_id'][:20]}" if "evse_id" in data else "the station"
        return Answer({"status": "accepted"}, f"bridge asked reset of {where}: accepted")

    def _process_authorized_token(self, data: Data) -> Answer:
        token = data.get("id_token", "")
        where = f" on EVSE {data['evse_id'][:20]}" if "evse_id" in data else ""
        return Answer(
            {"status": "accepted"},
            f"bridge asked process_authorized_token {token} ({data['token_type']}){where}: "
            "accepted",
        )

    def _ocpp_message(self, data: Data) -> Answer:
        version, action, payload = data["ocpp_version"], data["message_name"], data["payload"]
        handler = self.ocpp_handlers.get(action)
        result = handler(payload) if handler is not None else self.ocpp_results.get(action)
        if result is None:
            return Answer(
                {
                    "message_type": "CallError",
                    "ocpp_version": version,
                    "error_code": "NotSupported",
                    "error_description": f"The charger has no handler for {action}"[:255],
                    "error_details": {},
                },
                f"bridge delegated {action}: NotSupported (no handler)",
            )
        try:
            errors = schemas.ocpp_validator(version, action, response=True)(result)
        except KeyError:
            errors = []  # not an action of this version: the bridge's dispatcher says so
        if errors:
            first = schemas.primary(errors)
            return Answer(
                {
                    "message_type": "CallError",
                    "ocpp_version": version,
                    "error_code": first.code,
                    "error_description": f"The charger's {action} answer: {first.sentence()}"[:255],
                    "error_details": {},
                },
                f"bridge delegated {action}: the configured answer fails its schema",
            )
        return Answer(
            {"message_type": "CallResult", "ocpp_version": version, "payload": result},
            f"bridge delegated {action}: CallResult",
        )
