"""Connection-level bounds for ``paddock serve``: head time and size, framing, connection count.

uvicorn's httptools protocol arms its keep-alive timer only after a response,
so a connection that never sends a request, or sends its head a byte at a
time, is held forever; it accepts a head of any size; and it answers broken
framing with a plain-text ``400 Invalid HTTP request received.`` that no
provider ever sends. ``GuardedHttpProtocol`` keeps uvicorn's own HTTP
implementation (an inner ``HttpToolsProtocol`` does all the HTTP work) and
screens the byte stream in front of it with a second ``httptools`` parser that
has no body or header-copying work of its own, so each chunk costs one pass of
llhttp in C and a few attribute writes:

- a connection must deliver a complete request head within ``head_timeout``
  seconds of connecting, or of its first byte after the previous request;
  otherwise it is closed (with a 408 in the app's envelope if part of a
  request had arrived). Idle keep-alive after a response stays uvicorn's own
  ``Config.timeout_keep_alive``;
- a head over ``max_head_bytes`` is answered 431 in the app's envelope and the
  connection closed; the oversized bytes never reach uvicorn or the app (a
  head that begins right behind a pipelined request in the same read is
  bounded by that read, 256 KiB, instead: llhttp does not say where it began);
- broken framing (bad request line, bad header characters, bad chunked
  encoding, Content-Length with Transfer-Encoding, ...) is answered 400 in the
  app's envelope and closed, and the bad bytes are never forwarded, so
  uvicorn never writes its plain-text 400;
- past ``max_connections`` live connections, those that have waited longest
  for a request head are closed to make room (see ``ConnectionGuard``).

The app carries the envelope and the limits as a ``ConnectionGuard``
(``attach_guard``); uvicorn is told to use this protocol by import string, so
every worker of ``paddock serve --workers N`` imports it by name::

    attach_guard(app, ConnectionGuard(answer=...))
    uvicorn.Config(app, http="mock_server.connection:GuardedHttpProtocol", ...)
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from mock_server.reading import BODY_IN_HAND

__all__ = [
    "GUARD_ATTRIBUTE",
    "Answer",
    "ConnectionGuard",
    "GuardedHttpProtocol",
    "Headers",
    "attach_guard",
    "default_answer",
    "find_guard",
    "raise_fd_limit",
]

log = logging.getLogger("paddock.connection")

Headers = list[tuple[bytes, bytes]]
Answer = Callable[[bytes | None, str | None, int, str], tuple[int, Headers, bytes]]
"""``(method, path, status, message) -> (status, headers, body)``: the app's envelope for a refusal.

