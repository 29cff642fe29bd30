"""10,000 generated bad messages through the real broker to `ocpp-bridge run`.

Each message is answered exactly once (valid against schemas/) or dropped, as README "What bad
input gets" says; the process never dies, its RSS stays flat after a warm-up of 1,000 messages,
and the store is the same before and after. The corpus and its oracle are in `fuzz_corpus.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge import schemas
from tests.conftest import Broker, example, free_port, make_station, ocpp_call, write_config
from tests.robustness import fuzz_corpus
from tests.robustness.robust_support import (
    BridgeProcess,
    Oem,
    integrity_check,
    oem_client,
    probe,
    store_snapshot,
    tracebacks,
    until_answering,
)

TOTAL = 10_000
WARM_UP = 1_000
CHUNK = 250  # then wait for a probe: the bridge holds at most 1,000 queued messages (mqtt.py)
RSS_GROWTH_LIMIT_KB = 5 * 1024
PASSWORD = "Fuzz-password-0123456789"


def check_answer(case: fuzz_corpus.Case, answer: dict[str, Any]) -> str | None:
    """What is wrong with the bridge's answer to `case` (None: nothing)."""
    assert case.body is not None
    name = case.body.get("name")
    schema = "ocpp_message.response" if name == "ocpp_message" else "error.response"
    errors = schemas.envelope_validator(schema)(answer)
    if errors:
        return f"answer is not a valid {schema}: {errors[0].sentence()}"
    sensible = isinstance(name, str) and 0 < len(name) <= 64
    if name != "ocpp_message" and sensible and answer["name"] != name:
        return f"answered under the name {answer['name']!r}"
    data = answer["data"]
    if data["message_type"] == "CallError":
        if data["error_code"] == "InternalError":
            return "InternalError: README says that is a bug in the bridge"
    else:
        if name != "ocpp_message":
            return "a CallResult to a message that is not an ocpp_message"
        request = case.body["data"]
        if data["ocpp_version"] != request["ocpp_version"]:
            return f"CallResult in {data['ocpp_version']} to a {request['ocpp_version']} request"
        validate = schemas.ocpp_validator(
            request["ocpp_version"], request["message_name"], response=True
        )
        errors = validate(data["payload"])
        if errors:
            return f"CallResult payload fails its OCPP schema: {errors[0].sentence()}"
    if case.check is not None:
        return case.check(data, case.body["data"])
    return None


def shown(raw: bytes, limit: int = 300) -> str:
    text = repr(raw[:limit])
    return text + (f"… ({len(raw)} bytes)" if len(raw) > limit else "")


async def answered_all(oem: Oem, cases: list[fuzz_corpus.Case], timeout: float) -> list[str]:
    return await oem.wait_for([c.answer_id for c in cases if c.must_answer], timeout)


