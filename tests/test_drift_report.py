"""Drift reports: real analyses of mutated mocks, rendered in every format, read back."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from contracts.drift import report
from contracts.drift.analyze import Analysis, Finding
from contracts.drift.mutations import CATALOGUE, detect
from contracts.drift.report import FORMATS, JSON_SCHEMA_VERSION, render
from contracts.spec import builtin_specs_dir


@dataclass(frozen=True)
class Runs:
    clean: Analysis  # the unedited mock: no findings
    timing: Analysis  # latencies doubled: one changed timing finding, with samples
    moved: Analysis  # a field renamed: one breaking and one new finding, with evidence


@pytest.fixture(scope="module")
def runs() -> Runs:
    def mutated(name: str) -> Analysis:
        # Timing drift is judged statistically from the tasks one run happens to time (the
        # mock's draws are not seeded): doubled latencies are missed in roughly one run in
        # ten at the default size. These tests are about rendering, not detection power,
        # so draw a larger run, and again if need be, until the mutation shows as promised.
        mutation = next(m for m in CATALOGUE if m.name == name)
        for _ in range(3):
            analysis = detect(mutation, examples=16)
            if {(f.kind, f.severity) for f in analysis.findings} == mutation.expect:
                break
        return analysis

    return Runs(
        clean=detect(None, provider="dashscope", model="happyhorse-1.0-t2v"),
        timing=mutated("timing-doubled"),
        moved=mutated("field-moved"),
    )


def edited(analysis: Analysis, **finding: str) -> Analysis:
    """A deep copy whose first finding has the given fields (the fixtures stay untouched)."""
    copied = copy.deepcopy(analysis)
    for name, value in finding.items():
        setattr(copied.findings[0], name, value)
    return copied


def failing_rules(analysis: Analysis) -> set[str]:
    return {f.rule for f in analysis.findings if f.severity in ("breaking", "changed")}


# -- every format --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["clean", "timing", "moved"])
def test_every_format_renders_the_same_bytes_twice(runs: Runs, fmt: str, which: str) -> None:
    analysis = getattr(runs, which)
    text = render(analysis, fmt)
    assert "dashscope" in text
    assert text == render(copy.deepcopy(analysis), fmt)


def test_the_fixtures_are_what_the_mutations_promise(runs: Runs) -> None:
    assert runs.clean.findings == []
    assert {(f.kind, f.severity) for f in runs.timing.findings} == {("timing", "changed")}
    assert {(f.kind, f.severity) for f in runs.moved.findings} == {
        ("field_removed", "breaking"),
        ("field_added", "new"),
    }


def test_an_unknown_format_is_refused_with_the_choices(runs: Runs) -> None:
    with pytest.raises(ValueError, match="markdown, html, json, junit, github"):
        render(runs.clean, "pdf")


# -- JSON ------------------------------------------------------------------------------------------


def documented_fields() -> set[str]:
    """The top-level fields the module docstring documents, so docs and output cannot part."""
    schema = (report.__doc__ or "").split("JSON schema, version 1", 1)[1]
    return set(re.findall(r"^- ``(\w+)``", schema, re.MULTILINE))


@pytest.mark.parametrize(
    ("which", "verdict"), [("clean", "clean"), ("timing", "changed"), ("moved", "breaking")]
)
def test_json_follows_the_documented_schema(runs: Runs, which: str, verdict: str) -> None:
    analysis = getattr(runs, which)
    text = render(analysis, "json")
    doc = json.loads(text)
    assert doc["schema_version"] == JSON_SCHEMA_VERSION == 1
    assert set(doc) == documented_fields()
    assert len(documented_fields()) == 15
    assert doc["verdict"] == verdict
    assert doc["counts"] == {
        "breaking": 0,
        "changed": 0,
        "new": 0,
        "info": 0,
        **Counter(f.severity for f in analysis.findings),
    }
    assert [(f["kind"], f["rule"]) for f in doc["findings"]] == [
        (f.kind, f.rule) for f in analysis.findings
    ]
    assert all(
        set(f) == set(Finding("k", "info", "r", "", "", "").to_json()) for f in doc["findings"]
    )
    assert [r["rule"] for r in doc["rules"]] == [r.rule for r in analysis.rules]
    assert all(set(r) == {"rule", "area", "source", "examined", "findings"} for r in doc["rules"])
    assert all(isinstance(r["source"], str) for r in doc["rules"])
    assert sum(r["findings"] for r in doc["rules"]) == len(analysis.findings)
    assert doc["timing"] == json.loads(json.dumps(analysis.timing))
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_json_verdict_is_changed_for_an_info_finding_alone(runs: Runs) -> None:
    analysis = copy.deepcopy(runs.clean)
    analysis.findings = [Finding("error_message", "info", "violations.auth_invalid", "", "m", "s")]
    doc = json.loads(render(analysis, "json"))
    assert doc["verdict"] == "changed"
    assert doc["counts"]["info"] == 1


# -- JUnit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["clean", "timing", "moved"])
def test_junit_has_one_case_per_rule_and_fails_breaking_and_changed_only(
    runs: Runs, which: str
) -> None:
    analysis = getattr(runs, which)
    root = ET.fromstring(render(analysis, "junit"))
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "paddock drift dashscope"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [r.rule for r in analysis.rules]
    assert {c.get("classname") for c in cases} == {"drift.dashscope"}
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == failing_rules(analysis)
    assert suite.get("tests") == str(len(analysis.rules))
    assert suite.get("failures") == str(len(failed))
    for case in cases:
        failure = case.find("failure")
        if failure is not None:
            finding = next(f for f in analysis.findings if f.rule == case.get("name"))
            assert failure.get("type") == finding.kind
            assert finding.suggestion in (failure.text or "")


def test_junit_reports_a_new_finding_without_failing(runs: Runs) -> None:
    new = next(f for f in runs.moved.findings if f.severity == "new")
    root = ET.fromstring(render(runs.moved, "junit"))
    case = next(c for c in root.iter("testcase") if c.get("name") == new.rule)
    assert case.find("failure") is None
    assert new.message in (case.findtext("system-out") or "")


def test_junit_survives_control_characters(runs: Runs) -> None:
    analysis = edited(runs.moved, message="bell \x07 and <tag> & more")
    root = ET.fromstring(render(analysis, "junit"))
    failure = next(root.iter("failure"))
    assert "<tag> & more" in (failure.get("message") or "")


# -- HTML ------------------------------------------------------------------------------------------

VOID = {"meta", "input", "br", "hr", "img", "link", "col", "area", "base", "source", "wbr"}
SVG_LEAVES = {"rect", "circle", "line", "path"}


class Balance(HTMLParser):
    """Checks that every element opened is closed, in order: a cheap stand-in for a validator."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.doctype = ""
        self.errors: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID | SVG_LEAVES:
            self.errors.append(f"self-closed <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def balanced(page: str) -> Balance:
    parser = Balance()
    parser.feed(page)
    parser.close()
    return parser


EXTERNAL = re.compile(r"""(?:\bsrc|\bhref)\s*=\s*["']?\s*(?:https?:)?//|<link\b|@import""", re.I)


@pytest.mark.parametrize("which", ["clean", "timing", "moved"])
def test_html_is_one_self_contained_well_formed_page(runs: Runs, which: str) -> None:
    page = render(getattr(runs, which), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(page)
    assert "<style>" in page and page.count("<script>") == 1
    parser = balanced(page)
    assert parser.errors == [] and parser.stack == []
    assert parser.doctype.lower() == "doctype html"


def test_html_charts_timing_samples_against_the_spec(runs: Runs) -> None:
    page = render(runs.timing, "html")
    assert page.count("<svg") == 1
    chart = page[page.index("<svg") : page.index("</svg>")]
    samples = sum(len(row["samples"]) for row in runs.timing.timing.values())
    assert samples > 0 and chart.count("<circle") == samples + 1  # one more: the legend's
    for state in runs.timing.timing:
        assert f"{state} spec: median" in chart and f"{state} observed p50" in chart
    assert "spec median to p95" in chart and "observed p95" in chart


def test_html_says_so_without_findings_or_timing_samples(runs: Runs) -> None:
    analysis = copy.deepcopy(runs.clean)
    for row in analysis.timing.values():
        row["samples"], row["observed"] = [], None
    page = render(analysis, "html")
    assert "<svg" not in page
    assert "No lifecycle timing samples" in page
    assert "No drift" in page
    assert balanced(page).errors == []
    assert "No drift" not in render(runs.moved, "html")


def test_html_filters_findings_by_severity_and_text(runs: Runs) -> None:
    page = render(runs.moved, "html")
    for finding in runs.moved.findings:
        assert f'data-severity="{finding.severity}" data-search="{finding.kind} ' in page
    assert page.count('<input type="checkbox" data-filter-severity') == 4
    assert 'id="filter-text"' in page


def test_html_escapes_a_script_in_a_finding(runs: Runs) -> None:
    hostile = '<script>alert("drift")</script>'
    analysis = edited(runs.moved, message=hostile, suggestion=hostile, kind=f'k"{hostile}')
    page = render(analysis, "html")
    assert "<script>alert" not in page
    assert page.count("<script>") == 1
    assert "&lt;script&gt;alert(&quot;drift&quot;)&lt;/script&gt;" in page
    assert balanced(page).errors == []


# -- Markdown --------------------------------------------------------------------------------------


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_opens_with_the_verdict(runs: Runs) -> None:
    assert (
        render(runs.clean, "markdown")
        .splitlines()[0]
        .startswith("**paddock drift, dashscope: no drift**")
    )
    assert "1 breaking, 1 new" in render(runs.moved, "markdown").splitlines()[0]
    # doubling every state is sure to show on RUNNING; PENDING, shorter, only sometimes
    changed = f"dashscope: {len(runs.timing.findings)} changed**"
    assert changed in render(runs.timing, "markdown").splitlines()[0]


def test_markdown_escapes_pipes_and_html_in_cells(runs: Runs) -> None:
    analysis = edited(runs.moved, message="a | b <b>c</b>\nd", rule="x|y")
    text = render(analysis, "markdown")
    row = next(line for line in text.splitlines() if "a \\| b" in line)
    header = next(line for line in text.splitlines() if line.startswith("| severity"))
    assert unescaped_pipes(row) == unescaped_pipes(header) == 8
    assert "&lt;b&gt;c&lt;/b&gt;<br>d" in row
    assert "`x\\|y`" in row


def test_markdown_has_suggestions_collapsed_evidence_and_timing(runs: Runs) -> None:
    text = render(runs.moved, "markdown")
    for finding in runs.moved.findings:
        assert finding.suggestion in text
    assert text.count("<details><summary>Evidence") == len(runs.moved.findings)
    assert "```json" in text
    timing = render(runs.timing, "markdown")
    running = runs.timing.timing["RUNNING"]
    row = next(line for line in timing.splitlines() if line.startswith("| RUNNING |"))
    assert f"| {running['spec']['median']} s |" in row
    assert row.endswith(f"| {running['observed']['n']} |")


# -- GitHub Actions ------------------------------------------------------------------------------


def test_github_annotations_follow_severity_and_end_with_a_summary(runs: Runs) -> None:
    lines = render(runs.moved, "github").splitlines()
    assert len(lines) == len(runs.moved.findings) + 1
    assert lines[0].startswith("::error file=specs/dashscope.yaml,line=")
    assert lines[1].startswith("::notice file=specs/dashscope.yaml,")
    assert lines[-1].startswith("::notice title=paddock drift dashscope::1 breaking, 1 new")
    timing = render(runs.timing, "github").splitlines()[:-1]
    assert len(timing) == len(runs.timing.findings)
    for line, finding in zip(timing, runs.timing.findings, strict=True):
        assert line.startswith("::warning ") and f"title=timing on {finding.rule}::" in line
    clean = render(runs.clean, "github").splitlines()
    assert clean == [clean[0]] and "::no drift" in clean[0]


def test_github_points_at_the_rules_line_in_the_spec(runs: Runs) -> None:
    spec = (builtin_specs_dir() / "dashscope.yaml").read_text(encoding="utf-8").splitlines()
    removed = render(runs.moved, "github").splitlines()[0]
    line = int(re.search(r",line=(\d+),", removed)[1])  # type: ignore[index]
    assert spec[line - 1].strip().startswith("video_url:")
    timing = render(runs.timing, "github").splitlines()[:-1]
    for annotation, finding in zip(timing, runs.timing.findings, strict=True):
        line = int(re.search(r",line=(\d+),", annotation)[1])  # type: ignore[index]
        assert spec[line - 1].strip().startswith(finding.rule.split(".")[-1] + ":")


def test_github_escapes_data_and_properties(runs: Runs) -> None:
    analysis = edited(runs.moved, message="first\nsecond\r\n100%", rule="no.such,rule: here")
    line = render(analysis, "github").splitlines()[0]
    assert "first%0Asecond%0D%0A100%25" in line
    assert "title=field_removed on no.such%2Crule%3A here::" in line
    assert ",line=" not in line  # not in the spec: the file alone


def test_github_follows_extends_and_tolerates_a_missing_spec(runs: Runs, tmp_path: Path) -> None:
    (tmp_path / "dashscope.yaml").write_text(
        (builtin_specs_dir() / "dashscope.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "proxy.yaml").write_text("provider: proxy\nextends: dashscope\n", "utf-8")
    line = render(runs.moved, "github", spec_file=tmp_path / "proxy.yaml").splitlines()[0]
    assert f"file={str(tmp_path / 'dashscope.yaml').replace(':', '%3A')},line=" in line
    missing = render(runs.moved, "github", spec_file=tmp_path / "gone.yaml").splitlines()[0]
    assert "gone.yaml,title=" in missing and ",line=" not in missing


def test_a_finding_on_a_rule_not_checked_still_gets_its_own_case(runs: Runs) -> None:
    analysis = copy.deepcopy(runs.clean)
    analysis.findings.append(
        Finding("timing", "changed", "timing.QUEUED", "baseline", "moved", "watch it", count=9)
    )
    root = ET.fromstring(render(analysis, "junit"))
    cases = list(root.iter("testcase"))
    assert len(cases) == len(analysis.rules) + 1
    assert [c.get("name") for c in cases if c.find("failure") is not None] == ["timing.QUEUED"]
    rules = json.loads(render(analysis, "json"))["rules"]
    assert {"rule": "timing.QUEUED", "area": "timing", "source": "baseline", "examined": 0,
            "findings": 1} in rules  # fmt: skip