``method`` and ``path`` are None when the request line had not been read; the
protocol adds Content-Length and ``Connection: close`` itself.
"""

# Descriptors kept free for everything that is not a client connection (the
# listening socket, logs, the Redis pool, video files, the event loop's own).
_FD_RESERVE = 64
# After a refusal the connection is drained, not closed at once: closing a
# socket with unread bytes makes the kernel send a reset, and a client still
# sending its oversized head would lose the answer to it. The drain ends when
# the client closes, or after this long, or after this many bytes.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
# llhttp skips CR and LF before a request line; the head ends at the first
# blank line after it (llhttp insists on CRLF line ends, as uvicorn runs it).
_LEADING_BLANKS = re.compile(rb"[\r\n]*")
_BLANK_LINE = b"\r\n\r\n"
# A method and an origin-form target, however oddly spaced.
_TARGET = re.compile(rb"[^ \t\r\n/]{1,20}[ \t]+(/[^ \t\r\n]{0,2048})")


def default_answer(
    method: bytes | None, path: str | None, status: int, message: str
) -> tuple[int, Headers, bytes]:
    """A small JSON ``{"error": message}``, for apps that set no envelope of their own."""
    return status, [(b"content-type", b"application/json")], orjson.dumps({"error": message})


@dataclass(frozen=True)
class ConnectionGuard:
    """The limits ``GuardedHttpProtocol`` enforces, and the envelope it answers in.

    ``head_timeout`` (10 s): a slow mobile client sends a head in well under a
    second; ten is generous to it and still frees a slowloris' socket quickly.

    ``max_head_bytes`` (64 KiB): the bytes a connection may send from when a
    request head is awaited to the blank line that ends it (request line,
    header lines, and any stray blank lines before them). Above what any
    mainstream server accepts by default (nginx 4 x 8 KiB, Node.js 16 KiB,
    h11 16 KiB, Tomcat 8 KiB), so no client that works against the real
    providers' gateways is refused by the mock; small enough that a thousand
    slow heads hold about 64 MiB.

    ``max_connections`` (4096 per worker, further capped by the descriptor
    limit): far above any bench or client pool; a connection costs about
    10 KiB of protocol state once it has served a request, so 40 MiB in all.
    Past it the connections that have waited longest for a request head (a
    fresh socket that sent nothing, a trickled head, a stray byte after a
    response; a sixteenth of the limit at a time) are closed, so a flood of
    idle sockets cannot lock clients out as refusing new ones would: the
    flood's own oldest sockets go first. A connection whose request is being
    read or answered is never evicted; if every connection is busy the new
    one is closed at once.
    """

    head_timeout: float = 10.0
    max_head_bytes: int = 64 * 1024
    max_connections: int = 4096
    answer: Answer = default_answer

    def __post_init__(self) -> None:
        if not self.head_timeout > 0:
            raise ValueError(f"head_timeout must be positive, got {self.head_timeout!r}")
        if self.max_head_bytes < 1024:
            raise ValueError(f"max_head_bytes must be at least 1024, got {self.max_head_bytes!r}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections!r}")


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; return the soft limit now.

    A default soft limit of 1024 lets a thousand idle sockets exhaust
    descriptors, and then even the listening socket cannot accept. The hard
    limit is what an unprivileged process may take; where it cannot be set
    (macOS reports an unlimited hard limit it will not grant) the soft limit
    stays. Returns -1 where the platform has no such limit (Windows).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 1 << 20, 1 << 16):
        if target == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and target <= soft):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


GUARD_ATTRIBUTE = "connection_guard"


def attach_guard(app: object, guard: ConnectionGuard) -> None:
    """Hold ``app``'s connections to ``guard``: the protocol finds it on the app uvicorn loads.

    The guard travels with the app rather than through uvicorn's settings, so
    each worker of a multi-process server gets it by importing the app.
    """
    setattr(app, GUARD_ATTRIBUTE, guard)


def find_guard(app: object) -> ConnectionGuard:
    """The guard attached to ``app`` or to an app it wraps (``.app``); defaults otherwise.

    uvicorn wraps the loaded app in middleware (proxy headers, message logging,
    ASGI2), each keeping the wrapped app as ``.app``.
    """
    for _ in range(8):
        guard = getattr(app, GUARD_ATTRIBUTE, None)
        if isinstance(guard, ConnectionGuard):
            return guard
        app = getattr(app, "app", None)
        if app is None:
            break
    return ConnectionGuard()


class _Pool:
    """One server's guarded connections, and how many it may hold."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.members: set[GuardedHttpProtocol] = set()
        # Closed to make room, but not yet gone from uvicorn's count.
        self.evicting = 0
        self.limit = guard.max_connections
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except ImportError:  # pragma: no cover - Windows
            return
        if soft != resource.RLIM_INFINITY:
            self.limit = max(1, min(self.limit, soft - _FD_RESERVE))

    def full(self, live: int) -> bool:
        """Whether ``live`` connections (uvicorn's count) leave no room for one more."""
        return live - self.evicting >= self.limit

    def make_room(self) -> bool:
        """Close the connections that have waited longest for a head; False if none waits.

        One scan closes a sixteenth of the limit, so a flood of new sockets
        pays for a scan once per many connections, not once each, and nothing
        is tracked per request for it. Connections already answered and
        draining go first.
        """
        waiting = [m for m in self.members if m.evictable()]
        if not waiting:
            return False
        waiting.sort(key=lambda m: m.waiting_since())
        batch = waiting[: self.limit // 16 or 1]
        log.info("%d connections: closing the %d idle longest", self.limit, len(batch))
        for member in batch:
            member.evict()
        self.evicting += len(batch)
        return True


class _Refusal(Exception):
    """Raised from a parser callback to stop llhttp at once and answer ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_pools: weakref.WeakKeyDictionary[ServerState, _Pool] = weakref.WeakKeyDictionary()


class GuardedHttpProtocol(asyncio.Protocol):
    """uvicorn's httptools protocol behind a screen that bounds heads, time and framing.

    Constructed by uvicorn with the keyword arguments it passes to any
    ``Config.http`` protocol class; everything HTTP is the inner protocol's.
    """

    inner_class: type[HttpToolsProtocol] = HttpToolsProtocol

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._inner = self.inner_class(
            config=config, server_state=server_state, app_state=app_state, _loop=_loop
        )
        self._loop = _loop or asyncio.get_running_loop()
        self._guard = guard = find_guard(config.loaded_app)
        self._server_state = server_state
        pool = _pools.get(server_state)
        if pool is None:
            pool = _pools[server_state] = _Pool(guard)
        self._pool = pool
        self._limit = guard.max_head_bytes
        self._parser = httptools.HttpRequestParser(self)
        # As uvicorn sets its own parser: this one must refuse exactly what
        # uvicorn's would, no more (bytes after a "Connection: close" request).
        self._parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._transport: asyncio.Transport | None = None
        self._inner_made = False
        # Answered and closing: nothing more is parsed or forwarded.
        self._refused = False
        self._evicted = False
        self._drained = 0
        self._linger: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        # When the wait for the current head began (connection made, or the
        # first byte after the last request, even a stray CRLF llhttp skips);
        # None while a request's body is read or the request is answered.
        self._head_since: float | None = None
        # The last request is complete and no byte has come since.
        self._idle = False
        # The request target so far, for the envelope and for uvicorn's sake;
        # b"" until a request line is under way.
        self._url = b""
        # Bytes of the awaited head in earlier chunks, and the last three of
        # them (its blank line may straddle two chunks).
        self._raw = 0
        self._tail = b""
        # The chunk an awaited head may end in, when it could end over the limit.
        self._judge: bytes | None = None
        # A request's head is complete and its body is not.
        self._in_body = False
        self._last_url = b""

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = self._transport = cast(asyncio.Transport, transport)
        pool = self._pool
        if pool.full(len(self._server_state.connections)) and not pool.make_room():
            log.info("refused a connection: %d connections, all busy", pool.limit)
            self._refused = True
            transport.close()
            return
        pool.members.add(self)
        self._inner_made = True
        self._inner.connection_made(transport)
        self._wait_for_head()

    def data_received(self, data: bytes) -> None:
        # The hot path: one llhttp pass and a few attribute reads and writes
        # per chunk; anything costlier runs only when a head may be too large.
        if self._refused:
            self._drained += len(data)
            if self._drained > LINGER_BYTES and self._transport is not None:
                self._transport.close()
            return
        if self._idle:
            # _wait_for_head, inlined: this runs once per request.
            self._idle = False
            self._head_since = now = self._loop.time()
            if self._timer is None:
                self._timer = self._loop.call_at(now + self._guard.head_timeout, self._on_timer)
        if (
            len(data) + self._raw > self._limit
            and self._head_since is not None
            and (self._raw or not self._url)
        ):
            # This chunk could take the awaited head over the limit; the head
            # is measured against it where llhttp reports its end. (Not when a
            # request line is under way with no bytes counted: that head began
            # right behind a pipelined request, at an offset llhttp does not
            # report; such a head is bounded by one read, 256 KiB.)
            self._judge = data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The inner parser meets the same upgrade and decides: a WebSocket
            # handshake hands the connection to uvicorn's WebSocket protocol.
            self._judge = None
            self._inner.data_received(data)
            if self._transport is not None and self._transport.get_protocol() is not self:
                self._detach()
            return
        except httptools.HttpParserError as exc:
            # httptools chains what a callback raised as the error's context.
            refusal = exc.__context__
            if not self._url and not self._last_url:
                # A request line llhttp refused outright: its target, if one can be
                # made out, still says whose envelope the answer belongs in.
                guessed = _TARGET.match(data, _skip_blanks(data))
                self._last_url = guessed.group(1) if guessed else b""
            if isinstance(refusal, _Refusal):
                self._refuse(refusal.status, refusal.message)
            else:
                self._refuse(400, f"Malformed HTTP request: {exc}.")
            return
        if self._head_since is not None:
            # The head is still incomplete, so all of this chunk is part of it.
            self._judge = None
            self._raw += len(data)
            if self._raw > self._limit:
                self._refuse(431, self._oversized())
                return
            self._tail = data[-3:] if self._url else b""
        # Requests uvicorn starts while handling this chunk inherit the hint: when
        # their bodies are all here, the app reads them without arming a timer.
        BODY_IN_HAND.set(not self._in_body)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        # uvicorn lets the transport close on EOF (it returns None); so do we.
        if self._inner_made:
            self._inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_since = None
        self._pool.members.discard(self)
        if self._evicted:
            self._pool.evicting -= 1
        for handle in (self._linger, self._timer):
            if handle is not None:
                handle.cancel()
        self._linger = self._timer = None
        if self._inner_made:
            self._inner.connection_lost(exc)

    def _detach(self) -> None:
        """Step aside for the protocol uvicorn switched the connection to (no more events come)."""
        self._head_since = None
        self._pool.members.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        if self._inner_made:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner_made:
            self._inner.resume_writing()

    # -- httptools callbacks ---------------------------------------------------------------------
    # Deliberately few: no on_header (llhttp would copy every header for it,
    # which alone cost more than the rest of the screen), no on_body (bodies
    # pass through uncopied), no on_message_begin (the head clock starts at the
    # first byte of a request instead, see data_received).

    def on_url(self, url: bytes) -> None:
        # Kept whole: the head limit bounds it, as it bounds uvicorn's own copy.
        self._url += url

    def on_headers_complete(self) -> None:
        self._head_since = None
        self._idle = False
        self._in_body = True
        if self._judge is not None:
            data, self._judge = self._judge, None
            if self._head_too_large(data):
                raise _Refusal(431, self._oversized())
        self._raw = 0
        if self._url[:1] != b"/":  # cheaper than startswith, which parses its arguments
            # An absolute or odd target llhttp accepts but uvicorn cannot take
            # apart (it needs a path); uvicorn would answer that in plain text.
            try:
                path = httptools.parse_url(self._url).path
            except httptools.HttpParserInvalidURLError:
                path = None
            if path is None:
                raise _Refusal(400, "Malformed HTTP request: invalid request target.")

    def on_message_complete(self) -> None:
        self._idle = True
        self._in_body = False
        # A refusal of what follows, if its own target cannot be read, answers in
        # the envelope this connection was speaking.
        self._last_url, self._url = self._url, b""

    # -- the head limit -------------------------------------------------------------------------

    def _head_too_large(self, data: bytes) -> bool:
        """Whether the head that just ended in ``data`` is over the limit (off the hot path).

        A head's size is every byte from when it was awaited to its blank
        line: the earlier chunks it filled, and ``data`` up to the first blank
        line after the request line began (which may straddle the last chunk).
        """
        budget = self._limit - self._raw
        tail = self._tail if self._raw else b""
        if not tail:  # the request line had not begun: llhttp skips blank lines first
            return data.find(_BLANK_LINE, _skip_blanks(data), budget) == -1
        straddle = (tail + data[:3]).find(_BLANK_LINE)
        if straddle != -1:
            return straddle + 4 - len(tail) > budget
        return data.find(_BLANK_LINE, 0, budget) == -1

    # -- the head clock -------------------------------------------------------------------------

    def _wait_for_head(self) -> None:
        self._head_since = now = self._loop.time()
        # One lazy timer per connection rather than one per request: when it
        # fires before the current head's deadline it re-arms for it.
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._guard.head_timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        since = self._head_since
        transport = self._transport
        if since is None or transport is None or transport.is_closing():
            return
        now = self._loop.time()
        deadline = since + self._guard.head_timeout
        if now < deadline:  # a later head than the one this timer was armed for
            self._timer = self._loop.call_at(deadline, self._on_timer)
        elif not transport.is_reading():
            # uvicorn paused reading (pipelined requests queued behind a slow
            # one): the head is stalled by us, not the client. Wait a full term.
            self._head_since = now
            self._timer = self._loop.call_at(now + self._guard.head_timeout, self._on_timer)
        else:
            self._expire()

    def _expire(self) -> None:
        """Close a connection whose head is late: 408 if its request line began, else silence."""
        if self._url:
            self._refuse(
                408, f"The request head did not arrive within {self._guard.head_timeout:g} s."
            )
            return
        self._close()

    def _close(self) -> None:
        self._head_since = None
        self._refused = True
        if self._transport is not None:
            self._transport.close()

    # -- eviction (see _Pool.make_room) ---------------------------------------------------------

    def evictable(self) -> bool:
        """Waiting for a head, or answered and draining; not already on its way out."""
        transport = self._transport
        if self._evicted or transport is None or transport.is_closing():
            return False
        return self._refused or self._head_since is not None

    def waiting_since(self) -> float:
        """The key eviction sorts by: draining connections first, then the longest waiting."""
        return float("-inf") if self._refused or self._head_since is None else self._head_since

    def evict(self) -> None:
        """Close at once, without an answer: the server is full and this one waited longest."""
        self._evicted = True
        self._close()

    # -- answering ------------------------------------------------------------------------------

    def _oversized(self) -> str:
        return f"The request head is larger than {self._limit} bytes."

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` in the app's envelope, drain, close; nothing more is forwarded."""
        self._refused = True
        self._head_since = None
        self._judge = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        method = self._parser.get_method() if self._url else None
        url = self._url or self._last_url
        path = _path(url) if url else None
        log.info("answered %d and closed: %s", status, message)
        try:
            code, headers, body = self._guard.answer(method, path, status, message)
        except Exception:
            log.exception("the connection guard's answer failed; answering plain JSON")
            code, headers, body = default_answer(method, path, status, message)
        try:
            phrase = http.HTTPStatus(code).phrase.encode()
        except ValueError:
            phrase = b""
        out = [b"HTTP/1.1 %d %s\r\n" % (code, phrase)]
        for name, value in [*self._server_state.default_headers, *headers]:
            if name.lower() not in (b"content-length", b"connection", b"transfer-encoding"):
                out.append(b"%s: %s\r\n" % (name, value))
        out.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        if method != b"HEAD":
            out.append(body)
        transport.write(b"".join(out))
        # Drain what the client is still sending (uvicorn may have paused
        # reading); an eviction may close it sooner.
        transport.resume_reading()
        self._linger = self._loop.call_later(LINGER_SECONDS, transport.close)


def _skip_blanks(data: bytes) -> int:
    """Where the request line may start: after the CR and LF bytes llhttp skips."""
    match = _LEADING_BLANKS.match(data)
    return match.end() if match else 0


def _path(url: bytes) -> str:
    """The path of a request target, as text; the URL itself if llhttp cannot split it."""
    try:
        path = httptools.parse_url(url).path or b"/"
    except httptools.HttpParserInvalidURLError:
        path = url.split(b"?", 1)[0]
    return path.decode("latin-1")
