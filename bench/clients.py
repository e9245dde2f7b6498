"""The async reference client driving many tasks at once: its CPU per task beside the server's.

Starts ``paddock serve --timing fast --speed S`` (tasks finish in a fraction
of a second of real time), then runs N tasks concurrently through create,
poll and completion with ``AsyncClient`` (httpx's own transport) in this
process. It reports tasks per second and each side's CPU per task and per
second of wall time. There is no target on the client's figure: the real
workload is tens of requests a second (DashScope asks for a poll every 15 s),
so this records what the client costs rather than racing the server.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from contracts.client import AsyncClient, Task

__all__ = ["ClientRun", "run_clients"]

_TICKS = 100.0  # clock ticks per second for /proc/<pid>/stat on Linux


@dataclass(frozen=True)
class ClientRun:
    tasks: int
    seconds: float
    client_cpu: float  # CPU seconds used by this process
    server_cpu: float  # CPU seconds used by the server process
    rounds: int = 1  # runs of ``tasks // rounds`` concurrent tasks, pooled

    @classmethod
    def pooled(cls, runs: Sequence[ClientRun]) -> ClientRun:
        """Several runs as one: tasks, wall time and each side's CPU summed."""
        return cls(
            sum(run.tasks for run in runs),
            sum(run.seconds for run in runs),
            sum(run.client_cpu for run in runs),
            sum(run.server_cpu for run in runs),
            sum(run.rounds for run in runs),
        )

    def lines(self) -> list[str]:
        rate = self.tasks / self.seconds
        client_share = self.client_cpu / self.seconds
        server_share = self.server_cpu / self.seconds
        ratio = client_share / server_share
        # Within a tenth either way the two saturate at about the same load:
        # on a shared machine a 0.97 is not "the server first".
        if ratio < 0.9:
            verdict = "the server saturates first"
        elif ratio <= 1.1:
            verdict = "both saturate at about the same load"
        else:
            verdict = "the client saturates first"
        return [
            f"async client: {self.tasks // self.rounds} concurrent tasks (create, poll, "
            f"complete){f' x {self.rounds} rounds' if self.rounds > 1 else ''} in "
            f"{self.seconds:.1f} s = {rate:.0f} tasks/s",
            f"  CPU per task: client {self.client_cpu / self.tasks * 1000:.2f} ms, "
            f"server {self.server_cpu / self.tasks * 1000:.2f} ms "
            f"(client/server {ratio:.2f}x; no target on it)",
            f"  CPU per wall second: client {client_share:.0%} of a core, "
            f"server {server_share:.0%} of a core: {verdict}",
        ]


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(base_url: str, server_pid: int, tasks: int, poll: float) -> ClientRun:
    # One uvicorn worker is saturated by a few connections; more only add
    # per-connection bookkeeping to the client's side. The client is built as
    # a user would build it: httpx's own transport, environment honoured.
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with AsyncClient(
        "dashscope",
        base_url=base_url,
        api_key="sk-bench-client",
        poll_interval=poll,
        limits=limits,
        timeout=120,
    ) as client:

        async def one(i: int) -> Task:
            task = await client.submit("happyhorse-1.0-t2v", prompt=f"scene {i}", duration=3)
            return await client.wait(task, timeout=300)

        await one(-1)  # connections open and specs loaded before the clock starts
        client_before, server_before = _own_cpu(), _process_cpu(server_pid)
        started = time.perf_counter()
        done = await asyncio.gather(*(one(i) for i in range(tasks)))
        seconds = time.perf_counter() - started
        client_cpu = _own_cpu() - client_before
        server_cpu = _process_cpu(server_pid) - server_before
    failed = [t for t in done if not t.succeeded]
    if failed:
        raise RuntimeError(f"{len(failed)} of {tasks} tasks did not succeed, e.g. {failed[0]}")
    return ClientRun(tasks, seconds, client_cpu, server_cpu)


def run_clients(
    base_url: str, server_pid: int, *, tasks: int = 1000, poll: float = 0.5
) -> ClientRun:
    """Run the tasks and measure both sides' CPU over the same wall interval.

    The client runs on the event loop the server runs on: uvicorn picks
    uvloop when it is installed (uvicorn[standard] installs it), so the
    comparison is loop for loop, not uvloop against asyncio's pure-Python one.
    """
    coro = _drive(base_url, server_pid, tasks, poll)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":  # python -m bench.clients http://127.0.0.1:PORT/dashscope PID [ROUNDS]
    url, pid = sys.argv[1], int(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    runs = [run_clients(url, pid) for _ in range(rounds)]
    print("\n".join(ClientRun.pooled(runs).lines()))
    print("  by round: " + ", ".join(f"{r.client_cpu / r.server_cpu:.2f}x" for r in runs))
