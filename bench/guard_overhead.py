"""What ``mock_server.connection.GuardedHttpProtocol`` costs: the bare app with and without it.

The guard screens every chunk a connection receives with a second llhttp
parser before uvicorn's own parser sees it. This driver serves
``bench.bare_app`` (no mock work, so the protocol's share is as large as it
can be) twice, once with uvicorn's plain httptools protocol and once with the
guard, alternates wrk runs against the two on DashScope create and poll, and
reports guarded/plain per route. On a shared 2-core box one run's req/s
swings by tens of percent, so each round runs the two servers back to back
(order swapped every round) and the ratio reported is the median over rounds
of each round's guarded/plain: drift in the machine hits both of a pair alike.

Usage: ``python -m bench.guard_overhead [--rounds N] [--duration S] [--connections C]``.
Traffic goes to 127.0.0.1 only; every wrk run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
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


def measure(plan: Plan, servers: dict[str, Server], scripts: dict[str, Path]) -> None:
    """One warm-up per pair, then rounds with the servers' order swapped each round."""
    names = list(servers)
    for route, path in ROUTES.items():
        for name in names:
            run_wrk(plan, servers[name].base + path, scripts[route], plan.warmup)
    for n in range(plan.rounds):
        order = names if n % 2 == 0 else names[::-1]
        for route, path in ROUTES.items():
            for name in order:
                result = run_wrk(plan, servers[name].base + path, scripts[route], plan.duration)
                if result.errors:
                    raise BenchError(f"{name} {route}: {', '.join(result.errors)}")
                plan.samples.setdefault((name, route), []).append(result)
                print(
                    f"  round {n + 1}/{plan.rounds}  {route:<6} {name:<7} "
                    f"{result.rps:>10.1f} req/s  p50 {result.p50:>8}  p99 {result.p99:>8}",
                    flush=True,
                )


def report(plan: Plan) -> str:
    """Per route: median req/s of each protocol, and the median of the rounds' ratios."""
    lines = [f"{'route':<7} {'plain req/s':>12} {'guarded req/s':>14} {'guarded/plain':>14}"]
    for route in ROUTES:
        plain = [r.rps for r in plan.samples["plain", route]]
        guarded = [r.rps for r in plan.samples["guarded", route]]
        paired = statistics.median(g / p for g, p in zip(guarded, plain, strict=True))
        lines.append(
            f"{route:<7} {statistics.median(plain):>12.1f} "
            f"{statistics.median(guarded):>14.1f} {paired:>13.3f}x"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guard_overhead", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    server_args = sub.add_parser("serve", help="run one server (used by the driver)")
    server_args.add_argument("protocol", choices=sorted(PROTOCOLS))
    server_args.add_argument("--host", default="127.0.0.1")
    server_args.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (default 9)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
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
            measure(plan, servers, scripts)
        except BenchError as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return 1
        finally:
            for server in servers.values():
                stop_server(server)
    print(report(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
