"""The connection guard on real loopback sockets: uvicorn serving with GuardedHttpProtocol.

Each test speaks raw HTTP/1.1 over a socket, because what is under test is
what a client sees on the wire: whether the server closes an idle or
trickling connection, and in whose envelope it answers bytes that are not a
well-formed request. Against plain uvicorn each of them fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import resource
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect as websocket_connect

from contracts.validate import Violation
from mock_server.app import MockState, create_app
from mock_server.clock import Clock
from mock_server.connection import (
    ConnectionGuard,
    Headers,
    attach_guard,
    default_answer,
    find_guard,
    raise_fd_limit,
)

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = "mock_server.connection:GuardedHttpProtocol"
# Bounds on waiting for the server, not measurements: generous on a busy box.
PATIENCE = 10.0


# -- a small app, and an envelope that says it is the app's ---------------------------------------


async def where(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "method": request.method})


async def digest(request: Request) -> JSONResponse:
    """Count and hash the body as it streams, so a 30 MiB upload is never held whole."""
    size, sha = 0, hashlib.sha256()
    async for chunk in request.stream():
        size += len(chunk)
        sha.update(chunk)
    return JSONResponse({"bytes": size, "sha256": sha.hexdigest()})


def envelope(
    method: bytes | None, path: str | None, status: int, message: str
) -> tuple[int, Headers, bytes]:
    body = {
        "error": {
            "status": status,
            "message": message,
            "method": method.decode() if method else None,
            "path": path,
        }
    }
    return (
        status,
        [(b"content-type", b"application/json"), (b"x-envelope", b"test-app")],
        (json.dumps(body).encode()),
    )


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


def small_app(**limits: Any) -> Starlette:
    """The app, guarded with ``limits`` and answering refusals in its own envelope."""
    limits.setdefault("answer", envelope)
    app = Starlette(
        routes=[
            WebSocketRoute("/echo", echo),
            Route("/digest", digest, methods=["POST"]),
            Route("/{rest:path}", where, methods=["GET", "POST", "HEAD"]),
        ]
    )
    attach_guard(app, ConnectionGuard(**limits))
    return app


# -- serving and speaking raw HTTP ----------------------------------------------------------------


@dataclass
class Served:
    port: int
    server: uvicorn.Server

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE)
        return sock


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """uvicorn with the guard, by import string as ``paddock serve --workers N`` will name it."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any, **options: Any) -> Served:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        options.setdefault("log_level", "warning")
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", http=PROTOCOL, **options
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + PATIENCE
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        running.append((server, thread))
        return Served(port, server)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=PATIENCE)


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reader:
    """Responses parsed off a socket with httptools, the parser uvicorn itself uses."""

    sock: socket.socket
    responses: list[Response] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[bytes, bytes] = {}
        self._body = bytearray()

    def on_message_begin(self) -> None:
        self._headers, self._body = {}, bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        self.responses.append(Response(status, self._headers, bytes(self._body)))

    def read(self, count: int = 1, *, until_closed: bool = False) -> list[Response]:
        """Read until ``count`` responses (and EOF if asked) arrived; fail past PATIENCE."""
        deadline = time.monotonic() + PATIENCE
        while len(self.responses) < count or (until_closed and not self.closed):
            assert not self.closed, f"closed after {len(self.responses)} of {count} responses"
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the server kept the connection open ({self.responses})"
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""  # closed with our bytes unread: closed all the same
            if not data:
                self.closed = True
                continue
            self._parser.feed_data(data)
        return self.responses


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset); False if it is still open now."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1 << 16) == b""
    except ConnectionResetError:
        return True


