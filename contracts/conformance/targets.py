"""Where conformance checks send their requests, and the record of what was said.

A target is one provider's host root: the in-process mock (a virtual clock,
no sockets, no waiting), any URL (a served mock, a staging proxy) or the
live provider. Checks talk to every target through :class:`Target.send` and
:class:`Target.fetch`, so each exchange is recorded once, redacted once, and
can be shown to a person as a ``curl`` line that reproduces it.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from contracts.lifecycle import TimingMode
from contracts.redaction import RedactionPolicy
from contracts.spec import Spec

__all__ = [
    "Exchange",
    "HttpTarget",
    "MockTarget",
    "Redactor",
    "Reply",
    "SyncASGITransport",
    "Target",
    "TargetError",
]


class TargetError(Exception):
    """The run cannot be made: the target is unreachable or not what it claims."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    elapsed: float

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


@dataclass(slots=True)
class Exchange:
    """One request and its answer, as a check saw it (secrets still in; redact to show)."""

    check: str
    model: str | None
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    started: float
    reply: Reply | None = None
    error: str | None = None
    note: Mapping[str, Any] | None = None  # what the check meant by it (drift reads this)


@dataclass(frozen=True)
class Redactor:
    """A run's view of the project's redaction policy (:mod:`contracts.redaction`).

    It knows the run's keys (hidden wherever they occur), the spec's link
    signature parameters (always hidden) and its expiry parameter (kept: drift
    reads it), and adds the two forms a run writes: ``curl`` lines and records.
    """

    secrets: tuple[str, ...]
    signature_params: frozenset[str]
    key_env: str
    keep_params: frozenset[str] = frozenset()
    auth_header: str = "Authorization"
    policy: RedactionPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        policy = RedactionPolicy(
            secrets=self.secrets,
            signature_params=self.signature_params,
            keep_params=self.keep_params,
        )
        object.__setattr__(self, "policy", policy)

    def text(self, value: str) -> str:
        return self.policy.text(value)

    def url(self, url: str) -> str:
        return self.policy.url(url)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return self.policy.headers(headers)

    def curl(self, exchange: Exchange) -> str:
        """The exact request as a shell line; the key comes from the environment."""
        parts = ["curl", "-sS", "-X", exchange.method, shlex.quote(self.url(exchange.url))]
        for name, value in exchange.headers.items():
            if name.lower() == self.auth_header.lower() and value:
                scheme, _, rest = value.partition(" ")
                shown = f"{scheme} ${self.key_env}" if rest else f"${self.key_env}"
                parts += ["-H", f'"{name}: {shown}"']
            else:
                parts += ["-H", shlex.quote(f"{name}: {self.policy.header(name, value)}")]
        if exchange.body:
            text = self.policy.body(exchange.body).decode("utf-8", "replace")
            if len(text) > 4000:
                text = text[:4000] + "…"
            parts += ["--data-raw", shlex.quote(text)]
        return " ".join(parts)

    def record(self, exchange: Exchange) -> dict[str, Any]:
        """The JSON Lines form of an exchange (``--record``); the drift reports read these.

        Bodies are kept as JSON where they parse (``body_form`` says which form
        was stored, so a text body that looks like an object is not mistaken for
        one), and an MP4 answer is stored as what PyAV reads from it, not bytes.
        """
        reply = exchange.reply
        body, form = _body_json(exchange.body, self)
        doc: dict[str, Any] = {
            "check": exchange.check,
            "model": exchange.model,
            "time": round(exchange.started, 3),
            "request": {
                "method": exchange.method,
                "url": self.url(exchange.url),
                "headers": self.headers(exchange.headers),
                "body": body,
                "body_form": form,
            },
        }
        if exchange.note:
            doc["note"] = self.policy.json(json.loads(json.dumps(exchange.note)))
        if reply is not None:
            body, form = _body_json(reply.body, self)
            doc["response"] = {
                "status": reply.status,
                "headers": self.headers(dict(reply.headers)),
                "body": body,
                "body_form": form,
                "elapsed_ms": round(reply.elapsed * 1000, 2),
            }
            if form == "binary" and reply.headers.get("content-type", "").startswith("video/"):
                doc["response"]["video"] = _video_facts(reply.body)
        if exchange.error is not None:
            doc["error"] = self.text(exchange.error)
        return doc


def _jsonl(doc: dict[str, Any]) -> str:
    try:
        return orjson.dumps(doc).decode() + "\n"
    except TypeError:  # integers past 64 bits (fuzzed bodies): the stdlib writes them
        return json.dumps(doc, ensure_ascii=False) + "\n"


