"""`ocpp-bridge validate`: what an integrator sees for good and bad message files."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import cli, schemas, validate
from bridge.oem import envelope
from bridge.station import actions
from bridge.station.dispatcher import Dispatcher
from tests.conftest import EXAMPLES, example, ocpp_message

# The charging-session messages of the session API (README "The MQTT API"), in its order.
SESSION_MESSAGES = (
    "device_model",
    "cs_status_and_limits",
    "cp_status",
    "authorization",
    "process_authorized_token",
    "cs_contactor_status",
    "transaction_status",
    "meter_values",
    "stop_charging",
    "reset",
    "change_availability",
    "cs_connector",
    "boot_status",
    "websocket_status",
    "service_status",
    "notify_event",
    "set_ocpp_network_connection",
)
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
    unlisted = _set(example("request.GetVariables"), "data.message_name", "GetCompositeSchedule")
    payload = {"duration": 60, "evseId": 1}
    good = write(tmp_path, _set(unlisted, "data.payload", payload), "good.json")
    wrong = {**payload, "chargingRateUnit": "Sometime"}
    bad = write(tmp_path, _set(dict(unlisted), "data.payload", wrong), "bad.json")
    assert run(capsys, good)[:2] == (0, "")
    assert run(capsys, bad)[1] == f"{bad}: $.data.payload.chargingRateUnit: must be one of: W, A\n"


def test_a_message_name_without_schema_names_the_messages_that_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, _set(example("request.GetVariables"), "name", "frobnicate"))
    status, out, _ = run(capsys, path)
    assert status == 1
    names = sorted([*SESSION_MESSAGES, "ocpp_message"])
    assert out == (
        f"{path}: $.name: there is no schema for 'frobnicate' messages"
        f" (there are: {', '.join(names)})\n"
    )


def test_a_known_name_of_a_type_without_schema_names_its_types(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = {"id": str(uuid.uuid4()), "name": "cp_status", "type": "request", "data": {}}
    path = write(tmp_path, message)
    status, out, _ = run(capsys, path)
    assert status == 1
    assert out == (
        f"{path}: $.name: there is no schema for 'cp_status' messages of type 'request'"
        " (cp_status has: update)\n"
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
            "refused": False,
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
            "refused": False,
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
            "refused": False,
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
            "refused": False,
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


# --- every error of a message, each once


def test_every_stage_reports_its_errors_and_a_missing_id_only_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No id and an unknown OCPP version: both are named, the id once (envelope and schema)."""
    message = _set(example("request.GetVariables"), "id", KeyError)
    path = write(tmp_path, _set(message, "data.ocpp_version", "ocpp3.0"))
    status, out, err = run(capsys, path)
    assert status == 1
    assert out.splitlines() == [
        f"{path}: $: required property 'id' is missing",
        f"{path}: $.data.ocpp_version: must be one of: ocpp1.6, ocpp2.0.1, ocpp2.1",
    ]
    assert err == "checked 1 message: 0 valid, 1 invalid\n"


def test_envelope_schema_and_payload_errors_are_all_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = _set(example("request.GetVariables"), "id", "12345")
    _set(message, "extra", True)
    _set(message, "data.payload.getVariableData.0.component.name", "C" * 51)
    path = write(tmp_path, message)
    status, out, _ = run(capsys, "--json", path)
    assert status == 1
    (result,) = [json.loads(line) for line in out.splitlines()]
    assert [(e["path"], e["keyword"]) for e in result["errors"]] == [
        ("$.id", "format"),
        ("$", "additionalProperties"),
        ("$.data.payload.getVariableData[0].component.name", "maxLength"),
    ]


