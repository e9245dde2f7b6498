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

__all__ = ["Journal", "redact_headers", "summarize_body"]

_SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "cookie", "proxy-authorization"}
)
_BODY_KEEP = 16 * 1024
_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*,[A-Za-z0-9+/=%_.-]{64,}")


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header dict with credentials replaced: the scheme stays, the key never does."""
    out: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in _SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} <redacted>".strip()
        out[lower] = value
    return out


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
    """The newest ``size`` requests, oldest dropped first."""

    def __init__(self, size: int = 1000) -> None:
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
        headers: Iterable[tuple[str, str]],
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
                redact_headers(headers),
                body[: _BODY_KEEP + 1] if body else b"",
                elapsed_ms,
                dict(marks) if marks else None,
                task_id,
            )
        )

    def entries(
        self, limit: int | None = None, provider: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, as JSON-able dicts."""
        out: list[dict[str, Any]] = []
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
                    "headers": headers,
                    "body": summarize_body(body) if body else "",
                    "elapsed_ms": round(elapsed, 3),
                    "marks": marks or {},
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