@pytest.mark.timeout(170)
async def test_ten_thousand_bad_messages_are_answered_once_or_dropped(
    tmp_path: Path, broker: Broker
) -> None:
    started = time.monotonic()
    corpus = fuzz_corpus.build(TOTAL)
    cases = corpus.cases
    built = time.monotonic() - started
    # Security profile 1 (a dead CSMS port: no CSMS, nothing stored from it), so that a
    # SetNetworkProfile of profile 0 is a downgrade that must be refused.
    config = write_config(
        tmp_path / "bridge.toml",
        broker,
        csms=f'url = "ws://127.0.0.1:{free_port()}/ocpp"\nsecurity_profile = 1\n'
        f'password = "{PASSWORD}"',
    )
    store = tmp_path / "bridge.db"
    bridge = BridgeProcess(config, tmp_path / "bridge.log").start()
    problems: list[str] = []
    try:
        async with oem_client(broker.host, broker.port) as oem:
            await until_answering(oem)
            # Something in every table, so that "unchanged" means something.
            for name, status in (
                ("request.InstallCertificate", "Accepted"),
                ("request.SetNetworkProfile", "Accepted"),
            ):
                answer = await oem.request(example(name))
                assert answer["data"]["payload"]["status"] == status, answer
            answer = await oem.request(example("request.SetVariables"))
            results = answer["data"]["payload"]["setVariableResult"]
            assert {r["attributeStatus"] for r in results} == {"Accepted"}, answer
            before = store_snapshot(store)
            assert all(before[t] for t in ("variable_attribute", "certificate", "network_profile"))

            rss_warm = 0
            earlier, barriers = set(oem.answers), set()
            sending = time.monotonic()
            for start in range(0, len(cases), CHUNK):
                chunk = cases[start : start + CHUNK]
                barrier = probe()
                barriers.add(barrier["id"])
                await oem.publish_all([c.raw for c in chunk] + [json.dumps(barrier)])
                missing = await oem.wait_for([barrier["id"]], 30)
                if not bridge.alive:
                    pytest.fail(
                        f"the bridge died (exit {bridge.process and bridge.process.returncode}) "
                        f"within messages {start}..{start + CHUNK}:\n{bridge.log_tail()}"
                    )
                assert not missing, f"the bridge stopped answering at message {start}"
                if start + CHUNK == WARM_UP:
                    await answered_all(oem, cases[:WARM_UP], 30)  # losses are counted below
                    await asyncio.sleep(0.5)
                    rss_warm = bridge.rss_kb()
            unanswered = await answered_all(oem, cases, 30)
            await asyncio.sleep(1.0)  # late duplicates, answers to dropped messages
            sent_for = time.monotonic() - sending
            assert bridge.alive, bridge.log_tail()
            rss_end = bridge.rss_kb()
            after = store_snapshot(store)

            expected = {c.answer_id: c for c in cases if c.answer_id}
            for message_id in unanswered:
                case = expected[message_id]
                problems.append(f"no answer ({case.origin}): {shown(case.raw)}")
            for message_id, case in expected.items():
                answers = oem.answers.get(message_id, [])
                if not answers and not case.must_answer:
                    continue  # a number beyond a double: dropping is right too
                if len(answers) > 1:
                    problems.append(f"{len(answers)} answers ({case.origin}): {shown(case.raw)}")
                if answers:
                    wrong = check_answer(case, answers[0])
                    if wrong:
                        problems.append(
                            f"{wrong} ({case.origin}): {shown(case.raw)}\n"
                            f"    answer: {json.dumps(answers[0])[:400]}"
                        )
            strangers = set(oem.answers) - set(expected) - barriers - earlier
            problems += [
                f"an answer to a message that must be dropped: {oem.answers[i]}" for i in strangers
            ]
            problems += [f"an answer that is not JSON: {u[:200]!r}" for u in oem.undecodable]
            if rss_end - rss_warm >= RSS_GROWTH_LIMIT_KB:
                problems.append(
                    f"RSS grew {rss_end - rss_warm} kB after the warm-up "
                    f"({rss_warm} → {rss_end} kB)"
                )
            if after != before:
                problems.append(f"the store changed: {describe_change(before, after)}")
    finally:
        code = bridge.stop()
    assert code == 0, bridge.log_tail()
    final = store_snapshot(store)
    if final != before:
        problems.append(f"the store changed (after shutdown): {describe_change(before, final)}")
    assert integrity_check(store) == "ok"
    problems += [f"the log has a traceback:\n{t[:2000]}" for t in tracebacks(bridge.log_text())]

    answered = sum(1 for c in cases if c.must_answer)
    codes = Counter(
        oem.answers[c.answer_id][0]["data"].get("error_code", "CallResult")
        for c in cases
        if c.answer_id and oem.answers.get(c.answer_id)
    )
    summary = (
        f"{len(cases)} messages ({answered} to answer, {len(cases) - answered} to drop) "
        f"built in {built:.1f} s, sent and answered in {sent_for:.1f} s; RSS {rss_warm} kB after "
        f"{WARM_UP}, {rss_end} kB at the end; answers: {dict(codes)}; origins: {corpus.counts}"
    )
    print(summary)
    assert not problems, f"{len(problems)} problems; {summary}\n" + "\n".join(
        p for p in problems[:40]
    )


def describe_change(
    before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]
) -> str:
    out = []
    for table in before:
        gone = [r for r in before[table] if r not in after[table]]
        new = [r for r in after[table] if r not in before[table]]
        if gone or new:
            out.append(f"{table}: removed {gone[:5]}, added {new[:5]}")
    return "; ".join(out)


@pytest.mark.parametrize("value", ["1٢", "1３", "4०"])
async def test_integers_with_non_ascii_digits_are_refused(tmp_path: Path, value: str) -> None:
    """What the fuzz run found: `\\d` in device_model._INTEGER matches any Unicode digit, and
    int() reads them, so "1٢" (1 and ARABIC-INDIC DIGIT TWO) is stored as an integer value that no
    CSMS can read. OCPP's integer is ASCII digits (README: "Integers follow OCPP's primitive type
    strictly")."""
    station = make_station(tmp_path)
    result = await ocpp_call(
        station,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "OfflineThreshold"},
                    "attributeValue": value,
                }
            ]
        },
    )
    assert result["setVariableResult"][0]["attributeStatus"] == "Rejected"
    assert station.device_model.value("OCPPCommCtrlr.OfflineThreshold") == "60"
