"""The OEM firmware simulator (bridge.oem_sim) against a test client playing the bridge's side of
the session API, through a real Mosquitto: the scenario's whole message sequence, the answers to
every bridge request (each checked against its schema), and the exit statuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge import schemas
from bridge.config import load_settings
from bridge.oem_sim import DEFAULT_TOKEN, cli
from bridge.oem_sim import device_model as sim_device_model
from bridge.oem_sim.firmware import EvseSpec, Firmware
from bridge.oem_sim.simulator import Simulator
from tests.conftest import (
    REQUEST_TOPIC,
    RESPONSE_TOPIC,
    Broker,
    free_port,
    make_station,
    oem_mqtt_client,
    write_config,
)

SIM = [sys.executable, "-m", "bridge.oem_sim"]
TIMESTAMP = "2026-12-03T10:00:00.000Z"
READY = {"service": "ocpp", "software_version": "0.1.0", "api_version": "1.0", "status": "ready"}
PROFILE_1 = (
    'url = "ws://127.0.0.1:9000/ocpp"\nsecurity_profile = 1\npassword = "0123456789abcdef0123"'
)


def schema_errors(body: dict[str, Any]) -> list[str]:
    """What is wrong with a message of the simulator, by its own schema (none: valid)."""
    try:
        validate = schemas.envelope_validator(f"{body['name']}.{body['type']}")
    except KeyError:
        validate = schemas.envelope_validator("error.response")
    return [e.sentence() for e in validate(body)]


def pilot(state: str) -> tuple[str, str, dict[str, Any]]:
    """A cp_status update of EVSE 1, connector 1, as the simulator sends it."""
    volts = {"A": 12.0, "B": 9.0, "C": 6.0}[state[0]]
    data: dict[str, Any] = {"evse_id": "1", "connector_id": 1, "state": state}
    data["max_voltage"] = volts
    data["min_voltage"] = -12.0 if state.endswith("2") else volts
    if state.endswith("2"):
        data["duty_cycle"] = 26.7
    return ("cp_status", "update", data)


def contactor(status: str) -> tuple[str, str, dict[str, Any]]:
    return ("cs_contactor_status", "update", {"evse_id": "1", "status": status})


TOKEN = {"evse_id": "1", "id_token": DEFAULT_TOKEN, "token_type": "ISO14443"}
AUTHORIZATION = ("authorization", "request", TOKEN)


@dataclass
class FakeBridge:
    """The bridge's side: reads cs/josev, publishes on josev/cs."""

    client: aiomqtt.Client
    seen: list[dict[str, Any]] = field(default_factory=list)  # every message of the simulator
    invalid: list[tuple[str, list[str]]] = field(default_factory=list)
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    answers: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    async def read(self) -> None:
        async for message in self.client.messages:
            body = json.loads(message.payload)
            self.seen.append(body)
            if errors := schema_errors(body):
                self.invalid.append((f"{body['name']}.{body['type']}", errors))
            future = self.answers.pop(body["id"], None)
            if body["type"] == "response" and future is not None:
                future.set_result(body)
            else:
                self.inbox.put_nowait(body)

    async def next(self, name: str, kind: str = "request", timeout: float = 15) -> dict[str, Any]:
        """The next message of this name and type from the simulator (others are passed by)."""
        async with asyncio.timeout(timeout):
            while True:
                body = await self.inbox.get()
                if body["name"] == name and body["type"] == kind:
                    return body

    async def publish(self, body: dict[str, Any], retain: bool = False) -> None:
        await self.client.publish(RESPONSE_TOPIC, json.dumps(body), qos=1, retain=retain)

    async def update(self, name: str, data: dict[str, Any], retain: bool = False) -> None:
        body = {"id": str(uuid.uuid4()), "name": name, "type": "update", "data": data}
        await self.publish(body, retain)

    async def respond(self, request: dict[str, Any], data: dict[str, Any]) -> None:
        await self.publish(
            {"id": request["id"], "name": request["name"], "type": "response", "data": data}
        )

    async def request(self, name: str, data: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Ask the simulator; its whole response (checked against the schema as it arrived)."""
        message_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[message_id] = future
        await self.publish({"id": message_id, "name": name, "type": "request", "data": data})
        return await asyncio.wait_for(future, timeout)

    def sequence(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The simulator's updates and requests in order (its responses interleave by timing)."""
        return [(m["name"], m["type"], m["data"]) for m in self.seen if m["type"] != "response"]


@asynccontextmanager
async def fake_bridge(broker: Broker, ready: bool = True) -> AsyncIterator[FakeBridge]:
    async with oem_mqtt_client(broker.host, broker.port) as client:
        bridge = FakeBridge(client)
        await client.subscribe(REQUEST_TOPIC, qos=1)
        reader = asyncio.create_task(bridge.read())
        if ready:  # as the bridge does: retained, so a simulator started later sees it
            await bridge.update("service_status", READY, retain=True)
        try:
            yield bridge
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


@dataclass
class Running:
    simulator: Simulator
    task: asyncio.Task[int]
    lines: list[str]
    errors: list[str]
    stop: asyncio.Event

    async def exit_code(self, bridge: FakeBridge, timeout: float = 30) -> int:
        """Its exit status, once the fake bridge has everything it published."""
        code = await asyncio.wait_for(self.task, timeout)
        async with asyncio.timeout(timeout):
            while True:  # (MQTT delivers to the subscriber after the publisher's PUBACK)
                if len(bridge.seen) >= len(self.simulator.sent):
                    return code
                await asyncio.sleep(0.01)

    async def line(self, text: str, timeout: float = 10) -> str:
        """The first printed line containing `text` (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                await asyncio.sleep(0.01)


def start(broker: Broker, *args: str) -> Running:
    """The simulator in this event loop, as `python -m bridge.oem_sim --host --port ...` runs."""
    argv = ["--host", broker.host, "--port", str(broker.port), "--timeout", "10", *args]
    options = cli.options(cli.parser().parse_args(argv))
    lines: list[str] = []
    errors: list[str] = []
    simulator = Simulator(options, write=lines.append, complain=errors.append)
    stop = asyncio.Event()
    return Running(simulator, asyncio.create_task(simulator.run(stop)), lines, errors, stop)


async def transaction(bridge: FakeBridge, status: str) -> None:
    data = {"transaction_id": "tx-1", "evse_id": "1", "status": status}
    await bridge.update(
        "transaction_status", {**data, "id_token": DEFAULT_TOKEN, "token_type": "ISO14443"}
    )


def energy(response: dict[str, Any]) -> float:
    value: float = response["data"]["total_active_energy_imported"]
    return value


# --- the session scenario


async def test_a_session_plugs_in_authorizes_charges_stops_by_token_and_unplugs(
    broker: Broker,
) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--charge-seconds", "0.2", "--wait-csms", "5")
        status = await bridge.next("websocket_status")
        await bridge.respond(status, {"status": "connected"})

        authorization = await bridge.next("authorization")
        await bridge.respond(authorization, {"status": "accepted"})
        await transaction(bridge, "started")
        await bridge.next("cs_contactor_status", "update")  # closed: charging

        # While it charges, the bridge asks for meter values: the register rises with the power.
        first = await bridge.request("meter_values", {"timestamp": TIMESTAMP, "evse_id": "1"})
        await asyncio.sleep(0.05)  # some time passes (at 11 kW, 0.15 Wh)
        second = await bridge.request(
            "meter_values", {"timestamp": "2026-12-03T10:00:01.000Z", "evse_id": "1"}
        )
        assert energy(second) > energy(first) > 0
        assert second["data"]["timestamp"] == "2026-12-03T10:00:01.000Z"
        assert second["data"]["voltage"] == {"l1": 230.0, "l2": 230.0, "l3": 230.0}
        assert second["data"]["current"] == {
            "l1": 15.94,
            "l2": 15.94,
            "l3": 15.94,
        }  # 11 kW / 3 x 230 V
        assert second["data"]["power_active_import"] == 11000.0
        closed = await bridge.request("cs_contactor_status", {"evse_id": "1"})
        assert closed["data"] == {"evse_id": "1", "status": "closed"}
        lock = await bridge.request(
            "cs_connector", {"evse_id": "1", "connector_id": 1, "action": "status"}
        )
        assert lock["data"] == {"evse_id": "1", "connector_id": 1, "status": "locked"}

        # The same token again: the bridge accepts it, ends the transaction, stops charging.
        again = await bridge.next("authorization")
        assert again["data"] == TOKEN
        await bridge.respond(again, {"status": "accepted"})
        stop = await bridge.request("stop_charging", {"evse_id": "1"})
        assert stop["data"] == {"evse_id": "1", "status": "accepted"}
        opened = await bridge.request("cs_contactor_status", {"evse_id": "1"})
        assert opened["data"] == {"evse_id": "1", "status": "opened"}
        after = await bridge.request("meter_values", {"timestamp": TIMESTAMP, "evse_id": "1"})
        assert after["data"]["power_active_import"] == 0.0
        assert after["data"]["current"] == {"l1": 0.0, "l2": 0.0, "l3": 0.0}
        await transaction(bridge, "ended")

        assert await sim.exit_code(bridge) == 0
        assert sim.errors == []
        assert bridge.invalid == []
        assert bridge.sequence() == [
            ("websocket_status", "request", {}),
            pilot("A1"),
            pilot("B1"),
            AUTHORIZATION,
            pilot("B2"),
            pilot("C2"),
            contactor("closed"),
            AUTHORIZATION,
            contactor("opened"),  # after stop_charging
            pilot("B1"),
            pilot("A1"),  # unplugged
        ]
        texts = [line.split(" ", 1)[1] for line in sim.lines]
        assert "EVSE 1 EV plugged in (cp_status B1)" in texts
        assert (
            "bridge: transaction tx-1 started on EVSE 1, token 04A1B2C3D4E5F6 (transaction_status)"
            in texts
        )
        assert "bridge asked stop_charging on EVSE 1: accepted" in texts
        assert texts[-1] == "scenario completed: 1 session"


async def test_the_session_waits_for_the_csms_boot_before_plugging_in(broker: Broker) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "20")
        await bridge.respond(await bridge.next("websocket_status"), {"status": "disconnected"})
        await sim.line("waiting up to 20 s for the bridge's CSMS boot")
        await bridge.update("websocket_status", {"status": "connected"})
        await sim.line("bridge: CSMS connected (websocket_status)")
        assert bridge.sequence() == [("websocket_status", "request", {})]  # not plugged in yet
        await bridge.update("boot_status", {"status": "accepted"})
        authorization = await bridge.next("authorization")
        assert bridge.sequence() == [
            ("websocket_status", "request", {}),
            pilot("A1"),
            pilot("B1"),
            AUTHORIZATION,
        ]
        await bridge.respond(authorization, {"status": "rejected"})
        assert await sim.exit_code(bridge) == 1


async def test_a_rejected_token_unplugs_and_exits_1(broker: Broker) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "0", "--token", "DEAD0001")
        authorization = await bridge.next("authorization")
        await bridge.respond(authorization, {"status": "rejected"})
        assert await sim.exit_code(bridge) == 1
        assert sim.errors == ["the bridge answered rejected for token DEAD0001 on EVSE 1."]
        assert bridge.sequence() == [
            pilot("A1"),
            pilot("B1"),
            ("authorization", "request", {**TOKEN, "id_token": "DEAD0001"}),
            pilot("A1"),
        ]


async def test_an_authorization_the_bridge_cannot_take_fails_the_scenario(broker: Broker) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "0")
        authorization = await bridge.next("authorization")
        await bridge.respond(
            authorization,
            {
                "message_type": "CallError",
                "ocpp_version": "ocpp2.0.1",
                "error_code": "NotSupported",
                "error_description": "Not supported yet: 'authorization'",
                "error_details": {},
            },
        )
        assert await sim.exit_code(bridge) == 1
        assert sim.errors == [
            f"the bridge could not take the authorization of token {DEFAULT_TOKEN} on EVSE 1: "
            "refused (NotSupported: Not supported yet: 'authorization')."
        ]
        assert bridge.sequence()[-1] == pilot("A1")  # unplugged


async def test_without_a_ready_bridge_the_scenario_times_out_with_exit_1(broker: Broker) -> None:
    async with fake_bridge(broker, ready=False) as bridge:
        await bridge.update("service_status", {**READY, "status": "error"}, retain=True)
        sim = start(broker, "--timeout", "0.5")
        assert await sim.exit_code(bridge) == 1
        assert sim.errors == ["no service_status ready from the bridge within 0.5 s."]
        assert bridge.sequence() == []  # nothing plugged in before the bridge is ready
        assert any(line.endswith("bridge: service error (service_status)") for line in sim.lines)


async def test_a_broker_lost_during_the_session_is_exit_1(broker: Broker) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "0", "--charge-seconds", "600")
        await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
        await bridge.next("cs_contactor_status", "update")
        broker.stop()
        assert await sim.exit_code(bridge) == 1
        (sentence,) = sim.errors
        assert sentence.startswith(
            f"lost the connection to the MQTT broker at 127.0.0.1:{broker.port}: "
        )
        assert sentence.endswith(".")


async def test_stopped_while_charging_the_simulator_unplugs_and_exits_1(broker: Broker) -> None:
    """Ctrl-C during a session: no EV is left plugged in behind the bridge's back."""
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "0", "--charge-seconds", "600")
        await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
        await bridge.next("cs_contactor_status", "update")
        sim.stop.set()
        assert await sim.exit_code(bridge) == 1
        assert sim.errors == ["stopped before the scenario completed."]
        assert bridge.sequence()[-3:] == [contactor("closed"), pilot("A1"), contactor("opened")]


