"""How fast the conformance suites run: checks and examples per second, all providers.

Runs ``paddock check`` for every provider against the in-process mock at the
default example count, as CI does, and prints checks (one check for one
model) and examples (one request case) per second, with the whole run as a
share of the two-minute budget the suites are held to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from contracts.conformance.runner import run_checks
from contracts.spec import load_specs

__all__ = ["SuiteRun", "run_suites"]

BUDGET_SECONDS = 120.0


@dataclass(frozen=True)
class SuiteRun:
    provider: str
    checks: int
    examples: int
    seconds: float
    failed: bool


def run_suites(examples: int = 20) -> list[SuiteRun]:
    """One full mock run per provider; a failing suite is reported, not hidden."""
    specs = load_specs()
    runs = []
    for provider in specs.names():
        started = time.perf_counter()
        report = run_checks(provider, specs=specs, examples=examples)
        seconds = time.perf_counter() - started
        checks = sum(1 for o in report.outcomes if o.status != "skip")
        runs.append(SuiteRun(provider, checks, report.examples, seconds, report.failed))
    return runs


def lines(runs: list[SuiteRun]) -> list[str]:
    out = []
    for run in runs:
        state = "FAILED" if run.failed else "all hold"
        out.append(
            f"conformance {run.provider}: {run.checks} checks, {run.examples} examples in "
            f"{run.seconds:.1f} s = {run.checks / run.seconds:.1f} checks/s, "
            f"{run.examples / run.seconds:.0f} examples/s ({state})"
        )
    total = sum(r.seconds for r in runs)
    checks = sum(r.checks for r in runs)
    out.append(
        f"conformance, all providers: {checks} checks in {total:.1f} s = "
        f"{checks / total:.1f} checks/s; {total / BUDGET_SECONDS:.2f}x of the "
        f"{BUDGET_SECONDS:.0f} s budget"
    )
    return out


if __name__ == "__main__":  # python -m bench.checks
    print("\n".join(lines(run_suites())))
