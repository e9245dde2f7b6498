"""``nox -s bench``: paddock under load, next to its ceiling and its peers, on 127.0.0.1.

Absolute requests per second say more about the machine than about paddock,
so every figure comes with a reference measured in the same run by the same
wrk with the same flags. The phases, in order:

``throughput``
    DashScope create and poll req/s of paddock (one worker, memory store,
    full validation, state and journal), the bare Starlette ceiling
    (``bench.bare_app``), Prism 5 (``prism mock`` on paddock's exported
    DashScope document) and WireMock 3 (static stubs), all default settings,
    and paddock with ``--workers 2 --store redis://...`` once ``paddock
    serve`` has those flags; then issue 11's targets as ratios with PASS or
    BELOW, and each server's RSS after its rounds (``bench.throughput``).
``scale``
    100,000 stored tasks: bytes per task, and the poll latency of one task
    at 100 and at 100,000 stored (``bench.scale``).
``soak``
    60 s of mixed create, poll and download traffic with zero errors, RSS
    at start and end; with ``--flat`` it goes on to 3,000,000 requests and
    compares RSS after 100,000 and after 3,000,000 (``bench.soak``).
``clients``
    the async reference client driving 1,000 tasks at once: its CPU against
    the server's (``bench.clients``).
``suites``
    the conformance suites against the in-process mock, checks per second
    (``bench.checks``).

Prism and WireMock are installed on first use with npm into ``.nox/peers/``
(git-ignored) and reused; without npm, or without Java 17+ for WireMock, that
peer is skipped with a note. wrk is needed (as root the bench installs it
with apt-get). The default run takes about 6-8 minutes on a 2-core machine;
``--flat`` adds 10-15.

It is a measurement, not a test: a figure under its target is printed as
BELOW, and the exit status is non-zero only when the run itself failed (a
server did not start, a phase broke, or paddock or its ceiling answered
anything but 2xx, which would make the numbers meaningless).

Usage::

    nox -s bench                                  # everything but --flat
    nox -s bench -- --flat                        # and the 3,000,000-request memory run
    nox -s bench -- --skip peers --rounds 5       # paddock vs bare only, more rounds
    python -m bench.load --only throughput        # one phase (repeatable)

Traffic goes to 127.0.0.1 only; every wrk run is bounded by its duration or
a request count with a time bound, and every server started is stopped at
the end of its phase, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import HOST, BenchError, scale, soak
from bench import peers as peer_servers
from bench.bare_app import PREFIX, TASK_ID
from bench.servers import Fleet, Server, answers, create_task, paddock_argv, serve_flags
from bench.throughput import Contender, measure, report, write_scripts
from bench.traffic import POLL_PREFIX
from bench.wrk import Wrk, find_wrk

__all__ = ["main"]

PHASES = ("throughput", "scale", "soak", "clients", "suites")


@dataclass
class Plan:
    """What one run of the driver does."""

    wrk: Wrk
    rounds: int = 3
    duration: int = 5
    warmup: int = 2
    max_warmup: int = 20
    peers: bool = True
    scale_tasks: int = 100_000
    soak_seconds: int = 60
    flat_total: int = 0
    client_tasks: int = 1000
    client_rounds: int = 5
    phases: list[str] = field(default_factory=lambda: list(PHASES))

    def expected_minutes(self) -> float:
        """A rough forecast, so nobody wonders whether a quiet terminal is stuck."""
        per_server = 2 * (2 * self.warmup + self.rounds * self.duration)
        seconds = {
            "throughput": (5 if self.peers else 2) * per_server + 2 * self.max_warmup + 40,
            "scale": self.scale_tasks / 3000 + 2 * self.rounds * self.duration + 10,
            "soak": self.soak_seconds + self.flat_total / 3000 + 5,
            "clients": 5 * self.client_rounds + 15 if self.client_tasks else 0,
            "suites": 90,
        }
        return sum(seconds[p] for p in self.phases) / 60


def say(line: str) -> None:
    print(line, flush=True)


def _task_id(server: Server) -> str:
    output = create_task(server)["output"]
    assert isinstance(output, dict)
    return str(output["task_id"])


def _paddock_w2(fleet: Fleet, peers: peer_servers.Peers) -> Contender | str:
    """paddock with two workers sharing a bench-started Redis, or why it cannot run yet."""
    flags = serve_flags()
    if "--store" not in flags or "--workers" not in flags:
        return "paddock serve --help lists no --workers/--store yet"
    if peers.redis is None:
        return "redis-server is not on PATH (apt-get install -y redis-server)"
    redis = peer_servers.start_redis(fleet, peers)
    store = f"redis://{HOST}:{redis.port}/0"
    server = fleet.start(
        "paddock-w2",
        paddock_argv("--timing", "fast", "--workers", "2", "--store", store),
        answers("/_paddock/health"),
        prefix="/dashscope",
    )
    label = "paddock (2 workers, Redis; RSS incl. redis)"
    return Contender("paddock-w2", label, server, _task_id(server), helpers=[redis])


def _peers(fleet: Fleet, contenders: list[Contender], skipped: dict[str, str]) -> list[str]:
    """Install and start Prism, WireMock and paddock-w2; what could not run goes to ``skipped``."""
    peers = peer_servers.install()
    starters: list[tuple[str, str, Callable[[], Server] | None]] = [
        (
            "prism",
            f"Prism {peers.prism_version} (default)",
            (lambda: peer_servers.start_prism(fleet, peers)) if peers.prism else None,
        ),
        (
            "wiremock",
            f"WireMock {peers.wiremock_version} (default, static stubs)",
            (lambda: peer_servers.start_wiremock(fleet, peers)) if peers.wiremock_jar else None,
        ),
    ]
    for key, label, start in starters:
        if start is None:
            skipped[key] = "not installed (see the note below)"
            continue
        try:
            contenders.append(Contender(key, label, start(), TASK_ID))
        except BenchError as exc:
            skipped[key] = f"did not start: {exc}"
    try:
        w2 = _paddock_w2(fleet, peers)
    except BenchError as exc:
        w2 = f"did not start: {exc}"
    if isinstance(w2, str):
        skipped["paddock-w2"] = w2
    else:
        contenders.append(w2)
    return [f"note: {note}" for note in peers.notes]


def _throughput(plan: Plan, fleet: Fleet) -> list[str]:
    paddock = fleet.start(
        "paddock",
        paddock_argv("--timing", "fast"),
        answers("/_paddock/health"),
        prefix="/dashscope",
    )
    bare = fleet.start(
        "bare",
        lambda port: [sys.executable, "-m", "bench.bare_app", "--host", HOST, "--port", str(port)],
        answers(PREFIX + POLL_PREFIX + TASK_ID),
        prefix=PREFIX,
    )
    contenders = [
        Contender("paddock", "paddock (1 worker, memory store)", paddock, _task_id(paddock)),
        Contender("bare", "bare Starlette (the ceiling)", bare, TASK_ID),
    ]
    skipped: dict[str, str] = {}
    notes: list[str] = []
    if plan.peers:
        notes = _peers(fleet, contenders, skipped)
    else:
        skipped |= {k: "--skip peers" for k in ("prism", "wiremock", "paddock-w2")}
    say(f"  measuring {', '.join(c.key for c in contenders)} ...")
    measure(
        plan.wrk,
        contenders,
        write_scripts(fleet.workdir),
        rounds=plan.rounds,
        duration=plan.duration,
        warmup=plan.warmup,
        max_warmup=plan.max_warmup,
        say=say,
    )
    lines = [
        f"throughput: wrk {plan.wrk.flags()}, {plan.duration} s runs, median of "
        f"{plan.rounds} rounds, servers alternating, each warmed until its rates settle",
        *report(contenders, skipped),
        *notes,
    ]
    if any(c.void for c in contenders if c.key in ("paddock", "bare")):
        raise BenchError("\n".join(lines))
    return lines


def _clients(plan: Plan, fleet: Fleet) -> list[str]:
    """The async client against a fast-clocked mock of its own (see bench/clients.py)."""
    if plan.client_tasks <= 0:
        return ["async client: skipped (--client-tasks 0)"]
    from bench.clients import ClientRun, run_clients

    mock = fleet.start(
        "paddock-fast",
        paddock_argv("--timing", "fast", "--speed", "20"),
        answers("/_paddock/health"),
    )
    base = f"{mock.base}/dashscope"

    def rounds(count: int, tasks: int, poll: float) -> list[ClientRun]:
        try:
            return [run_clients(base, mock.proc.pid, tasks=tasks, poll=poll) for _ in range(count)]
        except (RuntimeError, OSError) as exc:
            raise BenchError(f"async client phase failed: {exc}\n{mock.log_tail()}") from None

    say(f"  {plan.client_tasks} tasks at once, {plan.client_rounds} rounds ...")
    runs = rounds(plan.client_rounds, plan.client_tasks, 0.5)
    # One round is about a second: on a shared machine its ratio swings by a
    # fifth either way, and the server's CPU is read in 10 ms ticks. The
    # verdict is on all rounds pooled (each side's CPU summed over the same
    # wall time); the rounds are listed to show the spread.
    ratios = ", ".join(f"{run.client_cpu / run.server_cpu:.2f}x" for run in runs)
    # Then pressed harder, so "the server saturates first" is seen, not only
    # inferred from CPU per task: more tasks, polled fifty times a second.
    say("  pressed harder (2,000 tasks, polling every 0.02 s) ...")
    hard = ClientRun.pooled(rounds(3, 2000, 0.02))
    return [
        *ClientRun.pooled(runs).lines(),
        f"  client/server CPU by round: {ratios} (all {len(runs)} rounds pooled above)",
        f"  pressed harder (2,000 tasks polled every 0.02 s, 3 rounds): "
        f"{hard.tasks / hard.seconds:.0f} tasks/s, server {hard.server_cpu / hard.seconds:.0%} "
        f"of a core, client {hard.client_cpu / hard.seconds:.0%} "
        f"({hard.client_cpu / hard.server_cpu:.2f}x)",
    ]


def _suites(plan: Plan, fleet: Fleet) -> list[str]:
    from bench.checks import lines, run_suites

    return lines(run_suites())


def _scale(plan: Plan, fleet: Fleet) -> list[str]:
    if plan.scale_tasks <= scale.SMALL:
        return [f"scale: skipped (--scale-tasks must exceed {scale.SMALL})"]
    return scale.run(
        plan.wrk,
        fleet,
        tasks=plan.scale_tasks,
        rounds=plan.rounds,
        duration=plan.duration,
        say=say,
    )


def _soak(plan: Plan, fleet: Fleet) -> list[str]:
    if plan.soak_seconds < 1 and not plan.flat_total:
        return ["soak: skipped (--soak-seconds 0)"]
    return soak.run(
        plan.wrk, fleet, soak_seconds=plan.soak_seconds, flat_total=plan.flat_total, say=say
    )


RUNNERS: dict[str, Callable[[Plan, Fleet], list[str]]] = {
    "throughput": _throughput,
    "scale": _scale,
    "soak": _soak,
    "clients": _clients,
    "suites": _suites,
}


def _parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="paddock under load next to its ceiling and its peers, on 127.0.0.1.",
    )
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="measured rounds per server (default 3)")
    add("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    add("--warmup", type=int, default=2, help="seconds of one warm-up run (default 2)")
    add(
        "--max-warmup",
        type=int,
        default=20,
        help="warm-up seconds per server at most, until its rates settle (default 20)",
    )
    add("--threads", type=int, default=1, help="wrk threads (default 1)")
    add("--connections", type=int, default=32, help="wrk connections (default 32)")
    add("--only", action="append", choices=PHASES, help="run only this phase (repeatable)")
    add(
        "--skip",
        action="append",
        default=[],
        choices=[*PHASES, "peers"],
        help="skip a phase, or 'peers': Prism, WireMock and paddock-w2 (repeatable)",
    )
    add("--scale-tasks", type=int, default=100_000, help="tasks stored by scale (default 100000)")
    add("--soak-seconds", type=int, default=60, help="seconds of the soak (default 60)")
    add(
        "--flat",
        action="store_true",
        help="go on to 3,000,000 requests after the soak and "
        "compare RSS after 100,000 with RSS at the end (adds 10-15 min)",
    )
    add("--flat-requests", type=int, default=soak.FLAT_TOTAL, help="requests of --flat")
    add(
        "--client-tasks",
        type=int,
        default=1000,
        help="concurrent tasks of the async client phase; 0 skips it (default 1000)",
    )
    add("--client-rounds", type=int, default=5, help="client rounds, about 1 s each (default 5)")
    args = parser.parse_args(argv)
    for name in ("rounds", "duration", "warmup", "threads", "connections", "client_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    if args.flat and args.flat_requests <= soak.FLAT_FIRST:
        parser.error(f"--flat-requests must exceed {soak.FLAT_FIRST:,}")
    phases = [p for p in (args.only or PHASES) if p not in args.skip]
    return Plan(
        wrk=Wrk(find_wrk(), args.threads, args.connections),
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        max_warmup=args.max_warmup,
        peers="peers" not in args.skip,
        scale_tasks=args.scale_tasks,
        soak_seconds=max(args.soak_seconds, 0),
        flat_total=args.flat_requests if args.flat else 0,
        client_tasks=max(args.client_tasks, 0),
        client_rounds=args.client_rounds,
        phases=phases,
    )


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    try:
        plan = _parse_args(argv)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    say(
        f"bench: phases {', '.join(plan.phases)}; wrk {plan.wrk.flags()}; "
        f"about {plan.expected_minutes():.0f} min on {os.cpu_count()} cores "
        f"(load average now {os.getloadavg()[0]:.1f})"
    )
    # (phase, lines, seconds, load average at its end): a busy machine's figures are noisy,
    # and JIT-compiled peers suffer from it most, so the load is printed with the timings.
    results: list[tuple[str, list[str], float, float]] = []
    failed = False
    try:
        with tempfile.TemporaryDirectory(prefix="paddock-bench-") as tmp:
            for phase in plan.phases:
                say(f"bench: {phase} ...")
                phase_started = time.monotonic()
                workdir = Path(tmp) / phase
                workdir.mkdir()
                try:
                    with Fleet(workdir) as fleet:
                        lines = RUNNERS[phase](plan, fleet)
                except BenchError as exc:
                    failed = True
                    lines = [f"{phase}: FAILED: {exc}"]
                seconds = time.monotonic() - phase_started
                results.append((phase, lines, seconds, os.getloadavg()[0]))
                say("\n".join(lines))
    except KeyboardInterrupt:
        print("bench: interrupted (every server it started is stopped)", file=sys.stderr)
        return 130
    say("\n" + "=" * 30 + " summary " + "=" * 30)
    for _, lines, _, _ in results:
        say("\n".join(lines) + "\n")
    timings = ", ".join(f"{phase} {seconds:.0f} s" for phase, _, seconds, _ in results)
    loads = ", ".join(f"{load:.1f}" for _, _, _, load in results)
    say(
        f"bench: total {time.monotonic() - started:.0f} s ({timings}); load average at the end "
        f"of each: {loads} on {os.cpu_count()} cores; figures under target are BELOW, not failed"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
