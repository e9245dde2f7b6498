"""Build the mock upstream: every provider under its prefix, storage, and the admin API.

``create_app`` returns a plain Starlette application, so tests build their
own (with a frozen clock, a fixed key set) and serve it in-process or on a
socket, and ``paddock serve`` is a thin wrapper around the same call.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from contracts.lifecycle import TIMING_MODES, TimingMode, state_at
from contracts.spec import SpecSet, load_specs
from mock_server import admin
from mock_server.clock import Clock
from mock_server.journal import Journal
from mock_server.service import Endpoint, ProviderService, json_response
from mock_server.storage import Blob, MediaStore, Signer
from mock_server.store import MemoryStore, Store
from mock_server.videos import VideoCache

__all__ = ["MockApp", "MockState", "create_app"]

log = logging.getLogger("paddock.mock")


@dataclass
class MockState:
    """Everything the endpoints share; one per application."""

    specs: SpecSet
    clock: Clock
    store: Store
    journal: Journal
    media: MediaStore
    signer: Signer
    videos: VideoCache
    timing: TimingMode
    api_keys: frozenset[str] | None
    root_provider: str | None
    services: dict[str, ProviderService] = field(default_factory=dict)

    _signed: dict[tuple[str, str, str, int], str] = field(default_factory=dict)

    def result_url(self, base_url: str, provider: str, task_id: str, expires: int) -> str:
        """A signed, expiring link to a task's video, in the shape of an OSS link.

        Clients poll a finished task repeatedly; signing once per link keeps an
        HMAC off that path. The signature is URL-safe base64, so no quoting.
        """
        key = (base_url, provider, task_id, expires)
        url = self._signed.get(key)
        if url is None:
            if len(self._signed) > 65536:
                self._signed.clear()
            path = f"/_storage/results/{provider}/{task_id}.mp4"
            signature = self.signer.sign(path, str(expires))
            url = (
                f"{base_url.rstrip('/')}{path}?Expires={expires}"
                f"&OSSAccessKeyId={self.signer.access_key_id}&Signature={signature}"
            )
            self._signed[key] = url
        return url

    def reset(self) -> None:
        self._signed.clear()
        self.store.clear()
        self.journal.clear()
        self.media.clear()


class MockApp(Starlette):
    """Starlette, with provider operations dispatched by dict and regex before its router.

    Starlette tries routes one regex at a time; the mock has some thirty, and
    the hot create and poll paths would sit behind the admin and storage ones.
    A static path is one dict lookup here, a ``{task_id}`` path one regex per
    provider. Everything else (admin, storage, catch-alls in each provider's
    envelope) still goes through Starlette's router.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._static: dict[str, Endpoint] = {}
        self._dynamic: list[tuple[re.Pattern[str], Endpoint]] = []

    def add_operation(self, pattern: str, endpoint: Endpoint) -> None:
        if "{" not in pattern:
            self._static.setdefault(pattern, endpoint)
            return
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
        self._dynamic.append((re.compile(regex + r"\Z"), endpoint))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            endpoint = self._static.get(path)
            params: dict[str, str] = {}
            if endpoint is None:
                for regex, candidate in self._dynamic:
                    match = regex.match(path)
                    if match is not None:
                        endpoint, params = candidate, match.groupdict()
                        break
            if endpoint is not None:
                scope["app"] = self
                scope["path_params"] = params
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    specs: SpecSet | None = None,
    *,
    timing: TimingMode = "fast",
    speed: float = 1.0,
    clock: Clock | None = None,
    api_keys: Iterable[str] | None = None,
    root_provider: str | None = None,
    store: Store | None = None,
    journal_size: int = 1000,
    video_cache_dir: Path | None = None,
    secret: bytes | None = None,
) -> Starlette:
    """The mock upstream for ``specs`` (the built-in specs when None).

    ``api_keys`` None accepts any non-empty key; ``root_provider`` also serves
    that provider's paths at the root, so a client needs only a host change.
    """
    specs = specs if specs is not None else load_specs()
    if timing not in TIMING_MODES:
        raise ValueError(f"timing must be one of {', '.join(TIMING_MODES)}, got {timing!r}")
    if root_provider is not None:
        specs[root_provider]  # raises a clear KeyError for an unknown provider
    keys = frozenset(k for k in api_keys if k) if api_keys is not None else None
    state = MockState(
        specs=specs,
        clock=clock or Clock(speed),
        store=store or MemoryStore(),
        journal=Journal(journal_size),
        media=MediaStore(),
        signer=Signer(secret),
        videos=VideoCache(video_cache_dir),
        timing=timing,
        api_keys=keys or None,
        root_provider=root_provider,
    )
    routes: list[BaseRoute] = [
        *admin.routes(state),
        Route(
            "/_storage/results/{provider}/{task_id}.mp4", _download(state), methods=["GET", "HEAD"]
        ),
        Route("/_storage/oss", _upload(state), methods=["POST"]),
    ]
    prefixes = [(f"/{spec.provider}", spec.provider) for spec in specs]
    if root_provider is not None:
        prefixes.append(("", root_provider))
    for spec in specs:
        state.services[spec.provider] = ProviderService(spec, state)
    for prefix, provider in prefixes:
        routes.extend(state.services[provider].routes(prefix))
    app = MockApp(
        routes=routes,
        exception_handlers={404: _plain_not_found, 405: _plain_not_found},
    )
    for prefix, provider in prefixes:
        for pattern, endpoint in state.services[provider].operation_routes(prefix):
            app.add_operation(pattern, endpoint)
    app.state.paddock = state
    return app


