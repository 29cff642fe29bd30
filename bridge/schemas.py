"""JSON Schema validation for both doors: the OCPP payload schemas shipped in the `ocpp` package and
our own MQTT envelope schemas in `schemas/`.

Each schema is compiled once and cached. The backend is jsonschema-rs (~1 µs per OCPP message); on
platforms without its wheel (armv7) the reference `jsonschema` package validates instead. Both are
reduced to the same `SchemaError`, whose message is built from the schema keyword and the schema's
own values, never from the instance: a rejected value may be a password.
"""

from __future__ import annotations

import importlib.util
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final, TypeGuard

from bridge import versions
from bridge.timeutil import is_date_time

_rs: Any
try:  # pragma: no cover - which branch runs depends on the platform
    import jsonschema_rs as _rs
except ImportError:  # pragma: no cover
    _rs = None

BACKEND: Final = "jsonschema-rs" if _rs is not None else "jsonschema"

# OCPP versions as they are named on the wire (WebSocket subprotocol and MQTT `ocpp_version`).
OCPP_VERSIONS: Final = versions.KNOWN
_OCPP_DIRS: Final = versions.SCHEMA_DIRS

ENVELOPE_DIR: Final = Path(__file__).resolve().parent / "schemas"

JsonPath = tuple[str | int, ...]

# Which RPC error code a failed keyword maps to (OCPP-J 2.0.1 part 4, table "ErrorCode"):
# structure → FormatViolation, cardinality → OccurrenceConstraintViolation,
# data type → TypeConstraintViolation, any other value constraint → PropertyConstraintViolation.
_CODE_BY_KEYWORD: Final = {
    "json": "FormatViolation",  # not checkable at all: a lone surrogate, nesting too deep
    "additionalProperties": "FormatViolation",
    "unevaluatedProperties": "FormatViolation",
    "false": "FormatViolation",
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "type": "TypeConstraintViolation",
}
_CODE_RANK: Final = {
    "FormatViolation": 0,
    "OccurrenceConstraintViolation": 1,
    "TypeConstraintViolation": 2,
    "PropertyConstraintViolation": 3,
}


def json_path(path: Iterable[str | int]) -> str:
    """`("a", 0, "b")` → `$.a[0].b` (names that are not identifiers are quoted)."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One schema violation: where, which keyword, and a plain sentence without the bad value."""

    path: JsonPath
    keyword: str
    message: str

    @property
    def code(self) -> str:
        return _CODE_BY_KEYWORD.get(self.keyword, "PropertyConstraintViolation")

    @property
    def location(self) -> str:
        return json_path(self.path)

    def sentence(self) -> str:
        return f"{self.location}: {self.message}"


def primary(errors: Sequence[SchemaError]) -> SchemaError:
    """The error to report first: the gravest RPC code, then the first path in document order."""
    return min(errors, key=lambda e: (_CODE_RANK.get(e.code, 9), [str(p) for p in e.path]))


def _message(keyword: str, value: Any) -> str:
    """A sentence for a failed keyword, from the schema's value for it (never the instance's)."""
    match keyword:
        case "required":
            return f"required property '{_short(value, 50)}' is missing"
        case "additionalProperties" | "unevaluatedProperties":
            names = ", ".join(f"'{_short(n, 40)}'" for n in list(value)[:5])
            return f"unexpected property {names}"
        case "type":
            types = value if isinstance(value, list) else [value]
            return "must be of type " + " or ".join(str(t) for t in types)
        case "enum":
            options = list(value)
            shown = ", ".join(str(o) for o in options[:12]) + (", …" if len(options) > 12 else "")
            return f"must be one of: {shown}"
        case "const":
            return f"must be {_short(value)}"
        case "maxLength":
            return f"must be at most {value} characters long"
        case "minLength":
            return f"must be at least {value} characters long"
        case "maxItems":
            return f"must have at most {value} items"
        case "minItems":
            return f"must have at least {value} item{'s' if value != 1 else ''}"
        case "maximum":
            return f"must be at most {value}"
        case "minimum":
            return f"must be at least {value}"
        case "exclusiveMaximum":
            return f"must be less than {value}"
        case "exclusiveMinimum":
            return f"must be greater than {value}"
        case "multipleOf":
            return f"must be a multiple of {value}"
        case "format":
            return f"must be a valid {value}"
        case "pattern":
            return f"must match the pattern {_short(value)}"
        case "uniqueItems":
            return "must not contain duplicate items"
        case "false":
            return "is not allowed here"
        case "json":
            return "cannot be checked"
        case _:
            return f"does not satisfy '{keyword}'"


Validate = Callable[[Any], list[SchemaError]]


def _unusable(error: Exception) -> list[SchemaError]:
    """The instance cannot be validated at all (the validator itself gave up)."""
    if isinstance(error, UnicodeError):
        return [
            SchemaError(
                (), "json", "contains a lone surrogate (U+D800 to U+DFFF): not Unicode text"
            )
        ]
    return [SchemaError((), "json", "is nested too deeply to be checked")]


