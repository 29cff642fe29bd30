"""JSON Schema validators on every OCPP 2.0.1 schema: speed, and whether they agree.

    python bench/validators.py [--repeat R]

Every request and response schema of the `ocpp` package (`v201/schemas/*.json`, read as utf-8-sig,
all draft-06) is compiled with each of:

- jsonschema: the validator class of the schema's draft (`validators.validator_for`), instantiated
  once per schema with the class's FORMAT_CHECKER (cached; the reference);
- fastjsonschema: `fastjsonschema.compile(schema)` (generated Python code; formats checked). Not a
  project dependency: `pip install fastjsonschema` to include it, otherwise "not installed";
- jsonschema-rs: `jsonschema_rs.validator_for(schema, validate_formats=True)`;
- bridge: `bridge.schemas.compile_schema`, what the service runs (jsonschema-rs where it has a
  wheel), returning `SchemaError`s;
- bridge fallback: `bridge.schemas._compile_py`, what the service runs where jsonschema-rs has no
  wheel (armv7): jsonschema plus the bridge's own format checks.

The instances:

- seed: the payloads of tests/examples/ocpp_message/{request,response}.*.json;
- valid: per schema, a minimal instance (required properties only) and a full one (every
  property), built from the schema;
- invalid: mutations of the full instance, at up to 3 places per kind and schema: a required
  property dropped, set to null, a wrong type, a value outside an enum, a string one character
  too long, an extra property, a date-time without offset, an integer below its minimum or above
  its maximum, an array with too many or too few items;
- edge: values where validators are known to differ, each with the verdict RFC 3339 / JSON Schema
  draft-06 gives where there is one: date-time spellings (offsets, leap second, week dates, comma
  fractions, a trailing newline, non-ASCII digits...), an integer written 1.0, 2**64, a boolean
  for an integer, NaN, a lone surrogate, strings of non-BMP characters at maxLength, deep nesting
  inside customData.

For each validator: the total compile time and the median time per validation (the time of one
call, the minimum of R repetitions, median over instances; valid and invalid as the reference
judges them). Then every instance where a validator's verdict differs from the reference's, and,
for the two bridge paths, every instance where they differ in verdict or in the RPC error code
that `bridge.schemas.primary` maps their errors to (what the CallError would carry).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import importlib.util
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.validators
from _common import ROOT, git_revision, header_lines, step

from bridge import schemas as bridge_schemas

SEEDS = ROOT / "tests" / "examples" / "ocpp_message"
PER_KIND = 3  # places per mutation kind and schema
TIMED_BATCH = 20e-6  # s: calls are timed in batches at least this long
DATE_TIME = "2026-11-22T10:00:00.000Z"
Json = Any
Path_ = tuple[str | int, ...]

# Edge date-times: (text, the verdict of RFC 3339 section 5.6 / JSON Schema "date-time").
DATE_TIME_EDGES: list[tuple[str, bool | None]] = [
    ("2026-11-22T10:00:00Z", True),
    ("2026-11-22T10:00:00.123456789Z", True),
    ("2026-11-22t10:00:00z", True),  # RFC 3339 5.6: T and Z may be lower case
    ("2026-11-22T10:00:00+01:00", True),
    ("2026-11-22T10:00:00-00:00", True),
    ("2026-11-22T10:00:00+23:59", True),
    ("2024-02-29T10:00:00Z", True),
    ("2026-12-31T23:59:60Z", True),  # a leap second
    ("0000-01-01T00:00:00Z", True),  # date-fullyear is 4DIGIT
    ("2026-11-22 10:00:00Z", False),  # allowed by RFC 3339's note, not by its grammar
    ("2026-11-22T10:00:00", False),
    ("2026-11-22T10:00:00+0100", False),
    ("2026-11-22T10:00:00+01", False),
    ("2026-11-22T10:00:00.123+01:00:30", False),
    ("2026-11-22T10:00:00 +01:00", False),
    ("2026-11-22T10:00:00,123Z", False),
    ("2026-11-22T10:00:00.Z", False),
    ("2026-11-22T10:00Z", False),
    ("2026-W47-7T10:00:00Z", False),  # ISO 8601 week date
    ("2026-326T10:00:00.000Z", False),  # ISO 8601 ordinal date
    ("20261122T100000Z", False),
    ("2026-02-29T10:00:00Z", False),
    ("2026-02-30T10:00:00Z", False),
    ("2026-13-01T00:00:00Z", False),
    ("2026-11-22T24:00:00Z", False),
    ("2026-11-22T10:00:61Z", False),
    ("2026-11-22T10:00:00+24:00", False),
    ("2026-11-22T10:00:00Z\n", False),
    ("２０２６-11-22T10:00:00Z", False),  # fullwidth digits
    ("not a date", False),
    ("", False),
]


# --- the schemas --------------------------------------------------------------------------------


def schema_dir() -> Path:
    spec = importlib.util.find_spec("ocpp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("validators: the 'ocpp' package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "v201" / "schemas"


def load_schemas() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8-sig"))
        for path in sorted(schema_dir().glob("*.json"))
    }


def resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/definitions/"):
            raise ValueError(f"unexpected $ref {ref}")
        node = root["definitions"][ref.removeprefix("#/definitions/")]
    return node


# --- the instances ------------------------------------------------------------------------------


@dataclass
class Instance:
    schema: str
    group: str  # seed, valid, invalid, edge
    kind: str  # what was done, without where
    where: str  # JSON path of the change ("" for whole instances)
    value: Json
    expected: bool | None  # the intended verdict; None where there is no single answer
    shown: str = ""  # the changed value, for the listing

    def summary(self) -> str:
        at = f" at {self.where}" if self.where else ""
        return f"{self.schema}{at}"


def build(node: dict[str, Any], root: dict[str, Any], full: bool, depth: int = 0) -> Json:
    """An instance of `node`: required properties only, or every property when `full`."""
    node = resolve(node, root)
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties", {})
        required = node.get("required", [])
        names = [n for n in properties if n in required or (full and depth < 8)]
        return {n: build(properties[n], root, full, depth + 1) for n in names}
    if kind == "array":
        count = max(node.get("minItems", 0), 1 if full else 0)
        count = min(count, node.get("maxItems", count))
        return [build(node["items"], root, full, depth + 1) for _ in range(count)]
    if kind == "string":
        if node.get("format") == "date-time":
            return DATE_TIME
        return "Acme-42"[: node.get("maxLength", 7)]
    if kind == "integer":
        return max(node.get("minimum", 1), min(node.get("maximum", 1), 1))
    if kind == "number":
        return max(node.get("minimum", 12.5), min(node.get("maximum", 12.5), 12.5))
    if kind == "boolean":
        return True
    if kind is None:  # any value (DataTransfer.data)
        return {"anything": [1, "two"]}
    raise ValueError(f"cannot build {node}")


@dataclass(frozen=True)
class Place:
    path: Path_
    node: dict[str, Any]  # resolved schema of the value there
    required: bool  # a required property of its object


def places(
    node: dict[str, Any], root: dict[str, Any], value: Json, path: Path_ = ()
) -> Iterator[Place]:
    """Every value in an instance built by `build`, with its schema."""
    node = resolve(node, root)
    yield Place(path, node, False)
    if isinstance(value, dict) and node.get("type") == "object":
        required = node.get("required", [])
        for name, item in value.items():
            for place in places(node["properties"][name], root, item, (*path, name)):
                if place.path == (*path, name):
                    place = Place(place.path, place.node, name in required)
                yield place
    elif isinstance(value, list) and node.get("type") == "array":
        for i, item in enumerate(value):
            yield from places(node["items"], root, item, (*path, i))


def replaced(value: Json, path: Path_, new: Json) -> Json:
    out = copy.deepcopy(value)
    if not path:
        return new
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return out


def removed(value: Json, path: Path_) -> Json:
    out = copy.deepcopy(value)
    target = out
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return out


def spread(items: list[Any], n: int = PER_KIND) -> list[Any]:
    """Up to n items, first, last and between."""
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def short(value: Json, limit: int = 48) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except RecursionError:
        return "(deeply nested)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


WRONG_TYPE: dict[str, Json] = {
    "string": 42,
    "integer": "42",
    "number": "4.2",
    "boolean": "true",
    "object": [],
    "array": {},
}


def mutations(name: str, schema: dict[str, Any], full: Json) -> Iterator[Instance]:
    """The invalid instances: one kind of mistake at a time, at up to PER_KIND places."""
    all_places = list(places(schema, schema, full))
    leaves = [p for p in all_places if p.path]

    def at(kind: str, chosen: list[Place], change: Callable[[Place], Json]) -> Iterator[Instance]:
        for p in spread(chosen):
            new = change(p)
            value = replaced(full, p.path, new)
            where = bridge_schemas.json_path(p.path)
            yield Instance(name, "invalid", kind, where, value, False, short(new))

    for p in spread([p for p in leaves if p.required]):
        value = removed(full, p.path)
        where = bridge_schemas.json_path(p.path)
        yield Instance(name, "invalid", "required property missing", where, value, False)
    yield from at("required property null", [p for p in leaves if p.required], lambda p: None)
    yield from at(
        "wrong type",
        [p for p in leaves if "enum" not in p.node and "type" in p.node],
        lambda p: WRONG_TYPE[p.node["type"]],
    )
    yield from at("not in enum", [p for p in leaves if "enum" in p.node], lambda p: "NotInTheEnum")
    yield from at(
        "string too long",
        [p for p in leaves if "maxLength" in p.node and "enum" not in p.node],
        lambda p: "x" * (p.node["maxLength"] + 1),
    )
    objects = [
        p
        for p in all_places
        if p.node.get("type") == "object" and p.node.get("additionalProperties") is False
    ]
    for p in spread(objects):
        value = copy.deepcopy(full)
        target = value
        for part in p.path:
            target = target[part]
        target["unexpectedProperty"] = 1
        where = bridge_schemas.json_path(p.path)
        yield Instance(name, "invalid", "extra property", where, value, False)
    yield from at(
        "date-time without offset",
        [p for p in leaves if p.node.get("format") == "date-time"],
        lambda p: "2026-11-22T10:00:00",
    )
    yield from at(
        "below minimum",
        [p for p in leaves if "minimum" in p.node],
        lambda p: p.node["minimum"] - 1,
    )
    yield from at(
        "above maximum",
        [p for p in leaves if "maximum" in p.node],
        lambda p: p.node["maximum"] + 1,
    )
    arrays = [p for p in leaves if p.node.get("type") == "array"]
    yield from at(
        "too many items",
        [p for p in arrays if "maxItems" in p.node],
        lambda p: [build(p.node["items"], schema, True)] * (p.node["maxItems"] + 1),
    )
    yield from at(
        "too few items", [p for p in arrays if p.node.get("minItems", 0) > 0], lambda p: []
    )


def nested(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth):
        inner = {"a": inner}
    return {"vendorId": "Acme", "nested": inner}


def edges(name: str, schema: dict[str, Any], full: Json) -> Iterator[Instance]:
    """Values where validators are known to differ, at the first place each applies."""
    leaves = [p for p in places(schema, schema, full) if p.path]

    def first(test: Callable[[Place], bool]) -> Place | None:
        return next((p for p in leaves if test(p)), None)

    def edge(kind: str, p: Place | None, new: Json, expected: bool | None) -> Iterator[Instance]:
        if p is not None:
            value = replaced(full, p.path, new)
            where = bridge_schemas.json_path(p.path)
            yield Instance(name, "edge", kind, where, value, expected, short(new))

    date_time = first(lambda p: p.node.get("format") == "date-time")
    for text, expected in DATE_TIME_EDGES:
        yield from edge(f"date-time {short(text)}", date_time, text, expected)
    yield from edge(
        "date-time with a lone surrogate", date_time, "2026-11-22T10:00:00\ud800Z", False
    )
    integer = first(lambda p: p.node.get("type") == "integer")
    unbounded = first(lambda p: p.node.get("type") == "integer" and "maximum" not in p.node)
    yield from edge("integer written 1.0", integer, 1.0, True)  # draft-06: integral numbers
    yield from edge("integer 2**64", unbounded, 2**64, True)
    yield from edge("integer -2**70", unbounded, -(2**70), True)
    yield from edge("boolean for an integer", integer, True, False)
    number = first(lambda p: p.node.get("type") == "number")
    yield from edge("number NaN (not JSON)", number, math.nan, None)
    yield from edge("number Infinity (not JSON)", number, math.inf, None)
    yield from edge("number 1e308", number, 1e308, True)
    plain = first(
        lambda p: p.node.get("type") == "string" and "enum" not in p.node and "format" not in p.node
    )
    yield from edge("string with a lone surrogate", plain, "Acme\udc00", None)
    limited = first(
        lambda p: "maxLength" in p.node and "enum" not in p.node and "format" not in p.node
    )
    if limited is not None:
        length = limited.node["maxLength"]
        yield from edge("maxLength non-BMP characters", limited, "😀" * length, True)
        yield from edge("maxLength + 1 non-BMP characters", limited, "😀" * (length + 1), False)
        yield from edge("maxLength combining characters", limited, "e\u0301" * (length // 2), True)
    custom = first(lambda p: p.path[-1] == "customData")
    yield from edge("customData nested 100 deep", custom, nested(100), True)
    # About as deep as json.loads goes (Python's recursion limit); deeper cannot arrive as JSON.
    yield from edge("customData nested 900 deep", custom, nested(900), True)
    objects = [p for p in places(schema, schema, full) if p.node.get("type") == "object"]
    if objects and objects[0].node.get("additionalProperties") is False:
        value = dict(full)
        value["unexpected\ud800"] = 1
        yield Instance(
            name, "edge", "extra property named with a lone surrogate", "$", value, False
        )


def seed_instances(schemas: dict[str, dict[str, Any]]) -> list[Instance]:
    out = []
    for path in sorted(SEEDS.glob("*.json")):
        kind, _, action = path.stem.partition(".")
        action = action.split(".")[0]
        data = json.loads(path.read_text())["data"]
        if kind == "request":
            schema = f"{data['message_name']}Request"
        elif data.get("message_type") == "CallResult":
            schema = f"{action}Response"
        else:
            continue
        if schema in schemas:
            out.append(Instance(schema, "seed", path.name, "", data["payload"], True))
    return out


def corpus(schemas: dict[str, dict[str, Any]]) -> list[Instance]:
    out = seed_instances(schemas)
    for name, schema in schemas.items():
        minimal, full = build(schema, schema, False), build(schema, schema, True)
        out.append(Instance(name, "valid", "minimal", "", minimal, True))
        if full != minimal:
            out.append(Instance(name, "valid", "full", "", full, True))
        out.extend(mutations(name, schema, full))
        out.extend(edges(name, schema, full))
    return out


# --- the validators -----------------------------------------------------------------------------

Check = Callable[[Json], Any]  # the call that is timed


@dataclass
class Validator:
    name: str
    compile: Callable[[dict[str, Any]], Check]
    valid: Callable[[Any], bool]  # the verdict from what the check returned
    checks: dict[str, Check] = field(default_factory=dict)
    compile_s: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # schema -> why it did not compile


def jsonschema_check(schema: dict[str, Any]) -> Check:
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    check: Check = validator.is_valid
    return check


def fastjsonschema_check(schema: dict[str, Any]) -> Check:
    import fastjsonschema

    validate = fastjsonschema.compile(schema)
    error = fastjsonschema.JsonSchemaException

    def check(instance: Json) -> bool:
        try:
            validate(instance)
        except error:
            return False
        return True

    return check


def jsonschema_rs_check(schema: dict[str, Any]) -> Check:
    import jsonschema_rs

    check: Check = jsonschema_rs.validator_for(schema, validate_formats=True).is_valid
    return check


def validators() -> list[Validator]:
    out = [Validator("jsonschema", jsonschema_check, bool)]
    if importlib.util.find_spec("fastjsonschema"):
        out.append(Validator("fastjsonschema", fastjsonschema_check, bool))
    if importlib.util.find_spec("jsonschema_rs"):
        out.append(Validator("jsonschema-rs", jsonschema_rs_check, bool))
    out.append(
        Validator(
            f"bridge ({bridge_schemas.BACKEND})", bridge_schemas.compile_schema, lambda e: not e
        )
    )
    out.append(Validator("bridge fallback", bridge_schemas._compile_py, lambda e: not e))
    return out


def compile_all(validator: Validator, schemas: dict[str, dict[str, Any]]) -> None:
    total = 0.0
    for name, schema in schemas.items():
        start = time.perf_counter()
        try:
            validator.checks[name] = validator.compile(schema)
        except Exception as e:
            validator.failed[name] = f"{type(e).__name__}: {str(e)[:80]}"
        total += time.perf_counter() - start
    validator.compile_s = total


def run_check(check: Check, instance: Json) -> tuple[Any, str | None]:
    """(what the check returned, None) or (None, the exception it raised)."""
    try:
        return check(instance), None
    except Exception as e:  # RecursionError, ValueError, UnicodeError...
        return None, type(e).__name__


def verdict(validator: Validator, instance: Instance) -> str:
    """valid, invalid, raised X, or not compiled."""
    check = validator.checks.get(instance.schema)
    if check is None:
        return "not compiled"
    result, raised = run_check(check, instance.value)
    if raised:
        return f"raised {raised}"
    return "valid" if validator.valid(result) else "invalid"


def time_per_call(check: Check, instance: Json, batch: int, repeat: int) -> float:
    """Seconds per call: the fastest of `repeat` batches of `batch` calls."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(batch):
            check(instance)
        best = min(best, (time.perf_counter() - start) / batch)
    return best


