"""`ocpp-bridge validate [--action NAME] [--json] [--strict] FILE...`: check MQTT messages.

Integrators run this before they ship, so "valid here" must mean "accepted by the service": every
check reuses the service's compiled validators from `bridge.schemas` (the envelope, `ocpp_message`,
the session messages), and the `message_name` enum is relaxed
exactly as `bridge.oem.api` relaxes it (any action of the OCPP version passes).

Every error of a message is reported, from all three checks (envelope, the `<name>.<type>` schema,
an `ocpp_message` payload against its OCPP schema), each error once. A schema-valid message the
service still refuses (an action the station sends itself or does not implement, a version it does
not run, a message too large to be read: `bridge.station.actions`, `bridge.versions`) gets a note;
`--strict` counts such a message as invalid. In `--json`, `valid` stays "schema-valid" and
`refused` says whether a note predicts a refusal.

A file holds one JSON value (possibly pretty-printed) or JSON Lines. Errors never quote message
values, which may be passwords: the `SchemaError` sentences are built from the schema alone.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from bridge import jsontext, schemas, versions
from bridge.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from bridge.oem import envelope
from bridge.schemas import JsonPath, Validate, json_path
from bridge.station import actions

PROG: Final = "ocpp-bridge validate"
_JSON_SPACE: Final = " \t\r\n"  # what JSON calls whitespace: a line of only these is blank
_ACTION_ENUM: Final = ("$.data.message_name", "enum")
_TYPES: Final = ("request", "response", "update")
_NAME: Final = re.compile(schemas.envelope_schema("envelope")["properties"]["name"]["pattern"])
_NOT_MESSAGES: Final = frozenset({"envelope", "error.response"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One error of one message, in the shape of the `--json` output."""

    path: str
    keyword: str
    code: str
    message: str


EMPTY: Final = Problem("$", "empty", "FormatViolation", "the file holds no message")


@dataclass(frozen=True, slots=True)
class Note:
    """A remark on a message; `refused`: the service will not take it although it may be valid."""

    text: str
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Chunk:
    """One message as read from a file: its parsed value, or why it is not JSON."""

    line: int | None  # 1-based physical line; None for a file that is one JSON value
    value: Any = None
    error: str | None = None
    size: int = 0  # bytes of the message's UTF-8 text, as it would travel over MQTT


@dataclass(frozen=True, slots=True)
class Result:
    file: str
    line: int | None
    errors: list[Problem]
    notes: list[Note] = field(default_factory=list)
    identity: dict[str, str | None] = field(default_factory=dict)  # id, name, type

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    @property
    def refused(self) -> bool:
        """A note says the service drops or refuses the message (`--strict`: invalid)."""
        return any(n.refused for n in self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            **{key: self.identity.get(key) for key in ("id", "name", "type")},
            "valid": not self.errors,
            "refused": self.refused,
            "errors": [asdict(e) for e in self.errors],
            "notes": [n.text for n in self.notes],
        }


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _parse(text: str, line: int | None) -> Chunk:
    size = _size(text)
    try:
        return Chunk(line, jsontext.loads(text), size=size)
    except json.JSONDecodeError as e:  # its msg names the syntax error, never the text
        return Chunk(
            line or e.lineno,
            error=f"not valid JSON: {e.msg.removesuffix(' at')} at column {e.colno}",
            size=size,
        )
    except RecursionError:
        return Chunk(line, error="not valid JSON: nested too deeply", size=size)
    except ValueError as e:  # NaN/Infinity (jsontext), a number beyond a double or 4300 digits
        reason = (
            str(e) if "JSON" in str(e) or "double" in str(e) else "a number with too many digits"
        )
        return Chunk(line, error=f"not valid JSON: {reason}", size=size)


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
        _parse(line.removesuffix("\r"), number)
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


