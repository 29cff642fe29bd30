"""OCPP timestamps: UTC, at most 3 fractional digits, 'Z' suffix (some CSMSs reject more digits)."""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def ocpp_timestamp(moment: datetime | None = None) -> str:
    """Format `moment` (default: now) as `2026-11-22T10:00:00.123Z`."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# RFC 3339 section 5.6 date-time (not ISO 8601's wider grammar: no week dates, comma fractions,
# "+01" offsets or spaces). T and Z may be lower case.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def is_date_time(text: str) -> bool:
    """Is `text` an RFC 3339 date-time (the JSON Schema "date-time" format)?"""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    # Year 0 (proleptic Gregorian) is a leap year, as 2000 is; calendar cannot take year 0.
    if not 1 <= month <= 12 or not 1 <= day <= monthrange(year or 2000, month)[1]:
        return False
    offset_hour, offset_minute = int(match[9] or 0), int(match[10] or 0)
    if hour > 23 or minute > 59 or second > 60 or offset_hour > 23 or offset_minute > 59:
        return False
    if second == 60:  # a leap second: only at 23:59:60 UTC (RFC 3339 5.7)
        sign = -1 if match[8] == "+" else 1
        utc = (hour * 60 + minute + sign * (offset_hour * 60 + offset_minute)) % 1440
        return utc == 23 * 60 + 59
    return True


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime; None when it is not one (or not
    representable: year 0, a leap second)."""
    if not is_date_time(text):
        return None
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:
        return None


class Clock:
    """The station's time: the system clock plus an offset learned from the CSMS.

    Boards without a battery-backed clock start far in the past; B01.FR.06 / G02.FR.06 let the
    station take the time from BootNotification and Heartbeat responses instead.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)
        # Told how far each synchronization moved the clock (A04: SettingSystemTime).
        self.on_adjusted: Callable[[timedelta], None] = lambda jump: None

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def timestamp(self) -> str:
        return ocpp_timestamp(self.now())

    def synchronize(self, current_time: str) -> None:
        """Adopt the CSMS's `currentTime` (ignored when it is not a valid date-time)."""
        moment = parse_timestamp(current_time)
        if moment is not None:
            offset = moment - datetime.now(UTC)
            jump, self.offset = offset - self.offset, offset
            self.on_adjusted(jump)
