"""A bounded journal of the newest requests, for the admin API and for debugging clients.

Keys are redacted when an entry is written, not when it is read, so the
journal never holds a secret. Entries are cheap tuples on the hot path and
become dicts only when someone asks for them.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from contracts.redaction import RedactionPolicy
from contracts.task import TaskRequest

__all__ = ["Journal", "summarize_body"]

_BODY_KEEP = 16 * 1024
_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*,[A-Za-z0-9+/=%_.-]{64,}")
# Headers, bodies and messages go through the project's one redaction policy
# (contracts.redaction), with the journal's own marker.
_POLICY = RedactionPolicy(marker="<redacted>")


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
            out["ignored"] = list(request.ignored)
        if request.prompt_truncated:
            out["prompt_truncated"] = True
    return out


def _header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


def summarize_body(body: bytes) -> str:
    """The body as text with data: URIs elided and the size capped."""
    text = body[:_BODY_KEEP].decode("utf-8", "replace")
    text = _DATA_URI.sub(
        lambda m: f"data:{m.group(1) or ''};<{len(m.group(0))} chars elided>", text
    )
    if len(body) > _BODY_KEEP:
        text += f"…<{len(body) - _BODY_KEEP} more bytes>"
    return text


class Journal:
    """The newest ``size`` requests, oldest dropped first.

    ``policy`` redacts what is written; give it the server's keys
    (``RedactionPolicy.with_secrets``) to hide them wherever they appear.
    """

    def __init__(self, size: int = 1000, policy: RedactionPolicy | None = None) -> None:
        self._policy = policy or _POLICY
        self._entries: deque[tuple[Any, ...]] = deque(maxlen=size)
        self._ids = itertools.count(1)

    def record(
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
        self._entries.append(
            (
                next(self._ids),
                at,
                method,
                path,
                provider,
                operation,
                status,
                self._policy.raw_headers(headers),
                self._policy.body(body[: _BODY_KEEP + 1]) if body else b"",
                elapsed_ms,
                self._marks(marks) if marks else None,
                task_id,
            )
        )

    def _marks(self, marks: Mapping[str, Any]) -> dict[str, Any]:
        # A violation's message may quote what the client sent (a media URL).
        return {k: self._policy.text(v) if isinstance(v, str) else v for k, v in marks.items()}

    def entries(
        self, limit: int | None = None, provider: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, as JSON-able dicts."""
        out: list[dict[str, Any]] = []
        if limit is not None and limit <= 0:
            return out
        for entry in reversed(self._entries):
            (seq, at, method, path, prov, op, status, headers, body, elapsed, marks, task_id) = (
                entry
            )
            if provider is not None and prov != provider:
                continue
            out.append(
                {
                    "seq": seq,
                    "at": at,
                    "method": method,
                    "path": path,
                    "provider": prov,
                    "operation": op,
                    "status": status,
                    "headers": _header_dict(headers),
                    "body": summarize_body(body) if body else "",
                    "elapsed_ms": round(elapsed, 3),
                    "marks": _expand(marks) if marks else {},
                    "task_id": task_id,
                }
            )
            if limit is not None and len(out) >= limit:
                break
        return out

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def dumps(self, limit: int | None = None) -> str:
        return json.dumps(self.entries(limit))
