"""One back-off for every reconnection, the CSMS's and the broker's (OCPP 2.0.1 part 4, 5.3).

The delay before attempt n (1, 2, ...) is `minimum * 2**min(n - 1, repeat_times)` plus a random
`[0, random_range]`: RetryBackOffWaitMinimum doubled RetryBackOffRepeatTimes times, plus up to
RetryBackOffRandomRange of jitter so that many stations do not reconnect at the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


def delay(attempt: int, minimum: float, random_range: float, repeat_times: int) -> float:
    """The delay in seconds before reconnection attempt `attempt` (1, 2, ...)."""
    doublings = min(max(attempt - 1, 0), max(repeat_times, 0))
    jitter = random.uniform(0, max(random_range, 0))  # noqa: S311 - jitter, not cryptography
    return float(max(minimum, 0) * 2**doublings + jitter)


@dataclass(frozen=True, slots=True)
class Parameters:
    minimum: float
    random_range: float
    repeat_times: int


class Backoff:
    """Counts failed attempts; `next()` is the wait before the next one, `reset()` after success.

    The parameters are read at every step, so a changed RetryBackOff* variable applies at once.
    """

    def __init__(self, parameters: Callable[[], Parameters]) -> None:
        self._parameters = parameters
        self.attempt = 0

    def next(self) -> float:
        self.attempt += 1
        p = self._parameters()
        return delay(self.attempt, p.minimum, p.random_range, p.repeat_times)

    def reset(self) -> None:
        self.attempt = 0
