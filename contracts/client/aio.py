"""The asyncio driver: performs the core's actions with ``httpx.AsyncClient``.

Many tasks share one client and its connection pool. Requests wait for a slot
here, bounded by the pool's ``max_connections``, rather than in httpcore's
queue: the wait has no pool timeout (a thousand polls queued at once is
normal, not a failure), and httpcore rescans its whole queue per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from contracts.client.actions import Action, Fetch, Reply, Sleep, Steps
from contracts.client.driver import Answer, Driver, HttpSettings, failure

__all__ = ["AsyncClient"]

T = TypeVar("T")
_CHUNK = 256 * 1024


class AsyncClient(Driver[httpx.AsyncBaseTransport, Callable[[float], Awaitable[None]]]):
    """The same client for asyncio: many tasks in flight on one connection pool.

    >>> async with AsyncClient("dashscope", base_url="http://127.0.0.1:8000/dashscope") as client:
    ...     task = await client.submit("happyhorse-1.0-t2v", prompt="waves", duration=5)
    ...     done = await client.wait(task)
    """

    def _connect(
        self,
        settings: HttpSettings,
        transport: httpx.AsyncBaseTransport | None,
        sleep: Callable[[float], Awaitable[None]] | None,
    ) -> None:
        self._http = httpx.AsyncClient(**settings.options(), transport=transport)
        self._sleep = sleep or asyncio.sleep
        # Unlimited connections (None) still get a bound: httpx's own default.
        self._slots = asyncio.Semaphore(settings.limits.max_connections or 100)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (and a ``transport`` given to the constructor)."""
        await self._http.aclose()

    async def _run(self, steps: Steps[T]) -> T:
        result: Any = None
        try:
            while True:
                result = await self._perform(steps.send(result))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _perform(self, action: Action) -> Any:
        if isinstance(action, Sleep):
            await self._sleep(action.seconds)
            return None
        async with self._slots:
            try:
                if isinstance(action, Fetch):
                    return await self._fetch(action)
                async with self._http.stream(
                    action.method,
                    action.url,
                    headers=action.headers,
                    content=action.content,
                    params=action.params,
                    files=action.files,
                    data=action.data,
                ) as response:
                    body = await self._read_all(response)
                    return Reply(response.status_code, response.headers, body)
            except httpx.TransportError as exc:
                return failure(exc)

    async def _fetch(self, action: Fetch) -> Reply:
        async with self._http.stream("GET", action.url, headers=action.headers) as response:
            if response.status_code not in (200, 206):
                body = await self._read_all(response)
                return Reply(response.status_code, response.headers, body)
            mode = "ab" if response.status_code == 206 and action.offset else "wb"
            written = 0
            with action.path.open(mode) as out:
                async for chunk in response.aiter_bytes(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            return Reply(response.status_code, response.headers, written=written)

    @staticmethod
    async def _read_all(response: httpx.Response) -> bytes:
        answer = Answer(response.request)
        async for chunk in response.aiter_bytes():
            answer.add(chunk)
        return answer.body()
