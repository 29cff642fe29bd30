"""What the station asks its driver to do: the station is plain Python fed with events (a CSMS
frame, an OEM message, a timer), and what needs I/O comes out as these values.

Messages to the CSMS are not effects: the station puts them in its outbound queue, whose drain
task (one per connection) is the only sender.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Schedule:
    """Call `station.timer(name)` after `delay` seconds (replaces a pending timer of that name)."""

    timer: str
    delay: float


@dataclass(frozen=True, slots=True)
class Cancel:
    timer: str


@dataclass(frozen=True, slots=True)
class Publish:
    """An update to the OEM on the response topic (`retain` only for service_status)."""

    name: str
    data: dict[str, Any]
    retain: bool = False


@dataclass(frozen=True, slots=True)
class AskOem:
    """A request to the OEM; its answer (or a timeout) comes back as `station.oem_answered(key,
    answer)`."""

    name: str
    data: dict[str, Any]
    key: str
    timeout: float | None = None  # None: [oem] request_timeout


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close the CSMS connection once its CALLs are answered, then connect again after `delay`."""

    delay: float
    reason: str


@dataclass(slots=True)
class Effects:
    """Where the station's blocks put effects; the driver takes them after every event.

    `notify` (set by the driver) hears of every new effect, so that effects an asynchronous
    handler asks for before it awaits are carried out while it waits (e.g. the meter_values
    request an authorization answer waits for), not after it."""

    items: list[Effect] = field(default_factory=list)
    notify: Callable[[], None] | None = None

    def add(self, effect: Effect) -> None:
        self.items.append(effect)
        if self.notify is not None:
            self.notify()

    def take(self) -> list[Effect]:
        items, self.items = self.items, []
        return items


@dataclass(frozen=True, slots=True)
class Send:
    """Queue this CALL once the current response is out (F06.FR.04: the TriggerMessage response
    goes first, then the message it asked for)."""

    action: str
    payload: dict[str, Any]
    origin: str
    triggered: bool = True


Effect = Schedule | Cancel | Publish | AskOem | Reconnect | Send
