"""Create and poll throughput of paddock, its bare ceiling and its peers, side by side.

Every contender gets the same wrk flags and the same two requests. Runs
alternate within each round (the order rotates round by round), so drift in
a shared machine (other load, CPU frequency) hits all of them alike, and the
median over rounds damps the outliers a 2-core box produces. A contender that
answers anything but 2xx, or drops a connection, is void: a server answering
errors is fast for the wrong reason, so its numbers are not shown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import Server, megabytes
from bench.traffic import (
    CREATE_BODY,
    CREATE_HEADERS,
    CREATE_PATH,
    POLL_HEADERS,
    POLL_PREFIX,
    static_script,
)
from bench.wrk import Wrk, WrkResult

__all__ = ["ROUTES", "TARGETS", "Contender", "Target", "measure", "report", "write_scripts"]

ROUTES = ("create", "poll")


@dataclass
class Contender:
    """One server in the comparison, and what it measured."""

    key: str  # "paddock", "bare", "prism", "wiremock", "paddock-w2"
    label: str  # what the table calls it
    server: Server
    task_id: str  # the task its poll route asks for
    void: str | None = None
    helpers: list[Server] = field(default_factory=list)  # e.g. its Redis; counted in its RSS
    samples: dict[str, list[WrkResult]] = field(default_factory=dict)
    rss: int | None = None

    def url(self, route: str) -> str:
        return self.server.url(CREATE_PATH if route == "create" else POLL_PREFIX + self.task_id)

    def median(self, route: str) -> float | None:
        runs = self.samples.get(route)
        return None if self.void or not runs else statistics.median(r.rps for r in runs)


@dataclass(frozen=True)
class Target:
    """``subject`` must do at least ``minimum[route]`` times ``reference``'s req/s."""

    subject: str
    reference: str
    minimum: dict[str, float]


# Issue 11's targets. paddock is one worker with the memory store, full
# validation, state and journal; paddock-w2 is two workers sharing Redis.
TARGETS = (
    Target("paddock", "prism", {"create": 5.0, "poll": 5.0}),
    Target("paddock", "bare", {"create": 0.35, "poll": 0.50}),
    Target("paddock-w2", "wiremock", {"create": 0.40, "poll": 0.80}),
)
# Printed for context with no target: how far one worker is from WireMock.
CONTEXT = (("paddock", "wiremock"),)


def write_scripts(directory: Path) -> dict[str, Path]:
    """The two static wrk scripts; the URL on wrk's command line says where they go."""
    return {
        "create": static_script(directory / "create.lua", "POST", CREATE_HEADERS, CREATE_BODY),
        "poll": static_script(directory / "poll.lua", "GET", POLL_HEADERS, None),
    }


def _run(
    wrk: Wrk, contender: Contender, route: str, script: Path, seconds: int
) -> WrkResult | None:
    """One run; a run with errors voids the contender (and answers None)."""
    result = wrk.run(contender.url(route), script, seconds)
    if result.errors:
        contender.void = (
            f"{route} answered {', '.join(result.errors)} at {contender.url(route)}; "
            f"server log:\n{contender.server.log_tail(5)}"
        )
        return None
    return result


def _warm(wrk: Wrk, contender: Contender, scripts: dict[str, Path], chunk: int, budget: int) -> int:
    """Load ``contender`` until each route's rate settles; the seconds it took.

    A JIT runtime (WireMock's JVM, Prism's V8) is slow until it has compiled
    its hot paths, and slower still on a busy machine: it is measured warm,
    as it would run in a long test session. Settled means within a tenth of
    the previous chunk on both routes; ``budget`` bounds the wait.
    """
    last: dict[str, float] = {}
    spent = 0
    while spent < budget:
        settled = True
        for route in ROUTES:
            result = _run(wrk, contender, route, scripts[route], chunk)
            spent += chunk
            if result is None:
                return spent
            previous = last.get(route)
            last[route] = result.rps
            if previous is None or abs(result.rps - previous) > 0.1 * previous:
                settled = False
        if settled:
            break
    return spent


