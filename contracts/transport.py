"""A lean HTTP/1.1 transport for the async client, so the client is never the bottleneck.

httpx's default transport (httpcore over anyio) spends most of its time on
pool bookkeeping: measured in ``nox -s bench``, a thousand concurrent tasks
cost the client a full core while the mock server it drove used a fifth of
one. Against these APIs the client needs nothing httpcore adds beyond
HTTP/1.1 keep-alive: no HTTP/2, no proxies (the client sends requests
through httpx's own proxy mounts when the environment names a proxy), no
upgrades. So this transport keeps a stack of idle connections per origin,
each an ``asyncio.Protocol`` that feeds httptools (llhttp, the parser
uvicorn serves with) straight from ``data_received``.

With more requests than connections, a connection that comes free goes
straight to the longest-waiting request for its origin, and all pool and
read timeouts share one timer.

It is an ordinary ``httpx.AsyncBaseTransport`` (requests, responses,
timeouts and errors keep httpx's types and meaning) and also offers
:meth:`LeanTransport.exchange`, one whole request/response with plain
values, which the async client uses for its small JSON calls so they skip
building httpx model objects too.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import select
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

import httptools
import httpx

__all__ = ["LeanTransport", "Reply", "ReplyHeaders", "header_block"]

_Origin = tuple[str, str, int]
_Headers = list[tuple[bytes, bytes]]
_Route = tuple[_Origin, bytes]  # where a scheme://host:port goes, and its Host header line
_PAUSE_AT = 1024 * 1024  # stop reading the socket when this much body waits unread
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9/%:@!$&'()*+,;=\-._~]")


def header_block(headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]]) -> bytes:
    """Request headers as the lines :meth:`LeanTransport.exchange` sends, for reuse.

    A client that sends the same few header sets again and again renders each
    once. A line break in a name or value is refused here, as httpx refuses
    it, so no header can smuggle another.
    """
    pairs = (
        [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        if isinstance(headers, Mapping)
        else list(headers)
    )
    lines = []
    for name, value in pairs:
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value or b":" in name:
            raise httpx.LocalProtocolError(f"invalid header {name!r}: line breaks are not allowed")
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)


class ReplyHeaders(Mapping[str, str]):
    """A response's headers, made into :class:`httpx.Headers` only when first read.

    Most API answers are read for their status and body alone; building the
    case-insensitive multi-dict for each showed in the client's profile.
    """

    __slots__ = ("_built", "_raw")

    def __init__(self, raw: _Headers) -> None:
        self._raw = raw
        self._built: httpx.Headers | None = None

    @property
    def headers(self) -> httpx.Headers:
        if self._built is None:
            self._built = httpx.Headers(self._raw)
        return self._built

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.headers)

    def __len__(self) -> int:
        return len(self.headers)

    def __repr__(self) -> str:
        return f"ReplyHeaders({self.headers!r})"


class Reply:
    """A whole response from :meth:`LeanTransport.exchange`."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Deadlines:
    """Timeouts for many waiting futures on one timer handle.

    A timer per wait (``call_later`` then ``cancel``, twice per request for
    the pool and the read) cost the client several per cent of its CPU in
    ``nox -s bench``. Here a wait costs a dict entry; the one timer is armed
    for the earliest deadline and, when it fires, fails what is due and
    re-arms for the next. With one timeout for all requests it re-arms only
    after a full timeout has passed, so firing is rare.
    """

    def __init__(self) -> None:
        self._due: dict[asyncio.Future[Any], tuple[float, Callable[[], Exception]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(
        self,
        loop: asyncio.AbstractEventLoop,
        waiter: asyncio.Future[Any],
        timeout: float,
        error: Callable[[], Exception],
    ) -> None:
        deadline = loop.time() + timeout
        self._due[waiter] = (deadline, error)
        if deadline < self._at or loop is not self._loop:
            self._arm(loop, deadline)

    def discard(self, waiter: asyncio.Future[Any]) -> None:
        self._due.pop(waiter, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop, self._at = loop, when
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._at = None, math.inf
        loop = self._loop
        assert loop is not None
        now = loop.time()
        earliest = math.inf
        for waiter, (deadline, error) in list(self._due.items()):
            if waiter.done():
                del self._due[waiter]
            elif deadline <= now:
                del self._due[waiter]
                waiter.set_exception(error())
            elif deadline < earliest:
                earliest = deadline
        if earliest < math.inf:
            self._arm(loop, earliest)


class _Connection(asyncio.Protocol):
    """One keep-alive socket, used by one request at a time.

    Parser callbacks fill in the current response; ``_wake`` releases the
    coroutine waiting for the head, for more body, or for the socket to
    accept more of a large upload.
    """

    def __init__(self, deadlines: _Deadlines) -> None:
        self.transport: asyncio.Transport | None = None
        self._deadlines = deadlines
        self.idle_since = time.monotonic()
        self.closed = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        # One parser for the connection's life: llhttp starts the next message
        # where the last one completed, as uvicorn's request parser does.
        self.parser = httptools.HttpResponseParser(self)
        self.reset()

    def reset(self) -> None:
        """Ready for the next response on this connection."""
        self.headers: _Headers = []
        self.status = 0
        self.head_done = False
        self.complete = False
        self.framed = False  # Content-Length or chunked: the end is known, not the close
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.active = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.active:
            # Bytes while idle: the server is not speaking HTTP/1.1 to us; drop it.
            self.error = httpx.RemoteProtocolError("the server sent data nobody asked for")
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.error = httpx.RemoteProtocolError("the server switched protocols unasked")
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"malformed HTTP response: {exc}")
        if self.buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None and self.error is None and self.active:
            self.error = httpx.ReadError(f"the connection broke: {exc}")
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # Bytes past the end of the response (a broken server): whatever
            # they are, they are not ours, and the socket is not reused.
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self.headers.append((name, value))
        # len() first: the two framing headers are 14 and 17 bytes long, and
        # lowering every name of every response showed in the profile.
        if len(name) in (14, 17):
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                self.framed = True

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        # Asked here because llhttp answers False once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()
        self.status = self.parser.get_status_code()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status < 200 and self.status != 101:
            # An interim answer (103 Early Hints, say): the response follows.
            self.headers, self.status, self.head_done, self.framed = [], 0, False, False
            return
        self.complete = True

    # -- used by the transport ---------------------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def reusable(self, now: float, expiry: float) -> bool:
        if self.closed or self.error is not None or now - self.idle_since >= expiry:
            return False
        # The server may have closed it a moment ago and the event loop not yet
        # run its callback: an idle socket that reads as ready holds an EOF (or
        # bytes nobody asked for), so it is not reused (httpcore does the same).
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes, timeout: float | None) -> None:
        if self.write(data):
            await self.drain(timeout)

    def write(self, data: bytes) -> bool:
        """Hand bytes to the socket; True when its buffer is full and must drain first."""
        if self.closed or self.transport is None:
            raise httpx.WriteError("the connection closed before the request was sent")
        self.transport.write(data)
        return self._writable is not None

    async def drain(self, timeout: float | None) -> None:
        if self._writable is not None:  # the socket's buffer is full: wait for it to drain
            try:
                async with asyncio.timeout(timeout):
                    await self._writable
            except TimeoutError:
                raise httpx.WriteTimeout("sending the request timed out") from None

    async def wait(self, timeout: float | None) -> None:
        """Until the parser has news (head, body, completion) or the socket closed."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        if timeout is not None:
            self._deadlines.add(loop, waiter, timeout, _read_timeout)
        try:
            await waiter
        finally:
            self._waiter = None
            if timeout is not None:
                self._deadlines.discard(waiter)

    async def read_head(self, timeout: float | None) -> None:
        while not self.head_done:
            self.check()
            if self.closed:
                raise httpx.RemoteProtocolError("server disconnected without sending a response")
            await self.wait(timeout)
        self.check()

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """The next piece of body, or None at its end."""
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self._paused and self.buffered < _PAUSE_AT // 2 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            self.check()
            if self.complete:
                return None
            if self.closed:
                if self.framed:
                    raise httpx.RemoteProtocolError(
                        "server closed the connection before the response body was complete"
                    )
                self.complete = True  # a body delimited by the connection's close
                self.keep_alive = False
                return None
            await self.wait(timeout)

    async def read_whole(self, timeout: float | None, *, head_only: bool = False) -> bytes:
        """The whole response body, waiting only while there is nothing to read.

        One coroutine per response rather than one per head and per chunk:
        a small API answer usually arrives whole in one ``data_received``.
        """
        parts: list[bytes] = []
        while True:
            if self.error is not None:
                raise self.error
            if head_only and self.head_done:
                # llhttp cannot be told the request was HEAD, so it would wait for
                # a body that never comes: read none, do not reuse the socket.
                self.chunks.clear()
                self.complete, self.keep_alive = True, False
            if self.complete:
                break
            if self.closed:
                if not self.head_done:
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a response"
                    )
                if self.framed:
                    raise httpx.RemoteProtocolError(
                        "server closed the connection before the response body was complete"
                    )
                self.complete, self.keep_alive = True, False  # a body delimited by the close
                break
            if self._paused:  # a large body: keep it moving rather than stall the socket
                parts.extend(self.chunks)
                self.chunks.clear()
                self.buffered = 0
                self._paused = False
                if self.transport is not None:
                    self.transport.resume_reading()
            await self.wait(timeout)
        parts.extend(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self._paused:  # the last read went over the mark: the next response needs the socket
            self._paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class _Body(httpx.AsyncByteStream):
    """The response body, read from the socket as the caller iterates."""

    def __init__(
        self,
        transport: LeanTransport,
        origin: _Origin,
        connection: _Connection,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while connection is not None:
            chunk = await connection.next_chunk(self._timeout)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._transport._release(self._origin, connection)


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive on asyncio protocols, at most ``max_connections`` in flight."""

    def __init__(
        self,
        *,
        max_connections: int = 16,
        keepalive_expiry: float = 5.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[_Origin, list[_Connection]] = {}
        # Free connection slots and the requests queued for one, first come
        # first served. Not an asyncio.Semaphore under asyncio.timeout(): with
        # a thousand tasks queued that pair's per-request bookkeeping showed in
        # the client's profile, and a future plus one timer handle does the job.
        self._free = max_connections
        # A waiter is granted a slot (None) or, when a connection to the
        # origin it wants comes free, that connection itself: handed straight
        # on, it skips the idle stack and its staleness probe.
        self._queue: deque[tuple[asyncio.Future[_Connection | None], _Origin]] = deque()
        self._routes: dict[str, _Route] = {}
        self._deadlines = _Deadlines()
        self._closed = False

    # -- httpx's interface -----------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin = _origin(url.scheme, url.host, url.port)
        connection = await self._open(origin, timeouts)
        try:
            await self._write(
                connection,
                request.method,
                url.raw_path,
                request.headers.raw,
                request.stream,
                timeouts.get("write"),
            )
            await connection.read_head(timeouts.get("read"))
            if request.method == "HEAD":
                # llhttp cannot be told the request was HEAD, so it would wait
                # for a body that never comes: read none, do not reuse the socket.
                connection.chunks.clear()
                connection.complete, connection.keep_alive = True, False
        except BaseException:
            self._release(origin, connection, broken=True)
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(self, origin, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            for connection in stack:
                connection.close()
        self._idle.clear()

    # -- the lean interface ------------------------------------------------------------------------

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | Sequence[tuple[bytes, bytes]] | bytes,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        timeout: Mapping[str, float | None] | None = None,
    ) -> Reply:
        """One request with a whole body, answered with the whole response.

        For small API calls: the same wire behaviour as
        :meth:`handle_async_request`, without building httpx model objects.
        ``headers`` may be given already rendered by :func:`header_block`, by
        a caller that sends the same ones many times. The reply's headers
        become :class:`httpx.Headers` only if read.
        """
        (origin, host), target = self._target(url, params)
        block = headers if isinstance(headers, bytes) else header_block(headers)
        if content is not None or method in ("POST", "PUT", "PATCH"):
            block += b"Content-Length: %d\r\n" % len(content or b"")
        timeouts = timeout or {}
        if self._free > 0 and not self._queue and not self._closed:
            # A free slot and an idle connection: taken here rather than in
            # _open, one coroutine fewer per request.
            self._free -= 1
            connection = self._checkout(origin)
            if connection is None:
                self._free += 1
                connection = await self._open(origin, timeouts)
            connection.active = True
        else:
            connection = await self._open(origin, timeouts)
        try:
            request = b"%s %s HTTP/1.1\r\n%s%s\r\n%s" % (
                method.encode("ascii"),
                target,
                host,
                block,
                content or b"",
            )
            if connection.write(request):
                await connection.drain(timeouts.get("write"))
            body = await connection.read_whole(timeouts.get("read"), head_only=method == "HEAD")
        except BaseException:
            self._release(origin, connection, broken=True)
            raise
        reply = Reply(connection.status, ReplyHeaders(connection.headers), body)
        self._release(origin, connection)
        return reply

    def _target(self, url: str, params: Mapping[str, str] | None) -> tuple[_Route, bytes]:
        """Where a URL goes and the request target to send, the origin parsed once per client.

        A client sends to one host with a few paths that differ by task id, so
        the scheme, host and port are looked up by the URL's prefix and only
        the path is looked at per request.
        """
        start = url.find("://")
        end = len(url)
        if start > 0:
            for mark in "/?#":
                found = url.find(mark, start + 3)
                if 0 < found < end:
                    end = found
        prefix, path = url[:end], url[end:]
        if not path.startswith("/"):
            path = "/" + path
        route = self._routes.get(prefix)
        if route is None:
            parts = urlsplit(prefix)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise httpx.UnsupportedProtocol(f"cannot send to {url!r}: not an http(s) URL")
            netloc = parts.netloc.rsplit("@", 1)[-1]
            route = (
                _origin(parts.scheme, parts.hostname, parts.port),
                b"Host: %s\r\n" % netloc.encode("idna"),
            )
            if len(self._routes) >= 64:
                self._routes.clear()
            self._routes[prefix] = route
        query = ""
        if "?" in path or "#" in path:
            # By hand: urlsplit would read a path starting "//" as a host.
            path, _, query = path.split("#", 1)[0].partition("?")
            if _NEEDS_QUOTING.search(query.replace("?", "")):
                query = quote(query, safe=_PATH_SAFE + "?")
        if _NEEDS_QUOTING.search(path):
            path = quote(path, safe=_PATH_SAFE)
        if params:
            query = f"{query}&{urlencode(params)}" if query else urlencode(params)
        target = f"{path}?{query}" if query else path
        return route, target.encode("ascii")

    # -- connections -------------------------------------------------------------------------------

    async def _open(self, origin: _Origin, timeouts: Mapping[str, float | None]) -> _Connection:
        if self._closed:
            raise httpx.TransportError("the transport is closed")
        connection: _Connection | None = None
        if self._free > 0 and not self._queue:
            self._free -= 1
        else:
            connection = await self._queued(origin, timeouts.get("pool"))
            if self._closed:  # closed while this request queued: it does not open a socket
                if connection is not None:
                    connection.close()
                self._hand_on()
                raise httpx.TransportError("the transport is closed")
            if connection is not None and (connection.closed or connection.error is not None):
                connection.close()  # the server closed it between the hand-off and now
                connection = None
        if connection is None:
            try:
                connection = self._checkout(origin) or await self._connect(
                    origin, timeouts.get("connect")
                )
            except BaseException:
                self._hand_on()
                raise
        connection.active = True
        return connection

    async def _queued(self, origin: _Origin, timeout: float | None) -> _Connection | None:
        """Wait for a slot or a connection; what a request that gave up was handed is passed on."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        entry = (waiter, origin)
        self._queue.append(entry)
        if timeout is not None:
            self._deadlines.add(loop, waiter, timeout, _pool_timeout)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Granted just as it was cancelled: the slot is not lost.
                granted = waiter.result()
                if granted is not None:  # a healthy connection: idle, not closed
                    self._idle.setdefault(origin, []).append(granted)
                self._hand_on()
            else:
                with contextlib.suppress(ValueError):  # already handed a slot
                    self._queue.remove(entry)
            raise
        finally:
            if timeout is not None:
                self._deadlines.discard(waiter)

    def _hand_on(self) -> None:
        """A slot came free: to the longest waiting request, else back to the pool."""
        while self._queue:
            waiter, _ = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _checkout(self, origin: _Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = time.monotonic()
        while stack:
            connection = stack.pop()  # the most recently used is the least likely stale
            if connection.reusable(now, self._expiry):
                return connection
            connection.close()
        return None

    def _release(self, origin: _Origin, connection: _Connection, *, broken: bool = False) -> None:
        reuse = (
            not broken
            and not self._closed
            and connection.complete
            and connection.keep_alive
            and not connection.closed
            and connection.error is None
        )
        if not reuse:
            connection.close()
            self._hand_on()
            return
        connection.reset()
        connection.idle_since = time.monotonic()
        queue = self._queue
        while queue:
            waiter, wanted = queue[0]
            if waiter.done():  # gave up (timed out or canceled) while queued
                queue.popleft()
                continue
            if wanted == origin:  # just finished a response: no need to probe it
                queue.popleft()
                waiter.set_result(connection)
                return
            break
        self._idle.setdefault(origin, []).append(connection)
        self._hand_on()

    async def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context = self._context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._deadlines),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            verify = self._verify
            self._ssl = (
                verify
                if isinstance(verify, ssl.SSLContext)
                else httpx.create_ssl_context(verify=verify)
            )
        return self._ssl

    async def _write(
        self,
        connection: _Connection,
        method: str,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: Any,
        timeout: float | None,
    ) -> None:
        lines = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target)]
        chunked = False
        for name, value in headers:
            lines.append(b"%s: %s\r\n" % (name, value))
            if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        lines.append(b"\r\n")
        head = b"".join(lines)
        if isinstance(body, tuple):  # the lean interface: one whole body
            await connection.send(head + body[0], timeout)
            return
        await connection.send(head, timeout)
        async for chunk in body:
            if chunk:
                framed = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                await connection.send(framed, timeout)
        if chunked:
            await connection.send(b"0\r\n\r\n", timeout)


def _read_timeout() -> Exception:
    return httpx.ReadTimeout("the server did not answer in time")


def _pool_timeout() -> Exception:
    return httpx.PoolTimeout("no connection became free in time")


def _origin(scheme: str, host: str, port: int | None) -> _Origin:
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
    return (scheme, host, port or (443 if scheme == "https" else 80))
