"""What an operation asks its driver to do, what it gets back, and how a method is stated once.

An operation is a generator: it yields an action (`Send` a request, `Sleep`,
`Fetch` a download into a file) and is sent the result (`Reply`, or `Failure`
when the network failed). `operation` turns such a generator into a method
that runs to its result on the blocking `Client` and returns a coroutine on
`AsyncClient`, so each public method and its signature exist once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

__all__ = ["Failure", "Fetch", "Reply", "Send", "Sleep", "Steps", "operation"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

# Plain (not frozen) slotted dataclasses: several are made per request, and a
# frozen one's __init__ sets each field through object.__setattr__.


@dataclass(slots=True)
class Send:
    """Send one request and read the whole answer."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None = None
    params: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    data: Mapping[str, str] | None = None


@dataclass(slots=True)
class Sleep:
    seconds: float


@dataclass(slots=True)
class Fetch:
    """Stream a URL into ``path`` (appending from ``offset``); the reply carries no body."""

    url: str
    headers: Mapping[str, str]
    path: Path
    offset: int


@dataclass(slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    written: int = 0


@dataclass(slots=True)
class Failure:
    """The network failed (connection refused, reset, timeout); ``sent`` if the request left."""

    error: str
    sent: bool


Action = Send | Sleep | Fetch
Steps = Generator[Action, Any, T]


class _Blocking(Protocol):
    def _run(self, steps: Steps[T], /) -> T: ...


class _Awaiting(Protocol):
    def _run(self, steps: Steps[T], /) -> Coroutine[Any, Any, T]: ...


class operation(Generic[P, R]):
    """A public method stated once, for both drivers.

    Decorates a generator method whose ``self`` is positional-only
    (``def get(self, /, task_id: str)``): that is what lets type checkers
    carry the remaining parameters over as the method's signature.
    """

    def __init__(self, steps: Callable[Concatenate[Any, P], Steps[R]]) -> None:
        self._steps = steps
        self.__doc__ = steps.__doc__
        self.__name__ = steps.__name__
        self.__wrapped__ = steps
        signature = inspect.signature(steps)
        self._signature = signature.replace(parameters=list(signature.parameters.values())[1:])

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> operation[P, R]: ...
    @overload
    def __get__(self, obj: _Blocking, owner: type[Any]) -> Callable[P, R]: ...
    @overload
    def __get__(self, obj: _Awaiting, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        steps = self._steps

        def method(*args: Any, **kwargs: Any) -> Any:
            return obj._run(steps(obj, *args, **kwargs))

        method.__name__ = steps.__name__
        method.__doc__ = steps.__doc__
        method.__signature__ = self._signature  # type: ignore[attr-defined]
        return method