def known_messages() -> dict[str, list[str]]:
    """Every message name that has a schema, with its types: `{"cp_status": ["update"], ...}`."""
    known: dict[str, list[str]] = {}
    for stem in schemas.envelope_schema_names():
        if stem not in _NOT_MESSAGES:
            name, _, kind = stem.rpartition(".")
            known.setdefault(name, []).append(kind)
    return known


def _no_schema(name: str, kind: str) -> Problem:
    """The error for a name/type without schema, naming what exists (both are safe to print:
    they passed envelope.json's pattern and enum)."""
    known = known_messages()
    if name in known:
        sentence = (
            f"there is no schema for '{name}' messages of type '{kind}'"
            f" ({name} has: {', '.join(known[name])})"
        )
    else:
        sentence = f"there is no schema for '{name}' messages (there are: {', '.join(known)})"
    return Problem("$.name", "schema", "NotSupported", sentence)


def _specific(value: dict[str, Any]) -> list[Problem]:
    """Errors against the `<name>.<type>` schema, or error.response for any other response."""
    name, kind = value.get("name"), value.get("type")
    if not (isinstance(name, str) and len(name) <= envelope.NAME_MAX and _NAME.fullmatch(name)):
        return []  # the envelope reported the name
    if kind not in _TYPES:
        return []  # the envelope reported the type
    try:
        specific = schemas.envelope_validator(f"{name}.{kind}")
    except KeyError:
        if kind == "response":  # the bridge's answer to a request it could not take
            return _check(schemas.envelope_validator("error.response"), value)
        return [_no_schema(name, kind)]
    return [e for e in _check(specific, value) if (e.path, e.keyword) != _ACTION_ENUM]


def _ocpp(value: dict[str, Any], action: str | None) -> tuple[list[Problem], list[Note]]:
    """An ocpp_message's payload against the OCPP schema of its version and action, as far as
    the fields that name them are usable (their own errors come from the ocpp_message schema)."""
    data, kind = value.get("data"), value.get("type")
    if not isinstance(data, dict) or data.get("ocpp_version") not in schemas.OCPP_VERSIONS:
        return [], []
    version, payload = data["ocpp_version"], data.get("payload")
    if kind == "request":
        message_name = data.get("message_name")
        if not isinstance(message_name, str):
            return [], []
        unknown = Problem(*_ACTION_ENUM, "NotImplemented", f"is not an action of {version}")
        if message_name not in schemas.ocpp_actions(version):
            return [unknown], []
        if not isinstance(payload, dict):
            return [], []
        return _payload(version, message_name, payload, False, unknown), []
    if kind != "response" or data.get("message_type") != "CallResult":
        return [], []
    if action is None:
        return [], [Note("the CallResult payload was not checked: name its action with --action")]
    if not isinstance(payload, dict):
        return [], []
    why = f"{version} has no action {action} (named by --action)"
    unknown = Problem("$.data.ocpp_version", "action", "NotImplemented", why)
    return _payload(version, action, payload, True, unknown), []


def refusal(version: str, action: str) -> str | None:
    """Why the service refuses a schema-valid ocpp_message request, or None when it takes it."""
    if version not in versions.RUNNING:
        running = ", ".join(versions.RUNNING)
        return (
            f"the station does not run {version} (only {running}): "
            f"the bridge answers {action} NotSupported"
        )
    if action in actions.OWNED.get(version, frozenset()):
        return (
            f"{action} is a message the station makes from its own state (the session messages"
            " drive it): the bridge answers it NotSupported instead of sending it to the CSMS"
        )
    if action not in actions.implemented(version) | actions.forwarded(version):
        return (
            f"the station does not implement {action}: the bridge answers it NotSupported"
            " unless [oem] delegate names it"
        )
    return None


def _dedup(problems: list[Problem]) -> list[Problem]:
    """Each error once (a missing id fails the envelope and the specific schema alike)."""
    return list(dict.fromkeys(problems))


