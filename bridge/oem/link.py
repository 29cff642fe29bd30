"""The bridge's own requests to the OEM firmware, and its updates.

A request goes out on the response topic with a fresh envelope id and waits for the OEM's
response with the same id on the request topic. Every wait ends: with an `OemAnswer`, or with an
`OemNoAnswer` after `[oem] request_timeout` (or at once when the answer is malformed). A late
answer is logged and ignored. The link never resends a request on its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bridge.oem import envelope
from bridge.rpc.correlator import Correlator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OemAnswer:
    name: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OemNoAnswer:
    """No usable answer: none within the timeout, or one that failed its schema."""

    reason: Literal["timeout", "invalid"]
    description: str


OemReply = OemAnswer | OemNoAnswer

# Publish raw bytes on the response topic (retain: the message stays for later subscribers).
Publisher = Callable[[bytes, bool], None]


class OemLink:
    def __init__(self, publish: Publisher, request_timeout: float) -> None:
        self._publish = publish
        self.request_timeout = request_timeout
        self._waiting: Correlator[OemReply] = Correlator()

    def update(self, name: str, data: dict[str, Any], retain: bool = False) -> None:
        self._publish(envelope.encode(envelope.update(name, data)), retain)

    async def request(
        self, name: str, data: dict[str, Any], timeout: float | None = None
    ) -> OemReply:
        """Ask the OEM; its answer or OemNoAnswer, within `timeout` (default request_timeout)."""
        message_id = str(uuid.uuid4())
        timeout = self.request_timeout if timeout is None else timeout
        self._waiting.open(message_id, name)
        self._publish(
            envelope.encode({"id": message_id, "name": name, "type": "request", "data": data}),
            False,
        )
        reply = await self._waiting.wait(message_id, timeout)
        if reply is None:
            log.warning("the OEM did not answer %s %s within %g s", name, message_id, timeout)
            return OemNoAnswer("timeout", f"the OEM did not answer in {timeout:g} s")
        return reply

    def waiting_for(self, message_id: str) -> str | None:
        """The name of the request waiting for `message_id`, if any."""
        name = self._waiting.context(message_id)
        return name if isinstance(name, str) else None

    def answered(self, message_id: str, reply: OemReply) -> bool:
        """The OEM's response (already checked against its schema, or OemNoAnswer when it
        failed); False when no request waits for it (late or unknown: logged)."""
        if self._waiting.resolve(message_id, reply):
            return True
        log.warning("dropped response %s: no request of the bridge is waiting for it", message_id)
        return False

    def close(self) -> None:
        self._waiting.close(OemNoAnswer("timeout", "the bridge is stopping"))
