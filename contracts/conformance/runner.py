"""Runs the checks for one provider against one target and reports them.

Hypothesis draws the requests (and, where a check is free, shrinks a
failure to the smallest request that still shows it). Checks that create a
billable task run within the budget: unlimited against mocks, ``--budget``
tasks against the live provider, where each is the cheapest request the
spec allows and anything left running is canceled.
"""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable

from contracts.conformance import checks
from contracts.conformance.cases import (
    Case,
    boundary_drafts,
    cheapest_draft,
    invalid_drafts,
    materialize,
    valid_drafts,
)
from contracts.conformance.checks import (
    Budget,
    BudgetSpent,
    CheckFailed,
    CheckSkipped,
    Context,
)
from contracts.conformance.targets import HttpTarget, MockTarget, Target, TargetError
from contracts.lifecycle import TimingMode
from contracts.spec import Spec, SpecSet, load_specs
from contracts.task import TaskRequest
from contracts.validate import Violation

__all__ = ["Failure", "Outcome", "Report", "run_checks"]

MOCK_KEYS = ("sk-paddock-check-a-0123456789", "sk-paddock-check-b-0123456789")

# (name, needs a create, examples as a share of --examples, the check)
_PER_MODEL: tuple[tuple[str, bool, float, Callable[[Context, Case], None]], ...] = (
    ("rejected", False, 1.0, checks.rejected),
    ("accepted", True, 1.0, checks.accepted),
    ("lifecycle", True, 0.1, checks.lifecycle),
    ("cancel", True, 0.05, checks.cancel),
    ("result", True, 0.1, checks.result),
    ("auth-isolation", True, 0.05, checks.auth_isolation),
)
_PER_PROVIDER: tuple[tuple[str, Callable[[Context], None]], ...] = (
    ("auth", checks.auth_missing_and_wrong),
    ("unknown-id", checks.unknown_id),
)
CHECK_NAMES = tuple(n for n, _ in _PER_PROVIDER) + tuple(n for n, *_ in _PER_MODEL) + ("schema",)


@dataclass(frozen=True)
class Failure:
    check: str
    model: str | None
    message: str
    curl: str | None


@dataclass
class Outcome:
    check: str
    model: str | None
    passed: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.failures:
            return "FAIL"
        return "skip" if self.skipped and not self.passed else "ok"


@dataclass
class Report:
    provider: str
    target: str
    outcomes: list[Outcome]
    seconds: float
    budget_used: int
    budget: int | None

    @property
    def failed(self) -> bool:
        return any(o.failures for o in self.outcomes)

    @property
    def examples(self) -> int:
        return sum(o.passed + len(o.failures) for o in self.outcomes)

    def text(self) -> str:
        """The summary table by check and model, then each failure with its reproduction."""
        rows = [("check", "model", "result", "examples", "note")]
        for o in self.outcomes:
            note = o.failures[0].message if o.failures else (o.skipped or "")
            rows.append(
                (o.check, o.model or "*", o.status, str(o.passed + len(o.failures)), _cut(note, 70))
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            f"paddock check: {self.provider} against {self.target}, "
            f"{self.examples} examples in {self.seconds:.1f} s, "
            f"billable tasks {self.budget_used}"
            + (f" of {self.budget}" if self.budget is not None else "")
        ]
        for row in rows:
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4]
            )
        failures = [f for o in self.outcomes for f in o.failures]
        for i, failure in enumerate(failures, 1):
            lines += ["", f"{i}. {failure.check} [{failure.model or '*'}]: {failure.message}"]
            if failure.curl:
                lines.append(f"   reproduce: {failure.curl}")
        verdict = f"{len(failures)} check(s) failed" if failures else "all checks hold"
        return "\n".join([*lines, "", verdict])

    def junit(self) -> str:
        suite = ET.Element(
            "testsuite",
            name=f"paddock.{self.provider}",
            tests=str(len(self.outcomes)),
            failures=str(sum(1 for o in self.outcomes if o.failures)),
            skipped=str(sum(1 for o in self.outcomes if o.status == "skip")),
            time=f"{self.seconds:.3f}",
        )
        for o in self.outcomes:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"paddock.{self.provider}.{o.check}",
                name=o.model or self.provider,
                time=f"{o.seconds:.3f}",
            )
            if o.failures:
                failure = ET.SubElement(case, "failure", message=o.failures[0].message)
                failure.text = "\n".join(f"{f.message}\n{f.curl or ''}" for f in o.failures)
            elif o.status == "skip":
                ET.SubElement(case, "skipped", message=o.skipped or "")
        return ET.tostring(suite, encoding="unicode")


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- building a target -----------------------------------------------------------------------------


