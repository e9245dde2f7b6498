"""What a client written against one spec breaks on another: ``paddock diff OLD.yaml NEW.yaml``.

A spec is a promise to clients, so a new version of it (the provider changed its
API, or a proxy's spec is laid beside the native one) is judged the way oasdiff
judges OpenAPI, by what a client of OLD experiences on NEW:

- request side: whatever OLD accepted that NEW refuses or no longer honours is
  breaking; loosening is not;
- response side: whatever a reader of OLD relies on that NEW removes, moves or
  retypes is breaking; additions are not;
- a changed default is listed but not breaking (a client relying on it gets a
  different video, not an error), and so are timing, progress and client guidance.

The comparison runs over the typed ``Spec`` (``extends`` and model ``extends``
resolved) and is generic over the format: no provider is named here. ``where`` is
a dotted path in the resolved document, so for a spec that ``extends`` another the
key may be written in the parent file. A media rule a model inherits from
``media_kinds`` is reported there, once per model that uses it. Response shapes
are compared field by field through ``Template.placeholders`` and
``Template.literals``; a query field is reported under ``responses.query.base``
unless the state's own shape writes it.

Kinds (B breaking, N not, B/N by direction):

- hosts, client, auth, limits: host-removed B, host-changed B, host-added N,
  default-changed N, region-name-changed N, client-guidance-changed N, auth-changed B,
  auth-relaxed N, limit-lowered B, limit-raised N, poll-interval-raised B (a pace OLD allowed
  is now answered 429), poll-interval-lowered N
- operations and request layout: operation-removed B, operation-added N, method-changed B,
  path-changed B, content-type-changed B/N, header-required B, header-dropped N,
  unknown-answer-changed B, cancelable-narrowed B, cancelable-widened N, body-field-moved B,
  parameter-container-removed B, parameter-container-added N, required-object-added B,
  required-object-removed N, uploads-removed B, uploads-added N, uploads-changed B
- lifecycle and results: state-renamed B (sent as a word OLD does not know),
  state-word-added B (may be sent as one), state-word-dropped N, edge-added B (into a state
  OLD never reached from there), edge-shortcut-added N, edge-removed N, progress-changed N,
  timing-changed N, retention-shortened B, retention-lengthened N, result-property-changed B/N
  (codec, expiry parameter and losing link re-issue break; fps, gaining re-issue and
  signature parameters do not), output-shape-changed N, task-id-changed B
- responses: response-status-changed B, response-field-removed B, response-field-moved B,
  response-field-type-changed B, response-field-value-changed B, response-field-added N
- errors: error-status-changed B, error-code-changed B, error-type-changed B,
  envelope-changed B, error-message-changed N, error-category-changed N, error-removed N,
  error-added N
- models: model-removed B, model-added N, attribute-changed B, attribute-added N,
  prompt-required B, prompt-optional N, prompt-overflow-rejected B,
  prompt-overflow-truncated N, parameter-removed B (now ignored), parameter-unsupported B
  (now refused), parameter-added N, parameter-refusal-dropped N, type-changed B,
  range-narrowed B, range-widened N, enum-value-removed B, enum-value-added N,
  default-changed N, media-type-removed B, media-type-added N, media-required B,
  media-rule-tightened B, media-rule-loosened N, media-format-removed B, media-format-added N,
  media-field-removed B, media-field-added N, media-field-changed B

Not compared, on purpose:

- ``source`` texts, ``title``, ``spec_version`` and ``provider``: documentation and
  identity, nothing a client sees (each change still quotes its rule's source);
- ``request.tolerated``: unknown body fields are ignored either way, the list only
  changes what the mock's journal marks as ignored;
- vocabularies and error envelopes by name alone, ``media_kinds`` and ``defaults``:
  they are compared where they take effect (response shapes, each error, each model's
  media rules and task ids);
- derived fields (``body_fields``, ``body_prefixes``, ``media_fields``, ``digest``).

The format has no required parameters (a parameter is accepted, refused, or absent and
so ignored), hence no ``parameter-added-required``: a new required input shows up as
``media-required``, ``prompt-required`` or ``required-object-added``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from contracts.spec import ErrorDef, MediaRule, ModelRules, Operation, Parameter, Spec
from contracts.wire import CANONICAL_STATES, Template

__all__ = ["SpecChange", "diff_specs", "render_changes"]

Path = tuple[str, ...]
Slot = tuple[str, Any]  # ("=", placeholder) or ("literal", value)

_SLOTS = re.compile(r"\{(old|new)\}")
LIMIT = ("limit-lowered", "limit-raised")
RANGE = ("range-narrowed", "range-widened")
MEDIA = ("media-rule-tightened", "media-rule-loosened")
POLL = ("poll-interval-raised", "poll-interval-lowered")


@dataclass(frozen=True, slots=True)
class SpecChange:
    """One difference between two specs, judged from the side of a client of the old one."""

    kind: str
    breaking: bool
    where: str
    old: Any
    new: Any
    message: str
    source: str = ""

    def as_json(self) -> dict[str, Any]:
        """The change as the JSON report writes it (its values are JSON-safe already)."""
        return asdict(self)


def diff_specs(old: Spec, new: Spec) -> list[SpecChange]:
    """Every change from ``old`` to ``new`` a client can notice, breaking ones first.

    The order is fixed (breaking, then location, kind and values) so two runs over the
    same files print the same report, and a CI diff of reports stays quiet.
    """
    out = _Changes(old, new)
    for compare in (_spec_wide, _operations, _request, _lifecycle, _responses, _errors, _models):
        compare(out, old, new)
    return out.result()


def render_changes(changes: list[SpecChange], fmt: str, *, old: str, new: str) -> str:
    """The report as ``text`` (a terminal), ``markdown`` (a pull-request comment) or ``json``.

    JSON: ``{"old", "new", "breaking": N, "changes": [{kind, breaking, where, old, new,
    message, source}]}`` with changes in ``diff_specs`` order, so tools can rely on it.
    """
    ordered = sorted(changes, key=_order)
    breaking = sum(c.breaking for c in ordered)
    if fmt == "json":
        doc = {
            "old": old,
            "new": new,
            "breaking": breaking,
            "changes": [c.as_json() for c in ordered],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    total = len(ordered)
    summary = f"{breaking} breaking, {total - breaking} non-breaking change{'s' * (total != 1)}"
    summary = summary if total else "no changes"
    if fmt == "markdown":
        return _markdown(ordered, summary, old, new)
    if fmt == "text":
        return _text(ordered, summary, old, new)
    raise ValueError(f"unknown format {fmt!r}; use text, markdown or json")


# -- collecting ---------------------------------------------------------------------------------


class _Changes:
    """Collects changes and works out each one's ``where`` text and ``source``."""

    def __init__(self, old: Spec, new: Spec) -> None:
        self.old, self.new = old, new
        self.items: list[SpecChange] = []

    def add(self, kind: str, breaking: bool, path: Path, old: Any, new: Any, says: str) -> None:
        """Record a change; ``says`` may name ``{old}`` and ``{new}``."""
        shown = {"old": _show(old), "new": _show(new)}
        message = _SLOTS.sub(lambda m: shown[m.group(1)], says)
        # The NEW rule's source where NEW has that rule, else the OLD one's.
        (old_depth, old_source), (new_depth, new_source) = (
            _source_at(spec.raw, path) for spec in (self.old, self.new)
        )
        source = new_source if new_depth >= old_depth else old_source
        change = SpecChange(
            kind, breaking, ".".join(path), _plain(old), _plain(new), message, source
        )
        self.items.append(change)

    def change(self, kind: str, breaking: bool, path: Path, old: Any, new: Any, says: str) -> None:
        """Record a change only if the two values differ."""
        if old != new:
            self.add(kind, breaking, path, old, new, says)

    def bound(
        self,
        path: Path,
        old: Any,
        new: Any,
        upper: bool,
        kinds: tuple[str, str],
        what: str,
        unit: str = "",
        verb: str = "refused",
    ) -> None:
        """A numeric limit moved: tighter is ``kinds[0]`` (breaking), looser ``kinds[1]``.

        ``None`` is no limit; ``upper`` says whether the limit caps values or floors them.
        """
        if old == new:
            return
        far = math.inf if upper else -math.inf
        tighter = (far if new is None else new) < (far if old is None else old)
        tighter = tighter if upper else not tighter
        beyond, within, reach = (
            ("above", "up to", "up to") if upper else ("below", "from", "down to")
        )
        was = f"was {within} {{old}}{unit}" if old is not None else "was unbounded"
        if tighter:
            says = f"{what} {beyond} {{new}}{unit} is now {verb} ({was})"
        elif new is None:
            says = f"{what} is no longer bounded ({was})"
        else:
            says = f"{what} {reach} {{new}}{unit} is now accepted ({was})"
        self.add(kinds[0] if tighter else kinds[1], tighter, path, old, new, says)

    def result(self) -> list[SpecChange]:
        # A rule inherited from a shared place (media_kinds, defaults) is found once per user.
        unique = {json.dumps(c.as_json(), sort_keys=True): c for c in self.items}
        return sorted(unique.values(), key=_order)


