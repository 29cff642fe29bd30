"""`ocpp-bridge validate [--action NAME] [--json] FILE...`: check MQTT message files.

Integrators run this before they ship, so "valid here" must mean "accepted by the service": every
check reuses the service's compiled validators from `bridge.schemas` (the envelope, then
`ocpp_message`), and the `message_name` enum is relaxed exactly as `bridge.oem.api` relaxes it
(any action of the OCPP version passes; the dispatcher decides what it implements).

A file holds one JSON value (possibly pretty-printed) or JSON Lines. Errors never quote message
values, which may be passwords: the `SchemaError` sentences are built from the schema alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from bridge import jsontext, schemas
from bridge.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from bridge.oem import envelope
from bridge.schemas import JsonPath, Validate, json_path

PROG: Final = "ocpp-bridge validate"
_JSON_SPACE: Final = " \t\r\n"  # what JSON calls whitespace: a line of only these is blank
_ACTION_ENUM: Final = ("$.data.message_name", "enum")


@dataclass(frozen=True, slots=True)
class Problem:
    """One error of one message, in the shape of the `--json` output."""

    path: str
    keyword: str
    code: str
    message: str


EMPTY: Final = Problem("$", "empty", "FormatViolation", "the file holds no message")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One message as read from a file: its parsed value, or why it is not JSON."""

    line: int | None  # 1-based physical line; None for a file that is one JSON value
    value: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    file: str
    line: int | None
    errors: list[Problem]
    notes: list[str] = field(default_factory=list)
    identity: dict[str, str | None] = field(default_factory=dict)  # id, name, type

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            **{key: self.identity.get(key) for key in ("id", "name", "type")},
            "valid": not self.errors,
            "errors": [asdict(e) for e in self.errors],
            "notes": self.notes,
        }


def _parse(text: str, line: int | None) -> Chunk:
    try:
        return Chunk(line, jsontext.loads(text))
    except json.JSONDecodeError as e:  # its msg names the syntax error, never the text
        return Chunk(
            line or e.lineno,
            error=f"not valid JSON: {e.msg.removesuffix(' at')} at column {e.colno}",
        )
    except RecursionError:
        return Chunk(line, error="not valid JSON: nested too deeply")
    except ValueError as e:  # NaN/Infinity (jsontext), a number beyond a double or 4300 digits
        reason = (
            str(e) if "JSON" in str(e) or "double" in str(e) else "a number with too many digits"
        )
        return Chunk(line, error=f"not valid JSON: {reason}")


def split(text: str) -> list[Chunk]:
    """The messages of a file: the whole text if it is one JSON value, else its JSON Lines.

    When no line holds an object the file is a broken single document rather than JSON Lines:
    one error where parsing stopped helps more than one per line of a pretty-printed object.
    """
    if not text.strip(_JSON_SPACE):
        return []
    whole = _parse(text, None)
    if whole.error is None:
        return [whole]
    lines = [
        _parse(line, number)
        for number, line in enumerate(text.split("\n"), 1)
        if line.strip(_JSON_SPACE)
    ]
    return lines if any(isinstance(c.value, dict) for c in lines) else [whole]


def _check(validate: Validate, value: Any, prefix: JsonPath = ()) -> list[Problem]:
    """Run a service validator (which reports, never raises) with paths under `prefix`."""
    return [
        Problem(json_path((*prefix, *e.path)), e.keyword, e.code, e.message)
        for e in validate(value)
    ]


def _payload(
    version: str, action: str, payload: Any, response: bool, unknown: Problem
) -> list[Problem]:
    """The payload's errors against its OCPP schema; `unknown` when the version lacks the action."""
    try:
        validate = schemas.ocpp_validator(version, action, response=response)
    except KeyError:
        return [unknown]
    return _check(validate, payload, ("data", "payload"))


