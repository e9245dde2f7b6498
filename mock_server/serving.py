"""Running the mock as a server: one process or several workers, and the tuning that goes with it.

``paddock serve`` turns its flags into a ``ServeConfig`` and calls ``serve``.
With ``--workers N`` uvicorn starts N processes that each build the app from
the same config (handed over in an environment variable, since uvicorn
imports worker apps by name), so a shared ``--store`` is what makes them one
mock. Everything tuned for speed rather than meaning lives here: GC freezing,
the event loop, the connection guard.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from contracts.lifecycle import TimingMode
from contracts.redaction import RedactingFilter, RedactionPolicy
from contracts.spec import load_specs
from mock_server.admin import AdminAccess
from mock_server.app import Options, create_app
from mock_server.clock import Clock
from mock_server.connection import raise_fd_limit
from mock_server.fetch import MediaFetcher
from mock_server.store import Limits, MemoryStore, Store
from mock_server.videos import DEFAULT_MAX_DISK_BYTES, DEFAULT_MAX_MEMORY_BYTES, VideoCache

__all__ = ["ENV", "ServeConfig", "app_from_environment", "build_app", "serve"]

ENV = "PADDOCK_SERVE_CONFIG"
# A create allocates a few hundred objects and keeps a few dozen (its task), so with
# the defaults (700, 10, 10) the young generations were collected every couple of
# requests: fewer, larger collections cost a create about a tenth less (measured with
# wrk). Task records hold no cycles, so they are freed by reference counting whatever
# the thresholds. (Freezing what lives is done once, after start-up: frozen objects in
# a cycle would never be collected, and in-flight requests can hold cycles.)
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Once per worker, after the app is built: its start-up objects frozen, thresholds set."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class ServeConfig:
    """Everything ``paddock serve`` was asked for, as plain JSON-able values."""

    host: str = "127.0.0.1"
    port: int = 8000
    specs: str | None = None
    timing: TimingMode = "fast"
    speed: float = 1.0
    api_keys: list[str] | None = None
    root_provider: str | None = None
    store: str | None = None
    workers: int = 1
    log_level: str = "warning"
    limits: dict[str, Any] = field(default_factory=dict)
    body_timeout: float = 30.0
    admin_body_bytes: int = 64 * 1024
    max_file_bytes: int = 64 * 1024 * 1024
    admin_mode: str = "open"
    admin_token: str | None = None
    admin_hosts: list[str] | None = None
    video_cache: str | None = None
    video_cache_bytes: int = DEFAULT_MAX_DISK_BYTES
    video_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES
    renders: int | None = None
    head_timeout: float = 10.0
    keep_alive: float = 5.0
    max_head_bytes: int = 64 * 1024
    max_connections: int = 4096
    fetch_media: bool = False
    fetch_allow: list[str] = field(default_factory=list)
    fetch_max_bytes: int = 16 * 1024 * 1024
    fetch_timeout: float = 10.0

    def __repr__(self) -> str:  # keys and the admin token never reach a log line
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["api_keys"] = None if self.api_keys is None else f"<{len(self.api_keys)} keys>"
        shown["admin_token"] = None if self.admin_token is None else "<set>"
        return f"ServeConfig({shown})"


def make_store(config: ServeConfig) -> Store:
    limits = Limits(**config.limits)
    clock = Clock(config.speed)
    if config.store is None:
        return MemoryStore(limits, clock=clock)
    from mock_server.redis_store import RedisStore

    return RedisStore(config.store, limits, clock=clock)


def build_app(config: ServeConfig) -> Starlette:
    """The app one worker serves, from the config every worker shares."""
    specs = load_specs(Path(config.specs) if config.specs else None)
    access = AdminAccess(
        mode=config.admin_mode,  # type: ignore[arg-type]
        token=config.admin_token,
        hosts=frozenset(config.admin_hosts) if config.admin_hosts is not None else None,
    )
    options = Options(
        body_timeout=config.body_timeout,
        admin_body_bytes=config.admin_body_bytes,
        max_file_bytes=config.max_file_bytes,
        admin=access,
        head_timeout=config.head_timeout,
        max_head_bytes=config.max_head_bytes,
        max_connections=config.max_connections,
    )
    app = create_app(
        specs,
        timing=config.timing,
        api_keys=config.api_keys,
        root_provider=config.root_provider,
        store=make_store(config),
        options=options,
        videos=VideoCache(
            Path(config.video_cache) if config.video_cache else None,
            max_memory_bytes=config.video_memory_bytes,
            max_disk_bytes=config.video_cache_bytes,
            max_renders=config.renders,
        ),
        fetcher=MediaFetcher(
            config.fetch_allow, max_bytes=config.fetch_max_bytes, timeout=config.fetch_timeout
        )
        if config.fetch_media
        else None,
        lifespan=_lifespan,
    )
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Connect the store before the first request; close it at shutdown."""
    state = app.state.paddock
    await state.start()
    tune_gc()
    try:
        yield
    finally:
        await state.store.close()


def app_from_environment() -> Starlette:
    """uvicorn's factory for each worker: the config ``serve`` left in the environment."""
    raw = os.environ.get(ENV)
    if raw is None:
        raise RuntimeError(f"{ENV} is not set; start workers with 'paddock serve --workers N'")
    config = ServeConfig(**json.loads(raw))
    _redact_logs(config)
    return build_app(config)


def _redact_logs(config: ServeConfig) -> None:
    """Every log line the server writes passes the redaction policy, with the keys it knows."""
    known = [*(config.api_keys or ()), *([config.admin_token] if config.admin_token else [])]
    guard = RedactingFilter(RedactionPolicy().with_secrets(*known))
    ours = logging.getLogger("paddock")
    if not ours.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(levelname)s:  %(name)s: %(message)s"))
        ours.addHandler(stream)
        ours.propagate = False
    ours.setLevel(config.log_level.upper())
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "paddock"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(guard)


def serve(config: ServeConfig, sock: socket.socket) -> None:
    """Serve on ``sock`` (already bound, so the port is known and errors were one line)."""
    import uvicorn

    common: dict[str, Any] = {
        "log_level": config.log_level,
        "access_log": False,
        "lifespan": "on",
        "proxy_headers": False,
        "timeout_keep_alive": config.keep_alive,
        # uvicorn's own HTTP, screened for head size and time, framing and connection count.
        "http": "mock_server.connection:GuardedHttpProtocol",
        "ws": "none",
        "loop": "uvloop",
    }
    raise_fd_limit()
    if config.workers <= 1:
        app = build_app(config)
        server = uvicorn.Server(uvicorn.Config(app, **common))
        _redact_logs(config)
        server.run(sockets=[sock])
        return
    host, port = sock.getsockname()[:2]
    sock.close()  # uvicorn binds again for its workers; the port was free a moment ago
    os.environ[ENV] = json.dumps(asdict(config))
    uvicorn.run(
        "mock_server.serving:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=config.workers,
        **common,
    )
