"""The reference client on real sockets: HTTPS with a private CA, and through a forward proxy.

A team reaches the real providers over HTTPS, often from behind a corporate
proxy named in ``HTTPS_PROXY``. These tests serve the mock over TLS with a
throwaway CA (trustme) and run a small forward proxy on loopback that counts
what passes through it, so "the client honours the proxy" is something that
can fail.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trustme
import uvicorn

from contracts.client import AsyncClient, CertificateVerifyFailed, Client, PaddockError, Task
from contracts.client.driver import MAX_ANSWER_BYTES
from contracts.errors import UnexpectedResponse
from mock_server.app import MockState, create_app
from paddock.cli import main
from tests.conftest import KEY, free_port, image_bytes, open_video, run

pytestmark = pytest.mark.e2e

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


# -- a forward proxy that counts ------------------------------------------------------------------


class ForwardProxy:
    """An HTTP forward proxy on loopback, in its own thread and event loop.

    ``CONNECT host:port`` opens a tunnel (how HTTPS crosses a proxy) and is
    counted in ``tunnels``; an absolute-form request (``GET http://host/...``,
    how plain HTTP crosses one) is forwarded with ``Connection: close`` and
    counted in ``requests``.
    """

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.requests: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        opening = asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(opening, self._loop).result(10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line, *lines = head.decode("latin-1").split("\r\n")
            method, target, version = line.split(" ")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                self.tunnels.append(target)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            url = urlsplit(target)
            self.requests.append(f"{method} {target}")
            kept = [h for h in lines if h and not h.lower().startswith(_HOP_BY_HOP)]
            length = next(
                (int(h.split(":")[1]) for h in kept if h.lower().startswith("content-le")), 0
            )
            body = await reader.readexactly(length)
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            request = "\r\n".join(
                [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
            )
            up_writer.write(request.encode("latin-1") + body)
            await _pipe(up_reader, writer)
            up_writer.close()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


_HOP_BY_HOP = ("connection:", "proxy-connection:", "keep-alive:", "proxy-authorization:")


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = ForwardProxy()
    yield server
    server.close()


# -- the mock over TLS with a throwaway CA --------------------------------------------------------


@dataclass
class Served:
    url: str
    app: Any

    @property
    def state(self) -> MockState:
        state: MockState = self.app.state.paddock
        return state


@dataclass
class Authority:
    ca: Path  # the CA bundle a client is given
    key: Path
    cert: Path


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    files = Authority(folder / "ca.pem", folder / "key.pem", folder / "cert.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    issued.private_key_pem.write_to_path(str(files.key))
    for pem in issued.cert_chain_pems:
        pem.write_to_path(str(files.cert), append=True)
    return files


@pytest.fixture
def serve_mock(authority: Authority) -> Iterator[Callable[..., Served]]:
    """Start the mock with uvicorn on loopback, over TLS (``tls=True``) or plain HTTP."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(*, tls: bool) -> Served:
        app = create_app(timing="instant")
        port = free_port()
        keys = {"ssl_keyfile": str(authority.key), "ssl_certfile": str(authority.cert)}
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            **(keys if tls else {}),
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the mock did not start within 10 s")
            time.sleep(0.02)
        started.append((server, thread))
        return Served(f"{'https' if tls else 'http'}://127.0.0.1:{port}", app)

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=10)


def round_trip(client: Client, image: Path, out: Path) -> Task:
    """Upload (multipart), create, poll, download: every kind of request the client makes."""
    task = client.submit("happyhorse-1.0-i2v", media={"first_frame": str(image)}, duration=3)
    done = client.wait(task)
    client.download(done, out)
    return done


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "frame.png"
    path.write_bytes(image_bytes(640, 360))
    return path


# -- HTTPS ---------------------------------------------------------------------------------------


def test_https_with_the_ca_bundle_given_round_trips(
    serve_mock: Callable[..., Served], authority: Authority, image: Path, tmp_path: Path
) -> None:
    server = serve_mock(tls=True)
    base = f"{server.url}/dashscope"
    with Client("dashscope", base_url=base, api_key=KEY, verify=authority.ca) as client:
        done = round_trip(client, image, tmp_path / "out.mp4")
    assert done.result_url and done.result_url.startswith("https://127.0.0.1")
    duration, width, height, _ = open_video(tmp_path / "out.mp4")
    assert duration == pytest.approx(3.0, abs=0.05) and width > height


def test_the_async_client_round_trips_over_https(
    serve_mock: Callable[..., Served], authority: Authority, image: Path, tmp_path: Path
) -> None:
    server = serve_mock(tls=True)

    async def go() -> None:
        async with AsyncClient(
            "dashscope",
            base_url=f"{server.url}/dashscope",
            api_key=KEY,
            verify=str(authority.ca),
            poll_interval=0.05,
        ) as client:
            task = await client.submit("happyhorse-1.0-i2v", media=[("first_frame", str(image))])
            tasks = [task, *[await client.submit("happyhorse-1.0-t2v", prompt="x") for _ in "ab"]]
            done = await asyncio.gather(*(client.wait(t) for t in tasks))
            await client.download(done[0], tmp_path / "out.mp4")

    asyncio.run(go())
    duration, width, height, _ = open_video(tmp_path / "out.mp4")
    assert duration == pytest.approx(5.0, abs=0.05) and width > height


