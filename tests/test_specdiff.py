"""`paddock diff`: real spec files, edited one rule at a time, and what an old client sees."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.drift.specdiff import SpecChange, diff_specs, render_changes
from contracts.spec import builtin_specs_dir, load_spec
from paddock.cli import main

Doc = dict[str, Any]
Edit = Callable[[Doc], None]
Row = tuple[str, str, bool, Any, Any]  # kind, where, breaking, old, new

T2V = ("models", "happyhorse-1.0-t2v")
I2V = ("models", "happyhorse-1.0-i2v")


def put(*path: Any) -> Edit:
    """An edit setting the key at ``path[:-1]`` to ``path[-1]`` (keys may contain dots)."""
    *keys, value = path

    def edit(doc: Doc) -> None:
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


def drop(*keys: str) -> Edit:
    def edit(doc: Doc) -> None:
        node = doc
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return edit


def spec_pair(tmp_path: Path, *edits: Edit, name: str = "dashscope") -> tuple[Path, Path]:
    """A built-in spec copied as OLD, and a copy with ``edits`` applied as NEW."""
    old, new = tmp_path / "old" / f"{name}.yaml", tmp_path / "new" / f"{name}.yaml"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        shutil.copy(builtin_specs_dir() / f"{name}.yaml", path)
    doc = yaml.safe_load(new.read_text())
    for edit in edits:
        edit(doc)
    new.write_text(yaml.safe_dump(doc, sort_keys=False))
    return old, new


def diff(tmp_path: Path, *edits: Edit, name: str = "dashscope") -> list[SpecChange]:
    old, new = spec_pair(tmp_path, *edits, name=name)
    return diff_specs(load_spec(old), load_spec(new))


def rows(changes: list[SpecChange]) -> list[Row]:
    return [(c.kind, c.where, c.breaking, c.old, c.new) for c in changes]


# fmt: off
EDITS: list[tuple[str, list[Edit], list[Row]]] = [
    (
        "nested response field removed",
        [drop("responses", "query", "states", "SUCCEEDED", "usage", "SR")],
        [("response-field-removed", "responses.query.states.SUCCEEDED.usage.SR", True, "{usage.sr|str}", None)],  # noqa: E501
    ),
    (
        "response field moved",
        [put("responses", "create", "body", {"output": {"task_status": "{status}"}, "request_id": "{request_id}", "task_id": "{task.id}"})],  # noqa: E501
        [("response-field-moved", "responses.create.body.output.task_id", True, "output.task_id", "task_id")],  # noqa: E501
    ),
    (
        "response field retyped",
        [put("responses", "query", "states", "SUCCEEDED", "output", "end_time", "{times.ended|epoch}")],  # noqa: E501
        [("response-field-type-changed", "responses.query.states.SUCCEEDED.output.end_time", True, "{times.ended|utc8}", "{times.ended|epoch}")],  # noqa: E501
    ),
    (
        "response field added",
        [put("responses", "create", "body", "created", "{times.submitted|epoch}")],
        [("response-field-added", "responses.create.body.created", False, None, "{times.submitted|epoch}")],  # noqa: E501
    ),
    (
        "status wire value renamed",
        [put("states", "vocabularies", "status", "RUNNING", "IN_PROGRESS")],
        [("state-renamed", "states.vocabularies.status.RUNNING", True, ["RUNNING"], ["IN_PROGRESS"])],  # noqa: E501
    ),
    (
        "range narrowed",
        [put(*T2V, "parameters", "duration", "max", 10)],
        [("range-narrowed", "models.happyhorse-1.0-t2v.parameters.duration.max", True, 15, 10)],
    ),
    (
        "range widened",
        [put(*T2V, "parameters", "duration", "min", 2)],
        [("range-widened", "models.happyhorse-1.0-t2v.parameters.duration.min", False, 3, 2)],
    ),
    (
        "enum value removed",
        [put(*T2V, "parameters", "ratio", "enum", ["16:9", "9:16", "1:1", "4:3"])],
        [("enum-value-removed", "models.happyhorse-1.0-t2v.parameters.ratio.enum", True, "3:4", None)],  # noqa: E501
    ),
    (
        "default changed",
        [put(*T2V, "parameters", "watermark", "default", False)],
        [("default-changed", "models.happyhorse-1.0-t2v.parameters.watermark.default", False, True, False)],  # noqa: E501
    ),
    (
        "parameter now refused",
        [put(*T2V, "parameters", "seed", {"supported": False, "source": "inferred"})],
        [("parameter-unsupported", "models.happyhorse-1.0-t2v.parameters.seed", True, "integer, 0..2147483647", "not supported")],  # noqa: E501
    ),
    (
        "required header added",
        [put("operations", "create", "headers", "X-Trace", {"value": "on", "source": "inferred"})],
        [("header-required", "operations.create.headers.X-Trace", True, None, "on")],
    ),
    (
        "media rule tightened in the model",
        [put(*I2V, "media", "first_frame", "rules", {"min_side": 512})],
        [("media-rule-tightened", "models.happyhorse-1.0-i2v.media.first_frame.rules.min_side", True, 300, 512)],  # noqa: E501
    ),
    (
        "media format removed from a kind every image uses",
        [put("media_kinds", "image", "formats", ["jpeg", "jpg", "png", "webp"])],
        [("media-format-removed", "media_kinds.image.formats", True, "bmp", None)] * 4,
    ),
    (
        "prompt newly required",
        [put(*I2V, "prompt", "required", True)],
        [("prompt-required", "models.happyhorse-1.0-i2v.prompt.required", True, False, True)],
    ),
    (
        "error code changed for a violation",
        [put("violations", "media_format", "error", "InvalidURL")],
        [("error-code-changed", "violations.media_format.error", True, "InvalidParameter", "InvalidURL")],  # noqa: E501
    ),
    (
        "catalogue status changed",
        [put("errors", "Throttling.RateQuota", "status", 503)],
        [("error-status-changed", "errors.Throttling.RateQuota.status", True, 429, 503),
         # the failure kind a status implies follows it (the wire only changed status)
         ("error-category-changed", "errors.Throttling.RateQuota.category", False, "rate_limit",
          "unavailable")],
    ),
    (
        "retention shortened",
        [put("retention", "result_url", "seconds", 3600)],
        [("retention-shortened", "retention.result_url.seconds", True, 86400, 3600)],
    ),
    (
        "polling pace limited",
        [put("limits", "poll_min_interval", {"value": 3, "source": "inferred"})],
        [("poll-interval-raised", "limits.poll_min_interval.value", True, None, 3)],
    ),
    (
        "result URL refuses Authorization",
        [put("results", "refuses_authorization", "value", True)],
        [("auth-changed", "results.refuses_authorization.value", True, False, True)],
    ),
    (
        "lifecycle edges: one unexpected, one a shortcut",
        [put("states", "edges", "RUNNING", ["SUCCEEDED", "FAILED", "CANCELED"]),
         put("states", "edges", "PENDING", ["RUNNING", "CANCELED", "FAILED", "SUCCEEDED"])],
        [("edge-added", "states.edges.RUNNING", True, None, "CANCELED"),
         ("edge-shortcut-added", "states.edges.PENDING", False, None, "SUCCEEDED")],
    ),
    (
        "timing changed",
        [put("timing", "RUNNING", {"median": 200, "p95": 400, "source": "inferred"})],
        [("timing-changed", "timing.RUNNING", False, [100, 280], [200, 400])],
    ),
    (
        "result frame size changed",
        [put("resolutions", "720P", "frames", "4:3", [1108, 832])],
        [("output-shape-changed", "resolutions.720P.frames.4:3", False, [1104, 832], [1108, 832])],
    ),
    (
        "model removed",
        [drop("models", "wan2.7-i2v")],
        [("model-removed", "models.wan2.7-i2v", True, "wan2.7-i2v", None)],
    ),
    (
        "query path changed",
        [put("operations", "query", "path", "/api/v2/tasks/{task_id}")],
        [("path-changed", "operations.query.path", True, "/api/v1/tasks/{task_id}", "/api/v2/tasks/{task_id}")],  # noqa: E501
    ),
]
# fmt: on


@pytest.mark.parametrize(("edits", "expected"), [c[1:] for c in EDITS], ids=[c[0] for c in EDITS])
def test_each_edit_is_found_exactly(tmp_path: Path, edits: list[Edit], expected: list[Row]) -> None:
    assert sorted(rows(diff(tmp_path, *edits)), key=repr) == sorted(expected, key=repr)


def test_messages_say_what_a_client_of_old_experiences(tmp_path: Path) -> None:
    [narrowed] = diff(tmp_path, put(*T2V, "parameters", "duration", "max", 10))
    assert narrowed.message == "happyhorse-1.0-t2v duration above 10 is now refused (was up to 15)"
    assert narrowed.source == "inferred"
    [default] = diff(tmp_path / "2", put(*T2V, "parameters", "resolution", "default", "720P"))
    assert "now gets 720P (was 1080P)" in default.message and "different video" in default.message
    assert not default.breaking
    tightened = diff(tmp_path / "3", put("media_kinds", "image", "min_side", 512))
    assert {c.message for c in tightened} == {
        "happyhorse-1.0-i2v first_frame side below 512 px is now refused (was from 300 px)",
        "happyhorse-1.0-r2v reference_image side below 512 px is now refused (was from 300 px)",
        "wan2.7-i2v first_frame side below 512 px is now refused (was from 300 px)",
        "wan2.7-i2v last_frame side below 512 px is now refused (was from 300 px)",
    }
    assert {c.source for c in tightened} == {"seed 003"}


@pytest.mark.parametrize("name", ["dashscope", "apiyi", "anyfast"])
def test_a_spec_against_itself_has_no_changes(tmp_path: Path, name: str) -> None:
    assert diff(tmp_path, name=name) == []


def test_apiyi_extends_dashscope_and_diffs(tmp_path: Path) -> None:
    # Only apiyi.yaml is copied: its `extends: dashscope` resolves to the built-in spec.
    changes = diff(tmp_path, put(*I2V, "parameters", "duration", "min", 3), name="apiyi")
    assert rows(changes) == [
        ("range-narrowed", "models.happyhorse-1.0-i2v.parameters.duration.min", True, 2, 3)
    ]
    native, proxy = (load_spec(builtin_specs_dir() / f"{n}.yaml") for n in ("dashscope", "apiyi"))
    found = {(c.kind, c.where): c for c in diff_specs(native, proxy)}
    assert found["model-removed", "models.happyhorse-1.0-t2v"].breaking
    assert found["state-renamed", "states.vocabularies.status.RUNNING"].new == ["in_progress"]
    assert found["auth-changed", "results.refuses_authorization.value"].breaking
    assert found["unknown-answer-changed", "operations.query.unknown"].new == (
        "HTTP 404 task_not_exist"
    )
    widened = found["range-widened", "models.happyhorse-1.0-i2v.parameters.duration.min"]
    assert (widened.old, widened.new, widened.breaking) == (3, 2, False)
    # The create reply's upstream vocabulary has DashScope's words: the same wire values.
    assert not any(where.startswith("responses.create") for _, where in found)


def test_renderings(tmp_path: Path) -> None:
    changes = diff(
        tmp_path,
        put(*T2V, "parameters", "duration", "max", 10),
        put(*T2V, "parameters", "watermark", "default", False),
        put(*T2V, "parameters", "duration", "min", 2),
    )
    text = render_changes(changes, "text", old="a.yaml", new="b.yaml")
    lines = text.splitlines()
    assert lines[0] == "a.yaml -> b.yaml: 1 breaking, 2 non-breaking changes"
    assert lines[1] == "breaking:" and "range-narrowed" in lines[2]
    assert lines[3] == "non-breaking:" and len(lines) == 6
    markdown = render_changes(changes, "markdown", old="a.yaml", new="b.yaml")
    assert "| **breaking** | `range-narrowed` |" in markdown
    assert markdown.count("\n| ") == 5  # header, rule, three rows
    doc = json.loads(render_changes(changes, "json", old="a.yaml", new="b.yaml"))
    assert (doc["old"], doc["new"], doc["breaking"]) == ("a.yaml", "b.yaml", 1)
    assert [c["kind"] for c in doc["changes"]] == [
        "range-narrowed",
        "range-widened",
        "default-changed",
    ]
    fields = ["kind", "breaking", "where", "old", "new", "message", "source"]
    assert list(doc["changes"][0]) == fields
    assert render_changes([], "text", old="a", new="b") == "a -> b: no changes\n"
    with pytest.raises(ValueError, match="unknown format"):
        render_changes(changes, "yaml", old="a", new="b")


def test_cli_exit_status_follows_breaking_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = spec_pair(tmp_path / "breaking", put("retention", "task", "seconds", 600))
    assert main(["diff", str(old), str(new)]) == 1
    assert "1 breaking, 0 non-breaking change" in capsys.readouterr().out
    old, new = spec_pair(tmp_path / "fine", put("retention", "task", "seconds", 172800))
    assert main(["diff", str(old), str(new), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["breaking"] == 0
    assert [c["kind"] for c in doc["changes"]] == ["retention-lengthened"]


def test_cli_writes_out_and_refuses_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = spec_pair(tmp_path, put("retention", "task", "seconds", 600))
    report = tmp_path / "reports" / "diff.md"
    assert main(["diff", str(old), str(new), "--format", "markdown", "--out", str(report)]) == 1
    assert "`retention-shortened`" in report.read_text()
    assert capsys.readouterr().out == ""
    assert main(["diff", str(old), str(tmp_path / "missing.yaml")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("paddock: ") and "missing.yaml" in line
