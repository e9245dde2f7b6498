"""Reading request bodies with their bounds enforced while the bytes arrive.

Every route that takes a body reads it through here, so no body is buffered
or spooled past its route's limit, a client that stalls mid-body is let go
after ``idle`` seconds, and a client that hangs up mid-body is noticed before
anything is stored: a create whose body never completes makes no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from starlette.types import Message, Receive

__all__ = ["BodyError", "BodyTimeout", "BodyTooLarge", "ClientGone", "limited_receive", "read_body"]


# Set by the connection guard (mock_server.connection) for the requests it
# passes on: True when a request's whole body arrived with its head, as it does
# for nearly every API call. Such a body needs no stall timer, which would cost
# a create a twentieth of its time. Without the guard (in-process, tests) it is
# False and every read is timed.
BODY_IN_HAND: ContextVar[bool] = ContextVar("paddock_body_in_hand", default=False)


class BodyError(Exception):
    """The body could not be read whole; subclasses say why."""


class BodyTooLarge(BodyError):
    def __init__(self, limit: int, seen: int) -> None:
        super().__init__(f"the body is over {limit} bytes")
        self.limit = limit
        self.seen = seen


class BodyTimeout(BodyError):
    def __init__(self, idle: float) -> None:
        super().__init__(f"no body bytes arrived for {idle:g} s")
        self.idle = idle


class ClientGone(BodyError):
    """The client disconnected before the body was complete; nobody is left to answer."""


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 19 else None
    return None


def limited_receive(receive: Receive, limit: int, idle: float) -> Callable[[], Awaitable[Message]]:
    """``receive`` that raises BodyTooLarge past ``limit`` bytes and BodyTimeout when idle.

    For parsers that pull the body themselves (Starlette's multipart form),
    so they never hold more than the route allows.
    """
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        try:
            async with asyncio.timeout(idle):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(idle) from None
        if message["type"] == "http.disconnect":
            raise ClientGone("the client went away mid-body")
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLarge(limit, seen)
        return message

    return wrapped


async def read_body(
    receive: Receive, headers: list[tuple[bytes, bytes]], limit: int, idle: float
) -> bytes:
    """The whole body, refused at once when its declared length is over ``limit``."""
    declared = declared_length(headers)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, declared)
    chunks: list[bytes] = []
    if BODY_IN_HAND.get():
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("the client went away mid-body")
        chunk: bytes = message.get("body", b"")
        if len(chunk) > limit:
            raise BodyTooLarge(limit, len(chunk))
        if not message.get("more_body", False):
            return chunk
        chunks.append(chunk)  # more was coming after all: the rest is timed
    pull = limited_receive(receive, limit - sum(map(len, chunks)), idle)
    while True:
        message = await pull()
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
