"""The reference client: what a careful team would write to call these providers in production.

Provider-agnostic: paths, headers, body layout, status words, error codes and
polling pace all come from the spec, through the same templates the mock
renders with. ``Client`` and ``AsyncClient`` share one implementation: each
operation is a generator that yields actions (send a request, sleep, stream a
download) and receives their results, and two small drivers perform them with
httpx, one blocking and one async. The logic exists once.

Safety rules: a create is never retried blindly (one create must not become
two paid tasks); polls and downloads retry with backoff and honour
``Retry-After``; downloads never carry the Authorization header; keys never
appear in a repr, a log line or an exception.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import random
import time
import urllib.request
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx
import orjson

from contracts.bodies import build_create_body, create_headers, path_parts
from contracts.errors import (
    DownloadError,
    LocalValidationError,
    PaddockError,
    ProviderError,
    PublicURLRequired,
    TaskExpired,
    TaskFailed,
    UnexpectedResponse,
    UnsupportedOperation,
    UpstreamUnavailable,
    WaitTimeout,
    error_for_category,
)
from contracts.media import MediaError, MediaInfo, decode_data_uri, probe, probe_file
from contracts.spec import Spec, SpecSet, default_category, load_specs
from contracts.task import TERMINAL_STATES
from contracts.transport import LeanTransport, header_block
from contracts.validate import Violation, check_remote_url, validate_create
from contracts.wire import WireMismatch

__all__ = ["AsyncClient", "Client", "MediaInput", "Task"]

log = logging.getLogger("paddock.client")
T = TypeVar("T")

MediaInput = Sequence[tuple[str, str]] | Mapping[str, str | Sequence[str]]
"""``[("first_frame", "cat.png")]`` or ``{"first_frame": "cat.png", "reference_image": [...]}``;
each value an http(s) URL, a ``data:`` URI, or a local path (``file://`` or plain)."""

_MAX_READ_RETRIES = 4
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Task:
    """What a client knows of a task: canonical state, and the provider's JSON it came from."""

    id: str
    provider: str
    state: str
    model: str | None = None
    progress: int | None = None
    submitted_at: float | None = None
    scheduled_at: float | None = None
    ended_at: float | None = None
    result_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    def to_json(self) -> dict[str, Any]:
        """The canonical task as plain JSON (what ``paddock generate --json`` prints)."""
        return {
            "id": self.id,
            "provider": self.provider,
            "model": self.model,
            "state": self.state,
            "progress": self.progress,
            "submitted_at": self.submitted_at,
            "scheduled_at": self.scheduled_at,
            "ended_at": self.ended_at,
            "result_url": self.result_url,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


# -- actions the drivers perform ----------------------------------------------------------------
# Plain (not frozen) slotted dataclasses: several are made per request, and a
# frozen one's __init__ sets each field through object.__setattr__.


@dataclass(slots=True)
class _Send:
    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None = None
    params: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    data: Mapping[str, str] | None = None


@dataclass(slots=True)
class _Sleep:
    seconds: float


@dataclass(slots=True)
class _Fetch:
    """Stream a URL into ``path`` (appending from ``offset``); the reply carries no body."""

    url: str
    headers: Mapping[str, str]
    path: Path
    offset: int


@dataclass(slots=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    written: int = 0


@dataclass(slots=True)
class _Failure:
    """The transport failed (connection refused, reset, timeout); ``sent`` if the request left."""

    error: str
    sent: bool


_Action = _Send | _Sleep | _Fetch
_Steps = Generator[_Action, Any, T]


# -- the shared implementation ------------------------------------------------------------------


class _Core:
    """Request building, response reading and the operation generators; no I/O."""

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
    ) -> None:
        if isinstance(provider, Spec):
            self.spec = provider
        else:
            self.spec = (specs or load_specs())[provider]
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
        self._random = random.Random()
        self._status_path = self.spec.query_response.states["PENDING"].path_of("state") or "?"
        self._state_for: dict[str | int, str] = {}
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
        path = op.path.replace("{task_id}", quote(task_id or "", safe=""))
        return self.base_url + path

    def _describe(self, method: str, url: str) -> str:
        return f"{method} {urlsplit(url).path}"

    def _error(self, reply: _Reply, request: str) -> ProviderError:
        """The typed error for a non-2xx answer, read through the spec's envelopes."""
        body: Any = None
        try:
            body = orjson.loads(reply.body) if reply.body else None
        except orjson.JSONDecodeError:
            body = None
        code = message = request_id = None
        if isinstance(body, dict):
            for envelope in self.spec.envelopes.values():
                values = envelope.parse(body, strict=False)
                if values.get("error.code") or values.get("error.message"):
                    code = values.get("error.code")
                    message = values.get("error.message")
                    request_id = values.get("request_id")
                    break
        retry_after = _retry_after(reply.headers)
        known = self.spec.error(str(code)) if code and self.spec.has_error(str(code)) else None
        category = known.category if known else default_category(reply.status)
        cls = error_for_category(category)
        text = (
            str(message) if message else (reply.body[:200].decode("utf-8", "replace") or "no body")
        )
        return cls(
            text,
            status=reply.status,
            code=str(code) if code is not None else None,
            request_id=str(request_id) if request_id else None,
            raw=body,
            request=request,
            retry_after=retry_after,
        )

    def _task(self, body: Any, *, model: str | None = None) -> Task:
        """A query answer read through the template of whichever state it is in."""
        if not isinstance(body, dict):
            raise UnexpectedResponse(
                f"{self.spec.provider} answered a query with {type(body).__name__}"
            )
        # Which state's template reads this answer is remembered per wire status
        # value, so a poll parses one template rather than trying each in turn.
        status_path = self._status_path
        wire = _dig(body, status_path)
        key = wire if isinstance(wire, (str, int)) else None
        states = self.spec.query_response.states
        first = self._state_for.get(key) if key is not None else None
        if first is not None:
            values = states[first].parse(body, strict=False)
            if values.get("state") == first and values.get("task.id"):
                return self._from_values(values, body, model)
        for state, template in states.items():
            values = template.parse(body, strict=False)
            if values.get("state") == state and values.get("task.id"):
                if key is not None and len(self._state_for) < 256:
                    self._state_for[key] = state
                return self._from_values(values, body, model)
        raise UnexpectedResponse(
            f"{self.spec.provider} answered a query in a shape its spec does not describe "
            f"(status at {status_path}: {wire!r})"
        )

    def _from_values(self, values: Mapping[str, Any], body: Any, model: str | None) -> Task:
        progress = values.get("progress")
        return Task(
            id=str(values["task.id"]),
            provider=self.spec.provider,
            state=str(values["state"]),
            model=values.get("task.model") or model,
            progress=int(progress) if isinstance(progress, (int, float)) else None,
            submitted_at=_float(values.get("times.submitted")),
            scheduled_at=_float(values.get("times.scheduled")) or None,
            ended_at=_float(values.get("times.ended")) or None,
            result_url=values.get("result.url"),
            error_code=values.get("error.code"),
            error_message=values.get("error.message"),
            raw=MappingProxyType(body) if isinstance(body, dict) else MappingProxyType({}),
        )

    def _jitter(self, seconds: float) -> float:
        return seconds * self._random.uniform(0.8, 1.2)

    # -- local checks and media -----------------------------------------------------------------

    def _prepare_media(
        self, media: MediaInput | None
    ) -> list[tuple[str, str, MediaInfo | None, Path | None]]:
        """(type, url or path, probed info, local path) per media input, probed where we can."""
        if not media:
            return []
        pairs: list[tuple[str, str]] = []
        if isinstance(media, Mapping):
            for media_type, value in media.items():
                values = [value] if isinstance(value, str) else list(value)
                pairs.extend((media_type, v) for v in values)
        elif media:
            pairs.extend((str(t), str(v)) for t, v in media)
        out: list[tuple[str, str, MediaInfo | None, Path | None]] = []
        for media_type, value in pairs:
            if value.startswith(("http://", "https://")):
                out.append((media_type, value, None, None))
            elif value.startswith("data:"):
                try:
                    out.append((media_type, value, probe(decode_data_uri(value)[1]), None))
                except MediaError as exc:
                    raise LocalValidationError(
                        f"{media_type}: {exc}",
                        rule="media_unreadable",
                        field=media_type,
                        source="local",
                    ) from None
            elif self.spec.upload_scheme and value.startswith(self.spec.upload_scheme):
                out.append((media_type, value, None, None))
            else:
                path = Path(
                    unquote(urlsplit(value).path) if value.startswith("file://") else value
                ).expanduser()
                if not path.is_file():
                    raise LocalValidationError(
                        f"{media_type}: no such file {str(path)!r}",
                        rule="media_url",
                        field=media_type,
                        source="local",
                    )
                try:
                    info = probe_file(path)
                except MediaError as exc:
                    raise LocalValidationError(
                        f"{media_type}: {path.name}: {exc}",
                        rule="media_unreadable",
                        field=media_type,
                        source="local",
                    ) from None
                out.append((media_type, path.resolve().as_uri(), info, path))
        return out

    def _check_locally(
        self,
        model: str,
        prompt: str | None,
        media: list[tuple[str, str, MediaInfo | None, Path | None]],
        parameters: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The wire body for these inputs, after the checks the provider would make.

        Returned so that, when no local file needs uploading first, the body
        checked is the body sent, built once.
        """
        body = build_create_body(
            self.spec,
            model,
            prompt=prompt,
            media=[(t, u) for t, u, _, _ in media],
            parameters=parameters,
        )
        infos = {url: info for _, url, info, _ in media}
        result = validate_create(
            self.spec,
            self._local_headers,
            body,
            _LocalResolver(infos, self.spec.upload_scheme),
            note_ignored=False,
        )
        if isinstance(result, Violation):
            error, message = result.resolve(self.spec)
            rule = self.spec.violations[result.kind]
            where = f" at {result.field}" if result.field else ""
            raise LocalValidationError(
                f"{self.spec.provider} would refuse this ({error.code}{where}): {message}",
                rule=result.kind,
                field=result.field,
                source=rule.source,
            )
        return body

    # -- operations as generators ---------------------------------------------------------------

    def _submit(
        self,
        model: str,
        prompt: str | None,
        media: MediaInput | None,
        parameters: Mapping[str, Any],
        extra_headers: Mapping[str, str] | None,
    ) -> _Steps[Task]:
        self._require_key()
        for name, value in (extra_headers or {}).items():
            if any(c in f"{name}{value}" for c in "\r\n") or ":" in name:
                raise PaddockError(
                    f"header {name!r} has a line break or colon in it; pass one plain header"
                )
        prepared = self._prepare_media(media)
        checked = self._check_locally(model, prompt, prepared, parameters)
        headers = dict(self._create_headers())
        urls: list[tuple[str, str]] = []
        for media_type, url, _, path in prepared:
            if path is None:
                urls.append((media_type, url))
                continue
            if "upload_policy" not in self.spec.operations or not self.spec.upload_scheme:
                raise PublicURLRequired(
                    f"{self.spec.provider} takes media as public URLs it can fetch; "
                    f"{path.name} is a local file. Upload it somewhere public and pass the URL "
                    f"(for a paddock mock: curl --data-binary @{path.name} HOST/_paddock/media)."
                )
            uploaded = yield from self._upload(model, path)
            urls.append((media_type, uploaded))
            if self.spec.upload_header:
                headers[self.spec.upload_header[0]] = self.spec.upload_header[1]
        if any(path is not None for _, _, _, path in prepared):  # uploaded: new URLs
            checked = build_create_body(
                self.spec, model, prompt=prompt, media=urls, parameters=parameters
            )
        body = checked
        if extra_headers:
            headers.update(extra_headers)
        url = self._url("create")
        reply = yield _Send("POST", url, headers, orjson.dumps(body))
        if isinstance(reply, _Failure):
            # Never retried: if the request left, the task may exist and be billed.
            hint = " (it may have been created; check before retrying)" if reply.sent else ""
            raise UpstreamUnavailable(
                reply.error + hint, status=0, code=None, request=self._describe("POST", url)
            )
        if not 200 <= reply.status < 300:
            raise self._error(reply, self._describe("POST", url))
        try:
            answer = orjson.loads(reply.body)
            values = self.spec.create_response.parse(answer, strict=False)
        except (orjson.JSONDecodeError, WireMismatch) as exc:
            raise UnexpectedResponse(f"{self.spec.provider} create answer: {exc}") from None
        if not values.get("task.id"):
            raise UnexpectedResponse(
                f"{self.spec.provider} create answer has no task id: {answer!r}"
            )
        return Task(
            id=str(values["task.id"]),
            provider=self.spec.provider,
            state=str(values.get("state", "PENDING")),
            model=model,
            progress=values.get("progress") if isinstance(values.get("progress"), int) else None,
            submitted_at=_float(values.get("times.submitted")),
            raw=MappingProxyType(answer),
        )

    def _upload(self, model: str, path: Path) -> _Steps[str]:
        """The upload-policy flow, as the official DashScope SDK does it."""
        url = self._url("upload_policy")
        reply = yield from self._read(
            _Send("GET", url, self._auth(), params={"action": "getPolicy", "model": model})
        )
        assert self.spec.upload_response is not None and self.spec.upload_scheme is not None
        values = self.spec.upload_response.parse(orjson.loads(reply.body), strict=False)
        needed = ("upload.policy", "upload.signature", "upload.dir", "upload.host")
        if any(not values.get(k) for k in needed):
            raise UnexpectedResponse(f"{self.spec.provider} upload policy lacks {needed}")
        key = f"{values['upload.dir']}/{path.name}"
        form = {
            "OSSAccessKeyId": str(values.get("upload.access_key_id", "")),
            "Signature": str(values["upload.signature"]),
            "policy": str(values["upload.policy"]),
            "key": key,
            "x-oss-object-acl": "private",
            "x-oss-forbid-overwrite": "true",
            "success_action_status": "200",
            "x-oss-content-type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        }
        content_type = form["x-oss-content-type"]
        upload = _Send(
            "POST",
            str(values["upload.host"]),
            {"User-Agent": self._user_agent},
            data=form,
            files={"file": (path.name, path.read_bytes(), content_type)},
        )
        result = yield upload
        if isinstance(result, _Failure) or result.status != 200:
            detail = result.error if isinstance(result, _Failure) else f"HTTP {result.status}"
            raise PaddockError(
                f"uploading {path.name} to {self.spec.provider}'s storage failed: {detail}"
            )
        return f"{self.spec.upload_scheme}{key}"

    def _read(self, send: _Send) -> _Steps[_Reply]:
        """A safe-to-repeat request: retried on transport errors, 429 and the spec's 5xx."""
        delay = 1.0
        for attempt in range(_MAX_READ_RETRIES + 1):
            reply = yield send
            last = attempt == _MAX_READ_RETRIES
            if isinstance(reply, _Failure):
                if last:
                    raise UpstreamUnavailable(
                        reply.error,
                        status=0,
                        code=None,
                        request=self._describe(send.method, send.url),
                    )
            elif 200 <= reply.status < 300:
                answer: _Reply = reply
                return answer
            elif reply.status == 429 or reply.status in self.spec.retry_query_statuses:
                if last:
                    raise self._error(reply, self._describe(send.method, send.url))
                hint = _retry_after(reply.headers)
                if hint is not None:
                    delay = max(delay, hint)
                log.info(
                    "%s answered %s; retrying in %.1f s",
                    self._describe(send.method, send.url),
                    reply.status,
                    delay,
                )
            else:
                raise self._error(reply, self._describe(send.method, send.url))
            yield _Sleep(self._jitter(delay))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _get(self, task_id: str) -> _Steps[Task]:
        url = self._url("query", task_id)
        reply = yield from self._read(_Send("GET", url, self._auth()))
        try:
            body = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise UnexpectedResponse(
                f"{self.spec.provider} answered a query with non-JSON"
            ) from None
        return self._task(body)

    def _wait(
        self,
        task: str | Task,
        timeout: float | None,
        on_update: Callable[[Task], None] | None,
        raise_on_failure: bool,
        now: Callable[[], float],
    ) -> _Steps[Task]:
        started = now()
        interval = self._poll if self._poll is not None else self.spec.poll_initial
        ceiling = self._poll if self._poll is not None else self.spec.poll_max
        seen: tuple[str, int | None] | None = None
        task_id = task if isinstance(task, str) else task.id
        if isinstance(task, Task) and not task.terminal:
            # A task just submitted or polled is known unfinished: asking again
            # at once would spend a request of the provider's query rate on
            # nothing, so the first poll waits one interval.
            yield _Sleep(self._jitter(interval))
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
            yield _Sleep(pause)
            interval = min(interval * 1.5, ceiling)

    def _cancel(self, task_id: str) -> _Steps[None]:
        url = self._url("cancel", task_id)
        reply = yield _Send("POST", url, self._auth())
        if isinstance(reply, _Failure):
            raise UpstreamUnavailable(
                reply.error, status=0, code=None, request=self._describe("POST", url)
            )
        if not 200 <= reply.status < 300:
            raise self._error(reply, self._describe("POST", url))
        return None

    def _list(self, params: Mapping[str, Any]) -> _Steps[list[Task]]:
        url = self._url("list")
        query = {k: str(v) for k, v in params.items() if v is not None}
        reply = yield from self._read(_Send("GET", url, self._auth(), params=query))
        assert self.spec.list_item is not None
        body = orjson.loads(reply.body)
        items: Iterable[Any] = ()
        if self.spec.list_response is not None:
            path = self.spec.list_response.path_of("items")
            found = _dig(body, path or "")
            items = found if isinstance(found, list) else ()
        tasks = []
        for item in items:
            values = self.spec.list_item.parse(item, strict=False)
            if values.get("task.id") and values.get("state"):
                tasks.append(self._from_values(values, item, None))
        return tasks

    def _download(self, task: Task, path: Path, refresh: bool) -> _Steps[Path]:
        if not task.succeeded or not task.result_url:
            task = yield from self._get(task.id)
        if not task.succeeded or not task.result_url:
            raise DownloadError(
                f"task {task.id} is {task.state}; only a SUCCEEDED task has a video"
            )
        part = path.with_name(path.name + ".part")
        url = task.result_url
        refreshed = 0
        failures = 0
        total: int | None = None
        while True:
            offset = part.stat().st_size if part.exists() else 0
            headers = {"User-Agent": self._user_agent}  # never Authorization: signed URLs refuse it
            if offset:
                headers["Range"] = f"bytes={offset}-"
            reply = yield _Fetch(url, headers, part, offset)
            if isinstance(reply, _Failure):
                failures += 1
                if failures > _MAX_READ_RETRIES:
                    raise DownloadError(f"downloading task {task.id} failed: {reply.error}")
                yield _Sleep(self._jitter(min(2.0**failures, 15.0)))
                continue
            if reply.status in (401, 403, 404) and refresh and refreshed < 2:
                # Signed links expire; a fresh poll may hand out a fresh one.
                refreshed += 1
                fresh = yield from self._get(task.id)
                if not fresh.result_url or fresh.result_url == url:
                    raise DownloadError(
                        f"the result URL of task {task.id} answers {reply.status} and "
                        f"{self.spec.provider} gave no new one (expired after its retention?)"
                    )
                url, task = fresh.result_url, fresh
                continue
            if reply.status == 416:
                part.unlink(missing_ok=True)
                continue
            if reply.status not in (200, 206):
                raise DownloadError(
                    f"the result URL of task {task.id} answered HTTP {reply.status}"
                )
            content_type = reply.headers.get("content-type", "")
            if not content_type.startswith(("video/", "application/octet-stream", "binary/")):
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"the result of task {task.id} is {content_type or 'untyped'}, not a video"
                )
            total = _content_total(reply.headers, offset if reply.status == 206 else 0)
            size = part.stat().st_size
            if total is not None and size < total:
                failures += 1  # cut short: resume from where it stopped
                if failures > _MAX_READ_RETRIES:
                    raise DownloadError(
                        f"download of task {task.id} kept stopping at {size}/{total} bytes"
                    )
                continue
            break
        with part.open("rb") as handle:
            head = handle.read(12)
        if head[4:8] != b"ftyp":
            part.unlink(missing_ok=True)
            raise DownloadError(f"the result of task {task.id} is not an MP4 file")
        os.replace(part, path)
        return path


class _LocalResolver:
    """What the client can know of media before sending: probed files and data URIs."""

    def __init__(self, infos: Mapping[str, MediaInfo | None], upload_scheme: str | None) -> None:
        self._infos = infos
        self._upload_scheme = upload_scheme

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        info = self._infos.get(url)
        if url.startswith("file://"):
            return "local", info
        if url.startswith("data:"):
            return "data", info
        if self._upload_scheme and url.startswith(self._upload_scheme):
            return "upload", None
        check_remote_url(url)  # raises MediaUnavailable, which the validator reports
        return "remote", None


# -- drivers ------------------------------------------------------------------------------------


class Client(_Core):
    """Blocking client for one provider.

    >>> client = Client("dashscope", base_url="http://127.0.0.1:8000/dashscope", api_key="sk-...")
    >>> task = client.submit("happyhorse-1.0-t2v", prompt="waves at dusk", duration=5)
    >>> done = client.wait(task.id)
    >>> client.download(done, "waves.mp4")
    """

    def __init__(
        self,
        provider: str | Spec,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        region: str | None = None,
        specs: SpecSet | None = None,
        timeout: float = 60.0,
        poll_interval: float | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        user_agent: str = "paddock-client/0.1",
    ) -> None:
        super().__init__(
            provider,
            base_url=base_url,
            api_key=api_key,
            region=region,
            specs=specs,
            poll_interval=poll_interval,
            user_agent=user_agent,
        )
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)
        self._sleep = sleep
        self._monotonic = monotonic

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self,
        model: str,
        *,
        prompt: str | None = None,
        media: MediaInput | None = None,
        headers: Mapping[str, str] | None = None,
        **parameters: Any,
    ) -> Task:
        """Validate locally against the spec, upload local files if the provider can, create."""
        return self._run(self._submit(model, prompt, media, parameters, headers))

    def get(self, task_id: str) -> Task:
        return self._run(self._get(task_id))

    def wait(
        self,
        task_id: str | Task,
        *,
        timeout: float | None = None,
        on_update: Callable[[Task], None] | None = None,
        raise_on_failure: bool = True,
    ) -> Task:
        """Poll at the provider's pace until it ends (TaskFailed, TaskExpired, WaitTimeout)."""
        return self._run(self._wait(task_id, timeout, on_update, raise_on_failure, self._monotonic))

    def cancel(self, task_id: str) -> None:
        self._run(self._cancel(task_id))

    def list(self, **params: Any) -> list[Task]:
        return self._run(self._list(params))

    def download(
        self, task: Task | str, path: str | os.PathLike[str], *, refresh: bool = True
    ) -> Path:
        """Stream the MP4 to ``path`` without Authorization, resuming and renewing expired links."""
        if isinstance(task, str):
            task = Task(id=task, provider=self.spec.provider, state="UNKNOWN")
        return self._run(self._download(task, Path(path), refresh))

    def _run(self, steps: _Steps[T]) -> T:
        result: Any = None
        try:
            while True:
                action = steps.send(result)
                result = self._perform(action)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _perform(self, action: _Action) -> Any:
        if isinstance(action, _Sleep):
            self._sleep(action.seconds)
            return None
        if isinstance(action, _Fetch):
            return self._fetch(action)
        try:
            response = self._http.request(
                action.method,
                action.url,
                headers=dict(action.headers),
                content=action.content,
                params=action.params,
                files=action.files,
                data=action.data,
            )
        except httpx.TransportError as exc:
            return _failure(exc)
        return _Reply(response.status_code, response.headers, response.content)

    def _fetch(self, action: _Fetch) -> Any:
        try:
            with self._http.stream("GET", action.url, headers=dict(action.headers)) as response:
                if response.status_code not in (200, 206):
                    response.read()
                    return _Reply(response.status_code, response.headers, response.content)
                mode = "ab" if response.status_code == 206 and action.offset else "wb"
                written = 0
                with action.path.open(mode) as out:
                    for chunk in response.iter_bytes(_CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                return _Reply(response.status_code, response.headers, written=written)
        except httpx.TransportError as exc:
            return _failure(exc)


class AsyncClient(_Core):
    """The same client for asyncio: many tasks in flight on one connection pool."""

    def __init__(
        self,
        provider: str | Spec,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        region: str | None = None,
        specs: SpecSet | None = None,
        timeout: float = 60.0,
        poll_interval: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        user_agent: str = "paddock-client/0.1",
    ) -> None:
        super().__init__(
            provider,
            base_url=base_url,
            api_key=api_key,
            region=region,
            specs=specs,
            poll_interval=poll_interval,
            user_agent=user_agent,
        )
        limits = limits or httpx.Limits(max_connections=16, max_keepalive_connections=16)
        if transport is None:
            # httpx's default transport (httpcore) cost the client a full core
            # where the server it drove used a fifth of one (nox -s bench); the
            # lean one keeps httpx's API and types at a fraction of the CPU.
            transport = LeanTransport(
                max_connections=limits.max_connections or 16,
                keepalive_expiry=limits.keepalive_expiry or 5.0,
            )
        self._http = httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=True, limits=limits
        )
        # API calls are single exchanges: no redirects, cookies or auth flows.
        # Handing them straight to the transport skips httpx.AsyncClient's
        # per-request URL merging and cookie bookkeeping (~40 % of the client's
        # CPU in the bench). With an environment proxy configured, the full
        # client (which routes through it) is used instead; downloads always are.
        self._transport = transport
        self._direct = not any(
            scheme in ("http", "https", "all") for scheme in urllib.request.getproxies()
        )
        self._timeouts = httpx.Timeout(timeout).as_dict()
        self._default_headers = {"accept": "*/*", "user-agent": user_agent}
        self._header_blocks: dict[tuple[tuple[str, str], ...], bytes] = {}
        # Bounding requests in flight here, not only in the transport, keeps
        # any transport's queue (httpcore rescans its whole queue per request)
        # no longer than the pool.
        self._slots = asyncio.Semaphore(limits.max_connections or 100)
        self._bounded = isinstance(transport, LeanTransport)
        self._monotonic = monotonic

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self,
        model: str,
        *,
        prompt: str | None = None,
        media: MediaInput | None = None,
        headers: Mapping[str, str] | None = None,
        **parameters: Any,
    ) -> Task:
        return await self._run(self._submit(model, prompt, media, parameters, headers))

    async def get(self, task_id: str) -> Task:
        return await self._run(self._get(task_id))

    async def wait(
        self,
        task_id: str | Task,
        *,
        timeout: float | None = None,
        on_update: Callable[[Task], None] | None = None,
        raise_on_failure: bool = True,
    ) -> Task:
        return await self._run(
            self._wait(task_id, timeout, on_update, raise_on_failure, self._monotonic)
        )

    async def cancel(self, task_id: str) -> None:
        await self._run(self._cancel(task_id))

    async def list(self, **params: Any) -> list[Task]:
        return await self._run(self._list(params))

    async def download(
        self, task: Task | str, path: str | os.PathLike[str], *, refresh: bool = True
    ) -> Path:
        if isinstance(task, str):
            task = Task(id=task, provider=self.spec.provider, state="UNKNOWN")
        return await self._run(self._download(task, Path(path), refresh))

    async def _run(self, steps: _Steps[T]) -> T:
        result: Any = None
        lean = self._bounded and self._direct
        try:
            while True:
                action = steps.send(result)
                if lean and type(action) is _Send and action.files is None and action.data is None:
                    # The common case, awaited directly: every await level between
                    # the task and the socket is resumed on each wake-up.
                    result = await self._exchange(action)
                else:
                    result = await self._perform(action)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _perform(self, action: _Action) -> Any:
        if isinstance(action, _Sleep):
            await asyncio.sleep(action.seconds)
            return None
        if self._bounded:  # the lean transport bounds its own connections
            if isinstance(action, _Fetch):
                return await self._fetch(action)
            return await self._send(action)
        async with self._slots:
            if isinstance(action, _Fetch):
                return await self._fetch(action)
            return await self._send(action)

    async def _send(self, action: _Send) -> Any:
        if self._direct and action.files is None and action.data is None:
            return await self._exchange(action)
        try:
            response = await self._http.request(
                action.method,
                action.url,
                headers=dict(action.headers),
                content=action.content,
                params=action.params,
                files=action.files,
                data=action.data,
            )
        except httpx.TransportError as exc:
            return _failure(exc)
        return _Reply(response.status_code, response.headers, response.content)

    async def _exchange(self, action: _Send) -> Any:
        headers = {**self._default_headers, **action.headers}
        try:
            if isinstance(self._transport, LeanTransport):
                reply = await self._transport.exchange(
                    action.method,
                    action.url,
                    self._encoded(headers),
                    params=action.params,
                    content=action.content,
                    timeout=self._timeouts,
                )
                return _Reply(reply.status, reply.headers, reply.body)
            request = httpx.Request(
                action.method,
                action.url,
                params=action.params,
                headers=headers,
                content=action.content,
                extensions={"timeout": self._timeouts},
            )
            response = await self._transport.handle_async_request(request)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            return _failure(exc)
        return _Reply(response.status_code, response.headers, body)

    def _encoded(self, headers: dict[str, str]) -> bytes:
        """Headers as wire lines, rendered once per distinct set: a client sends the same few
        again and again, and encoding them per request showed in the bench's profile."""
        key = tuple(headers.items())
        block = self._header_blocks.get(key)
        if block is None:
            if len(self._header_blocks) >= 64:
                self._header_blocks.clear()
            block = header_block(headers)
            self._header_blocks[key] = block
        return block

    async def _fetch(self, action: _Fetch) -> Any:
        try:
            async with self._http.stream(
                "GET", action.url, headers=dict(action.headers)
            ) as response:
                if response.status_code not in (200, 206):
                    await response.aread()
                    return _Reply(response.status_code, response.headers, response.content)
                mode = "ab" if response.status_code == 206 and action.offset else "wb"
                written = 0
                with action.path.open(mode) as out:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                return _Reply(response.status_code, response.headers, written=written)
        except httpx.TransportError as exc:
            return _failure(exc)


# -- small helpers ------------------------------------------------------------------------------


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


def _failure(exc: httpx.TransportError) -> _Failure:
    sent = not isinstance(
        exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)
    )
    return _Failure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, sent)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(float(raw) * scale, 0.0)
            except ValueError:
                continue
    return None


def _content_total(headers: Mapping[str, str], offset: int) -> int | None:
    content_range = headers.get("content-range", "")
    if "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isdigit() else None
    length = headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None


def _float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _dig(doc: Any, dotted: str) -> Any:
    node = doc
    for part in path_parts(dotted) if dotted else ():
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