def _order(change: SpecChange) -> tuple[Any, ...]:
    values = json.dumps([change.old, change.new], sort_keys=True)
    return (not change.breaking, change.where, change.kind, values, change.message)


def _source_at(raw: Mapping[str, Any], path: Path) -> tuple[int, str]:
    """The ``source`` nearest to ``path`` in a raw document, and how deep it was found."""
    depth, found, node = 0, str(raw.get("source") or ""), raw
    for index, key in enumerate(path, start=1):
        if not isinstance(node, Mapping) or key not in node:
            break
        node = node[key]
        if isinstance(node, Mapping) and isinstance(node.get("source"), str):
            depth, found = index, node["source"]
    return depth, found


def _plain(value: Any) -> Any:
    """A JSON-safe, order-stable copy: sets become sorted lists, mappings plain dicts."""
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if value is None or isinstance(value, (str, int, float)) else str(value)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(_plain(value), ensure_ascii=False)


def _keyed(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """Each key of either mapping, sorted, with its value on each side (None where absent)."""
    for key in sorted(set(old) | set(new)):
        yield key, old.get(key), new.get(key)


def _has(raw: Any, keys: Path) -> bool:
    for key in keys:
        if not isinstance(raw, Mapping) or key not in raw:
            return False
        raw = raw[key]
    return True


# -- spec-wide values ---------------------------------------------------------------------------

# Values with one meaning across the spec: (Spec attribute, where, kind, breaking, message).
# fmt: off
_SCALARS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("default_region", "hosts.default", "default-changed", False,
     "a client taking the default host now calls region {new} (was {old})"),
    ("region_name", "defaults.region", "region-name-changed", False,
     "answers now name the region {new} (was {old})"),
    ("api_key_env", "client.api_key_env", "client-guidance-changed", False,
     "the reference client now reads its key from {new} (was {old})"),
    ("env_hint", "client.env_hint", "client-guidance-changed", False,
     "the base-URL hint is now {new} (was {old})"),
    ("poll_initial", "client.poll_interval.initial", "client-guidance-changed", False,
     "the documented first poll interval is now {new} s (was {old} s)"),
    ("poll_max", "client.poll_interval.max", "client-guidance-changed", False,
     "the documented longest poll interval is now {new} s (was {old} s)"),
    ("retry_query_statuses", "client.retry_statuses.query", "client-guidance-changed", False,
     "query statuses worth a retry are now {new} (was {old})"),
    ("auth_header", "auth.header", "auth-changed", True,
     "the key must now be sent in the {new} header (was {old}), so OLD's calls are refused"),
    ("auth_scheme", "auth.scheme", "auth-changed", True,
     "the key must now be sent with the scheme {new} (was {old}), so OLD's calls are refused"),
    ("model_path", "request.model", "body-field-moved", True,
     "the model must now be sent at {new} (was {old})"),
    ("prompt_path", "request.prompt", "body-field-moved", True,
     "the prompt must now be sent at {new} (was {old})"),
    ("media_form", "request.media.form", "body-field-moved", True,
     "media must now be sent as {new} (was {old})"),
    ("media_path", "request.media.path", "body-field-moved", True,
     "media must now be sent at {new} (was {old})"),
    ("result_codec", "results.codec.value", "result-property-changed", True,
     "result videos are now {new} (was {old})"),
    ("result_fps", "results.fps.value", "result-property-changed", False,
     "result videos now run at {new} fps (was {old})"),
    ("signature_params", "results.signature_params", "result-property-changed", False,
     "result URLs are now signed with {new} (was {old})"),
)
# fmt: on


