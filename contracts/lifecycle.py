"""The canonical lifecycle: a task's state at time t is a pure function of its plan.

No timers and no background workers: a poll computes the state from the plan
and the clock in O(1), several worker processes sharing a store agree without
coordination, and a virtual clock can jump a day ahead in a test.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Literal

from contracts.frames import nearest_ratio
from contracts.spec import ModelRules, Spec
from contracts.task import OutputShape, Plan, TaskRecord, TaskRequest

__all__ = [
    "TIMING_MODES",
    "TimingMode",
    "draw_plan",
    "nearest_ratio",
    "output_shape",
    "progress_at",
    "state_at",
    "times_at",
]

TimingMode = Literal["fast", "realistic", "instant"]
TIMING_MODES: tuple[TimingMode, ...] = ("fast", "realistic", "instant")

# `fast` keeps every state visible to a polling client yet finishes in seconds.
_FAST = {"PENDING": 1.0, "RUNNING": 3.0}
_Z95 = 1.6448536269514722
_NORMAL = NormalDist()


def _uniforms(seed: str) -> tuple[float, float]:
    """Two uniforms in (0, 1) from a seed: deterministic, and cheaper than seeding a Random."""
    digest = hashlib.blake2b(seed.encode(), digest_size=16).digest()
    scale = float(1 << 64)
    first = (int.from_bytes(digest[:8], "big") + 0.5) / scale
    second = (int.from_bytes(digest[8:], "big") + 0.5) / scale
    return first, second


def draw_plan(spec: Spec, mode: TimingMode, seed: str) -> Plan:
    """Decide how long a task queues and runs; the same seed always draws the same plan."""
    if mode == "instant":
        return Plan(pending=0.0, running=0.0)
    uniforms = _uniforms(seed)
    if mode == "fast":
        return Plan(
            pending=_FAST["PENDING"] * (0.8 + 0.4 * uniforms[0]),
            running=_FAST["RUNNING"] * (0.8 + 0.4 * uniforms[1]),
        )
    durations = []
    for state, u in zip(("PENDING", "RUNNING"), uniforms, strict=True):
        timing = spec.timing[state]
        mu = math.log(timing.median)
        sigma = max((math.log(timing.p95) - mu) / _Z95, 1e-6)
        durations.append(math.exp(mu + sigma * _NORMAL.inv_cdf(u)))
    return Plan(pending=durations[0], running=durations[1])


def state_at(task: TaskRecord, now: float, retention: float) -> str:
    """The canonical state of a task at virtual time ``now``."""
    age = now - task.created_at
    if age >= retention:
        return "UNKNOWN"
    if task.canceled_at is not None:
        return "CANCELED"
    plan = task.plan
    if age < plan.pending:
        return "PENDING"
    if age < plan.pending + plan.running:
        return "RUNNING"
    return plan.outcome


def times_at(task: TaskRecord, state: str) -> tuple[float, float | None, float | None]:
    """(submitted, scheduled, ended) as the provider would report them in ``state``."""
    submitted = task.created_at
    if state == "CANCELED":
        return submitted, None, task.canceled_at
    if state in ("PENDING", "UNKNOWN"):
        return submitted, None, None
    scheduled = submitted + task.plan.pending
    if state == "RUNNING":
        return submitted, scheduled, None
    return submitted, scheduled, scheduled + task.plan.running


def progress_at(
    steps: Mapping[str, tuple[int, ...]] | None, task: TaskRecord, state: str, now: float
) -> int | None:
    """The provider's progress figure: the spec's steps, RUNNING split evenly between its values.

    Monotonic by construction, since time only moves forward and the steps rise.
    """
    if steps is None:
        return None
    values = steps.get(state)
    if values is None:
        return 0
    if state != "RUNNING" or len(values) == 1:
        return values[0]
    elapsed = now - task.created_at - task.plan.pending
    running = task.plan.running
    if not math.isfinite(running) or running <= 0:
        return values[0]
    index = min(int(elapsed / running * len(values)), len(values) - 1)
    return values[max(index, 0)]


def output_shape(spec: Spec, rules: ModelRules, request: TaskRequest) -> OutputShape:
    """The result video's shape: a row of the spec's frame table, and how usage reports it.

    The resolution is the request's (else the largest). The ratio comes from the model's
    ``output.aspect`` sources in order: a parameter counts when the request set it, a media
    type when the request carried a probed one, whose aspect snaps to the nearest named ratio;
    failing all, the first parameter's default, then the ratio nearest the resolution's own
    size. Size and reported ratio come from the same row, so they cannot disagree.
    """
    resolution = str(request.parameters.get("resolution", ""))
    if resolution not in spec.resolutions:
        resolution = max(spec.resolutions, key=lambda r: math.prod(spec.resolutions[r][:2]))
    base_w, base_h, sr = spec.resolutions[resolution]
    ratio = _ratio(spec, rules, request) or spec.frames.nearest_ratio(base_w / base_h)
    width, height = spec.frames.size(resolution, ratio)
    duration = int(request.parameters.get("duration", 5))
    return OutputShape(width, height, duration, spec.result_fps, sr, ratio)


def _ratio(spec: Spec, rules: ModelRules, request: TaskRequest) -> str | None:
    frames = spec.frames
    for source in rules.aspect_sources:
        if source in rules.parameters:
            value = str(request.parameters.get(source))
            if source in request.explicit and value in frames.ratios:
                return value
        else:
            item = request.first(source)
            if item is not None and item.info is not None and item.info.aspect:
                return frames.nearest_ratio(item.info.aspect)
    for source in rules.aspect_sources:
        param = rules.parameters.get(source)
        if param is not None and param.has_default:
            default = str(param.default)
            return default if default in frames.ratios else None
    return None
