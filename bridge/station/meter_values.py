"""Placeholder until the meter-values block lands."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def measurand_list(text: str | None) -> list[str]:
    return [m.strip() for m in (text or "").split(",") if m.strip()]


def meter_value(
    reading: dict[str, Any],
    measurands: Sequence[str],
    context: str,
    timestamp: str,
    phases: int = 3,
) -> dict[str, Any] | None:
    values = []
    if "Energy.Active.Import.Register" in measurands and "total_active_energy_imported" in reading:
        values.append(
            {
                "value": reading["total_active_energy_imported"],
                "measurand": "Energy.Active.Import.Register",
                "context": context,
                "unitOfMeasure": {"unit": "Wh"},
            }
        )
    return {"timestamp": timestamp, "sampledValue": values} if values else None


def seconds_to_aligned(now: float, interval: int) -> float:
    if interval <= 0:
        return math.inf
    return interval - (now % interval) or float(interval)


def energy_wh(reading: dict[str, Any]) -> float | None:
    value = reading.get("total_active_energy_imported")
    return float(value) if isinstance(value, int | float) else None
