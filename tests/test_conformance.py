"""The conformance suites: they pass on the mock, and they catch a mock that is wrong.

The proof cases serve the in-process mock from a deliberately altered copy
of the specs while the checks read the real ones, and assert that the run
fails, in the check that should notice, with a message naming the change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.conformance import run_checks
from contracts.conformance.runner import MOCK_KEYS
from contracts.spec import SpecSet, builtin_specs_dir, load_specs
from tests.conftest import LiveServer, stored_tasks

PROVIDERS = ("dashscope", "apiyi", "anyfast")
CORE = ("auth", "unknown-id", "rejected", "accepted", "lifecycle", "cancel", "result")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_check_holds_on_the_unmodified_mock(provider: str, tmp_path: Path) -> None:
    report = run_checks(provider, examples=10, record=tmp_path)
    assert not report.failed, report.text()
    ran = {o.check for o in report.outcomes if o.passed}
    assert ran >= set(CORE) | {"auth-isolation"}
    models = {o.model for o in report.outcomes if o.check == "accepted"}
    assert models == set(load_specs()[provider].models)  # every model, no Python per model


def _mutated(tmp_path: Path, provider: str, change: Callable[[dict[str, Any]], None]) -> SpecSet:
    folder = tmp_path / "specs"
    shutil.copytree(builtin_specs_dir(), folder)
    path = folder / f"{provider}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_specs(folder)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split("/")
        node = doc
        for part in parents:
            node = node[part]
        if value is _DROP:
            del node[leaf]
        else:
            node[leaf] = value

    return change


_DROP = object()
T2V = "models/happyhorse-1.0-t2v/parameters"

# (what is wrong with the server, provider, the change, the check that must fail, words it says)
WRONG_SPECS = [
    ("a range shifted", "dashscope", _set(f"{T2V}/duration/max", 10), "accepted", "HTTP 400"),
    (
        "a status renamed",
        "dashscope",
        _set("states/vocabularies/status/RUNNING", "PROCESSING"),
        "lifecycle",
        "'PROCESSING'",
    ),
    (
        "an error code changed",
        "dashscope",
        _set("errors/InvalidParameter/code", "InvalidParam"),
        "rejected",
        "'InvalidParam'",
    ),
    (
        "a field dropped",
        "dashscope",
        _set("responses/create/body/request_id", _DROP),
        "accepted",
        "request_id",
    ),
    ("a default changed", "dashscope", _set(f"{T2V}/duration/default", 3), "result", "lasts 3"),
    (
        "a header no longer required",
        "dashscope",
        _set("operations/create/headers", {}),
        "rejected",
        "X-DashScope-Async",
    ),
    ("anyfast: a range shifted", "anyfast", _set(f"{T2V}/duration/min", 5), "accepted", "HTTP 400"),
    (
        "apiyi: an unknown id answered differently",
        "apiyi",
        _set("errors/TaskNotExist/status", 400),
        "unknown-id",
        "HTTP 404",
    ),
]


@pytest.mark.parametrize(
    ("label", "provider", "change", "check", "words"),
    WRONG_SPECS,
    ids=[w[0] for w in WRONG_SPECS],
)
def test_a_wrong_mock_fails_the_check_that_should_notice(
    label: str,
    provider: str,
    change: Callable[[dict[str, Any]], None],
    check: str,
    words: str,
    tmp_path: Path,
) -> None:
    wrong = _mutated(tmp_path, provider, change)
    report = run_checks(
        provider,
        examples=10,
        mock_specs=wrong,
        models=[
            next(
                m
                for m in ("happyhorse-1.0-t2v", "happyhorse-1.0-i2v")
                if m in wrong[provider].models
            )
        ],
        only=[*CORE],
    )
    assert report.failed, f"{label} went unnoticed:\n{report.text()}"
    failures = [f for o in report.outcomes for f in o.failures if f.check == check]
    assert failures, f"{label}: {check} did not fail:\n{report.text()}"
    assert any(words in f.message for f in failures), report.text()
    assert all(f.curl and f.curl.startswith("curl ") for f in failures)
    assert MOCK_KEYS[0] not in report.text()


def test_recorded_exchanges_are_redacted_and_complete(tmp_path: Path) -> None:
    report = run_checks("apiyi", examples=4, record=tmp_path, models=["happyhorse-1.0-i2v"])
    assert not report.failed, report.text()
    # "\n" only: fuzzed bodies may hold U+2028 and friends, which splitlines() splits on.
    lines = [line for line in (tmp_path / "apiyi.jsonl").read_text().split("\n") if line]
    assert len(lines) > 20
    text = "\n".join(lines)
    for key in MOCK_KEYS:
        assert key not in text
    records = [json.loads(line) for line in lines]
    assert {r["check"] for r in records} >= {"rejected", "accepted", "result"}
    first = records[0]
    assert {"method", "url", "headers", "body"} <= set(first["request"])
    assert {"status", "headers", "body", "elapsed_ms"} <= set(first["response"])
    signed = [r for r in records if "Signature=" in r["request"]["url"]]
    assert signed and all("Signature=REDACTED" in r["request"]["url"] for r in signed)
    manifest = json.loads((tmp_path / "apiyi.manifest.json").read_text())
    assert manifest["provider"] == "apiyi" and manifest["budget_used"] > 0


def _paddock(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paddock", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_check_command_exit_codes_junit_and_one_line_mistakes(tmp_path: Path) -> None:
    junit = tmp_path / "out.xml"
    ok = _paddock(
        "check", "--provider", "anyfast", "--model", "happyhorse-1.0-t2v", "--examples", "3",
        "--junit", str(junit), "--quiet",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all checks hold" in ok.stdout and "<testsuite" in junit.read_text()
    for args, words in [
        (("check", "--provider", "nope"), "unknown provider"),
        (("check", "--provider", "apiyi", "--model", "nope"), "no model 'nope'"),
        (("check", "--provider", "apiyi", "--target", "ftp://x"), "--target must be"),
        (
            ("check", "--provider", "apiyi", "--target", "http://127.0.0.1:9/apiyi"),
            "does not answer",
        ),
        (("check", "--provider", "apiyi", "--check", "bogus"), "no check named"),
    ]:
        result = _paddock(*args, "--quiet")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr


def test_live_mode_runs_only_free_checks_against_an_upstream(
    serve: Callable[..., LiveServer],
) -> None:
    """A second paddock serve plays the provider; live mode with no budget creates nothing."""
    key = "sk-live-upstream-key-000111"
    upstream = serve(timing="fast", api_keys=[key])
    result = _paddock(
        "check", "--provider", "dashscope", "--target", "live",
        "--base-url", f"{upstream.url}/dashscope", "--model", "happyhorse-1.0-t2v",
        "--examples", "4",
        env={"DASHSCOPE_API_KEY": key},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "billable tasks 0 of 0" in result.stdout
    assert "budget spent" in result.stdout  # the billable checks said why they did not run
    assert key not in result.stdout + result.stderr
    assert stored_tasks(upstream.state) == []  # nothing was created upstream
    missing = _paddock("check", "--provider", "dashscope", "--target", "live",
                       env={"DASHSCOPE_API_KEY": ""})  # fmt: skip
    assert missing.returncode == 2 and "DASHSCOPE_API_KEY" in missing.stderr


def test_the_pytest_plugin_reports_one_item_per_check_and_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "contracts.pytest_plugin", "-p", "no:cacheprovider",
         "--paddock-provider", "anyfast", "--paddock-examples", "2", "-q", "-rA"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "anyfast::rejected[happyhorse-1.0-r2v]" in result.stdout
    assert "anyfast::auth[*]" in result.stdout


def test_auth_is_skipped_against_a_mock_that_takes_any_key_and_checked_elsewhere(
    serve: Callable[..., LiveServer],
) -> None:
    """A newcomer's first check of a default mock holds; a host that should refuse still fails."""
    anyone = serve(timing="instant")
    skipped = _paddock(
        "check", "--provider", "dashscope", "--target", f"{anyone.url}/dashscope",
        "--check", "auth", "--quiet", env={"DASHSCOPE_API_KEY": "sk-mine"},
    )  # fmt: skip
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "start the mock with --api-key to check it" in skipped.stdout
    # Seen as a live host (no admin API asked), the same server taking a wrong key fails auth.
    accepted = _paddock(
        "check", "--provider", "dashscope", "--target", "live",
        "--base-url", f"{anyone.url}/dashscope", "--check", "auth", "--quiet",
        env={"DASHSCOPE_API_KEY": "sk-mine"},
    )  # fmt: skip
    assert accepted.returncode == 1, accepted.stdout + accepted.stderr
    listed = serve(timing="instant", api_keys=["sk-mine"])
    checked = _paddock(
        "check", "--provider", "dashscope", "--target", f"{listed.url}/dashscope",
        "--check", "auth", "--quiet", env={"DASHSCOPE_API_KEY": "sk-mine"},
    )  # fmt: skip
    assert checked.returncode == 0 and "auth   *      ok" in checked.stdout, checked.stdout