def check(value: Any, action: str | None = None) -> tuple[list[Problem], list[str]]:
    """Errors and notes of one message; the checks run in order (envelope, message, OCPP
    payload) up to the first failing."""
    errors = _check(schemas.envelope_validator("envelope"), value)  # also: must be an object
    if errors:
        return errors, []
    name, kind, data = value["name"], value["type"], value["data"]
    try:
        specific = schemas.envelope_validator(f"{name}.{kind}")
    except KeyError:  # name and type passed envelope.json's pattern and enum: safe to print
        if kind == "response":  # the bridge's answer to a request it could not take
            return _check(schemas.envelope_validator("error.response"), value), []
        known = ", ".join(n for n in schemas.envelope_schema_names() if n != "envelope")
        sentence = f"there is no schema for '{name}' messages of type '{kind}' (there are: {known})"
        return [Problem("$.name", "schema", "NotSupported", sentence)], []
    errors = [e for e in _check(specific, value) if (e.path, e.keyword) != _ACTION_ENUM]
    if errors or name != "ocpp_message":
        return errors, []
    version = data["ocpp_version"]
    if kind == "request":
        unknown = Problem(*_ACTION_ENUM, "NotImplemented", f"is not an action of {version}")
        return _payload(version, data["message_name"], data["payload"], False, unknown), []
    if data["message_type"] != "CallResult":
        return [], []
    if action is None:
        return [], ["the CallResult payload was not checked: name its action with --action"]
    why = f"{version} has no action {action} (named by --action)"
    unknown = Problem("$.data.ocpp_version", "action", "NotImplemented", why)
    return _payload(version, action, data["payload"], True, unknown), []


def _identity(value: Any) -> dict[str, str | None]:
    """id, name and type for `--json`, each only when it is well-formed (so never a secret)."""
    body = value if isinstance(value, dict) else {}
    message_id, name, kind = body.get("id"), body.get("name"), body.get("type")
    return {
        "id": message_id if schemas.is_uuid(message_id) else None,
        "name": name if isinstance(name, str) and envelope.response_name(name) == name else None,
        "type": kind if kind in ("request", "response", "update") else None,
    }


def validate_text(text: str, file: str, action: str | None = None) -> list[Result]:
    """One result per message of a file's text (one error result when it holds no message)."""
    results = []
    for chunk in split(text):
        if chunk.error is not None:
            problem = Problem("$", "json", "FormatViolation", chunk.error)
            results.append(Result(file, chunk.line, [problem]))
        else:
            errors, notes = check(chunk.value, action)
            results.append(Result(file, chunk.line, errors, notes, _identity(chunk.value)))
    return results or [Result(file, None, [EMPTY])]


def _printable(text: str) -> str:
    """Escape what would break the one-error-a-line output (newlines in a property name, …)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _read(name: str) -> str:
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    return data.decode("utf-8-sig")  # a BOM from a Windows editor is not an error


def _summary(results: list[Result], unreadable: int) -> str:
    """`checked 3 messages: 2 valid, 1 invalid`, then any empty or unreadable files."""
    empty = sum(EMPTY in r.errors for r in results)
    count, invalid = len(results) - empty, sum(bool(r.errors) for r in results) - empty
    text = f"checked {count} message{'' if count == 1 else 's'}: "
    text += f"{count - invalid} valid, {invalid} invalid"
    extra = [f"{n} {what}" for n, what in ((empty, "empty"), (unreadable, "unreadable")) if n]
    return text + (f"; files: {', '.join(extra)}" if extra else "")


def main(files: Sequence[str], action: str | None = None, as_json: bool = False) -> int:
    """Check every file; exit 0 when all messages are valid, 1 when some are not, 2 on usage."""
    if action is not None and all(
        action not in schemas.ocpp_actions(v) for v in schemas.OCPP_VERSIONS
    ):
        versions = ", ".join(schemas.OCPP_VERSIONS)
        print(f"{PROG}: --action {action}: not an action of {versions}", file=sys.stderr)
        return EXIT_USAGE
    unreadable, results = 0, []
    for name in files:
        shown = "<stdin>" if name == "-" else name
        try:
            text = _read(name)
        except (OSError, UnicodeDecodeError) as e:
            why = f"cannot read it ({e.strerror})" if isinstance(e, OSError) else "not UTF-8 text"
            print(f"{PROG}: {shown}: {why}", file=sys.stderr)
            unreadable += 1
            continue
        for result in validate_text(text, shown, action):
            results.append(result)
            if as_json:
                print(json.dumps(result.to_json()))
                continue
            for error in result.errors:
                print(_printable(f"{result.where}: {error.path}: {error.message}"))
            for note in result.notes:
                print(_printable(f"{result.where}: note: {note}"), file=sys.stderr)
    print(_summary(results, unreadable), file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    return EXIT_INVALID if any(r.errors for r in results) else EXIT_OK