def _spec_wide(out: _Changes, old: Spec, new: Spec) -> None:
    for attr, where, kind, breaking, says in _SCALARS:
        out.change(kind, breaking, tuple(where.split(".")), *_pair(old, new, attr), says)
    for region, was, now in _keyed(old.regions, new.regions):
        path: Path = ("hosts", "regions", region, "url")
        if now is None:
            out.add("host-removed", True, path, was, None, f"region {region} ({{old}}) is gone")
        elif was is None:
            out.add("host-added", False, path, None, now, f"region {region} is new at {{new}}")
        else:
            out.change("host-changed", True, path, was, now, f"region {region} moved to {{new}}")
    body = ("limits", "body_bytes", "value")
    out.bound(body, *_pair(old, new, "body_limit"), True, LIMIT, "a request body", " bytes")
    pace, what = ("limits", "poll_min_interval", "value"), "polling one task at an interval"
    polls = _pair(old, new, "poll_min_interval")
    out.bound(pace, *polls, False, POLL, what, " s", "answered 429")
    refuses = _pair(old, new, "refuses_authorization")
    path = ("results", "refuses_authorization", "value")
    if refuses == (False, True):
        says = "the result URL now refuses a download that sends Authorization"
        out.add("auth-changed", True, path, *refuses, says)
    elif refuses == (True, False):
        says = "the result URL now accepts a download that sends Authorization"
        out.add("auth-relaxed", False, path, *refuses, says)
    reissue = _pair(old, new, "reissue_on_poll")
    verb = "now renews" if reissue[1] else "no longer renews"
    says = f"polling again {verb} an expired result URL"
    path = ("results", "reissue_on_poll", "value")
    out.change("result-property-changed", not reissue[1], path, *reissue, says)
    expiry = _pair(old, new, "expiry_param")
    says = "a result URL's expiry is now read from its {new} parameter (was {old})"
    out.change(
        "result-property-changed", expiry[0] is not None, ("results", "expiry_param"), *expiry, says
    )
    for name, was, now in _keyed(old.resolutions, new.resolutions):
        says = f"resolution {name} now renders as {{new}} [width, height, sr] (was {{old}})"
        says = says if was and now else f"resolution {name} is now {'gone' if was else 'known'}"
        out.change("output-shape-changed", False, ("resolutions", name), was, now, says)
    for name, rows_was, rows_now in _keyed(old.frames.sizes, new.frames.sizes):
        # A resolution or ratio coming or going is reported above and below; here, a size moved.
        for ratio, was, now in _keyed(rows_was or {}, rows_now or {}):
            if was and now:
                says = f"{name} at {ratio} now renders as {{new}} [width, height] (was {{old}})"
                path = ("resolutions", name, "frames", ratio)
                out.change("output-shape-changed", False, path, list(was), list(now), says)
    for name, was, now in _keyed(old.ratios, new.ratios):
        says = f"ratio {name} now renders with aspect {{new}} (was {{old}})"
        out.change("output-shape-changed", False, ("ratios", name), was, now, says)


def _pair(old: Spec, new: Spec, attr: str) -> tuple[Any, Any]:
    return getattr(old, attr), getattr(new, attr)


# -- operations and request layout --------------------------------------------------------------


def _operations(out: _Changes, old: Spec, new: Spec) -> None:
    for kind, was, now in _keyed(old.operations, new.operations):
        path: Path = ("operations", kind)
        if now is None:
            call = f"{was.method} {was.path}"
            out.add("operation-removed", True, path, call, None, f"the {kind} call {{old}} is gone")
        elif was is None:
            call = f"{now.method} {now.path}"
            out.add("operation-added", False, path, None, call, f"a {kind} call {{new}} is new")
        else:
            _operation(out, old, new, path, was, now)


