"""Drift reports: one ``Analysis`` rendered for people, for CI and for other programs.

Five formats, all written from the same ordered findings list so they can never
disagree about what was found:

- ``markdown``: a pull-request comment: verdict, findings table, per finding its
  suggestion, source and (collapsed) evidence, the notes and a timing table;
- ``html``: one self-contained page (inline CSS, a small inline script, an inline
  SVG chart of lifecycle durations against the spec), safe to attach as a CI
  artifact and open offline;
- ``json``: the machine-readable report, schema below;
- ``junit``: JUnit XML, one test case per spec rule the run exercised, failing
  where a client written to the spec breaks or gets something else;
- ``github``: GitHub Actions workflow commands, one annotation per finding on the
  spec file (and line) the finding is about.

Nothing is added that the analysis does not hold (no current time, no host
name), so the same analysis always renders to the same bytes.

JSON schema, version 1
----------------------

A single object; keys sorted, two-space indent. A consumer should check
``schema_version``: fields are only ever added within a version, and a removal
or change of meaning bumps it.

- ``schema_version`` (int): ``1``.
- ``provider`` (str): the provider the spec describes, e.g. ``"dashscope"``.
- ``run`` (str): the directory of the recorded conformance run that was analysed.
- ``run_time`` (str): when that run was recorded (ISO 8601, UTC).
- ``target`` (str): what the run was recorded against (``"mock"``, a base URL...).
- ``spec_digest`` (str): digest of the spec the run was read against.
- ``observed_digest`` (str | null): digest of the spec the run was recorded
  against, when the run says.
- ``baseline`` (str | null): the earlier run compared with, if any.
- ``exchanges`` (int): how many recorded exchanges were read.
- ``verdict`` (str): ``"breaking"`` if any finding is breaking, else ``"changed"``
  if there is any finding at all, else ``"clean"``.
- ``counts`` (object): findings per severity, every severity present:
  ``{"breaking": n, "changed": n, "new": n, "info": n}``.
- ``findings`` (array): one object per finding, most severe first, each with
  ``kind`` (str: what drifted, e.g. ``"range_narrowed"``), ``severity`` (str:
  ``breaking`` a client written to the spec fails, ``changed`` it works but gets
  something else, ``new`` something was added, ``info`` worth knowing), ``rule``
  (str: dotted location in the spec, e.g.
  ``"models.happyhorse-1.0-t2v.parameters.duration"``), ``source`` (str: where
  the spec says the rule comes from), ``model`` (str | null), ``message`` (str),
  ``suggestion`` (str: what to change in the spec or the client), ``count``
  (int: exchanges showing it), ``examined`` (int: exchanges that tested the rule),
  ``since`` (str | null: ``run_time`` of the first run showing it, with a
  baseline) and ``evidence`` (array of objects: up to two recorded exchanges,
  trimmed and already redacted).
- ``rules`` (array): every spec rule the run exercised, sorted by ``rule``:
  ``{"rule": str, "area": str, "source": str, "examined": int, "findings": int}``
  (``area`` groups rules: ``create``, ``shape``, ``errors``, ``results``,
  ``lifecycle``, ``timing``...).
- ``timing`` (object): per lifecycle state, ``{"spec": {"median": s, "p95": s},
  "observed": {"n", "p50", "p90", "p95", "max"} | null, "samples": [s, ...]}``,
  durations in seconds.
- ``notes`` (array of str): what the analysis could not judge, and why.
"""

from __future__ import annotations

import html
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from contracts.drift.analyze import SEVERITIES, Analysis, Finding
from contracts.spec import builtin_specs_dir

__all__ = ["FORMATS", "JSON_SCHEMA_VERSION", "render", "verdict"]

FORMATS = ("markdown", "html", "json", "junit", "github")
JSON_SCHEMA_VERSION = 1


