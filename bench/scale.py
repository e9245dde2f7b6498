"""Scale: memory per stored task, and poll latency with 100 and with 100,000 tasks stored.

A store that slows as it fills (a scan, a GC pass over every record, a
growing index) shows here and nowhere else: the throughput rounds hold a
handful of tasks. The same task is polled at both sizes with the same wrk
settings as the throughput rounds, so the ratio of the two latencies is the
cost of the 99,900 other tasks.

The store is filled by ``bench.traffic.fill_script``, which rotates creates
over several API keys: a per-key cap (``--max-tasks-per-key``) must not
evict what this phase counts. When ``paddock serve`` has that flag, or a
global ``--max-tasks``, the bench raises it above the fill instead.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

from bench import BenchError
from bench.servers import Fleet, answers, create_task, megabytes, paddock_argv, serve_flags
from bench.soak import stored_tasks
from bench.traffic import CREATE_HEADERS, POLL_PREFIX, fill_script, static_script
from bench.wrk import Wrk, WrkResult

__all__ = ["LATENCY_TARGET", "SMALL", "run"]

SMALL = 100
KEYS = 20  # 5,000 tasks a key at 100,000: under any sensible per-key cap
LATENCY_TARGET = 1.2  # poll latency at the large size over the small one, at most
FILL_MAX_SECONDS = 900


def _polls(wrk: Wrk, url: str, script: Path, rounds: int, duration: int) -> list[WrkResult]:
    results = []
    for _ in range(rounds):
        result = wrk.run(url, script, duration)
        if result.errors:
            raise BenchError(f"scale: polling {url} answered {', '.join(result.errors)}")
        results.append(result)
    return results


def _median(results: list[WrkResult], what: Callable[[WrkResult], float]) -> float:
    return statistics.median(what(r) for r in results)


def run(
    wrk: Wrk,
    fleet: Fleet,
    *,
    tasks: int,
    rounds: int,
    duration: int,
    say: Callable[[str], None],
) -> list[str]:
    """Fill one paddock to ``tasks`` tasks and report memory and poll latency; the report lines."""
    flags = serve_flags()
    extra = []
    if "--max-tasks-per-key" in flags:
        extra += ["--max-tasks-per-key", str(tasks * 2)]
    if "--max-tasks" in flags:
        extra += ["--max-tasks", str(tasks * 2)]
    server = fleet.start(
        "paddock-scale",
        paddock_argv("--timing", "fast", *extra),
        answers("/_paddock/health"),
        prefix="/dashscope",
    )
    keys = [f"sk-bench-scale-{i}" for i in range(KEYS)]
    headers = {**CREATE_HEADERS, "Authorization": f"Bearer {keys[0]}"}
    first = create_task(server, headers)["output"]
    assert isinstance(first, dict)
    url = server.url(POLL_PREFIX + first["task_id"])
    poll = static_script(
        fleet.workdir / "scale-poll.lua", "GET", {"Authorization": headers["Authorization"]}, None
    )
    for i in range(SMALL - 1):
        create_task(server, {**CREATE_HEADERS, "Authorization": f"Bearer {keys[i % KEYS]}"})
    small_stored, small_rss = stored_tasks(server), server.rss()
    say(f"  {small_stored:,} tasks stored, RSS {megabytes(small_rss)}; polling one of them ...")
    small = _polls(wrk, url, poll, rounds, duration)

    say(f"  filling to {tasks:,} tasks over {KEYS} keys ...")
    fill = fill_script(fleet.workdir / "fill.lua", server.prefix, keys)
    filled = wrk.run(server.base, fill, FILL_MAX_SECONDS, tasks - small_stored)
    if filled.errors:
        raise BenchError(f"scale: filling the store answered {', '.join(filled.errors)}")
    big_stored, big_rss = stored_tasks(server), server.rss()
    say(f"  {big_stored:,} tasks stored ({filled.rps:,.0f} creates/s), RSS {megabytes(big_rss)}")
    if big_stored < tasks:
        raise BenchError(
            f"scale: {tasks:,} tasks were created but the store holds {big_stored:,}: "
            "it evicts below that (raise its cap for the bench)"
        )
    big = _polls(wrk, url, poll, rounds, duration)

    per_task = (big_rss - small_rss) / (big_stored - small_stored)
    lines = [
        f"scale: {big_stored:,} tasks stored: RSS {megabytes(small_rss)} at {small_stored:,} "
        f"-> {megabytes(big_rss)}, {per_task:,.0f} bytes per task "
        f"(journal and caches included; filled at {filled.rps:,.0f} creates/s)",
        f"  poll of one task, wrk {wrk.flags()}, medians of {rounds} x {duration} s:",
    ]
    for label, results in ((f"{small_stored:,}", small), (f"{big_stored:,}", big)):
        lines.append(
            f"    {label:>8} stored: p50 {_median(results, lambda r: r.p50_s) * 1e3:6.2f} ms, "
            f"p99 {_median(results, lambda r: r.p99_s) * 1e3:6.2f} ms, "
            f"{_median(results, lambda r: r.rps):,.0f} req/s"
        )
    for name, pick in (("p50", lambda r: r.p50_s), ("p99", lambda r: r.p99_s)):
        # Rounded up, so a shown 1.20x never hides a 1.204 that fails its 1.2.
        ratio = math.ceil(_median(big, pick) / _median(small, pick) * 100) / 100
        verdict = "PASS" if ratio <= LATENCY_TARGET else "BELOW"
        lines.append(
            f"  {name} at {big_stored:,} / at {small_stored:,}: {ratio:.2f}x "
            f"(target <= {LATENCY_TARGET:.1f}x) {verdict}"
        )
    return lines
