"""`ocpp-bridge validate` (SPEC §3): what an integrator sees for good and bad message files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import cli, validate
from tests.conftest import EXAMPLES, example

REQUESTS = sorted(p.name for p in EXAMPLES.glob("request.*.json"))
RESPONSES = {
    "response.GetVariables.json": "GetVariables",
    "response.SetVariables.json": "SetVariables",
    "response.GetInstalledCertificateIds.json": "GetInstalledCertificateIds",
    "response.CallError.json": None,
}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`ocpp-bridge ARGS` in-process (argparse included): exit status, stdout, stderr."""
    status = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    return status, out, err


def write(tmp_path: Path, message: Any, name: str = "message.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(message, indent=2))
    return str(path)


def test_the_examples_cover_every_request_and_response() -> None:
    assert len(REQUESTS) == 7
    assert sorted(RESPONSES) == sorted(p.name for p in EXAMPLES.glob("response.*.json"))


@pytest.mark.parametrize("name", REQUESTS)
def test_every_request_example_is_valid(capsys: pytest.CaptureFixture[str], name: str) -> None:
    status, out, err = run(capsys, str(EXAMPLES / name))
    assert (status, out) == (0, "")
    assert err == "checked 1 message: 1 valid, 0 invalid\n"


@pytest.mark.parametrize(("name", "action"), RESPONSES.items())
def test_every_response_example_is_valid_with_its_action(
    capsys: pytest.CaptureFixture[str], name: str, action: str | None
) -> None:
    status, out, err = run(capsys, *(["--action", action] if action else []), str(EXAMPLES / name))
    assert (status, out) == (0, "")
    assert "note" not in err


def test_a_response_checked_against_the_wrong_action_is_invalid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(EXAMPLES / "response.GetVariables.json")
    status, out, _ = run(capsys, "--action", "SetVariables", path)
    assert status == 1
    assert out.splitlines() == [
        f"{path}: $.data.payload: unexpected property 'getVariableResult'",
        f"{path}: $.data.payload: required property 'setVariableResult' is missing",
    ]


def test_a_callresult_without_action_is_valid_with_a_note_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(EXAMPLES / "response.GetVariables.json")
    status, out, err = run(capsys, path)
    assert (status, out) == (0, "")
    assert f"{path}: note: the CallResult payload was not checked" in err


def test_an_action_of_another_ocpp_version_is_an_error_at_the_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(EXAMPLES / "response.GetVariables.json")
    status, out, _ = run(capsys, "--action", "GetConfiguration", path)  # OCPP 1.6 only
    assert status == 1
    assert (
        out
        == f"{path}: $.data.ocpp_version: ocpp2.0.1 has no action GetConfiguration (named by --action)\n"
    )


def test_an_action_of_no_ocpp_version_is_a_usage_error_before_any_file_is_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = run(capsys, "--action", "Nonexistent", str(tmp_path / "missing.json"))
    assert (status, out) == (2, "")
    assert (
        err
        == "ocpp-bridge validate: --action Nonexistent: not an action of ocpp1.6, ocpp2.0.1, ocpp2.1\n"
    )


def _set(message: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    target: Any = message
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return message


@pytest.mark.parametrize(
    ("change", "value", "expected"),
    [
        ("type", "notice", "$.type: must be one of: request, response, update"),
        ("id", KeyError, "$: required property 'id' is missing"),
        ("id", "12345", "$.id: must be a valid uuid"),
        ("extra", 1, "$: unexpected property 'extra'"),
        (
            "data.ocpp_version",
            "ocpp3",
            "$.data.ocpp_version: must be one of: ocpp1.6, ocpp2.0.1, ocpp2.1",
        ),
        ("data.message_name", "Frobnicate", "$.data.message_name: is not an action of ocpp2.0.1"),
        (
            "data.payload.getVariableData.0.variable",
            KeyError,
            "$.data.payload.getVariableData[0]: required property 'variable' is missing",
        ),
        (
            "data.payload.getVariableData.0.component.name",
            "C" * 51,
            "$.data.payload.getVariableData[0].component.name: must be at most 50 characters long",
        ),
    ],
)
def test_an_invalid_message_prints_the_exact_path_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, change: str, value: Any, expected: str
) -> None:
    path = write(tmp_path, _set(example("request.GetVariables"), change, value))
    status, out, err = run(capsys, path)
    assert status == 1
    assert out == f"{path}: {expected}\n"
    assert err == "checked 1 message: 0 valid, 1 invalid\n"


def test_an_ocpp_action_the_request_schema_does_not_list_is_checked_like_the_service(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The MQTT API relaxes the message_name enum to every action of the version; so does validate."""
    reset = _set(example("request.GetVariables"), "data.message_name", "Reset")
    good = write(tmp_path, _set(reset, "data.payload", {"type": "Immediate"}), "good.json")
    bad = write(tmp_path, _set(dict(reset), "data.payload", {"type": "Sometime"}), "bad.json")
    assert run(capsys, good)[:2] == (0, "")
    assert run(capsys, bad)[1] == f"{bad}: $.data.payload.type: must be one of: Immediate, OnIdle\n"


def test_a_message_name_without_schema_names_the_schemas_that_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, _set(example("request.GetVariables"), "name", "authorization"))
    status, out, _ = run(capsys, path)
    assert status == 1
    assert out == (
        f"{path}: $.name: there is no schema for 'authorization' messages of type 'request'"
        " (there are: error.response, ocpp_message.request, ocpp_message.response)\n"
    )


def test_a_json_value_that_is_not_an_object_is_invalid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, [example("request.GetVariables")])
    assert run(capsys, path)[:2] == (1, f"{path}: $: must be of type object\n")


def test_json_lines_errors_name_their_physical_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = json.dumps(example("request.GetVariables"))
    bad = json.dumps(_set(example("request.SetVariables"), "type", "notice"))
    path = tmp_path / "messages.jsonl"
    path.write_text(f"\n{good}\n{bad}\n\n{good}\n")  # blank lines 1 and 4 still count
    status, out, err = run(capsys, str(path))
    assert status == 1
    assert out == f"{path}:3: $.type: must be one of: request, response, update\n"
    assert err == "checked 3 messages: 2 valid, 1 invalid\n"


def test_a_json_lines_line_that_is_not_json_is_reported_with_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = json.dumps(example("request.GetVariables"))
    path = tmp_path / "messages.jsonl"
    path.write_text(f'{good}\n{{"id": "x",\n{good}\n')
    status, out, _ = run(capsys, str(path))
    assert status == 1
    assert (
        out
        == f"{path}:2: $: not valid JSON: Expecting property name enclosed in double quotes at column 12\n"
    )
    path.write_text(f"{good}\n\f\n{good}\n")  # only JSON's whitespace makes a line blank
    assert (
        run(capsys, str(path))[1] == f"{path}:2: $: not valid JSON: Expecting value at column 1\n"
    )


def test_a_broken_pretty_printed_file_is_one_error_where_parsing_stopped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = json.dumps(example("request.SetVariables"), indent=2).replace('"300",', '"300"')
    path = tmp_path / "broken.json"
    path.write_text(text)
    status, out, _ = run(capsys, str(path))
    line = text.splitlines().index('          "attributeValue": "300"') + 2
    assert (status, out) == (
        1,
        f"{path}:{line}: $: not valid JSON: Expecting ',' delimiter at column 11\n",
    )


def test_an_empty_file_is_invalid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("\n  \n")
    status, out, err = run(capsys, str(path))
    assert (status, out) == (1, f"{path}: $: the file holds no message\n")
    assert err == "checked 0 messages: 0 valid, 0 invalid; files: 1 empty\n"


def test_unreadable_files_exit_2_with_a_sentence_and_the_others_are_still_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    missing, latin1 = tmp_path / "missing.json", tmp_path / "latin1.json"
    bad = write(tmp_path, _set(example("request.GetVariables"), "type", "notice"))
    status, out, err = run(capsys, str(missing), str(tmp_path), str(latin1), bad)
    assert status == 2
    assert out == f"{bad}: $.type: must be one of: request, response, update\n"
    assert err.splitlines() == [
        f"ocpp-bridge validate: {missing}: cannot read it (No such file or directory)",
        f"ocpp-bridge validate: {tmp_path}: cannot read it (Is a directory)",
        f"ocpp-bridge validate: {latin1}: not UTF-8 text",
        "checked 1 message: 0 valid, 1 invalid; files: 3 unreadable",
    ]


def test_a_secret_too_long_value_never_appears_in_the_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = "S" * 1001
    message = example("request.SetVariables")
    _set(message, "data.payload.setVariableData.0.attributeValue", secret)
    _set(message, "data.payload.setVariableData.1.variable.name", "BasicAuthPassword" + secret)
    lines = tmp_path / "secrets.jsonl"
    wrong_action = _set(example("request.GetVariables"), "data.message_name", secret)
    secret_id = _set(example("request.GetVariables"), "id", secret)
    not_json = '{"id": "' + secret + '", ' + secret
    messages = [message, wrong_action, secret_id]
    lines.write_text("".join(json.dumps(m) + "\n" for m in messages) + not_json + "\n")
    for as_json in ([], ["--json"]):
        status, out, err = run(capsys, *as_json, write(tmp_path, message), str(lines))
        assert status == 1
        assert "must be at most 1000 characters long" in out
        assert "SSSSSSSSSS" not in out + err


def test_json_prints_one_object_per_message_and_nothing_else(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = example("request.GetVariables")
    path = tmp_path / "messages.jsonl"
    path.write_text(f"{json.dumps(good)}\nnot json\n")
    empty = tmp_path / "empty.json"
    empty.write_text("")
    response = str(EXAMPLES / "response.GetVariables.json")
    status, out, _ = run(capsys, "--json", str(path), str(empty), response)
    assert status == 1
    results = [json.loads(line) for line in out.splitlines()]
    assert results == [
        {
            "file": str(path),
            "line": 1,
            "id": good["id"],
            "name": "ocpp_message",
            "type": "request",
            "valid": True,
            "errors": [],
            "notes": [],
        },
        {
            "file": str(path),
            "line": 2,
            "id": None,
            "name": None,
            "type": None,
            "valid": False,
            "errors": [
                {
                    "path": "$",
                    "keyword": "json",
                    "code": "FormatViolation",
                    "message": "not valid JSON: Expecting value at column 1",
                }
            ],
            "notes": [],
        },
        {
            "file": str(empty),
            "line": None,
            "id": None,
            "name": None,
            "type": None,
            "valid": False,
            "errors": [
                {
                    "path": "$",
                    "keyword": "empty",
                    "code": "FormatViolation",
                    "message": "the file holds no message",
                }
            ],
            "notes": [],
        },
        {
            "file": response,
            "line": None,
            "id": "2b0aa109-21a1-4f2f-bdbd-6cdf139e7bb1",
            "name": "ocpp_message",
            "type": "response",
            "valid": True,
            "errors": [],
            "notes": ["the CallResult payload was not checked: name its action with --action"],
        },
    ]


def test_json_reports_the_rpc_code_of_each_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = _set(
        example("request.GetVariables"), "data.payload.getVariableData.0.variable", KeyError
    )
    (result,) = [
        json.loads(line) for line in run(capsys, "--json", write(tmp_path, message))[1].splitlines()
    ]
    assert result["errors"] == [
        {
            "path": "$.data.payload.getVariableData[0]",
            "keyword": "required",
            "code": "OccurrenceConstraintViolation",
            "message": "required property 'variable' is missing",
        }
    ]


def test_property_names_cannot_break_the_one_error_a_line_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = example("request.GetVariables")
    message["evil\nline"] = 1
    message["\ud800"] = 2  # a lone surrogate: the validator itself cannot take it
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(message))  # ensure_ascii: the surrogate travels as \ud800
    status, out, _ = run(capsys, str(path))
    assert status == 1
    assert out == f"{path}: $: contains a lone surrogate (U+D800 to U+DFFF): not Unicode text\n"
    del message["\ud800"]
    path.write_text(json.dumps(message))
    assert run(capsys, str(path))[1] == f"{path}: $: unexpected property 'evil\\nline'\n"


def test_deeply_nested_messages_are_errors_not_crashes() -> None:
    message = example("request.GetVariables")
    deep = json.dumps(message).replace('"TxCtrlr"', "[" * 990 + "]" * 990)
    (result,) = validate.validate_text(deep, "deep.json")
    assert result.errors
    (too_deep,) = validate.validate_text("[" * 5000 + "]" * 5000, "deeper.json")
    assert too_deep.errors[0].message == "not valid JSON: nested too deeply"


# --- the real console script: stdin and --json as integrators pipe them


def test_dash_reads_stdin_through_the_console_script() -> None:
    good = json.dumps(example("request.GetVariables"))
    bad = json.dumps(_set(example("request.GetVariables"), "id", KeyError))
    done = subprocess.run(
        ["ocpp-bridge", "validate", "-"], input=f"{good}\n{bad}\n", capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stdout == "<stdin>:2: $: required property 'id' is missing\n"
    assert done.stderr == "checked 2 messages: 1 valid, 1 invalid\n"


def test_json_on_stdin_through_python_m_bridge() -> None:
    response = (EXAMPLES / "response.GetVariables.json").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "validate", "--json", "--action", "GetVariables", "-"],
        input=response,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0
    (line,) = done.stdout.splitlines()
    result = json.loads(line)
    assert (result["file"], result["line"], result["valid"]) == ("<stdin>", None, True)


# --- the file splitter and the validator never raise, whatever the text

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
OBJECTS = st.dictionaries(st.text(), JSON, max_size=4)
BLANK = st.sampled_from(["", " ", "\t", "\r", "  \t "])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.lists(BLANK, max_size=2), OBJECTS), max_size=6), st.booleans())
def test_json_lines_split_back_into_the_same_objects_on_their_lines(
    entries: list[tuple[list[str], dict[str, Any]]], crlf: bool
) -> None:
    lines, expected = [], []
    for blanks, obj in entries:
        lines.extend(blanks)
        lines.append(json.dumps(obj) + ("\r" if crlf else ""))
        expected.append((len(lines), obj))
    chunks = validate.split("\n".join(lines))
    if len(expected) == 1:  # one object alone is a whole-file JSON value: no line number
        expected = [(None, expected[0][1])]
    assert [(c.line, c.value) for c in chunks] == expected
    assert all(c.error is None for c in chunks)


@settings(max_examples=100, deadline=None)
@given(OBJECTS, st.integers(0, 4))
def test_a_pretty_printed_object_is_one_message(obj: dict[str, Any], indent: int) -> None:
    (chunk,) = validate.split(json.dumps(obj, indent=indent, ensure_ascii=False))
    assert (chunk.line, chunk.value, chunk.error) == (None, obj, None)


ENVELOPES = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str) | st.text(max_size=5),
        "name": st.sampled_from(["ocpp_message", "authorization", "x"]),
        "type": st.sampled_from(["request", "response", "update"]),
        "data": st.fixed_dictionaries(
            {
                "ocpp_version": st.sampled_from(["ocpp1.6", "ocpp2.0.1", "ocpp2.1", "x"]),
                "message_name": st.sampled_from(["GetVariables", "Reset", "Nope", ""]) | JSON,
                "message_type": st.sampled_from(["CallResult", "CallError"]),
                "payload": OBJECTS | JSON,
            }
        ),
    }
)
TEXTS = (
    st.text()
    | JSON.map(json.dumps)
    | st.lists(ENVELOPES.map(json.dumps) | st.text(max_size=20), max_size=4).map("\n".join)
)


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.sampled_from([None, "GetVariables", "Heartbeat"]))
def test_any_text_gives_results_not_exceptions(text: str, action: str | None) -> None:
    results = validate.validate_text(text, "any.txt", action)
    assert results
    newlines = text.count("\n") + 1
    for result in results:
        assert result.line is None or 1 <= result.line <= newlines
        assert all(e.path.startswith("$") and e.message and e.code for e in result.errors)
        json.dumps(result.to_json())


def test_the_bridges_error_answers_to_unknown_names_are_valid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An answer under an unknown name (`error.response`) validates; a broken one does not."""
    answer = {
        "id": "2b0aa109-21a1-4f2f-bdbd-6cdf139e7bb1",
        "name": "frobnicate",
        "type": "response",
        "data": {
            "message_type": "CallError",
            "ocpp_version": "ocpp2.0.1",
            "error_code": "NotSupported",
            "error_description": "Unknown message name 'frobnicate'",
            "error_details": {},
        },
    }
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(answer))
    assert run(capsys, str(path))[0] == 0
    answer["data"]["error_code"] = "Oops"
    path.write_text(json.dumps(answer))
    status, out, _ = run(capsys, str(path))
    assert status == 1
    assert "$.data.error_code" in out
