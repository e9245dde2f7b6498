"""The admin API under ``/_paddock``: journal, tasks, clock, reset, hosted media.

It lives under a reserved prefix that no provider path can take, answers in
plain JSON (not any provider's envelope), and never shows an API key: tasks
carry a key digest, the journal is redacted when written.

It can reset everything and move the clock, so who may call it is decided
before any handler runs (``AdminAccess``): on a loopback bind it answers
local callers (and checks ``Host``, so a web page on a rebinding domain
cannot reach it); on any other bind only with ``--admin-token``. Browsers are
kept out either way: a foreign ``Origin`` is refused, and so are the body
types a page can send without a preflight (forms and plain text).
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts.lifecycle import state_at
from contracts.media import MediaError
from contracts.task import TaskRecord
from mock_server.objects import ranged
from mock_server.reading import BodyError, BodyTooLarge, read_body
from mock_server.service import ALL_METHODS, base_url, json_response
from mock_server.storage import host_blob
from mock_server.store import StoreFull

if TYPE_CHECKING:
    from mock_server.app import MockState

__all__ = ["PREFIX", "AdminAccess", "routes"]

PREFIX = "/_paddock"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# What a web page can POST cross-origin without a CORS preflight.
_SIMPLE_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
PAGE_MAX = 1000


@dataclass(frozen=True)
class AdminAccess:
    """Who may call the admin API.

    ``mode`` is ``open`` (anyone who reaches it: a loopback bind, or an
    in-process app), ``token`` (``Authorization: Bearer TOKEN`` on every call
    but ``GET /_paddock/health``) or ``off`` (a non-loopback bind without a
    token: nothing but health answers). ``hosts``, when set, are the only
    ``Host`` names accepted (loopback binds), against DNS rebinding.
    """

    mode: Literal["open", "token", "off"] = "open"
    token: str | None = None
    hosts: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if (self.mode == "token") != bool(self.token):
            raise ValueError("an admin token goes with mode 'token', and only with it")

    def __repr__(self) -> str:  # never show the token
        return f"AdminAccess(mode={self.mode!r}, hosts={self.hosts!r})"

    def refusal(self, request: Request) -> Response | None:
        """The answer that refuses this request, or None when it may proceed."""
        if self.hosts is not None and _host_name(request.headers.get("host", "")) not in self.hosts:
            return _bad("the admin API answers only to a loopback Host (DNS rebinding?)", 403)
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin is not None and origin != own:
            return _bad(f"the admin API refuses calls from another origin ({origin[:100]})", 403)
        is_health = request.url.path == f"{PREFIX}/health" and request.method in ("GET", "HEAD")
        if self.mode == "off" and not is_health:
            return _bad(
                "the admin API is disabled on a non-loopback bind; restart with --admin-token",
                403,
            )
        if self.mode == "token" and not is_health:
            sent = request.headers.get("authorization", "")
            expected = f"Bearer {self.token}"
            if not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode()):
                return json_response(
                    401,
                    {"error": "the admin API needs Authorization: Bearer <admin token>"},
                    {"WWW-Authenticate": 'Bearer realm="paddock admin"'},
                )
        if request.method == "POST":
            kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind in _SIMPLE_TYPES:
                return _bad(f"the admin API does not take {kind} bodies; send JSON", 415)
        return None


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _bad(message: str, status: int = 400) -> Response:
    return json_response(status, {"error": message})


def _whole(raw: str | None, name: str, default: int, high: int) -> int | Response:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 7) or int(raw) > high:
        return _bad(f"{name} must be a whole number up to {high}, e.g. ?{name}=50")
    return int(raw)


def _task_json(task: TaskRecord, now: float, retention: float) -> dict[str, Any]:
    return {
        "id": task.id,
        "provider": task.provider,
        "model": task.model,
        "state": state_at(task, now, retention),
        "owner": task.owner,
        "created_at": task.created_at,
        "parameters": dict(task.request.parameters),
        "prompt": task.request.prompt,
        "media": [
            {"type": m.type, "origin": m.origin, "info": m.info.summary() if m.info else None}
            for m in task.request.media
        ],
        "plan": {
            "pending": task.plan.pending if math.isfinite(task.plan.pending) else None,
            "running": task.plan.running if math.isfinite(task.plan.running) else None,
            "outcome": task.plan.outcome,
            "error_code": task.plan.error_code,
        },
        "output": {
            "width": task.output.width,
            "height": task.output.height,
            "duration": task.output.duration,
            "fps": task.output.fps,
        },
    }


def routes(state: MockState) -> list[BaseRoute]:
    access = state.options.admin

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            refused = access.refusal(request)
            if refused is not None:
                return refused
            response: Response = await handler(request)
            return response

        return endpoint

    async def json_body(request: Request) -> Any:
        try:
            body = await read_body(
                request.receive,
                request.scope["headers"],
                state.options.admin_body_bytes,
                state.options.body_timeout,
            )
            return orjson.loads(body) if body else None
        except BodyTooLarge:
            return _bad(f"admin bodies are limited to {state.options.admin_body_bytes} bytes", 413)
        except BodyError as exc:
            return _bad(f"the body did not arrive whole: {exc}")
        except orjson.JSONDecodeError:
            return _bad("send a JSON body")

    async def health(request: Request) -> Response:
        return json_response(
            200,
            {
                "ok": True,
                "providers": state.specs.names(),
                "root_provider": state.root_provider,
                "timing": state.timing,
                "now": state.clock.now(),
                "tasks": await state.store.count_tasks(),
                "keys": "any" if state.api_keys is None else "listed",
                "admin": access.mode,
            },
        )

    async def requests(request: Request) -> Response:
        limit = _whole(request.query_params.get("limit"), "limit", 100, 1_000_000)
        if isinstance(limit, Response):
            return limit
        provider = request.query_params.get("provider")
        return json_response(200, {"requests": await state.journal.entries(limit, provider)})

    async def tasks(request: Request) -> Response:
        query = request.query_params
        limit = _whole(query.get("limit"), "limit", 100, PAGE_MAX)
        offset = _whole(query.get("offset"), "offset", 0, 10_000_000)
        if isinstance(limit, Response):
            return limit
        if isinstance(offset, Response):
            return offset
        provider = query.get("provider")
        page, total = await state.store.page_tasks(provider, offset, limit)
        now = state.clock.now()
        retention = {spec.provider: spec.task_retention for spec in state.specs}
        out = [_task_json(t, now, retention.get(t.provider, math.inf)) for t in page]
        following = offset + len(page)
        return json_response(
            200,
            {
                "tasks": out,
                "total": total,
                "offset": offset,
                "limit": limit,
                "next_offset": following if following < total else None,
            },
        )

    async def advance(request: Request) -> Response:
        doc = await json_body(request)
        if isinstance(doc, Response):
            return doc
        seconds = doc.get("seconds") if isinstance(doc, dict) else None
        if isinstance(seconds, int) and not isinstance(seconds, bool):
            if abs(seconds) > 1 << 53:  # a 400-digit number is not a float
                return _bad("the clock may move at most 100 years")
            seconds = float(seconds)
        if not isinstance(seconds, float) or not math.isfinite(seconds):
            return _bad('"seconds" must be a number, e.g. {"seconds": 60}')
        if seconds < 0:
            return _bad("the clock only moves forward; send a positive number of seconds")
        try:
            return json_response(200, {"now": await state.store.advance_clock(seconds)})
        except ValueError as exc:
            return _bad(str(exc))

    async def reset(request: Request) -> Response:
        await state.reset()
        return json_response(200, {"ok": True})

    async def put_media(request: Request) -> Response:
        limit = state.options.max_file_bytes
        try:
            data = await read_body(
                request.receive, request.scope["headers"], limit, state.options.body_timeout
            )
        except BodyTooLarge:
            return _bad(f"media is limited to {limit} bytes (--max-file-bytes)", 413)
        except BodyError as exc:
            return _bad(f"the file did not arrive whole: {exc}")
        if not data:
            return _bad("send the file's bytes as the request body")
        try:
            key, blob = host_blob(data)
        except MediaError as exc:
            return _bad(f"not usable media: {exc}")
        try:
            await state.store.put_blob(key, blob)
        except StoreFull as exc:
            return _bad(str(exc), 429)  # come back when retention or a reset makes room
        url = base_url(request) + f"{PREFIX}/media/{key.removeprefix('hosted/')}"
        info = blob.info.summary() if blob.info else None
        return json_response(201, {"url": url, "info": info})

    async def get_media(request: Request) -> Response:
        blob = await state.store.get_blob("hosted/" + request.path_params["key"])
        if blob is None:
            return _bad("no such media", 404)
        return ranged(request, blob.data, blob.content_type)

    async def not_found(request: Request) -> Response:
        return _bad(f"no admin route {request.method} {request.url.path}", 404)

    return [
        Route(f"{PREFIX}/health", guarded(health), methods=["GET"]),
        Route(f"{PREFIX}/requests", guarded(requests), methods=["GET"]),
        Route(f"{PREFIX}/tasks", guarded(tasks), methods=["GET"]),
        Route(f"{PREFIX}/clock/advance", guarded(advance), methods=["POST"]),
        Route(f"{PREFIX}/reset", guarded(reset), methods=["POST"]),
        Route(f"{PREFIX}/media", guarded(put_media), methods=["POST"]),
        Route(f"{PREFIX}/media/{{key}}", guarded(get_media), methods=["GET", "HEAD"]),
        Route(PREFIX + "/{rest:path}", guarded(not_found), methods=ALL_METHODS),
    ]
