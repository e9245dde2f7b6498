"""The SSRF-safe media fetcher, against scripted servers on real loopback sockets.

Each guard is shown refusing something that would otherwise have been
fetched: the servers really listen on 127.0.0.1, so a fetcher without the
guard would read the file (or hang, or take too much) and the test fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from contracts.bodies import build_create_body
from contracts.spec import SpecSet
from contracts.task import TaskRequest
from contracts.validate import MediaResolver, RemoteOnlyResolver, Violation, validate_create
from mock_server.fetch import FetchError, MediaFetcher, address_refusal, validate_fetching
from tests.conftest import image_bytes

PNG = image_bytes(640, 480)
SMALL_PNG = image_bytes(200, 200)


class MediaServer:
    """Serves a PNG and a few misbehaviours, and remembers every request head."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.active = 0
        self.peak = 0
        self.base = ""

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.heads.append(head)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self._answer(head, reader, writer)
        except ConnectionError:
            pass
        finally:
            self.active -= 1
            writer.close()

    async def _answer(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        target = head.split(b" ")[1].decode()
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path in ("/frame.png", "/small.png", "/slow.png"):
            if path == "/slow.png":
                await asyncio.sleep(0.05)  # so concurrent fetches overlap at the server
            data = SMALL_PNG if path == "/small.png" else PNG
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n")
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        elif path == "/stream":  # close-delimited, no Content-Length
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            left = int(query["bytes"])
            while left > 0:
                writer.write(b"x" * min(left, 1000))
                left -= 1000
                await writer.drain()
        elif path == "/declared":  # claims a huge body, then sends nothing
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
            await writer.drain()
            await reader.read()
        elif path == "/stall":  # never answers
            await reader.read()
        elif path == "/stall-body":  # answers, then stops mid-body
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            await writer.drain()
            await reader.read()
        elif path == "/redirect":
            location = query["to"].encode()
            writer.write(
                b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % location
            )
        elif path == "/loop":
            writer.write(b"HTTP/1.1 301 Moved\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()


@asynccontextmanager
async def media_server(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[MediaServer]:
    handler = MediaServer()
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    handler.base = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield handler


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


async def refused(fetcher: MediaFetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    return caught.value


# -- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address (RFC 1918)"),
        ("172.16.0.1", "a private address (RFC 1918)"),
        ("192.168.1.1", "a private address (RFC 1918)"),
        ("fd12:3456::1", "a private address (unique local, fc00::/7)"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("100.64.0.1", "a carrier-grade NAT address (100.64.0.0/10)"),
        ("224.0.0.251", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("192.0.2.1", "a special-purpose address, not on the public internet"),
        ("192.0.0.8", "a special-purpose address, not on the public internet"),
        ("3fff::1", "a special-purpose address, not on the public internet"),
        ("fec0::1", "a site-local address"),
        ("2001::1", "not a public address"),  # Teredo
        ("169.254.169.254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("::ffff:127.0.0.1", "a loopback address in IPv6 form"),
        ("::ffff:169.254.169.254", "a cloud metadata address in IPv6 form"),
        ("2002:7f00:1::", "a loopback address in IPv6 form"),  # 6to4
        ("64:ff9b::a00:1", "a private address (RFC 1918) in IPv6 form"),  # NAT64
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_each_address_class_is_named_or_let_through(address: str, words: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == words


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://100.100.100.200/latest/meta-data/", "100.100.100.200 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://10.0.0.1/frame.png", "10.0.0.1 is a private address"),
        ("http://100.64.0.1/frame.png", "100.64.0.1 is a carrier-grade NAT address"),
    ],
)
def test_metadata_and_private_addresses_are_refused_before_any_connection(
    url: str, words: str
) -> None:
    async def test() -> None:
        # Nothing listens there: an unguarded fetch would fail to connect or time out,
        # never answer "address".
        error = await refused(MediaFetcher(timeout=5), url)
        assert error.reason == "address" and error.kind == "media_url"
        assert words in error.detail and "allow-listed" in error.detail

    run(test)


def test_loopback_is_refused_unless_allow_listed() -> None:
    async def test() -> None:
        async with media_server() as server:
            url = f"http://{server.base}/frame.png"
            error = await refused(MediaFetcher(), url)
            assert error.reason == "address"
            assert "127.0.0.1 is a loopback address" in error.detail
            assert server.heads == []

            assert await MediaFetcher(allow=["127.0.0.1"]).fetch(url) == PNG
            head = server.heads[0].decode()
            assert f"Host: {server.base}\r\n" in head and "Accept-Encoding: identity" in head

    run(test)


@pytest.mark.parametrize(
    "host", ["localhost", "2130706433", "127.1", "0.0.0.0", "[::ffff:127.0.0.1]"]
)
def test_other_names_for_the_loopback_server_are_refused(host: str) -> None:
    async def test() -> None:
        async with media_server() as server:
            port = server.base.rsplit(":", 1)[1]
            # The allow-list names hosts, not addresses: 127.0.0.1 does not let these in.
            error = await refused(
                MediaFetcher(allow=["127.0.0.1"]), f"http://{host}:{port}/frame.png"
            )
            assert error.reason == "address"
            assert "loopback" in error.detail or "unspecified" in error.detail
            assert server.heads == []
            assert await MediaFetcher(allow=[host]).fetch(f"http://{host}:{port}/frame.png") == PNG

    run(test)


class HostsLoop(asyncio.SelectorEventLoop):
    """An event loop whose resolver knows a few extra names, like lines in /etc/hosts."""

    def __init__(self, hosts: dict[str, list[str]]) -> None:
        super().__init__()
        self.hosts = hosts
        self.lookups: list[str] = []

    async def getaddrinfo(self, host: Any, port: Any, **kwargs: Any) -> Any:
        self.lookups.append(str(host))
        if host not in self.hosts:
            return await super().getaddrinfo(host, port, **kwargs)
        return [
            (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
            for ip in self.hosts[host]
            for family, address in [
                (socket.AF_INET6, (ip, port, 0, 0)) if ":" in ip else (socket.AF_INET, (ip, port))
            ]
        ]


def run_with_hosts(
    hosts: dict[str, list[str]], test: Callable[[], Coroutine[Any, Any, None]]
) -> HostsLoop:
    loop = HostsLoop(hosts)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        runner.run(asyncio.wait_for(test(), 30))
    return loop


def test_the_connection_goes_to_the_vetted_address_without_a_second_lookup() -> None:
    async def test() -> None:
        async with media_server() as server:
            port = server.base.rsplit(":", 1)[1]
            fetcher = MediaFetcher(allow=["media.test"])
            assert await fetcher.fetch(f"http://media.test:{port}/frame.png") == PNG
            assert f"Host: media.test:{port}\r\n" in server.heads[0].decode()

    # A second lookup is what DNS rebinding exploits: the answer that was vetted
    # must be the one connected to.
    loop = run_with_hosts({"media.test": ["127.0.0.1"]}, test)
    assert loop.lookups.count("media.test") == 1


def test_a_name_is_refused_if_any_of_its_addresses_is_inner() -> None:
    async def test() -> None:
        async with media_server() as server:
            port = server.base.rsplit(":", 1)[1]
            error = await refused(MediaFetcher(timeout=5), f"http://mixed.test:{port}/frame.png")
            assert error.reason == "address"
            assert "mixed.test resolves to 127.0.0.1, a loopback address" in error.detail
            assert server.heads == []

    run_with_hosts({"mixed.test": ["8.8.8.8", "127.0.0.1"]}, test)


def test_a_redirect_is_vetted_again_at_every_hop() -> None:
    async def test() -> None:
        async with media_server() as first, media_server() as second:
            fetcher = MediaFetcher(allow=["127.0.0.1"])
            port = second.base.rsplit(":", 1)[1]
            ok = f"http://{first.base}/redirect?to=http://{second.base}/frame.png"
            assert await fetcher.fetch(ok) == PNG

            sneaky = f"http://{first.base}/redirect?to=http://localhost:{port}/frame.png"
            error = await refused(fetcher, sneaky)
            assert error.reason == "address"
            assert f"redirected to http://localhost:{port}/frame.png" in error.detail
            assert "loopback" in error.detail
            assert len(second.heads) == 1  # only the allowed hop reached it

    run(test)


def test_redirects_are_bounded_and_must_stay_http() -> None:
    async def test() -> None:
        async with media_server() as server:
            fetcher = MediaFetcher(allow=["127.0.0.1"], max_redirects=3)
            error = await refused(fetcher, f"http://{server.base}/loop")
            assert error.reason == "redirects" and "more than 3 redirects" in error.detail
            assert len(server.heads) == 4

            error = await refused(fetcher, f"http://{server.base}/redirect?to=file:///etc/passwd")
            assert error.reason == "url" and "not an http(s) URL" in error.detail

    run(test)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.1/frame.png", "gopher://127.0.0.1:70/", "data:,x"],
)
def test_non_http_schemes_are_refused(url: str) -> None:
    async def test() -> None:
        error = await refused(MediaFetcher(allow=["127.0.0.1"]), url)
        assert error.reason == "url" and "only http and https" in error.detail

    run(test)


def test_credentials_in_a_url_are_refused_and_never_echoed() -> None:
    async def test() -> None:
        async with media_server() as server:
            fetcher = MediaFetcher(allow=["127.0.0.1"])
            error = await refused(fetcher, f"http://alice:s3cret@{server.base}/frame.png")
            assert error.reason == "url" and "user name or password" in error.detail
            assert "s3cret" not in error.detail and server.heads == []

    run(test)


# -- caps ---------------------------------------------------------------------------------------


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    async def test() -> None:
        async with media_server() as server:
            # The body never comes: reading it would end in a timeout, not "too_large".
            fetcher = MediaFetcher(allow=["127.0.0.1"], max_bytes=1000, timeout=5)
            error = await refused(fetcher, f"http://{server.base}/declared")
            assert error.reason == "too_large"
            assert "declares 10000000000 bytes, over 1000 bytes" in error.detail

    run(test)


def test_a_streamed_body_is_cut_off_at_the_cap() -> None:
    async def test() -> None:
        async with media_server() as server:
            fetcher = MediaFetcher(allow=["127.0.0.1"], max_bytes=4096)
            assert await fetcher.fetch(f"http://{server.base}/stream?bytes=4096") == b"x" * 4096
            error = await refused(fetcher, f"http://{server.base}/stream?bytes=50000")
            assert error.reason == "too_large" and "over 4096 bytes" in error.detail

    run(test)


@pytest.mark.parametrize("path", ["/stall", "/stall-body"])
def test_a_stalled_server_runs_into_the_time_cap(path: str) -> None:
    async def test() -> None:
        async with media_server() as server:
            fetcher = MediaFetcher(allow=["127.0.0.1"], timeout=0.5)
            error = await refused(fetcher, f"http://{server.base}{path}")
            assert error.reason == "timeout" and "timed out after 0.5 s" in error.detail

    run(test)


def test_an_error_status_names_the_status_and_host() -> None:
    async def test() -> None:
        async with media_server() as server:
            error = await refused(MediaFetcher(allow=["127.0.0.1"]), f"http://{server.base}/nope")
            assert error.reason == "status" and "HTTP 404 from 127.0.0.1" in error.detail

    run(test)


def test_concurrent_fetches_are_bounded_and_repeats_come_from_the_cache() -> None:
    async def test() -> None:
        async with media_server() as server:
            fetcher = MediaFetcher(allow=["127.0.0.1"], concurrency=2)
            urls = [f"http://{server.base}/slow.png?n={n}" for n in range(12)]
            results = await fetcher.fetch_all(urls + urls[:3])
            assert list(results) == urls and all(data == PNG for data in results.values())
            assert server.peak <= 2 and len(server.heads) == 12
            assert await fetcher.fetch(urls[0]) == PNG and len(server.heads) == 12  # cached

            uncached = MediaFetcher(allow=["127.0.0.1"], cache_bytes=0)
            for _ in range(2):
                await uncached.fetch(urls[0])
            assert len(server.heads) == 14

    run(test)


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_is_verified_against_the_host_name_not_the_pinned_address() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def test() -> None:
        async with media_server(server_context) as server:
            port = server.base.rsplit(":", 1)[1]
            fetcher = MediaFetcher(allow=["localhost", "127.0.0.1"], ssl_context=client_context)
            # Connected to the vetted 127.0.0.1, yet verified (and SNI sent) as localhost.
            assert await fetcher.fetch(f"https://localhost:{port}/frame.png") == PNG
            error = await refused(fetcher, f"https://127.0.0.1:{port}/frame.png")
            assert error.reason == "unreachable"
            assert "TLS certificate of 127.0.0.1 could not be verified" in error.detail

    run(test)


# -- judged like uploads ------------------------------------------------------------------------


async def validated(
    specs: SpecSet, provider: str, url: str, fetcher: MediaFetcher | None
) -> TaskRequest | Violation:
    spec = specs[provider]
    doc = build_create_body(spec, "happyhorse-1.0-i2v", prompt="x", media=[("first_frame", url)])

    def validate(resolver: MediaResolver) -> TaskRequest | Violation:
        return validate_create(spec, {}, doc, resolver)

    return await validate_fetching(validate, RemoteOnlyResolver(), fetcher)


def test_fetched_media_is_probed_and_judged_like_an_upload(specs: SpecSet) -> None:
    async def test() -> None:
        async with media_server() as server:
            fetcher = MediaFetcher(allow=["127.0.0.1"])
            good, small, missing, garbage = [
                await validated(specs, "dashscope", f"http://{server.base}/{path}", fetcher)
                for path in ("frame.png", "small.png", "nope", "stream?bytes=100")
            ]
        assert isinstance(good, TaskRequest)
        item = good.media[0]
        assert item.origin == "fetched" and item.info is not None and item.info.width == 640
        assert isinstance(small, Violation) and small.kind == "media_dimensions"
        assert isinstance(missing, Violation) and missing.kind == "media_url"
        assert "HTTP 404 from 127.0.0.1" in missing.detail
        assert isinstance(garbage, Violation) and garbage.kind == "media_unreadable"

    run(test)


@pytest.mark.parametrize("provider", ["dashscope", "apiyi", "anyfast"])
def test_a_refused_url_answers_with_the_providers_invalid_url_error(
    specs: SpecSet, provider: str
) -> None:
    url = "http://169.254.169.254/latest/meta-data/iam/frame.png"

    async def test() -> None:
        unchecked = await validated(specs, provider, url, None)
        assert isinstance(unchecked, TaskRequest) and unchecked.media[0].origin == "remote"

        violation = await validated(specs, provider, url, MediaFetcher())
        assert isinstance(violation, Violation) and violation.kind == "media_url"
        error, message = violation.resolve(specs[provider])
        assert 400 <= error.status < 500
        assert "cloud metadata address" in message

    run(test)


# -- paddock serve --fetch-media, end to end ----------------------------------------------------


def _file_server(files: dict[str, bytes]) -> tuple[str, Callable[[], None]]:
    """A plain HTTP server on loopback in a thread, serving ``files`` by path."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def test_paddock_serve_fetches_and_judges_remote_media(paddock_serve: Any) -> None:
    import httpx

    from tests.conftest import CREATE_PATHS, DASHSCOPE_HEADERS

    origin, stop = _file_server({"/frame.png": PNG, "/small.png": SMALL_PNG})
    try:
        served = paddock_serve("--fetch-media", "--fetch-allow", "127.0.0.1")
        closed = paddock_serve("--fetch-media")

        def create(base: str, url: str) -> httpx.Response:
            body = {
                "model": "happyhorse-1.0-i2v",
                "input": {"prompt": "x", "media": [{"type": "first_frame", "url": url}]},
            }
            return httpx.post(
                base + CREATE_PATHS["dashscope"], json=body, headers=DASHSCOPE_HEADERS
            )

        fetched = create(served.url, origin + "/frame.png")
        assert fetched.status_code == 200, fetched.text
        entry = httpx.get(served.url + "/_paddock/requests?limit=1").json()["requests"][0]
        media = entry["marks"]["media"][0]
        assert media["origin"] == "fetched" and media["info"]["width"] == 640
        too_small = create(served.url, origin + "/small.png")
        assert too_small.status_code == 400 and "300" in too_small.json()["message"]
        # The same URL from a mock that does not allow the loopback host is refused.
        refused = create(closed.url, origin + "/frame.png")
        assert refused.status_code == 400 and refused.json()["code"] == "InvalidURL"
        assert "loopback" in refused.json()["message"]
    finally:
        stop()
