"""Running wrk and reading its report: one place for the flags, the time bound and the parsing.

Every server in the bench is loaded by the same wrk with the same flags
(threads, connections, timeout), so a ratio between two of them compares the
servers and nothing else.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bench import BenchError

__all__ = ["Wrk", "WrkResult", "find_wrk", "parse_wrk", "seconds"]


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; ``errors`` lists anything that voids the numbers."""

    rps: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    p50: str
    p99: str
    counts: dict[str, int] = field(default_factory=dict)  # a counting script's counters

    @property
    def errors(self) -> list[str]:
        problems = [f"{self.non_2xx} non-2xx/3xx responses"] if self.non_2xx else []
        problems += [f"{n} socket {kind} errors" for kind, n in self.socket_errors.items() if n]
        if self.counts.get("unexpected"):
            problems.append(f"{self.counts['unexpected']} answers of an unexpected shape")
        if self.requests == 0:
            problems.append("no request completed")
        return problems

    @property
    def p50_s(self) -> float:
        return seconds(self.p50)

    @property
    def p99_s(self) -> float:
        return seconds(self.p99)


_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_PERCENTILE = re.compile(r"^\s+(50|99)%\s+(\S+)", re.MULTILINE)
_COUNTS = re.compile(r"^bench-counts (.*)$", re.MULTILINE)
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """wrk's latency text (``812.00us``, ``2.95ms``, ``1.02s``) in seconds; NaN if unreadable."""
    match = _DURATION.match(text)
    return float(match.group(1)) * _UNIT[match.group(2)] if match else float("nan")


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
    counters = _COUNTS.search(text)
    named = dict(part.split("=", 1) for part in counters.group(1).split()) if counters else {}
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        p50=percentiles.get("50", "?"),
        p99=percentiles.get("99", "?"),
        counts={name: int(value) for name, value in named.items()},
    )


@dataclass(frozen=True)
class Wrk:
    """wrk with the flags every run of one bench shares."""

    path: str
    threads: int
    connections: int
    timeout: str = "5s"

    def flags(self) -> str:
        return f"-t{self.threads} -c{self.connections} --timeout {self.timeout} --latency"

    def run(self, url: str, script: Path, duration: float, limit: int = 0) -> WrkResult:
        """One run against ``url`` for ``duration`` s, or until ``limit`` answers if one is given.

        A counting script stops its thread at the limit and says so; wrk itself
        would sleep out its ``-d``, so it is interrupted (SIGINT: it prints its
        report and exits). ``-d`` plus a margin bounds the call in any case.
        """
        cmd = [
            self.path,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(math.ceil(duration), 1)}s",
            "--timeout",
            self.timeout,
            "--latency",
            "-s",
            str(script),
            url,
        ]
        if limit:
            cmd += ["--", str(math.ceil(limit / self.threads))]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        watchdog = threading.Timer(duration + 30, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None and proc.stderr is not None
            lines, stopped = [], 0
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("bench-limit"):
                    stopped += 1
                    if stopped == self.threads:
                        proc.send_signal(signal.SIGINT)
            errors = proc.stderr.read()
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode == -signal.SIGKILL:
            raise BenchError(f"wrk did not finish: {' '.join(cmd)}")
        if proc.returncode != 0:
            raise BenchError(f"wrk failed ({proc.returncode}): {errors.strip() or ''.join(lines)}")
        return parse_wrk("".join(lines))


def find_wrk() -> str:
    """wrk's path; installed from Debian's packages when missing and running as root.

    A fresh machine has no wrk. As root (a CI box, a container) installing it
    is what a person would do next anyway; otherwise one line says how.
    """
    found = shutil.which("wrk")
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None:
        raise BenchError("wrk is not on PATH; install it with: sudo apt-get install -y wrk")
    print("bench: wrk is missing; installing it with apt-get ...", flush=True)

    def install() -> str | None:
        subprocess.run([apt, "install", "-y", "-q", "wrk"], capture_output=True, timeout=300)
        return shutil.which("wrk")

    found = install()
    if found is None:
        # A fresh image has no package lists yet.
        subprocess.run([apt, "update", "-q"], capture_output=True, timeout=300)
        found = install()
    if found is None:
        raise BenchError("wrk is not on PATH and apt-get could not install it")
    return found