async def test_a_bridge_that_never_stops_charging_fails_the_scenario(broker: Broker) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "0", "--charge-seconds", "0", "--timeout", "0.5")
        await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
        await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
        assert await sim.exit_code(bridge) == 1
        assert sim.errors == [
            "the bridge did not stop charging on EVSE 1 after the stopping token (no stop_charging)."
        ]
        assert bridge.sequence()[-3:] == [contactor("opened"), pilot("B1"), pilot("A1")]


async def test_a_stop_charging_while_charging_ends_the_session_without_the_token(
    broker: Broker,
) -> None:
    """RequestStopTransaction from the CSMS: the bridge asks stop_charging; the driver unplugs."""
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "0", "--charge-seconds", "600")
        await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
        await bridge.next("cs_contactor_status", "update")
        stop = await bridge.request("stop_charging", {"evse_id": "1"})
        assert stop["data"]["status"] == "accepted"
        await bridge.next("cp_status", "update")  # B1
        await bridge.next("cp_status", "update")  # A1: unplugged
        await transaction(bridge, "ended")
        assert await sim.exit_code(bridge) == 0
        assert [m[2]["state"] for m in bridge.sequence() if m[0] == "cp_status"] == [
            *("A1", "B1", "B2", "C2", "B1", "A1"),
        ]
        assert [m for m in bridge.sequence() if m[0] == "authorization"] == [AUTHORIZATION]


