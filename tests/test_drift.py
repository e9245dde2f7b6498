"""Drift detection: a catalogue of provider changes is found exactly, and nothing else is.

The mock plays an "upstream" built from an edited spec (one mutation at a
time), a recorded conformance run is made against it, and the analysis reads
the run against the unedited spec. Also: runs over real HTTP through the CLI,
baselines, and no key ever written to a run or a report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from contracts.conformance.runner import MOCK_KEYS
from contracts.drift.analyze import SEVERITIES
from contracts.drift.mutations import CATALOGUE, detection_table, mutated_specs
from contracts.spec import load_specs
from tests.conftest import LiveServer

_T2V = "happyhorse-1.0-t2v"


def _paddock(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "paddock", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_the_catalogue_covers_every_kind_of_drift_the_issue_names() -> None:
    kinds = {kind for m in CATALOGUE for kind, _ in m.expect}
    assert len(CATALOGUE) >= 20
    assert {
        "http_status", "error_envelope", "field_added", "field_removed", "field_type",
        "status_undeclared", "range_narrowed", "range_widened", "default_changed",
        "header_not_required", "header_required", "error_code", "error_message",
        "result_expiry", "result_authorization", "result_property", "timing", "polling_limit",
    } <= kinds  # fmt: skip
    assert {s for m in CATALOGUE for _, s in m.expect} == set(SEVERITIES)


def test_every_mutation_is_found_with_its_kind_and_severity_and_nothing_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table, ok = detection_table()
    with capsys.disabled():
        print("\n" + table)
    assert ok, table
    assert table.count("\n") >= len(CATALOGUE) + 3  # the control rows and one per mutation


def test_drift_run_and_drift_over_real_http(
    tmp_path: Path, serve: Callable[..., LiveServer]
) -> None:
    """``paddock drift run --target URL`` against a served, mutated mock; then ``paddock drift``."""
    narrowed = next(m for m in CATALOGUE if m.name == "range-narrowed")
    upstream = serve(
        specs=load_specs(mutated_specs(tmp_path / "specs", "dashscope", narrowed.edit)),
        timing="fast",
        speed=20,
        api_keys=list(MOCK_KEYS),  # a mock taking any key is drift too (auth_invalid)
    )
    reports = tmp_path / "reports"
    recorded = _paddock(
        "drift", "run", "--provider", "dashscope", "--target", f"{upstream.url}/dashscope",
        "--model", _T2V, "--examples", "4", "--reports", str(reports), "--quiet",
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    runs = list((reports / "runs" / "dashscope").iterdir())
    assert len(runs) == 1 and (runs[0] / "dashscope.manifest.json").is_file()
    manifest = json.loads((runs[0] / "dashscope.manifest.json").read_text())
    assert manifest["timing"] == "fast" and manifest["provider"] == "dashscope"

    found = _paddock(
        "drift", "--provider", "dashscope", "--reports", str(reports), "--format", "json"
    )
    assert found.returncode == 1, found.stdout + found.stderr  # breaking drift
    report = json.loads(found.stdout)
    assert {(f["kind"], f["severity"]) for f in report["findings"]} == {
        ("range_narrowed", "breaking")
    }
    finding = report["findings"][0]
    assert finding["rule"] == f"models.{_T2V}.parameters.duration"
    assert "3..10" in finding["suggestion"] and finding["source"]
    # A fast-timed mock is not the spec's timing: said in a note, not reported as drift.
    assert any("timing not judged" in note for note in report["notes"])


def test_an_unchanged_upstream_exits_0_and_a_baseline_dates_the_findings(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    first = _paddock(
        "drift", "run", "--provider", "anyfast", "--model", _T2V, "--examples", "4",
        "--reports", str(reports), "--quiet",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    clean = _paddock("drift", "--provider", "anyfast", "--reports", str(reports))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no drift" in clean.stdout.lower()

    # The same run read against a spec that has since moved: the run now disagrees.
    moved = tmp_path / "moved"
    mutated_specs(moved, "anyfast", _narrow_duration)
    against = _paddock(
        "drift", "--provider", "anyfast", "--reports", str(reports),
        "--spec", str(moved / "anyfast.yaml"), "--format", "json",
    )  # fmt: skip
    assert against.returncode == 0, against.stderr  # widened, relative to that spec: not breaking
    kinds = {f["kind"] for f in json.loads(against.stdout)["findings"]}
    assert kinds == {"range_widened"}

    baseline = next((reports / "runs" / "anyfast").iterdir())
    second = _paddock(
        "drift", "run", "--provider", "anyfast", "--model", _T2V, "--examples", "4",
        "--reports", str(reports), "--quiet",
    )  # fmt: skip
    assert second.returncode == 0
    dated = _paddock(
        "drift", "--provider", "anyfast", "--reports", str(reports), "--baseline",
        str(baseline), "--spec", str(moved / "anyfast.yaml"), "--format", "json",
    )  # fmt: skip
    report = json.loads(dated.stdout)
    assert report["baseline"] == str(baseline)
    manifest = json.loads((baseline / "anyfast.manifest.json").read_text())
    assert {f["since"] for f in report["findings"]} == {manifest["time"]}  # seen since then


def _narrow_duration(doc: dict[str, object]) -> None:
    models = doc["models"]
    assert isinstance(models, dict)
    models[_T2V]["parameters"]["duration"]["max"] = 10


def test_no_key_reaches_a_run_or_a_report(tmp_path: Path, serve: Callable[..., LiveServer]) -> None:
    key, second = "sk-drift-secret-key-9f8e7d", "sk-drift-second-key-1a2b3c"
    upstream = serve(timing="fast", speed=20, api_keys=[key, second])
    reports = tmp_path / "reports"
    env = {"DASHSCOPE_API_KEY": key, "PADDOCK_SECOND_KEY": second}
    recorded = _paddock(
        "drift", "run", "--provider", "dashscope", "--target", "live",
        "--base-url", f"{upstream.url}/dashscope", "--budget", "2", "--model", _T2V,
        "--examples", "2", "--reports", str(reports), env=env,
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    outputs = [recorded.stdout + recorded.stderr]
    for fmt in ("markdown", "html", "json", "junit", "github"):
        out = tmp_path / f"report.{fmt}"
        result = _paddock(
            "drift", "--provider", "dashscope", "--reports", str(reports), "--format", fmt,
            "--out", str(out), env=env,
        )  # fmt: skip
        assert result.returncode in (0, 1), result.stderr
        outputs += [result.stdout + result.stderr, out.read_text()]
    written = [p.read_text() for p in reports.rglob("*") if p.is_file()]
    assert written and any("Bearer REDACTED" in text for text in written)
    for text in outputs + written:
        assert key not in text and second not in text


def test_drift_mistakes_are_one_line_with_exit_2(tmp_path: Path) -> None:
    cases = [
        (["drift", "--provider", "dashscope", "--reports", str(tmp_path)], "drift run"),
        (["drift", "--provider", "dashscope", "--run", str(tmp_path / "nope")], "no run"),
        (["drift", "--provider", "nobody", "--run", str(tmp_path)], "unknown provider"),
        (["drift"], "--provider"),
        (["drift", "run", "--provider", "dashscope", "--target", "ftp://x"], "--target"),
    ]
    for args, words in cases:
        result = _paddock(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, result.stderr)
    assert not (tmp_path / "reports").exists()  # a run that could not be made leaves nothing
