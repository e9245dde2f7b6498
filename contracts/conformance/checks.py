"""The named checks: each has one reason to fail and says it in words, with the request.

A check receives a :class:`Context` (the target, the checker's spec, the
budget) and raises :class:`CheckFailed` with a sentence a person can act on;
the runner attaches the exact request as a ``curl`` line. The spec a check
reads is the *checker's*: against a server built from another spec, the
difference is what fails.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import av

from contracts.conformance.cases import Case
from contracts.conformance.targets import Exchange, Reply, Target
from contracts.lifecycle import output_shape
from contracts.media import MediaError, probe
from contracts.spec import ErrorDef, Spec
from contracts.task import TERMINAL_STATES, TaskRequest
from contracts.validate import Violation
from contracts.views import id_pattern, make_id, new_uuid
from contracts.wire import WireMismatch

__all__ = [
    "Budget",
    "BudgetSpent",
    "CheckFailed",
    "CheckSkipped",
    "Context",
    "accepted",
    "auth_isolation",
    "auth_missing_and_wrong",
    "lifecycle",
    "read_task",
    "rejected",
    "result",
    "unknown_id",
]


class CheckFailed(AssertionError):
    """A check's one reason to fail; ``exchange`` is the request that showed it."""

    def __init__(self, message: str, exchange: Exchange | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exchange = exchange


class BudgetSpent(Exception):
    """No billable task may be created: the check is skipped, not failed."""


class CheckSkipped(Exception):
    """The target cannot show what the check is about; the message says how to let it."""


@dataclass
class Budget:
    """Billable tasks a run may create; None is unlimited (mocks)."""

    limit: int | None
    used: int = 0

    def spend(self) -> None:
        if self.limit is not None and self.used >= self.limit:
            raise BudgetSpent
        self.used += 1


@dataclass
class Context:
    target: Target
    spec: Spec
    budget: Budget
    wait_limit: float = 900.0  # seconds (virtual or real) a task may take to end
    created: list[str] = field(default_factory=list)

    def last(self) -> Exchange | None:
        return self.target.exchanges[-1] if self.target.exchanges else None

    def fail(self, message: str) -> CheckFailed:
        return CheckFailed(message, self.last())


# -- reading answers ----------------------------------------------------------------------------


def _excerpt(reply: Reply, limit: int = 240) -> str:
    text = reply.body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "…"


def _path(spec: Spec, operation: str, task_id: str = "") -> str:
    return spec.operations[operation].path.replace(
        "{task_id}", urllib.parse.quote(task_id, safe="")
    )


def read_task(ctx: Context, reply: Reply) -> dict[str, Any]:
    """A query answer read strictly through the template of the state it claims."""
    spec = ctx.spec
    if reply.status != spec.query_response.status:
        raise ctx.fail(
            f"a query answered HTTP {reply.status}, the spec says {spec.query_response.status}: "
            f"{_excerpt(reply)}"
        )
    body = reply.json()
    if not isinstance(body, dict):
        raise ctx.fail(f"a query answered something other than a JSON object: {_excerpt(reply)}")
    mismatch: tuple[str, WireMismatch] | None = None
    for state, template in spec.query_response.states.items():
        if template.parse(body, strict=False).get("state") != state:
            continue
        try:
            return template.parse(body, strict=True)
        except WireMismatch as exc:
            mismatch = mismatch or (state, exc)
    if mismatch is not None:
        raise ctx.fail(f"the {mismatch[0]} answer is off its spec shape ({mismatch[1]})")
    status_path = spec.query_response.states["PENDING"].path_of("state") or "?"
    raise ctx.fail(
        f"the status at {status_path} is {_dig(body, status_path)!r}, which is not a word of "
        f"the spec's status vocabulary ({', '.join(_words(spec))})"
    )


def _words(spec: Spec) -> list[str]:
    return sorted({w for words in spec.vocabularies["status"].values() for w in words})


def _dig(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _expect_error(ctx: Context, reply: Reply, error: ErrorDef, what: str) -> None:
    """``reply`` is ``error`` in its documented status, envelope and code."""
    wanted = f"HTTP {error.status} with code {error.code!r}"
    if reply.status != error.status:
        raise ctx.fail(f"{what}: expected {wanted}, got HTTP {reply.status}: {_excerpt(reply)}")
    body = reply.json()
    envelope = ctx.spec.envelopes[error.envelope]
    try:
        values = envelope.parse(body, strict=True)
    except WireMismatch as exc:
        raise ctx.fail(
            f"{what}: the error is not in the spec's {error.envelope!r} envelope ({exc}): "
            f"{_excerpt(reply)}"
        ) from None
    code = values.get("error.code")
    if code is not None and str(code) != error.code:
        raise ctx.fail(f"{what}: expected {wanted}, got code {code!r}: {_excerpt(reply)}")


def case_note(case: Case) -> dict[str, Any]:
    """What a drift analysis needs to judge a create afresh: the case and its media, probed."""
    return {
        "case": case.label,
        "model": case.model,
        "media": {url: dataclasses.asdict(info) for url, info in case.media.items()},
    }


def _create(ctx: Context, case: Case, key: str | None = "") -> Reply:
    ctx.budget.spend()
    return ctx.target.send(
        "POST",
        _path(ctx.spec, "create"),
        headers=case.headers,
        body=case.body,
        key=key,
        note=case_note(case),
    )


def _created_id(ctx: Context, case: Case, reply: Reply) -> str:
    spec = ctx.spec
    if reply.status != spec.create_status:
        raise ctx.fail(
            f"{case.label}: the spec accepts this request, the server answered HTTP "
            f"{reply.status}: {_excerpt(reply)}"
        )
    try:
        values = spec.create_response.parse(reply.json(), strict=True)
    except WireMismatch as exc:
        raise ctx.fail(f"the create answer is off its spec shape ({exc})") from None
    task_id = str(values.get("task.id", ""))
    ctx.created.append(task_id)
    rules = spec.models[case.model]
    if not id_pattern(rules.task_id).fullmatch(task_id):
        raise ctx.fail(f"task id {task_id!r} is not of the spec's form {rules.task_id!r}")
    state = values.get("state")
    if state is not None and state != "PENDING":
        raise ctx.fail(f"a new task is {state!r}; the spec says it starts PENDING")
    return task_id


# -- the checks -----------------------------------------------------------------------------------


def accepted(ctx: Context, case: Case) -> None:
    """A valid request gets the documented create shape: id of the provider's form, PENDING."""
    _created_id(ctx, case, _create(ctx, case))


def rejected(ctx: Context, case: Case) -> None:
    """An invalid request gets the documented status, envelope and code."""
    assert isinstance(case.expected, Violation)
    violation = case.expected
    rule = ctx.spec.violations[violation.kind]
    reply = ctx.target.send(
        "POST",
        _path(ctx.spec, "create"),
        headers=case.headers,
        body=case.body,
        note=case_note(case),
    )
    if 200 <= reply.status < 300 and ctx.spec.create_response is not None:
        ctx.budget.used += 1  # it was accepted, so it may have cost money
        _cancel_quietly(ctx, reply)
    where = f" at {violation.field}" if violation.field else ""
    _expect_error(
        ctx, reply, rule.error, f"{case.label} breaks rule {violation.kind}{where} ({rule.source})"
    )


def _cancel_quietly(ctx: Context, reply: Reply) -> None:
    try:
        task_id = ctx.spec.create_response.parse(reply.json(), strict=False).get("task.id")
    except WireMismatch:
        return
    if task_id and "cancel" in ctx.spec.operations:
        ctx.target.send("POST", _path(ctx.spec, "cancel", str(task_id)))


def _poll(ctx: Context, task_id: str, key: str | None = "") -> dict[str, Any]:
    return read_task(ctx, ctx.target.send("GET", _path(ctx.spec, "query", task_id), key=key))


def _run_to_end(ctx: Context, task_id: str) -> list[dict[str, Any]]:
    """Poll until a terminal state, checking each step; the values seen, in order."""
    spec = ctx.spec
    seen = [_poll(ctx, task_id)]
    waited = 0.0
    # Virtual time is free: small first steps see every state a fast task
    # passes through; growing ones follow a task timed as the spec says.
    step = 0.25 if ctx.target.virtual else spec.poll_initial
    while seen[-1]["state"] not in TERMINAL_STATES:
        if waited > ctx.wait_limit:
            raise ctx.fail(f"task {task_id} was still {seen[-1]['state']} after {waited:.0f} s")
        ctx.target.wait(step)
        waited += step
        step = min(step * 1.5, spec.poll_max)
        now = _poll(ctx, task_id)
        _check_step(ctx, seen[-1], now)
        seen.append(now)
    return seen


def _check_step(ctx: Context, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    a, b = before["state"], after["state"]
    # Between two polls a task may pass through states unseen, so the test is
    # that the spec's edges lead from one to the other, not that one edge does.
    if a != b and b not in _reachable(ctx.spec, a):
        allowed = ", ".join(sorted(ctx.spec.edges.get(a, ()))) or "nothing"
        raise ctx.fail(f"the task moved {a} → {b}; from {a} the spec allows {allowed}")
    p, q = before.get("progress"), after.get("progress")
    if isinstance(p, (int, float)) and isinstance(q, (int, float)) and q < p:
        raise ctx.fail(f"progress went back from {p} to {q}")


def _reachable(spec: Spec, state: str) -> set[str]:
    seen: set[str] = set()
    todo = [state]
    while todo:
        for nxt in spec.edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _check_times(ctx: Context, values: Mapping[str, Any]) -> None:
    order = [(k, values.get(k)) for k in ("times.submitted", "times.scheduled", "times.ended")]
    present = [(k, v) for k, v in order if isinstance(v, (int, float)) and v]
    for (k1, v1), (k2, v2) in itertools.pairwise(present):
        if v2 < v1:
            raise ctx.fail(f"{k2} ({v2:.3f}) is before {k1} ({v1:.3f})")


def lifecycle(ctx: Context, case: Case) -> None:
    """States move along the spec's edges, end sticky, progress and times in order."""
    task_id = _created_id(ctx, case, _create(ctx, case))
    seen = _run_to_end(ctx, task_id)
    _check_times(ctx, seen[-1])
    end = seen[-1]["state"]
    ctx.target.wait(ctx.spec.poll_initial)
    again = _poll(ctx, task_id)
    if again["state"] != end:
        raise ctx.fail(f"a terminal state is not sticky: {end} became {again['state']}")


def cancel(ctx: Context, case: Case) -> None:
    """Cancel works where the spec says (a PENDING task) and is refused elsewhere."""
    spec = ctx.spec
    op = spec.operations.get("cancel")
    if op is None:
        return
    task_id = _created_id(ctx, case, _create(ctx, case))
    before = _poll(ctx, task_id)
    reply = ctx.target.send("POST", _path(spec, "cancel", task_id), note={"expect": "cancel"})
    if before["state"] in op.cancelable:
        if not 200 <= reply.status < 300:
            raise ctx.fail(
                f"cancel of a {before['state']} task answered HTTP {reply.status}; the spec "
                f"says {before['state']} tasks can be canceled: {_excerpt(reply)}"
            )
        after = _poll(ctx, task_id)
        if after["state"] != "CANCELED":
            raise ctx.fail(f"after a successful cancel the task is {after['state']}, not CANCELED")
    else:
        refused = spec.violations.get("cancel_refused")
        if refused is not None:
            _expect_error(ctx, reply, refused.error, f"cancel of a {before['state']} task")
    if ctx.target.virtual:  # a finished task cannot be canceled
        done = _created_id(ctx, case, _create(ctx, case))
        _run_to_end(ctx, done)
        refused = spec.violations.get("cancel_refused")
        reply = ctx.target.send("POST", _path(spec, "cancel", done), note={"expect": "cancel"})
        if refused is not None:
            _expect_error(ctx, reply, refused.error, "cancel of a finished task")


def unknown_id(ctx: Context) -> None:
    """An id that never existed gets the documented answer (free)."""
    spec = ctx.spec
    op = spec.operations["query"]
    model = next(iter(spec.models.values()))
    task_id = make_id(model.task_id) if "{" in model.task_id else new_uuid()
    reply = ctx.target.send("GET", _path(spec, "query", task_id), note={"expect": "unknown_id"})
    rule = op.unknown or {}
    if rule.get("error"):
        _expect_error(ctx, reply, spec.error(rule["error"]), f"query of unknown id {task_id}")
    else:
        values = read_task(ctx, reply)
        if values["state"] != rule.get("state", "UNKNOWN"):
            raise ctx.fail(f"an unknown id is {values['state']}; the spec says {rule.get('state')}")


def auth_missing_and_wrong(ctx: Context) -> None:
    """No key and a wrong key get the documented answers (free: nothing is created)."""
    spec = ctx.spec
    path = _path(spec, "query", new_uuid())
    for kind, key in (("auth_missing", None), ("auth_invalid", "sk-paddock-not-a-real-key-0000")):
        rule = spec.violations.get(kind)
        if rule is None:
            continue
        if key is not None and ctx.target.accepts_any_key():
            # A paddock mock started without --api-key takes any key by design.
            raise CheckSkipped(
                "the target accepts any key; start the mock with --api-key to check it"
            )
        reply = ctx.target.send("GET", path, key=key, note={"expect": kind})
        what = "no key" if key is None else "a wrong key"
        _expect_error(ctx, reply, rule.error, f"a query with {what} ({rule.source})")


def auth_isolation(ctx: Context, case: Case) -> None:
    """Another key cannot see a task: it gets the unknown-id answer."""
    other = ctx.target.second_key
    if other is None:
        return
    task_id = _created_id(ctx, case, _create(ctx, case))
    reply = ctx.target.send(
        "GET", _path(ctx.spec, "query", task_id), key=other, note={"expect": "unknown_id"}
    )
    rule = ctx.spec.operations["query"].unknown or {}
    if rule.get("error"):
        _expect_error(ctx, reply, ctx.spec.error(rule["error"]), "another key's query")
    else:
        values = read_task(ctx, reply)
        if values["state"] != rule.get("state", "UNKNOWN"):
            raise ctx.fail(f"another key sees the task as {values['state']}")


def result(ctx: Context, case: Case) -> None:
    """The video downloads without Authorization and is what was asked, for as long as promised."""
    spec = ctx.spec
    assert isinstance(case.expected, TaskRequest)
    task_id = _created_id(ctx, case, _create(ctx, case))
    seen = _run_to_end(ctx, task_id)
    final = seen[-1]
    if final["state"] != "SUCCEEDED":
        raise ctx.fail(f"the task ended {final['state']} ({final.get('error.code')})")
    url = final.get("result.url")
    if not isinstance(url, str) or not url:
        raise ctx.fail("a SUCCEEDED task has no result URL")
    reply = ctx.target.fetch(url, note={"expect": "result"})
    if reply.status != 200:
        raise ctx.fail(f"the result URL answered HTTP {reply.status} without Authorization")
    kind = reply.headers.get("content-type", "")
    if not kind.startswith("video/mp4"):
        raise ctx.fail(f"the result is served as {kind!r}, not video/mp4")
    try:
        info = probe(reply.body)
    except MediaError as exc:
        raise ctx.fail(f"the result is not a playable MP4: {exc}") from None
    shape = output_shape(spec, spec.models[case.model], case.expected)
    if info.duration is None or not math.isclose(info.duration, shape.duration, abs_tol=0.1):
        raise ctx.fail(f"the video lasts {info.duration} s; the request asked {shape.duration} s")
    if (info.width, info.height) != (shape.width, shape.height):
        raise ctx.fail(
            f"the video is {info.width}x{info.height}; the spec gives {shape.width}x{shape.height}"
        )
    fps = _fps(reply.body)
    if fps is not None and round(fps) != spec.result_fps:
        raise ctx.fail(f"the video runs at {fps:g} fps; the spec says {spec.result_fps}")
    # Asked either way, so a recorded run shows how the link treats the header.
    denied = ctx.target.fetch(
        url, ctx.target.auth(ctx.target.key), note={"expect": "result_with_authorization"}
    )
    if spec.refuses_authorization and denied.status < 400:
        raise ctx.fail("the result URL accepted an Authorization header the spec says it refuses")
    _check_expiry(ctx, url, final)


def _fps(data: bytes) -> float | None:
    try:
        with av.open(io.BytesIO(data)) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else None
    except (av.error.FFmpegError, IndexError):
        return None


def _check_expiry(ctx: Context, url: str, final: Mapping[str, Any]) -> None:
    spec = ctx.spec
    if spec.expiry_param is None:
        return
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    expires = query.get(spec.expiry_param)
    ended = final.get("times.ended")
    if expires is None or not expires.isdigit() or not isinstance(ended, (int, float)):
        return
    lifetime = int(expires) - ended
    if spec.reissue_on_poll:
        return  # the link is fresh per poll; its lifetime runs from the poll, not the end
    if abs(lifetime - spec.result_retention) > 120:
        raise ctx.fail(
            f"the result URL expires {lifetime / 3600:.1f} h after the task ended; the spec "
            f"says {spec.result_retention / 3600:.1f} h"
        )
    if ctx.target.virtual:
        ctx.target.wait(max(int(expires) - ctx.target.now(), 0) + 60)
        late = ctx.target.fetch(url, note={"expect": "result_expired"})
        if late.status < 400:
            raise ctx.fail("the result URL still downloads after its expiry")
