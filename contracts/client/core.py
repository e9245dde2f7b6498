"""The client's one implementation, without I/O: every public operation, as a generator of actions.

Provider-agnostic: paths, headers, body layout, status words, error codes and
polling pace all come from the spec, through the same templates the mock
renders with. The drivers (`contracts.client.sync`, `contracts.client.aio`)
only perform the actions (see `contracts.client.actions`).

Safety rules live here, once: a create is never retried blindly (one create
must not become two paid tasks); polls and downloads retry with backoff and
honour ``Retry-After``; downloads never carry the Authorization header; keys
never appear in a repr, a log line or an exception.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from contracts.bodies import build_create_body, create_headers
from contracts.client.actions import Failure, Reply, Send, Sleep, Steps, operation
from contracts.client.download import download
from contracts.client.inputs import MediaInput, check_locally, prepare_media
from contracts.client.reading import Task, TaskReader, provider_error, retry_after
from contracts.client.upload import upload
from contracts.errors import (
    PaddockError,
    ProviderError,
    PublicURLRequired,
    TaskExpired,
    TaskFailed,
    UnexpectedResponse,
    UnsupportedOperation,
    UpstreamUnavailable,
    WaitTimeout,
)
from contracts.spec import Spec, SpecSet, load_specs
from contracts.wire import WireMismatch

__all__ = ["MAX_READ_RETRIES", "Core"]

log = logging.getLogger("paddock.client")

MAX_READ_RETRIES = 4
"""A poll, list or policy request is tried at most this many more times (backoff 1, 2, 4, 8 s)."""


class Core:
    """Request building, answer reading and the operations; the drivers add the network."""

    def __init__(
        self,
        provider: str | Spec,
        *,
        base_url: str | None,
        api_key: str | None,
        region: str | None,
        specs: SpecSet | None,
        poll_interval: float | None,
        user_agent: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = provider if isinstance(provider, Spec) else (specs or load_specs())[provider]
        self.base_url = (base_url or self.spec.base_url(region)).rstrip("/")
        _check_base_url(self.base_url)
        key = api_key if api_key is not None else os.environ.get(self.spec.api_key_env)
        self._key = key.strip() if key else None
        if self._key and any(c in self._key for c in "\r\n"):
            # Said before anything is sent, and without the key itself.
            raise PaddockError(
                f"the API key for {self.spec.provider} has a line break in it; "
                f"check {self.spec.api_key_env} or the api_key= you passed"
            )
        self._poll = poll_interval
        self._user_agent = user_agent
        self._monotonic = monotonic
        self._random = random.Random()
        self._reader = TaskReader(self.spec)
        # The headers a local check presents: those the client sends on create.
        local = {k.lower(): v for k, v in create_headers(self.spec, "local").items()}
        if self.spec.upload_header:
            local[self.spec.upload_header[0].lower()] = self.spec.upload_header[1]
        self._local_headers = local
        self._create_base: dict[str, str] | None = None

    @property
    def has_key(self) -> bool:
        """Whether a key was given or found in the environment (the key itself is never shown)."""
        return bool(self._key)

    def __repr__(self) -> str:
        key = "set" if self._key else "missing"
        return f"<{type(self).__name__} {self.spec.provider} {self.base_url} key={key}>"

    # -- the public operations ------------------------------------------------------------------

    @operation
    def submit(
        self,
        /,
        model: str,
        *,
        prompt: str | None = None,
        media: MediaInput | None = None,
        headers: Mapping[str, str] | None = None,
        **parameters: Any,
    ) -> Steps[Task]:
        """Validate locally against the spec, upload local files if the provider can, create."""
        self._require_key()
        for name, value in (headers or {}).items():
            if any(c in f"{name}{value}" for c in "\r\n") or ":" in name:
                raise PaddockError(
                    f"header {name!r} has a line break or colon in it; pass one plain header"
                )
        prepared = prepare_media(self.spec, media)
        body = check_locally(self.spec, self._local_headers, model, prompt, prepared, parameters)
        create = dict(self._create_headers())
        local = [item.path for item in prepared if item.path is not None]
        if local and self.spec.upload_form is None:
            name = local[0].name
            raise PublicURLRequired(
                f"{self.spec.provider} takes media as public URLs it can fetch; "
                f"{name} is a local file. Upload it somewhere public and pass the URL "
                f"(for a paddock mock: curl --data-binary @{name} HOST/_paddock/media)."
            )
        if local:
            urls = []
            for item in prepared:
                url = item.url if item.path is None else (yield from upload(self, model, item.path))
                urls.append((item.type, url))
            body = build_create_body(
                self.spec, model, prompt=prompt, media=urls, parameters=parameters
            )
            if self.spec.upload_header:
                create[self.spec.upload_header[0]] = self.spec.upload_header[1]
        create.update(headers or {})
        return (yield from self._create(model, create, body))

    @operation
    def get(self, /, task_id: str) -> Steps[Task]:
        """The task as the provider reports it now."""
        return self._get(task_id)

    @operation
    def wait(
        self,
        /,
        task: str | Task,
        *,
        timeout: float | None = None,
        on_update: Callable[[Task], None] | None = None,
        raise_on_failure: bool = True,
    ) -> Steps[Task]:
        """Poll at the provider's pace until it ends (TaskFailed, TaskExpired, WaitTimeout).

        Given the `Task` that ``submit`` returned, the first poll waits one
        interval: the task is known unfinished, and asking at once would spend
        a request of the provider's query rate on nothing.
        """
        now = self._monotonic
        started = now()
        interval = self._poll if self._poll is not None else self.spec.poll_initial
        ceiling = self._poll if self._poll is not None else self.spec.poll_max
        seen: tuple[str, int | None] | None = None
        task_id = task if isinstance(task, str) else task.id
        if isinstance(task, Task) and not task.terminal:
            yield Sleep(self._jitter(interval))
        while True:
            task = yield from self._get(task_id)
            if (task.state, task.progress) != seen:
                seen = (task.state, task.progress)
                if on_update is not None:
                    on_update(task)
            if task.terminal:
                if task.state == "UNKNOWN":
                    raise TaskExpired(task)
                if task.state != "SUCCEEDED" and raise_on_failure:
                    raise TaskFailed(task)
                return task
            elapsed = now() - started
            if timeout is not None and elapsed >= timeout:
                raise WaitTimeout(task, timeout)
            pause = self._jitter(interval)
            if timeout is not None:
                pause = min(pause, max(timeout - elapsed, 0.0))
            yield Sleep(pause)
            interval = min(interval * 1.5, ceiling)

    @operation
    def cancel(self, /, task_id: str) -> Steps[None]:
        """Ask the provider to cancel (UnsupportedOperation where it has no cancel)."""
        url = self._url("cancel", task_id)
        reply = yield Send("POST", url, self._auth())
        self._raise_unless_ok(reply, "POST", url)

    @operation
    def list(self, /, **params: Any) -> Steps[list[Task]]:
        """The provider's task list, filtered by its own query parameters (``status=...``)."""
        url = self._url("list")
        query = {k: str(v) for k, v in params.items() if v is not None}
        reply = yield from self._read(Send("GET", url, self._auth(), params=query))
        try:
            return self._reader.listing(orjson.loads(reply.body))
        except orjson.JSONDecodeError:
            raise UnexpectedResponse(
                f"{self.spec.provider} answered a list with non-JSON"
            ) from None

    @operation
    def download(
        self, /, task: Task | str, path: str | os.PathLike[str], *, refresh: bool = True
    ) -> Steps[Path]:
        """Stream the MP4 to ``path`` without Authorization, resuming and renewing expired links."""
        if isinstance(task, str):
            task = Task(id=task, provider=self.spec.provider, state="UNKNOWN")
        return download(self, task, Path(path), refresh)

    # -- steps the operations share -------------------------------------------------------------

    def _create(self, model: str, headers: Mapping[str, str], body: Any) -> Steps[Task]:
        url = self._url("create")
        reply = yield Send("POST", url, headers, orjson.dumps(body))
        if isinstance(reply, Failure):
            # Never retried: if the request left, the task may exist and be billed.
            hint = " (it may have been created; check before retrying)" if reply.sent else ""
            raise UpstreamUnavailable(
                reply.error + hint, status=0, code=None, request=self._describe("POST", url)
            )
        self._raise_unless_ok(reply, "POST", url)
        try:
            answer = orjson.loads(reply.body)
            values = self.spec.create_response.parse(answer, strict=False)
        except (orjson.JSONDecodeError, WireMismatch) as exc:
            raise UnexpectedResponse(f"{self.spec.provider} create answer: {exc}") from None
        if not values.get("task.id"):
            raise UnexpectedResponse(
                f"{self.spec.provider} create answer has no task id: {answer!r}"
            )
        return self._reader.task(values, answer, model)

    def _get(self, task_id: str) -> Steps[Task]:
        url = self._url("query", task_id)
        reply = yield from self._read(Send("GET", url, self._auth()))
        try:
            body = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise UnexpectedResponse(
                f"{self.spec.provider} answered a query with non-JSON"
            ) from None
        return self._reader.query(body)

    def _read(self, send: Send) -> Steps[Reply]:
        """A safe-to-repeat request: retried on network errors, 429 and the spec's 5xx."""
        delay = 1.0
        request = self._describe(send.method, send.url)
        for attempt in range(MAX_READ_RETRIES + 1):
            reply = yield send
            last = attempt == MAX_READ_RETRIES
            if isinstance(reply, Failure):
                if last:
                    raise UpstreamUnavailable(reply.error, status=0, code=None, request=request)
            elif 200 <= reply.status < 300:
                answer: Reply = reply
                return answer
            elif reply.status == 429 or reply.status in self.spec.retry_query_statuses:
                if last:
                    raise self._error(reply, request)
                hint = retry_after(reply.headers)
                if hint is not None:
                    delay = max(delay, hint)
                log.info("%s answered %s; retrying in %.1f s", request, reply.status, delay)
            else:
                raise self._error(reply, request)
            yield Sleep(self._jitter(delay))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _raise_unless_ok(self, reply: Reply | Failure, method: str, url: str) -> None:
        """For a request that is never retried: a network failure or non-2xx answer raises."""
        if isinstance(reply, Failure):
            raise UpstreamUnavailable(
                reply.error, status=0, code=None, request=self._describe(method, url)
            )
        if not 200 <= reply.status < 300:
            raise self._error(reply, self._describe(method, url))

    # -- helpers --------------------------------------------------------------------------------

    def _require_key(self) -> str:
        if not self._key:
            raise PaddockError(
                f"no API key for {self.spec.provider}: set {self.spec.api_key_env} or pass api_key="
            )
        return self._key

    def _auth(self) -> dict[str, str]:
        return {
            self.spec.auth_header: f"{self.spec.auth_scheme} {self._require_key()}",
            "User-Agent": self._user_agent,
        }

    def _create_headers(self) -> dict[str, str]:
        """The headers every create sends (auth, async switch), built once per client."""
        if self._create_base is None:
            self._create_base = {
                **create_headers(self.spec, self._require_key()),
                "User-Agent": self._user_agent,
            }
        return self._create_base

    def _url(self, operation: str, task_id: str | None = None) -> str:
        op = self.spec.operations.get(operation)
        if op is None:
            raise UnsupportedOperation(f"{self.spec.provider} has no {operation} operation")
        return self.base_url + op.path.replace("{task_id}", quote(task_id or "", safe=""))

    def _describe(self, method: str, url: str) -> str:
        return f"{method} {urlsplit(url).path}"

    def _error(self, reply: Reply, request: str) -> ProviderError:
        return provider_error(self.spec, reply.status, reply.headers, reply.body, request)

    def _jitter(self, seconds: float) -> float:
        return seconds * self._random.uniform(0.8, 1.2)


def _check_base_url(url: str) -> None:
    """A base URL that cannot work is said at construction, not as a failed (maybe paid) call."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError as exc:
        raise PaddockError(f"base URL {url!r} is not usable: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PaddockError(
            f"base URL {url!r} is not an http(s) URL with a host; "
            "pass one such as http://127.0.0.1:8000/dashscope"
        )