def batch_size(check: Check, instance: Json) -> int:
    start = time.perf_counter()
    for _ in range(10):
        check(instance)
    once = (time.perf_counter() - start) / 10
    return max(1, min(1000, math.ceil(TIMED_BATCH / max(once, 1e-9))))


# --- the bridge's two paths ---------------------------------------------------------------------


@dataclass
class PathDifference:
    instance: Instance
    rs: list[bridge_schemas.SchemaError]
    py: list[bridge_schemas.SchemaError]

    def describe(self, errors: list[bridge_schemas.SchemaError]) -> str:
        if not errors:
            return "valid"
        first = bridge_schemas.primary(errors)
        return f"{first.code} ({first.keyword})"


# --- report -------------------------------------------------------------------------------------


def package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header() -> list[str]:
    checker = jsonschema.Draft6Validator.FORMAT_CHECKER
    formats = "date-time checked" if "date-time" in checker.checkers else "date-time NOT checked"
    return header_lines(
        "Schema validation: the OCPP 2.0.1 schemas of the ocpp package",
        f"libraries   ocpp {package('ocpp')}, jsonschema {package('jsonschema')} ({formats}; "
        f"rfc3339-validator {package('rfc3339-validator')}), fastjsonschema "
        f"{package('fastjsonschema')}, jsonschema-rs {package('jsonschema_rs')}",
        f"bridge      ocpp-bridge {package('ocpp-bridge')}, git {git_revision()}, "
        f"bridge.schemas.BACKEND = {bridge_schemas.BACKEND}",
    )