def _body_json(body: bytes | None, redactor: Redactor) -> tuple[Any, str]:
    """A body as stored, and its form: ``json``, ``text``, ``binary`` or ``none``."""
    if not body:
        return None, "none"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"binary_bytes": len(body)}, "binary"
    if len(text) > 20000:
        return {"text": redactor.text(text[:2000]) + "…", "bytes": len(body)}, "text"
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": redactor.text(text)}, "text"
    return redactor.policy.json(value), "json"


def _video_facts(data: bytes) -> dict[str, Any]:
    """What a person would check in a downloaded video: duration, frame size, rate, codec."""
    import io

    import av

    from contracts.media import MediaError, probe

    try:
        info = probe(data)
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate
            codec = stream.codec_context.name
    except (MediaError, av.error.FFmpegError, IndexError) as exc:
        return {"bytes": len(data), "unreadable": str(exc)[:200]}
    return {
        "bytes": len(data),
        "duration": round(info.duration, 3) if info.duration is not None else None,
        "width": info.width,
        "height": info.height,
        "fps": round(float(rate), 3) if rate else None,
        "codec": codec,
    }


@dataclass
class Target:
    """One provider at one host root; subclasses say how bytes move and how time passes."""

    spec: Spec
    base_url: str
    key: str
    second_key: str | None
    kind: str  # "mock", "url" or "live"
    record_to: IO[str] | None = None
    check: str = ""
    model: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    pace: float = 0.0  # least seconds between requests (live: the provider's rate)
    _last: float = 0.0
    _http: httpx.Client | None = field(default=None, repr=False)  # how bytes move (subclasses)

    @property
    def virtual(self) -> bool:
        """Time moves only when a check says so (the in-process mock)."""
        return False

    @property
    def redactor(self) -> Redactor:
        secrets = tuple(k for k in (self.key, self.second_key) if k)
        # The expiry is public (drift reads it); the rest of a link's signature is not.
        expiry = self.spec.expiry_param
        keep = frozenset({expiry} if expiry else ())
        signed = frozenset(self.spec.signature_params) - keep
        return Redactor(secrets, signed, self.spec.api_key_env, keep, self.spec.auth_header)

    def auth(self, key: str | None) -> dict[str, str]:
        if key is None:
            return {}
        scheme = self.spec.auth_scheme
        return {self.spec.auth_header: f"{scheme} {key}" if scheme else key}

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        key: str | None = "",
        note: Mapping[str, Any] | None = None,
    ) -> Reply:
        """A request under the provider's root; ``key=""`` means this target's own key.

        ``note`` says what the check meant by the request (the case, what it
        expects); it is recorded with the exchange for the drift analysis.
        """
        all_headers = dict(self.auth(self.key if key == "" else key))
        all_headers.update(headers or {})
        return self._exchange(method, self.base_url + path, all_headers, body, note)

    def fetch(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        note: Mapping[str, Any] | None = None,
    ) -> Reply:
        """An absolute URL (a result link), without the provider's key unless given."""
        return self._exchange("GET", url, dict(headers or {}), None, note)

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        note: Mapping[str, Any] | None = None,
    ) -> Reply:
        if self.pace:
            gap = self._last + self.pace - time.monotonic()
            if gap > 0:
                time.sleep(gap)
            self._last = time.monotonic()
        exchange = Exchange(
            self.check, self.model, method, url, headers, body, time.time(), note=note
        )
        self.exchanges.append(exchange)
        try:
            exchange.reply = self._transmit(method, url, headers, body)
        except httpx.TransportError as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
            raise TargetError(
                self.redactor.text(f"{method} {url} failed: {exchange.error}")
            ) from None
        finally:
            if self.record_to is not None:
                self.record_to.write(_jsonl(self.redactor.record(exchange)))
        return exchange.reply

    @property
    def http(self) -> httpx.Client:
        assert self._http is not None, "a target subclass sets its HTTP client"
        return self._http

    def _transmit(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Reply:
        started = time.perf_counter()
        response = self.http.request(method, url, headers=headers, content=body)
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
            time.perf_counter() - started,
        )

    def wait(self, seconds: float) -> None:
        """Let time pass for the tasks (real sleep, or a virtual clock's jump)."""
        time.sleep(seconds)

    def now(self) -> float:
        """The target's idea of the time, in epoch seconds."""
        return time.time()

    def host_media(self, data: bytes, mime: str) -> str | None:
        """A URL the provider can fetch these bytes from, or None where there is none."""
        return None

    def timing_mode(self) -> str:
        """How this target times its tasks: ``real`` for a provider, a mock's own mode."""
        return "real"

    def accepts_any_key(self) -> bool:
        """Whether the target says it takes any key (a paddock mock without --api-key)."""
        return False

    def close(self) -> None:
        """Release connections and the app."""


