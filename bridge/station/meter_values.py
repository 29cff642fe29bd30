"""Meter values functional block (J01 clock-aligned, J02 transaction-related): the OEM's
`meter_values` answer turned into OCPP 2.0.1 `MeterValueType` / `SampledValueType`.

Pure functions, no I/O: the caller asks the OEM for a sample, passes the answer's `data` here
with the measurands configured for that moment (SampledDataCtrlr.TxStartedMeasurands,
TxUpdatedMeasurands, TxEndedMeasurands, AlignedDataCtrlr.Measurands, TxEndedMeasurands) and the
reading context, and puts the result into a TransactionEvent or MeterValues request.

Rules where OCPP leaves a choice:
- `measurand`, `unitOfMeasure`, `context` and `location` are always written out, never left to
  OCPP's defaults (Energy.Active.Import.Register, Wh, Sample.Periodic, Outlet), as EVerest does;
  Power.Factor has no unit, so it has no `unitOfMeasure`. No `multiplier`: values are in the base
  unit the OEM gives (Wh, varh, V, A, Hz, W, %).
- Within one measurand the value without a phase (DC, or a total) comes first, then L1, L2, L3.
- A signed value (`signed_meter_values`) goes on the first sampled value of its measurand only
  (the DC or total one when there is one, otherwise L1): one signature covers the measurand, and
  repeating a 2500-character blob on every phase would only make the message larger.
- A value that is not a finite number (missing, null, text, NaN, infinity) is left out, without an
  exception; one malformed field never costs the rest of the sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

# ReadingContextEnumType.
CONTEXTS: Final = (
    "Interruption.Begin",
    "Interruption.End",
    "Other",
    "Sample.Clock",
    "Sample.Periodic",
    "Transaction.Begin",
    "Transaction.End",
    "Trigger",
)

_DAY: Final = 86_400


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a measurand is in a meter_values answer, and how OCPP names it."""

    unit: str | None  # UnitOfMeasureType.unit; None: dimensionless
    location: str  # LocationEnumType
    field: str  # the value without phase (a register, a DC value)
    lines: str | None = None  # the object with l1..l3, for a value per AC phase
    phases: tuple[str, ...] = ()  # PhaseEnumType of l1, l2, l3


_SOURCES: Final = {
    "Energy.Active.Import.Register": _Source("Wh", "Outlet", "total_active_energy_imported"),
    "Energy.Active.Export.Register": _Source("Wh", "Outlet", "total_active_energy_exported"),
    "Energy.Reactive.Import.Register": _Source("varh", "Outlet", "total_reactive_energy_imported"),
    "Energy.Reactive.Export.Register": _Source("varh", "Outlet", "total_reactive_energy_exported"),
    # Voltage is phase to neutral.
    "Voltage": _Source("V", "Outlet", "dc_voltage", "voltage", ("L1-N", "L2-N", "L3-N")),
    "Current.Import": _Source("A", "Outlet", "dc_current", "current", ("L1", "L2", "L3")),
    "Power.Factor": _Source(None, "Outlet", "power_factor"),
    "Frequency": _Source("Hz", "Outlet", "frequency"),
    "SoC": _Source("Percent", "EV", "soc"),
    # Our extension: reported only when the OEM gives it, never computed from V x A.
    "Power.Active.Import": _Source("W", "Outlet", "power_active_import"),
}

# Every measurand a meter_values answer can carry (MeasurandEnumType spellings).
SUPPORTED: Final = frozenset(_SOURCES)

# SignedMeterValueType limits in OCPP 2.0.1: a longer field would make the message invalid, and
# cutting a signature breaks it, so such an entry is left out instead.
_SIGNED_FIELDS: Final = (
    ("signed_meter_data", "signedMeterData", 2500),
    ("signing_method", "signingMethod", 50),
    ("encoding_method", "encodingMethod", 50),
    ("public_key", "publicKey", 2500),
)

# Decimal digits a double always carries faithfully (DBL_DIG): any number the OEM wrote with at
# most 15 significant digits comes back unchanged, and binary noise (0.1 + 0.2) disappears.
_DIGITS: Final = 15