def _operation(
    out: _Changes, old: Spec, new: Spec, path: Path, was: Operation, now: Operation
) -> None:
    call = f"the {was.kind} call"
    says = f"{call} now takes {{new}} (was {{old}})"
    out.change("method-changed", True, (*path, "method"), was.method, now.method, says)
    says = f"{call} moved to {{new}} (was {{old}})"
    out.change("path-changed", True, (*path, "path"), was.path, now.path, says)
    content = (*path, "content_type")
    if now.content_type is None:
        says = f"{call} no longer checks Content-Type (was {{old}})"
        out.change("content-type-changed", False, content, was.content_type, None, says)
    else:
        says = f"{call} is refused unless Content-Type is {{new}} (was {{old}})"
        out.change("content-type-changed", True, content, was.content_type, now.content_type, says)
    headers = ({h.name: h.value for h in was.headers}, {h.name: h.value for h in now.headers})
    for name, value_was, value_now in _keyed(*headers):
        where = (*path, "headers", name)
        if value_now is None:
            says = f"{call} no longer requires the header {name}"
            out.add("header-dropped", False, where, value_was, None, says)
        else:
            says = f"{call} is refused without the header {name}: {{new}}"
            says += " (was {old})" if value_was is not None else " (was not required)"
            out.change("header-required", True, where, value_was, value_now, says)
    for rule in ("unknown", "expired"):
        answers = _answer(old, getattr(was, rule)), _answer(new, getattr(now, rule))
        says = f"{call} with an {rule} task id now gets {{new}} (was {{old}})"
        out.change("unknown-answer-changed", True, (*path, rule), *answers, says)
    lost, gained = was.cancelable - now.cancelable, now.cancelable - was.cancelable
    where = (*path, "cancelable")
    if lost:
        says = f"a task in {'/'.join(sorted(lost))} can no longer be canceled"
        out.add("cancelable-narrowed", True, where, was.cancelable, now.cancelable, says)
    if gained:
        says = f"a task in {'/'.join(sorted(gained))} can now be canceled"
        out.add("cancelable-widened", False, where, was.cancelable, now.cancelable, says)


def _answer(spec: Spec, rule: Mapping[str, str] | None) -> str | None:
    """How an unknown or expired task id is answered, as a client sees it."""
    if rule is None:
        return None
    if rule.get("error"):
        error = spec.errors[rule["error"]]
        return f"HTTP {error.status} {error.code}"
    return f"state {rule.get('state')}"


def _request(out: _Changes, old: Spec, new: Spec) -> None:
    containers = set(old.parameter_containers), set(new.parameter_containers)
    path: Path = ("request", "parameters")
    for container in sorted(containers[0] ^ containers[1]):
        label = container or "the top level of the body"
        if container in containers[0]:
            says = f"parameters sent in {label} are no longer read"
            out.add("parameter-container-removed", True, path, container, None, says)
        else:
            says = f"parameters may now also be sent in {label}"
            out.add("parameter-container-added", False, path, None, container, says)
    for name, was, now in _keyed(old.required_objects, new.required_objects):
        path = ("request", "required_objects", name)
        if was is None:
            says = f"a request without the object {name} is now refused"
            out.add("required-object-added", True, path, None, name, says)
        elif now is None:
            says = f"a request without the object {name} is now accepted"
            out.add("required-object-removed", False, path, name, None, says)
        else:
            answers = old.violations[was].error, new.violations[now].error
            _error(out, old, new, (*path, "violation"), f"a request without {name}", *answers)
    uploads = (old.upload_scheme, old.upload_header), (new.upload_scheme, new.upload_header)
    if uploads[1][0] is None:
        says = "local files can no longer be uploaded and named {old}"
        out.change("uploads-removed", True, ("uploads",), uploads[0][0], None, says)
    elif uploads[0][0] is None:
        says = "local files can now be uploaded and named {new}"
        out.add("uploads-added", False, ("uploads",), None, uploads[1][0], says)
    else:
        says = "uploaded files are now named and sent as {new} (was {old})"
        out.change("uploads-changed", True, ("uploads",), *uploads, says)
        ttl = ("uploads", "policy_ttl", "value")
        _retention(out, ttl, "an upload policy", old.upload_policy_ttl, new.upload_policy_ttl)
        size = ("uploads", "max_file_bytes", "value")
        sizes = old.upload_max_bytes, new.upload_max_bytes
        out.bound(size, *sizes, True, LIMIT, "an uploaded file", " bytes")


# -- lifecycle ----------------------------------------------------------------------------------


def _lifecycle(out: _Changes, old: Spec, new: Spec) -> None:
    for name in sorted(set(old.vocabularies) & set(new.vocabularies)):
        for state, was, now in _keyed(old.vocabularies[name], new.vocabularies[name]):
            path: Path = ("states", "vocabularies", name, state)
            unknown = [w for w in now or () if w not in (was or ())]
            dropped = [w for w in was or () if w not in (now or ())]
            if unknown and now[0] in unknown:
                says = f"{state} is now sent as {now[0]!r}, a {name} word OLD does not know"
                out.add("state-renamed", True, path, was, now, says + " (was {old})")
            elif unknown:
                says = f"{state} may now be sent as {unknown[0]!r}, a {name} word OLD does not know"
                out.add("state-word-added", True, path, was, now, says)
            elif dropped:
                says = f"{state} is no longer sent as {', '.join(map(repr, dropped))}"
                out.add("state-word-dropped", False, path, was, now, says)
    reachable = _reachable(old.edges)
    for state in sorted(set(old.edges) | set(new.edges)):
        was, now = old.edges.get(state, frozenset()), new.edges.get(state, frozenset())
        path = ("states", "edges", state)
        for target in sorted(now - was):
            if target in reachable[state]:
                says = f"a {state} task may now go straight to {target}"
                out.add("edge-shortcut-added", False, path, None, target, says)
            else:
                says = f"a {state} task may now become {target}, which OLD never allowed from there"
                out.add("edge-added", True, path, None, target, says)
        for target in sorted(was - now):
            says = f"a {state} task no longer becomes {target}"
            out.add("edge-removed", False, path, target, None, says)
    for state, was, now in _keyed(old.progress or {}, new.progress or {}):
        says = f"progress reported in {state} is now {{new}} (was {{old}})"
        out.change("progress-changed", False, ("progress", state), was, now, says)
    for state, was, now in _keyed(old.timing, new.timing):
        pair_was = None if was is None else [was.median, was.p95]
        pair_now = None if now is None else [now.median, now.p95]
        says = f"{state} now lasts {{new}} s [median, p95] (was {{old}} s)"
        out.change("timing-changed", False, ("timing", state), pair_was, pair_now, says)
    task, url = ("retention", "task", "seconds"), ("retention", "result_url", "seconds")
    _retention(out, task, "a task id", old.task_retention, new.task_retention)
    _retention(out, url, "a result URL", old.result_retention, new.result_retention)


