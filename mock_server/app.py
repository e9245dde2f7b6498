"""Build the mock upstream: every provider under its prefix, storage, and the admin API.

``create_app`` returns a plain Starlette application, so tests build their
own (with a frozen clock, a fixed key set) and serve it in-process or on a
socket, and ``paddock serve`` is a thin wrapper around the same call.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from contracts.cache import BoundedCache
from contracts.lifecycle import TIMING_MODES, TimingMode
from contracts.redaction import RedactionPolicy
from contracts.spec import SpecSet, load_specs
from contracts.validate import Violation
from mock_server import admin, objects
from mock_server.admin import AdminAccess
from mock_server.clock import Clock
from mock_server.connection import ConnectionGuard, attach_guard
from mock_server.fetch import MediaFetcher
from mock_server.journal import Journal
from mock_server.objects import oss_error
from mock_server.service import Endpoint, ProviderService, json_response
from mock_server.storage import Signer
from mock_server.store import Limits, MemoryStore, Store
from mock_server.videos import VideoCache

__all__ = ["MockApp", "MockState", "Options", "create_app"]

log = logging.getLogger("paddock.mock")


@dataclass(frozen=True)
class Options:
    """The server's own bounds and access rules, each a ``paddock serve`` flag.

    ``body_timeout`` lets go of a client that stops sending a body midway;
    ``admin_body_bytes`` bounds the admin API's JSON bodies and
    ``max_file_bytes`` a file put into the mock with ``POST /_paddock/media``.
    The last three are the connection guard's (``mock_server.connection``),
    which ``paddock serve`` puts in front of the app.
    """

    body_timeout: float = 30.0
    admin_body_bytes: int = 64 * 1024
    max_file_bytes: int = 64 * 1024 * 1024
    admin: AdminAccess = field(default_factory=AdminAccess)
    head_timeout: float = 10.0
    max_head_bytes: int = 64 * 1024
    max_connections: int = 4096


@dataclass
class MockState:
    """Everything the endpoints share; one per application (and per worker)."""

    specs: SpecSet
    store: Store
    journal: Journal
    videos: VideoCache
    timing: TimingMode
    api_keys: frozenset[str] | None
    root_provider: str | None
    options: Options
    fetcher: MediaFetcher | None = None
    signer: Signer = field(default_factory=Signer)
    services: dict[str, ProviderService] = field(default_factory=dict)
    _signed: BoundedCache[tuple[str, str, str, int], str] = field(
        default_factory=lambda: BoundedCache(4096)
    )
    _started: bool = False
    _starting: asyncio.Lock | None = None

    @property
    def clock(self) -> Clock:
        return self.store.clock

    async def start(self) -> None:
        """Connect the store and take its shared secret; once, before the first request."""
        if self._started:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._started:
                await self.store.start()
                self.signer = Signer(await self.store.secret())
                self._started = True

    def result_url(self, base_url: str, provider: str, task_id: str, expires: int) -> str:
        """A signed, expiring link to a task's video, in the shape of an OSS link.

        Clients poll a finished task repeatedly; signing once per link keeps an
        HMAC off that path. The signature is URL-safe base64, so no quoting. The
        cache holds the links of the few thousand tasks polled most recently: at
        65,536 it was the biggest thing a long-running mock grew by (20 MB).
        """
        key = (base_url, provider, task_id, expires)
        url = self._signed.get(key)
        if url is None:
            path = f"/_storage/results/{provider}/{task_id}.mp4"
            signature = self.signer.sign(path, str(expires))
            url = self._signed.put(
                key,
                f"{base_url.rstrip('/')}{path}?Expires={expires}"
                f"&OSSAccessKeyId={self.signer.access_key_id}&Signature={signature}",
            )
        return url

    async def reset(self) -> None:
        self._signed.clear()
        await self.store.reset()

    def malformed(
        self, method: bytes | None, path: str | None, status: int, message: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """What the connection guard answers a request it refuses, in the envelope of its path.

        A provider's path gets that provider's error for the kind of refusal;
        object storage its XML; anything else the mock's own JSON.
        """
        kind = _REFUSALS.get(status, "request_malformed")
        response: Response | None = None
        if path is not None and path.startswith("/_storage"):
            response = oss_error(status, _STORAGE_CODES.get(status, "InvalidRequest"), message)
        elif path is not None and not path.startswith(MockApp.RESERVED):
            service = self._service_for(path)
            if service is not None:
                response = service.violation(Violation(kind, None, message.rstrip(".")))
        if response is None:
            response = json_response(status, {"error": message})
        return response.status_code, response.raw_headers, bytes(response.body)

    def _service_for(self, path: str) -> ProviderService | None:
        name = path.split("/", 2)[1] if path.startswith("/") else ""
        if name in self.services:
            return self.services[name]
        return self.services.get(self.root_provider) if self.root_provider else None


class MockApp(Starlette):
    """Starlette for the mock's own routes; provider routes dispatched here, by dict and regex.

    This is the one documented replacement of Starlette's router, for the
    provider side only: a static operation path is one dict lookup, a
    ``{task_id}`` path one regex per provider, any other path under a
    provider's prefix (any method, even ``PROPFIND``) that provider's own "not
    found" in its envelope. Starlette's router keeps what is the mock's own
    (the admin API and object storage, under their reserved prefixes).
    """

    RESERVED = ("/_paddock", "/_storage")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._static: dict[str, dict[str, Endpoint]] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Endpoint]]] = []
        self._fallbacks: list[tuple[str, Endpoint]] = []
        self.paddock: MockState | None = None

    def add_operation(self, pattern: str, method: str, endpoint: Endpoint) -> None:
        if "{" not in pattern:
            self._static.setdefault(pattern, {}).setdefault(method, endpoint)
            return
        regex = re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + r"\Z")
        for known, methods in self._dynamic:
            if known.pattern == regex.pattern:
                methods.setdefault(method, endpoint)
                return
        self._dynamic.append((regex, {method: endpoint}))

    def add_fallback(self, prefix: str, endpoint: Endpoint) -> None:
        """Everything else under ``prefix`` ("" for the root provider) goes to ``endpoint``."""
        self._fallbacks.append((prefix, endpoint))
        self._fallbacks.sort(key=lambda item: len(item[0]), reverse=True)

    def _route(self, path: str, method: str) -> tuple[Endpoint | None, dict[str, str]]:
        methods = self._static.get(path)
        params: dict[str, str] = {}
        if methods is None:
            for regex, candidates in self._dynamic:
                match = regex.match(path)
                if match is not None:
                    methods, params = candidates, match.groupdict()
                    break
        if methods is not None:
            endpoint = methods.get(method)
            if endpoint is not None:
                return endpoint, params
        if path.startswith(self.RESERVED):
            return None, params
        for prefix, fallback in self._fallbacks:
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                return fallback, params
        return None, params

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.paddock
        if state is not None and not state._started:
            await state.start()
        if scope["type"] == "http":
            endpoint, params = self._route(scope["path"], scope["method"])
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
    limits: Limits | None = None,
    options: Options | None = None,
    fetcher: MediaFetcher | None = None,
    videos: VideoCache | None = None,
    video_cache_dir: Path | None = None,
    secret: bytes | None = None,
    lifespan: Any = None,
) -> Starlette:
    """The mock upstream for ``specs`` (the built-in specs when None).

    ``api_keys`` None accepts any non-empty key; ``root_provider`` also serves
    that provider's paths at the root, so a client needs only a host change.
    ``store`` defaults to a ``MemoryStore`` with ``limits`` and ``clock``.
    """
    specs = specs if specs is not None else load_specs()
    if timing not in TIMING_MODES:
        raise ValueError(f"timing must be one of {', '.join(TIMING_MODES)}, got {timing!r}")
    if root_provider is not None:
        specs[root_provider]  # raises a clear KeyError for an unknown provider
    keys = frozenset(k for k in api_keys if k) if api_keys is not None else None
    retention = {spec.provider: spec.task_retention + spec.result_retention for spec in specs}
    if store is None:
        store = MemoryStore(limits, clock=clock or Clock(speed), retention=retention, secret=secret)
    else:
        store.retention = retention
        if clock is not None:
            store.clock = clock
    options = options or Options()
    known = [*(keys or ()), *([options.admin.token] if options.admin.token else [])]
    policy = RedactionPolicy(marker="<redacted>").with_secrets(*known)
    state = MockState(
        specs=specs,
        store=store,
        journal=Journal(store, policy),
        videos=videos or VideoCache(video_cache_dir),
        timing=timing,
        api_keys=keys or None,
        root_provider=root_provider,
        options=options,
        fetcher=fetcher,
        signer=Signer(secret),
    )
    routes: list[BaseRoute] = [*admin.routes(state), *objects.routes(state)]
    prefixes = [(f"/{spec.provider}", spec.provider) for spec in specs]
    if root_provider is not None:
        prefixes.append(("", root_provider))
    for spec in specs:
        state.services[spec.provider] = ProviderService(spec, state)
    app = MockApp(
        routes=routes,
        exception_handlers={404: _plain_not_found, 405: _plain_not_found},
        lifespan=lifespan,
    )
    for prefix, provider in prefixes:
        service = state.services[provider]
        for pattern, method, endpoint in service.operation_routes(prefix):
            app.add_operation(pattern, method, endpoint)
        app.add_fallback(prefix, service.not_found)
    app.state.paddock = state
    app.paddock = state
    attach_guard(
        app,
        ConnectionGuard(
            head_timeout=options.head_timeout,
            max_head_bytes=options.max_head_bytes,
            max_connections=options.max_connections,
            answer=state.malformed,
        ),
    )
    return app


# Which violation a connection-level refusal is, by the status the guard chose.
_REFUSALS = {400: "request_malformed", 408: "body_incomplete", 431: "headers_too_large"}
_STORAGE_CODES = {400: "InvalidRequest", 408: "RequestTimeout", 431: "RequestHeaderTooLarge"}


async def _plain_not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return json_response(status, {"error": f"no route for {request.method} {request.url.path}"})
