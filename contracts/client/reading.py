"""Reading a provider's answers through its spec: tasks by the query templates, errors by envelope.

Nothing here knows a vendor: which JSON path holds the state, which envelope
carries the error code and which category a code belongs to all come from the
spec, so a provider that changes shape shows up as ``UnexpectedResponse``
(and in ``paddock drift``), not as a silent misreading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from contracts.bodies import path_parts
from contracts.errors import ProviderError, UnexpectedResponse, error_for_category
from contracts.spec import Spec, default_category
from contracts.task import TERMINAL_STATES

__all__ = ["Task", "TaskReader", "content_total", "dig", "provider_error", "retry_after"]

_MAX_REMEMBERED_WORDS = 256


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


class TaskReader:
    """Reads query and list answers into `Task`s for one spec."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._status_path = spec.query_response.states["PENDING"].path_of("state") or "?"
        # Which state's template reads an answer, remembered per wire status
        # word, so a poll parses one template rather than trying each in turn.
        self._state_for: dict[str | int, str] = {}

    def query(self, body: Any, *, model: str | None = None) -> Task:
        """A query answer read through the template of whichever state it is in."""
        if not isinstance(body, dict):
            raise UnexpectedResponse(
                f"{self.spec.provider} answered a query with {type(body).__name__}"
            )
        wire = dig(body, self._status_path)
        key = wire if isinstance(wire, (str, int)) else None
        states = self.spec.query_response.states
        first = self._state_for.get(key) if key is not None else None
        if first is not None:
            values = states[first].parse(body, strict=False)
            if values.get("state") == first and values.get("task.id"):
                return self.task(values, body, model)
        for state, template in states.items():
            values = template.parse(body, strict=False)
            if values.get("state") == state and values.get("task.id"):
                if key is not None and len(self._state_for) < _MAX_REMEMBERED_WORDS:
                    self._state_for[key] = state
                return self.task(values, body, model)
        raise UnexpectedResponse(
            f"{self.spec.provider} answered a query in a shape its spec does not describe "
            f"(status at {self._status_path}: {wire!r})"
        )

    def listing(self, body: Any) -> list[Task]:
        """The tasks of a list answer; items in a shape the spec does not describe are skipped."""
        if self.spec.list_item is None:
            return []
        found = None
        if self.spec.list_response is not None:
            found = dig(body, self.spec.list_response.path_of("items") or "")
        tasks = []
        for item in found if isinstance(found, list) else ():
            values = self.spec.list_item.parse(item, strict=False)
            if values.get("task.id") and values.get("state"):
                tasks.append(self.task(values, item, None))
        return tasks

    def task(self, values: Mapping[str, Any], body: Any, model: str | None) -> Task:
        """A `Task` from the canonical values a template read out of ``body``."""
        progress = values.get("progress")
        return Task(
            id=str(values["task.id"]),
            provider=self.spec.provider,
            state=str(values.get("state", "PENDING")),
            model=values.get("task.model") or model,
            progress=int(progress)
            if isinstance(progress, (int, float)) and not isinstance(progress, bool)
            else None,
            submitted_at=as_float(values.get("times.submitted")),
            scheduled_at=as_float(values.get("times.scheduled")) or None,
            ended_at=as_float(values.get("times.ended")) or None,
            result_url=values.get("result.url"),
            error_code=values.get("error.code"),
            error_message=values.get("error.message"),
            raw=MappingProxyType(body) if isinstance(body, dict) else MappingProxyType({}),
        )


def provider_error(
    spec: Spec, status: int, headers: Mapping[str, str], body: bytes, request: str
) -> ProviderError:
    """The typed error for a non-2xx answer, read through the spec's envelopes."""
    doc: Any = None
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    code = message = request_id = None
    if isinstance(doc, dict):
        for envelope in spec.envelopes.values():
            values = envelope.parse(doc, strict=False)
            if values.get("error.code") or values.get("error.message"):
                code = values.get("error.code")
                message = values.get("error.message")
                request_id = values.get("request_id")
                break
    known = spec.error(str(code)) if code and spec.has_error(str(code)) else None
    category = known.category if known else default_category(status)
    text = str(message) if message else (body[:200].decode("utf-8", "replace") or "no body")
    return error_for_category(category)(
        text,
        status=status,
        code=str(code) if code is not None else None,
        request_id=str(request_id) if request_id else None,
        raw=doc,
        request=request,
        retry_after=retry_after(headers),
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's pacing hint in seconds (``Retry-After-Ms`` or ``Retry-After``), if any."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(float(raw) * scale, 0.0)
            except ValueError:
                continue
    return None


def content_total(headers: Mapping[str, str], offset: int) -> int | None:
    """The whole file's size by ``Content-Range`` or ``Content-Length``, when the server said."""
    content_range = headers.get("content-range", "")
    if "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isdigit() else None
    length = headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None


def as_float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def dig(doc: Any, dotted: str) -> Any:
    """The value at a dotted JSON path, or None where the path leaves the document."""
    node = doc
    for part in path_parts(dotted) if dotted else ():
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