def _compile_rs(schema: dict[str, Any]) -> Validate:
    assert _rs is not None
    validator = _rs.validator_for(schema, validate_formats=True)

    def validate(instance: Any) -> list[SchemaError]:
        try:
            if validator.is_valid(instance):
                return []
            found = list(validator.iter_errors(instance))
        except (ValueError, UnicodeError, RecursionError) as problem:
            return _unusable(problem)
        errors = []
        for e in found:
            kind = e.kind
            keyword = kind.name
            if keyword == "falseSchema":
                keyword = "false"
            if keyword == "required":
                detail: Any = getattr(kind, "property", None)
            elif keyword == "additionalProperties":
                detail = getattr(kind, "unexpected", ())
            elif keyword == "type":
                detail = getattr(kind, "types", ())
            else:
                detail = getattr(kind, "value", None)
            errors.append(SchemaError(tuple(e.instance_path), keyword, _message(keyword, detail)))
        return errors

    return validate


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(text: object) -> TypeGuard[str]:
    """RFC 4122 text form, 8-4-4-4-12 hex digits."""
    return isinstance(text, str) and _UUID.fullmatch(text) is not None


def _compile_py(schema: dict[str, Any]) -> Validate:  # pragma: no cover - armv7 fallback
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(lambda v: not isinstance(v, str) or is_date_time(v))
    checker.checks("uuid")(lambda v: not isinstance(v, str) or is_uuid(v))
    checker.checks("uri")(
        lambda v: not isinstance(v, str) or bool(urllib.parse.urlsplit(v).scheme and ":" in v)
    )
    # Floats against `multipleOf: 0.1` need decimal arithmetic (as the ocpp library does).
    decimals = "multipleOf" in json.dumps(schema)
    if decimals:
        schema = json.loads(json.dumps(schema), parse_float=Decimal)
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=checker)

    def validate(instance: Any) -> list[SchemaError]:
        try:
            if decimals:
                instance = json.loads(json.dumps(instance), parse_float=Decimal)
            found = list(validator.iter_errors(instance))
        except (ValueError, UnicodeError, RecursionError) as problem:
            return _unusable(problem)
        errors = []
        for e in found:
            keyword = str(e.validator)
            detail: Any = e.validator_value
            if keyword == "required":
                detail = e.message.rsplit(" is a required property", 1)[0].strip("'\"")
            elif keyword == "additionalProperties":
                known = set(e.schema.get("properties", {}))
                detail = sorted(k for k in e.instance if k not in known)
            elif keyword in ("$ref", "None") or e.validator is None:
                keyword = "false"
            errors.append(SchemaError(tuple(e.absolute_path), keyword, _message(keyword, detail)))
        return errors

    return validate


def compile_schema(schema: dict[str, Any]) -> Validate:
    """Compile a schema with the platform's backend into `instance -> [SchemaError]`."""
    return _compile_rs(schema) if _rs is not None else _compile_py(schema)


# --- OCPP payload schemas (from the `ocpp` package, found without importing its version packages)


@cache
def _ocpp_schema_dir(version: str) -> Path:
    spec = importlib.util.find_spec("ocpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'ocpp' package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / _OCPP_DIRS[version] / "schemas"


def _schema_file(version: str, action: str, response: bool) -> Path:
    if version == "ocpp1.6":
        name = f"{action}Response" if response else action
    else:
        name = f"{action}{'Response' if response else 'Request'}"
    return _ocpp_schema_dir(version) / f"{name}.json"


@cache
def ocpp_actions(version: str) -> frozenset[str]:
    """Every action that exists in this OCPP version (it has a request schema)."""
    if version not in _OCPP_DIRS:
        return frozenset()
    names = {p.stem for p in _ocpp_schema_dir(version).glob("*.json")}
    if version == "ocpp1.6":
        return frozenset(n for n in names if not n.endswith("Response"))
    return frozenset(n.removesuffix("Request") for n in names if n.endswith("Request"))


@cache
def ocpp_validator(version: str, action: str, response: bool = False) -> Validate:
    """The compiled validator of one OCPP message; KeyError when the action does not exist."""
    if action not in ocpp_actions(version):
        raise KeyError(f"{action} is not an {version} action")
    path = _schema_file(version, action, response)
    # The OCPP 2.0 schemas start with a byte order mark.
    return compile_schema(json.loads(path.read_text(encoding="utf-8-sig")))


# --- our MQTT envelope schemas (schemas/<name>.<type>.json)


@cache
def envelope_schema(name: str) -> dict[str, Any]:
    """The JSON Schema document `schemas/<name>.json` (e.g. `ocpp_message.request`)."""
    if len(name) > 80 or not re.fullmatch(
        r"[a-z_]+\.(request|response|update)|envelope|error\.response", name
    ):
        raise KeyError(name)
    path = ENVELOPE_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(name)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@cache
def envelope_validator(name: str) -> Validate:
    """Compiled validator of `schemas/<name>.json`; KeyError when there is no such schema."""
    return compile_schema(envelope_schema(name))


def envelope_schema_names() -> list[str]:
    return sorted(p.stem for p in ENVELOPE_DIR.glob("*.json"))