def _reachable(edges: Mapping[str, frozenset[str]]) -> dict[str, set[str]]:
    """For each state, every state a task can reach from it along the edges."""
    out: dict[str, set[str]] = {}
    for start in (*CANONICAL_STATES, *edges):
        seen: set[str] = set()
        todo = list(edges.get(start, ()))
        while todo:
            state = todo.pop()
            if state not in seen:
                seen.add(state)
                todo.extend(edges.get(state, ()))
        out[start] = seen
    return out


def _retention(out: _Changes, path: Path, what: str, old: float, new: float) -> None:
    shorter = new < old
    kind = "retention-shortened" if shorter else "retention-lengthened"
    out.change(kind, shorter, path, old, new, f"{what} now expires after {{new}} s (was {{old}} s)")


# -- response shapes ----------------------------------------------------------------------------

_SHAPES: tuple[tuple[str, str, Callable[[Spec], Template | None]], ...] = (
    ("create answers", "responses.create.body", lambda s: s.create_response),
    ("cancel answers", "responses.cancel.body", lambda s: s.cancel_response),
    ("list answers", "responses.list.body", lambda s: s.list_response),
    ("list items", "responses.list.item", lambda s: s.list_item),
    ("upload-policy answers", "responses.upload_policy.body", lambda s: s.upload_response),
)
_VARS = re.compile(r"\{([^|}]+)")
_VOCAB = re.compile(r"vocab:(\w+)")


def _responses(out: _Changes, old: Spec, new: Spec) -> None:
    for operation in ("create", "query", "cancel", "list", "upload_policy"):
        statuses = _status(old, operation), _status(new, operation)
        if None not in statuses:  # a call that is gone or new is reported with the operations
            says = f"a successful {operation} call now answers HTTP {{new}} (was {{old}})"
            path = ("responses", operation, "status")
            out.change("response-status-changed", True, path, *statuses, says)
    for label, where, read in _SHAPES:
        was, now = read(old), read(new)
        if was is not None and now is not None:
            _shape(out, was, now, _fixed(tuple(where.split(".")), label))
    # A query field the state's own shape writes is reported there, any other under base;
    # a field that is gone is looked for in OLD, a new one in NEW.
    sides = {
        "response-field-added": (new,),
        "response-field-removed": (old,),
        "response-field-moved": (old,),
    }
    for state in sorted(set(old.query_response.states) & set(new.query_response.states)):

        def in_state(path: str, kind: str, state: str = state) -> tuple[Path, str]:
            keys = tuple(path.split("."))
            for spec in sides.get(kind, (old, new)):
                if _has(spec.raw["responses"]["query"]["states"].get(state), keys):
                    return ("responses", "query", "states", state), f"query answers in {state}"
            return ("responses", "query", "base"), "query answers"

        _shape(out, old.query_response.states[state], new.query_response.states[state], in_state)
    for name in sorted(set(old.envelopes) & set(new.envelopes)):
        base = ("responses", "error", "envelopes", name)
        locate = _fixed(base, f"errors in the {name} envelope")
        _shape(out, old.envelopes[name], new.envelopes[name], locate)


def _fixed(base: Path, label: str) -> Callable[[str, str], tuple[Path, str]]:
    return lambda path, kind: (base, label)


def _status(spec: Spec, operation: str) -> int | None:
    if operation == "create":
        return spec.create_status
    if operation == "query":
        return spec.query_response.status
    body = spec.raw["responses"].get(operation)
    return body.get("status") if isinstance(body, Mapping) else None


def _shape(
    out: _Changes, old: Template, new: Template, locate: Callable[[str, str], tuple[Path, str]]
) -> None:
    """Report a response shape's field changes; ``locate`` gives a field's base path and label."""
    vocabularies = out.old.vocabularies, out.new.vocabularies

    def same(was: Slot, now: Slot) -> bool:
        # {state|vocab:status} and {state|vocab:upstream} are the same field if the words are.
        return was == now or _words(was, vocabularies[0]) == _words(now, vocabularies[1])

    for kind, path, was, now in _shape_diff(_fields(old), _fields(new), same):
        base, who = locate(path, kind)
        field = path or "the body"
        says = {
            "response-field-removed": f"{who} no longer carry {field} (was {{old}})",
            "response-field-moved": f"{who} now carry {field} at {{new}}",
            "response-field-added": f"{who} now also carry {field} ({{new}})",
            "response-field-type-changed": f"{who} now carry {field} as {{new}} (was {{old}})",
            "response-field-value-changed": f"{who} now carry {{new}} in {field} (was {{old}})",
        }[kind]
        keys = tuple(path.split(".")) if path else ()
        out.add(kind, kind != "response-field-added", (*base, *keys), was, now, says)


