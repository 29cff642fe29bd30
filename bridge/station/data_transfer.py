"""DataTransfer (P01, P02).

P01, CSMS -> station: the bridge implements no vendor extension of its own. With DataTransfer in
`[oem] delegate` the OEM answers it; otherwise the answer is a CallResult with status
UnknownVendorId, not a CALLERROR (P01.FR.05: no implementation for that vendorId; no data).

P02, station -> CSMS: the OEM's DataTransfer through `ocpp_message` is forwarded to the CSMS
(bridge.station.actions `forwarded`), and the OEM gets the CSMS's answer.
"""

from __future__ import annotations

import logging
from typing import Any

from bridge.rpc.request import Request

log = logging.getLogger(__name__)


def data_transfer(request: Request) -> dict[str, Any]:
    """P01.FR.05: no vendor extension here: UnknownVendorId, without data."""
    vendor = str(request.payload["vendorId"])[:255]
    log.info("DataTransfer for vendorId %r: UnknownVendorId", vendor)
    return {"status": "UnknownVendorId"}
