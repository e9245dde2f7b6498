"""The canonical task: one model in the middle, provider wire formats at the edges.

Records are small and immutable so a store can keep many of them, share them
between worker processes as plain JSON, and replace them whole on the rare
write (a cancel, a one-shot fault firing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from contracts.media import MediaInfo

__all__ = [
    "TERMINAL_STATES",
    "MediaItem",
    "OutputShape",
    "Plan",
    "TaskRecord",
    "TaskRequest",
]

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One media input as the service saw it.

    ``origin`` says how much we know: ``data`` (a data: URI, decoded and
    probed), ``upload`` (a file sent through the upload flow, probed),
    ``hosted`` (a file put into the mock, probed) or ``remote`` (an http(s)
    URL accepted on syntax alone, ``info`` is None).
    """

    type: str
    url: str
    origin: str
    info: MediaInfo | None = None


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A validated create request in canonical form; ``parameters`` has defaults applied."""

    model: str
    prompt: str | None
    media: tuple[MediaItem, ...]
    parameters: Mapping[str, Any]
    explicit: frozenset[str]
    ignored: tuple[str, ...] = ()
    prompt_truncated: bool = False

    def first(self, media_type: str) -> MediaItem | None:
        return next((m for m in self.media if m.type == media_type), None)


@dataclass(frozen=True, slots=True)
class Plan:
    """A task's fate, decided once at creation so its state is a pure function of time.

    ``pending`` and ``running`` are seconds of virtual time; ``math.inf`` keeps
    a task in that state (the ``stuck`` scenario).
    """

    pending: float
    running: float
    outcome: str = "SUCCEEDED"
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class OutputShape:
    """What the result video will be: frame size, seconds, frame rate, and how usage reports it."""

    width: int
    height: int
    duration: int
    fps: int
    sr: int
    ratio: str


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A created task. ``owner`` is a digest of the API key, never the key itself."""

    id: str
    provider: str
    owner: str
    request: TaskRequest
    plan: Plan
    output: OutputShape
    created_at: float
    request_id: str
    upstream_id: str
    upstream_request_id: str
    canceled_at: float | None = None
    faults: tuple[str, ...] = field(default=())

    @property
    def model(self) -> str:
        return self.request.model

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON form (for a shared store, the admin API and reports).

        Written out field by field: ``dataclasses.asdict`` cost a shared store's
        create more than the rest of this method.
        """
        request, plan, output = self.request, self.plan, self.output
        return {
            "id": self.id,
            "provider": self.provider,
            "owner": self.owner,
            "request": {
                "model": request.model,
                "prompt": request.prompt,
                "media": [
                    {
                        "type": m.type,
                        "url": m.url,
                        "origin": m.origin,
                        "info": _info_json(m.info) if m.info is not None else None,
                    }
                    for m in request.media
                ],
                "parameters": dict(request.parameters),
                "explicit": sorted(request.explicit),
                "ignored": list(request.ignored),
                "prompt_truncated": request.prompt_truncated,
            },
            # JSON has no infinity: a stuck state's endless time is written as null.
            "plan": {
                "pending": None if math.isinf(plan.pending) else plan.pending,
                "running": None if math.isinf(plan.running) else plan.running,
                "outcome": plan.outcome,
                "error_code": plan.error_code,
                "error_message": plan.error_message,
            },
            "output": {
                "width": output.width,
                "height": output.height,
                "duration": output.duration,
                "fps": output.fps,
                "sr": output.sr,
                "ratio": output.ratio,
            },
            "created_at": self.created_at,
            "request_id": self.request_id,
            "upstream_id": self.upstream_id,
            "upstream_request_id": self.upstream_request_id,
            "canceled_at": self.canceled_at,
            "faults": list(self.faults),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskRecord:
        req = data["request"]
        plan = data["plan"]
        media = tuple(
            MediaItem(
                type=m["type"],
                url=m["url"],
                origin=m["origin"],
                info=MediaInfo(**m["info"]) if m.get("info") else None,
            )
            for m in req["media"]
        )
        request = TaskRequest(
            model=req["model"],
            prompt=req["prompt"],
            media=media,
            parameters=MappingProxyType(dict(req["parameters"])),
            explicit=frozenset(req["explicit"]),
            ignored=tuple(req.get("ignored", ())),
            prompt_truncated=bool(req.get("prompt_truncated", False)),
        )
        return cls(
            id=data["id"],
            provider=data["provider"],
            owner=data["owner"],
            request=request,
            plan=Plan(
                pending=_endless(plan["pending"]),
                running=_endless(plan["running"]),
                outcome=plan.get("outcome", "SUCCEEDED"),
                error_code=plan.get("error_code"),
                error_message=plan.get("error_message"),
            ),
            output=OutputShape(**data["output"]),
            created_at=float(data["created_at"]),
            request_id=data["request_id"],
            upstream_id=data["upstream_id"],
            upstream_request_id=data["upstream_request_id"],
            canceled_at=data.get("canceled_at"),
            faults=tuple(data.get("faults", ())),
        )


def _endless(seconds: float | None) -> float:
    """A plan's time as JSON carries it: null is a state that never ends."""
    return math.inf if seconds is None else float(seconds)


def _info_json(info: MediaInfo) -> dict[str, Any]:
    return {
        "kind": info.kind,
        "format": info.format,
        "bytes": info.bytes,
        "width": info.width,
        "height": info.height,
        "duration": info.duration,
        "mime": info.mime,
    }
