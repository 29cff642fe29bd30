"""One size for both doors (B06.FR.17): BytesPerMessage limits the UTF-8 bytes of the CALL frame,
whether the request came from the CSMS or in an OEM's ocpp_message (it used to be envelope
bytes at one door and characters at the other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.demo_csms import CallErrorReceived, DemoCsms
from bridge.rpc.request import call_size
from tests.conftest import Broker, Oem, running_bridge, write_config
from tests.test_oem_link import accepted


def get_variables(items: int) -> dict[str, Any]:
    """`items` GetVariableData with non-ASCII instances: bytes and characters differ."""
    return {
        "getVariableData": [
            {"component": {"name": "Connector", "instance": f"é{n}"}, "variable": {"name": "X"}}
            for n in range(items)
        ]
    }


PAYLOAD = get_variables(100)
# The CSMS and the OEM frame it with their own 36-character ids; the size does not depend on which.
SIZE = call_size("00000000-0000-0000-0000-000000000000", "GetVariables", PAYLOAD)


@pytest.mark.parametrize(("limit", "accepted_size"), [(SIZE, True), (SIZE - 1, False)])
async def test_bytes_per_message_counts_the_same_at_both_doors(
    tmp_path: Path, broker: Broker, oem: Oem, limit: int, accepted_size: bool
) -> None:
    preload = f'[device_model]\n"DeviceDataCtrlr.BytesPerMessage[GetVariables]" = {limit}\n'
    async with DemoCsms() as csms:
        config = write_config(
            tmp_path / "bridge.toml", broker, csms=f'url = "{csms.url}"', extra=preload
        )
        async with running_bridge(config) as bridge:
            await accepted(bridge)
            over_mqtt = await oem.ocpp("GetVariables", PAYLOAD)
            try:
                from_csms: Any = await csms.call("CP001", "GetVariables", PAYLOAD)
            except CallErrorReceived as e:
                from_csms = e
    if accepted_size:
        assert over_mqtt["message_type"] == "CallResult"
        assert len(from_csms["getVariableResult"]) == 100
    else:
        assert over_mqtt["error_code"] == "FormatViolation"
        assert isinstance(from_csms, CallErrorReceived)
        assert from_csms.code == "FormatViolation"
        assert f"is {SIZE} bytes" in over_mqtt["error_description"]
