"""What a provider now does differently from its spec: findings from a recorded run.

Every exchange of a recorded conformance run is judged afresh against the
spec being analysed (not against what the checker expected when it ran), so
the same run can be read against today's spec, a proposed one (``--spec``)
or next to an earlier run (``--baseline``):

- a create is re-validated with the spec's own validator, from the recorded
  body and the recorded facts of its media, and the answer compared with the
  verdict: accepted where the spec rejects (a limit loosened), refused where
  it accepts (a limit tightened, a header now required), or refused with
  another status, envelope or code;
- every JSON answer is compared field by field with the shape its template
  renders (fields removed, added, retyped, at any depth), and status words
  with the spec's vocabulary; values never count, so ids, timestamps,
  signatures and request ids cannot be drift;
- what the finished tasks report (usage, the MP4 itself) is compared with
  what the request and the spec's defaults promise; the result link with
  its download, Authorization and expiry rules;
- the time each task spent per state is compared with the spec's
  distribution (a lognormal from its median and p95), and 429s on polls
  are reported as a polling limit.

A finding has a kind, a severity (``breaking``: a client written to the spec
fails; ``changed``: it works but gets something else; ``new``: something was
added; ``info``: worth knowing), the spec rule it concerns and that rule's
``source``, evidence (exchanges, trimmed and already redacted) and a
suggestion. Findings of one kind on one rule are one finding with a count.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from contracts.conformance.cases import expectation
from contracts.drift.observe import Observation, Run
from contracts.lifecycle import output_shape
from contracts.media import MediaInfo
from contracts.spec import ErrorDef, Spec
from contracts.task import TERMINAL_STATES, TaskRequest
from contracts.validate import Violation, json_type
from contracts.views import id_pattern
from contracts.wire import Template, WireMismatch

__all__ = ["SEVERITIES", "Analysis", "Finding", "RuleCheck", "analyze"]

SEVERITIES = ("breaking", "changed", "new", "info")
# How far (in standard errors) the mean log-duration may sit from the spec's before it is
# drift: 4.5 makes a false finding a few-in-a-million event per state and run, and still
# finds latencies doubled from about 20 finished tasks. A move under a quarter is not drift.
_Z_LIMIT = 4.5
_MIN_EFFECT = math.log(1.25)
_Z95 = 1.6448536269514722
_MIN_TIMED = 5  # tasks per state before timing is judged


@dataclass
class Finding:
    kind: str
    severity: str
    rule: str
    source: str
    message: str
    suggestion: str
    model: str | None = None
    count: int = 0
    examined: int = 0
    evidence: list[dict[str, Any]] = field(default_factory=list)
    since: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.rule)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "rule": self.rule,
            "source": self.source,
            "model": self.model,
            "message": self.message,
            "suggestion": self.suggestion,
            "count": self.count,
            "examined": self.examined,
            "since": self.since,
            "evidence": self.evidence,
        }


@dataclass
class RuleCheck:
    """A spec rule the run exercised: how many exchanges, and what was found on it."""

    rule: str
    area: str
    source: str
    examined: int = 0
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Analysis:
    provider: str
    run: str
    run_time: str
    target: str
    spec_digest: str
    observed_digest: str | None
    baseline: str | None
    findings: list[Finding]
    rules: list[RuleCheck]
    timing: dict[str, dict[str, Any]]
    notes: list[str]
    exchanges: int

    @property
    def breaking(self) -> bool:
        return any(f.severity == "breaking" for f in self.findings)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}


# -- the analysis ---------------------------------------------------------------------------------


def analyze(run: Run, spec: Spec, *, baseline: Run | None = None) -> Analysis:
    """Findings for ``run`` against ``spec`` (and what changed since ``baseline``)."""
    analysis = _Analyser(run, spec).analysis()
    if baseline is not None:
        earlier = _Analyser(baseline, spec).analysis()
        before = {f.key for f in earlier.findings}
        for finding in analysis.findings:
            finding.since = earlier.run_time if finding.key in before else run.time
        now = {f.key for f in analysis.findings}
        for gone in earlier.findings:
            if gone.key not in now:
                analysis.notes.append(
                    f"gone since the baseline ({earlier.run_time}): {gone.kind} on {gone.rule}"
                )
        _timing_against(analysis, earlier, spec)
        analysis.baseline = str(baseline.directory)
    return analysis


class _Analyser:
    def __init__(self, run: Run, spec: Spec) -> None:
        self.run = run
        self.spec = spec
        self.found: dict[tuple[str, str], Finding] = {}
        self.rules: dict[str, RuleCheck] = {}
        self.notes: list[str] = []
        self.requests: dict[str, TaskRequest] = {}  # task id -> its create, judged afresh
        self.models: dict[str, str] = {}  # task id -> model
        self.results: dict[str, str] = {}  # result URL path -> task id
        self.last_state: dict[str, str] = {}  # task id -> last state read
        self.durations: dict[str, dict[str, float]] = defaultdict(dict)  # state -> id -> s
        self.polls: dict[str, list[float]] = defaultdict(list)  # task id -> poll times
        self.operations = [
            (kind, op.method, _path_regex(op.path)) for kind, op in spec.operations.items()
        ]

    # -- bookkeeping --------------------------------------------------------------------------

    def examined(self, rule: str, area: str, source: str) -> RuleCheck:
        check = self.rules.get(rule)
        if check is None:
            check = self.rules[rule] = RuleCheck(rule, area, source)
        check.examined += 1
        return check

    def find(
        self,
        obs: Observation | None,
        kind: str,
        severity: str,
        rule: str,
        source: str,
        message: str,
        suggestion: str,
        model: str | None = None,
    ) -> None:
        finding = self.found.get((kind, rule))
        if finding is None:
            finding = self.found[(kind, rule)] = Finding(
                kind, severity, rule, source, message, suggestion, model
            )
            self.rules.setdefault(rule, RuleCheck(rule, kind, source)).findings.append(finding)
        finding.count += 1
        if obs is not None and len(finding.evidence) < 2:
            finding.evidence.append(obs.evidence())

    def analysis(self) -> Analysis:
        for obs in self.run.observations:
            self.observe(obs)
        self.judge_timing()
        for finding in self.found.values():
            finding.examined = max(self.rules[finding.rule].examined, finding.count)
        findings = sorted(
            self.found.values(),
            key=lambda f: (SEVERITIES.index(f.severity), f.kind, f.rule),
        )
        digest = self.run.manifest.get("spec_digest")
        if digest and digest != self.spec.digest:
            self.notes.append(
                f"the run was recorded against spec {digest}; it is read against {self.spec.digest}"
            )
        return Analysis(
            provider=self.spec.provider,
            run=str(self.run.directory),
            run_time=self.run.time,
            target=str(self.run.manifest.get("target", "?")),
            spec_digest=self.spec.digest,
            observed_digest=str(digest) if digest else None,
            baseline=None,
            findings=findings,
            rules=sorted(self.rules.values(), key=lambda r: r.rule),
            timing=self.timing_table(),
            notes=self.notes,
            exchanges=len(self.run.observations),
        )

    # -- dispatch -----------------------------------------------------------------------------

    def operation(self, obs: Observation) -> tuple[str, str | None] | None:
        for kind, method, regex in self.operations:
            match = regex.search(obs.path)
            if match and obs.method == method:
                return kind, match.groupdict().get("task_id")
        return None

    def observe(self, obs: Observation) -> None:
        if obs.status is None:
            return  # the request failed on the wire; the run's report says so
        if _truncated(obs):
            return  # recorded cut short (over 20,000 characters): its shape cannot be judged
        expect = obs.expect
        if expect in ("result", "result_with_authorization", "result_expired"):
            self.result_fetch(obs, expect)
            return
        found = self.operation(obs)
        if found is None:
            return
        kind, task_id = found
        if kind == "create":
            self.create(obs)
        elif expect in ("auth_missing", "auth_invalid"):
            self.expected_violation(obs, Violation(expect), f"a query with {expect}")
        elif expect == "unknown_id":
            self.unknown_id(obs)
        elif kind == "cancel" and expect == "cancel" and task_id:
            self.cancel(obs, task_id)
        elif kind == "query" and task_id:
            self.query(obs, task_id)
        elif 200 <= obs.status < 300:
            template = self.response_template(kind)
            if template is not None:
                self.shape(obs, template, f"responses.{kind}", kind)
        elif obs.status >= 400:
            self.envelope(obs, None)

    def response_template(self, kind: str) -> Template | None:
        return {
            "cancel": self.spec.cancel_response,
            "list": self.spec.list_response,
            "upload_policy": self.spec.upload_response,
        }.get(kind)

    # -- creates ------------------------------------------------------------------------------

    def create(self, obs: Observation) -> None:
        if "case" not in obs.note:
            if obs.status is not None and obs.status >= 400:
                self.envelope(obs, None)
            return
        body = _request_bytes(obs)
        if body is None:
            return
        auth = self.spec.auth_header.lower()
        headers = {k: v for k, v in obs.request_headers.items() if k.lower() != auth}
        infos = {
            url: MediaInfo(**info)
            for url, info in (obs.note.get("media") or {}).items()
            if isinstance(info, dict)
        }
        verdict = expectation(self.spec, headers, body, infos)
        model = str(obs.note.get("model") or obs.model or "")
        if isinstance(verdict, TaskRequest):
            self.accepted(obs, verdict, model)
        else:
            self.expected_violation(obs, verdict, str(obs.note.get("case")), model)

    def accepted(self, obs: Observation, request: TaskRequest, model: str) -> None:
        spec = self.spec
        self.examined(f"models.{model} (accepted requests)", "create", spec.models[model].source)
        assert obs.status is not None
        if not 200 <= obs.status < 300:
            self.refused(obs, request, model)
            return
        self.examined("responses.create", "shape", _source(spec.raw, "responses", "create"))
        if obs.status != spec.create_status:
            self.find(
                obs,
                "http_status",
                "breaking",
                "responses.create",
                _source(spec.raw, "responses", "create"),
                f"create answers HTTP {obs.status}; the spec says {spec.create_status}",
                f"set responses.create.status to {obs.status} if this is deliberate",
            )
        self.shape(obs, spec.create_response, "responses.create", "create")
        try:
            values = spec.create_response.parse(obs.response_body, strict=False)
        except WireMismatch:
            return
        task_id = values.get("task.id")
        if not isinstance(task_id, str) or not task_id:
            return
        self.requests[task_id] = request
        self.models[task_id] = model
        pattern = spec.models[model].task_id
        self.examined(f"models.{model}.task_id", "create", spec.models[model].source)
        if not id_pattern(pattern).fullmatch(task_id):
            self.find(
                obs,
                "id_format",
                "changed",
                f"models.{model}.task_id",
                spec.models[model].source,
                f"task ids look like {task_id!r}, not the spec's {pattern!r}",
                "update the model's task_id pattern",
                model,
            )
        state = values.get("state")
        if state is not None and state != "PENDING":
            self.find(
                obs,
                "initial_state",
                "breaking",
                "responses.create",
                _source(spec.raw, "responses", "create"),
                f"a new task starts {state}; the spec says PENDING",
                "check the create template's status",
                model,
            )

    def refused(self, obs: Observation, request: TaskRequest, model: str) -> None:
        """A request the spec accepts was refused: by which rule, where the answer says."""
        kind, groups, _ = self.classify(*self.error_of(obs))
        self.tightened(obs, kind, groups, request, model)

    def tightened(
        self,
        obs: Observation,
        kind: str | None,
        groups: Mapping[str, str],
        request: TaskRequest | None,
        model: str,
    ) -> None:
        """A refusal the spec does not explain, by the rule the provider's answer names."""
        spec = self.spec
        rules = spec.models.get(model)
        code, message = self.error_of(obs)
        refused = f"refused with HTTP {obs.status} {code or ''}".rstrip()
        if message:
            refused += f": {message}"
        params = rules.parameters if rules else {}
        if kind in ("param_range", "param_enum", "param_length", "param_unsupported"):
            name = _param_name(groups.get("field") or "", params, request)
            param = params.get(name) if name else None
            rule = f"models.{model}.parameters.{name}" if name else f"models.{model}.parameters"
            slug = {
                "param_range": "range_narrowed",
                "param_enum": "enum_narrowed",
                "param_length": "limit_narrowed",
                "param_unsupported": "parameter_dropped",
            }[kind]
            value = request.parameters.get(name) if name and request else groups.get("value")
            self.find(
                obs,
                slug,
                "breaking",
                rule,
                param.source if param else (rules.source if rules else ""),
                f"{name}={value!r} is accepted by the spec ({param.describe() if param else '?'})"
                f" but was {refused}",
                f"narrow {rule} to what the provider now accepts"
                + (f" ({groups['min']}..{groups['max']})" if "min" in groups else ""),
                model,
            )
        elif kind in ("header_missing", "header_invalid"):
            self.find(
                obs,
                "header_required",
                "breaking",
                "operations.create.headers",
                _source(spec.raw, "operations", "create"),
                f"a request with every header the spec requires was {refused}",
                "add the header the provider now requires to operations.create.headers",
                model,
            )
        elif kind is not None and kind.startswith("media_"):
            self.find(
                obs,
                "media_rule_tightened",
                "breaking",
                f"models.{model}.media",
                rules.source if rules else "",
                f"media the spec accepts were {refused}",
                "tighten the media rule the message names",
                model,
            )
        else:
            self.find(
                obs,
                "request_refused",
                "breaking",
                f"models.{model}",
                rules.source if rules else "",
                f"a request the spec accepts was {refused}",
                "find the rule the provider now applies and encode it in the spec",
                model,
            )

    def expected_violation(
        self, obs: Observation, violation: Violation, what: str, model: str | None = None
    ) -> None:
        spec = self.spec
        rule_def = spec.violations.get(violation.kind)
        if rule_def is None:
            return
        rule = f"violations.{violation.kind}"
        self.examined(rule, "errors", rule_def.source)
        assert obs.status is not None
        if 200 <= obs.status < 300:
            self.loosened(obs, violation, model)
            return
        code, said = self.error_of(obs)
        applied, groups, worded = self.classify(code, said)
        if (
            applied is not None
            and applied != violation.kind
            and worded
            and "case" in obs.note
            and not self.same_wording(rule, said or "")
        ):
            # Refused, in the provider's words, for a rule this request keeps by the
            # spec (a header now required, media now too small): that rule moved.
            self.tightened(obs, applied, groups, None, model or "")
            return
        error, message = violation.resolve(spec)
        self.answer_is(obs, error, message, rule, rule_def.source, what, model)

    def answer_is(
        self,
        obs: Observation,
        error: ErrorDef,
        message: str | None,
        rule: str,
        source: str,
        what: str,
        model: str | None,
    ) -> None:
        """``obs`` is ``error`` in its status, envelope and code (and, as info, message)."""
        if obs.status != error.status:
            self.find(
                obs,
                "http_status",
                "breaking",
                rule,
                source,
                f"{what}: answered HTTP {obs.status}; the spec says {error.status} {error.code}",
                f"set errors.{error.key}.status to {obs.status}, or map {rule} to the error "
                "the provider now answers",
                model,
            )
            return
        if not self.envelope(obs, error):
            return
        code, observed_message = self.error_of(obs)
        if code is not None and code != error.code:
            self.find(
                obs,
                "error_code",
                "breaking",
                rule,
                source,
                f"{what}: answered code {code!r}; the spec says {error.code!r}",
                f"map {rule} to an error with code {code!r} (clients matching on "
                f"{error.code!r} stop recognising it)",
                model,
            )
            return
        if (
            message
            and observed_message is not None
            and observed_message != message
            and not self.same_wording(rule, observed_message)
        ):
            self.find(
                obs,
                "error_message",
                "info",
                rule,
                source,
                f"{what}: the message reads {observed_message!r}; the spec renders {message!r}",
                f"update the message of {rule} (clients should not parse messages)",
                model,
            )

    def same_wording(self, rule: str, observed: str) -> bool:
        """The message is the rule's template with other values (a moved limit says so itself)."""
        kind = rule.removeprefix("violations.")
        definition = self.spec.violations.get(kind)
        if definition is None:
            return False
        template = definition.message or definition.error.message
        return _template_regex(template).fullmatch(observed) is not None

    def loosened(self, obs: Observation, violation: Violation, model: str | None) -> None:
        spec = self.spec
        kind = violation.kind
        name = (violation.field or "").rsplit(".", 1)[-1]
        params = spec.models[model].parameters if model and model in spec.models else {}
        if kind == "param_range" and name in params:
            rule, slug = f"models.{model}.parameters.{name}", "range_widened"
            message = (
                f"{name}={violation.values.get('value')!r} is outside the spec's "
                f"{params[name].describe()} but was accepted"
            )
            suggestion = f"widen {rule} if the provider now means it"
            source = params[name].source
        elif kind == "param_enum" and name in params:
            rule, slug = f"models.{model}.parameters.{name}", "enum_widened"
            message = (
                f"{name}={violation.values.get('value')!r} is not one of the spec's values "
                "but was accepted"
            )
            suggestion = f"add the value to {rule}.enum if the provider now supports it"
            source = params[name].source
        elif kind in ("header_missing", "header_invalid"):
            rule, slug = "operations.create.headers", "header_not_required"
            message = f"a create without the required header ({violation.field}) was accepted"
            suggestion = "the header may no longer be required; keep sending it until confirmed"
            source = _source(spec.raw, "operations", "create")
        else:
            rule, slug = f"violations.{kind}", "rule_not_enforced"
            message = f"a request breaking {kind} ({violation}) was accepted"
            suggestion = f"the provider no longer enforces {kind}; confirm and relax the spec"
            source = spec.violations[kind].source
        self.find(obs, slug, "changed", rule, source, message, suggestion, model)

    # -- error answers ------------------------------------------------------------------------

    def error_of(self, obs: Observation) -> tuple[str | None, str | None]:
        body = obs.response_body
        if not isinstance(body, dict):
            return None, None
        for envelope in self.spec.envelopes.values():
            values = envelope.parse(body, strict=False)
            if values.get("error.code") or values.get("error.message"):
                code, message = values.get("error.code"), values.get("error.message")
                return (
                    str(code) if code is not None else None,
                    str(message) if message is not None else None,
                )
        return None, None

    def classify(
        self, code: str | None, message: str | None
    ) -> tuple[str | None, dict[str, str], bool]:
        """Which of the spec's violations an answer reads as, the values its message holds, and
        whether the message's wording (not only its code) says so."""
        candidates = [
            v for v in self.spec.violations.values() if code is not None and v.error.code == code
        ]
        # The most specific template that reads the message: "Field {field} must be
        # {expected}" also reads a range message, whose template has more fixed words.
        best: tuple[int, str, dict[str, str]] | None = None
        for rule in candidates:
            template = rule.message or rule.error.message
            match = _template_regex(template).fullmatch(message or "")
            if match:
                fixed = len(re.sub(r"\{\w+\}", "", template))
                if best is None or fixed > best[0]:
                    groups = {k: v for k, v in match.groupdict().items() if v is not None}
                    best = (fixed, rule.kind, groups)
        if best is not None:
            return best[1], best[2], True
        if len(candidates) == 1:
            return candidates[0].kind, {}, False
        return None, {}, False

    def envelope(self, obs: Observation, error: ErrorDef | None) -> bool:
        """The error body is in one of the spec's envelopes (the error's own when known)."""
        spec = self.spec
        envelopes = (
            {error.envelope: spec.envelopes[error.envelope]} if error else dict(spec.envelopes)
        )
        rule = "responses.error"
        self.examined(rule, "errors", _source(spec.raw, "responses", "error"))
        body = obs.response_body
        if obs.response_form != "json" and not envelopes:
            return True
        best: list[str] | None = None
        best_name = ""
        for name, template in envelopes.items():
            sample = template.render(_error_sample(template))
            problems = _shape_problems(_flatten(sample), _flatten(body), added=False)
            if not problems:
                return True
            if best is None or len(problems) < len(best):
                best, best_name = problems, name
        if best is None:
            return True
        self.find(
            obs,
            "error_envelope",
            "breaking",
            f"{rule}.envelopes.{best_name}",
            _source(spec.raw, "responses", "error"),
            f"an error answer (HTTP {obs.status}) is off the {best_name!r} envelope: "
            + "; ".join(best[:3]),
            "update responses.error.envelopes to the shape the provider now answers",
        )
        return False

    # -- queries and shapes -------------------------------------------------------------------

    def unknown_id(self, obs: Observation) -> None:
        spec = self.spec
        op = spec.operations["query"]
        rule = "operations.query.unknown"
        self.examined(rule, "lifecycle", op.source)
        answer = op.unknown or {}
        if answer.get("error"):
            error = spec.error(answer["error"])
            self.answer_is(obs, error, None, rule, op.source, "a query of an unknown id", None)
            return
        wanted = answer.get("state", "UNKNOWN")
        state = self.state_of(obs)
        if obs.status != spec.query_response.status or state != wanted:
            seen = state or f"HTTP {obs.status}"
            self.find(
                obs,
                "unknown_id",
                "breaking",
                rule,
                op.source,
                f"a query of an unknown id answers {seen}; the spec says {wanted}",
                "update operations.query.unknown",
            )
        elif obs.status is not None:
            self.shape(
                obs, spec.query_response.states[wanted], f"responses.query.{wanted}", wanted, wanted
            )

    def state_of(self, obs: Observation) -> str | None:
        body = obs.response_body
        if not isinstance(body, dict):
            return None
        for state, template in self.spec.query_response.states.items():
            try:
                if template.parse(body, strict=False).get("state") == state:
                    return state
            except WireMismatch:
                return None
        return None

    def query(self, obs: Observation, task_id: str) -> None:
        spec = self.spec
        assert obs.status is not None
        self.polls[task_id].append(obs.time)
        if obs.status == 429:
            self.examined("client.poll_interval", "polling", _poll_source(spec))
            intervals = sorted(b - a for a, b in _pairs(self.polls[task_id]))
            pace = f"{intervals[0]:.1f} s" if intervals else "the first poll"
            self.find(
                obs,
                "polling_limit",
                "changed",
                "client.poll_interval",
                _poll_source(spec),
                f"polls were throttled (HTTP 429); the closest polls of one task were {pace} "
                f"apart, the spec's pace starts at {spec.poll_initial:g} s",
                "raise client.poll_interval.initial to the pace the provider allows",
            )
            return
        if obs.status >= 400:
            self.envelope(obs, None)
            return
        self.examined("responses.query", "shape", spec.query_response.source)
        if obs.status != spec.query_response.status:
            self.find(
                obs,
                "http_status",
                "breaking",
                "responses.query",
                spec.query_response.source,
                f"a query answers HTTP {obs.status}; the spec says {spec.query_response.status}",
                "update responses.query.status",
            )
        state = self.state_of(obs)
        if state is None:
            self.undeclared_status(obs)
            return
        template = spec.query_response.states[state]
        self.shape(obs, template, f"responses.query.states.{state}", state, state)
        values = template.parse(obs.response_body, strict=False)
        self.last_state[task_id] = state
        if state in TERMINAL_STATES:
            self.finished(obs, task_id, state, values)

    def undeclared_status(self, obs: Observation) -> None:
        spec = self.spec
        pending = spec.query_response.states["PENDING"]
        path = pending.path_of("state") or "?"
        value = _dig(obs.response_body, path)
        words = sorted({w for ws in spec.vocabularies["status"].values() for w in ws})
        self.examined("states.vocabularies.status", "lifecycle", _source(spec.raw, "states"))
        self.find(
            obs,
            "status_undeclared",
            "breaking",
            "states.vocabularies.status",
            _source(spec.raw, "states"),
            f"the status at {path} is {value!r}, which the spec's vocabulary lacks "
            f"({', '.join(words)})",
            f"map {value!r} to its canonical state in states.vocabularies.status",
        )

    def shape(
        self, obs: Observation, template: Template, rule: str, what: str, state: str = "PENDING"
    ) -> None:
        """Fields removed, added or retyped against what ``template`` renders (for ``state``)."""
        self.examined(rule, "shape", _source(self.spec.raw, "responses"))
        expected = _flatten(template.render(self.sample(template, state)))
        observed = _flatten(obs.response_body)
        for path, want in expected.items():
            got = observed.get(path)
            if got is None and not any(p.startswith(path + ".") for p in observed):
                self.find(
                    obs,
                    "field_removed",
                    "breaking",
                    f"{rule}.{path}",
                    _source(self.spec.raw, "responses"),
                    f"the {what} answer no longer carries {path}",
                    f"drop {path} from {rule}, and stop reading it",
                )
            elif got is not None and not _compatible(want, got):
                self.find(
                    obs,
                    "field_type",
                    "breaking",
                    f"{rule}.{path}",
                    _source(self.spec.raw, "responses"),
                    f"{path} in the {what} answer is a {got}; the spec renders a {want}",
                    f"change {path} in {rule} to a {got} (and every reader of it)",
                )
        for path, got in observed.items():
            if path in expected or any(e.startswith(path + ".") for e in expected):
                continue
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            if parent and parent in observed and parent not in expected:
                continue  # reported at the parent
            if parent and expected.get(parent) == "array":
                continue  # inside a list the template renders whole
            self.find(
                obs,
                "field_added",
                "new",
                f"{rule}.{path}",
                _source(self.spec.raw, "responses"),
                f"the {what} answer now carries {path} ({got})",
                f"add {path} to {rule} if clients should read it",
            )

    def sample(self, template: Template, state: str) -> dict[str, Any]:
        """A view with a value of the right type for every placeholder the template names."""
        view: dict[str, Any] = {"state": state}
        for spelled in template.placeholders().values():
            for name in re.findall(r"\{([^|}]+)", spelled):
                view.setdefault(name, _SAMPLES.get(name, _sample_by_prefix(name)))
        if self.spec.progress is None:
            view.pop("progress", None)
        if state != "SUCCEEDED":
            view.pop("result.url", None)
        if state != "FAILED":
            for name in ("error.code", "error.message", "error.type"):
                view.pop(name, None)
        return view

    # -- finished tasks: what they report, and how long they took -----------------------------

    def finished(
        self, obs: Observation, task_id: str, state: str, values: Mapping[str, Any]
    ) -> None:
        submitted, scheduled, ended = (
            values.get("times.submitted"),
            values.get("times.scheduled"),
            values.get("times.ended"),
        )
        if (
            state in ("SUCCEEDED", "FAILED")
            and isinstance(submitted, (int, float))
            and isinstance(scheduled, (int, float))
            and isinstance(ended, (int, float))
        ):
            self.durations["PENDING"][task_id] = scheduled - submitted
            self.durations["RUNNING"][task_id] = ended - scheduled
        if state != "SUCCEEDED":
            return
        url = values.get("result.url")
        if isinstance(url, str):
            self.results[urlsplit(url).path] = task_id
            self.expiry(obs, url, ended)
        request = self.requests.get(task_id)
        if request is None:
            return
        model = self.models[task_id]
        shape = output_shape(self.spec, self.spec.models[model], request)
        duration = values.get("usage.duration")
        if isinstance(duration, (int, float)):
            self.promised(obs, request, model, "duration", duration, shape.duration)
        sr = values.get("usage.sr")
        if sr is not None and str(sr) != str(shape.sr):
            names = [n for n, r in self.spec.resolutions.items() if str(r[2]) == str(sr)]
            self.promised(
                obs,
                request,
                model,
                "resolution",
                names[0] if names else sr,
                request.parameters.get("resolution"),
            )

    def promised(
        self,
        obs: Observation,
        request: TaskRequest,
        model: str,
        name: str,
        observed: Any,
        wanted: Any,
    ) -> None:
        """A result property against the request: a default moved, or the request not honoured."""
        params = self.spec.models[model].parameters
        if name not in params:
            return
        param = params[name]
        explicit = name in request.explicit
        rule = f"models.{model}.parameters.{name}" + ("" if explicit else ".default")
        self.examined(rule, "results", param.source)
        if _same(observed, wanted):
            return
        if explicit:
            self.find(
                obs,
                "result_mismatch",
                "breaking",
                rule,
                param.source,
                f"asked {name}={wanted!r}, the result has {observed!r}",
                "the provider does not honour the parameter: report it upstream",
                model,
            )
        else:
            self.find(
                obs,
                "default_changed",
                "changed",
                rule,
                param.source,
                f"{name} defaults to {observed!r} now (tasks that left it out); the spec says "
                f"{param.default!r}",
                f"set {rule} to {observed!r}, or send {name} explicitly",
                model,
            )

    def expiry(self, obs: Observation, url: str, ended: Any) -> None:
        spec = self.spec
        if spec.expiry_param is None or spec.reissue_on_poll or not _numbers(ended):
            return
        expires = dict(parse_qsl(urlsplit(url).query)).get(spec.expiry_param)
        if expires is None or not expires.isdigit():
            return
        rule = "retention.result_url"
        source = _source(spec.raw, "retention", "result_url")
        self.examined(rule, "results", source)
        lifetime = int(expires) - float(ended)
        if abs(lifetime - spec.result_retention) > 120:
            self.find(
                obs,
                "result_expiry",
                "changed",
                rule,
                source,
                f"result links expire {lifetime / 3600:.1f} h after the task ends; the spec says "
                f"{spec.result_retention / 3600:.1f} h",
                f"set {rule}.seconds to {round(lifetime)} (and download within it)",
            )

    def result_fetch(self, obs: Observation, expect: str) -> None:
        spec = self.spec
        task_id = self.results.get(obs.path)
        model = self.models.get(task_id or "")
        source = _source(spec.raw, "results")
        if expect == "result":
            self.examined("results.download", "results", source)
            if obs.status != 200:
                self.find(
                    obs,
                    "result_download",
                    "breaking",
                    "results.download",
                    source,
                    f"the result link answers HTTP {obs.status} without Authorization",
                    "check how the provider now serves results",
                )
                return
            kind = obs.response_headers.get("content-type", "")
            if not kind.startswith("video/mp4"):
                self.find(
                    obs,
                    "result_content_type",
                    "breaking",
                    "results.download",
                    source,
                    f"the result is served as {kind!r}, not video/mp4",
                    "check the result format",
                )
            self.video(obs, task_id, model)
        elif expect == "result_with_authorization":
            rule = "results.refuses_authorization"
            self.examined(rule, "results", source)
            refused = obs.status is not None and obs.status >= 400
            if refused != spec.refuses_authorization:
                now = "refuses" if refused else "accepts"
                self.find(
                    obs,
                    "result_authorization",
                    "breaking" if refused else "changed",
                    rule,
                    source,
                    f"the result link now {now} a request carrying Authorization "
                    f"(HTTP {obs.status}); the spec says it "
                    f"{'refuses' if spec.refuses_authorization else 'accepts'} one",
                    f"set {rule} to {str(refused).lower()}; download without the header",
                )
        elif expect == "result_expired" and obs.status is not None and obs.status < 400:
            rule = "retention.result_url"
            self.examined(rule, "results", source)
            self.find(
                obs,
                "result_expiry",
                "changed",
                rule,
                _source(spec.raw, "retention", "result_url"),
                "the result link still downloads after its expiry",
                "the provider keeps results longer; the spec's retention is a floor",
            )

    def video(self, obs: Observation, task_id: str | None, model: str | None) -> None:
        facts = obs.video or {}
        spec = self.spec
        source = _source(spec.raw, "results")
        self.examined("results.fps", "results", source)
        fps = facts.get("fps")
        if isinstance(fps, (int, float)) and round(fps) != spec.result_fps:
            self.find(
                obs,
                "result_property",
                "changed",
                "results.fps",
                source,
                f"result videos run at {fps:g} fps; the spec says {spec.result_fps}",
                f"set results.fps to {round(fps)}",
                model,
            )
        codec = facts.get("codec")
        if isinstance(codec, str) and codec != spec.result_codec:
            self.find(
                obs,
                "result_property",
                "changed",
                "results.codec",
                source,
                f"result videos are {codec}; the spec says {spec.result_codec}",
                f"set results.codec to {codec}",
                model,
            )
        request = self.requests.get(task_id or "")
        if request is None or model is None:
            return
        shape = output_shape(spec, spec.models[model], request)
        duration = facts.get("duration")
        if isinstance(duration, (int, float)):
            observed = round(duration)
            self.promised(obs, request, model, "duration", observed, shape.duration)
        width, height = facts.get("width"), facts.get("height")
        if (
            isinstance(width, int)
            and isinstance(height, int)
            and (width, height) != (shape.width, shape.height)
        ):
            area = width * height
            names = [
                n
                for n, r in spec.resolutions.items()
                if math.isclose(r[0] * r[1], area, rel_tol=0.05)
            ]
            self.promised(
                obs,
                request,
                model,
                "resolution",
                names[0] if names else f"{width}x{height}",
                request.parameters.get("resolution"),
            )

    def cancel(self, obs: Observation, task_id: str) -> None:
        spec = self.spec
        op = spec.operations["cancel"]
        rule = "operations.cancel.cancelable"
        self.examined(rule, "lifecycle", op.source)
        before = self.last_state.get(task_id)
        if before is None:
            return
        assert obs.status is not None
        ok = 200 <= obs.status < 300
        if before in op.cancelable:
            if not ok:
                self.find(
                    obs,
                    "cancel",
                    "breaking",
                    rule,
                    op.source,
                    f"cancel of a {before} task answers HTTP {obs.status}; the spec says "
                    f"{before} tasks can be canceled",
                    f"remove {before} from {rule}",
                )
            elif spec.cancel_response is not None:
                self.shape(obs, spec.cancel_response, "responses.cancel", "cancel")
            if ok:
                self.last_state[task_id] = "CANCELED"
        elif ok:
            self.find(
                obs,
                "cancel",
                "changed",
                rule,
                op.source,
                f"cancel of a {before} task was accepted; the spec says only "
                f"{', '.join(sorted(op.cancelable))} tasks can be",
                f"add {before} to {rule} if the provider now means it",
            )
        else:
            refused = spec.violations.get("cancel_refused")
            if refused is not None:
                self.answer_is(
                    obs,
                    refused.error,
                    None,
                    "violations.cancel_refused",
                    refused.source,
                    f"cancel of a {before} task",
                    None,
                )

    # -- timing -------------------------------------------------------------------------------

    def judge_timing(self) -> None:
        timing_mode = self.run.timing
        if timing_mode not in ("realistic", "real"):
            self.notes.append(
                f"lifecycle timing not judged: the target timed its tasks {timing_mode!r}, "
                "not as the spec does (record with a realistic mock or a live provider)"
            )
            return
        if not any(self.durations.values()):
            self.notes.append(
                "lifecycle timing not judged: no finished task in the run reported its times "
                "per state (the provider's answers may not carry them)"
            )
            return
        for state, rule_timing in self.spec.timing.items():
            observed = [d for d in self.durations.get(state, {}).values() if d > 0]
            rule = f"timing.{state}"
            if len(observed) < _MIN_TIMED:
                if observed:
                    self.notes.append(
                        f"{rule}: {len(observed)} finished tasks, fewer than {_MIN_TIMED} "
                        "needed to judge"
                    )
                continue
            self.examined(rule, "timing", rule_timing.source)
            mu = math.log(rule_timing.median)
            sigma = max((math.log(rule_timing.p95) - mu) / _Z95, 1e-6)
            logs = [math.log(d) for d in observed]
            shift = statistics.fmean(logs) - mu
            z = shift / (sigma / math.sqrt(len(logs)))
            if abs(z) > _Z_LIMIT and abs(shift) > _MIN_EFFECT:
                q = _quantiles(observed)
                way = "longer" if z > 0 else "shorter"
                self.find(
                    None,
                    "timing",
                    "changed",
                    rule,
                    rule_timing.source,
                    f"{state} lasts {way} than the spec says: observed median {q['p50']:.1f} s, "
                    f"p95 {q['p95']:.1f} s over {len(observed)} tasks; the spec says median "
                    f"{rule_timing.median:g} s, p95 {rule_timing.p95:g} s",
                    f"set {rule} to median {q['p50']:.0f}, p95 {q['p95']:.0f} (and raise "
                    "client timeouts to match)",
                )
                self.found[("timing", rule)].count = len(observed)

    def timing_table(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {}
        for state, rule_timing in self.spec.timing.items():
            observed = sorted(d for d in self.durations.get(state, {}).values() if d > 0)
            table[state] = {
                "spec": {"median": rule_timing.median, "p95": rule_timing.p95},
                "observed": _quantiles(observed) if observed else None,
                "samples": [round(d, 3) for d in observed],
            }
        return table


def _timing_against(analysis: Analysis, earlier: Analysis, spec: Spec) -> None:
    """Time per state that moved since the baseline, by the same test as against the spec.

    Two samples' mean log-durations are compared with the spread the spec's
    distribution implies; a move must clear the same bar (4.5 standard
    errors, and more than a quarter) before it is reported.
    """
    reported = {f.key for f in analysis.findings}
    for state, row in analysis.timing.items():
        rule_timing = spec.timing.get(state)
        now = [d for d in row.get("samples", []) if d > 0]
        before = [d for d in earlier.timing.get(state, {}).get("samples", []) if d > 0]
        if (
            rule_timing is None
            or len(now) < _MIN_TIMED
            or len(before) < _MIN_TIMED
            or ("timing", f"timing.{state}") in reported
        ):
            continue
        sigma = max((math.log(rule_timing.p95) - math.log(rule_timing.median)) / _Z95, 1e-6)
        shift = statistics.fmean(map(math.log, now)) - statistics.fmean(map(math.log, before))
        z = shift / (sigma * math.sqrt(1 / len(now) + 1 / len(before)))
        if abs(z) > _Z_LIMIT and abs(shift) > _MIN_EFFECT:
            was, is_now = statistics.median(before), statistics.median(now)
            analysis.findings.append(
                Finding(
                    "timing",
                    "changed",
                    f"timing.{state}",
                    rule_timing.source,
                    f"{state} median moved from {was:.1f} s to {is_now:.1f} s since the "
                    f"baseline ({len(before)} and {len(now)} tasks)",
                    "watch the next runs; update the spec's timing if it holds",
                    count=len(now),
                    examined=len(now),
                    since=analysis.run_time,
                )
            )


# -- helpers ----------------------------------------------------------------------------------

_SAMPLES: dict[str, Any] = {
    "progress": 50,
    "usage.duration": 5,
    "usage.sr": 720,
    "usage.ratio": "16:9",
    "items": [],
    "page.total": 1,
    "page.total_page": 1,
    "page.no": 1,
    "page.size": 10,
    "upload.ttl": 300,
    "upload.max_mb": 100,
    "result.url": "https://example.com/r.mp4",
    "error.status": 400,
}


def _sample_by_prefix(name: str) -> Any:
    if name.startswith("times."):
        return 1_767_225_600.0
    return "x"


def _error_sample(template: Template) -> dict[str, Any]:
    view: dict[str, Any] = {"error.status": 400}
    for spelled in template.placeholders().values():
        for name in re.findall(r"\{([^|}]+)", spelled):
            view.setdefault(name, _SAMPLES.get(name, "x"))
    return view


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """``{dotted path: JSON type}``; lists are one ``array`` (their items are values)."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        if prefix:
            out[prefix] = "object"
        for key, child in value.items():
            out.update(_flatten(child, f"{prefix}.{key}" if prefix else str(key)))
        return out
    out[prefix] = json_type(value)
    return out


def _compatible(want: str, got: str) -> bool:
    return want == got or "null" in (want, got)


def _shape_problems(
    expected: Mapping[str, str], observed: Mapping[str, str], *, added: bool
) -> list[str]:
    problems = []
    for path, want in expected.items():
        got = observed.get(path)
        if got is None:
            problems.append(f"{path} is missing")
        elif not _compatible(want, got):
            problems.append(f"{path} is a {got}, not a {want}")
    if added:
        problems += [f"{p} is new" for p in observed if p not in expected]
    return problems


def _path_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(f"(?P<{p}>[^/]+)" if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(regex + r"\Z")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    seen: set[str] = set()
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        elif part in seen:
            out.append(".*?")
        else:
            seen.add(part)
            out.append(f"(?P<{part}>.*?)")
    return re.compile("".join(out), re.DOTALL)


def _param_name(
    field_path: str, params: Mapping[str, Any], request: TaskRequest | None
) -> str | None:
    """The parameter a refusal names, else the one set to an extreme of its range or enum."""
    name = field_path.rsplit(".", 1)[-1]
    if name in params:
        return name
    if request is None:
        return None
    for candidate, param in params.items():
        value = request.parameters.get(candidate)
        if (
            candidate in request.explicit
            and value is not None
            and (
                value in (param.minimum, param.maximum)
                or (param.enum and value in (param.enum[0], param.enum[-1]))
            )
        ):
            return str(candidate)
    return None


def _truncated(obs: Observation) -> bool:
    body = obs.response_body
    return obs.response_form == "text" and isinstance(body, dict) and "bytes" in body


def _request_bytes(obs: Observation) -> bytes | None:
    """The create body as it was sent, where the recording can give it back exactly."""
    body = obs.request_body
    if obs.request_form == "json":
        return orjson.dumps(body) if _small_ints(body) else None
    if obs.request_form == "text" and isinstance(body, dict) and "bytes" not in body:
        text = body.get("text")
        return text.encode() if isinstance(text, str) else None
    if obs.request_form == "none":
        return b""
    return None


def _small_ints(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return all(_small_ints(v) for v in value.values())
    if isinstance(value, list):
        return all(_small_ints(v) for v in value)
    return True


def _dig(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _same(observed: Any, wanted: Any) -> bool:
    if _numbers(observed, wanted):
        return math.isclose(float(observed), float(wanted), abs_tol=0.5)
    return str(observed) == str(wanted)


def _pairs(values: list[float]) -> Iterable[tuple[float, float]]:
    return itertools.pairwise(sorted(values))


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p95": at(0.95), "max": ordered[-1]}


def _source(raw: Mapping[str, Any], *path: str) -> str:
    """The ``source`` of a spec section, or of its nearest parent that has one."""
    node: Any = raw
    found = str(raw.get("source", ""))
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get("source"), str):
            found = node["source"]
    return found


def _poll_source(spec: Spec) -> str:
    return _source(spec.raw, "client", "poll_interval")
