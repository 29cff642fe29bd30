"""The one store: SQLite in WAL mode, with an explicit schema version and migrations.

Everything that must survive a power cut goes through here: device-model values, installed
certificates, network connection profiles. Each write is one transaction (`synchronous=FULL`),
so after a crash every value is either the old or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from bridge import jsontext
from bridge.timeutil import ocpp_timestamp

# Each entry migrates the schema from version N to N+1; never edit a released one, append.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE variable_attribute (
        variable TEXT NOT NULL,            -- "Component[instance].Variable[instance]"
        type     TEXT NOT NULL,            -- Actual, Target, MinSet, MaxSet
        value    TEXT NOT NULL,
        PRIMARY KEY (variable, type)
    ) WITHOUT ROWID;
    CREATE TABLE config_applied (          -- which configuration value was applied last, per key
        key    TEXT PRIMARY KEY,
        digest TEXT NOT NULL               -- SHA-256: the value itself may be a password
    ) WITHOUT ROWID;
    CREATE TABLE certificate (
        id               INTEGER PRIMARY KEY,
        certificate_type TEXT NOT NULL,
        der              BLOB NOT NULL,
        parent_id        INTEGER REFERENCES certificate(id) ON DELETE CASCADE,
        installed_at     TEXT NOT NULL
    );
    CREATE INDEX certificate_parent ON certificate(parent_id);
    CREATE TABLE network_profile (
        slot            INTEGER PRIMARY KEY,
        connection_data TEXT NOT NULL      -- NetworkConnectionProfileType as JSON
    );
    """,
    """
    CREATE TABLE outbound_message (        -- the durable part of the outbound queue, FIFO by seq
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,          -- the CALL's messageId, the same on every attempt
        action     TEXT NOT NULL,
        payload    TEXT NOT NULL,          -- JSON
        origin     TEXT NOT NULL,          -- who is told the answer
        attempts   INTEGER NOT NULL DEFAULT 0,
        keep       INTEGER NOT NULL DEFAULT 0,  -- 1: never dropped to make room (Started, Ended)
        queued_at  TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE oem_value (               -- the OEM's last applied device_model answer, by field
        field    TEXT PRIMARY KEY,         -- identity, model, vendor, ..., evses, components
        value    TEXT NOT NULL,            -- JSON (never the password: that is a variable)
        replaces TEXT                      -- the configuration file's value it took over from
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE local_auth_list (         -- LocalAuthListCtrlr (D01): the CSMS's SendLocalList
        id_token      TEXT NOT NULL,
        type          TEXT NOT NULL,       -- IdTokenEnumType
        id_token_info TEXT NOT NULL,       -- IdTokenInfoType as JSON
        PRIMARY KEY (id_token, type)
    ) WITHOUT ROWID;
    CREATE TABLE auth_cache (              -- AuthCacheCtrlr (C10): answers the CSMS gave
        id_token      TEXT NOT NULL,
        type          TEXT NOT NULL,
        id_token_info TEXT NOT NULL,       -- IdTokenInfoType as JSON
        cached_at     REAL NOT NULL,       -- seconds since the epoch
        used_at       REAL NOT NULL,       -- for the least-recently-used policy
        PRIMARY KEY (id_token, type)
    ) WITHOUT ROWID;
    CREATE TABLE station_value (           -- small station state: local list version, ...
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL                -- JSON
    ) WITHOUT ROWID;
    CREATE TABLE evse_transaction (        -- the open transaction of each EVSE (E, power loss)
        evse           INTEGER PRIMARY KEY,
        transaction_id TEXT NOT NULL,
        state          TEXT NOT NULL       -- JSON: seqNo, idToken, start point reached, ...
    );
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class StoreError(Exception):
    """The store cannot be opened or used; the message names storage.path."""


MEMORY: Final = ":memory:"


class StoreLock:
    """An exclusive `flock` on `<store>.lock` (which holds the holder's pid), so that two
    ocpp-bridge processes never share one store. The kernel releases it when the process dies,
    also on kill -9. Within one process, locks of one file are shared (counted): tests and tools
    open a store twice."""

    _held: ClassVar[dict[tuple[int, int], StoreLock]] = {}
    _guard: ClassVar = threading.Lock()

    def __init__(self, fd: int, key: tuple[int, int]) -> None:
        self._fd = fd
        self._key = key
        self._users = 1

    @classmethod
    def acquire(cls, store: Path) -> StoreLock:
        """Lock the store file `store`, or raise StoreError naming the pid that holds it."""
        path = store.with_name(store.name + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StoreError(f"storage.path: cannot open {path}: {e.strerror}") from None
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        with cls._guard:
            held = cls._held.get(key)
            if held is not None:  # this process has it already
                os.close(fd)
                held._users += 1
                return held
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise StoreError(
                    f"storage.path: another ocpp-bridge (pid {pid or 'unknown'}) uses this "
                    f"store ({store})"
                ) from None
            except OSError as e:
                os.close(fd)
                raise StoreError(f"storage.path: cannot lock {path}: {e.strerror}") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            lock = cls._held[key] = cls(fd, key)
            return lock

    def release(self) -> None:
        with self._guard:
            self._users -= 1
            if self._users == 0:
                del self._held[self._key]
                os.close(self._fd)  # closing the last descriptor releases the flock


def _holder(fd: int) -> int | None:
    """The pid the holder wrote into the lock file (it writes it right after locking)."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.02)
    return None


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    id: int
    certificate_type: str
    der: bytes
    parent_id: int | None


class Store:
    """A SQLite database file owned by this process, or `Store(":memory:")` (no file at all).

    A file store is locked for its lifetime (`StoreLock`): a second ocpp-bridge on the same file
    gets a StoreError naming the first one's pid.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.in_memory = os.fspath(path) == MEMORY
        self._lock: StoreLock | None = None
        if self.in_memory:  # no directory, no file mode, no lock: nothing on disk
            self._db = sqlite3.connect(MEMORY, isolation_level=None, check_same_thread=False)
        else:
            self._open_file()
        try:
            self._configure()
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.close()
            raise StoreError(f"storage.path: {self.path} is not a usable database: {e}") from None

    def _open_file(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"storage.path: cannot open {self.path}: {e}") from None
        self._lock = StoreLock.acquire(self.path)
        try:
            if not self.path.exists():
                # The file holds the BasicAuthPassword: readable by this user only.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            self._lock.release()
            raise StoreError(f"storage.path: cannot open {self.path}: {e}") from None

    @classmethod
    def read_only_copy(cls, path: str | os.PathLike[str]) -> Store:
        """An in-memory copy of the store file at `path`, migrated like a real start would.

        The file is neither locked nor written (`ocpp-bridge check-config`, also while the service
        runs). Its -wal and -shm files are used only when they exist: a reader of another user
        (root) must not create them, or the service could no longer open its own store.
        """
        file = Path(path).resolve()
        wal = file.with_name(file.name + "-shm").exists()
        uri = f"{file.as_uri()}?{'mode=ro' if wal else 'immutable=1'}"
        store = cls(MEMORY)
        store.path = file
        try:
            source = sqlite3.connect(uri, uri=True)
            try:
                source.execute("PRAGMA query_only=ON")
                source.backup(store._db)
            finally:
                source.close()
            store._configure()
            store._migrate()
        except sqlite3.Error as e:
            store.close()
            raise StoreError(f"storage.path: {file} is not a readable database: {e}") from None
        return store

    def _configure(self) -> None:
        db = self._db
        if not self.in_memory:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        (check,) = db.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        if not self.in_memory:
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                self.path.chmod(0o600)

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"it was written by a newer ocpp-bridge (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); restore a backup or upgrade"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction() as db:
                for statement in _statements(MIGRATIONS[target - 1]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={target}")

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write: everything in the block commits, or nothing does.

        Nested blocks join the outermost one. `durable=False`: the commit does not wait for the
        disk (WAL, synchronous=NORMAL): a crash of the process loses nothing, a power cut may
        lose this commit (never an earlier durable one).
        """
        db = self._db
        if db.in_transaction:
            yield db
            return
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if not durable:
                db.execute("PRAGMA synchronous=FULL")

    def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """A read outside any transaction block."""
        return self._db.execute(sql, parameters)

    def close(self) -> None:
        """Close the database and release the lock (a second close does nothing)."""
        if not self.in_memory:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # --- device model values

    def variable_values(self) -> dict[tuple[str, str], str]:
        rows = self._db.execute("SELECT variable, type, value FROM variable_attribute")
        return {(variable, kind): value for variable, kind, value in rows}

    def save_variable_values(
        self, values: Iterable[tuple[str, str, str]], applied: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Write (variable, attribute type, value) rows and the config digests they came from."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO variable_attribute(variable, type, value) VALUES (?, ?, ?) "
                "ON CONFLICT(variable, type) DO UPDATE SET value = excluded.value",
                values,
            )
            db.executemany(
                "INSERT INTO config_applied(key, digest) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET digest = excluded.digest",
                applied,
            )

    def applied_config(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, digest FROM config_applied").fetchall())

    def delete_variable_values(self, variables: Iterable[str]) -> None:
        """Forget every stored attribute of these variables (e.g. a removed OEM component's)."""
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM variable_attribute WHERE variable = ?", [(v,) for v in variables]
            )

    # --- the OEM's device_model answer

    def oem_values(self) -> dict[str, tuple[str, str | None]]:
        """field -> (value as JSON, the configuration value it replaced)."""
        rows = self._db.execute("SELECT field, value, replaces FROM oem_value")
        return {field: (value, replaces) for field, value, replaces in rows}

    def save_oem_values(
        self, rows: Iterable[tuple[str, str, str | None]], deleted: Iterable[str] = ()
    ) -> None:
        """Write (field, JSON value, replaced configuration value) rows; delete `deleted`."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO oem_value(field, value, replaces) VALUES (?, ?, ?) "
                "ON CONFLICT(field) DO UPDATE SET value = excluded.value, "
                "replaces = excluded.replaces",
                rows,
            )
            db.executemany("DELETE FROM oem_value WHERE field = ?", [(f,) for f in deleted])

    # --- small station state (station_value)

    def station_value(self, key: str) -> Any:
        """The JSON value stored under `key`, or None."""
        row = self._db.execute("SELECT value FROM station_value WHERE key = ?", (key,)).fetchone()
        return jsontext.loads(row[0]) if row else None

    def save_station_value(self, key: str, value: Any) -> None:
        """Store (None: delete) a JSON value, inside the caller's transaction when there is one."""
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM station_value WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO station_value(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, jsontext.dumps(value)),
                )

    # --- open transactions (evse_transaction)

    def open_transactions(self) -> dict[int, Any]:
        """Each EVSE's open transaction as saved with its last event."""
        rows = self._db.execute("SELECT evse, state FROM evse_transaction ORDER BY evse")
        return {int(evse): jsontext.loads(state) for evse, state in rows}

    def save_transaction(self, evse: int, transaction_id: str, state: Any) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO evse_transaction(evse, transaction_id, state) VALUES (?, ?, ?) "
                "ON CONFLICT(evse) DO UPDATE SET transaction_id = excluded.transaction_id, "
                "state = excluded.state",
                (evse, transaction_id, jsontext.dumps(state)),
            )

    def save_ended_values(self, evse: int, transaction_id: str, values: list[Any]) -> None:
        """Only the TxEndedInterval samples of a saved transaction (the rest is as of its last
        event)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE evse_transaction SET state = json_set(state, '$.ended_values', json(?)) "
                "WHERE evse = ? AND transaction_id = ?",
                (jsontext.dumps(values), evse, transaction_id),
            )

    def delete_transaction(self, evse: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM evse_transaction WHERE evse = ?", (evse,))

    # --- certificates

    def certificates(self) -> list[StoredCertificate]:
        rows = self._db.execute(
            "SELECT id, certificate_type, der, parent_id FROM certificate ORDER BY id"
        )
        return [StoredCertificate(*row) for row in rows]

    def add_certificates(self, certificate_type: str, chain: list[bytes]) -> list[int]:
        """Store a certificate (chain[0]) and its child certificates (chain[1:])."""
        installed_at = ocpp_timestamp()
        ids: list[int] = []
        with self.transaction() as db:
            for der in chain:
                cursor = db.execute(
                    "INSERT INTO certificate(certificate_type, der, parent_id, installed_at) "
                    "VALUES (?, ?, ?, ?)",
                    (certificate_type, der, ids[0] if ids else None, installed_at),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def delete_certificate(self, certificate_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM certificate WHERE id = ?", (certificate_id,))

    # --- network connection profiles

    def network_profiles(self) -> dict[int, str]:
        return dict(self._db.execute("SELECT slot, connection_data FROM network_profile"))

    def delete_network_profiles(self, slots: list[int]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM network_profile WHERE slot = ?", [(s,) for s in slots])

    def save_network_profile(self, slot: int, connection_data: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO network_profile(slot, connection_data) VALUES (?, ?) "
                "ON CONFLICT(slot) DO UPDATE SET connection_data = excluded.connection_data",
                (slot, connection_data),
            )


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    seq: int
    message_id: str
    action: str
    payload: str
    origin: str
    attempts: int


class QueueTable:
    """The durable outbound messages (`outbound_message`), oldest first."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, message_id: str, action: str, payload: str, origin: str, keep: bool) -> int:
        """Append a message (inside the caller's transaction, when there is one)."""
        with self._store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO outbound_message(message_id, action, payload, origin, keep, "
                "queued_at) VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, action, payload, origin, int(keep), ocpp_timestamp()),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def count(self) -> int:
        (n,) = self._store.execute("SELECT count(*) FROM outbound_message").fetchone()
        return int(n)

    def last_seq(self) -> int:
        (seq,) = self._store.execute("SELECT max(seq) FROM outbound_message").fetchone()
        return int(seq or 0)

    def head(self) -> QueuedMessage | None:
        row = self._store.execute(
            "SELECT seq, message_id, action, payload, origin, attempts FROM outbound_message "
            "ORDER BY seq LIMIT 1"
        ).fetchone()
        return QueuedMessage(*row) if row else None

    def has_transaction_event(self, transaction_id: str | None = None) -> bool:
        """Is a TransactionEvent waiting (one of this transaction, when given)? For E14."""
        sql = "SELECT 1 FROM outbound_message WHERE action = 'TransactionEvent'"
        parameters: tuple[object, ...] = ()
        if transaction_id is not None:
            sql += " AND json_extract(payload, '$.transactionInfo.transactionId') = ?"
            parameters = (transaction_id,)
        return self._store.execute(sql + " LIMIT 1", parameters).fetchone() is not None

    def remove(self, seq: int) -> None:
        """Delivered (or given up): a lost delete only means one more send of the same messageId,
        so this commit need not wait for the disk."""
        with self._store.transaction(durable=False) as db:
            db.execute("DELETE FROM outbound_message WHERE seq = ?", (seq,))

    def count_attempt(self, seq: int) -> int:
        with self._store.transaction() as db:
            db.execute("UPDATE outbound_message SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            (attempts,) = db.execute(
                "SELECT attempts FROM outbound_message WHERE seq = ?", (seq,)
            ).fetchone()
        return int(attempts)

    def drop_oldest(self) -> QueuedMessage | None:
        """Make room: remove the oldest message that may be dropped (keep = 0)."""
        with self._store.transaction() as db:
            row = db.execute(
                "SELECT seq, message_id, action, payload, origin, attempts FROM outbound_message "
                "WHERE keep = 0 ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM outbound_message WHERE seq = ?", (row[0],))
        return QueuedMessage(*row)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line.split("--", 1)[0] + ("\n" if line.endswith("\n") else "")
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out
