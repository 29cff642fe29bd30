"""Opening the store (issue 8): one process per store file, and `Store(":memory:")` without files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.station import Station
from bridge.store import Store, StoreError
from tests.conftest import write_config

OPEN_IN_ANOTHER_PROCESS = """
import sys
from bridge.store import Store, StoreError
try:
    Store(sys.argv[1]).close()
except StoreError as e:
    print(e)
    sys.exit(2)
print("opened")
"""


def open_elsewhere(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OPEN_IN_ANOTHER_PROCESS, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_store_in_use_is_refused_to_another_process_naming_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    store = Store(path)
    try:
        out = open_elsewhere(path)
        assert out.returncode == 2
        assert out.stdout.strip() == (
            f"storage.path: another ocpp-bridge (pid {os.getpid()}) uses this store ({path})"
        )
    finally:
        store.close()
    out = open_elsewhere(path)  # released on close
    assert (out.returncode, out.stdout.strip()) == (0, "opened")


def test_one_process_may_open_its_store_twice(tmp_path: Path) -> None:
    first, second = Store(tmp_path / "bridge.db"), Store(tmp_path / "bridge.db")
    first.save_variable_values([("A.B", "Actual", "1")])
    assert second.variable_values() == {("A.B", "Actual"): "1"}
    first.close()
    assert open_elsewhere(tmp_path / "bridge.db").returncode == 2  # the second one still has it
    second.close()
    second.close()  # a second close does nothing
    assert open_elsewhere(tmp_path / "bridge.db").returncode == 0


def test_the_lock_file_is_private_and_names_the_holder(tmp_path: Path) -> None:
    store = Store(tmp_path / "bridge.db")
    try:
        lock = tmp_path / "bridge.db.lock"
        assert lock.read_text().strip() == str(os.getpid())
        assert lock.stat().st_mode & 0o077 == 0
    finally:
        store.close()


def test_memory_store_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = Store(":memory:"), Store(":memory:")
    first.save_variable_values([("A.B", "Actual", "1")], [("k", "d")])
    first.save_network_profile(1, "{}")
    assert first.variable_values() == {("A.B", "Actual"): "1"}
    assert first.applied_config() == {"k": "d"}
    assert second.variable_values() == {}  # each one is its own database
    first.close()
    second.close()
    assert os.listdir(tmp_path) == []


def test_a_station_core_runs_over_a_memory_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(
        tmp_path / "bridge.toml",
        None,
        csms='url = "ws://127.0.0.1:9/ocpp"',
        extra='[device_model]\n"OCPPCommCtrlr.HeartbeatInterval" = 60',
    )
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    station = Station(load_settings(config), Store(":memory:"))
    assert station.device_model.value("OCPPCommCtrlr.HeartbeatInterval") == "60"
    assert station.network_profiles.get(1) is not None
    station.store.close()
    assert os.listdir(work) == []
    assert not (tmp_path / "bridge.db").exists()


def test_an_unwritable_lock_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "bridge.db.lock").mkdir()  # not a file that can be opened for writing
    with pytest.raises(StoreError, match=r"^storage\.path: cannot open .*bridge\.db\.lock"):
        Store(tmp_path / "bridge.db")


def test_read_only_copy_neither_locks_nor_writes(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    store = Store(path)
    store.save_variable_values([("A.B", "Actual", "1")])
    store.close()
    files = sorted(os.listdir(tmp_path))
    stored = path.read_bytes()
    held = Store(path)  # the service holds it; a check may still read it
    try:
        copy = Store.read_only_copy(path)
        copy.save_variable_values([("A.B", "Actual", "2")])  # only the copy changes
        assert copy.variable_values() == {("A.B", "Actual"): "2"}
        copy.close()
        assert held.variable_values() == {("A.B", "Actual"): "1"}
    finally:
        held.close()
    assert path.read_bytes() == stored
    assert sorted(os.listdir(tmp_path)) == files
    # Nobody has it open: no -wal or -shm file is created (a root shell must not leave them).
    Store.read_only_copy(path).close()
    assert path.read_bytes() == stored
    assert sorted(os.listdir(tmp_path)) == files
