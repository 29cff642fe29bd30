"""Local Authorization List (functional block D): the IdTokens the CSMS installed with
SendLocalList (D01) and the version GetLocalListVersion reports (D02), in the store's
`local_auth_list` table and its `local_list_version` station value.

Entries are keyed by `token_key` (the idToken case-folded, D01.FR.06 compares that way).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from bridge import jsontext
from bridge.station.device_model import Rejection
from bridge.station.id_token import TokenKey, token_key
from bridge.store import Store

VERSION_KEY: Final = "local_list_version"
# What one entry takes in the store, in bytes (LocalAuthListCtrlr.Storage).
ENTRY_BYTES: Final = (
    "length(CAST(id_token AS BLOB)) + length(CAST(type AS BLOB)) "
    "+ length(CAST(id_token_info AS BLOB))"
)


class OutOfStorage(Exception):
    """The list would not fit in LocalAuthListCtrlr.Entries / Storage maxLimit."""


class LocalList:
    def __init__(
        self, store: Store, max_entries: int | None = None, max_bytes: int | None = None
    ) -> None:
        self._store = store
        self.max_entries = max_entries  # D01.FR.12: LocalAuthListCtrlr.Entries maxLimit
        self.max_bytes = max_bytes  # LocalAuthListCtrlr.Storage maxLimit

    # --- reads

    def version(self) -> int:
        """The installed list's version; 0: no list installed yet (D02.FR.02, D01.FR.18)."""
        version = self._store.station_value(VERSION_KEY)
        return version if isinstance(version, int) else 0

    def entries(self) -> int:
        (n,) = self._store.execute("SELECT count(*) FROM local_auth_list").fetchone()
        return int(n)

    def size(self) -> int:
        sql = f"SELECT coalesce(sum({ENTRY_BYTES}), 0) FROM local_auth_list"  # noqa: S608
        (n,) = self._store.execute(sql).fetchone()
        return int(n)

    def get(self, key: TokenKey) -> dict[str, Any] | None:
        """The IdTokenInfoType the list holds for this token."""
        row = self._store.execute(
            "SELECT id_token_info FROM local_auth_list WHERE id_token = ? AND type = ?", key
        ).fetchone()
        if row is None:
            return None
        info: dict[str, Any] = jsontext.loads(row[0])
        return info

    # --- SendLocalList

    def refusal(
        self, version: int, update_type: str, items: list[dict[str, Any]]
    ) -> tuple[str, Rejection | None] | None:
        """Why this update is not applied, as (status, why); None: apply it."""
        if version <= 0:  # D01.FR.18: 0 means "no list installed", never a version
            return "Failed", Rejection("InvalidValue", "versionNumber must be greater than 0")
        keys = [token_key(item["idToken"]) for item in items]
        if len(set(keys)) != len(keys):  # D01.FR.06: every IdToken once
            return "Failed", Rejection("DuplicateIdToken", "an idToken is listed more than once")
        if update_type == "Full":
            if any("idTokenInfo" not in item for item in items):
                # Removal (D01.FR.17) is Differential only: a full list says what each token is.
                return "Failed", Rejection(
                    "MissingIdTokenInfo", "every entry of a Full update needs an idTokenInfo"
                )
            return None
        current = self.version()
        if version <= current:  # D01.FR.19
            return "VersionMismatch", Rejection(
                "VersionNotNewer",
                f"the list has version {current}; a Differential update needs a higher one",
            )
        return None

    def apply(self, version: int, update_type: str, items: list[dict[str, Any]]) -> list[TokenKey]:
        """Apply an update `refusal` let through; the keys it added or changed.

        Raises OutOfStorage (nothing changed: the caller's outermost transaction rolls back).
        """
        with self._store.transaction() as db:
            if update_type == "Full":
                db.execute("DELETE FROM local_auth_list")  # D01.FR.04 (no list), D01.FR.15
            stored = [
                (token_key(i["idToken"]), i["idTokenInfo"]) for i in items if "idTokenInfo" in i
            ]
            removed = [token_key(i["idToken"]) for i in items if "idTokenInfo" not in i]
            # Differential: D01.FR.16 adds or replaces, D01.FR.17 removes; D01.FR.05: without a
            # list, only the version changes.
            db.executemany(
                "INSERT INTO local_auth_list(id_token, type, id_token_info) VALUES (?, ?, ?) "
                "ON CONFLICT(id_token, type) DO UPDATE SET id_token_info = excluded.id_token_info",
                [(*key, jsontext.dumps(info)) for key, info in stored],
            )
            db.executemany("DELETE FROM local_auth_list WHERE id_token = ? AND type = ?", removed)
            self._check_room(db)
            self._store.save_station_value(VERSION_KEY, version)  # D01.FR.01
        return [key for key, _ in stored]

    def _check_room(self, db: sqlite3.Connection) -> None:
        count, size = db.execute(
            f"SELECT count(*), coalesce(sum({ENTRY_BYTES}), 0) FROM local_auth_list"  # noqa: S608
        ).fetchone()
        if self.max_entries is not None and count > self.max_entries:
            raise OutOfStorage(
                f"the list would hold {count} entries; at most {self.max_entries} fit"
            )
        if self.max_bytes is not None and size > self.max_bytes:
            raise OutOfStorage(f"the list would take {size} bytes; at most {self.max_bytes} fit")
