"""Canonical views: the flat ``name -> value`` mapping that response templates render.

The mock builds a view from a task and the clock; the client gets one back by
parsing provider JSON through the same template. Names are the placeholders a
spec may use (``task.id``, ``times.submitted``, ``error.code``...).
"""

from __future__ import annotations

import random
import re
import string
from typing import Any

from contracts.lifecycle import progress_at, state_at, times_at
from contracts.spec import ErrorDef, Spec
from contracts.task import TaskRecord

__all__ = ["error_view", "id_pattern", "make_id", "new_uuid", "new_uuids", "task_view"]

_ALNUM = string.ascii_letters + string.digits
# Seeded from the OS once per process (workers are spawned, so each has its own).
_random = random.Random()
_ID_PARTS = re.compile(r"\{(uuid|hex32|alnum32)\}")
_ID_REGEX = {
    "uuid": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "hex32": "[0-9a-f]{32}",
    "alnum32": "[A-Za-z0-9]{32}",
}


def new_uuids(count: int) -> list[str]:
    """Several random UUIDs at once.

    Ids and request ids need to be unique, not unguessable (a task is only
    ever visible to its own key), so they come from the process's PRNG: a
    system call per create was a twentieth of its cost.
    """
    h = f"{_random.getrandbits(128 * count):0{32 * count}x}"
    return [_format_uuid(h[i : i + 32]) for i in range(0, 32 * count, 32)]


def _format_uuid(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def new_uuid() -> str:
    """A random (version 4) UUID, unique rather than secret (see ``new_uuids``)."""
    h = f"{_random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def make_id(template: str) -> str:
    """A fresh id in a spec's shape: ``{uuid}``, ``hh-{uuid}``, ``asyntask_{alnum32}``."""
    if template == "{uuid}":
        return new_uuid()

    def fill(match: re.Match[str]) -> str:
        kind = match.group(1)
        if kind == "uuid":
            return new_uuid()
        if kind == "hex32":
            return f"{_random.getrandbits(128):032x}"
        return "".join(_random.choices(_ALNUM, k=32))

    return _ID_PARTS.sub(fill, template)


def id_pattern(template: str) -> re.Pattern[str]:
    """A regex that matches ids made from ``template`` (for checks and drift reports)."""
    parts = _ID_PARTS.split(template)
    regex = "".join(_ID_REGEX[p] if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(regex + r"\Z")


def task_view(
    spec: Spec,
    task: TaskRecord,
    now: float,
    *,
    request_id: str,
    result_url: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """Everything a query or list template may name, for one task at one moment."""
    if state is None:
        state = state_at(task, now, spec.task_retention)
    submitted, scheduled, ended = times_at(task, state)
    rules = spec.models.get(task.model)
    view: dict[str, Any] = {
        "request_id": request_id,
        "state": state,
        "region": spec.region_name,
        "task.id": task.id,
        "task.model": task.model,
        "task.prompt": task.request.prompt if task.request.prompt is not None else "",
        "task.request_id": task.request_id,
        "task.upstream_id": task.upstream_id,
        "task.upstream_request_id": task.upstream_request_id,
        "times.submitted": submitted,
        "times.scheduled": scheduled,
        "times.ended": ended,
        "usage.duration": task.output.duration,
        "usage.sr": task.output.sr,
        "usage.ratio": task.output.ratio,
    }
    progress = progress_at(spec.progress, task, state, now)
    if progress is not None:
        view["progress"] = progress
    if result_url is not None:
        view["result.url"] = result_url
    if state == "FAILED" and task.plan.error_code:
        error = spec.error(task.plan.error_code)
        view["error.code"] = error.code
        view["error.message"] = task.plan.error_message or error.message
        view["error.type"] = error.type
    if rules is not None:
        for key, value in rules.attributes.items():
            view[f"model.{key}"] = value
    return view


def error_view(error: ErrorDef, message: str, request_id: str) -> dict[str, Any]:
    """What an error envelope renders from."""
    return {
        "request_id": request_id,
        "error.code": error.code,
        "error.message": message,
        "error.type": error.type,
        "error.status": error.status,
    }