def _fields(template: Template) -> dict[str, Slot]:
    """Each JSON path a reader can rely on, with the placeholder or literal that fills it."""
    fields: dict[str, Slot] = {p: ("=", s) for p, s in template.placeholders().items()}
    fields.update({p: ("literal", v) for p, v in template.literals().items()})
    fields.update(_arrays(template.source, ""))
    return fields


def _arrays(node: Any, path: str) -> dict[str, Slot]:
    # Template walks do not descend into arrays, so an array is one field, compared whole.
    if isinstance(node, list):
        return {path: ("literal", node)}
    if not isinstance(node, dict):
        return {}
    found: dict[str, Slot] = {}
    for key, value in node.items():
        found.update(_arrays(value, f"{path}.{key}" if path else str(key)))
    return found


def _words(slot: Slot, vocabularies: Mapping[str, Mapping[str, tuple[str, ...]]]) -> Slot:
    if slot[0] != "=":
        return slot
    spell = _VOCAB.sub(lambda m: json.dumps(_plain(vocabularies.get(m[1]))), slot[1])
    return ("=", spell)


def _shape_diff(
    old: dict[str, Slot], new: dict[str, Slot], same: Callable[[Slot, Slot], bool]
) -> list[tuple[str, str, Any, Any]]:
    """(kind, path, old, new) for each field a reader of ``old`` finds changed in ``new``.

    A field whose value became an object (or the reverse) is retyped, not removed; a
    removed placeholder that reappears at a path OLD did not have has moved.
    """

    def inside(path: str, fields: Mapping[str, Slot]) -> bool:
        return any(p.startswith((path + ".", path + "[")) for p in fields)

    def parent(path: str, fields: Mapping[str, Slot]) -> str | None:
        parts = path.split(".")
        prefixes = (".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1))
        return next((p for p in prefixes if p in fields), None)

    found: list[tuple[str, str, Any, Any]] = []
    moved_to: set[str] = set()
    for path, slot in old.items():
        if path in new:
            if not same(slot, new[path]):
                found.append((_retyped(slot, new[path]), path, slot[1], new[path][1]))
        elif inside(path, new):
            found.append(("response-field-type-changed", path, slot[1], "an object"))
        elif (above := parent(path, new)) is not None:
            found.append(("response-field-type-changed", above, "an object", new[above][1]))
        else:
            targets = [p for p, s in new.items() if s[0] == "=" and same(slot, s) and p not in old]
            # Prefer a free target with the same last key: output.code -> data.output.code.
            targets.sort(key=lambda p: (p in moved_to, p.split(".")[-1] != path.split(".")[-1]))
            if targets:
                moved_to.add(targets[0])
                found.append(("response-field-moved", path, path, targets[0]))
            else:
                found.append(("response-field-removed", path, slot[1], None))
    for path, slot in new.items():
        known = path in old or path in moved_to or inside(path, old) or parent(path, old)
        if not known:
            found.append(("response-field-added", path, None, slot[1]))
    return list(dict.fromkeys(found))


def _retyped(was: Slot, now: Slot) -> str:
    """Same values in another format (or JSON type) is a retype; anything else a new value."""
    if was[0] == now[0] == "=" and _VARS.findall(was[1]) == _VARS.findall(now[1]):
        return "response-field-type-changed"
    if was[0] == now[0] == "literal" and type(was[1]) is not type(now[1]):
        return "response-field-type-changed"
    return "response-field-value-changed"


# -- errors -------------------------------------------------------------------------------------


def _errors(out: _Changes, old: Spec, new: Spec) -> None:
    for key, was, now in _keyed(old.errors, new.errors):
        path = ("errors", key)
        if now is None:
            answer = f"HTTP {was.status} {was.code}"
            says = "the provider no longer answers {old}"
            out.add("error-removed", False, path, answer, None, says)
        elif was is None:
            answer = f"HTTP {now.status} {now.code}"
            out.add("error-added", False, path, None, answer, "the provider may now answer {new}")
        else:
            _error(out, old, new, path, f"error {key}", was, now, own_keys=True)
    for kind in sorted(set(old.violations) & set(new.violations)):
        was, now = old.violations[kind], new.violations[kind]
        path = ("violations", kind)
        if was.error.key != now.error.key:  # the same entry is compared once, under errors
            _error(out, old, new, (*path, "error"), f"the {kind} violation", was.error, now.error)
        if was.message or now.message:
            texts = was.message or was.error.message, now.message or now.error.message
            says = f"the {kind} violation now says {{new}} (was {{old}})"
            out.change("error-message-changed", False, (*path, "message"), *texts, says)


def _shows_type(spec: Spec, error: ErrorDef) -> bool:
    shape = spec.envelopes[error.envelope].placeholders().values()
    return any("error.type" in _VARS.findall(spelled) for spelled in shape)


def _error(
    out: _Changes,
    old: Spec,
    new: Spec,
    path: Path,
    what: str,
    was: ErrorDef,
    now: ErrorDef,
    *,
    own_keys: bool = False,
) -> None:
    """What a client sees of two catalogue errors: status, code, type, envelope (and words).

    With ``own_keys`` each difference sits at the entry's own key (``errors.K.code``);
    otherwise at ``path`` (a violation's ``error``), where the entry was swapped.
    """

    def at(key: str) -> Path:
        return (*path, key) if own_keys else path

    compared = [
        ("status", "error-status-changed", True, "now answers HTTP {new} (was {old})"),
        ("code", "error-code-changed", True, "now answers code {new} (was {old})"),
    ]
    if _shows_type(old, was) and _shows_type(new, now):  # a type no envelope shows is unseen
        compared.append(("type", "error-type-changed", True, "now answers type {new} (was {old})"))
    if own_keys:  # a swapped entry's words and category follow from its code
        compared.append(("message", "error-message-changed", False, "now says {new} (was {old})"))
        compared.append(
            ("category", "error-category-changed", False, "is now a {new} failure (was {old})")
        )
    for key, kind, breaking, says in compared:
        out.change(kind, breaking, at(key), getattr(was, key), getattr(now, key), f"{what} {says}")
    if was.envelope != now.envelope:
        shapes = _fields(old.envelopes[was.envelope]), _fields(new.envelopes[now.envelope])
        says = f"{what} now comes in the {{new}} envelope (was {{old}})"
        if shapes[0] != shapes[1]:
            out.add("envelope-changed", True, at("envelope"), was.envelope, now.envelope, says)


# -- models -------------------------------------------------------------------------------------


def _models(out: _Changes, old: Spec, new: Spec) -> None:
    for name, was, now in _keyed(old.models, new.models):
        path = ("models", name)
        if now is None:
            out.add("model-removed", True, path, name, None, f"requests for {name} are refused")
        elif was is None:
            out.add("model-added", False, path, None, name, f"model {name} is new")
        else:
            _model(out, new, path, was, now)


def _model(out: _Changes, new: Spec, base: Path, was: ModelRules, now: ModelRules) -> None:
    name = was.name
    own = "task_id" in new.raw["models"][name]
    path = (*base, "task_id") if own else ("defaults", "task_id")
    says = "task ids now look like {new} (were {old})"
    out.change("task-id-changed", True, path, was.task_id, now.task_id, says)
    for key, value_was, value_now in _keyed(was.attributes, now.attributes):
        path = (*base, "attributes", key)
        if value_was is None:
            says = f"{name} answers now carry {key} {{new}}"
            out.add("attribute-added", False, path, None, value_now, says)
        else:
            says = f"{name} answers now carry {key} {{new}} (was {{old}})"
            out.change("attribute-changed", True, path, value_was, value_now, says)
    _prompt(out, (*base, "prompt"), name, was, now)
    says = f"{name} videos now take their aspect from {{new}} (was {{old}})"
    aspect = (*base, "output", "aspect")
    out.change("output-shape-changed", False, aspect, was.aspect_sources, now.aspect_sources, says)
    groups = {frozenset(g) for g in was.media_one_of}, {frozenset(g) for g in now.media_one_of}
    path = (*base, "media_one_of")
    for group in sorted(groups[1] - groups[0], key=sorted):
        says = f"{name} now refuses a request without one of {' or '.join(sorted(group))}"
        out.add("media-required", True, path, None, group, says)
    for group in sorted(groups[0] - groups[1], key=sorted):
        says = f"{name} no longer needs one of {' or '.join(sorted(group))}"
        out.add("media-rule-loosened", False, path, group, None, says)
    for kind, rule_was, rule_now in _keyed(was.media, now.media):
        path = (*base, "media", kind)
        if rule_now is None:
            out.add("media-type-removed", True, path, kind, None, f"{name} now refuses {kind}")
        elif rule_was is None and rule_now.min > 0:
            says = f"{name} now refuses a request without {kind}"
            out.add("media-required", True, path, None, kind, says)
        elif rule_was is None:
            out.add("media-type-added", False, path, None, kind, f"{name} now accepts {kind}")
        else:
            _media(out, new, name, path, rule_was, rule_now)
    for param, param_was, param_now in _keyed(was.parameters, now.parameters):
        _parameter(out, name, (*base, "parameters", param), param_was, param_now)


def _prompt(out: _Changes, path: Path, name: str, was: ModelRules, now: ModelRules) -> None:
    old, new = was.prompt, now.prompt
    if new.required and not old.required:
        says = f"{name} now refuses a request without a prompt"
        out.add("prompt-required", True, (*path, "required"), False, True, says)
    elif old.required and not new.required:
        says = f"{name} now accepts a request without a prompt"
        out.add("prompt-optional", False, (*path, "required"), True, False, says)
    fate = "refused" if new.overflow == "reject" else "cut short"
    limits = old.max_length, new.max_length
    out.bound((*path, "max_length"), *limits, True, LIMIT, f"a {name} prompt", " characters", fate)
    if old.overflow != new.overflow:
        rejected = new.overflow == "reject"
        kind = "prompt-overflow-rejected" if rejected else "prompt-overflow-truncated"
        says = f"a {name} prompt over the limit is now {fate}"
        says += f" (was {'cut short' if rejected else 'refused'})"
        out.add(kind, rejected, (*path, "overflow"), old.overflow, new.overflow, says)


def _media(
    out: _Changes, new: Spec, model: str, base: Path, was: MediaRule, now: MediaRule
) -> None:
    own = new.raw["models"][model]["media"][was.type].get("rules")

    def at(*keys: str) -> Path:
        # A rule a model writes itself lives under its `rules`; otherwise in media_kinds.
        return (*base, "rules", *keys) if _has(own, keys) else ("media_kinds", now.uses, *keys)

    what = f"{model} {was.type}"
    says = f"{what} must now be {{new}} media (was {{old}})"
    out.change("type-changed", True, (*base, "uses"), was.kind, now.kind, says)
    if was.min == 0 and now.min > 0:
        says = f"{model} now refuses a request without {was.type}"
        out.add("media-required", True, (*base, "min"), was.min, now.min, says)
    else:
        out.bound((*base, "min"), was.min, now.min, False, MEDIA, f"{what} count")
    out.bound((*base, "max"), was.max, now.max, True, MEDIA, f"{what} count")
    for fmt in sorted(was.formats - now.formats):
        out.add(
            "media-format-removed", True, at("formats"), fmt, None, f"{what} in {fmt} is refused"
        )
    for fmt in sorted(now.formats - was.formats):
        out.add(
            "media-format-added", False, at("formats"), None, fmt, f"{what} in {fmt} is accepted"
        )
    limits = [
        (at("min_side"), was.min_side, now.min_side, False, f"{what} side", " px"),
        (at("aspect", "min"), was.aspect_min, now.aspect_min, False, f"{what} aspect", ""),
        (at("aspect", "max"), was.aspect_max, now.aspect_max, True, f"{what} aspect", ""),
        (at("max_bytes"), was.max_bytes, now.max_bytes, True, f"{what} size", " bytes"),
        (at("duration", "min"), was.duration_min, now.duration_min, False, f"{what} length", " s"),
        (at("duration", "max"), was.duration_max, now.duration_max, True, f"{what} length", " s"),
    ]
    for path, limit_was, limit_now, upper, label, unit in limits:
        out.bound(path, limit_was, limit_now, upper, MEDIA, label, unit)
    fields = (
        {f.name: [f.form, f.take] for f in was.fields},
        {f.name: [f.form, f.take] for f in now.fields},
    )
    for field, form_was, form_now in _keyed(*fields):
        path = (*base, "fields", field)
        if form_now is None:
            says = f"{what} sent in the field {field} is no longer read"
            out.add("media-field-removed", True, path, form_was, None, says)
        elif form_was is None:
            says = f"{what} may now be sent in the field {field}"
            out.add("media-field-added", False, path, None, form_now, says)
        else:
            says = f"{what} in the field {field} is now read as {{new}} [form, take] (was {{old}})"
            out.change("media-field-changed", True, path, form_was, form_now, says)


def _parameter(
    out: _Changes, model: str, path: Path, was: Parameter | None, now: Parameter | None
) -> None:
    """A parameter is honoured (supported), refused (``supported: false``) or, absent, ignored."""
    what = f"{model} {path[-1]}"
    texts = (was.describe() if was else None), (now.describe() if now else None)
    honoured = bool(was and was.supported), bool(now and now.supported)
    if honoured == (True, False):
        kind, fate = (
            ("parameter-removed", "ignored")
            if now is None
            else ("parameter-unsupported", "refused")
        )
        out.add(kind, True, path, *texts, f"{what} is now {fate} (was {{old}})")
    elif honoured == (False, True):
        out.add("parameter-added", False, path, *texts, f"{what} is now accepted ({{new}})")
    elif was is None and now is not None:
        says = f"{what} is now refused (was ignored)"
        out.add("parameter-unsupported", True, path, *texts, says)
    elif was is not None and now is None:
        says = f"{what} is now ignored (was refused)"
        out.add("parameter-refusal-dropped", False, path, *texts, says)
    if was is None or now is None or honoured != (True, True):
        return
    says = f"{what} must now be {{new}} (was {{old}})"
    out.change("type-changed", True, (*path, "type"), was.type, now.type, says)
    at = [p or "the parameter containers" for p in (was.path, now.path)]
    says = f"{what} must now be sent at {at[1]} (was {at[0]})"
    out.change("body-field-moved", True, (*path, "path"), was.path, now.path, says)
    enum = (*path, "enum")
    if was.enum is not None and now.enum is not None:
        for value in [v for v in was.enum if v not in now.enum]:
            says = f"{what} {value!r} is now refused"
            out.add("enum-value-removed", True, enum, value, None, says)
        for value in [v for v in now.enum if v not in was.enum]:
            says = f"{what} {value!r} is now accepted"
            out.add("enum-value-added", False, enum, None, value, says)
    elif now.enum is not None:
        says = f"{what} is now limited to {{new}}"
        out.add("range-narrowed", True, enum, None, now.enum, says)
    elif was.enum is not None:
        says = f"{what} is no longer limited to {{old}}"
        out.add("range-widened", False, enum, was.enum, None, says)
    out.bound((*path, "min"), was.minimum, now.minimum, False, RANGE, what)
    out.bound((*path, "max"), was.maximum, now.maximum, True, RANGE, what)
    length = (*path, "max_length")
    out.bound(length, was.max_length, now.max_length, True, LIMIT, what, " characters")
    if (was.has_default, was.default) != (now.has_default, now.default):
        gets = "{new}" if now.has_default else "the provider's choice"
        had = "{old}" if was.has_default else "the provider's choice"
        says = f"a {model} request without {path[-1]} now gets {gets} (was {had}), so a client "
        says += "relying on the default gets a different video"
        defaults = (
            (was.default if was.has_default else None),
            (now.default if now.has_default else None),
        )
        out.add("default-changed", False, (*path, "default"), *defaults, says)


# -- rendering ----------------------------------------------------------------------------------


def _text(changes: list[SpecChange], summary: str, old: str, new: str) -> str:
    lines = [f"{old} -> {new}: {summary}"]
    width = max((len(c.kind) for c in changes), default=0)
    for label, breaking in (("breaking", True), ("non-breaking", False)):
        group = [c for c in changes if c.breaking is breaking]
        lines += [f"{label}:"] if group else []
        for c in group:
            source = f"  [{c.source}]" if c.source else ""
            lines.append(f"  {c.kind:<{width}}  {c.where}: {c.message}{source}")
    return "\n".join(lines) + "\n"


def _markdown(changes: list[SpecChange], summary: str, old: str, new: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"### Spec diff: `{old}` → `{new}`", "", f"**{summary}**"]
    if changes:
        lines += ["", "| | kind | where | what a client of the old spec sees | source |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for c in changes:
            mark = "**breaking**" if c.breaking else "non-breaking"
            row = [mark, f"`{c.kind}`", f"`{cell(c.where)}`", cell(c.message), cell(c.source)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
