"""The admin API under ``/_paddock``: journal, tasks, clock, reset, hosted media.

It lives under a reserved prefix that no provider path can take, answers in
plain JSON (not any provider's envelope), and never shows an API key: tasks
carry a key digest, the journal is redacted when written.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts.lifecycle import state_at
from contracts.media import MediaError
from mock_server.service import ALL_METHODS, base_url, json_response

if TYPE_CHECKING:
    from mock_server.app import MockState

__all__ = ["PREFIX", "routes"]

PREFIX = "/_paddock"
_MAX_MEDIA = 64 * 1024 * 1024


def _bad(message: str, status: int = 400) -> Response:
    return json_response(status, {"error": message})


def routes(state: MockState) -> list[BaseRoute]:
    async def health(request: Request) -> Response:
        return json_response(
            200,
            {
                "ok": True,
                "providers": state.specs.names(),
                "root_provider": state.root_provider,
                "timing": state.timing,
                "now": state.clock.now(),
                "tasks": len(state.store),
            },
        )

    async def requests(request: Request) -> Response:
        raw = request.query_params.get("limit", "100")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 7):
            return _bad("limit must be a whole number, e.g. ?limit=50")
        provider = request.query_params.get("provider")
        return json_response(200, {"requests": state.journal.entries(int(raw), provider)})

    async def tasks(request: Request) -> Response:
        provider = request.query_params.get("provider")
        now = state.clock.now()
        out: list[dict[str, Any]] = []
        for task in state.store.tasks(provider):
            spec = state.specs.specs.get(task.provider)
            retention = spec.task_retention if spec else math.inf
            out.append(
                {
                    "id": task.id,
                    "provider": task.provider,
                    "model": task.model,
                    "state": state_at(task, now, retention),
                    "owner": task.owner,
                    "created_at": task.created_at,
                    "parameters": dict(task.request.parameters),
                    "prompt": task.request.prompt,
                    "media": [
                        {
                            "type": m.type,
                            "origin": m.origin,
                            "info": m.info.summary() if m.info else None,
                        }
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
            )
        out.sort(key=lambda t: t["created_at"], reverse=True)
        return json_response(200, {"tasks": out})

    async def advance(request: Request) -> Response:
        try:
            doc: Any = json.loads(await request.body())
        except (ValueError, RecursionError):
            return _bad('send JSON like {"seconds": 60}')
        seconds = doc.get("seconds") if isinstance(doc, dict) else None
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
        ):
            return _bad('"seconds" must be a number, e.g. {"seconds": 60}')
        if seconds < 0:
            return _bad("the clock only moves forward; send a positive number of seconds")
        try:
            return json_response(200, {"now": state.clock.advance(float(seconds))})
        except ValueError as exc:
            return _bad(str(exc))

    async def reset(request: Request) -> Response:
        state.reset()
        return json_response(200, {"ok": True})

    async def put_media(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > _MAX_MEDIA:
            return _bad(f"media is limited to {_MAX_MEDIA} bytes", 413)
        data = await request.body()
        if not data:
            return _bad("send the file's bytes as the request body")
        if len(data) > _MAX_MEDIA:
            return _bad(f"media is limited to {_MAX_MEDIA} bytes", 413)
        try:
            key, blob = state.media.host(data, request.headers.get("content-type"))
        except MediaError as exc:
            return _bad(f"not usable media: {exc}")
        url = base_url(request) + f"{PREFIX}/media/{key}"
        info = blob.info.summary() if blob.info else None
        return json_response(201, {"url": url, "info": info})

    async def get_media(request: Request) -> Response:
        blob = state.media.get("hosted/" + request.path_params["key"])
        if blob is None:
            return _bad("no such media", 404)
        return Response(blob.data, 200, media_type=blob.content_type)

    async def not_found(request: Request) -> Response:
        return _bad(f"no admin route {request.method} {request.url.path}", 404)

    return [
        Route(f"{PREFIX}/health", health, methods=["GET"]),
        Route(f"{PREFIX}/requests", requests, methods=["GET"]),
        Route(f"{PREFIX}/tasks", tasks, methods=["GET"]),
        Route(f"{PREFIX}/clock/advance", advance, methods=["POST"]),
        Route(f"{PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{PREFIX}/media", put_media, methods=["POST"]),
        Route(f"{PREFIX}/media/{{key}}", get_media, methods=["GET", "HEAD"]),
        Route(PREFIX + "/{rest:path}", not_found, methods=ALL_METHODS),
    ]