def render(analysis: Analysis, fmt: str, *, spec_file: str | Path | None = None) -> str:
    """The report of ``analysis`` in ``fmt`` (one of ``FORMATS``).

    ``spec_file`` is the YAML the findings' rules are located in for ``github``
    annotations; by default the built-in ``specs/PROVIDER.yaml``.
    """
    renderers: dict[str, Callable[[Analysis], str]] = {
        "markdown": _markdown,
        "html": _html,
        "json": _json,
        "junit": _junit,
        "github": lambda a: _github(a, None if spec_file is None else Path(spec_file)),
    }
    renderer = renderers.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderer(analysis)


def verdict(analysis: Analysis) -> str:
    """``breaking``, ``changed`` (any other finding) or ``clean``: what a CI gate acts on."""
    if analysis.breaking:
        return "breaking"
    return "changed" if analysis.findings else "clean"


# -- what every format shares -------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """A rule row: a checked spec rule, or one only a finding names (a baseline comparison)."""

    rule: str
    area: str
    source: str
    examined: int
    findings: tuple[Finding, ...]

    @property
    def failing(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity in ("breaking", "changed"))

    @property
    def passing(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity not in ("breaking", "changed"))


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _ordered(analysis: Analysis) -> list[Finding]:
    # A baseline comparison appends findings after the analysis sorted its own, so sort
    # once more here: every format then lists the same findings in the same order.
    return sorted(analysis.findings, key=lambda f: (_rank(f.severity), f.kind, f.rule))


def _rules(analysis: Analysis) -> list[_Rule]:
    """Every rule checked, plus any rule only a finding names, each with its findings."""
    by_rule: dict[str, list[Finding]] = {}
    for finding in _ordered(analysis):
        by_rule.setdefault(finding.rule, []).append(finding)
    rows = [
        _Rule(r.rule, r.area, _text(r.source), r.examined, tuple(by_rule.get(r.rule, ())))
        for r in analysis.rules
    ]
    known = {r.rule for r in analysis.rules}
    for rule, findings in by_rule.items():
        if rule not in known:
            first = findings[0]
            rows.append(
                _Rule(rule, first.kind, _text(first.source), first.examined, tuple(findings))
            )
    return sorted(rows, key=lambda r: r.rule)


