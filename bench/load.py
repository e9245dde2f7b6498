"""Throughput of the mock's two hot routes, measured against a bare Starlette ceiling.

Absolute requests per second say more about the machine than about paddock,
so this driver runs ``paddock serve`` and ``bench.bare_app`` (same Starlette,
same uvicorn settings, none of the mock's work) side by side on loopback and
reports paddock's share of the ceiling for DashScope create and poll.
Two more phases follow: the async client driving many tasks (its CPU
against the server's) and the conformance suites (checks per second). Runs
of the two servers alternate within each round, so drift in the machine
(other load, CPU frequency) hits both alike, and the median over rounds
damps the outliers that a 2-core box produces.

It is a measurement, not a test: a ratio under its target is printed, and
the exit status is non-zero only when the run itself failed (a server did
not start, ``wrk`` is missing, or a server answered anything but 2xx, which
would make the numbers meaningless).

Usage: ``python -m bench.load [--rounds N] [--duration S] ...`` or ``nox -s bench``.
Traffic goes to 127.0.0.1 only, and every wrk run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bench.bare_app import CREATE_PATH
from bench.checks import lines as suite_report
from bench.checks import run_suites

__all__ = ["WrkResult", "main", "parse_wrk"]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
API_KEY = "sk-bench"
# The documented image-to-video example, byte for byte what clients send.
CREATE_BODY = json.dumps(
    {
        "model": "happyhorse-1.0-i2v",
        "input": {
            "prompt": "A cat running on the grass",
            "media": [
                {
                    "type": "first_frame",
                    "url": "https://cdn.translate.alibaba.com/r/wanx-demo-1.png",
                }
            ],
        },
        "parameters": {"resolution": "720P", "duration": 5},
    },
    separators=(",", ":"),
)
CREATE_HEADERS = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "X-DashScope-Async": "enable",
}
POLL_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# paddock's share of the bare ceiling we aim for; create does more (validation, a stored task).
TARGETS = {"create": 0.35, "poll": 0.50}
ROUTES = ("create", "poll")
SERVERS = ("bare", "paddock")
START_TIMEOUT = 30.0


class BenchError(Exception):
    """The run itself failed; its message is what a person needs to fix it."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; ``errors`` lists anything that voids the numbers."""

    rps: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    p50: str
    p99: str

    @property
    def errors(self) -> list[str]:
        problems = [f"{self.non_2xx} non-2xx/3xx responses"] if self.non_2xx else []
        problems += [f"{n} socket {kind} errors" for kind, n in self.socket_errors.items() if n]
        if self.requests == 0:
            problems.append("no request completed")
        return problems


@dataclass
class Server:
    """A server subprocess on a loopback port, with its output kept for a failure message."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: TextIO

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(f"    {line}" for line in text[-lines:]) or "    (no output)"


@dataclass
class Plan:
    """The wrk settings of one run of the driver."""

    rounds: int
    duration: int
    warmup: int
    threads: int
    connections: int
    wrk: str
    client_tasks: int = 1000
    client_rounds: int = 5
    samples: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)

    def wrk_flags(self) -> str:
        return f"-t{self.threads} -c{self.connections} -d{self.duration}s --timeout 5s --latency"

    def expected_seconds(self) -> int:
        per_pair = len(ROUTES) * len(SERVERS)
        return per_pair * (self.warmup + self.rounds * self.duration)


_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_PERCENTILE = re.compile(r"^\s+(50|99)%\s+(\S+)", re.MULTILINE)


def parse_wrk(text: str) -> WrkResult:
    """Read wrk 4's text report; wrk omits the error lines when there were none."""
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    if rps is None or total is None:
        raise BenchError(f"could not read wrk's report:\n{text.strip()}")
    non_2xx = _NON_2XX.search(text)
    sockets = _SOCKET.search(text)
    counts = [int(n) for n in sockets.groups()] if sockets else [0, 0, 0, 0]
    percentiles = dict(_PERCENTILE.findall(text))
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        p50=percentiles.get("50", "?"),
        p99=percentiles.get("99", "?"),
    )


def _lua_string(text: str) -> str:
    """A Lua long-bracket literal for ``text``, with a level that cannot clash with it.

    Level 1 at least, and callers put a space after an indexing ``[``: Lua lexes ``[[`` as the
    opening of a level-0 string, so ``headers[[[x]]]`` silently means something else.
    """
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def write_scripts(directory: Path) -> dict[str, Path]:
    """wrk Lua scripts for both routes, generated so the body and headers live only here."""

    def script(method: str, headers: dict[str, str], body: str | None) -> str:
        lines = [f'wrk.method = "{method}"']
        lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"wrk.body = {_lua_string(body)}")
        return "\n".join(lines) + "\n"

    paths = {"create": directory / "create.lua", "poll": directory / "poll.lua"}
    paths["create"].write_text(script("POST", CREATE_HEADERS, CREATE_BODY))
    paths["poll"].write_text(script("GET", POLL_HEADERS, None))
    return paths


