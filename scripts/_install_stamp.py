"""Is the project's editable install in this Python still good? (scripts/_setup.sh)

    python scripts/_install_stamp.py check STAMP EXTRAS   # exit 0: nothing to install
    python scripts/_install_stamp.py write STAMP EXTRAS   # after a successful install

Run from the repository root with the Python that has (or gets) the install. `check` passes only
when the stamp names this Python, these extras and the current pyproject.toml and constraints.txt,
and the installed metadata still fits: ocpp-bridge installed editable from this checkout at this
checkout's version, and every requirement (with the extras) installed in its range.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
DISTRIBUTION = "ocpp-bridge"


def fingerprint(extras: str) -> dict[str, Any]:
    """What the install depends on: the interpreter, the extras and the two input files."""

    def digest(name: str) -> str | None:
        path = ROOT / name
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

    return {
        "python": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
        "extras": extras,
        "pyproject.toml": digest("pyproject.toml"),
        "constraints.txt": digest("constraints.txt"),
    }


def checkout_version() -> str | None:
    text = (ROOT / "bridge" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    return match.group(1) if match else None


def installed_problem(extras: str) -> str | None:
    """Why the installed metadata does not fit this checkout, or None when it does."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return f"{DISTRIBUTION} is not installed"
    if dist.version != checkout_version():
        return f"{DISTRIBUTION} {dist.version} is installed, the checkout is {checkout_version()}"
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("url") != ROOT.as_uri() or not direct.get("dir_info", {}).get("editable"):
        return f"{DISTRIBUTION} is not an editable install of {ROOT}"
    try:  # pip is there (it made the install); its vendored packaging evaluates the requirements
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:
        return "pip is missing"
    wanted = {extra.strip() for extra in extras.strip("[]").split(",") if extra.strip()}
    for line in dist.requires or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is not None and not any(
            marker.evaluate({"extra": extra}) for extra in (wanted or {""})
        ):
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return f"{requirement.name} is not installed"
        if not requirement.specifier.contains(version, prereleases=True):
            return f"{requirement.name} {version} is not in {requirement.specifier}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("check", "write"):
        print(__doc__, file=sys.stderr)
        return 2
    command, stamp, extras = argv[0], Path(argv[1]), argv[2]
    if command == "write":
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(fingerprint(extras), indent=1) + "\n")
        return 0
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return 1  # never installed by scripts/_setup.sh (or the stamp was removed)
    if recorded != fingerprint(extras):
        print(f"{stamp}: pyproject.toml, constraints.txt or the Python changed", file=sys.stderr)
        return 1
    problem = installed_problem(extras)
    if problem:
        print(f"{stamp}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