def number(value: object) -> int | float | None:
    """`value` as an OCPP decimal: ints kept, floats rounded to 15 significant digits; None for
    anything that is not a finite number (booleans included: JSON `true` is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{_DIGITS}g}")
    return None


def measurand_list(text: str | None) -> list[str]:
    """A MemberList value (`"a,b"`) as a list in its order; blanks and repeats dropped."""
    if not text:
        return []
    members: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if name and name not in members:
            members.append(name)
    return members


def _signed(reading: Mapping[str, Any], measurand: str, public_key: bool) -> dict[str, str] | None:
    """The SignedMeterValueType for `measurand`, from the first usable entry the OEM signed."""
    entries = reading.get("signed_meter_values")
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("measurand") != measurand:
            continue
        signed: dict[str, str] = {}
        for ours, theirs, limit in _SIGNED_FIELDS:
            text = entry.get(ours)
            if not isinstance(text, str) or len(text) > limit:
                break
            signed[theirs] = text
        else:
            if not public_key:
                # Required in 2.0.1; empty when PublicKeyWithSignedMeterValue says not to send it.
                signed["publicKey"] = ""
            return signed
    return None


def _values(
    reading: Mapping[str, Any], measurand: str, phases: int
) -> Iterator[tuple[int | float, str | None]]:
    """(value, phase) of one measurand as the reading gives it: without phase first, then the
    phases the station has (l1..l`phases`) that carry a number."""
    source = _SOURCES[measurand]
    value = number(reading.get(source.field))
    if value is not None:
        yield value, None
    lines = reading.get(source.lines) if source.lines else None
    if isinstance(lines, Mapping):
        for index, phase in enumerate(source.phases[: max(phases, 0)], start=1):
            value = number(lines.get(f"l{index}"))
            if value is not None:
                yield value, phase


def sampled_values(
    reading: Mapping[str, Any],
    measurands: Sequence[str],
    context: str,
    phases: int = 3,
    *,
    signed: bool = True,
    public_key: bool = True,
) -> list[dict[str, Any]]:
    """OCPP SampledValueType list for exactly the configured `measurands` the reading carries,
    in the configured order (J01, J02).

    `reading`: the `data` of a meter_values answer. `phases`: the EVSE's SupplyPhases (0 for DC:
    only dc_voltage / dc_current then). A configured measurand the OEM did not give, a phase the
    station does not have, and a measurand this meter cannot give are left out.
    `signed`: attach signedMeterValue where the OEM signed the measurand (SignReadings, J02.FR.21);
    `public_key`: include the public key in it (PublicKeyWithSignedMeterValue).
    """
    if context not in CONTEXTS:
        raise ValueError(f"{context!r} is not an OCPP 2.0.1 reading context.")
    out: list[dict[str, Any]] = []
    done: set[str] = set()
    for measurand in measurands:
        if measurand in done or measurand not in _SOURCES:
            continue
        done.add(measurand)
        source = _SOURCES[measurand]
        signature = _signed(reading, measurand, public_key) if signed else None
        for value, phase in _values(reading, measurand, phases):
            sampled: dict[str, Any] = {"value": value, "context": context, "measurand": measurand}
            if phase is not None:
                sampled["phase"] = phase
            sampled["location"] = source.location
            if source.unit is not None:
                sampled["unitOfMeasure"] = {"unit": source.unit}
            if signature is not None:
                sampled["signedMeterValue"] = signature
                signature = None  # on the first sampled value of the measurand only
            out.append(sampled)
    return out


def meter_value(
    reading: Mapping[str, Any],
    measurands: Sequence[str],
    context: str,
    timestamp: str,
    phases: int = 3,
    *,
    signed: bool = True,
    public_key: bool = True,
) -> dict[str, Any] | None:
    """One OCPP MeterValueType `{timestamp, sampledValue}`; None when the reading gives none of
    the configured measurands (sampledValue needs at least one item: send the event without it)."""
    values = sampled_values(
        reading, measurands, context, phases, signed=signed, public_key=public_key
    )
    if not values:
        return None
    return {"timestamp": timestamp, "sampledValue": values}


def energy_wh(reading: Mapping[str, Any]) -> float | None:
    """The imported active energy register in Wh (for TxCtrlr.MaxEnergyOnInvalidId), or None."""
    value = number(reading.get("total_active_energy_imported"))
    return None if value is None else float(value)


def seconds_to_aligned(now: float, interval: int) -> float:
    """Seconds from `now` (epoch seconds, UTC) to the next clock-aligned sample (J01).

    Samples fall every `interval` seconds (AlignedDataCtrlr.Interval) counted from 00:00:00 UTC
    each day, and again at every midnight (an interval that does not divide a day restarts there;
    one of a day or more samples at midnight only). `interval` 0 (or less) means no clock-aligned
    data: math.inf. Never 0: on a boundary exactly, the next one.
    """
    if interval <= 0 or not math.isfinite(now):
        return math.inf
    midnight = math.floor(now / _DAY) * _DAY
    # now / _DAY may round across a midnight: keep 0 <= elapsed < _DAY.
    if midnight > now:
        midnight -= _DAY
    elif now - midnight >= _DAY:
        midnight += _DAY
    elapsed = now - midnight
    # `//` on floats is exact: 899.9999999 // 900 is 0, never 1 as floor(899.9999999 / 900) may be.
    step = (elapsed // interval + 1) * interval
    boundary = midnight + min(step, _DAY)
    return boundary - now
