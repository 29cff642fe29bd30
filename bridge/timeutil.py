"""OCPP timestamps: UTC, at most 3 fractional digits, 'Z' suffix (some CSMSs reject more digits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def ocpp_timestamp(moment: datetime | None = None) -> str:
    """Format `moment` (default: now) as `2026-11-22T10:00:00.123Z`."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime | None:
    """Parse an RFC 3339 date-time; None when it is not one. Naive values are rejected."""
    if len(text) < 20 or text[10] not in "Tt":
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class Clock:
    """The station's time: the system clock plus an offset learned from the CSMS.

    Boards without a battery-backed clock start far in the past; B01.FR.06 / G02.FR.06 let the
    station take the time from BootNotification and Heartbeat responses instead.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def timestamp(self) -> str:
        return ocpp_timestamp(self.now())

    def synchronize(self, current_time: str) -> None:
        """Adopt the CSMS's `currentTime` (ignored when it is not a valid date-time)."""
        moment = parse_timestamp(current_time)
        if moment is not None:
            self.offset = moment - datetime.now(UTC)