async def test_repeat_plays_each_session_and_waits_for_each_transaction_end(
    broker: Broker,
) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--wait-csms", "0", "--charge-seconds", "0", "--repeat", "2")
        for _ in range(2):
            await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
            await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
            await bridge.request("stop_charging", {"evse_id": "1"})
            await transaction(bridge, "ended")
        assert await sim.exit_code(bridge) == 0
        assert sum(1 for m in bridge.sequence() if m == AUTHORIZATION) == 4
        assert sim.lines[-1].endswith("scenario completed: 2 sessions")


async def test_without_expect_transaction_the_simulator_stops_charging_itself(
    broker: Broker,
) -> None:
    async with fake_bridge(broker) as bridge:
        sim = start(
            broker,
            "--wait-csms",
            "0",
            "--charge-seconds",
            "0",
            "--timeout",
            "0.3",
            "--no-expect-transaction",
        )
        await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
        await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
        assert await sim.exit_code(bridge) == 0
        assert bridge.sequence()[-3:] == [contactor("opened"), pilot("B1"), pilot("A1")]


# --- the answers to the bridge's requests


async def test_every_bridge_request_gets_a_valid_answer_that_makes_sense(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        evses="[1, 1]",
        csms=PROFILE_1,
        extra='[device_model]\n"Connector[2,1].ConnectorType" = "cCCS2"\n',
    )
    async with fake_bridge(broker, ready=False) as bridge:
        sim = start(
            broker,
            "--config",
            str(config),
            "--scenario",
            "idle",
            "--ocpp-result",
            'GetLog={"status": "Accepted", "filename": "log.tar"}',
        )
        await sim.line("idle: answering")

        async def ask(name: str, data: dict[str, Any]) -> dict[str, Any]:
            answer = await bridge.request(name, data)
            assert answer["name"] == name
            assert answer["type"] == "response"
            result: dict[str, Any] = answer["data"]
            return result

        model = await ask("device_model", {})
        assert model == {
            "model": "AC22",
            "vendor": "Acme",
            "identity": "CP001",
            "basic_auth_password": "0123456789abcdef0123",
            "ocpp_csms_url": "ws://127.0.0.1:9000/ocpp",
            "security_profile": 1,
            "serial_number": "SN-0001",
            "firmware_version": "1.0.0",
            "evses": [
                {
                    "ocpp_id": 1,
                    "iso15118_id": "1",
                    "power_kw": 22.0,
                    "supply_phases": 3,
                    "connectors": [{"id": 1, "connector_type": "Unknown"}],
                },
                {
                    "ocpp_id": 2,
                    "iso15118_id": "2",
                    "power_kw": 22.0,
                    "supply_phases": 3,
                    "connectors": [{"id": 1, "connector_type": "cCCS2"}],
                },
            ],
        }
        assert not any("0123456789abcdef0123" in line for line in sim.lines)  # never printed
        limits = await ask("cs_status_and_limits", {})
        assert [(e["evse_id"], e["status_code"]) for e in limits["evses"]] == [
            ("1", "evse_ready"),
            ("2", "evse_ready"),
        ]
        station = await ask("meter_values", {"timestamp": TIMESTAMP})
        assert "evse_id" not in station
        assert station["timestamp"] == TIMESTAMP
        assert station["total_active_energy_imported"] == 0.0  # nothing charged yet
        assert await ask("meter_values", {"timestamp": TIMESTAMP, "evse_id": "3"}) == {
            "message_type": "CallError",
            "ocpp_version": "ocpp2.0.1",
            "error_code": "PropertyConstraintViolation",
            "error_description": "The charger has no EVSE '3'",
            "error_details": {},
        }
        assert await ask("cs_contactor_status", {"evse_id": "2"}) == {
            "evse_id": "2",
            "status": "opened",
        }
        assert await ask("stop_charging", {"evse_id": "2"}) == {
            "evse_id": "2",
            "status": "accepted",
        }
        assert await ask("stop_charging", {"evse_id": "9"}) == {
            "evse_id": "9",
            "status": "rejected",
        }
        for action, status in (("lock", "locked"), ("status", "locked"), ("unlock", "unlocked")):
            assert await ask(
                "cs_connector", {"evse_id": "2", "connector_id": 1, "action": action}
            ) == {
                "evse_id": "2",
                "connector_id": 1,
                "status": status,
            }
        assert (await ask("cs_connector", {"evse_id": "2", "connector_id": 2, "action": "lock"}))[
            "status"
        ] == "error"
        assert await ask(
            "change_availability", {"operational_status": "inoperative", "evse_id": "1"}
        ) == {"status": "accepted"}
        assert await ask("reset", {}) == {"status": "accepted"}
        assert await ask(
            "process_authorized_token", {"evse_id": "1", "id_token": "X", "token_type": "central"}
        ) == {"status": "accepted"}
        delegated = {"ocpp_version": "ocpp2.0.1", "message_name": "UpdateFirmware", "payload": {}}
        assert await ask("ocpp_message", delegated) == {
            "message_type": "CallError",
            "ocpp_version": "ocpp2.0.1",
            "error_code": "NotSupported",
            "error_description": "The charger has no handler for UpdateFirmware",
            "error_details": {},
        }
        get_log = {
            **delegated,
            "message_name": "GetLog",
            "payload": {
                "requestId": 1,
                "logType": "DiagnosticsLog",
                "log": {"remoteLocation": "https://x.example/"},
            },
        }
        assert await ask("ocpp_message", get_log) == {
            "message_type": "CallResult",
            "ocpp_version": "ocpp2.0.1",
            "payload": {"status": "Accepted", "filename": "log.tar"},
        }
        # Requests the charger cannot take: an unknown field, an unknown name.
        wrong = await ask("reset", {"evse_id": "1", "hard": True})
        assert (wrong["message_type"], wrong["error_code"]) == ("CallError", "FormatViolation")
        unknown = await ask("make_coffee", {})
        assert unknown["error_code"] == "NotSupported"

        assert bridge.invalid == []
        assert bridge.sequence() == []  # idle: no updates of its own
        sim.stop.set()
        assert await sim.exit_code(bridge) == 0


