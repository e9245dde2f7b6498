"""Servers under load: start one on a free loopback port, wait until it answers, stop it for sure.

Each server runs in a session of its own (``start_new_session``), which does
three things: a Ctrl-C at the terminal reaches the bench, not the servers, so
the bench stops them in order; stopping signals the whole session, so uvicorn
workers, a JVM's or node's children go too; and the server's memory is the
summed RSS of every process in that session.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

from bench import HOST, ROOT, BenchError
from bench.traffic import CREATE_BODY, CREATE_HEADERS, CREATE_PATH

__all__ = [
    "Fleet",
    "Server",
    "answers",
    "create_task",
    "free_port",
    "megabytes",
    "paddock_argv",
    "request",
    "serve_flags",
]

START_TIMEOUT = 60.0  # a JVM or node on a busy 2-core box can take a while
STOP_TIMEOUT = 10.0


@dataclass
class Server:
    """A server subprocess on a loopback port, with its output kept for a failure message."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: TextIO
    prefix: str = ""  # where the DashScope API lives on it ("/dashscope" on paddock)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, path: str) -> str:
        """The URL of a DashScope API path (``/api/v1/...``) on this server."""
        return self.base + self.prefix + path

    def log_tail(self, lines: int = 15) -> str:
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(f"    {line}" for line in text[-lines:]) or "    (no output)"

    def rss(self) -> int:
        """Resident memory in bytes, summed over every process of the server's session."""
        return session_rss(self.proc.pid)


def session_rss(session: int) -> int:
    """VmRSS summed over the processes whose session id is ``session`` (Linux /proc)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command's closing parenthesis: state ppid pgrp session ...
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) != session:
                continue
            status = (entry / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(match.group(1)) * 1024 if match else 0
    return total


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def free_port() -> int:
    """A port the kernel just handed out; the tiny race before the server binds it is accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def request(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None
) -> tuple[int, bytes]:
    """One request with a short timeout; an HTTP error status is an answer, not an exception."""
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answers(path: str, headers: dict[str, str] | None = None) -> Callable[[Server], bool]:
    """A readiness probe: GET ``path`` (from the server's root) answers 200."""

    def probe(server: Server) -> bool:
        try:
            return request(server.base + path, headers=headers)[0] == 200
        except OSError:
            return False

    return probe


def paddock_argv(*flags: str) -> Callable[[int], list[str]]:
    """``paddock serve FLAGS`` on loopback at the port the fleet picks."""
    return lambda port: [
        sys.executable,
        "-m",
        "paddock",
        "serve",
        *flags,
        "--host",
        HOST,
        "--port",
        str(port),
    ]


@functools.cache
def serve_flags() -> frozenset[str]:
    """The flags this checkout's ``paddock serve`` has, so the bench adapts to what exists."""
    done = subprocess.run(
        [sys.executable, "-m", "paddock", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))


def create_task(server: Server, headers: dict[str, str] = CREATE_HEADERS) -> dict[str, object]:
    """One task created on ``server``; its create answer, or the failure as a BenchError."""
    status, raw = request(server.url(CREATE_PATH), method="POST", headers=headers, body=CREATE_BODY)
    if status != 200:
        raise BenchError(f"{server.name}: create answered {status}: {raw[:300]!r}")
    answer: dict[str, object] = json.loads(raw)
    output = answer.get("output")
    if not isinstance(output, dict) or not isinstance(output.get("task_id"), str):
        raise BenchError(f"{server.name}: create answered no task_id: {raw[:300]!r}")
    return answer


class Fleet:
    """Every server one bench run starts; leaving the ``with`` block stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []

    def start(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        ready: Callable[[Server], bool],
        *,
        prefix: str = "",
        timeout: float = START_TIMEOUT,
    ) -> Server:
        """Start one server and wait until ``ready`` says so, or fail with its output."""
        port = free_port()
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            argv(port),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(name, port, proc, log_path, log, prefix)
        self.servers.append(server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _exited(proc.pid):
                self.stop(server)
                raise BenchError(
                    f"{name} exited with status {proc.returncode} before it was ready:\n"
                    f"{server.log_tail()}"
                )
            if ready(server):
                return server
            time.sleep(0.2)
        self.stop(server)
        raise BenchError(f"{name} was not ready within {timeout:.0f} s:\n{server.log_tail()}")

    def stop(self, server: Server) -> None:
        """SIGTERM to the server's session (a graceful stop), then SIGKILL to whatever is left.

        The leader is reaped only after both signals: until then its pid, which
        is the group's id, cannot be reused, so the signals reach only what we started.
        """
        if server in self.servers:
            self.servers.remove(server)
        proc = server.proc
        if proc.returncode is None:
            group = proc.pid  # a new session's leader leads its process group too
            if not _exited(group):
                _signal_group(group, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT
                while not _exited(group) and time.monotonic() < deadline:
                    time.sleep(0.05)
            _signal_group(group, signal.SIGKILL)  # workers or children that outlived the leader
            proc.wait()
        server.log.close()

    def stop_all(self) -> None:
        for server in list(self.servers):
            self.stop(server)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it (so its pid stays ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(group, sig)
