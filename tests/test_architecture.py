"""The shape the code promises: the station core is plain Python (no sockets, broker or event
loop needed to import or use it), and the transports know nothing of the station."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bridge"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_transports_import_nothing_from_the_station() -> None:
    files = sorted((PACKAGE / "transport").glob("*.py"))
    assert files
    for path in files:
        station = {m for m in imported_modules(path) if m.startswith("bridge.station")}
        assert station == set(), f"{path.name} imports {station}"


def test_the_station_core_imports_no_network_library() -> None:
    code = (
        "import sys, bridge.station;"
        "bad = {'websockets', 'aiomqtt', 'paho'} & {m.split('.')[0] for m in sys.modules};"
        "print(sorted(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert out.stdout.strip() == "[]"