def free_port() -> int:
    """A port the kernel just handed out; the tiny race before the server binds it is accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _request(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None
) -> tuple[int, bytes]:
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_server(name: str, argv: list[str], probe: str, workdir: Path) -> Server:
    """Start one server and wait until ``probe`` answers 200, or fail with its output."""
    port = free_port()
    log_path = workdir / f"{name}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [*argv, "--host", HOST, "--port", str(port)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C at the terminal reaches us, and we stop it in order
    )
    server = Server(name, port, proc, log_path, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"{name} server exited with status {proc.returncode} before it was ready:\n"
                f"{server.log_tail()}"
            )
        try:
            status, _ = _request(server.base + probe)
        except OSError:
            status = 0
        if status == 200:
            return server
        time.sleep(0.1)
    stop_server(server)
    raise BenchError(
        f"{name} server did not answer {probe} within {START_TIMEOUT:.0f} s:\n{server.log_tail()}"
    )


def stop_server(server: Server) -> None:
    """SIGTERM (uvicorn's graceful stop), then SIGKILL if it lingers; never leaves a process."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    server.log.close()


def create_task(server: Server) -> str:
    """One task on ``server`` owned by the bench key, so polls hit the store's found path."""
    status, raw = _request(
        server.base + CREATE_PATH, method="POST", headers=CREATE_HEADERS, body=CREATE_BODY
    )
    if status != 200:
        raise BenchError(f"{server.name}: create answered {status}: {raw[:300]!r}")
    task_id = json.loads(raw)["output"]["task_id"]
    if not isinstance(task_id, str):
        raise BenchError(f"{server.name}: create answered no task_id: {raw[:300]!r}")
    return task_id


def run_wrk(plan: Plan, url: str, script: Path, duration: int) -> WrkResult:
    """One wrk run against ``url``; its own time limit plus a margin bounds the call."""
    cmd = [
        plan.wrk,
        f"-t{plan.threads}",
        f"-c{plan.connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + 30, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {' '.join(cmd)}") from None
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return parse_wrk(done.stdout)


def _check(result: WrkResult, server: str, route: str, url: str) -> None:
    if result.errors:
        raise BenchError(
            f"{server} {route} is not a valid measurement ({', '.join(result.errors)}) at {url}; "
            "a server answering errors is fast for the wrong reason"
        )


def measure(plan: Plan, urls: dict[tuple[str, str], str], scripts: dict[str, Path]) -> None:
    """Warm each server and route once, then alternate them round by round."""
    for route in ROUTES:
        for server in SERVERS:
            url = urls[server, route]
            _check(run_wrk(plan, url, scripts[route], plan.warmup), server, route, url)
    for n in range(plan.rounds):
        # Swap who goes first each round, so neither always runs on a "fresher" machine.
        order = SERVERS if n % 2 == 0 else SERVERS[::-1]
        for route in ROUTES:
            for server in order:
                url = urls[server, route]
                result = run_wrk(plan, url, scripts[route], plan.duration)
                _check(result, server, route, url)
                plan.samples.setdefault((server, route), []).append(result)
                print(
                    f"  round {n + 1}/{plan.rounds}  {route:<6} {server:<7} "
                    f"{result.rps:>10.1f} req/s  p50 {result.p50:>8}  p99 {result.p99:>8}",
                    flush=True,
                )


def report(plan: Plan) -> str:
    """The summary table: medians over rounds, paddock/bare, and the target for each route."""
    rows = [("route", "bare req/s", "paddock req/s", "ratio", "target", "result")]
    for route in ROUTES:
        bare = statistics.median(r.rps for r in plan.samples["bare", route])
        paddock = statistics.median(r.rps for r in plan.samples["paddock", route])
        ratio = paddock / bare if bare else 0.0
        target = TARGETS[route]
        verdict = "pass" if ratio >= target else "BELOW TARGET"
        rows.append(
            (route, f"{bare:.1f}", f"{paddock:.1f}", f"{ratio:.2f}x", f">= {target:.2f}x", verdict)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)]
        cells.append(row[-1])
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="paddock vs a bare Starlette app on DashScope create and poll, on 127.0.0.1.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up s per pair (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--client-tasks",
        type=int,
        default=1000,
        help="concurrent tasks for the async client phase; 0 skips it (default 1000)",
    )
    parser.add_argument(
        "--client-rounds",
        type=int,
        default=5,
        help="rounds of the async client phase, about a second each (default 5)",
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "duration", "warmup", "threads", "connections", "client_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not on PATH; install it with: apt-get install wrk")
    return Plan(
        args.rounds,
        args.duration,
        args.warmup,
        args.threads,
        args.connections,
        wrk,
        max(args.client_tasks, 0),
        args.client_rounds,
    )