def test_a_payload_is_checked_even_when_the_envelope_is_wrong(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = _set(example("request.GetVariables"), "id", KeyError)
    path = write(tmp_path, _set(message, "data.payload.getVariableData.0.variable", KeyError))
    assert run(capsys, path)[1].splitlines() == [
        f"{path}: $: required property 'id' is missing",
        f"{path}: $.data.payload.getVariableData[0]: required property 'variable' is missing",
    ]


# --- session messages


def test_session_messages_are_checked_against_their_own_schema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    update = {
        "id": str(uuid.uuid4()),
        "name": "cp_status",
        "type": "update",
        "data": {"evse_id": "1", "connector_id": 1, "state": "B2"},
    }
    assert run(capsys, write(tmp_path, update))[:2] == (0, "")
    bad = write(tmp_path, _set(update, "data.evse_id", 1), "bad.json")
    assert run(capsys, bad)[:2] == (1, f"{bad}: $.data.evse_id: must be of type string\n")


def test_the_bridges_error_answer_under_a_session_name_is_valid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The bridge answers a request it cannot take under the request's name: that validates."""
    answer = {
        "id": str(uuid.uuid4()),
        "name": "authorization",
        "type": "response",
        "data": {
            "message_type": "CallError",
            "ocpp_version": "ocpp2.0.1",
            "error_code": "FormatViolation",
            "error_description": "authorization: $.data: unexpected property 'pin'",
            "error_details": {},
        },
    }
    assert run(capsys, write(tmp_path, answer))[:2] == (0, "")
    _set(answer, "data", {"status": "accepted"})
    assert run(capsys, write(tmp_path, answer))[:2] == (0, "")


# --- valid, but the service refuses it: notes, and --strict


def _refused(
    capsys: pytest.CaptureFixture[str], path: str, *options: str
) -> tuple[int, str, dict[str, Any]]:
    status, out, err = run(capsys, *options, path)
    assert out == ""
    (result,) = [json.loads(line) for line in run(capsys, "--json", *options, path)[1].splitlines()]
    return status, err, result


@pytest.mark.parametrize(
    ("action", "payload", "version", "says"),
    [
        (
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "M1", "vendorName": "V"}},
            "ocpp2.0.1",
            "BootNotification is a message the station makes from its own state (the session"
            " messages drive it): the bridge answers it NotSupported instead of sending it to the"
            " CSMS",
        ),
        (
            "Heartbeat",
            {},
            "ocpp2.0.1",
            "Heartbeat is a message the station makes from its own state",
        ),
        (
            "Reset",
            {"type": "Immediate"},
            "ocpp2.0.1",
            "the station does not implement Reset: the bridge answers it NotSupported unless"
            " [oem] delegate names it",
        ),
        (
            "Heartbeat",
            {},
            "ocpp1.6",
            "the station does not run ocpp1.6 (only ocpp2.0.1): the bridge answers Heartbeat"
            " NotSupported",
        ),
        (
            "GetVariables",
            example("request.GetVariables")["data"]["payload"],
            "ocpp2.1",
            "the station does not run ocpp2.1",
        ),
    ],
)
def test_a_valid_message_the_service_refuses_gets_a_note_and_fails_strict(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    action: str,
    payload: dict[str, Any],
    version: str,
    says: str,
) -> None:
    path = write(tmp_path, ocpp_message(action, payload, version))
    status, err, result = _refused(capsys, path)
    assert status == 0
    assert err.splitlines()[0].startswith(f"{path}: note: {says}")
    assert err.splitlines()[1] == "checked 1 message: 1 valid, 0 invalid (1 refused by the service)"
    assert (result["valid"], result["refused"]) == (True, True)
    assert result["notes"][0].startswith(says)
    status, err, result = _refused(capsys, path, "--strict")
    assert status == 1
    assert err.splitlines()[1] == "checked 1 message: 0 valid, 1 invalid (1 refused by the service)"
    assert (result["valid"], result["refused"]) == (True, True)


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("GetVariables", example("request.GetVariables")["data"]["payload"]),
        ("DataTransfer", {"vendorId": "com.example"}),  # forwarded to the CSMS
        (
            "SecurityEventNotification",
            {"type": "TamperDetectionActivated", "timestamp": "2026-01-01T00:00:00Z"},
        ),
    ],
)
def test_an_action_the_station_executes_or_forwards_has_no_note(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, action: str, payload: dict[str, Any]
) -> None:
    path = write(tmp_path, ocpp_message(action, payload))
    assert run(capsys, "--strict", path) == (0, "", "checked 1 message: 1 valid, 0 invalid\n")


def test_an_invalid_message_gets_errors_not_refusal_notes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, ocpp_message("Reset", {"type": "Sometime"}))
    status, out, err = run(capsys, path)
    assert (status, out) == (1, f"{path}: $.data.payload.type: must be one of: Immediate, OnIdle\n")
    assert "note" not in err


@pytest.mark.parametrize("action", sorted(schemas.ocpp_actions("ocpp2.0.1")))
def test_the_refusal_notes_follow_the_station_action_lists(action: str) -> None:
    why = validate.refusal("ocpp2.0.1", action)
    if action in actions.OWNED["ocpp2.0.1"]:
        assert why is not None
        assert "NotSupported" in why
    elif action in actions.implemented("ocpp2.0.1") | actions.forwarded("ocpp2.0.1"):
        assert why is None
    else:
        assert why is not None
        assert Dispatcher.unhandled("ocpp2.0.1", action).code in why  # what the service answers
        assert "[oem] delegate" in why


def _sized(size: int) -> str:
    """A valid DataTransfer request whose UTF-8 text is exactly `size` bytes (padding of é: two
    bytes a character, so counting characters instead of bytes gets it wrong)."""
    message = ocpp_message("DataTransfer", {"vendorId": "com.example", "data": ""})
    need = size - len(json.dumps(message, ensure_ascii=False).encode())
    message["data"]["payload"]["data"] = "é" * (need // 2) + "a" * (need % 2)
    text = json.dumps(message, ensure_ascii=False)
    assert len(text.encode()) == size
    return text


def test_a_message_over_256_kib_gets_a_note_that_the_bridge_drops_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    limit = envelope.MAX_MESSAGE_BYTES
    fits, too_large = tmp_path / "fits.json", tmp_path / "large.json"
    fits.write_text(_sized(limit), encoding="utf-8")
    too_large.write_text(_sized(limit + 1), encoding="utf-8")
    assert run(capsys, "--strict", str(fits))[0] == 0
    status, err, result = _refused(capsys, str(too_large))
    assert status == 0
    note = (
        f"the message is {limit + 1} bytes, more than the {limit} (256 KiB) the bridge reads:"
        " it drops it without an answer"
    )
    assert err.splitlines()[0] == f"{too_large}: note: {note}"
    assert (result["valid"], result["refused"], result["notes"]) == (True, True, [note])
    assert run(capsys, "--strict", str(too_large))[0] == 1


def test_json_lines_are_measured_line_by_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "messages.jsonl"
    small = json.dumps(example("request.GetVariables"))
    path.write_text(f"{small}\n{_sized(envelope.MAX_MESSAGE_BYTES + 1)}\r\n{small}\n")
    status, out, err = run(capsys, "--strict", str(path))
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        f"{path}:2: note: the message is {envelope.MAX_MESSAGE_BYTES + 1} bytes, more than the"
        f" {envelope.MAX_MESSAGE_BYTES} (256 KiB) the bridge reads: it drops it without an answer",
        "checked 3 messages: 2 valid, 1 invalid (1 refused by the service)",
    ]
