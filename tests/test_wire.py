"""One declaration, both directions: parsing what a template renders gives the view back."""

from __future__ import annotations

import pytest

from contracts.spec import SpecSet
from contracts.wire import MISSING, TemplateError, WireMismatch, compile_template

VOCAB = {
    "status": {
        "PENDING": ("QUEUED", "NOT_START"),
        "RUNNING": ("IN_PROGRESS",),
        "SUCCEEDED": ("SUCCESS",),
        "FAILED": ("FAILURE",),
        "CANCELED": ("CANCELED",),
        "UNKNOWN": ("UNKNOWN",),
    }
}


def test_render_keeps_types_and_drops_missing_values() -> None:
    template = compile_template(
        {
            "id": "{task.id}",
            "n": "{usage.sr}",
            "s": "{usage.sr|str}",
            "url": "{result.url}",
            "null": None,
        },
        VOCAB,
    )
    assert template.render({"task.id": "t1", "usage.sr": 720}) == {
        "id": "t1",
        "n": 720,
        "s": "720",
        "null": None,
    }


def test_interpolation_parses_back() -> None:
    template = compile_template({"fail_reason": "[{error.code}] {error.message}"}, VOCAB)
    rendered = template.render({"error.code": "InvalidParameter", "error.message": "bad [thing]"})
    assert rendered == {"fail_reason": "[InvalidParameter] bad [thing]"}
    assert template.parse(rendered) == {
        "error.code": "InvalidParameter",
        "error.message": "bad [thing]",
    }


def test_vocabulary_maps_many_words_to_one_state() -> None:
    template = compile_template(
        {"status": "{status}", "p": "{progress|percent}", "t": "{times.submitted|utc8}"}, VOCAB
    )
    assert template.render({"state": "PENDING", "progress": 50, "times.submitted": 0.0}) == {
        "status": "QUEUED",
        "p": "50%",
        "t": "1970-01-01 08:00:00.000",
    }
    assert template.parse({"status": "NOT_START", "p": "50%", "t": "1970-01-01 08:00:00.000"}) == {
        "state": "PENDING",
        "progress": 50,
        "times.submitted": 0.0,
    }


def test_parse_names_the_path_that_differs() -> None:
    template = compile_template({"data": {"status": "{status}", "object": "video"}}, VOCAB)
    with pytest.raises(WireMismatch) as caught:
        template.parse({"data": {"status": "DONE", "object": "video"}})
    assert caught.value.path == "data.status"
    assert "'DONE' is not in the 'status' vocabulary" in str(caught.value)
    with pytest.raises(WireMismatch, match=r"data\.object: expected 'video'"):
        template.parse({"data": {"status": "SUCCESS", "object": "clip"}})


def test_unknown_filter_and_vocabulary_fail_at_compile_time() -> None:
    with pytest.raises(TemplateError, match="unknown filter 'fraction'"):
        compile_template("{progress|fraction}", VOCAB)
    with pytest.raises(TemplateError, match="unknown vocabulary 'create'"):
        compile_template("{state|vocab:create}", VOCAB)


def test_every_query_template_of_every_spec_round_trips(specs: SpecSet) -> None:
    view = {
        "request_id": "r-1",
        "task.id": "task-1",
        "task.model": "m",
        "task.prompt": "a cat",
        "task.request_id": "r-0",
        "task.upstream_id": "u-1",
        "task.upstream_request_id": "ur-1",
        "times.submitted": 1_700_000_000.125,
        "times.scheduled": 1_700_000_002.5,
        "times.ended": 1_700_000_100.75,
        "result.url": "http://x/v.mp4?Expires=1",
        "error.code": "InvalidParameter",
        "error.message": "The parameter is invalid.",
        "usage.duration": 5,
        "usage.sr": 720,
        "usage.ratio": "16:9",
        "progress": 100,
        "model.action": "generate",
        "region": "r",
    }
    for spec in specs:
        for state, template in spec.query_response.states.items():
            rendered = template.render({**view, "state": state})
            parsed = template.parse(rendered)
            assert parsed["state"] == state, (spec.provider, state)
            for name, value in parsed.items():
                if name.startswith("times."):
                    assert value == pytest.approx(
                        view[name], abs=1
                    )  # epoch filters keep whole seconds
                elif name != "state":
                    assert value == view[name], (spec.provider, state, name)
            assert MISSING not in rendered.values()
