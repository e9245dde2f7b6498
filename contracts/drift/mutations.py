"""A catalogue of provider changes, to prove the drift analysis finds each one and nothing else.

Each mutation edits one provider's spec as a provider might change without
notice (a range narrowed, a status renamed, an error code renamed, latencies
doubled...). The mock serves the edited spec as the "upstream", a recorded
conformance run is made against it, and the run is analysed against the
unedited spec: the findings must be exactly the kinds and severities the
mutation promises. The same run against the unedited mock must find nothing.

``nox -s drift`` and ``tests/test_drift.py`` both print the detection table.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contracts.conformance.runner import run_checks
from contracts.drift.analyze import Analysis, analyze
from contracts.drift.observe import load_run
from contracts.spec import builtin_specs_dir, load_specs

__all__ = ["CATALOGUE", "Detection", "SpecMutation", "detect", "detection_table", "mutated_specs"]

Edit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SpecMutation:
    name: str
    provider: str
    model: str
    expect: frozenset[tuple[str, str]]  # (kind, severity) of every finding it must cause
    edit: Edit
    what: str
    # Requests per check: a distribution needs more finished tasks than a rule does
    # (latencies doubled stand out from about 20; 40 makes a miss vanishingly rare).
    examples: int = 8


def _model(model: str, *path: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        node = doc["models"][model]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


def _at(*path: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        node = doc
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    return edit


def _drop(*path: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        node = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return edit


def _both(*edits: Edit) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        for one in edits:
            one(doc)

    return edit


def _slower(factor: float) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        for rule in doc["timing"].values():
            if isinstance(rule, dict):
                rule["median"] *= factor
                rule["p95"] *= factor

    return edit


def _rename_field(state: str, old: str, new: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        output = doc["responses"]["query"]["states"][state]["output"]
        output[new] = output.pop(old)

    return edit


_T2V, _I2V = "happyhorse-1.0-t2v", "happyhorse-1.0-i2v"


def _m(
    name: str,
    provider: str,
    model: str,
    expect: set[tuple[str, str]],
    edit: Edit,
    what: str,
    examples: int = 8,
) -> SpecMutation:
    return SpecMutation(name, provider, model, frozenset(expect), edit, what, examples)


CATALOGUE: tuple[SpecMutation, ...] = (
    _m("range-narrowed", "dashscope", _T2V, {("range_narrowed", "breaking")},
       _model(_T2V, "parameters", "duration", "max", value=10), "duration max 15 -> 10"),
    _m("range-widened", "dashscope", _T2V, {("range_widened", "changed")},
       _both(_model(_T2V, "parameters", "duration", "max", value=10_000),
             _model(_T2V, "parameters", "duration", "min", value=1)),
       "duration accepted from 1 to 10000"),
    _m("enum-narrowed", "dashscope", _T2V, {("enum_narrowed", "breaking")},
       _model(_T2V, "parameters", "resolution", "enum", value=["1080P"]), "720P dropped"),
    _m("anyfast-range-narrowed", "anyfast", _T2V, {("range_narrowed", "breaking")},
       _model(_T2V, "parameters", "duration", "max", value=10), "AnyFast duration max -> 10"),
    _m("default-duration", "dashscope", _T2V, {("default_changed", "changed")},
       _model(_T2V, "parameters", "duration", "default", value=3), "duration default 5 -> 3"),
    _m("default-resolution", "dashscope", _T2V, {("default_changed", "changed")},
       _model(_T2V, "parameters", "resolution", "default", value="720P"),
       "resolution default 1080P -> 720P"),
    _m("header-not-required", "dashscope", _T2V, {("header_not_required", "changed")},
       _at("operations", "create", "headers", value={}), "X-DashScope-Async no longer required"),
    _m("header-required", "dashscope", _T2V, {("header_required", "breaking")},
       _at("operations", "create", "headers", "X-DashScope-WorkSpace",
           value={"value": "default", "source": "mutation"}),
       "a new required header"),
    _m("status-renamed", "dashscope", _T2V, {("status_undeclared", "breaking")},
       _at("states", "vocabularies", "status", "RUNNING", value="PROCESSING"),
       "RUNNING is now PROCESSING"),
    _m("field-removed", "dashscope", _T2V, {("field_removed", "breaking")},
       _drop("responses", "create", "body", "request_id"), "create answer without request_id"),
    _m("field-added", "dashscope", _T2V, {("field_added", "new")},
       _at("responses", "query", "states", "SUCCEEDED", "output", "region", value="{region}"),
       "SUCCEEDED answer gains output.region"),
    _m("field-retyped", "dashscope", _T2V, {("field_type", "breaking")},
       _at("responses", "query", "states", "SUCCEEDED", "usage", "SR", value="{usage.sr}"),
       "usage.SR a number, not a string"),
    _m("field-moved", "dashscope", _T2V, {("field_removed", "breaking"), ("field_added", "new")},
       _rename_field("SUCCEEDED", "video_url", "result_url"),
       "output.video_url renamed output.result_url"),
    _m("error-code-renamed", "dashscope", _T2V, {("error_code", "breaking")},
       _both(_at("errors", "InvalidParam",
                 value={"status": 400, "message": "Invalid parameter.", "source": "mutation"}),
             _at("violations", "param_range", "error", value="InvalidParam")),
       "out-of-range answers code InvalidParam"),
    _m("error-status-changed", "dashscope", _T2V, {("http_status", "breaking")},
       _at("errors", "ModelNotFound", "status", value=400), "unknown model answers 400, not 404"),
    _m("error-message-changed", "dashscope", _T2V, {("error_message", "info")},
       _at("errors", "InvalidApiKey", "message", value="Invalid API-key provided!"),
       "a wrong key's message reworded"),
    _m("error-envelope-changed", "anyfast", _T2V, {("error_envelope", "breaking")},
       _at("responses", "error", "envelopes", "default",
           value={"code": "{error.code}", "msg": "{error.message}", "data": None}),
       "AnyFast errors carry msg, not message"),
    _m("unknown-id-status", "apiyi", _I2V, {("http_status", "breaking")},
       _at("errors", "TaskNotExist", "status", value=400), "unknown ids answer 400, not 404"),
    _m("result-expiry", "dashscope", _T2V, {("result_expiry", "changed")},
       _at("retention", "result_url", "seconds", value=3600), "result links live 1 h, not 24 h"),
    _m("result-refuses-auth", "dashscope", _T2V, {("result_authorization", "breaking")},
       _at("results", "refuses_authorization", "value", value=True),
       "result links refuse Authorization"),
    _m("result-fps", "dashscope", _T2V, {("result_property", "changed")},
       _at("results", "fps", "value", value=30), "videos at 30 fps, not 24"),
    _m("timing-doubled", "dashscope", _T2V, {("timing", "changed")},
       _slower(2.0), "every state takes twice as long", examples=40),
    _m("polling-limit", "dashscope", _T2V, {("polling_limit", "changed")},
       _at("limits", "poll_min_interval", value={"value": 5, "source": "mutation"}),
       "polls of one task closer than 5 s get 429"),
    _m("cancel-refused", "dashscope", _T2V, {("cancel", "breaking")},
       _at("operations", "cancel", "cancelable", value=[]), "PENDING tasks cannot be canceled"),
    _m("id-format", "dashscope", _T2V, {("id_format", "changed")},
       _model(_T2V, "task_id", value="hh-{uuid}"), "task ids gain an hh- prefix"),
    _m("media-tightened", "dashscope", _I2V, {("media_rule_tightened", "breaking")},
       _at("media_kinds", "image", "min_side", value=1200), "images need 1200 px sides"),
)  # fmt: skip


@dataclass(frozen=True)
class Detection:
    mutation: SpecMutation
    analysis: Analysis

    @property
    def found(self) -> frozenset[tuple[str, str]]:
        return frozenset((f.kind, f.severity) for f in self.analysis.findings)

    @property
    def ok(self) -> bool:
        return self.found == self.mutation.expect


def mutated_specs(directory: Path, provider: str, edit: Edit | None) -> Path:
    """A copy of the built-in specs in ``directory`` with ``provider``'s file edited."""
    shutil.copytree(builtin_specs_dir(), directory, dirs_exist_ok=True)
    if edit is not None:
        for path in directory.glob("*.yaml"):
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            if doc.get("provider") == provider:
                edit(doc)
                path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return directory