def make_target(
    spec: Spec,
    specs: SpecSet,
    target: str,
    *,
    base_url: str | None = None,
    second_key_env: str = "PADDOCK_SECOND_KEY",
    mock_specs: SpecSet | None = None,
    timing: TimingMode = "fast",
) -> Target:
    """``mock`` (in process, timed by ``timing``), ``live`` (documented host or ``base_url``)
    or a URL."""
    if target == "mock":
        return MockTarget(spec, mock_specs or specs, *MOCK_KEYS, timing=timing)
    key = os.environ.get(spec.api_key_env, "").strip()
    second = os.environ.get(second_key_env, "").strip() or None
    if target == "live":
        if not key:
            raise TargetError(
                f"--target live needs a key: set {spec.api_key_env} "
                "(it is never printed or recorded)"
            )
        return HttpTarget(spec, base_url or spec.base_url(), key, second, "live")
    if not target.startswith(("http://", "https://")):
        raise TargetError(f"--target must be mock, live or an http(s) URL, not {target!r}")
    return HttpTarget(spec, target, key or MOCK_KEYS[0], second, "url")


# -- running ---------------------------------------------------------------------------------------


def run_checks(
    provider: str,
    *,
    target: str = "mock",
    specs: SpecSet | None = None,
    models: Sequence[str] = (),
    examples: int = 20,
    budget: int | None = None,
    record: Path | None = None,
    base_url: str | None = None,
    only: Iterable[str] = (),
    seed_value: int = 0,
    progress: Callable[[str], None] | None = None,
    mock_specs: SpecSet | None = None,
    timing: TimingMode = "fast",
) -> Report:
    """Every check for one provider; raises TargetError when the run cannot be made.

    ``specs`` is what the checks expect; ``mock_specs``, when given, is what
    the in-process mock serves instead (the proof that a wrong server fails).
    """
    specs = specs or load_specs()
    spec = specs[provider]
    unknown = [m for m in models if m not in spec.models]
    if unknown:
        raise TargetError(
            f"{provider} has no model {unknown[0]!r}; known: {', '.join(spec.models)}"
        )
    wanted = set(only) or set(CHECK_NAMES)
    bad = wanted - set(CHECK_NAMES)
    if bad:
        raise TargetError(f"no check named {sorted(bad)[0]!r}; known: {', '.join(CHECK_NAMES)}")
    if record is not None:
        # Before the target: a run that cannot be recorded must not leave a target open.
        record.mkdir(parents=True, exist_ok=True)
        recording = (record / f"{provider}.jsonl").open("a", encoding="utf-8")
    tgt = make_target(spec, specs, target, base_url=base_url, mock_specs=mock_specs, timing=timing)
    live = tgt.kind == "live"
    if budget is None and live:
        budget = 0
    if live:
        tgt.pace = max(spec.poll_initial / 2, 0.5)
    ctx = Context(tgt, spec, Budget(budget))
    if tgt.virtual:
        # Virtual time is free: a task may take far longer than the spec's slowest
        # before a check calls it stuck (a provider twice as slow is drift, not a hang).
        ctx.wait_limit = max(ctx.wait_limit, 20 * sum(t.p95 for t in spec.timing.values()))
    if record is not None:
        tgt.record_to = recording
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    say = progress or (lambda _: None)
    try:
        _reachable(tgt)
        for name, fn in _PER_PROVIDER:
            if name in wanted:
                say(f"{provider}: {name}")
                outcomes.append(_once(ctx, name, fn))
        for model in models or list(spec.models):
            for name, billable, share, check in _PER_MODEL:
                if name not in wanted:
                    continue
                say(f"{provider}: {name} [{model}]")
                count = max(1, round(examples * share))
                first = len(ctx.created)
                outcomes.append(
                    _per_model(ctx, name, model, check, billable, count, live, seed_value)
                )
                if record is not None and name == "accepted":
                    _settle(ctx, ctx.created[first:], model)
        if "schema" in wanted:
            say(f"{provider}: schema")
            outcomes.append(_schema(ctx, examples, live, seed_value))
    finally:
        _cancel_left(ctx)
        if tgt.record_to is not None:
            tgt.record_to.close()
            _manifest(record, spec, tgt, ctx, started, examples=examples, seed=seed_value)
        tgt.close()
    return Report(
        provider,
        tgt.kind if tgt.kind != "url" else tgt.redactor.url(tgt.base_url),
        outcomes,
        time.perf_counter() - started,
        ctx.budget.used,
        budget,
    )


