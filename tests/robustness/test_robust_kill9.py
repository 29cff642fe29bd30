"""kill -9 during a burst of SetVariables: after the restart the store is intact, and the values
are those of one whole request (each SetVariables is one transaction), never older than the last
request the bridge acknowledged."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, ocpp_message, write_config
from tests.robustness.robust_support import (
    BridgeProcess,
    Oem,
    get_variables,
    integrity_check,
    oem_client,
    tracebacks,
    until_answering,
)

BURST = 1_000
WINDOW = 200
CYCLES = 5

# Integer variables take 1000·i + k in request k (so each value names its request); the others
# alternate with the parity of k.
INTEGERS = (
    ("OCPPCommCtrlr", "OfflineThreshold"),
    ("TxCtrlr", "EVConnectionTimeOut"),
    ("SampledDataCtrlr", "TxUpdatedInterval"),
    ("SampledDataCtrlr", "TxEndedInterval"),
    ("OCPPCommCtrlr", "HeartbeatInterval"),
)
ALTERNATING = (
    ("AuthCtrlr", "LocalAuthorizeOffline", ("true", "false")),
    ("TxCtrlr", "TxStartPoint", ("EVConnected", "Authorized,EVConnected")),
    ("OCPPCommCtrlr", "QueueAllMessages", ("false", "true")),
)
ORIGINAL = {
    "OCPPCommCtrlr.OfflineThreshold": "60",
    "TxCtrlr.EVConnectionTimeOut": "120",
    "SampledDataCtrlr.TxUpdatedInterval": "120",
    "SampledDataCtrlr.TxEndedInterval": "60",
    "OCPPCommCtrlr.HeartbeatInterval": "1800",
    "AuthCtrlr.LocalAuthorizeOffline": "true",
    "TxCtrlr.TxStartPoint": "Authorized,EVConnected",
    "OCPPCommCtrlr.QueueAllMessages": "false",
}


def values_of(k: int) -> dict[str, str]:
    """The values request k sets (k = 1, 2, ...; 0 = the original values)."""
    if k == 0:
        return dict(ORIGINAL)
    out = {f"{c}.{v}": str(100_000 * (i + 1) + k) for i, (c, v) in enumerate(INTEGERS)}
    out |= {f"{c}.{v}": pair[k % 2] for c, v, pair in ALTERNATING}
    return out


def set_request(k: int) -> dict[str, Any]:
    items = []
    for key, value in values_of(k).items():
        component, variable = key.split(".")
        items.append(
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "attributeValue": value,
            }
        )
    return ocpp_message("SetVariables", {"setVariableData": items})


def which_request(values: dict[str, str], sent: int) -> int | None:
    """The request whose values these are (0: the original), or None when they are a mix."""
    offline = values.get("OCPPCommCtrlr.OfflineThreshold", "")
    k = int(offline) - 100_000 if offline.isdigit() and int(offline) > 100_000 else 0
    return k if k <= sent and values == values_of(k) else None


async def stored_values(oem: Oem) -> dict[str, str]:
    """The values the bridge reports for the variables of ORIGINAL, by "component.variable"."""
    keys = [(key.split(".")[0], key.split(".")[1]) for key in ORIGINAL]
    answer = await oem.request(ocpp_message("GetVariables", get_variables(*keys)))
    return {
        f"{r['component']['name']}.{r['variable']['name']}": r["attributeValue"]
        for r in answer["data"]["payload"]["getVariableResult"]
    }


@pytest.mark.timeout(120)
async def test_kill_9_during_a_set_variables_burst(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "bridge.toml", broker)
    store = tmp_path / "bridge.db"
    rng = random.Random(9)
    report = []
    last_k = 0  # the request whose values the store must hold at the start of a cycle
    next_k = 1
    for cycle in range(1, CYCLES + 1):
        bridge = BridgeProcess(config, tmp_path / f"bridge-{cycle}.log").start()
        async with oem_client(broker.host, broker.port) as oem:
            await until_answering(oem)
            # After the restart: the values of exactly one request, none older than acknowledged.
            values = await stored_values(oem)
            found = which_request(values, next_k - 1)
            assert found is not None, f"cycle {cycle}: a mix of requests' values: {values}"
            assert found >= last_k, (
                f"cycle {cycle}: the store holds request {found}'s values, but request {last_k} "
                "had been acknowledged before the kill"
            )
            report.append(f"cycle {cycle}: restarted with request {found}'s values")
            first = next_k
            requests = [set_request(k) for k in range(first, first + BURST)]
            next_k += BURST
            kill_after = rng.uniform(0.3, 1.2)

            async def burst(requests: list[dict[str, Any]] = requests) -> None:
                for start in range(0, len(requests), WINDOW // 2):
                    batch = requests[start : start + WINDOW // 2]
                    await oem.publish_all(batch)
                    waiting = [r["id"] for r in requests[max(0, start - WINDOW // 2) : start]]
                    await oem.wait_for(waiting, 10)

            sending = asyncio.create_task(burst())
            await asyncio.sleep(kill_after)
            bridge.kill9()
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            acknowledged = [
                first + i
                for i, r in enumerate(requests)
                if oem.answers.get(r["id"])
                and {
                    x["attributeStatus"]
                    for x in oem.answers[r["id"]][0]["data"]["payload"]["setVariableResult"]
                }
                == {"Accepted"}
            ]
            assert acknowledged, "no SetVariables was answered before the kill: kill later"
            last_k = max(acknowledged)
            assert integrity_check(store) == "ok"  # the file as the kill left it
            report[-1] += (
                f"; killed after {kill_after:.2f} s with {len(acknowledged)} of {BURST} "
                f"acknowledged (up to request {last_k})"
            )
        assert not tracebacks(bridge.log_text()), bridge.log_text()
    bridge = BridgeProcess(config, tmp_path / "bridge-final.log").start()
    try:
        async with oem_client(broker.host, broker.port) as oem:
            await until_answering(oem)
            values = await stored_values(oem)
            found = which_request(values, next_k - 1)
            assert found is not None, values
            assert found >= last_k, values
            report.append(f"final restart: request {found}'s values")
    finally:
        assert bridge.stop() == 0
    print("\n".join(report))
    assert integrity_check(store) == "ok"