async def _plain_not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return json_response(status, {"error": f"no route for {request.method} {request.url.path}"})


def _oss_error(status: int, code: str, message: str) -> Response:
    # OSS answers in XML; clients only read the status, but a person reads the body.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


def _download(state: MockState) -> Any:
    async def download(request: Request) -> Response:
        provider = request.path_params["provider"]
        task_id = request.path_params["task_id"]
        path = request.url.path
        expires = request.query_params.get("Expires", "")
        signature = request.query_params.get("Signature", "")
        spec = state.specs.specs.get(provider)
        if (
            spec is None
            or not expires.isdigit()
            or not state.signer.verify(signature, path, expires)
        ):
            return _oss_error(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
            )
        if spec.refuses_authorization and "authorization" in request.headers:
            return _oss_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided "
                "(an Authorization header was sent with a signed URL).",
            )
        now = state.clock.now()
        if now > int(expires):
            return _oss_error(403, "AccessDenied", "Request has expired.")
        task = state.store.get(task_id, provider=provider)
        # The signed link, not the task id's retention, decides how long the file
        # can be fetched: a link handed out near the end of the task's 24 h
        # stays good for its own 24 h, as object storage would serve it.
        if task is None or state_at(task, now, math.inf) != "SUCCEEDED":
            return _oss_error(404, "NoSuchKey", "The specified key does not exist.")
        shape = task.output
        data = await state.videos.aget(shape.width, shape.height, shape.duration, shape.fps)
        return _ranged(request, data, "video/mp4")

    return download


def _byte_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """(start, end) for a satisfiable single range; None to ignore the header; False for 416."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    if not (first.isdigit() or (not first and last.isdigit())) or (last and not last.isdigit()):
        return None  # unparseable: ignored, as RFC 9110 says
    if not first:
        return (max(size - int(last), 0), size - 1) if size and int(last) else False
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    return (start, end) if start < size else False


def _ranged(request: Request, data: bytes, content_type: str) -> Response:
    """Serve bytes with single-range support, so an interrupted download can resume."""
    headers = {"Accept-Ranges": "bytes"}
    size = len(data)
    wanted = _byte_range(request.headers.get("range", ""), size)
    if wanted is False:
        return Response(b"", 416, headers={"Content-Range": f"bytes */{size}"})
    if isinstance(wanted, tuple):
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        body = b"" if request.method == "HEAD" else data[start : end + 1]
        return Response(body, 206, headers=headers, media_type=content_type)
    headers["Content-Length"] = str(size)
    return Response(
        b"" if request.method == "HEAD" else data, 200, headers=headers, media_type=content_type
    )


def _policy_terms(doc: dict[str, Any]) -> tuple[float, str | None, int]:
    """(expiration, key prefix, size limit) from a policy document we issued."""
    expiration = doc.get("expiration")
    prefix: str | None = None
    limit = 0
    conditions = doc.get("conditions")
    for condition in conditions if isinstance(conditions, list) else ():
        if not isinstance(condition, list) or len(condition) != 3:
            continue
        if condition[:2] == ["starts-with", "$key"]:
            prefix = str(condition[2])
        elif condition[0] == "content-length-range" and isinstance(condition[2], int):
            limit = condition[2]
    return (float(expiration) if isinstance(expiration, (int, float)) else 0.0), prefix, limit


def _upload(state: MockState) -> Any:
    async def upload(request: Request) -> Response:
        try:
            form = await request.form(max_part_size=4 * 1024 * 1024)
        except Exception as exc:  # malformed multipart of any kind
            return _oss_error(400, "InvalidArgument", f"Could not read the multipart form: {exc}")
        try:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            policy = fields.get("policy", "")
            key = fields.get("key", "")
            upload_file = form.get("file")
            if not state.signer.verify(fields.get("Signature", ""), "policy", policy):
                return _oss_error(
                    403, "SignatureDoesNotMatch", "The policy signature does not match."
                )
            doc = state.media.read_policy(policy)
            if doc is None:
                return _oss_error(400, "InvalidPolicyDocument", "The policy is not valid.")
            expiration, prefix, limit = _policy_terms(doc)
            if state.clock.now() > expiration:
                return _oss_error(
                    403, "AccessDenied", "Invalid according to Policy: Policy expired."
                )
            if not key or prefix is None or not key.startswith(str(prefix) + "/") or ".." in key:
                return _oss_error(
                    403,
                    "AccessDenied",
                    "Invalid according to Policy: the key is outside the upload directory.",
                )
            if upload_file is None or isinstance(upload_file, str):
                return _oss_error(400, "InvalidArgument", "The form has no file field.")
            data = await upload_file.read()
            if len(data) > int(limit):
                return _oss_error(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
                )
            if f"uploads/{key}" in state.media and fields.get("x-oss-forbid-overwrite") == "true":
                return _oss_error(
                    409, "FileAlreadyExists", "The object you specified already exists."
                )
            content_type = (
                fields.get("x-oss-content-type")
                or upload_file.content_type
                or "application/octet-stream"
            )
            state.media.put(f"uploads/{key}", Blob(data, content_type, None))
            state.journal.record(
                at=state.clock.now(),
                method="POST",
                path=request.url.path,
                provider=None,
                operation="upload",
                status=200,
                headers=request.scope["headers"],
                body=b"",
                elapsed_ms=0.0,
                marks={"key": key, "bytes": len(data)},
            )
            return Response(b"", 200)
        finally:
            await form.close()

    return upload