def _text(value: Any) -> str:
    """A spec ``source`` as text: it is usually a string, but a template can hand over its body."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _summary(analysis: Analysis) -> str:
    """``"2 breaking, 1 changed"``, or ``"no drift"``."""
    counts = analysis.counts()
    parts = [f"{counts[s]} {s}" for s in SEVERITIES if counts.get(s)]
    return ", ".join(parts) if parts else "no drift"


def _scope(analysis: Analysis) -> str:
    rules = len(_rules(analysis))
    return (
        f"{rules} spec rule{'s' * (rules != 1)} checked over {analysis.exchanges} "
        f"exchange{'s' * (analysis.exchanges != 1)}"
    )


def _seen(finding: Finding) -> str:
    return f"{finding.count}/{finding.examined}" if finding.examined else str(finding.count)


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if float(value).is_integer():
        return f"{int(value)} s"
    return f"{value:.1f} s"


def _evidence_json(finding: Finding) -> str:
    return json.dumps(finding.evidence, indent=2, ensure_ascii=False, default=str)


def _observed(row: Mapping[str, Any]) -> Mapping[str, Any]:
    observed = row.get("observed")
    return observed if isinstance(observed, Mapping) else {}


def _spec_timing(row: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = row.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _samples(row: Mapping[str, Any]) -> list[float]:
    """Positive durations only: they go on a log scale."""
    samples = row.get("samples")
    if not isinstance(samples, list):
        return []
    return [float(s) for s in samples if isinstance(s, (int, float)) and s > 0]


# -- JSON ---------------------------------------------------------------------------------------


def _document(analysis: Analysis) -> dict[str, Any]:
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "provider": analysis.provider,
        "run": analysis.run,
        "run_time": analysis.run_time,
        "target": analysis.target,
        "spec_digest": analysis.spec_digest,
        "observed_digest": analysis.observed_digest,
        "baseline": analysis.baseline,
        "exchanges": analysis.exchanges,
        "verdict": verdict(analysis),
        "counts": analysis.counts(),
        "findings": [{**f.to_json(), "source": _text(f.source)} for f in _ordered(analysis)],
        "rules": [
            {
                "rule": r.rule,
                "area": r.area,
                "source": r.source,
                "examined": r.examined,
                "findings": len(r.findings),
            }
            for r in _rules(analysis)
        ],
        "timing": analysis.timing,
        "notes": list(analysis.notes),
    }


def _json(analysis: Analysis) -> str:
    return json.dumps(_document(analysis), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- Markdown -----------------------------------------------------------------------------------


def _md(text: Any) -> str:
    """Inline text for a comment: no raw HTML, no table breaks, no paragraph breaks."""
    escaped = html.escape(str(text), quote=False).replace("|", "\\|")
    return escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _md_code(text: str) -> str:
    """A code span that survives backticks and ``|`` in the text (and sits in a table)."""
    text = text.replace("\r", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _md_block(text: str, lang: str) -> list[str]:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{lang}", text, fence]


def _markdown(analysis: Analysis) -> str:
    findings = _ordered(analysis)
    moved = analysis.observed_digest if _moved(analysis) else None
    lines = [
        f"**paddock drift, {_md(analysis.provider)}: {_summary(analysis)}** ({_scope(analysis)})",
        "",
        f"Run {_md_code(analysis.run_time)} against {_md_code(analysis.target)}, "
        f"spec {_md_code(analysis.spec_digest)}"
        + (f", recorded with spec {_md_code(moved)}" if moved else "")
        + (f", baseline {_md_code(analysis.baseline)}" if analysis.baseline else "")
        + ".",
        "",
    ]
    if findings:
        lines += [
            "| severity | kind | rule | model | message | seen | since |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| **{_md(f.severity)}** | {_md_code(f.kind)} | {_md_code(f.rule)} | "
            f"{_md(f.model or '-')} | {_md(f.message)} | {_seen(f)} | {_md(f.since or '-')} |"
            for f in findings
        ]
        lines.append("")
        for number, f in enumerate(findings, 1):
            lines += [
                f"#### {number}. {_md(f.severity)}: {_md_code(f.kind)} on {_md_code(f.rule)}",
                "",
                f"- **Suggestion:** {_md(f.suggestion)}",
                f"- **Source:** {_md(_text(f.source))}",
                "",
            ]
            if f.evidence:
                lines += [
                    "<details><summary>Evidence: "
                    f"{len(f.evidence)} recorded exchange{'s' * (len(f.evidence) != 1)}"
                    "</summary>",
                    "",
                    *_md_block(_evidence_json(f), "json"),
                    "",
                    "</details>",
                    "",
                ]
            else:
                lines += ["No single exchange shows it: it was judged over the whole run.", ""]
    else:
        lines += ["No drift: every spec rule the run exercised held.", ""]
    if analysis.notes:
        lines += ["**Notes**", ""]
        lines += [f"- {_md(note)}" for note in analysis.notes]
        lines.append("")
    if analysis.timing:
        lines += [
            "**Lifecycle timing** (seconds per state)",
            "",
            "| state | spec median | spec p95 | observed p50 | observed p95 | n |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for state, row in analysis.timing.items():
            spec, observed = _spec_timing(row), _observed(row)
            lines.append(
                f"| {_md(state)} | {_seconds(spec.get('median'))} | {_seconds(spec.get('p95'))} "
                f"| {_seconds(observed.get('p50'))} | {_seconds(observed.get('p95'))} "
                f"| {observed.get('n', 0)} |"
            )
        lines.append("")
    rules = _rules(analysis)
    if rules:
        lines += [
            f"<details><summary>Spec rules checked ({len(rules)})</summary>",
            "",
            "| rule | area | examined | findings |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {_md_code(r.rule)} | {_md(r.area)} | {r.examined} | {len(r.findings)} |"
            for r in rules
        ]
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def _moved(analysis: Analysis) -> bool:
    return bool(analysis.observed_digest) and analysis.observed_digest != analysis.spec_digest


# -- JUnit --------------------------------------------------------------------------------------

# XML 1.0 cannot carry most control characters at all, not even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: Any) -> str:
    return _XML_INVALID.sub("\ufffd", str(text))


def _finding_text(finding: Finding) -> str:
    lines = [f"[{finding.severity}] {finding.kind}: {finding.message}"]
    if finding.model:
        lines.append(f"  model: {finding.model}")
    lines.append(
        f"  seen: {_seen(finding)} exchanges" + (f", since {finding.since}" * bool(finding.since))
    )
    lines.append(f"  suggestion: {finding.suggestion}")
    lines.append(f"  source: {_text(finding.source)}")
    return "\n".join(lines)


def _junit(analysis: Analysis) -> str:
    rules = _rules(analysis)
    failures = sum(1 for r in rules if r.failing)
    suite = ET.Element(
        "testsuite",
        {
            "name": _xml(f"paddock drift {analysis.provider}"),
            "tests": str(len(rules)),
            "failures": str(failures),
            "errors": "0",
            "skipped": "0",
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("provider", analysis.provider),
        ("run", analysis.run),
        ("run_time", analysis.run_time),
        ("target", analysis.target),
        ("spec_digest", analysis.spec_digest),
        ("observed_digest", analysis.observed_digest),
        ("baseline", analysis.baseline),
        ("exchanges", analysis.exchanges),
        ("verdict", verdict(analysis)),
    ):
        if value is not None:
            ET.SubElement(properties, "property", {"name": name, "value": _xml(value)})
    classname = _xml(f"drift.{analysis.provider}")
    for rule in rules:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": _xml(rule.rule)})
        failing = rule.failing
        if failing:
            first = failing[0]
            message = (
                first.message
                if len(failing) == 1
                else f"{len(failing)} findings: " + "; ".join(f.message for f in failing)
            )
            failure = ET.SubElement(
                case, "failure", {"message": _xml(message), "type": _xml(first.kind)}
            )
            failure.text = _xml("\n\n".join(_finding_text(f) for f in failing))
        out = [f"examined by {rule.examined} exchanges; source: {rule.source}"]
        out += [_finding_text(f) for f in rule.passing]
        ET.SubElement(case, "system-out").text = _xml("\n\n".join(out))
    root = ET.Element(
        "testsuites",
        {"name": "paddock drift", "tests": str(len(rules)), "failures": str(failures)},
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


# -- GitHub Actions -----------------------------------------------------------------------------


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _gh_command(command: str, properties: Sequence[tuple[str, str]], message: str) -> str:
    props = ",".join(f"{k}={_gh_property(v)}" for k, v in properties)
    return (
        f"::{command} {props}::{_gh_data(message)}"
        if props
        else f"::{command}::{_gh_data(message)}"
    )


_GH_COMMANDS = {"breaking": "error", "changed": "warning"}


def _github(analysis: Analysis, spec_file: Path | None) -> str:
    path = spec_file or builtin_specs_dir() / f"{analysis.provider}.yaml"
    # Annotations name the file as it sits in the repository, which GitHub resolves from
    # the checkout's root; the built-in specs live in specs/ there.
    shown = "specs" if spec_file is None else str(spec_file.parent)
    locator = _SpecLines(path)
    lines = []
    for f in _ordered(analysis):
        where = locator.locate(f.rule)
        properties = [("file", f"{shown}/{(where[0] if where else path).name}")]
        if where:
            properties.append(("line", str(where[1])))
        properties.append(("title", f"{f.kind} on {f.rule}"))
        detail = [
            f.message,
            f"seen in {_seen(f)} exchanges" + (f" for {f.model}" if f.model else ""),
        ]
        if f.since:
            detail[-1] += f", since {f.since}"
        detail += [f"suggestion: {f.suggestion}", f"source: {_text(f.source)}"]
        lines.append(
            _gh_command(_GH_COMMANDS.get(f.severity, "notice"), properties, "\n".join(detail))
        )
    summary = (
        f"{_summary(analysis)}: {_scope(analysis)} against {analysis.target} "
        f"(spec {analysis.spec_digest}, run {analysis.run_time})"
    )
    lines.append(_gh_command("notice", [("title", f"paddock drift {analysis.provider}")], summary))
    return "\n".join(lines) + "\n"


class _SpecLines:
    """Where a dotted rule is written in a provider's YAML, or the file it ``extends``.

    Rules are dotted paths whose keys may themselves hold dots (model names such as
    ``happyhorse-1.0-t2v``) and may end in a remark (``models.X (accepted requests)``),
    so each mapping is matched by the longest run of parts that is one of its keys. A
    rule that goes deeper than the YAML (a field inside a template) is placed at the
    deepest key found. Anything unreadable simply gives no line: the annotation still
    names the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.roots: dict[Path, yaml.Node | None] = {}

    def root(self, path: Path) -> yaml.Node | None:
        if path not in self.roots:
            try:
                self.roots[path] = yaml.compose(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                self.roots[path] = None
        return self.roots[path]

    def locate(self, rule: str) -> tuple[Path, int] | None:
        parts = re.sub(r"\s*\(.*\)\s*$", "", rule).split(".")
        best: tuple[int, Path, int] | None = None
        path, seen = self.path, set()
        while path not in seen:
            seen.add(path)
            root = self.root(path)
            if root is None:
                break
            depth, line = _walk(root, parts)
            if line is not None and (best is None or depth > best[0]):
                best = (depth, path, line)
            parent = _key(root, "extends")
            if depth == len(parts) or parent is None or not isinstance(parent.value, str):
                break
            path = path.with_name(f"{parent.value}.yaml")
        return (best[1], best[2]) if best else None


def _key(node: yaml.Node, name: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == name:
                return value  # type: ignore[no-any-return]
    return None


def _walk(node: yaml.Node, parts: list[str]) -> tuple[int, int | None]:
    """How many parts were found, and the 1-based line of the last key found."""
    depth, line = 0, None
    while depth < len(parts):
        if isinstance(node, yaml.MappingNode):
            keys = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            for end in range(len(parts), depth, -1):
                found = keys.get(".".join(parts[depth:end]))
                if found is not None:
                    line, node, depth = found[0].start_mark.line + 1, found[1], end
                    break
            else:
                break
        elif (
            isinstance(node, yaml.SequenceNode)
            and parts[depth].isdigit()
            and int(parts[depth]) < len(node.value)
        ):
            node = node.value[int(parts[depth])]
            line, depth = node.start_mark.line + 1, depth + 1
        else:
            break
    return depth, line


# -- HTML ---------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
:root { --breaking: #c62828; --changed: #b26a00; --new: #1565c0; --info: #616161;
  --spec: #3f51b5; --observed: #e65100; --line: #ddd; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
  color: #222; background: #fafafa; }
header, main { max-width: 1100px; margin: 0 auto; padding: 12px 20px; }
header { border-bottom: 1px solid var(--line); background: #fff; max-width: none; }
h1 { font-size: 20px; margin: 4px 0 8px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
  font-weight: 600; margin-left: 8px; font-size: 14px; vertical-align: middle; }
.verdict.breaking { background: var(--breaking); } .verdict.changed { background: var(--changed); }
.verdict.clean { background: #2e7d32; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
  vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
pre { background: #f5f5f5; padding: 8px; overflow: auto; max-height: 400px; margin: 4px 0; }
.sev { font-weight: 600; } .sev.breaking { color: var(--breaking); }
.sev.changed { color: var(--changed); } .sev.new { color: var(--new); }
.sev.info { color: var(--info); }
tr.detail td { background: #fcfcfc; border-bottom: 2px solid var(--line); }
tr.detail p { margin: 2px 0; }
.filters { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 8px 0; }
.filters input[type=search] { padding: 3px 6px; min-width: 240px; }
.muted { color: #666; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
"""

# Static: nothing from the analysis is written into the script, so it cannot be injected.
_SCRIPT = """
(function () {
  var boxes = document.querySelectorAll("input[data-filter-severity]");
  var text = document.getElementById("filter-text");
  var shown = document.getElementById("filter-shown");
  function apply() {
    var on = {};
    boxes.forEach(function (box) { on[box.value] = box.checked; });
    var query = text ? text.value.trim().toLowerCase() : "";
    var count = 0;
    document.querySelectorAll("tbody.finding").forEach(function (body) {
      var visible = on[body.dataset.severity] !== false &&
        body.dataset.search.indexOf(query) !== -1;
      body.hidden = !visible;
      if (visible) { count += 1; }
    });
    if (shown) { shown.textContent = String(count); }
  }
  boxes.forEach(function (box) { box.addEventListener("change", apply); });
  if (text) { text.addEventListener("input", apply); }
  apply();
})();
"""


def _html(analysis: Analysis) -> str:
    findings = _ordered(analysis)
    state = verdict(analysis)
    meta = [
        ("provider", analysis.provider),
        ("run", analysis.run),
        ("run time", analysis.run_time),
        ("target", analysis.target),
        ("spec digest", analysis.spec_digest),
        ("recorded with spec", analysis.observed_digest),
        ("baseline", analysis.baseline),
        ("exchanges", analysis.exchanges),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>paddock drift: {_e(analysis.provider)} ({_e(_summary(analysis))})</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f'<h1>paddock drift: {_e(analysis.provider)} <span class="verdict {state}">'
        f"{_e(_summary(analysis))}</span></h1>",
        '<dl class="meta">',
        *(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta if v is not None),
        "</dl>",
        "</header>",
        "<main>",
        f'<h2>Findings <span class="muted">({_e(_scope(analysis))})</span></h2>',
    ]
    parts += _html_findings(analysis, findings)
    if analysis.notes:
        parts += ["<h2>Notes</h2>", "<ul>", *(f"<li>{_e(n)}</li>" for n in analysis.notes), "</ul>"]
    parts += ["<h2>Lifecycle timing</h2>", *_html_timing(analysis.timing)]
    rules = _rules(analysis)
    parts += [
        "<h2>Spec rules checked</h2>",
        f"<details><summary>{len(rules)} rules</summary>",
        "<table>",
        "<thead><tr><th>rule</th><th>area</th><th>source</th><th>examined</th>"
        "<th>findings</th></tr></thead>",
        "<tbody>",
        *(
            f"<tr><td><code>{_e(r.rule)}</code></td><td>{_e(r.area)}</td><td>{_e(r.source)}</td>"
            f'<td class="num">{r.examined}</td><td class="num">{len(r.findings)}</td></tr>'
            for r in rules
        ),
        "</tbody>",
        "</table>",
        "</details>",
        "</main>",
        f"<script>{_SCRIPT}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _html_findings(analysis: Analysis, findings: list[Finding]) -> list[str]:
    if not findings:
        return ["<p>No drift: every spec rule the run exercised held.</p>"]
    counts = analysis.counts()
    parts = [
        '<div class="filters">',
        *(
            f'<label><input type="checkbox" data-filter-severity value="{_e(s)}" checked> '
            f'<span class="sev {_e(s)}">{_e(s)}</span> ({counts.get(s, 0)})</label>'
            for s in SEVERITIES
        ),
        '<label>kind or rule <input type="search" id="filter-text" '
        'placeholder="e.g. timing, models.happyhorse"></label>',
        f'<span class="muted"><span id="filter-shown">{len(findings)}</span> of '
        f"{len(findings)} shown</span>",
        "</div>",
        "<table>",
        "<thead><tr><th>severity</th><th>kind</th><th>rule</th><th>model</th><th>message</th>"
        "<th>seen</th><th>since</th></tr></thead>",
    ]
    for f in findings:
        search = f"{f.kind} {f.rule}".lower()
        evidence = (
            f"<details><summary>evidence: {len(f.evidence)} recorded exchange"
            f"{'s' * (len(f.evidence) != 1)}</summary><pre>{_e(_evidence_json(f))}</pre>"
            "</details>"
            if f.evidence
            else '<p class="muted">No single exchange shows it: judged over the whole run.</p>'
        )
        parts += [
            f'<tbody class="finding" data-severity="{_e(f.severity)}" data-search="{_e(search)}">',
            f'<tr><td class="sev {_e(f.severity)}">{_e(f.severity)}</td>'
            f"<td><code>{_e(f.kind)}</code></td><td><code>{_e(f.rule)}</code></td>"
            f"<td>{_e(f.model or '-')}</td><td>{_e(f.message)}</td>"
            f'<td class="num">{_e(_seen(f))}</td><td>{_e(f.since or "-")}</td></tr>',
            f'<tr class="detail"><td colspan="7"><p><b>Suggestion:</b> {_e(f.suggestion)}</p>'
            f"<p><b>Source:</b> {_e(_text(f.source))}</p>{evidence}</td></tr>",
            "</tbody>",
        ]
    parts.append("</table>")
    return parts


def _html_timing(timing: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not timing:
        return ['<p class="muted">The spec gives no lifecycle timing to compare with.</p>']
    rows = [
        f"<tr><td>{_e(state)}</td>"
        f'<td class="num">{_seconds(_spec_timing(row).get("median"))}</td>'
        f'<td class="num">{_seconds(_spec_timing(row).get("p95"))}</td>'
        f'<td class="num">{_seconds(_observed(row).get("p50"))}</td>'
        f'<td class="num">{_seconds(_observed(row).get("p95"))}</td>'
        f'<td class="num">{_observed(row).get("n", 0)}</td></tr>'
        for state, row in timing.items()
    ]
    table = [
        "<table>",
        "<thead><tr><th>state</th><th>spec median</th><th>spec p95</th><th>observed p50</th>"
        "<th>observed p95</th><th>n</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
    ]
    if not any(_samples(row) for row in timing.values()):
        return [
            '<p class="muted">No lifecycle timing samples in this run (no task was seen '
            "through a state), so there is nothing to chart.</p>",
            *table,
        ]
    return [_timing_svg(timing), *table]


# Chart geometry, in SVG user units.
_LEFT, _RIGHT, _TOP, _ROW, _AXIS = 130, 740, 42, 60, 34


def _ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks per decade, so a log axis reads in round seconds."""
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for step in (1, 2, 5):
            value = step * 10.0**exponent
            if low <= value * (1 + 1e-9) and value <= high * (1 + 1e-9):
                ticks.append(value)
    return ticks


def _timing_svg(timing: Mapping[str, Mapping[str, Any]]) -> str:
    """Per state, observed durations on a shared log axis against the spec's median/p95."""
    values: list[float] = []
    for row in timing.values():
        values += _samples(row)
        values += [
            float(v)
            for v in (*_spec_timing(row).values(), *_observed(row).values())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        ]
    low = 10.0 ** math.floor(math.log10(min(values)))
    high = 10.0 ** math.ceil(math.log10(max(values)))
    if high <= low:
        high = low * 10

    def x(value: float) -> float:
        share = (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return round(_LEFT + share * (_RIGHT - _LEFT), 1)

    states = list(timing.items())
    height = _TOP + _ROW * len(states) + _AXIS
    bottom = _TOP + _ROW * len(states)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 760 {height}" width="760" '
        f'height="{height}" role="img" aria-label="Observed time per lifecycle state against '
        'the spec, log scale">',
        # legend
        '<rect x="130" y="8" width="22" height="12" fill="#3f51b5" fill-opacity="0.15" '
        'stroke="#3f51b5"/><text x="158" y="18">spec median to p95</text>',
        '<circle cx="300" cy="14" r="3" fill="#555" fill-opacity="0.55"/>'
        '<text x="308" y="18">observed task</text>',
        '<line x1="410" y1="6" x2="410" y2="22" stroke="#e65100" stroke-width="3"/>'
        '<text x="416" y="18">observed p50</text>',
        '<line x1="520" y1="6" x2="520" y2="22" stroke="#e65100" stroke-width="2" '
        'stroke-dasharray="3 2"/><text x="526" y="18">observed p95</text>',
        '<text x="740" y="18" text-anchor="end" fill-opacity="0.6">log scale</text>',
    ]
    for tick in _ticks(low, high):
        tx = x(tick)
        out.append(
            f'<line x1="{tx}" y1="{_TOP - 4}" x2="{tx}" y2="{bottom}" stroke="#eee"/>'
            f'<text x="{tx}" y="{bottom + 16}" text-anchor="middle">{_e(_seconds(tick))}</text>'
        )
    out.append(f'<line x1="{_LEFT}" y1="{bottom}" x2="{_RIGHT}" y2="{bottom}" stroke="#999"/>')
    for index, (state, row) in enumerate(states):
        cy = _TOP + _ROW * index + _ROW / 2
        spec, observed, samples = _spec_timing(row), _observed(row), _samples(row)
        out.append(
            f'<text x="{_LEFT - 10}" y="{cy - 2}" text-anchor="end" font-weight="600">'
            f'{_e(state)}</text><text x="{_LEFT - 10}" y="{cy + 12}" text-anchor="end">'
            f"n={len(samples)}</text>"
        )
        median, p95 = spec.get("median"), spec.get("p95")
        if _positive(median) and _positive(p95):
            x1, x2 = x(min(median, p95)), x(max(median, p95))
            out.append(
                f'<rect x="{x1}" y="{cy - 16}" width="{round(x2 - x1, 1)}" height="32" '
                'fill="#3f51b5" fill-opacity="0.15" stroke="#3f51b5" stroke-opacity="0.6">'
                f"<title>{_e(state)} spec: median {_e(_seconds(median))}, "
                f"p95 {_e(_seconds(p95))}</title></rect>"
                f'<line x1="{x(median)}" y1="{cy - 16}" x2="{x(median)}" y2="{cy + 16}" '
                'stroke="#3f51b5" stroke-width="2"/>'
            )
        if not samples:
            out.append(
                f'<text x="{_RIGHT}" y="{cy + 4}" text-anchor="end" class="muted">'
                "no finished tasks</text>"
            )
        for n, sample in enumerate(samples):
            # a deterministic spread, so equal durations stay visible as separate tasks
            dy = ((n * 7) % 11 - 5) * 2
            out.append(
                f'<circle cx="{x(sample)}" cy="{cy + dy}" r="3" fill="#555" fill-opacity="0.55">'
                f"<title>{_e(_seconds(sample))}</title></circle>"
            )
        for key, dash in (("p50", ""), ("p95", ' stroke-dasharray="3 2"')):
            value = observed.get(key)
            if _positive(value):
                width = 3 if key == "p50" else 2
                out.append(
                    f'<line x1="{x(value)}" y1="{cy - 22}" x2="{x(value)}" y2="{cy + 22}" '
                    f'stroke="#e65100" stroke-width="{width}"{dash}>'
                    f"<title>{_e(state)} observed {key}: {_e(_seconds(value))}</title></line>"
                )
    out.append("</svg>")
    return "\n".join(out)


def _positive(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