def get(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_refused(response: Response, status: int, message: str) -> dict[str, Any]:
    """The answer is the app's envelope, with the status and message the guard chose."""
    assert response.status == status
    assert response.headers[b"x-envelope"] == b"test-app"
    assert response.headers[b"connection"] == b"close"
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    assert message in error["message"]
    return error


# -- time -----------------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(serve: Callable[..., Served]) -> None:
    served = serve(small_app(head_timeout=0.3))
    with served.connect() as sock:
        reader = Reader(sock)
        assert reader.read(0, until_closed=True) == []


def test_a_connection_idle_after_a_request_is_closed(serve: Callable[..., Served]) -> None:
    # Keep-alive idleness is uvicorn's own timer, which the guard must not disturb.
    served = serve(small_app(head_timeout=30), timeout_keep_alive=1)
    with served.connect() as sock:
        sock.sendall(get("/first"))
        reader = Reader(sock)
        [response] = reader.read(1, until_closed=True)
        assert response.json() == {"path": "/first", "method": "GET"}


def test_a_trickled_head_is_answered_408_and_closed(serve: Callable[..., Served]) -> None:
    served = serve(small_app(head_timeout=0.3))
    with served.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET /sl")  # the target, too, arrives in pieces
        time.sleep(0.05)
        sock.sendall(b"ow HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        # A byte every 50 ms never completes the head; bounded at 10 s of trickling.
        for _ in range(200):
            if select.select([sock], [], [], 0.05)[0]:
                break
            sock.sendall(b"a")
        else:
            pytest.fail("the server still waited for the trickled head after 10 s")
        [response] = Reader(sock).read(1, until_closed=True)
    error = assert_refused(response, 408, "did not arrive within 0.3 s")
    assert (error["method"], error["path"]) == ("GET", "/slow")


def test_a_slow_request_is_not_cut_by_the_head_timeout(serve: Callable[..., Served]) -> None:
    """The clock runs only while a head is awaited: a body may take longer, and so may the app."""
    served = serve(small_app(head_timeout=0.3))
    body = b"x" * 1000
    with served.connect() as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n")
        for start in range(0, len(body), 250):
            time.sleep(0.25)  # four pauses, each near the head timeout, sum well past it
            sock.sendall(body[start : start + 250])
        [response] = Reader(sock).read(1)
    assert response.json() == {"bytes": 1000, "sha256": hashlib.sha256(body).hexdigest()}


# -- size -----------------------------------------------------------------------------------------


def test_an_oversized_head_is_431_in_the_envelope_and_others_are_served(
    serve: Callable[..., Served],
) -> None:
    served = serve(small_app(max_head_bytes=8192))
    with served.connect() as sock:
        sock.sendall(get("/big", "X-Big: " + "b" * 20_000))
        [response] = Reader(sock).read(1, until_closed=True)
    error = assert_refused(response, 431, "larger than 8192 bytes")
    assert (error["method"], error["path"]) == ("GET", "/big")
    with served.connect() as sock:
        sock.sendall(get("/after"))
        [response] = Reader(sock).read(1)
    assert response.json()["path"] == "/after"


def test_a_head_that_never_ends_is_cut_at_the_limit(serve: Callable[..., Served]) -> None:
    """A header still arriving is counted as it comes: 16 MiB are never taken in to find out."""
    served = serve(small_app(max_head_bytes=8192))
    outcome: list[BaseException] = []

    def send_endless_header(sock: socket.socket) -> None:
        try:
            sock.sendall(b"GET /endless HTTP/1.1\r\nHost: test\r\nX-Endless: ")
            for _ in range(256):
                sock.sendall(b"e" * 65536)
        except OSError as exc:
            outcome.append(exc)

    with served.connect() as sock:
        sender = threading.Thread(target=send_endless_header, args=(sock,))
        sender.start()
        [response] = Reader(sock).read(1, until_closed=True)
        sender.join(PATIENCE)
    assert_refused(response, 431, "larger than 8192 bytes")
    assert outcome, "the server took in a 16 MiB header"


def test_a_head_under_the_limit_is_served_even_pipelined(serve: Callable[..., Served]) -> None:
    """The limit is on the head as parsed: no request under it is refused, however it arrives."""
    served = serve(small_app(max_head_bytes=8192))
    near = get("/near", "X-Pad: " + "p" * 7900)
    assert len(near) < 8192
    with served.connect() as sock:
        sock.sendall(get("/first") + near + get("/third"))
        responses = Reader(sock).read(3)
    assert [r.json()["path"] for r in responses] == ["/first", "/near", "/third"]


def test_a_head_split_across_reads_is_measured_whole(serve: Callable[..., Served]) -> None:
    """Its earlier reads count, and its blank line may straddle two reads: no false 431."""
    served = serve(small_app(max_head_bytes=8192))
    body = os.urandom(200_000)
    pad = "p" * (8000 - len("POST /digest HTTP/1.1\r\nHost: test\r\nContent-Length: 200000\r\n"))
    head = (
        b"POST /digest HTTP/1.1\r\nHost: test\r\nContent-Length: 200000\r\nX-Pad: %s\r\n\r\n"
        % pad.encode()
    )
    assert 8000 < len(head) <= 8192
    with served.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head[:-2])  # up to the first CRLF of the blank line
        time.sleep(0.2)  # so the server most likely reads the rest separately
        sock.sendall(head[-2:] + body)
        [response] = Reader(sock).read(1)
    assert response.json() == {"bytes": 200_000, "sha256": hashlib.sha256(body).hexdigest()}

    over = head.replace(b"X-Pad: ", b"X-Pad: " + b"q" * 300)
    with served.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(over[:5000])
        time.sleep(0.2)
        sock.sendall(over[5000:] + body)
        [response] = Reader(sock).read(1, until_closed=True)
    assert_refused(response, 431, "larger than 8192 bytes")


# -- framing --------------------------------------------------------------------------------------


BROKEN = {
    "not a request line": b"THIS IS NOT HTTP\r\n\r\n",
    "space in a header name": get("/x", "Bad Header: v"),
    "control byte in a header value": get("/x", "X-Nul: a\x00b"),
    "a target uvicorn cannot parse": get("http://host:99999/x"),
    "an absolute target without a path": get("http://host?x"),
    "both framings": (
        b"POST /digest HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nabc"
    ),
    "bad chunk size": (
        b"POST /digest HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ZZ\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("raw", BROKEN.values(), ids=BROKEN.keys())
def test_broken_framing_is_400_in_the_envelope(serve: Callable[..., Served], raw: bytes) -> None:
    served = serve(small_app())
    with served.connect() as sock:
        sock.sendall(raw)
        [response] = Reader(sock).read(1, until_closed=True)
    assert_refused(response, 400, "Malformed HTTP request")
    assert b"Invalid HTTP request received" not in response.body


def test_a_broken_chunk_mid_upload_is_400_in_the_envelope(serve: Callable[..., Served]) -> None:
    """The head reached the app; the body's framing breaks later, in another read."""
    served = serve(small_app())
    with served.connect() as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"4\r\nabcd\r\n")
        time.sleep(0.1)
        sock.sendall(b"4\r\nabcdef\r\n0\r\n\r\n")
        [response] = Reader(sock).read(1, until_closed=True)
    error = assert_refused(response, 400, "Malformed HTTP request")
    assert (error["method"], error["path"]) == ("POST", "/digest")


def test_an_answer_callback_that_fails_still_answers_json(serve: Callable[..., Served]) -> None:
    def broken(method: bytes | None, path: str | None, status: int, message: str) -> Any:
        raise RuntimeError("a bug in the envelope")

    served = serve(small_app(answer=broken), log_level="critical")
    with served.connect() as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        [response] = Reader(sock).read(1, until_closed=True)
    assert response.status == 400
    assert response.json() == {"error": "Malformed HTTP request: Invalid method encountered."}


# -- the same verdicts as uvicorn ----------------------------------------------------------------

SEEDS = [
    get("/a?b=1", "User-Agent: t"),
    b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    get("http://h/x"),
]
MUTATION_BYTES = b'\r\n :;/?#%\x00\x7f\x80\tAaz09-_,"()[]{}@=\\*.'


def mutated(rng: random.Random) -> bytes:
    """A valid request with one to three bytes inserted, deleted or replaced."""
    request = bytearray(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(request))
        roll = rng.random()
        if roll < 0.4:
            request[pos:pos] = bytes([rng.choice(MUTATION_BYTES)])
        elif roll < 0.7:
            del request[pos]
        else:
            request[pos] = rng.choice(MUTATION_BYTES)
    return bytes(request)


def answers(port: int, request: bytes) -> list[Response]:
    """What a server answers ``request`` with, the client having finished sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reader = Reader(sock)
        with contextlib.suppress(AssertionError):  # closed after fewer: that is the answer
            reader.read(99, until_closed=True)
    return reader.responses


def test_the_guard_refuses_exactly_what_uvicorn_would(serve: Callable[..., Served]) -> None:
    """Mutated requests: the guard serves what plain uvicorn serves and refuses what it refuses."""
    guarded = serve(small_app(), ws="none")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(small_app(), host="127.0.0.1", port=port, lifespan="off", ws="none")
    plain = uvicorn.Server(config)
    thread = threading.Thread(target=plain.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while not plain.started:
            assert time.monotonic() < deadline, "the plain server did not start"
            time.sleep(0.02)
        rng = random.Random(11)
        for _ in range(300):
            request = mutated(rng)
            ours = answers(guarded.port, request)
            assert [r.status for r in ours] == [r.status for r in answers(port, request)], request
            # uvicorn's own plain-text 400 never gets out: every refusal is the app's.
            assert all(r.headers.get(b"x-envelope") for r in ours if r.status == 400), request
    finally:
        plain.should_exit = True
        thread.join(PATIENCE)


# -- what must still work -------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(serve: Callable[..., Served]) -> None:
    served = serve(small_app())
    body = b'{"n": 2}'
    post = b"POST /digest HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    with served.connect() as sock:
        sock.sendall(get("/one") + post + get("/three") + get("/four", "Connection: close"))
        responses = Reader(sock).read(4, until_closed=True)
    assert responses[0].json()["path"] == "/one"
    assert responses[1].json()["bytes"] == len(body)
    assert [r.json()["path"] for r in responses[2:]] == ["/three", "/four"]


def test_expect_100_continue(serve: Callable[..., Served]) -> None:
    served = serve(small_app())
    body = b"z" * 5000
    with served.connect() as sock:
        sock.sendall(
            b"POST /digest HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5000\r\n\r\n"
        )
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        [response] = Reader(sock).read(1)
    assert response.json()["bytes"] == 5000


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_30_mib_body_passes_untouched(serve: Callable[..., Served], chunked: bool) -> None:
    served = serve(small_app(max_head_bytes=4096))
    body = os.urandom(1 << 20) * 30
    with served.connect() as sock:
        if chunked:
            sock.sendall(
                b"POST /digest HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for start in range(0, len(body), 1 << 18):
                piece = body[start : start + (1 << 18)]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(
                b"POST /digest HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            sock.sendall(body)
        [response] = Reader(sock).read(1)
    assert response.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_websocket_is_handed_over_and_outlives_the_head_timeout(
    serve: Callable[..., Served],
) -> None:
    served = serve(small_app(head_timeout=0.3))
    with websocket_connect(f"ws://127.0.0.1:{served.port}/echo", open_timeout=PATIENCE) as ws:
        ws.send("before")
        assert ws.recv(timeout=PATIENCE) == "before"
        time.sleep(0.6)  # twice the head timeout: the guard has stepped aside
        ws.send("after")
        assert ws.recv(timeout=PATIENCE) == "after"


def test_the_guard_is_found_behind_uvicorns_middleware(serve: Callable[..., Served]) -> None:
    """With proxy headers on, uvicorn wraps the app; the guard is still the app's."""
    served = serve(small_app(head_timeout=0.3), proxy_headers=True)
    assert find_guard(served.server.config.loaded_app).head_timeout == 0.3
    with served.connect() as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        [response] = Reader(sock).read(1, until_closed=True)
    assert_refused(response, 400, "Malformed HTTP request")


def test_guard_limits_are_checked() -> None:
    for bad in ({"head_timeout": 0}, {"max_head_bytes": 10}, {"max_connections": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ConnectionGuard(**bad)
    status, _, body = default_answer(None, None, 431, "too big")
    assert (status, json.loads(body)) == (431, {"error": "too big"})


# -- many connections -----------------------------------------------------------------------------


def test_past_max_connections_the_longest_idle_is_closed(serve: Callable[..., Served]) -> None:
    served = serve(small_app(max_connections=40, head_timeout=60))
    idle = [served.connect() for _ in range(100)]
    try:
        with served.connect() as sock:
            sock.sendall(get("/still-served"))
            [response] = Reader(sock).read(1)
        assert response.json()["path"] == "/still-served"
        # The flood's oldest sockets made room; its newest are still held open.
        deadline = time.monotonic() + PATIENCE
        while not closed_by_server(idle[0]):
            assert time.monotonic() < deadline, "the longest-idle connection was not closed"
            time.sleep(0.05)
        newest = idle[-1]
        newest.sendall(get("/newest"))
        [response] = Reader(newest).read(1)
        assert response.json()["path"] == "/newest"
    finally:
        for sock in idle:
            sock.close()


_SERVER = textwrap.dedent(
    """
    import resource, sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from mock_server.connection import ConnectionGuard, attach_guard, raise_fd_limit

    # The soft limit many systems start a process with.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    raise_fd_limit()

    async def ok(request):
        return PlainTextResponse(request.url.path)

    app = Starlette(routes=[Route("/{rest:path}", ok)])
    attach_guard(app, ConnectionGuard(head_timeout=120))
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off",
        http="mock_server.connection:GuardedHttpProtocol", proxy_headers=False,
    )
    """
)


def test_1100_idle_sockets_do_not_lock_clients_out() -> None:
    """A server started with the common 1024-descriptor soft limit raises it and holds them all."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2400:
        pytest.skip(f"the hard descriptor limit ({hard}) is too low for this test")
    raise_fd_limit()  # this process holds the 1,100 client ends
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=PATIENCE))
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
            sock.sendall(get("/after-1100"))
            [response] = Reader(sock).read(1)
        assert response.body == b"/after-1100"
        # Held, not evicted: the very first idle socket is still a working connection.
        idle[0].sendall(get("/first-idle"))
        [response] = Reader(idle[0]).read(1)
        assert response.body == b"/first-idle"
    finally:
        for sock in idle:
            sock.close()
        server.terminate()
        server.wait(timeout=PATIENCE)
        if server.stderr:
            server.stderr.close()


# -- the real mock --------------------------------------------------------------------------------


def provider_envelope(state: MockState) -> Callable[..., tuple[int, Headers, bytes]]:
    """The answer the lead will move into the app: the provider by path prefix, its envelope."""

    def answer(
        method: bytes | None, path: str | None, status: int, message: str
    ) -> tuple[int, Headers, bytes]:
        provider = state.root_provider
        for name in state.services:
            if path is not None and (path == f"/{name}" or path.startswith(f"/{name}/")):
                provider = name
        if provider is None:
            return default_answer(method, path, status, message)
        service = state.services[provider]
        # The provider's catch-all errors for a request it cannot read, at the guard's status.
        kind = "body_too_large" if status in (413, 431) else "body_not_json"
        error, _ = Violation(kind).resolve(service.spec)
        response = service.error(error, message, status=status)
        return response.status_code, response.raw_headers, bytes(response.body)

    return answer


def test_the_mock_answers_in_each_providers_envelope(serve: Callable[..., Served]) -> None:
    app = create_app(clock=Clock(speed=0))
    state: MockState = app.state.paddock
    attach_guard(app, ConnectionGuard(answer=provider_envelope(state)))
    served = serve(app, proxy_headers=False)

    with served.connect() as sock:
        sock.sendall(
            b"POST /anyfast/v1/video/generations HTTP/1.1\r\nHost: test\r\n"
            b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}"
        )
        [response] = Reader(sock).read(1, until_closed=True)
    assert response.status == 400
    assert response.headers[b"content-type"] == b"application/json"
    anyfast = response.json()
    assert set(anyfast) == {"code", "message", "data"} and anyfast["data"] is None
    assert "Malformed HTTP request" in anyfast["message"]

    path = "/dashscope/api/v1/services/aigc/video-generation/video-synthesis"
    with served.connect() as sock:
        sock.sendall(get(path, "X-Huge: " + "h" * 100_000))
        [response] = Reader(sock).read(1, until_closed=True)
    assert response.status == 431
    dashscope = response.json()
    assert set(dashscope) == {"code", "message", "request_id"}
    assert dashscope["code"] == "RequestTooLarge"

    # And the mock still serves: an unknown task, in DashScope's own words.
    with served.connect() as sock:
        sock.sendall(get("/dashscope/api/v1/tasks/nope", "Authorization: Bearer sk-x"))
        [response] = Reader(sock).read(1)
    assert response.json()["output"] == {"task_id": "nope", "task_status": "UNKNOWN"}
