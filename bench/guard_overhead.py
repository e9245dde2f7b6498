"""What ``mock_server.connection.GuardedHttpProtocol`` costs: the bare app with and without it.

The guard screens every chunk a connection receives with a second llhttp
parser before uvicorn's own parser sees it. This driver serves
``bench.bare_app`` (no mock work, so the protocol's share is as large as it
can be) twice, once with uvicorn's plain httptools protocol and once with the
guard, alternates wrk runs against the two on DashScope create and poll, and
reports guarded/plain per route as medians over rounds: requests per second,
and the server's CPU time per request (from /proc, on Linux). On a shared box
the second is the steadier number: another process taking the CPU lowers a
server's req/s but not what each of its requests costs it.

Usage: ``python -m bench.guard_overhead [--rounds N] [--duration S] [--connections C]``.
Traffic goes to 127.0.0.1 only; every wrk run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.bare_app import CREATE_PATH, POLL_PATH
from bench.load import (
    BenchError,
    Plan,
    Server,
    run_wrk,
    start_server,
    stop_server,
    write_scripts,
)

__all__ = ["PROTOCOLS", "main", "serve"]

PROTOCOLS = {
    "plain": "httptools",
    "guarded": "mock_server.connection:GuardedHttpProtocol",
}
ROUTES = {"create": CREATE_PATH, "poll": POLL_PATH.format(task_id="bench")}


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of process ``pid`` so far; None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of proc(5), counted after "pid (comm)".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(protocol: str, host: str, port: int) -> None:
    """``bench.bare_app`` served as its ``main`` serves it, but with ``protocol``."""
    import uvicorn

    from bench.bare_app import app
    from mock_server.connection import raise_fd_limit

    raise_fd_limit()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=PROTOCOLS[protocol],
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def measure(
    plan: Plan, servers: dict[str, Server], scripts: dict[str, Path]
) -> dict[tuple[str, str], list[float]]:
    """One warm-up per pair, then rounds with the servers' order swapped each round.

    Fills ``plan.samples`` with wrk's results, and returns the server's CPU
    microseconds per request for each run (empty where it cannot be read).
    """
    cpu: dict[tuple[str, str], list[float]] = {}
    names = list(servers)
    for route, path in ROUTES.items():
        for name in names:
            run_wrk(plan, servers[name].base + path, scripts[route], plan.warmup)
    for n in range(plan.rounds):
        order = names if n % 2 == 0 else names[::-1]
        for route, path in ROUTES.items():
            for name in order:
                pid = servers[name].proc.pid
                before = cpu_seconds(pid)
                result = run_wrk(plan, servers[name].base + path, scripts[route], plan.duration)
                after = cpu_seconds(pid)
                if before is not None and after is not None and result.requests:
                    cpu.setdefault((name, route), []).append(
                        (after - before) / result.requests * 1e6
                    )
                if result.errors:
                    raise BenchError(f"{name} {route}: {', '.join(result.errors)}")
                plan.samples.setdefault((name, route), []).append(result)
                print(
                    f"  round {n + 1}/{plan.rounds}  {route:<6} {name:<7} "
                    f"{result.rps:>10.1f} req/s  p50 {result.p50:>8}  p99 {result.p99:>8}",
                    flush=True,
                )
    return cpu


def report(plan: Plan, cpu: dict[tuple[str, str], list[float]]) -> str:
    """Medians per protocol and route: req/s and CPU us per request, each as guarded/plain."""
    lines = [
        f"{'route':<7} {'plain req/s':>12} {'guarded req/s':>14} {'ratio':>7}   "
        f"{'plain cpu us/req':>17} {'guarded cpu us/req':>19} {'ratio':>7}"
    ]
    for route in ROUTES:
        plain = statistics.median(r.rps for r in plan.samples["plain", route])
        guarded = statistics.median(r.rps for r in plan.samples["guarded", route])
        line = f"{route:<7} {plain:>12.1f} {guarded:>14.1f} {guarded / plain:>6.3f}x"
        if cpu.get(("plain", route)) and cpu.get(("guarded", route)):
            plain_cpu = statistics.median(cpu["plain", route])
            guarded_cpu = statistics.median(cpu["guarded", route])
            line += f"   {plain_cpu:>17.1f} {guarded_cpu:>19.1f} {guarded_cpu / plain_cpu:>6.3f}x"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guard_overhead", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    server_args = sub.add_parser("serve", help="run one server (used by the driver)")
    server_args.add_argument("protocol", choices=sorted(PROTOCOLS))
    server_args.add_argument("--host", default="127.0.0.1")
    server_args.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.protocol, args.host, args.port)
        return 0
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not on PATH; install it with: apt-get install wrk", file=sys.stderr)
        return 2
    plan = Plan(args.rounds, args.duration, 1, 1, args.connections, wrk)
    print(f"guard overhead: wrk {plan.wrk_flags()}, {plan.rounds} rounds", flush=True)
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="paddock-guard-") as tmp:
        workdir = Path(tmp)
        scripts = write_scripts(workdir)
        try:
            for name in PROTOCOLS:
                argv_ = [sys.executable, "-m", "bench.guard_overhead", "serve", name]
                # The bare app answers its poll route for any id; a GET probes readiness.
                servers[name] = start_server(name, argv_, ROUTES["poll"], workdir)
            cpu = measure(plan, servers, scripts)
        except BenchError as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return 1
        finally:
            for server in servers.values():
                stop_server(server)
    print(report(plan, cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