def _client_phase(plan: Plan, workdir: Path, servers: list[Server]) -> list[str]:
    """The async client against a fast-clocked mock of its own (see bench/clients.py)."""
    if plan.client_tasks <= 0:
        return ["async client: skipped (--client-tasks 0)"]
    from bench.clients import ClientRun, run_clients

    mock = start_server(
        "paddock-fast",
        [sys.executable, "-m", "paddock", "serve", "--timing", "fast", "--speed", "20"],
        "/_paddock/health",
        workdir,
    )
    servers.append(mock)
    runs = []
    for round_ in range(plan.client_rounds):
        print(
            f"bench: async client, {plan.client_tasks} tasks at once, "
            f"round {round_ + 1}/{plan.client_rounds} ...",
            flush=True,
        )
        try:
            runs.append(
                run_clients(f"{mock.base}/dashscope", mock.proc.pid, tasks=plan.client_tasks)
            )
        except (RuntimeError, OSError) as exc:
            raise BenchError(f"async client phase failed: {exc}\n{mock.log_tail()}") from None
    # One round is about a second: on a shared machine its ratio swings by a
    # fifth either way, and the server's CPU is read in 10 ms ticks. The
    # verdict is on all rounds pooled (each side's CPU summed over the same
    # wall time); the rounds are listed to show the spread.
    ratios = ", ".join(f"{run.client_cpu / run.server_cpu:.2f}x" for run in runs)
    # Then pressed harder, so "the server saturates first" is seen, not only
    # inferred from CPU per task: more tasks, polled fifty times a second.
    print("bench: async client pressed harder (2,000 tasks, polling every 0.02 s) ...", flush=True)
    try:
        hard = ClientRun.pooled(
            [
                run_clients(f"{mock.base}/dashscope", mock.proc.pid, tasks=2000, poll=0.02)
                for _ in range(3)
            ]
        )
    except (RuntimeError, OSError) as exc:
        raise BenchError(f"async client phase failed: {exc}\n{mock.log_tail()}") from None
    return [
        *ClientRun.pooled(runs).lines(),
        f"  client/server CPU by round: {ratios} (all {len(runs)} rounds pooled above)",
        f"  pressed harder (2,000 tasks polled every 0.02 s, 3 rounds): "
        f"{hard.tasks / hard.seconds:.0f} tasks/s, server {hard.server_cpu / hard.seconds:.0%} "
        f"of a core, client {hard.client_cpu / hard.seconds:.0%} "
        f"({hard.client_cpu / hard.server_cpu:.2f}x)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    servers: list[Server] = []
    try:
        plan = _parse_args(argv)
        print(
            f"bench: wrk {plan.wrk_flags()}; {plan.rounds} rounds, "
            f"{plan.warmup} s warm-up per pair; "
            f"about {plan.expected_seconds()} s of load on {os.cpu_count()} cores",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="paddock-bench-") as tmp:
            workdir = Path(tmp)
            scripts = write_scripts(workdir)
            try:
                paddock = start_server(
                    "paddock",
                    [sys.executable, "-m", "paddock", "serve", "--timing", "fast"],
                    "/_paddock/health",
                    workdir,
                )
                servers.append(paddock)
                task_id = create_task(paddock)
                poll_path = f"/dashscope/api/v1/tasks/{task_id}"
                # The bare app has no health route (it stays two routes); a poll proves it is up.
                bare = start_server(
                    "bare", [sys.executable, "-m", "bench.bare_app"], poll_path, workdir
                )
                servers.append(bare)
                urls = {
                    (s.name, route): s.base + (CREATE_PATH if route == "create" else poll_path)
                    for s in servers
                    for route in ROUTES
                }
                measure(plan, urls, scripts)
                for server in servers:
                    stop_server(server)
                servers.clear()
                client_lines = _client_phase(plan, workdir, servers)
            finally:
                for server in servers:
                    stop_server(server)
        print("bench: conformance suites, all providers against the in-process mock ...")
        suite_lines = suite_report(run_suites())
        print()
        print(report(plan))
        print()
        print("\n".join(client_lines))
        print()
        print("\n".join(suite_lines))
        print(
            f"\nbench: total {time.monotonic() - started:.1f} s "
            "(ratios under target are reported, not failed)"
        )
        return 0
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
