"""Shared fixtures: an in-process mock on a frozen clock, a real-socket server, test media."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from contracts.conformance.targets import SyncASGITransport as SyncASGITransport
from contracts.spec import SpecSet, load_specs
from contracts.task import TaskRecord
from mock_server.app import MockState, create_app
from mock_server.clock import Clock

KEY = "sk-test-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
DASHSCOPE_HEADERS = {**AUTH, "X-DashScope-Async": "enable", "Content-Type": "application/json"}
CREATE_PATHS = {
    "dashscope": "/dashscope/api/v1/services/aigc/video-generation/video-synthesis",
    "apiyi": "/apiyi/wan/api/v1/services/aigc/video-generation/video-synthesis",
    "anyfast": "/anyfast/v1/video/generations",
}
QUERY_PATHS = {
    "dashscope": "/dashscope/api/v1/tasks/{}",
    "apiyi": "/apiyi/v1/tasks/{}",
    "anyfast": "/anyfast/v1/video/generations/{}",
}
HEADERS = {
    "dashscope": DASHSCOPE_HEADERS,
    "apiyi": DASHSCOPE_HEADERS,
    "anyfast": {**AUTH, "Content-Type": "application/json"},
}


def image_bytes(width: int = 640, height: int = 480, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def open_video(path: Path) -> tuple[float, int, int, float]:
    """Duration (s), width, height and frame rate of an MP4, as PyAV reads it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert container.duration is not None
        return container.duration / 1e6, stream.width, stream.height, float(stream.average_rate)


def data_uri(payload: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


def png_uri(width: int = 640, height: int = 480) -> str:
    return data_uri(image_bytes(width, height))


def wav_bytes(seconds: float = 3.0, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


def run(coroutine: Any) -> Any:
    """Run one store call from a test; the memory store's calls never wait on anything."""
    return asyncio.run(coroutine)


def stored_task(state: MockState, task_id: str) -> TaskRecord | None:
    """The stored record of a task, whichever provider made it."""
    for provider in state.specs.names():
        task = run(state.store.get_task(provider, task_id))
        if task is not None:
            return task  # type: ignore[no-any-return]
    return None


def stored_tasks(state: MockState) -> list[TaskRecord]:
    """Every stored task, newest first."""
    page, _ = run(state.store.page_tasks(None, 0, 1_000_000))
    return page  # type: ignore[no-any-return]


@dataclass
class Mock:
    """An in-process mock with a frozen clock: time moves only when a test says so."""

    app: Starlette
    client: TestClient

    @property
    def state(self) -> MockState:
        state: MockState = self.app.state.paddock
        return state

    def advance(self, seconds: float) -> None:
        self.state.clock.advance(seconds)

    def task(self, task_id: str) -> TaskRecord | None:
        return stored_task(self.state, task_id)

    def tasks(self) -> list[TaskRecord]:
        return stored_tasks(self.state)

    def create(self, provider: str, body: dict[str, Any], **headers: str) -> Any:
        return self.client.post(
            CREATE_PATHS[provider], json=body, headers={**HEADERS[provider], **headers}
        )

    def query(self, provider: str, task_id: str, key: str = KEY) -> Any:
        return self.client.get(
            QUERY_PATHS[provider].format(task_id), headers={"Authorization": f"Bearer {key}"}
        )


@pytest.fixture(scope="session")
def specs() -> SpecSet:
    return load_specs()


@pytest.fixture
def make_mock(specs: SpecSet) -> Iterator[Callable[..., Mock]]:
    clients: list[TestClient] = []

    def make(**options: Any) -> Mock:
        options.setdefault("clock", Clock(speed=0))
        app = create_app(options.pop("specs", specs), **options)
        client = TestClient(app)
        clients.append(client)
        return Mock(app, client)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def mock(make_mock: Callable[..., Mock]) -> Mock:
    return make_mock()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    app: Starlette

    @property
    def state(self) -> MockState:
        state: MockState = self.app.state.paddock
        return state


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """Start the mock with uvicorn on a real loopback socket, in a thread."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**options: Any) -> LiveServer:
        app = create_app(**options)
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the mock did not start within 10 s")
            time.sleep(0.02)
        servers.append((server, thread))
        return LiveServer(f"http://127.0.0.1:{port}", app)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


# -- a real Redis, for the shared store ---------------------------------------------------------


def _redis_server_binary() -> str:
    """``redis-server``, installed from the distribution's packages if this machine lacks it.

    The README's test command is all a newcomer (and CI) runs, so the suite
    installs what it needs rather than skipping the shared-store tests.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "install", "-y", "-q", "redis-server"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
            # A fresh machine may not have read its package lists yet.
            subprocess.run([apt, "update", "-q"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = shutil.which("redis-server")
        if found:
            return found
    pytest.fail(
        "these tests need redis-server: install it (Debian/Ubuntu: apt-get install -y "
        "redis-server; macOS: brew install redis) and run the tests again",
        pytrace=False,
    )


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the whole session."""
    binary = _redis_server_binary()
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"redis-server did not start on port {port}", pytrace=False)
        time.sleep(0.05)
    yield RedisServer(f"redis://127.0.0.1:{port}/0", port, process)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """An empty Redis database for one test."""
    redis_server.flush()
    return redis_server.url


# -- `paddock serve` as a user runs it ----------------------------------------------------------


@dataclass
class ServeProcess:
    """A ``paddock serve`` subprocess on a loopback port, its output kept in a file."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_serve(args: list[str], log: Path, port: int | None = None) -> ServeProcess:
    """Start ``paddock serve ARGS`` and wait until it answers its health check."""
    import httpx

    port = port or free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "paddock.cli", "serve", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = ServeProcess(f"http://127.0.0.1:{port}", port, process, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(served.url + "/_paddock/health", timeout=1).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            served.stop()
            raise RuntimeError(f"paddock serve did not start:\n{served.output()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture
def paddock_serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start ``paddock serve`` subprocesses; every one is stopped after the test."""
    started: list[ServeProcess] = []

    def start(*args: str, port: int | None = None) -> ServeProcess:
        served = start_serve(list(args), tmp_path / f"serve-{len(started)}.log", port)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()
