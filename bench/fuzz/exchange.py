"""One exchange over a raw loopback socket: our bytes out, the server's answers parsed by h11.

An HTTP client library would refuse to send most of what the fuzzer sends
(two Content-Lengths, a NUL in the path, a bare LF), so requests go out as
bytes we wrote. The answers are parsed with h11, a strict and well-kept
parser, so a malformed answer is itself a finding.

Sending and reading are interleaved with a selector: a server that answers
early (413 before the body) and stops reading must not deadlock us on a
16 MiB ``sendall``. Every exchange ends by its deadline.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import h11

__all__ = ["Answer", "Outcome", "exchange"]

_CHUNK = 256 * 1024
# The oracles read at most this much of a body; the rest is read and dropped.
_KEEP = 1024 * 1024
# Once every required answer is in, how long further (pipelined) answers may take.
_LINGER = 0.25


@dataclass(frozen=True)
class Answer:
    """One HTTP response: status, headers (names lower-case), up to 1 MiB of the body, its size."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    size: int = -1  # the whole body's length; -1 when it is all in ``body``

    @property
    def length(self) -> int:
        return len(self.body) if self.size < 0 else self.size

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True)
class Outcome:
    """What came back: the answers, and how the exchange ended.

    ``ending`` is ``complete`` (every expected answer), ``closed`` (the server
    closed first), ``reset``, ``timeout`` or ``garbled`` (the server's bytes
    were not HTTP; ``detail`` says why).
    """

    answers: tuple[Answer, ...]
    ending: str
    detail: str = ""


class _Reader:
    """Feeds received bytes to h11 and collects whole answers."""

    def __init__(self, methods: Sequence[str]) -> None:
        self.methods = methods
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_KEEP)
        self.answers: list[Answer] = []
        self.status = 0
        self.headers: tuple[tuple[str, str], ...] = ()
        self.body: list[bytes] = []
        self.kept = 0
        self.started = False  # an answer's head came in and its end has not
        self.ending = ""
        self.detail = ""
        self._arm()

    def _arm(self) -> None:
        # h11 reads an answer only after a request went out through it; the
        # real bytes went out raw, so this request is never sent anywhere.
        # Only HEAD changes how an answer is framed; lower-case "head" is not HEAD.
        method = "HEAD" if self.methods[len(self.answers)] == "HEAD" else "GET"
        self.conn.send(
            h11.Request(
                method=method,
                target="/",
                headers=[("Host", "fuzz"), ("Content-Length", "0")],
            )
        )
        self.conn.send(h11.EndOfMessage())

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while not self.ending:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                # A close between answers is a close; inside one, the answer is broken.
                closed = not data and not self.started
                self.ending, self.detail = ("closed", "") if closed else ("garbled", str(exc))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
                self.headers = tuple(
                    (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers
                )
                self.body, self.kept, self.started = [], 0, True
            elif isinstance(event, h11.Data):
                if self.kept < _KEEP:
                    self.body.append(bytes(event.data[: _KEEP - self.kept]))
                    self.kept += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._finish()
            elif isinstance(event, h11.ConnectionClosed):
                self.ending = "closed"

    def _finish(self) -> None:
        self.started = False
        self.answers.append(Answer(self.status, self.headers, b"".join(self.body), self.kept))
        if len(self.answers) == len(self.methods):
            self.ending = "complete"
        elif self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self._arm()
        else:  # the server said it closes after this answer
            self.ending = "closed"


def exchange(
    address: tuple[str, int],
    data: bytes,
    methods: Sequence[str],
    *,
    required: int | None = None,
    half_close: bool = False,
    timeout: float = 5.0,
) -> Outcome:
    """Send ``data`` on a new connection and read up to one answer per entry of ``methods``.

    ``methods`` names the request method of each answer expected, in order
    (h11 needs it: a HEAD answer has no body). Once ``required`` answers (all
    by default) are in, further ones get a short grace only. ``half_close``
    shuts our side after sending, for a request left incomplete on purpose.
    """
    need = len(methods) if required is None else required
    reader = _Reader(methods)
    deadline = time.monotonic() + timeout
    pending = memoryview(data)
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        return Outcome((), "reset", f"connect: {exc}")
    sock.setblocking(False)
    with sock, selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if data else 0))
        while not reader.ending:
            now = time.monotonic()
            if len(reader.answers) >= need:
                deadline = min(deadline, now + _LINGER)
            if now >= deadline:
                reader.ending = "timeout"
                break
            for _, mask in selector.select(deadline - now):
                if mask & selectors.EVENT_WRITE and pending:
                    pending = _write(sock, pending)
                    if not pending:
                        if half_close:
                            _shutdown(sock)
                        selector.modify(sock, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(_CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        reader.ending, reader.detail = "reset", str(exc)
                        break
                    reader.feed(chunk)
    return Outcome(tuple(reader.answers), reader.ending, reader.detail)


def _write(sock: socket.socket, pending: memoryview) -> memoryview:
    try:
        sent = sock.send(pending[:_CHUNK])
    except BlockingIOError:
        return pending
    except OSError:
        return memoryview(b"")  # the server stopped reading; its answer may still come
    return pending[sent:]


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
