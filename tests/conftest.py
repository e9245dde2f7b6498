"""Shared fixtures: an in-process mock on a frozen clock, a real-socket server, test media."""

from __future__ import annotations

import base64
import io
import socket
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