async def test_device_model_is_not_answered_when_the_file_has_security_profile_0(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(tmp_path / "bridge.toml", broker, csms='url = "ws://127.0.0.1:9000/ocpp"')
    async with fake_bridge(broker) as bridge:
        sim = start(broker, "--config", str(config), "--scenario", "idle")
        await sim.line("idle: answering")
        await bridge.publish(
            {"id": str(uuid.uuid4()), "name": "device_model", "type": "request", "data": {}}
        )
        line = await sim.line("bridge asked device_model")
        assert line.endswith(
            "not answered (the configuration's [csms] security_profile 0 cannot be carried by "
            "the answer (1 to 3))"
        )
        # Asked after the device_model request, answered: the first got no answer at all.
        await bridge.request("reset", {})
        assert [m["name"] for m in bridge.seen] == ["reset"]
        sim.stop.set()
        assert await sim.exit_code(bridge) == 0


def test_the_config_device_model_answer_changes_nothing_in_the_station(tmp_path: Path) -> None:
    extra = (
        '[device_model]\n"Connector[1,1].ConnectorType" = "sType2"\n"EVSE[1].SupplyPhases" = 1\n'
    )
    station = make_station(tmp_path, csms=PROFILE_1, extra=extra)
    settings = load_settings(
        write_config(tmp_path / "bridge.toml", None, csms=PROFILE_1, extra=extra)
    )
    answer, why = sim_device_model.from_settings(settings)
    assert answer is not None, why
    dm = station.device_model
    keys = ("Connector[1,1].ConnectorType", "EVSE[1].SupplyPhases", "SecurityCtrlr.SecurityProfile")
    before = (
        [dm.value(k) for k in keys],
        station.oem_device_model.charging_station(),
        station.identity,
    )
    station.take_effects()
    assert station.apply_device_model(answer) is True
    assert (
        [dm.value(k) for k in keys],
        station.oem_device_model.charging_station(),
        station.identity,
    ) == before
    assert station.take_effects() == []


def test_the_demo_device_model_is_a_valid_answer_the_station_takes(tmp_path: Path) -> None:
    answer = sim_device_model.demo([EvseSpec(1)])
    body = {"id": str(uuid.uuid4()), "name": "device_model", "type": "response", "data": answer}
    assert schema_errors(body) == []
    station = make_station(tmp_path)
    assert station.apply_device_model(answer) is True
    assert station.oem_device_model.charging_station()["serialNumber"] == "SIM-0001"


def test_the_energy_register_integrates_the_power_while_the_ev_charges() -> None:
    now = [100.0]
    firmware = Firmware([EvseSpec(1)], power_kw=7.2, clock=lambda: now[0])
    evse = firmware.evses[1]
    firmware.plug_in(evse, 1)
    now[0] += 3600  # plugged in, not charging: nothing counted
    assert evse.energy_wh == 0
    firmware.start_charging(evse, 1)
    now[0] += 1800
    assert evse.energy_wh == pytest.approx(3600.0)  # 7.2 kW for half an hour
    evse.set_pilot(1, "B2")  # the EV pauses: the contactor stays closed, no current
    now[0] += 600
    assert evse.energy_wh == pytest.approx(3600.0)
    evse.set_pilot(1, "C2")
    now[0] += 900
    firmware.stop(evse)
    now[0] += 900
    assert evse.energy_wh == pytest.approx(5400.0)
    assert firmware.station_meter()["total_active_energy_imported"] == pytest.approx(5400.0)


# --- the command line


def test_an_unreachable_broker_is_exit_2_with_one_sentence() -> None:
    port = free_port()
    out = subprocess.run([*SIM, "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr == (
        f"python -m bridge.oem_sim: cannot reach the MQTT broker at 127.0.0.1:{port}: "
        "connection refused.\n"
    )
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--evse", "2"], "--evse 2: the station has EVSE 1."),
        (["--token", "x" * 37], "--token must be 1 to 36 characters (OCPP IdToken)."),
        (
            ["--token-type", "no_authorization"],
            "--token-type no_authorization has no token to stop with: add --stop unplug.",
        ),
        (
            ["--config", "/nonexistent/bridge.toml"],
            "/nonexistent/bridge.toml: cannot read the configuration file (No such file or directory)",
        ),
    ],
)
def test_bad_arguments_are_exit_2_with_one_sentence(args: list[str], sentence: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr == f"ocpp-bridge simulate: {sentence}\n"


def test_help_of_both_entry_points_lists_the_scenario_options() -> None:
    for command in (SIM, [sys.executable, "-m", "bridge", "simulate"]):
        out = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, check=True, timeout=30
        )
        for option in (
            "--config",
            "--scenario",
            "--repeat",
            "--token-type",
            "--charge-seconds",
            "--stop",
        ):
            assert option in out.stdout