def detect(
    mutation: SpecMutation | None,
    *,
    provider: str | None = None,
    model: str | None = None,
    examples: int | None = None,
    workdir: Path | None = None,
) -> Analysis:
    """Serve the mutation from the mock, record a conformance run, analyse it against the spec.

    ``mutation=None`` is the control: the unedited mock, read against its own spec.
    """
    provider = mutation.provider if mutation else provider or "dashscope"
    model = mutation.model if mutation else model or _T2V
    if examples is None:
        examples = mutation.examples if mutation else 8
    with tempfile.TemporaryDirectory(prefix="paddock-drift-") as tmp:
        root = workdir or Path(tmp)
        served = load_specs(
            mutated_specs(root / "specs", provider, mutation.edit if mutation else None)
        )
        record = root / "run"
        run_checks(
            provider,
            specs=load_specs(),
            mock_specs=served,
            models=(model,),
            examples=examples,
            record=record,
            timing="realistic",
        )
        return analyze(load_run(record, provider), load_specs()[provider])


def detection_table(mutations: tuple[SpecMutation, ...] = CATALOGUE) -> tuple[str, bool]:
    """Is every mutation detected, and the control clean? The table, and the verdict."""
    rows = [("mutation", "provider", "expected", "found", "result")]
    ok = True
    models = {m.provider: m.model for m in reversed(mutations)}
    for provider in sorted(models):
        control = detect(None, provider=provider, model=models[provider])
        found = sorted({(f.kind, f.severity) for f in control.findings})
        clean = not found
        ok &= clean
        rows.append(
            (
                "(none: the unedited mock)",
                provider,
                "no findings",
                _pairs(found) or "no findings",
                "ok" if clean else "FALSE FINDINGS",
            )
        )
    for mutation in mutations:
        detection = Detection(mutation, detect(mutation))
        ok &= detection.ok
        missing = mutation.expect - detection.found
        extra = detection.found - mutation.expect
        result = "ok" if detection.ok else "MISSED " * bool(missing) + "EXTRA" * bool(extra)
        rows.append(
            (
                mutation.name,
                mutation.provider,
                _pairs(mutation.expect),
                _pairs(detection.found) or "nothing",
                result.strip(),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4] for r in rows
    ]
    detected = sum(1 for r in rows[1:] if r[4] == "ok")
    lines.append(f"\n{detected} of {len(rows) - 1} rows as expected")
    return "\n".join(lines), ok


def _pairs(pairs: Any) -> str:
    return ", ".join(f"{kind} ({severity})" for kind, severity in sorted(pairs))
