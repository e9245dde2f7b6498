"""The request journal: what each request was and how the mock answered, for the admin API.

An entry is written once, redacted and trimmed, as compact JSON bytes: the
store bounds the journal by those bytes, and a shared store hands the same
bytes to every worker. Secrets never reach an entry (the redaction happens
before anything is kept), and no single request can make an entry large:
header values, the header count and the body are each capped, with what was
left out said by its size.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from contracts.cache import BoundedCache
from contracts.redaction import RedactionPolicy
from contracts.task import TaskRequest
from mock_server.store import StoreUnavailable

if TYPE_CHECKING:
    from mock_server.store import Store

__all__ = ["Journal", "summarize_body"]

_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*,[A-Za-z0-9+/=%_.-]{64,}")
# Headers, bodies and messages go through the project's one redaction policy
# (contracts.redaction), with the journal's own marker.
_POLICY = RedactionPolicy(marker="<redacted>")

# Which process answered: with several workers or hosts, the journal says which.
WORKER = f"{socket.gethostname()}:{os.getpid()}"
BODY_KEEP = 4 * 1024
HEADER_VALUE_KEEP = 1024
HEADERS_KEEP = 64


def _shown_headers(raw: Iterable[tuple[bytes, bytes]], policy: RedactionPolicy) -> dict[str, str]:
    shown: dict[str, str] = {}
    count = 0
    for name, value in policy.raw_headers(raw):
        count += 1
        if count > HEADERS_KEEP:
            continue
        text = value[:HEADER_VALUE_KEEP].decode("latin-1")
        if len(value) > HEADER_VALUE_KEEP:
            text += f"…<{len(value) - HEADER_VALUE_KEEP} more bytes>"
        key = name[:HEADER_VALUE_KEEP].decode("latin-1").lower()
        shown[key] = f"{shown[key]}, {text}" if key in shown else text
    if count > HEADERS_KEEP:
        shown["…"] = f"<{count - HEADERS_KEEP} more headers>"
    return shown


def summarize_body(body: bytes) -> str:
    """The body as text with data: URIs elided and the size capped."""
    text = body[: BODY_KEEP * 4].decode("utf-8", "replace")
    text = _DATA_URI.sub(
        lambda m: f"data:{m.group(1) or ''};<{len(m.group(0))} chars elided>", text
    )
    if len(text) > BODY_KEEP:
        text = text[:BODY_KEEP] + "…"
    if len(body) > BODY_KEEP * 4 or text.endswith("…"):
        text += f"<{len(body)} bytes in all>"
    return text


def _expand(marks: Mapping[str, Any]) -> dict[str, Any]:
    """Marks as a person reads them; a validated request becomes what was learnt about it."""
    out = {k: v for k, v in marks.items() if k != "request"}
    request = marks.get("request")
    if isinstance(request, TaskRequest):
        if request.media:
            out["media"] = [
                {"type": m.type, "origin": m.origin}
                | ({"info": m.info.summary()} if m.info else {"verified": False})
                for m in request.media
            ]
        if request.ignored:
            out["ignored"] = list(request.ignored[:HEADERS_KEEP])
        if request.prompt_truncated:
            out["prompt_truncated"] = True
    return out


class Journal:
    """Writes entries into a store and reads them back as JSON-able dicts.

    ``policy`` redacts what is written; give it the server's keys
    (``RedactionPolicy.with_secrets``) to hide them wherever they appear.
    """

    def __init__(self, store: Store, policy: RedactionPolicy | None = None) -> None:
        self.store = store
        self._policy = policy or _POLICY
        # A client sends the same header set request after request: redact and cap it once.
        self._headers: BoundedCache[tuple[tuple[bytes, bytes], ...], dict[str, str]] = BoundedCache(
            1024
        )

    async def record(
        self,
        *,
        at: float,
        method: str,
        path: str,
        provider: str | None,
        operation: str | None,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        elapsed_ms: float,
        marks: Mapping[str, Any] | None = None,
        task_id: str | None = None,
    ) -> None:
        entry = {
            "at": at,
            "method": method[:32],
            "path": path[:HEADER_VALUE_KEEP],
            "provider": provider,
            "operation": operation,
            "status": status,
            "headers": self._shown(headers),
            "body": self._policy.text(summarize_body(body)) if body else "",
            "elapsed_ms": round(elapsed_ms, 3),
            "marks": self._marks(marks) if marks else {},
            "task_id": task_id,
            "worker": WORKER,
        }
        # The journal is a record, not the service: an outage must not fail requests.
        with contextlib.suppress(StoreUnavailable):
            await self.store.journal_append(orjson.dumps(entry, default=str))

    def _shown(self, headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        key = tuple(headers)
        shown = self._headers.get(key) if len(key) <= HEADERS_KEEP else None
        if shown is None:
            shown = _shown_headers(key, self._policy)
            if len(key) <= HEADERS_KEEP and sum(len(n) + len(v) for n, v in key) < 8192:
                self._headers.put(key, shown)
        return shown

    def _marks(self, marks: Mapping[str, Any]) -> dict[str, Any]:
        # A violation's message may quote what the client sent (a media URL).
        expanded = _expand(marks)
        return {k: self._policy.text(v) if isinstance(v, str) else v for k, v in expanded.items()}

    async def entries(
        self, limit: int | None = None, provider: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, at most ``limit`` (the whole journal when None)."""
        if limit is not None and limit <= 0:
            return []
        wanted = limit if limit is not None else 1 << 62
        # A provider filter reads further back; the journal is bounded in bytes anyway.
        raw = await self.store.journal_read(wanted if provider is None else 1 << 62)
        out: list[dict[str, Any]] = []
        for seq, data in raw:
            entry: dict[str, Any] = orjson.loads(data)
            if provider is not None and entry.get("provider") != provider:
                continue
            out.append({"seq": seq, **entry})
            if len(out) >= wanted:
                break
        return out