class HttpTarget(Target):
    """Any server over real HTTP: a served mock, a staging proxy, the live provider."""

    def __init__(self, spec: Spec, base_url: str, key: str, second_key: str | None, kind: str):
        super().__init__(spec, base_url.rstrip("/"), key, second_key, kind)
        self._http = httpx.Client(timeout=60.0, follow_redirects=False)
        self._health_doc: dict[str, Any] | None = None

    def host_media(self, data: bytes, mime: str) -> str | None:
        if self.kind == "live":
            return None
        parts = urllib.parse.urlsplit(self.base_url)
        try:
            response = self.http.post(
                f"{parts.scheme}://{parts.netloc}/_paddock/media",
                content=data,
                headers={"content-type": mime},
            )
        except httpx.TransportError as exc:
            raise TargetError(f"cannot host media on {parts.netloc}: {exc}") from None
        if response.status_code not in (200, 201):
            return None  # not a paddock mock: media checks are skipped
        url = response.json().get("url")
        return url if isinstance(url, str) else None

    def _health(self) -> dict[str, Any]:
        """A paddock mock's own account of itself; empty for anything else (a live host)."""
        if self.kind == "live":
            return {}
        if self._health_doc is None:
            parts = urllib.parse.urlsplit(self.base_url)
            try:
                response = self.http.get(f"{parts.scheme}://{parts.netloc}/_paddock/health")
                doc = response.json() if response.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                doc = {}
            self._health_doc = doc if isinstance(doc, dict) else {}
        return self._health_doc

    def timing_mode(self) -> str:
        timing = self._health().get("timing")
        return timing if isinstance(timing, str) else "real"  # not a paddock mock

    def accepts_any_key(self) -> bool:
        return self._health().get("keys") == "any"

    def close(self) -> None:
        self.http.close()


class MockTarget(Target):
    """The mock in this process: virtual clock, in-memory transport, nothing waits."""

    PUBLIC = "http://127.0.0.1:8000"  # where `paddock serve` listens, for curl lines

    def __init__(
        self, spec: Spec, specs: Any, key: str, second_key: str, timing: TimingMode = "fast"
    ) -> None:
        from mock_server.app import create_app
        from mock_server.clock import Clock

        super().__init__(spec, f"{self.PUBLIC}/{spec.provider}", key, second_key, "mock")
        self.clock = Clock(speed=0)
        self.timing = timing
        self.app = create_app(specs, timing=timing, clock=self.clock, api_keys=[key, second_key])
        self._transport = SyncASGITransport(self.app)
        self._http = httpx.Client(transport=self._transport, follow_redirects=False)

    @property
    def virtual(self) -> bool:
        return True

    def wait(self, seconds: float) -> None:
        self.clock.advance(max(seconds, 0.0))

    def timing_mode(self) -> str:
        return self.timing

    def now(self) -> float:
        return self.clock.now()

    def host_media(self, data: bytes, mime: str) -> str | None:
        response = self.http.post(
            f"{self.PUBLIC}/_paddock/media", content=data, headers={"content-type": mime}
        )
        if response.status_code not in (200, 201):
            raise TargetError(f"the mock refused test media: {response.text[:200]}")
        url = response.json()["url"]
        return url if isinstance(url, str) else None

    def close(self) -> None:
        self.http.close()
        self._transport.close()


class SyncASGITransport(httpx.BaseTransport):
    """httpx's ASGI transport for blocking code: the app runs on a portal's event loop."""

    def __init__(self, app: Any) -> None:
        import anyio.from_thread

        self._inner = httpx.ASGITransport(app=app)
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self._portal.call(send)

    def close(self) -> None:
        self._portal_cm.__exit__(None, None, None)


def open_record(directory: Path | None, spec: Spec, name: str) -> IO[str] | None:
    """``DIR/<provider>-<name>.jsonl`` for ``--record``, or None."""
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    return (directory / f"{spec.provider}-{name}.jsonl").open("a", encoding="utf-8")
