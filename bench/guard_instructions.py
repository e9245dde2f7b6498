"""The guard's cost in CPU instructions per request, which a busy machine cannot blur.

wrk's req/s on a shared 2-core box swing by tens of percent between runs: too much to
see a few percent. This driver counts instructions instead (valgrind's callgrind,
deterministic to a fraction of a percent): it pushes N keep-alive requests through
uvicorn's httptools protocol, plain or guarded, into ``bench.bare_app`` in-process, and
reports the difference between runs of 1,000 and 6,000 requests divided by 5,000, so
start-up cancels out. The transport is a stand-in that only counts writes: the sockets
and the kernel are the same for both protocols, and leaving them out makes the guard's
share look larger, not smaller.

Usage: ``python -m bench.guard_instructions`` (needs ``valgrind``; about 6 min).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

ROUTES = ("poll", "create")
PROTOCOLS = ("plain", "guarded")
COUNTS = (1000, 6000)


class _CountingTransport(asyncio.Transport):
    """Enough of a transport for uvicorn's protocol: it counts writes and never blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8001), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True


def _request(route: str) -> bytes:
    """The request wrk sends in ``bench.load`` for ``route``, byte for byte in content."""
    from bench.traffic import CREATE_BODY, CREATE_HEADERS, CREATE_PATH, POLL_HEADERS, POLL_PREFIX

    body = CREATE_BODY.encode() if route == "create" else b""
    headers = {"Host": "127.0.0.1:8001", **(CREATE_HEADERS if route == "create" else POLL_HEADERS)}
    if body:
        headers["Content-Length"] = str(len(body))
    path = "/dashscope" + (CREATE_PATH if route == "create" else POLL_PREFIX + "bench")
    method = "POST" if route == "create" else "GET"
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode() + body


async def _drive(protocol: str, route: str, count: int) -> None:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from bench.bare_app import app
    from mock_server.connection import GuardedHttpProtocol

    config = uvicorn.Config(app, lifespan="off", proxy_headers=False, log_level="warning")
    config.load()
    cls = GuardedHttpProtocol if protocol == "guarded" else HttpToolsProtocol
    proto = cls(config=config, server_state=ServerState(), app_state={})
    transport = _CountingTransport()
    proto.connection_made(transport)
    data = _request(route)
    for done in range(count):
        proto.data_received(data)
        while transport.writes < 2 * (done + 1):  # head and body of the answer
            await asyncio.sleep(0)


def _instructions(valgrind: str, protocol: str, route: str, count: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    cmd += ["-m", "bench.guard_instructions", "--drive", protocol, route, str(count)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--drive"]:
        import uvloop

        uvloop.run(_drive(args[1], args[2], int(args[3])))
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not on PATH; install it with: apt-get install valgrind", file=sys.stderr)
        return 2
    per_request: dict[tuple[str, str], float] = {}
    for route in ROUTES:
        for protocol in PROTOCOLS:
            low, high = (_instructions(valgrind, protocol, route, n) for n in COUNTS)
            per_request[protocol, route] = (high - low) / (COUNTS[1] - COUNTS[0])
            print(f"  {route:<6} {protocol:<7} {per_request[protocol, route]:>9.0f} instr/request")
    print(f"{'route':<7} {'plain':>9} {'guarded':>9} {'extra':>7} {'guarded/plain':>14}")
    for route in ROUTES:
        plain, guarded = per_request["plain", route], per_request["guarded", route]
        print(
            f"{route:<7} {plain:>9.0f} {guarded:>9.0f} {guarded - plain:>7.0f} "
            f"{guarded / plain:>13.3f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
