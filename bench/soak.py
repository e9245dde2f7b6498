"""Soak and memory flatness: the life of many tasks, sent at full speed to one paddock.

The traffic is ``bench.traffic.mixed_script``: create, poll twice, download
the video the poll links to, over and over (a quarter creates, half polls, a
quarter downloads). paddock runs with ``--timing instant`` so a task is done
at its first poll and every download is of a finished task; the video is
rendered once before the clock starts, so the soak measures serving, not
encoding.

* Soak: ``--soak-seconds`` (60) of that traffic with zero errors (any
  non-2xx, socket error or answer of the wrong shape is one), the server's
  RSS printed at the start and the end.
* Flatness (``--flat``): the same traffic goes on to 3,000,000 requests; RSS
  after the first 100,000 and after the last must be within 10 %.

Both are one run against one server: the first 100,000 requests are the
soak's first segment, so a flatness run costs the soak nothing extra.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench import BenchError
from bench.servers import Fleet, Server, answers, create_task, megabytes, paddock_argv, request
from bench.traffic import POLL_HEADERS, POLL_PREFIX, mixed_script
from bench.wrk import Wrk, WrkResult

__all__ = ["FLAT_FIRST", "FLAT_TARGET", "FLAT_TOTAL", "run"]

FLAT_FIRST = 100_000
FLAT_TOTAL = 3_000_000
FLAT_TARGET = 0.10  # RSS may differ by this share between the two samples
FLAT_MAX_SECONDS = 3600  # bounds the flatness run on any machine
FLAT_STEP = 500_000  # requests between two progress lines of the flatness run


@dataclass(frozen=True)
class Segment:
    """One wrk run of the mixed traffic, and the server's memory right after it."""

    result: WrkResult
    seconds: float
    rss: int
    stored: int


def stored_tasks(server: Server) -> int:
    """How many tasks the server holds, from its admin health route."""
    status, raw = request(server.base + "/_paddock/health")
    tasks = json.loads(raw).get("tasks") if status == 200 else None
    return tasks if isinstance(tasks, int) else -1


def _first_task(server: Server) -> None:
    """Create, poll and download one task, so the one video shape is rendered before timing."""
    answer = create_task(server)
    output = answer["output"]
    assert isinstance(output, dict)
    status, raw = request(server.url(POLL_PREFIX + output["task_id"]), headers=POLL_HEADERS)
    url = json.loads(raw).get("output", {}).get("video_url") if status == 200 else None
    if not isinstance(url, str):
        raise BenchError(f"{server.name}: a task was not done at its first poll: {raw[:300]!r}")
    status, video = request(url)
    if status != 200 or video[4:8] != b"ftyp":
        raise BenchError(f"{server.name}: the video download answered {status}")


def _totals(segments: list[Segment]) -> tuple[int, float, dict[str, int], list[str]]:
    requests = sum(s.result.requests for s in segments)
    seconds = sum(s.seconds for s in segments)
    counts: dict[str, int] = {}
    errors: list[str] = []
    for s in segments:
        errors += s.result.errors
        for name, n in s.result.counts.items():
            counts[name] = counts.get(name, 0) + n
    return requests, seconds, counts, errors


def _summary(segments: list[Segment]) -> str:
    requests, seconds, counts, errors = _totals(segments)
    mix = ", ".join(f"{counts.get(k, 0):,} {k}" for k in ("creates", "polls", "downloads"))
    worst = max(segments, key=lambda s: s.result.p99_s).result.p99
    verdict = "zero errors, PASS" if not errors else f"ERRORS: {'; '.join(errors)}"
    return (
        f"{requests:,} requests in {seconds:.1f} s = {requests / seconds:,.0f} req/s "
        f"({mix}); worst p99 {worst}; {verdict}"
    )


def run(
    wrk: Wrk,
    fleet: Fleet,
    *,
    soak_seconds: int,
    flat_total: int,
    say: Callable[[str], None],
) -> list[str]:
    """The soak, then (if ``flat_total``) the flatness run on the same server; the report lines."""
    server = fleet.start(
        "paddock-soak",
        paddock_argv("--timing", "instant"),
        answers("/_paddock/health"),
        prefix="/dashscope",
    )
    _first_task(server)
    script = mixed_script(fleet.workdir / "mixed.lua", server.prefix)
    rss_start = server.rss()
    segments: list[Segment] = []

    def segment(seconds: float, limit: int = 0) -> Segment:
        started = time.monotonic()
        result = wrk.run(server.base, script, seconds, limit)
        done = Segment(result, time.monotonic() - started, server.rss(), stored_tasks(server))
        segments.append(done)
        requests, elapsed, _, errors = _totals(segments)
        say(
            f"  mixed: {requests:>9,} requests, {elapsed:6.1f} s, {result.rps:>7,.0f} req/s now, "
            f"RSS {megabytes(done.rss)}, {done.stored:,} tasks stored"
            + (f", errors: {'; '.join(errors)}" if errors else "")
        )
        return done

    after_first = None
    if flat_total:
        after_first = segment(FLAT_MAX_SECONDS, FLAT_FIRST)
    remaining = soak_seconds - sum(s.seconds for s in segments)
    if remaining >= 1:
        segment(remaining)
    soak = list(segments)
    lines = [
        f"soak: paddock serve --timing instant (1 worker, memory store), mixed traffic "
        f"(create, poll x2, download) for {sum(s.seconds for s in soak):.0f} s",
        f"  {_summary(soak)}",
        f"  RSS at start {megabytes(rss_start)}, at end {megabytes(soak[-1].rss)} "
        f"({soak[-1].stored:,} tasks stored at the end)",
    ]
    if after_first is None:
        return [*lines, "memory flatness: skipped (pass --flat: 3,000,000 requests, ~10-15 min)"]
    # In steps, so a long run shows progress and the RSS trajectory, not only its two ends.
    deadline = time.monotonic() + FLAT_MAX_SECONDS
    while (left := flat_total - sum(s.result.requests for s in segments)) > 0:
        remaining_time = deadline - time.monotonic()
        if remaining_time < 1:
            break
        segment(remaining_time, min(left, FLAT_STEP))
    requests, _, _, errors = _totals(segments)
    growth = segments[-1].rss / after_first.rss - 1
    # Away from zero at the shown precision, so a shown 10.0 % never hides a 10.04 % that fails.
    growth = math.copysign(math.ceil(abs(growth) * 1000) / 1000, growth)
    verdict = "PASS" if abs(growth) <= FLAT_TARGET and not errors else "BELOW"
    short = f" (stopped by the {FLAT_MAX_SECONDS} s bound)" if requests < flat_total else ""
    trajectory = ", ".join(f"{s.rss / 1e6:,.0f}" for s in segments)
    return [
        *lines,
        f"memory flatness: RSS after {after_first.result.requests:,} requests "
        f"{megabytes(after_first.rss)} ({after_first.stored:,} tasks stored), after "
        f"{requests:,}{short} {megabytes(segments[-1].rss)} ({segments[-1].stored:,} tasks "
        f"stored): {growth:+.1%} (target within {FLAT_TARGET:.0%}) {verdict}",
        f"  {_summary(segments)}",
        f"  RSS after each step, MB: {trajectory}",
    ]
