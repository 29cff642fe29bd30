"""Write the quick start's configuration: a copy of a bridge configuration file with the store, the
broker port and the CSMS URL of this run set in the file itself (scripts/quickstart).

    python scripts/_quickstart_config.py SOURCE TARGET --storage PATH \
        [--mqtt-port N] [--csms-url URL]

Everything else (comments included) is copied as it is. Setting the keys in the file, not by
environment variables, means `ocpp-bridge health --config TARGET` finds the service started with
`ocpp-bridge run --config TARGET`: both read the same store path.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

HEADER = (
    "# Written by scripts/quickstart from {source} at every start: edit that file instead.\n"
    "# Keys set here for this run: {keys}.\n\n"
)
_SECTION = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_value(value: str | int) -> str:
    """An integer, or a TOML basic string: quote, backslash and control characters escaped,
    everything else (any other Unicode character) as it is."""
    if isinstance(value, int):
        return str(value)
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def rewrite(text: str, settings: dict[tuple[str, str], str | int]) -> str:
    """`text` with each (section, key) set to its value: the key's line replaced where it exists,
    else added at the end of its section, the section added at the end where it is missing."""
    pending = dict(settings)
    out: list[str] = []
    section = ""

    def close(name: str) -> None:
        """The section ends: add its keys that it did not have."""
        missing = [(key, value) for (sec, key), value in pending.items() if sec == name]
        if not missing:
            return
        at = len(out)
        while at > 0 and not out[at - 1].strip():  # before the blank lines that end the section
            at -= 1
        out[at:at] = [
            f"{key} = {_toml_value(value)}  # scripts/quickstart" for key, value in missing
        ]
        for key, _ in missing:
            del pending[(name, key)]

    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            close(section)
            section = header.group(1).strip()
            out.append(line)
            continue
        key = line.split("=", 1)[0].strip().strip("\"'") if "=" in line else ""
        if (section, key) in pending and not line.lstrip().startswith("#"):
            out.append(f"{key} = {_toml_value(pending.pop((section, key)))}  # scripts/quickstart")
            continue
        out.append(line)
    close(section)
    for name in dict.fromkeys(sec for sec, _ in pending):
        out += ["", f"[{name}]"]
        close(name)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--storage", required=True, help="the store's path for this run")
    parser.add_argument("--mqtt-port", type=int)
    parser.add_argument("--csms-url")
    args = parser.parse_args(argv)
    settings: dict[tuple[str, str], str | int] = {
        ("storage", "path"): args.storage,
        # The quick start runs no OEM firmware to answer device_model: boot from the file at once.
        ("oem", "startup_timeout"): 0,
    }
    if args.mqtt_port is not None:
        settings[("mqtt", "host")] = "127.0.0.1"
        settings[("mqtt", "port")] = args.mqtt_port
    if args.csms_url is not None:
        settings[("csms", "url")] = args.csms_url
    try:
        source = args.source.read_text(encoding="utf-8")
        tomllib.loads(source)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        print(f"quickstart: cannot use {args.source}: {error}", file=sys.stderr)
        return 2
    keys = ", ".join(f"{sec}.{key}" for sec, key in settings)
    text = HEADER.format(source=args.source, keys=keys) + rewrite(source, settings)
    written: dict[str, Any] = tomllib.loads(text)
    for (sec, key), value in settings.items():  # the rewrite did what it says
        assert written[sec][key] == value, (sec, key)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.target.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