def _reachable(target: Target) -> None:
    try:
        target.send(
            "GET", target.spec.operations["query"].path.replace("{task_id}", "paddock-probe")
        )
    except TargetError as exc:
        raise TargetError(f"the target does not answer: {exc}") from None
    target.exchanges.clear()


def _failure(ctx: Context, name: str, model: str | None, exc: CheckFailed) -> Failure:
    curl = ctx.target.redactor.curl(exc.exchange) if exc.exchange else None
    return Failure(name, model, ctx.target.redactor.text(exc.message), curl)


def _once(ctx: Context, name: str, fn: Callable[[Context], None]) -> Outcome:
    ctx.target.check, ctx.target.model = name, None
    outcome = Outcome(name, None)
    started = time.perf_counter()
    try:
        fn(ctx)
        outcome.passed = 1
    except CheckFailed as exc:
        outcome.failures.append(_failure(ctx, name, None, exc))
    except CheckSkipped as exc:
        outcome.skipped = str(exc)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _per_model(
    ctx: Context,
    name: str,
    model: str,
    check: Callable[[Context, Case], None],
    billable: bool,
    count: int,
    live: bool,
    seed_value: int,
) -> Outcome:
    ctx.target.check, ctx.target.model = name, model
    outcome = Outcome(name, model)
    started = time.perf_counter()
    key = ctx.target.key
    spec = ctx.spec
    if name == "auth-isolation" and ctx.target.second_key is None:
        outcome.skipped = "needs a second key (PADDOCK_SECOND_KEY)"
        return outcome
    try:
        if billable and live:
            # Live and billable: the cheapest request the spec allows, once per budget unit.
            case = materialize(spec, cheapest_draft(spec, model), key, ctx.target.host_media)
            if case is None:
                outcome.skipped = "needs media at a public URL"
            else:
                check(ctx, case)
                outcome.passed = 1
        elif name == "rejected":
            # Every breakable rule at least once; the examples are shared among them.
            strategies = invalid_drafts(spec, model)
            each = max(1, -(-count // max(len(strategies), 1)))
            for strategy in strategies:
                _hypothesis(ctx, outcome, strategy, check, each, shrink=True, seed_value=seed_value)
        else:
            if name == "accepted":
                for draft in boundary_drafts(spec, model):
                    case = materialize(spec, draft, key, ctx.target.host_media)
                    if case is not None and isinstance(case.expected, TaskRequest):
                        check(ctx, case)
                        outcome.passed += 1
            valid = valid_drafts(spec, model).map(lambda d: (d, None))
            _hypothesis(
                ctx, outcome, valid, check, count, shrink=not billable, seed_value=seed_value
            )
    except BudgetSpent:
        outcome.skipped = f"budget spent ({ctx.budget.used} billable tasks); raise --budget"
    except CheckFailed as exc:
        outcome.failures.append(_failure(ctx, name, model, exc))
    outcome.seconds = time.perf_counter() - started
    return outcome


def _hypothesis(
    ctx: Context,
    outcome: Outcome,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Context, Case], None],
    count: int,
    *,
    shrink: bool,
    seed_value: int,
) -> None:
    want_valid = check is not checks.rejected
    ran = 0

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink)
        if shrink
        else (Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=__import__("hypothesis").Verbosity.quiet,
    )
    @given(strategy)
    def run(pair: Any) -> None:
        nonlocal ran
        draft, mutation = pair
        case = materialize(ctx.spec, draft, ctx.target.key, ctx.target.host_media, mutation)
        assume(case is not None)
        assert case is not None
        if want_valid:
            assume(isinstance(case.expected, TaskRequest))
        else:
            assume(
                isinstance(case.expected, Violation) and case.expected.kind in ctx.spec.violations
            )
        check(ctx, case)
        ran += 1

    try:
        run()
    except Unsatisfiable:
        if not ran:
            outcome.skipped = "no request could be built here (media need a public URL)"
    except Flaky as exc:
        # A server whose answers vary between identical requests (random task
        # timings, say) makes hypothesis call the failure flaky: it is still the
        # check's failure, said in the check's own words.
        failed = _first_check_failure(exc)
        if failed is None:
            raise
        raise failed from None
    finally:
        outcome.passed += ran


