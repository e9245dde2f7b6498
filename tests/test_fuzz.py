"""The fuzz session's parts: raw exchanges, the judges, the case strategies, the reproducers.

The session itself (``nox -s fuzz``) runs for minutes; these check in seconds
that its instruments read what they should: a fuzzer that misreads answers
proves nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz.bodies import base_body
from bench.fuzz.cases import Context, RawCase, area_of, compact, http
from bench.fuzz.driver import FAMILIES, compare
from bench.fuzz.exchange import Answer, exchange
from bench.fuzz.oracles import Judge, summarise
from bench.fuzz.report import Tally
from bench.fuzz.tasks import make_tasks, sample_png
from contracts.bodies import create_headers
from contracts.spec import SpecSet
from tests.conftest import LiveServer, Mock


def _answer(status: int, body: Any, content_type: str = "application/json") -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, (("content-type", content_type),), raw)


def _address(server: LiveServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


# -- exchange -----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_pipelined_answers_are_read_one_by_one(serve: Callable[..., LiveServer]) -> None:
    server = serve()
    health = http("GET", "/_paddock/health", host="x")
    head = http("HEAD", "/_paddock/health", host="x")
    outcome = exchange(_address(server), health + head + health, ["GET", "HEAD", "GET"])
    assert outcome.ending == "complete"
    # Starlette answers HEAD for GET routes: a Content-Length and no body to read.
    assert [a.status for a in outcome.answers] == [200, 200, 200]
    assert outcome.answers[1].body == b""
    assert json.loads(outcome.answers[2].body)["ok"] is True


@pytest.mark.e2e
def test_an_unfinished_request_ends_at_the_close_not_the_timeout(
    serve: Callable[..., LiveServer],
) -> None:
    server = serve()
    data = http("POST", "/_paddock/media", [("Content-Length", "100")], host="x") + b"abc"
    started = time.monotonic()
    outcome = exchange(_address(server), data, ["POST"], required=0, half_close=True, timeout=20)
    assert outcome.answers == ()
    assert outcome.ending == "closed"
    assert time.monotonic() - started < 15


@pytest.mark.e2e
def test_a_broken_request_line_gets_the_parsers_answer(serve: Callable[..., LiveServer]) -> None:
    server = serve()
    outcome = exchange(_address(server), b"G\x00ET / HTTP/1.1\r\nHost: x\r\n\r\n", ["GET"])
    assert [a.status for a in outcome.answers] == [400]


# -- judges -------------------------------------------------------------------------------------


def test_an_error_in_the_providers_envelope_passes(specs: SpecSet) -> None:
    judge = Judge(specs)
    dashscope = {"request_id": "r", "code": "InvalidParameter", "message": "bad"}
    assert list(judge.answer("provider", "dashscope", "POST", _answer(400, dashscope))) == []
    anyfast_auth = {
        "error": {"message": "m", "type": "authentication_error", "code": "invalid_api_key"}
    }
    assert list(judge.answer("provider", "anyfast", "POST", _answer(401, anyfast_auth))) == []


def test_another_providers_envelope_or_plain_text_is_flagged(specs: SpecSet) -> None:
    judge = Judge(specs)
    anyfast_shape = {"code": "invalid_request", "message": "bad", "data": None}
    found = list(judge.answer("provider", "dashscope", "POST", _answer(400, anyfast_shape)))
    assert [oracle for oracle, _ in found] == ["not in the envelope"]
    plain = _answer(400, b"Invalid HTTP request received.", "text/plain")
    assert [o for o, _ in judge.answer("provider", "apiyi", "GET", plain)] == [
        "not in the envelope"
    ]
    # The auth envelope with a relay code is two envelopes mixed: flagged too.
    mixed = {"error": {"message": "m", "type": "t", "code": "invalid_request"}}
    assert [o for o, _ in judge.answer("provider", "anyfast", "GET", _answer(400, mixed))] == [
        "not in the envelope"
    ]


def test_only_a_5xx_the_spec_gives_to_bad_input_is_documented(specs: SpecSet) -> None:
    judge = Judge(specs)
    missing_image = {"error": {"message": "m", "type": "task_error", "code": "upstream_error"}}
    assert list(judge.answer("provider", "apiyi", "POST", _answer(500, missing_image))) == []
    mock_bug = {"request_id": "r", "code": "InternalError", "message": "m"}
    found = list(judge.answer("provider", "dashscope", "POST", _answer(500, mock_bug)))
    assert [oracle for oracle, _ in found] == ["undocumented 5xx"]
    admin = list(judge.answer("admin", None, "POST", _answer(500, b"Internal Server Error")))
    assert {oracle for oracle, _ in admin} == {"undocumented 5xx", "not in the envelope"}


def test_reserved_routes_answer_in_their_own_shapes(specs: SpecSet) -> None:
    judge = Judge(specs)
    xml = b"<?xml version='1.0'?>\n<Error><Code>NoSuchKey</Code><Message>m</Message></Error>"
    assert list(judge.answer("storage", None, "GET", _answer(404, xml, "application/xml"))) == []
    assert list(judge.answer("admin", None, "GET", _answer(404, {"error": "no route"}))) == []
    assert list(judge.answer("admin", None, "HEAD", _answer(404, b""))) == []
    assert [o for o, _ in judge.answer("admin", None, "GET", _answer(400, {"detail": "x"}))] == [
        "not in the envelope"
    ]


def test_a_huge_error_answer_is_flagged_without_reading_it(specs: SpecSet) -> None:
    answer = Answer(400, (), b'{"code": "x", "message": "aaaa', size=5_000_000)
    found = list(Judge(specs).answer("provider", "anyfast", "POST", answer))
    assert [oracle for oracle, _ in found] == ["oversized error answer"]


def test_each_traceback_in_the_log_is_named_once() -> None:
    log = (
        "INFO:     Started server process [1]\n"
        "ERROR:    Exception in ASGI application\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "OverflowError: int too large to convert to float\n"
        "POST /x failed\n"
        "Traceback (most recent call last):\n"
        '  File "y.py", line 2, in g\n'
        "RecursionError: maximum recursion depth exceeded\n"
        "WARNING:  Invalid HTTP request received.\n"
    )
    assert summarise(log) == [
        "OverflowError: int too large to convert to float",
        "RecursionError: maximum recursion depth exceeded",
    ]
    assert summarise("INFO: fine\nWARNING: Invalid HTTP request received.\n") == []


def test_paths_are_judged_by_where_the_server_routes_them() -> None:
    providers = ["dashscope", "apiyi"]
    assert area_of("/dashscope/api/v1/tasks/x?a=1", providers) == ("provider", "dashscope")
    assert area_of("/%61piyi/v1/tasks/x", providers) == ("provider", "apiyi")
    assert area_of("http://h:1/_paddock/health", providers) == ("admin", None)
    assert area_of("/_storage/oss", providers) == ("storage", None)
    assert area_of("/a/../dashscope/x", providers) == ("other", None)
    assert area_of("*", providers) == ("other", None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"plain bytes",
        b'{"model": ' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}",
        b'{"a":' * 700 + b"1" + b"}" * 700,
        bytes(range(256)) * 3,
    ],
)
def test_a_reproducer_evaluates_to_the_bytes_sent(data: bytes) -> None:
    shown = compact(data, limit=100_000)
    assert eval(shown) == data
    assert len(shown) < 3000


# -- strategies ---------------------------------------------------------------------------------


def _hosted_image(mock: Mock) -> str:
    response = mock.client.post("/_paddock/media", content=sample_png())
    url: str = response.json()["url"]
    return url


def test_every_base_body_is_accepted(mock: Mock, specs: SpecSet) -> None:
    """Each hostile case changes one field of these: they must be requests the mock takes."""
    image = _hosted_image(mock)
    for spec in specs:
        for model in spec.models:
            response = mock.client.post(
                f"/{spec.provider}" + spec.operations["create"].path,
                json=base_body(spec, model, image),
                headers=create_headers(spec, "sk-test"),
            )
            assert response.is_success, (spec.provider, model, response.text)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_generates_requests(family: str, specs: SpecSet) -> None:
    ctx = Context(
        specs,
        "127.0.0.1:1",
        "sk-test",
        "http://127.0.0.1:1/_paddock/media/a.png",
        {p: ("t1",) for p in specs.names()},
        ("/_storage/results/dashscope/t1.mp4?Expires=1&Signature=x",),
        {"policy": "p", "Signature": "s", "key": "dir"},
    )
    seen: list[RawCase] = []

    @settings(
        max_examples=15, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(FAMILIES[family](ctx))
    def draw(case: RawCase) -> None:
        seen.append(case)

    draw()
    assert seen
    for case in seen:
        assert case.data and case.sent and case.family == family
        assert 0 <= case.owed <= len(case.sent)
        assert b"/_paddock/reset" not in case.data or not case.data.startswith(b"POST ")


def test_a_weighted_choice_keeps_the_rare_branch_rare() -> None:
    from bench.fuzz.cases import weighted

    picks: list[int] = []

    @settings(max_examples=300, database=None, suppress_health_check=list(HealthCheck))
    @given(weighted((99, st.just(0)), (1, st.just(1))))
    def draw(value: int) -> None:
        picks.append(value)

    draw()
    assert sum(picks) < len(picks) / 10


@pytest.mark.e2e
def test_pre_fuzz_tasks_answer_alike_until_something_moves_them(
    serve: Callable[..., LiveServer], specs: SpecSet
) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        image = client.post("/_paddock/media", content=sample_png()).json()["url"]
        tasks = make_tasks(client, specs, image)
        assert tasks.result_links  # every SUCCEEDED task's video, fetched once
        before = tasks.snapshot(client, specs)
        tally = Tally()
        compare(tally, before, tasks.snapshot(client, specs))
        assert tally.violations == 0  # fresh request ids and reissued links are blanked
        client.post("/_paddock/clock/advance", json={"seconds": 86400})
        compare(tally, before, tasks.snapshot(client, specs))
    changed = {f.kind for f in tally.failures.values() if f.oracle == "task changed"}
    assert len(changed) == len(before)  # a day on, every task has expired
