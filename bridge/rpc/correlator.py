"""Requests waiting for their answers, matched by id: the CALLs we sent the CSMS (by messageId) and
the requests we sent the OEM (by envelope id). Each wait ends with the answer or a timeout."""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Correlator(Generic[T]):
    def __init__(self) -> None:
        self._waiting: dict[str, tuple[asyncio.Future[T], Any]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, key: str) -> bool:
        return key in self._waiting

    def open(self, key: str, context: Any = None) -> None:
        """Expect an answer to `key`; `context` (e.g. the action of a CALL) goes with it."""
        if key in self._waiting:
            raise KeyError(f"{key} is already waiting for an answer")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[key] = (future, context)

    def context(self, key: str) -> Any:
        entry = self._waiting.get(key)
        return entry[1] if entry is not None else None

    def resolve(self, key: str, value: T) -> bool:
        """Hand `value` to whoever waits for `key`; False when nobody does (late or unknown)."""
        entry = self._waiting.get(key)
        if entry is None or entry[0].done():
            return False
        entry[0].set_result(value)
        return True

    async def wait(self, key: str, timeout: float) -> T | None:
        """The answer to `key`, or None after `timeout` seconds. Forgets `key` either way."""
        future = self._waiting[key][0]
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(key, None)

    def forget(self, key: str) -> None:
        self._waiting.pop(key, None)

    def close(self, value: T) -> None:
        """Answer everything still waiting with `value` (e.g. the connection closed)."""
        for future, _ in self._waiting.values():
            if not future.done():
                future.set_result(value)