def _first_check_failure(exc: BaseException) -> CheckFailed | None:
    if isinstance(exc, CheckFailed):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _first_check_failure(inner)
        if found is not None:
            return found
    return None


def _schema(ctx: Context, examples: int, live: bool, seed_value: int) -> Outcome:
    ctx.target.check, ctx.target.model = "schema", None
    outcome = Outcome("schema", None)
    started = time.perf_counter()
    try:
        from contracts.openapi import run_schema_checks
    except ImportError:  # pragma: no cover - the module ships with paddock
        outcome.skipped = "schemathesis is not installed"
        return outcome
    target = ctx.target
    prefix = target.base_url

    def send(method: str, path: str, headers: Any, body: bytes | None) -> tuple[int, Any, bytes]:
        reply = target.send(method, path, headers=dict(headers), body=body, key=None)
        return reply.status, reply.headers, reply.body

    result = run_schema_checks(
        ctx.spec,
        send,
        api_key=target.key,
        max_examples=max(examples // 2, 5),
        seed=seed_value,
        include_create=not live,
    )
    outcome.passed = result.cases - len(result.problems)
    for problem in result.problems:
        from contracts.conformance.targets import Exchange

        exchange = Exchange(
            "schema",
            None,
            problem.method,
            prefix + problem.path,
            dict(problem.headers),
            problem.body,
            time.time(),
        )
        outcome.failures.append(
            Failure(
                "schema",
                None,
                f"{problem.operation}: {problem.check}: {target.redactor.text(problem.message)}",
                target.redactor.curl(exchange),
            )
        )
    outcome.seconds = time.perf_counter() - started
    return outcome


def _settle(ctx: Context, task_ids: Sequence[str], model: str) -> None:
    """Read the tasks a check created once more, so a recording holds how long each state took.

    The drift analysis measures time per state from the times a finished task
    reports, and the accepted check never follows its tasks to the end. On a
    virtual clock the run jumps far past the spec's slowest tasks (and well
    short of their retention) first; elsewhere nothing waits, and what has
    finished by now is what is read.
    """
    spec = ctx.spec
    if ctx.target.virtual:
        slowest = sum(t.p95 for t in spec.timing.values())
        ctx.target.wait(min(10 * slowest, spec.task_retention / 2))
    ctx.target.check, ctx.target.model = "settle", model
    for task_id in dict.fromkeys(t for t in task_ids if t):
        try:
            ctx.target.send(
                "GET",
                spec.operations["query"].path.replace("{task_id}", task_id),
                note={"expect": "settle"},
            )
        except TargetError:
            return


def _cancel_left(ctx: Context) -> None:
    """Live runs cancel whatever they created and is still cancelable."""
    if ctx.target.kind != "live" or "cancel" not in ctx.spec.operations:
        return
    ctx.target.check = "cleanup"
    for task_id in ctx.created:
        try:
            ctx.target.send(
                "POST", ctx.spec.operations["cancel"].path.replace("{task_id}", task_id)
            )
        except TargetError:
            continue


def _manifest(
    record: Path | None,
    spec: Spec,
    target: Target,
    ctx: Context,
    started: float,
    *,
    examples: int,
    seed: int,
) -> None:
    if record is None:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        toolkit = version("paddock")
    except PackageNotFoundError:  # pragma: no cover - a source checkout without install
        toolkit = "0+unknown"
    manifest = {
        "provider": spec.provider,
        "target": target.kind if target.kind != "url" else target.redactor.url(target.base_url),
        "spec_digest": spec.digest,
        "toolkit": toolkit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.perf_counter() - started, 3),
        "budget_used": ctx.budget.used,
        "budget": ctx.budget.limit,
        "examples": examples,
        "seed": seed,
        # How the target's tasks are timed: the drift analysis compares time per
        # state with the spec only where it is the spec's ("realistic") or real.
        "timing": target.timing_mode(),
        "exchanges": f"{spec.provider}.jsonl",
    }
    (record / f"{spec.provider}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
