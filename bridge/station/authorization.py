"""Placeholder until the authorization block lands (local list, cache)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bridge.station.device_model import DeviceModel
from bridge.store import Store


class Authorization:
    def __init__(
        self, store: Store, device_model: DeviceModel, wall: Callable[[], float] = time.time
    ) -> None:
        self.device_model = device_model

    def local_info(self, id_token: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def offline_info(self, id_token: dict[str, Any]) -> dict[str, Any] | None:
        if self.device_model.bool_value("AuthCtrlr.OfflineTxForUnknownIdEnabled"):
            return {"status": "Accepted"}
        return None

    def remember(self, id_token: dict[str, Any], id_token_info: dict[str, Any]) -> None:
        return None

    def same_group(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        return a.get("idToken") == b.get("idToken") and a.get("type") == b.get("type")
