"""The one outbound queue: every message the station sends the CSMS goes through it.

- Transaction-related messages (TransactionEvent, SecurityEventNotification; MeterValues too
  when OCPPCommCtrlr.QueueAllMessages) are durable: written to the store, inside the caller's
  store transaction when there is one (the state change that made them), kept across outages
  and restarts, sent in their original order, each before any newer message, with the same
  messageId on every attempt. A CallError or a timeout counts as a failed attempt: the next one
  waits MessageAttemptInterval[TransactionEvent] x attempts, and after
  MessageAttempts[TransactionEvent] attempts the message is dropped with a log line. A closed
  connection is not an attempt: the message waits for the next connection.
- Other messages live in memory, only while a connection is open: put while offline, their
  sender gets NoAnswer("offline") at once; still queued when the connection closes, likewise.
- Before the boot is accepted only BootNotification and messages the CSMS asked for (a
  TriggerMessage, a report) are sent (B02.FR.02, B03.FR.03); anything else is refused, or kept
  for later when durable.
- The durable part is bounded (`[storage] max_queued`): when full, the oldest message that may
  be dropped makes room; a transaction's Started or Ended event is never dropped.

The queue does no I/O besides the store: the driver's drain task asks `next()` for the message
to send and reports its outcome with `done()`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bridge import jsontext
from bridge.rpc import CallResult, NoAnswer, Outcome
from bridge.station.actions import TRANSACTION_RELATED
from bridge.station.device_model import DeviceModel
from bridge.store import QueuedMessage, QueueTable, Store

log = logging.getLogger(__name__)

ATTEMPTS: Final = "OCPPCommCtrlr.MessageAttempts[TransactionEvent]"
ATTEMPT_INTERVAL: Final = "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]"
QUEUE_ALL: Final = "OCPPCommCtrlr.QueueAllMessages"
BEFORE_ACCEPTED: Final = frozenset({"BootNotification"})
NEVER_DROPPED: Final = frozenset({"Started", "Ended"})


@dataclass(slots=True)
class Outgoing:
    """One CALL to send. `origin` names who is told its outcome (e.g. "boot", "oem:<id>")."""

    action: str
    payload: dict[str, Any]
    origin: str
    message_id: str
    durable: bool = False
    triggered: bool = False
    # Durable: its row. In memory: the last durable row queued before it (it goes after that).
    seq: int = 0


class MessageQueue:
    def __init__(
        self,
        store: Store,
        device_model: DeviceModel,
        max_queued: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = QueueTable(store)
        self._device_model = device_model
        self._max_queued = max_queued
        self._monotonic = monotonic
        self._memory: deque[Outgoing] = deque()
        self._head: Outgoing | None = None  # the oldest durable message, once read
        self._retry_at = 0.0
        self._durable = self._table.count()
        self._last_seq = self._table.last_seq()
        self.connected = False
        self.accepted = False
        # Called after every put (the driver wakes its drain task).
        self.on_put: Callable[[], None] = lambda: None

    # --- putting

    def is_durable(self, action: str) -> bool:
        if action in TRANSACTION_RELATED:
            return True
        return action == "MeterValues" and self._device_model.bool_value(QUEUE_ALL)

    def put(
        self,
        action: str,
        payload: dict[str, Any],
        origin: str,
        *,
        triggered: bool = False,
        durable: bool | None = None,
    ) -> Outgoing | NoAnswer:
        """Queue a CALL; NoAnswer when it cannot be sent (offline, boot not accepted)."""
        durable = self.is_durable(action) if durable is None else durable
        message_id = str(uuid.uuid4())
        if durable:
            message = self._put_durable(action, payload, origin, message_id)
        else:
            refused = self._refusal(action, triggered)
            if refused is not None:
                return refused
            message = Outgoing(
                action, payload, origin, message_id, False, triggered, self._last_seq
            )
            self._memory.append(message)
        self.on_put()
        return message

    def _refusal(self, action: str, triggered: bool) -> NoAnswer | None:
        if not self.connected:
            return NoAnswer("offline", "no CSMS connection")
        if not self.accepted and not triggered and action not in BEFORE_ACCEPTED:
            # B02.FR.02 / B03.FR.03: nothing unsolicited before the boot is accepted.
            return NoAnswer("offline", "the CSMS has not accepted the station's boot yet")
        return None

    def _put_durable(
        self, action: str, payload: dict[str, Any], origin: str, message_id: str
    ) -> Outgoing:
        keep = action == "TransactionEvent" and payload.get("eventType") in NEVER_DROPPED
        if self._durable >= self._max_queued:
            dropped = self._table.drop_oldest()
            if dropped is None:
                log.warning(
                    "outbound queue over its bound of %d: nothing may be dropped", self._max_queued
                )
            else:
                self._durable -= 1
                if self._head is not None and self._head.seq == dropped.seq:
                    self._head = None
                log.warning(
                    "outbound queue full (%d): dropped the oldest %s (%s)",
                    self._max_queued,
                    dropped.action,
                    dropped.message_id,
                )
        seq = self._table.add(message_id, action, jsontext.dumps(payload), origin, keep)
        self._durable += 1
        self._last_seq = seq
        return Outgoing(action, payload, origin, message_id, True, False, seq)

    # --- sending

    def next(self) -> Outgoing | float | None:
        """The message to send now; or the seconds until the next one may go (a retry waits);
        or None when there is nothing to send."""
        if not self.connected:
            return None
        durable = self._durable_head() if self.accepted else None
        memory = self._memory[0] if self._memory else None
        if durable is not None and (memory is None or durable.seq <= memory.seq):
            wait = self._retry_at - self._monotonic()
            return wait if wait > 0 else durable
        if memory is not None:
            return self._memory.popleft()
        return None

    def _durable_head(self) -> Outgoing | None:
        if self._head is None and self._durable:
            row = self._table.head()
            if row is None:  # pragma: no cover - the count and the table disagree
                self._durable = 0
                return None
            self._head = _outgoing(row)
        return self._head

    def done(self, message: Outgoing, outcome: Outcome) -> bool:
        """Take the outcome of a sent message: True when it is finished (its origin gets this
        outcome), False when it stays queued for another attempt."""
        if not message.durable:
            return True
        if isinstance(outcome, NoAnswer) and outcome.reason == "offline":
            return False  # not an attempt: sent again on the next connection
        if isinstance(outcome, CallResult):
            self._remove(message)
            return True
        attempts = self._table.count_attempt(message.seq)
        limit = max(self._device_model.int_value(ATTEMPTS), 1)
        why = outcome.code if not isinstance(outcome, NoAnswer) else outcome.reason
        if attempts >= limit:
            log.error(
                "dropped %s %s after %d failed attempts (last: %s)",
                message.action,
                message.message_id,
                attempts,
                why,
            )
            self._remove(message)
            return True
        interval = self._device_model.int_value(ATTEMPT_INTERVAL) * attempts
        self._retry_at = self._monotonic() + interval
        log.warning(
            "%s %s failed (%s); attempt %d of %d in %d s",
            message.action,
            message.message_id,
            why,
            attempts + 1,
            limit,
            interval,
        )
        return False

    def _remove(self, message: Outgoing) -> None:
        self._table.remove(message.seq)
        self._durable -= 1
        self._retry_at = 0.0
        if self._head is not None and self._head.seq == message.seq:
            self._head = None

    # --- the connection

    def open(self, accepted: bool) -> None:
        self.connected, self.accepted = True, accepted

    def close(self) -> list[Outgoing]:
        """The connection closed: the in-memory messages will never go (returned, so their
        origins can be told); durable ones wait for the next connection."""
        self.connected = self.accepted = False
        lost = list(self._memory)
        self._memory.clear()
        return lost

    @property
    def backlog(self) -> int:
        """Durable messages waiting (delivered after any outage)."""
        return self._durable

    def __len__(self) -> int:
        return self._durable + len(self._memory)


def _outgoing(row: QueuedMessage) -> Outgoing:
    return Outgoing(
        row.action, jsontext.loads(row.payload), row.origin, row.message_id, True, False, row.seq
    )
