"""Authorization Cache (C10, C11): the IdTokenInfo the CSMS gave for tokens, in the store's
`auth_cache` table, bounded by AuthCacheCtrlr.Storage maxLimit (bytes).

An entry expires at its cacheExpiryDateTime or, without one, LifeTime seconds after it was last
used (C10.FR.08). An expired entry drops out of the cache: the token is unknown again, as in
EVerest libocpp. (AuthorizationStatus Expired is the CSMS's verdict on a token, not on a cache
entry; keeping the entry as "Expired" would refuse the token offline and, with
DisablePostAuthorize, online too, for no decision of the CSMS.)

Writes do not wait for the disk (`durable=False`): a power cut loses at most the latest cache
update, which the next AuthorizeResponse brings again. ClearCache is durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Final

from bridge import jsontext
from bridge.station.id_token import TokenKey
from bridge.store import Store
from bridge.timeutil import parse_timestamp

# What one entry takes in the store, in bytes (AuthCacheCtrlr.Storage): token, type, the
# IdTokenInfo JSON and the two timestamps (8-byte REALs).
ENTRY_BYTES: Final = (
    "length(CAST(id_token AS BLOB)) + length(CAST(type AS BLOB)) "
    "+ length(CAST(id_token_info AS BLOB)) + 16"
)
POLICIES: Final = ("LRU", "FIFO")  # AuthCacheCtrlr.Policy values this cache implements


def expired(info: dict[str, Any], used_at: float, lifetime: int, now: float) -> bool:
    """Is a cache entry past its cacheExpiryDateTime, or (without one, C10.FR.08) unused for
    more than `lifetime` seconds (AuthCacheCtrlr.LifeTime; 0: no limit)?"""
    text = info.get("cacheExpiryDateTime")
    moment = parse_timestamp(text) if isinstance(text, str) else None
    if moment is not None:
        return moment.timestamp() <= now
    return lifetime > 0 and used_at + lifetime <= now


class AuthCache:
    def __init__(
        self, store: Store, wall: Callable[[], float], capacity: int | None = None
    ) -> None:
        self._store = store
        self._wall = wall
        self.capacity = capacity  # bytes: AuthCacheCtrlr.Storage maxLimit

    def size(self) -> int:
        sql = f"SELECT coalesce(sum({ENTRY_BYTES}), 0) FROM auth_cache"  # noqa: S608 - a constant
        (n,) = self._store.execute(sql).fetchone()
        return int(n)

    def entries(self) -> int:
        (n,) = self._store.execute("SELECT count(*) FROM auth_cache").fetchone()
        return int(n)

    def get(self, key: TokenKey, lifetime: int, touch: bool = True) -> dict[str, Any] | None:
        """The cached IdTokenInfo, None when there is none or it expired (then it is removed).
        `touch`: this is a use (LRU, and LifeTime counts from the last use)."""
        row = self._store.execute(
            "SELECT id_token_info, used_at FROM auth_cache WHERE id_token = ? AND type = ?", key
        ).fetchone()
        if row is None:
            return None
        info: dict[str, Any] = jsontext.loads(row[0])
        now = self._wall()
        if expired(info, row[1], lifetime, now):
            self.forget([key])
            return None
        if touch:
            with self._store.transaction(durable=False) as db:
                db.execute(
                    "UPDATE auth_cache SET used_at = ? WHERE id_token = ? AND type = ?", (now, *key)
                )
        return info

    def put(self, key: TokenKey, info: dict[str, Any], policy: str, lifetime: int) -> None:
        """Store or refresh an entry, then make room (C10.FR.07) if the cache outgrew Storage."""
        now = self._wall()
        with self._store.transaction(durable=False) as db:
            db.execute(
                "INSERT INTO auth_cache(id_token, type, id_token_info, cached_at, used_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id_token, type) DO UPDATE SET "
                "id_token_info = excluded.id_token_info, cached_at = excluded.cached_at, "
                "used_at = excluded.used_at",
                (*key, jsontext.dumps(info), now, now),
            )
            self._make_room(db, policy, lifetime, now)

    def _make_room(self, db: sqlite3.Connection, policy: str, lifetime: int, now: float) -> None:
        """C10.FR.07: drop entries that are no longer valid (not Accepted, or expired) first,
        then by Policy: the least recently used (LRU) or the oldest stored (FIFO)."""
        if self.capacity is None:
            return
        columns = f"id_token, type, id_token_info, cached_at, used_at, {ENTRY_BYTES}"
        rows = db.execute(f"SELECT {columns} FROM auth_cache").fetchall()  # noqa: S608
        used = sum(row[5] for row in rows)
        if used <= self.capacity:
            return

        def order(row: tuple[Any, ...]) -> tuple[bool, float]:
            info = jsontext.loads(row[2])
            valid = info.get("status") == "Accepted" and not expired(info, row[4], lifetime, now)
            return valid, row[3] if policy == "FIFO" else row[4]

        for row in sorted(rows, key=order):
            db.execute("DELETE FROM auth_cache WHERE id_token = ? AND type = ?", row[:2])
            used -= row[5]
            if used <= self.capacity:
                break

    def forget(self, keys: Iterable[TokenKey]) -> None:
        with self._store.transaction(durable=False) as db:
            db.executemany("DELETE FROM auth_cache WHERE id_token = ? AND type = ?", list(keys))

    def clear(self) -> None:
        with self._store.transaction() as db:
            db.execute("DELETE FROM auth_cache")