def test_an_unknown_ca_is_one_clear_error_and_nothing_is_retried_or_sent(
    serve_mock: Callable[..., Served], authority: Authority
) -> None:
    server = serve_mock(tls=True)
    sleeps: list[float] = []
    base = f"{server.url}/dashscope"
    with Client("dashscope", base_url=base, api_key=KEY, sleep=sleeps.append) as client:
        with pytest.raises(CertificateVerifyFailed) as caught:
            client.submit("happyhorse-1.0-t2v", prompt="x")
        assert "certificate verification failed for 127.0.0.1" in str(caught.value)
        assert "verify=" in str(caught.value)  # says what to do about it
        with pytest.raises(CertificateVerifyFailed):
            client.get("some-task")  # a poll, retried on network errors, is not retried here
    assert sleeps == []
    assert run(server.state.store.journal_size())[0] == 0


def test_the_cli_trusts_ssl_cert_file_and_says_one_line_without_it(
    serve_mock: Callable[..., Served],
    authority: Authority,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = serve_mock(tls=True)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    status = ["status", "--provider", "dashscope", "--base-url", f"{server.url}/dashscope"]
    assert main([*status, "no-such-task"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("paddock: certificate verification failed") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    assert main([*status, "no-such-task"]) == 0  # now the mock itself answers
    assert capsys.readouterr().out.split() == ["no-such-task", "UNKNOWN"]


def test_a_ca_bundle_that_cannot_be_used_is_said_at_construction(tmp_path: Path) -> None:
    base = "https://127.0.0.1:1/dashscope"
    with pytest.raises(PaddockError, match="no such CA bundle"):
        Client("dashscope", base_url=base, api_key=KEY, verify=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(PaddockError, match="not a PEM CA bundle"):
        Client("dashscope", base_url=base, api_key=KEY, verify=junk)


# -- proxies -------------------------------------------------------------------------------------


def test_https_goes_through_the_proxy_named_in_https_proxy(
    serve_mock: Callable[..., Served],
    authority: Authority,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    image: Path,
    tmp_path: Path,
) -> None:
    server = serve_mock(tls=True)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    base = f"{server.url}/dashscope"
    with Client("dashscope", base_url=base, api_key=KEY, verify=authority.ca) as client:
        round_trip(client, image, tmp_path / "out.mp4")
    host = urlsplit(server.url).netloc
    assert proxy.tunnels and set(proxy.tunnels) == {host}  # every connection was tunnelled
    assert proxy.requests == []


def test_plain_http_goes_through_the_proxy_named_in_http_proxy(
    serve_mock: Callable[..., Served],
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    image: Path,
    tmp_path: Path,
) -> None:
    server = serve_mock(tls=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    async def go() -> None:
        base = f"{server.url}/dashscope"
        async with AsyncClient("dashscope", base_url=base, api_key=KEY, poll_interval=0.05) as ac:
            await ac.wait(await ac.submit("happyhorse-1.0-t2v", prompt="waves"))

    asyncio.run(go())
    with Client("dashscope", base_url=f"{server.url}/dashscope", api_key=KEY) as client:
        round_trip(client, image, tmp_path / "out.mp4")
    methods = {line.split(" ")[0] for line in proxy.requests}
    assert methods == {"GET", "POST"}  # policy, upload, create, polls, download
    assert all(line.split(" ")[1].startswith(server.url) for line in proxy.requests)


def test_no_proxy_bypasses_the_proxy(
    serve_mock: Callable[..., Served],
    authority: Authority,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    image: Path,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for tls, verify in ((True, authority.ca), (False, True)):
        server = serve_mock(tls=tls)
        base = f"{server.url}/dashscope"
        with Client("dashscope", base_url=base, api_key=KEY, verify=verify) as client:
            round_trip(client, image, tmp_path / "out.mp4")
    assert proxy.tunnels == [] and proxy.requests == []


def test_a_proxy_passed_in_is_used_and_the_environment_can_be_ignored(
    serve_mock: Callable[..., Served],
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = serve_mock(tls=False)
    base = f"{server.url}/dashscope"
    with Client("dashscope", base_url=base, api_key=KEY, proxy=proxy.url) as client:
        client.submit("happyhorse-1.0-t2v", prompt="x")
    assert len(proxy.requests) == 1
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with Client("dashscope", base_url=base, api_key=KEY, trust_env=False) as client:
        client.submit("happyhorse-1.0-t2v", prompt="x")
    assert len(proxy.requests) == 1  # trust_env=False: the variable was not read


# -- bounds and the shared API -------------------------------------------------------------------


def test_an_oversized_api_answer_is_refused_not_buffered() -> None:
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        chunks = (b"x" * 65536 for _ in range(MAX_ANSWER_BYTES // 65536 + 2))
        return httpx.Response(200, content=chunks)

    transport = httpx.MockTransport(handler)
    client = Client("anyfast", base_url="http://mock/anyfast", api_key=KEY, transport=transport)
    with client, pytest.raises(UnexpectedResponse, match="answered more than"):
        client.get("task")
    assert sent == [1]


def test_both_clients_show_one_signature_and_docstring_per_method() -> None:
    for name in ("submit", "get", "wait", "cancel", "list", "download"):
        sync = inspect.signature(getattr(Client("dashscope", api_key=KEY), name))
        coro = inspect.signature(getattr(AsyncClient("dashscope", api_key=KEY), name))
        assert sync == coro and "self" not in sync.parameters, name
        assert getattr(Client, name).__doc__, name
    assert list(inspect.signature(Client("dashscope", api_key=KEY).submit).parameters)[:3] == [
        "model",
        "prompt",
        "media",
    ]