def check(value: Any, action: str | None = None) -> tuple[list[Problem], list[Note]]:
    """Every error and note of one message: envelope, `<name>.<type>` schema, OCPP payload."""
    errors = _check(schemas.envelope_validator("envelope"), value)  # also: must be an object
    if not isinstance(value, dict):
        return errors, []
    errors += _specific(value)
    notes: list[Note] = []
    if value.get("name") == "ocpp_message":
        payload_errors, notes = _ocpp(value, action)
        errors += payload_errors
    errors = _dedup(errors)
    if not errors and value["type"] == "request" and value["name"] == "ocpp_message":
        data = value["data"]  # schema-valid: version and action are known strings
        why = refusal(data["ocpp_version"], data["message_name"])
        if why is not None:
            notes.append(Note(why, refused=True))
    return errors, notes


def _too_large(size: int) -> Note | None:
    limit = envelope.MAX_MESSAGE_BYTES
    if size <= limit:
        return None
    return Note(
        f"the message is {size} bytes, more than the {limit} ({limit // 1024} KiB) the bridge"
        " reads: it drops it without an answer",
        refused=True,
    )


def _identity(value: Any) -> dict[str, str | None]:
    """id, name and type for `--json`, each only when it is well-formed (so never a secret)."""
    body = value if isinstance(value, dict) else {}
    message_id, name, kind = body.get("id"), body.get("name"), body.get("type")
    return {
        "id": message_id if schemas.is_uuid(message_id) else None,
        "name": name if isinstance(name, str) and envelope.response_name(name) == name else None,
        "type": kind if kind in _TYPES else None,
    }


def validate_text(text: str, file: str, action: str | None = None) -> list[Result]:
    """One result per message of a file's text (one error result when it holds no message)."""
    results = []
    for chunk in split(text):
        large = [n for n in [_too_large(chunk.size)] if n is not None]
        if chunk.error is not None:
            problem = Problem("$", "json", "FormatViolation", chunk.error)
            results.append(Result(file, chunk.line, [problem], large))
        else:
            errors, notes = check(chunk.value, action)
            results.append(
                Result(file, chunk.line, errors, [*notes, *large], _identity(chunk.value))
            )
    return results or [Result(file, None, [EMPTY])]


def _printable(text: str) -> str:
    """Escape what would break the one-error-a-line output (newlines in a property name, …)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _read(name: str) -> str:
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    return data.decode("utf-8-sig")  # a BOM from a Windows editor is not an error


def _summary(results: list[Result], unreadable: int, strict: bool) -> str:
    """`checked 3 messages: 2 valid, 1 invalid`, then refusals, then empty or unreadable files."""
    empty = sum(EMPTY in r.errors for r in results)
    count = len(results) - empty
    invalid = sum(bool(r.errors) or (strict and r.refused) for r in results) - empty
    refused = sum(r.refused for r in results)
    text = f"checked {count} message{'' if count == 1 else 's'}: "
    text += f"{count - invalid} valid, {invalid} invalid"
    if refused:
        text += f" ({refused} refused by the service)"
    extra = [f"{n} {what}" for n, what in ((empty, "empty"), (unreadable, "unreadable")) if n]
    return text + (f"; files: {', '.join(extra)}" if extra else "")


def main(
    files: Sequence[str], action: str | None = None, as_json: bool = False, strict: bool = False
) -> int:
    """Check every file; exit 0 when all messages are valid, 1 when some are not (with `strict`,
    also when the service would refuse one), 2 on usage."""
    if action is not None and all(
        action not in schemas.ocpp_actions(v) for v in schemas.OCPP_VERSIONS
    ):
        versions_ = ", ".join(schemas.OCPP_VERSIONS)
        print(f"{PROG}: --action {action}: not an action of {versions_}", file=sys.stderr)
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
                print(_printable(f"{result.where}: note: {note.text}"), file=sys.stderr)
    print(_summary(results, unreadable, strict), file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    failed = any(r.errors or (strict and r.refused) for r in results)
    return EXIT_INVALID if failed else EXIT_OK
