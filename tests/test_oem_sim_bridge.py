"""End to end: the OEM firmware simulator, the real bridge and the demo CSMS through a real
Mosquitto and a real WebSocket: one charging session becomes one OCPP transaction (E, with C and
J): TransactionEvent Started, Updated, Ended, and the simulator exits 0."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bridge.demo_csms import DemoCsms, Received
from bridge.oem_sim import DEFAULT_TOKEN, cli
from bridge.oem_sim.simulator import Simulator
from tests.conftest import Broker, running_bridge, write_config

PASSWORD = "0123456789abcdef0123"


def energy(event: dict[str, Any]) -> float | None:
    """The last Energy.Active.Import.Register of a TransactionEvent (None: it has none)."""
    found = None
    for meter_value in event.get("meterValue", []):
        for sampled in meter_value["sampledValue"]:
            if sampled.get("measurand", "Energy.Active.Import.Register") == (
                "Energy.Active.Import.Register"
            ):
                found = float(sampled["value"])
    return found


def ended(received: Received) -> bool:
    return received.payload["eventType"] == "Ended"


@pytest.mark.parametrize(
    ("stop", "trigger", "reason"),
    [
        ("token", "StopAuthorized", "Local"),  # E07: the same token presented again
        ("unplug", "EVCommunicationLost", "EVDisconnected"),  # E09: StopTxOnEVSideDisconnect
    ],
)
async def test_a_simulated_session_is_one_transaction_started_updated_ended(
    tmp_path: Path, broker: Broker, stop: str, trigger: str, reason: str
) -> None:
    async with DemoCsms(password=PASSWORD) as csms:
        config = write_config(
            tmp_path / "bridge.toml",
            broker,
            csms=f'url = "{csms.url}"\nsecurity_profile = 1\npassword = "{PASSWORD}"',
            oem="startup_timeout = 10",  # the simulator answers device_model at start
            extra='[device_model]\n"SampledDataCtrlr.TxUpdatedInterval" = 1\n',
        )
        argv = ["--config", str(config), "--charge-seconds", "3", "--stop", stop]
        lines: list[str] = []
        errors: list[str] = []
        simulator = Simulator(
            cli.options(cli.parser().parse_args(argv)), write=lines.append, complain=errors.append
        )
        sim = asyncio.create_task(simulator.run())  # first: it is there when the bridge asks
        await asyncio.sleep(0.5)
        async with running_bridge(config):
            assert await asyncio.wait_for(sim, 60) == 0, errors
            (end,) = await csms.wait_for("TransactionEvent", predicate=ended, timeout=15)

    events = [r.payload for r in csms.received if r.action == "TransactionEvent"]
    kinds = [e["eventType"] for e in events]
    assert kinds[0] == "Started"
    assert kinds[-1] == "Ended"
    assert "Updated" in kinds[1:-1]
    assert kinds.count("Started") == kinds.count("Ended") == 1
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert all(e["evse"]["id"] == 1 for e in events if "evse" in e)
    assert {"idToken": DEFAULT_TOKEN, "type": "ISO14443"} in [e.get("idToken") for e in events]
    assert end.payload["triggerReason"] == trigger
    assert end.payload["transactionInfo"].get("stoppedReason", "Local") == reason
    charged = energy(end.payload)
    assert charged is not None
    assert charged > 0  # the simulator's meter ran while charging
    assert any(e["transactionInfo"].get("chargingState") == "Charging" for e in events)
    assert csms.schema_errors == []
    texts = [line.split(" ", 1)[1] for line in lines]
    assert "bridge asked device_model: station CP001" in texts
    assert not [t for t in texts if t.startswith("warning")]
    assert any(t.startswith("bridge: transaction ") and " ended " in t for t in texts)
