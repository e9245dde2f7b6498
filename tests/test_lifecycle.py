"""State is a pure function of the plan and the clock."""

from __future__ import annotations

import math
import statistics
from types import MappingProxyType

import pytest

from contracts.lifecycle import draw_plan, output_shape, progress_at, state_at, times_at
from contracts.spec import SpecSet
from contracts.task import OutputShape, Plan, TaskRecord, TaskRequest


def task(plan: Plan, created: float = 1000.0, canceled: float | None = None) -> TaskRecord:
    request = TaskRequest("m", "p", (), MappingProxyType({}), frozenset())
    return TaskRecord(
        "t",
        "dashscope",
        "o",
        request,
        plan,
        OutputShape(2, 2, 5, 24, 720, "16:9"),
        created,
        "r",
        "u",
        "ur",
        canceled_at=canceled,
    )


def test_states_follow_the_plan_and_retention() -> None:
    t = task(Plan(pending=10, running=100))
    timeline = [state_at(t, 1000 + s, retention=86400) for s in (0, 9.99, 10, 109.99, 110, 86399)]
    assert timeline == ["PENDING", "PENDING", "RUNNING", "RUNNING", "SUCCEEDED", "SUCCEEDED"]
    assert state_at(t, 1000 + 86400, retention=86400) == "UNKNOWN"
    failed = task(Plan(10, 100, "FAILED", "InvalidParameter"))
    assert state_at(failed, 2000, 86400) == "FAILED"
    assert state_at(task(Plan(10, 100), canceled=1005), 5000, 86400) == "CANCELED"
    assert state_at(task(Plan(10, math.inf)), 1e9, math.inf) == "RUNNING"


def test_reported_times_are_ordered() -> None:
    t = task(Plan(pending=10, running=100))
    assert times_at(t, "PENDING") == (1000, None, None)
    assert times_at(t, "RUNNING") == (1000, 1010, None)
    assert times_at(t, "SUCCEEDED") == (1000, 1010, 1110)


def test_progress_rises_through_the_spec_steps(specs: SpecSet) -> None:
    t = task(Plan(pending=10, running=100))
    steps = specs["apiyi"].progress
    seen = [progress_at(steps, t, state_at(t, 1000 + s, 86400), 1000 + s) for s in range(0, 130, 5)]
    assert seen == sorted(seen)
    assert set(seen) == {0, 10, 30, 100}
    assert progress_at(specs["dashscope"].progress, t, "RUNNING", 1050) is None


def test_realistic_plans_follow_the_spec_distribution(specs: SpecSet) -> None:
    spec = specs["dashscope"]
    plans = [draw_plan(spec, "realistic", f"seed-{i}") for i in range(4000)]
    running = sorted(p.running for p in plans)
    assert statistics.median(running) == pytest.approx(spec.timing["RUNNING"].median, rel=0.1)
    assert running[int(0.95 * len(running))] == pytest.approx(spec.timing["RUNNING"].p95, rel=0.15)
    assert draw_plan(spec, "realistic", "same") == draw_plan(spec, "realistic", "same")
    assert draw_plan(spec, "instant", "x") == Plan(0.0, 0.0)
    fast = draw_plan(spec, "fast", "x")
    assert fast.pending + fast.running < 6


def test_output_shape_follows_resolution_and_aspect(specs: SpecSet) -> None:
    spec = specs["anyfast"]
    rules = spec.models["happyhorse-1.0-t2v"]
    request = TaskRequest(
        "happyhorse-1.0-t2v",
        "x",
        (),
        MappingProxyType({"resolution": "1080P", "duration": 7, "ratio": "9:16"}),
        frozenset({"ratio"}),
    )
    shape = output_shape(spec, rules, request)
    assert (shape.width, shape.height, shape.duration, shape.fps, shape.sr, shape.ratio) == (
        1080,
        1920,
        7,
        24,
        1080,
        "9:16",
    )