def measure(
    wrk: Wrk,
    contenders: list[Contender],
    scripts: dict[str, Path],
    *,
    rounds: int,
    duration: int,
    warmup: int,
    max_warmup: int,
    say: Callable[[str], None],
) -> None:
    """Warm each contender until its rates settle, then alternate them round by round."""
    for contender in contenders:
        spent = _warm(wrk, contender, scripts, warmup, max(max_warmup, warmup))
        say(f"  {contender.key}: warmed for {spent} s")
    for n in range(rounds):
        # Rotate who goes first, so nobody always runs on a "fresher" machine.
        shift = n % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        for route in ROUTES:
            for contender in order:
                if contender.void:
                    continue
                result = _run(wrk, contender, route, scripts[route], duration)
                if result is None:
                    say(f"  {contender.key} is void: {contender.void}")
                    continue
                contender.samples.setdefault(route, []).append(result)
                say(
                    f"  round {n + 1}/{rounds}  {route:<6} {contender.key:<10} "
                    f"{result.rps:>9.1f} req/s  p50 {result.p50:>8}  p99 {result.p99:>8}"
                )
    for contender in contenders:
        contender.rss = contender.server.rss() + sum(h.rss() for h in contender.helpers)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _ratio(by_key: dict[str, Contender], subject: str, reference: str, route: str) -> float | None:
    top = by_key[subject].median(route) if subject in by_key else None
    bottom = by_key[reference].median(route) if reference in by_key else None
    return top / bottom if top is not None and bottom else None


def report(contenders: list[Contender], skipped: dict[str, str]) -> list[str]:
    """req/s medians and RSS per contender, then each target's ratio with PASS or BELOW.

    ``skipped`` maps a contender's key to why it did not run; a target that
    needs it says so instead of a ratio.
    """
    rows: list[tuple[str, ...]] = [("server", "create req/s", "poll req/s", "RSS after")]
    for c in contenders:
        if c.void:
            rows.append((c.label, "void", "void", ""))
            continue
        medians = [c.median(route) for route in ROUTES]
        cells = [f"{m:,.0f}" if m is not None else "-" for m in medians]
        rows.append((c.label, *cells, megabytes(c.rss) if c.rss is not None else ""))
    lines = _table(rows)
    lines += [f"{key}: skipped, {why}" for key, why in skipped.items()]
    lines += [f"{c.key}: VOID, {c.void}" for c in contenders if c.void]
    lines.append("")
    by_key = {c.key: c for c in contenders}
    rows = [("target", "create", "poll")]
    unmeasured = []
    for target in TARGETS:
        name = f"{target.subject} / {target.reference}"
        absent = [
            f"{key} {skipped.get(key, 'did not run') if key not in by_key else 'was void'}"
            for key in (target.subject, target.reference)
            if key not in by_key or by_key[key].void
        ]
        if absent:
            unmeasured.append(f"{name}: not measured ({'; '.join(absent)})")
            continue
        cells = []
        for route in ROUTES:
            ratio = _ratio(by_key, target.subject, target.reference, route)
            minimum = target.minimum[route]
            verdict = "PASS" if ratio is not None and ratio >= minimum else "BELOW"
            # Truncated, not rounded: 0.346 must not read as a 0.35 that fails its 0.35.
            shown = f"{math.floor(ratio * 100) / 100:.2f}x" if ratio is not None else "?"
            cells.append(f"{shown} (>= {minimum:.2f}x) {verdict}")
        rows.append((name, *cells))
    for subject, reference in CONTEXT:
        ratios = [_ratio(by_key, subject, reference, route) for route in ROUTES]
        if all(r is not None for r in ratios):
            rows.append((f"{subject} / {reference}", *(f"{r:.2f}x (no target)" for r in ratios)))
    return lines + _table(rows) + unmeasured