async def test_the_simulator_as_a_process_reads_the_bridge_config_and_stops_by_unplugging(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)  # its [mqtt] names the broker
    async with fake_bridge(broker) as bridge:
        process = await asyncio.create_subprocess_exec(
            *SIM,
            *("--config", str(config), "--stop", "unplug", "--charge-seconds", "0"),
            *("--wait-csms", "0", "--timeout", "15", "--power-kw", "7.4"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            await bridge.respond(await bridge.next("authorization"), {"status": "accepted"})
            await transaction(bridge, "started")
            unplugged = await bridge.next("cp_status", "update")
            while unplugged["data"]["state"] != "A1":
                unplugged = await bridge.next("cp_status", "update")
            opened = await bridge.next("cs_contactor_status", "update")  # after the unplug
            assert opened["data"]["status"] == "opened"
            await transaction(bridge, "ended")
            stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, stderr.decode()
        assert bridge.sequence() == [
            pilot("A1"),
            pilot("B1"),
            AUTHORIZATION,
            pilot("B2"),
            pilot("C2"),
            contactor("closed"),
            pilot("A1"),  # unplugged while charging: the contactor opens after it
            contactor("opened"),
        ]
        assert bridge.invalid == []
        lines = stdout.decode().splitlines()
        assert lines[0].endswith(
            f"connected to the MQTT broker at 127.0.0.1:{broker.port}, listening on josev/cs"
        )
        assert any(
            line.endswith(
                "EVSE 1 contactor closed, charging at 7.4 kW (cs_contactor_status closed)"
            )
            for line in lines
        )
        assert lines[-1].endswith("scenario completed: 1 session")


async def test_an_idle_simulator_process_stops_on_sigterm_with_exit_0(broker: Broker) -> None:
    async with fake_bridge(broker) as bridge:
        process = await asyncio.create_subprocess_exec(
            *SIM, "--port", str(broker.port), "--scenario", "idle", stdout=subprocess.PIPE
        )
        try:
            answer = await asyncio.wait_for(_answered(bridge, "reset"), 30)
            assert answer["data"] == {"status": "accepted"}
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _answered(bridge: FakeBridge, name: str) -> dict[str, Any]:
    """Ask until the simulator (starting) answers."""
    while True:
        with contextlib.suppress(TimeoutError):
            return await bridge.request(name, {}, timeout=0.5)
