"""The blocking driver: performs the core's actions with ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from contracts.client.actions import Action, Fetch, Reply, Sleep, Steps
from contracts.client.driver import Answer, Driver, HttpSettings, failure

__all__ = ["Client"]

T = TypeVar("T")
_CHUNK = 256 * 1024


class Client(Driver[httpx.BaseTransport, Callable[[float], None]]):
    """Blocking client for one provider.

    >>> client = Client("dashscope", base_url="http://127.0.0.1:8000/dashscope", api_key="sk-...")
    >>> task = client.submit("happyhorse-1.0-t2v", prompt="waves at dusk", duration=5)
    >>> done = client.wait(task.id)
    >>> client.download(done, "waves.mp4")
    """

    def _connect(
        self,
        settings: HttpSettings,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None] | None,
    ) -> None:
        self._http = httpx.Client(**settings.options(), transport=transport)
        self._sleep = sleep or time.sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (and a ``transport`` given to the constructor)."""
        self._http.close()

    def _run(self, steps: Steps[T]) -> T:
        result: Any = None
        try:
            while True:
                result = self._perform(steps.send(result))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _perform(self, action: Action) -> Any:
        if isinstance(action, Sleep):
            self._sleep(action.seconds)
            return None
        try:
            if isinstance(action, Fetch):
                return self._fetch(action)
            with self._http.stream(
                action.method,
                action.url,
                headers=action.headers,
                content=action.content,
                params=action.params,
                files=action.files,
                data=action.data,
            ) as response:
                return Reply(response.status_code, response.headers, self._read_all(response))
        except httpx.TransportError as exc:
            return failure(exc)

    def _fetch(self, action: Fetch) -> Reply:
        with self._http.stream("GET", action.url, headers=action.headers) as response:
            if response.status_code not in (200, 206):
                return Reply(response.status_code, response.headers, self._read_all(response))
            mode = "ab" if response.status_code == 206 and action.offset else "wb"
            written = 0
            with action.path.open(mode) as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            return Reply(response.status_code, response.headers, written=written)

    @staticmethod
    def _read_all(response: httpx.Response) -> bytes:
        answer = Answer(response.request)
        for chunk in response.iter_bytes():
            answer.add(chunk)
        return answer.body()