def median_us(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e6:,.1f}" if values else "-"


LETTER = {"valid": "V", "invalid": "I"}


def letters(verdicts: list[str]) -> str:
    return " ".join(LETTER.get(v, "E" if v.startswith("raised") else "-") for v in verdicts)


class PlaceLists:
    """Prints a list of places once; the same list again only by its label."""

    def __init__(self, schemas: int) -> None:
        self.schemas = schemas
        self.labels: dict[tuple[str, ...], str] = {}

    def lines(self, items: list[str], indent: str = "      ") -> list[str]:
        if len(items) == self.schemas and all(i.endswith(" at $") for i in items):
            return [f"{indent}at $ of every schema"]
        key = tuple(items)
        if key in self.labels:
            return [f"{indent}at the same {len(items)} places as {self.labels[key]}"]
        label = self.labels[key] = f"[{len(self.labels) + 1}]"
        return wrap([label, *items], indent)


def wrap(items: list[str], indent: str, width: int = 100) -> list[str]:
    lines, line = [], indent
    for item in items:
        if len(line) + len(item) + 2 > width and line.strip():
            lines.append(line.rstrip(", ").rstrip())
            line = indent
        line += item + ", "
    if line.strip():
        lines.append(line.rstrip(", ").rstrip())
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="timed repetitions")
    args = parser.parse_args()

    lines = header()
    print("\n".join(lines), flush=True)
    schemas = load_schemas()
    requests = sum(1 for n in schemas if n.endswith("Request"))
    instances = corpus(schemas)
    groups = defaultdict(list)
    for instance in instances:
        groups[instance.group].append(instance)
    out = [
        "",
        f"schemas: {len(schemas)} ({requests} requests, {len(schemas) - requests} responses) "
        f"from {schema_dir()}",
        f"instances: {len(instances):,}: "
        + ", ".join(f"{len(groups[g]):,} {g}" for g in ("seed", "valid", "invalid", "edge")),
    ]
    for group in ("invalid", "edge"):
        kinds: dict[str, int] = defaultdict(int)
        for instance in groups[group]:
            kinds[instance.kind.split('"')[0].strip() if group == "edge" else instance.kind] += 1
        out += wrap([f"{n} {k}" for k, n in kinds.items()], f"  {group}: ")
    if not importlib.util.find_spec("fastjsonschema"):
        out.append("fastjsonschema: not installed (pip install fastjsonschema to include it)")

    all_validators = validators()
    for validator in all_validators:
        step(f"compile: {validator.name}")
        compile_all(validator, schemas)

    step("verdicts")
    verdicts = {v.name: [verdict(v, i) for i in instances] for v in all_validators}
    reference = all_validators[0].name

    step("timing")
    timings: dict[str, dict[str, list[float]]] = {}
    for validator in all_validators:
        calibrate = next(i for i in instances if i.group == "seed")
        batch = batch_size(validator.checks[calibrate.schema], calibrate.value)
        per_group: dict[str, list[float]] = defaultdict(list)
        for index, instance in enumerate(instances):
            check = validator.checks.get(instance.schema)
            if instance.group == "edge" or check is None:
                continue
            if verdicts[validator.name][index].startswith("raised"):
                continue
            seconds = time_per_call(check, instance.value, batch, args.repeat)
            ref = verdicts[reference][index]
            per_group["seed" if instance.group == "seed" else ref].append(seconds)
        timings[validator.name] = per_group

    # Agreement with the reference, and with the intended verdict.
    disagreements: dict[str, list[int]] = {}
    wrong: dict[str, list[int]] = {}
    for validator in all_validators:
        mine = verdicts[validator.name]
        disagreements[validator.name] = [
            i for i, v in enumerate(mine) if v != verdicts[reference][i]
        ]
        wrong[validator.name] = [
            i
            for i, instance in enumerate(instances)
            if instance.expected is not None
            and mine[i] != ("valid" if instance.expected else "invalid")
        ]

    def agree_outside_edges(name: str) -> bool:
        return all(instances[i].group == "edge" for i in disagreements[name])

    out += [
        "",
        f"{'':30}{'compile':>10}{'median µs per validation':>40}{'disagrees with':>24}",
        f"{'':30}{'all, ms':>10}{'seed':>12}{'valid':>14}{'invalid':>14}"
        f"{'jsonschema':>14}{'intent':>10}",
    ]
    for validator in all_validators:
        t = timings[validator.name]
        n = len(disagreements[validator.name])
        out.append(
            f"{validator.name:30}{validator.compile_s * 1000:>10,.0f}{median_us(t['seed']):>12}"
            f"{median_us(t['valid']):>14}{median_us(t['invalid']):>14}"
            f"{('(reference)' if validator.name == reference else str(n)):>14}"
            f"{len(wrong[validator.name]):>10}"
        )
        for name, why in validator.failed.items():
            out.append(f"  did not compile {name}: {why}")
    counts = {g: len(timings[reference][g]) for g in ("seed", "valid", "invalid")}
    out += [
        f"(µs: the median over instances of one call, the fastest of {args.repeat} batches; "
        f"seed {counts['seed']}, valid {counts['valid']:,}, invalid {counts['invalid']:,} as "
        "jsonschema judges them; edge cases not timed.",
        " 'intent': instances whose verdict is defined (all but some edge cases) judged otherwise"
        " than intended.)",
    ]

    # Every disagreement, grouped by what was done and who said what.
    names = [v.name for v in all_validators]
    short_names = ["js", "fast", "rs", "bridge", "fallback"][: len(names)]
    if len(names) == 4:  # no fastjsonschema
        short_names = ["js", "rs", "bridge", "fallback"]
    disagreeing = [i for i in range(len(instances)) if len({verdicts[n][i] for n in names}) > 1]
    place_lists = PlaceLists(len(schemas))
    grouped: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i in disagreeing:
        instance = instances[i]
        key = (instance.kind, letters([verdicts[n][i] for n in names]), instance.shown)
        grouped[key].append(i)
    out += [
        "",
        f"instances where the validators do not all agree: {len(disagreeing)} of {len(instances):,}"
        f" (V valid, I invalid, E raised; columns {' '.join(short_names)}; 'intended' is the"
        " verdict of RFC 3339 / JSON Schema draft-06, '?' where there is none)",
    ]
    for (kind, pattern, _), members in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        first = instances[members[0]]
        intended = {True: "V", False: "I", None: "?"}[first.expected]
        raised = sorted(
            {verdicts[n][i] for n in names for i in members if verdicts[n][i].startswith("raised")}
        )
        extra = f" [{', '.join(raised)}]" if raised else ""
        out.append(f"  {pattern}  intended {intended}  {kind}: {len(members)} instance(s){extra}")
        out += place_lists.lines([instances[i].summary() for i in members])

    # The bridge's two paths: verdict and RPC error code.
    rs_validator = next(v for v in all_validators if v.name.startswith("bridge ("))
    py_validator = next(v for v in all_validators if v.name == "bridge fallback")
    differences: list[PathDifference] = []
    detail_only: dict[str, list[str]] = defaultdict(list)  # kind -> descriptions
    for instance in instances:
        rs_check = rs_validator.checks.get(instance.schema)
        py_check = py_validator.checks.get(instance.schema)
        if rs_check is None or py_check is None:
            continue
        rs, _ = run_check(rs_check, instance.value)
        py, _ = run_check(py_check, instance.value)
        rs, py = rs or [], py or []
        if bool(rs) != bool(py) or (
            rs and bridge_schemas.primary(rs).code != bridge_schemas.primary(py).code
        ):
            differences.append(PathDifference(instance, rs, py))
        elif rs:
            a, b = bridge_schemas.primary(rs), bridge_schemas.primary(py)
            if (a.path, a.keyword, a.message) != (b.path, b.keyword, b.message):
                detail_only[instance.kind].append(
                    f"{instance.summary()}: {a.code} '{a.sentence()}' [{a.keyword}] / "
                    f"'{b.sentence()}' [{b.keyword}]"
                )
    verdict_differences = [d for d in differences if bool(d.rs) != bool(d.py)]
    code_differences = [d for d in differences if bool(d.rs) and bool(d.py)]
    out += [
        "",
        f"bridge.schemas, {rs_validator.name} path vs the jsonschema fallback (_compile_py), "
        f"on all {len(instances):,} instances:",
        f"  verdict differs: {len(verdict_differences)}; both reject but with a different RPC error"
        f" code: {len(code_differences)}; same code, different first error (path/keyword/text):"
        f" {sum(len(v) for v in detail_only.values())}",
    ]
    by_kind: dict[tuple[str, str, str], list[PathDifference]] = defaultdict(list)
    for d in differences:
        by_kind[
            (d.instance.kind, d.describe(d.rs).split(" ")[0], d.describe(d.py).split(" ")[0])
        ].append(d)
    for (kind, _, _), found in sorted(by_kind.items()):
        d = found[0]
        out.append(
            f"  {kind}: {rs_validator.name} {d.describe(d.rs)}, fallback {d.describe(d.py)}"
            f" — {len(found)} schema(s)"
        )
        out += place_lists.lines([f.instance.summary() for f in found])
    for kind, described in sorted(detail_only.items()):
        out.append(f"  same code, different first error: {kind}: {len(described)} schema(s),")
        out.append(f"      e.g. {described[0]}")

    # Which to keep.
    def median_all(name: str) -> float:
        """The ranking: median over seed and valid instances (what a working system sees)."""
        t = timings[name]
        values = t["seed"] + t["valid"]
        return statistics.median(values) if values else math.inf

    everywhere = [n for n in names[1:] if not disagreements[n]]
    outside = [n for n in names[1:] if agree_outside_edges(n)]
    fastest = sorted(names, key=median_all)
    out += ["", "verdict"]
    if everywhere:
        best = min(everywhere, key=median_all)
        out.append(
            f"  agree with jsonschema on every instance: {', '.join(everywhere)}; fastest: {best}"
        )
    else:
        out.append("  no validator agrees with jsonschema on every instance (see the list above)")
    if outside:
        best = min(outside, key=median_all)
        out.append(
            f"  agree with jsonschema on every seed/valid/invalid instance (edge cases aside): "
            f"{', '.join(outside)}; fastest: {best}"
        )
    correct = [n for n in names if not wrong[n]]
    out.append(
        "  judge every instance as intended (RFC 3339 / draft-06): "
        + (", ".join(correct) if correct else "none")
        + "; fewest misjudged: "
        + ", ".join(f"{n} {len(wrong[n])}" for n in sorted(names, key=lambda n: len(wrong[n])))
    )
    out.append(
        "  by median µs over seed and valid instances: "
        + " < ".join(f"{n} {median_all(n) * 1e6:,.1f}" for n in fastest)
    )
    uses = (
        "the project validates with jsonschema-rs (bridge.schemas.BACKEND), falling back to "
        "jsonschema where jsonschema-rs has no wheel (armv7)"
    )
    if fastest[0] in ("jsonschema-rs", f"bridge ({bridge_schemas.BACKEND})") and (
        "jsonschema-rs" in outside
    ):
        out.append(f"  {uses}: the data supports that choice")
    else:
        out.append(f"  {uses}: the data above does NOT single it out; see the figures")
    if verdict_differences or code_differences:
        out.append(
            f"  the fallback differs from the jsonschema-rs path on {len(differences)} instances "
            "(listed above): armv7 users get other answers"
        )
    # Lone surrogates (in the edge cases, and in error texts about them) printed as \udXXX.
    print("\n".join(out).encode("utf-8", "backslashreplace").decode(), flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
