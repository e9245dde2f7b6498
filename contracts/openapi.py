"""An OpenAPI 3.1 document per provider, derived from its spec, and a schemathesis run against it.

The spec is the contract; this module states it in the language generic API
tooling speaks, so a server (the mock, or the provider itself) can be fuzzed
by schemathesis without an OpenAPI file written by hand that would drift from
the YAML. Everything comes from the ``Spec``: paths and methods, the auth
scheme, required headers, each model's parameters and media, the response
templates and the error catalogue. Nothing here names a provider.

Where JSON Schema cannot say what the services check, the document says it in
words and annotations instead of pretending: media rules that need the bytes
(format, pixels, aspect, duration) ride along as ``x-paddock-media``, and an
integer parameter notes that ``5.0`` is refused although JSON Schema calls it
an integer. Every request the document calls valid is one the mock accepts.

``run_schema_checks`` loads the document with schemathesis, generates positive
and negative cases per operation with hypothesis (seeded, no example
database), sends them through the caller's ``send`` and keeps what
schemathesis' own checks find, so one run works in-process against the mock
and over the network against a live provider.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import jsonschema.exceptions

from contracts.spec import ErrorDef, MediaRule, ModelRules, Operation, Parameter, Spec
from contracts.views import id_pattern

# The placeholder grammar is wire's; reading the templates here with the same
# expression keeps one definition of what a placeholder is.
from contracts.wire import _PLACEHOLDER, CANONICAL_STATES, Template

if TYPE_CHECKING:
    from schemathesis import Case
    from schemathesis.generation import GenerationMode
    from schemathesis.schemas import APIOperation

__all__ = [
    "SchemaProblem",
    "SchemaResult",
    "Send",
    "openapi_document",
    "run_schema_checks",
]

Json = dict[str, Any]

Send = Callable[[str, str, Mapping[str, str], bytes | None], tuple[int, Mapping[str, str], bytes]]
"""``send(method, path_and_query, headers, body) -> (status, headers, body)``.

The path is relative to the provider's base URL (``/api/v1/tasks/abc``), so
one run works in-process against the mock and against a live host.
"""

JSON_MEDIA = "application/json"
_UTC8_TIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{1,6}$"
_HTTP_URL = r"^https?://"
# A media URL any fetcher (and the mock's syntax check) takes: a host of
# letters, digits, dots and hyphens, then an optional plain path.
_MEDIA_URL = (
    r"^https?://[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?){0,4}(/[A-Za-z0-9._~%/-]{0,60})?$"
)
# YYYYMMDDhhmmss with days 01-28, so every value the pattern allows is a real date.
_LIST_TIME = r"^[1-9]\d{3}(0[1-9]|1[0-2])(0[1-9]|1\d|2[0-8])([01]\d|2[0-3])[0-5]\d[0-5]\d$"

# -- which rules each operation kind applies ----------------------------------------------------
#
# The spec names every kind of bad request and the catalogue error answering
# it; which kinds an operation meets is the operation kind's, as the validator
# (contracts.validate) and the mock's service apply them.

_EVERY_OPERATION = ("auth_missing", "auth_invalid", "throttled", "server_error")
_REQUEST_CHECKS: dict[str, tuple[str, ...]] = {
    "create": (
        "header_missing",
        "header_invalid",
        "content_type",
        "body_too_large",
        "body_not_json",
        "body_not_object",
        "model_missing",
        "model_unknown",
        "field_type",
        "media_missing",
        "media_count",
        "media_type",
        "media_url",
        "media_unreadable",
        "media_format",
        "media_bytes",
        "media_dimensions",
        "media_aspect",
        "media_duration",
        "prompt_missing",
        "prompt_too_long",
        "param_enum",
        "param_range",
        "param_length",
        "param_unsupported",
    ),
    "query": (),
    "cancel": ("cancel_refused",),
    "list": ("field_type", "param_range", "param_enum"),
    "upload_policy": ("param_enum", "model_missing", "model_unknown"),
}

# -- what each response template renders from ---------------------------------------------------
#
# A template field is left out when its value is absent from the view and is
# null when the value is None (contracts.wire). Which names a view always
# carries, and which may be None, is the view builders' (contracts.views,
# contracts.lifecycle.times_at, mock_server.service), so the schemas require
# exactly the fields the wire always carries.

_TASK_NAMES = frozenset(
    {
        "request_id",
        "state",
        "region",
        "task.id",
        "task.model",
        "task.prompt",
        "task.request_id",
        "task.upstream_id",
        "task.upstream_request_id",
        "times.submitted",
        "times.scheduled",
        "times.ended",
        "usage.duration",
        "usage.sr",
        "usage.ratio",
    }
)
# times_at: no scheduled time before a task runs (or once it was canceled while
# queued), no end time before it ends, neither for a task the service forgot.
_NULL_IN_STATE = {
    "times.scheduled": frozenset({"PENDING", "CANCELED", "UNKNOWN"}),
    "times.ended": frozenset({"PENDING", "RUNNING", "UNKNOWN"}),
}
_CREATE_NAMES = frozenset({"request_id", "state", "task.id", "task.model", "times.submitted"})
_ERROR_NAMES = frozenset(
    {"request_id", "error.code", "error.message", "error.type", "error.status"}
)
_LIST_NAMES = frozenset(
    {"request_id", "items", "page.total", "page.total_page", "page.no", "page.size"}
)
_UPLOAD_NAMES = frozenset(
    {
        "request_id",
        "upload.policy",
        "upload.signature",
        "upload.dir",
        "upload.host",
        "upload.ttl",
        "upload.max_mb",
        "upload.access_key_id",
    }
)


@dataclass(frozen=True)
class _View:
    """What one template renders from: names always present, names that may be None."""

    states: tuple[str, ...] = ()
    present: frozenset[str] = frozenset()
    nullable: frozenset[str] = frozenset()
    task_id_pattern: str | None = None
    errors: tuple[ErrorDef, ...] = ()
    item: Json = field(default_factory=dict)


# -- the document -------------------------------------------------------------------------------


def openapi_document(spec: Spec, *, server_url: str | None = None) -> dict[str, Any]:
    """The provider's API as an OpenAPI 3.1 document, every part read from ``spec``.

    ``server_url`` is where the document says the API answers: the spec's
    default region when None, a mock's provider prefix when testing one.
    """
    builder = _Builder(spec)
    paths: Json = {}
    for kind, op in spec.operations.items():
        paths.setdefault(op.path, {})[op.method.lower()] = builder.operation(kind, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": spec.title,
            "version": f"spec {spec.raw.get('spec_version', 1)}, digest {spec.digest}",
            "description": (
                f"Derived from paddock's spec {Path(spec.file).name} by contracts.openapi; "
                "rules keep their source in x-paddock-source. Regenerate, do not edit."
            ),
        },
        "servers": [{"url": server_url if server_url is not None else spec.base_url()}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": builder.security_scheme()},
            "schemas": builder.components,
        },
        "security": [{"apiKey": []}],
    }


class _Builder:
    """One spec's document parts; ``components`` collects the per-model request bodies."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.components: Json = {}
        self.models = sorted(spec.models)
        shapes = sorted({_ecma_id_pattern(m.task_id) for m in spec.models.values()})
        self.task_id_pattern = "^(" + "|".join(shapes) + ")$" if shapes else None

    # -- operations -----------------------------------------------------------------------------

    def security_scheme(self) -> Json:
        spec = self.spec
        where = f"the key from ${spec.api_key_env}"
        if spec.auth_scheme.lower() == "bearer":
            return {
                "type": "http",
                "scheme": "bearer",
                "description": f"{spec.auth_header}: Bearer <key>, {where}",
            }
        return {
            "type": "apiKey",
            "in": "header",
            "name": spec.auth_header,
            "description": f"{spec.auth_header}: {spec.auth_scheme} <key>, {where}",
        }

    def operation(self, kind: str, op: Operation) -> Json:
        out: Json = {
            "operationId": kind,
            "summary": kind.replace("_", " "),
            "x-paddock-source": op.source,
        }
        parameters = [
            *self.path_parameters(op),
            *self.header_parameters(kind, op),
            *self.query_parameters(kind),
        ]
        if parameters:
            out["parameters"] = parameters
        if kind == "create":
            out["requestBody"] = {
                "required": True,
                "content": {(op.content_type or JSON_MEDIA): {"schema": self.create_body()}},
            }
        status, success = self.success(kind)
        responses: Json = {
            str(status): {
                "description": f"the {kind.replace('_', ' ')} answer",
                "content": {JSON_MEDIA: {"schema": success}},
            }
        }
        for code, (errors, schema) in sorted(self.error_responses(kind, op).items()):
            if str(code) in responses:  # a status that both succeeds and fails: either shape
                schema = {"anyOf": [success, schema]}
            responses[str(code)] = {
                "description": ", ".join(sorted({e.code for e in errors})),
                "content": {JSON_MEDIA: {"schema": schema}},
                "x-paddock-errors": sorted({e.key for e in errors}),
            }
        out["responses"] = responses
        return out

    def path_parameters(self, op: Operation) -> list[Json]:
        out: list[Json] = []
        for name in re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", op.path):
            schema: Json = {"type": "string"}
            if name == "task_id" and self.task_id_pattern is not None:
                schema["pattern"] = self.task_id_pattern
            out.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": schema,
                    "description": "a task id in the shape this provider's models issue",
                }
            )
        return out

    def header_parameters(self, kind: str, op: Operation) -> list[Json]:
        out: list[Json] = [
            {
                "name": rule.name,
                "in": "header",
                "required": True,
                "schema": {"type": "string", "enum": [rule.value]},
                "x-paddock-source": rule.source,
            }
            for rule in op.headers
        ]
        upload = self.spec.upload_header
        if kind == "create" and upload is not None:
            out.append(
                {
                    "name": upload[0],
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "enum": [upload[1]]},
                    "description": f"required when a media URL starts {self.spec.upload_scheme}",
                }
            )
        return out

    def query_parameters(self, kind: str) -> list[Json]:
        """The query interface of the kinds that take one, as the SDKs send it."""
        if kind == "list":
            listable = [s for s in CANONICAL_STATES if s != "UNKNOWN"]
            words = _unique(w for s in listable for w in self.spec.vocabularies["status"][s])
            when = (
                "YYYYMMDDhhmmss in UTC+8; days 29 to 31 are taken where the month has them, "
                "which the pattern leaves out so that every value it allows is a real date"
            )
            return [
                _query("page_no", {"type": "integer", "minimum": 1, "maximum": 1_000_000}),
                _query("page_size", {"type": "integer", "minimum": 1, "maximum": 100}),
                _query("status", {"type": "string", "enum": words}),
                _query("model_name", {"type": "string"}),
                _query("start_time", {"type": "string", "pattern": _LIST_TIME}, when),
                _query("end_time", {"type": "string", "pattern": _LIST_TIME}, when),
            ]
        if kind == "upload_policy":
            return [
                _query("action", {"type": "string", "enum": ["getPolicy"]}, required=True),
                _query("model", {"type": "string", "enum": self.models}, required=True),
            ]
        return []

    # -- the create body ------------------------------------------------------------------------

    def create_body(self) -> Json:
        spec = self.spec
        refs: dict[str, str] = {}
        for name in self.models:
            component = f"CreateRequest.{name}"
            self.components[component] = self.model_body(spec.models[name])
            refs[name] = f"#/components/schemas/{component}"
        schema: Json = {
            "oneOf": [{"$ref": ref} for ref in refs.values()],
            "description": (
                "One shape per model, told apart by the model field. Unknown fields are "
                "accepted and ignored, as the services do. Media go as http(s) URLs; what the "
                "bytes behind one must be (x-paddock-media) the service checks, this schema "
                "cannot."
            ),
        }
        if "." not in spec.model_path:
            schema["discriminator"] = {"propertyName": spec.model_path, "mapping": refs}
        return schema

    def model_body(self, rules: ModelRules) -> Json:
        spec = self.spec
        root = _ObjectTree()
        root.put(spec.model_path, {"const": rules.name}, required=True)
        for path in spec.required_objects:
            root.put(path, {"type": "object"}, required=True)
        for path in sorted(spec.tolerated):
            root.put(path, {"description": "accepted and ignored"}, required=False)
        prompt: Json = {"type": "string", "x-paddock-source": rules.prompt.source}
        if rules.prompt.required:
            prompt["minLength"] = 1  # an empty prompt counts as none
        if rules.prompt.max_length is not None:
            prompt["maxLength"] = rules.prompt.max_length
            if rules.prompt.overflow == "truncate":
                prompt["description"] = "a longer prompt is cut to this length, not refused"
        root.put(spec.prompt_path, prompt, required=rules.prompt.required)
        constraints: list[Json] = []
        if spec.media_form == "typed_list":
            self.typed_list_media(rules, root)
        else:
            constraints = self.field_media(rules, root)
        for param in rules.parameters.values():
            schema = _parameter_schema(param)
            if param.path is not None:
                root.put(param.path, schema, required=False)
                continue
            for container in spec.parameter_containers:
                root.put(f"{container}.{param.name}" if container else param.name, schema, False)
        body = root.schema()
        body["title"] = rules.name
        body["x-paddock-source"] = rules.source
        if constraints:
            body["allOf"] = constraints
        return body

    def typed_list_media(self, rules: ModelRules, root: _ObjectTree) -> None:
        """``[{type, url}]``: each type's count as minContains/maxContains."""
        item: Json = {
            "type": "object",
            "required": ["type", "url"],
            "properties": {
                "type": {"type": "string", "enum": list(rules.media)},
                "url": {"type": "string", "pattern": _MEDIA_URL},
            },
            "x-paddock-media": {name: _media_notes(rule) for name, rule in rules.media.items()},
        }
        array: Json = {
            "type": "array",
            "items": item,
            "maxItems": sum(rule.max for rule in rules.media.values()),
        }
        counts: list[Json] = [
            {"contains": _typed_item(name), "minContains": rule.min, "maxContains": rule.max}
            for name, rule in rules.media.items()
        ]
        counts += [
            {"anyOf": [{"contains": _typed_item(name)} for name in group]}
            for group in rules.media_one_of
        ]
        if counts:
            array["allOf"] = counts
        needed = any(rule.min > 0 for rule in rules.media.values()) or bool(rules.media_one_of)
        root.put(self.spec.media_path or "media", array, required=needed)

    def field_media(self, rules: ModelRules, root: _ObjectTree) -> list[Json]:
        """Named body fields; another model's media field is refused by name, so it is barred."""
        accepted = {f.name for rule in rules.media.values() for f in rule.fields}
        for name in sorted(self.spec.media_fields - accepted):
            root.put(name, False, required=False)
        given: dict[str, Json] = {}
        for media_type, rule in rules.media.items():
            for media_field in rule.fields:
                schema = _media_url(rule, media_type)
                if media_field.form == "url_list":
                    schema = {"type": "array", "items": schema, "minItems": rule.min}
                    if media_field.take is None:
                        schema["maxItems"] = rule.max
                    else:
                        taken = media_field.take
                        schema["description"] = (
                            "only the first item is used"
                            if taken == 1
                            else f"only the first {taken} items are used"
                        )
                root.put(media_field.name, schema, required=False)
            given[media_type] = {"anyOf": [{"required": [f.name]} for f in rule.fields]}
        constraints = [given[t] for t, rule in rules.media.items() if rule.min > 0]
        constraints += [{"anyOf": [given[t] for t in group]} for group in rules.media_one_of]
        return constraints

    # -- responses ------------------------------------------------------------------------------

    def success(self, kind: str) -> tuple[int, Json]:
        spec = self.spec
        progress = {"progress"} if spec.progress is not None else set()
        if kind == "create":
            # A create answers for a task that has just been queued.
            view = _View(("PENDING",), _CREATE_NAMES | progress, frozenset(), self.task_id_pattern)
            return spec.create_status, self.template(spec.create_response, view)
        if kind == "query":
            return spec.query_response.status, self.query_schema()
        status = int(spec.raw["responses"].get(kind, {}).get("status", 200))
        if kind == "cancel" and spec.cancel_response is not None:
            view = _View(present=frozenset({"request_id", "task.id"}))
            return status, self.template(spec.cancel_response, view)
        if kind == "list" and spec.list_response is not None and spec.list_item is not None:
            listable = tuple(s for s in CANONICAL_STATES if s != "UNKNOWN")
            item = self.template(spec.list_item, self.task_view(listable))
            view = _View(present=_LIST_NAMES, item=item)
            return status, self.template(spec.list_response, view)
        if kind == "upload_policy" and spec.upload_response is not None:
            return status, self.template(spec.upload_response, _View(present=_UPLOAD_NAMES))
        return status, {"type": "object"}

    def task_view(self, states: tuple[str, ...]) -> _View:
        """contracts.views.task_view for a task in any of ``states``."""
        spec = self.spec
        present = set(_TASK_NAMES)
        if spec.progress is not None:
            present.add("progress")
        if states == ("SUCCEEDED",):
            present.add("result.url")
        if states == ("FAILED",):
            present |= {"error.code", "error.message", "error.type"}
        attributes = [set(m.attributes) for m in spec.models.values()]
        if attributes:
            present |= {f"model.{name}" for name in set.intersection(*attributes)}
        nullable = {name for name, when in _NULL_IN_STATE.items() if when & set(states)}
        if any(e.type is None for e in spec.errors.values()):
            nullable.add("error.type")
        pattern = self.task_id_pattern if "UNKNOWN" not in states else None
        return _View(states, frozenset(present), frozenset(nullable), pattern)

    def query_schema(self) -> Json:
        """The union of the per-state shapes, told apart by the field that names the state.

        ``if``/``then`` per state rather than ``oneOf``, so a violation names
        the field that broke instead of "valid under none of the given schemas".
        """
        spec = self.spec
        states = spec.query_response.states
        shapes: dict[str, Json] = {}
        for state, template in states.items():
            view = self.task_view((state,))
            if state == "UNKNOWN":
                # An id the service never issued (or forgot) comes back with only
                # what the request named; an expired task may still show more.
                names = {"request_id", "state", "task.id"} | (
                    {"progress"} if spec.progress is not None else set()
                )
                view = _View(view.states, frozenset(names), view.nullable | _TASK_NAMES)
            shapes[state] = self.template(template, view)
        found = _state_field(list(states.values()))
        words = {s: list(spec.vocabularies[found[1]][s]) for s in states} if found else {}
        every = [w for ws in words.values() for w in ws]
        if found is None or len(every) != len(set(every)):
            return {"anyOf": list(shapes.values())}
        path = found[0]
        branches: list[Json] = [_at_path(path, {"enum": every})]
        branches += [
            {"if": _at_path(path, {"enum": words[state]}), "then": shape}
            for state, shape in shapes.items()
        ]
        return {
            "type": "object",
            "allOf": branches,
            "description": f"the task in one of its states, named at {'.'.join(path)}",
        }

    def error_responses(self, kind: str, op: Operation) -> dict[int, tuple[list[ErrorDef], Json]]:
        """Per status: its catalogue errors, and their envelopes with the codes they carry."""
        by_status: dict[int, list[ErrorDef]] = {}
        for error in self.operation_errors(kind, op):
            bucket = by_status.setdefault(error.status, [])
            if error not in bucket:
                bucket.append(error)
        out: dict[int, tuple[list[ErrorDef], Json]] = {}
        for status, errors in by_status.items():
            shapes: list[Json] = []
            for envelope in _unique(e.envelope for e in errors):
                members = tuple(e for e in errors if e.envelope == envelope)
                untyped = any(e.type is None for e in members)
                view = _View(
                    present=_ERROR_NAMES,
                    nullable=frozenset({"error.type"} if untyped else ()),
                    errors=members,
                )
                shapes.append(self.template(self.spec.envelopes[envelope], view))
            out[status] = (errors, shapes[0] if len(shapes) == 1 else {"anyOf": shapes})
        return out

    def operation_errors(self, kind: str, op: Operation) -> list[ErrorDef]:
        """Every catalogue error this operation can answer with.

        The violations it checks, its unknown-task rules, and each catalogue
        error no rule names (arrears, quotas, unavailability): the catalogue
        does not tie those to one call, so the document does not either.
        """
        spec = self.spec
        errors = [spec.violations[k].error for k in self.violation_kinds(kind, op)]
        errors += [spec.violations[k].error for k in _EVERY_OPERATION if k in spec.violations]
        errors += [spec.error(rule["error"]) for rule in _rules(op) if "error" in rule]
        named = {v.error.key for v in spec.violations.values()}
        for other in spec.operations.values():
            named |= {spec.error(rule["error"]).key for rule in _rules(other) if "error" in rule}
        errors += [e for key, e in spec.errors.items() if key not in named]
        return errors

    def violation_kinds(self, kind: str, op: Operation) -> list[str]:
        """The kinds of bad request this operation checks, in the spec's words."""
        kinds = [*_REQUEST_CHECKS.get(kind, ())]
        if kind == "create":
            kinds += self.spec.required_objects.values()
            if not op.headers:
                kinds = [k for k in kinds if k not in ("header_missing", "header_invalid")]
            if not op.content_type:
                kinds.remove("content_type")
        if "{" in op.path:
            kinds.append("route_unknown")  # an id that cannot sit in the path meets no route
        return [k for k in kinds if k in self.spec.violations]

    def request_failures(self, kind: str, op: Operation) -> dict[int, frozenset[str]]:
        """(status → codes) answering a malformed request itself, a documented 5xx included."""
        spec = self.spec
        errors = [spec.violations[k].error for k in self.violation_kinds(kind, op)]
        errors += [spec.error(rule["error"]) for rule in _rules(op) if "error" in rule]
        return _by_status(errors)

    def state_refusals(self, kind: str, op: Operation) -> dict[int, frozenset[str]]:
        """(status → codes) refusing a well-formed request for the task's state.

        A cancel of a task that is not PENDING, a query of an id the service
        does not know: no request schema can tell those from accepted ones.
        """
        spec = self.spec
        errors = [spec.error(rule["error"]) for rule in _rules(op) if "error" in rule]
        if kind == "cancel" and "cancel_refused" in spec.violations:
            errors.append(spec.violations["cancel_refused"].error)
        return _by_status(errors)

    # -- templates ------------------------------------------------------------------------------

    def template(self, template: Template, view: _View) -> Json:
        return self.node(template.source, view)

    def node(self, node: Any, view: _View) -> Json:
        if isinstance(node, dict):
            properties = {str(key): self.node(child, view) for key, child in node.items()}
            required = [str(key) for key, child in node.items() if _always(child, view)]
            out: Json = {"type": "object", "properties": properties}
            if required:
                out["required"] = required
            return out
        if isinstance(node, list):
            items = [self.node(child, view) for child in node]
            return {"type": "array", "prefixItems": items, "minItems": len(items)}
        if not isinstance(node, str) or not _PLACEHOLDER.search(node):
            return {"const": node}
        whole = _PLACEHOLDER.fullmatch(node)
        if whole is not None:
            name, filters = _spelled(whole)
            schema = self.value(name, filters, view)
            return _nullable(schema) if name in view.nullable else schema
        pattern, cursor = "^", 0
        for match in _PLACEHOLDER.finditer(node):
            pattern += _ecma_escape(node[cursor : match.start()]) + r"[\s\S]*"
            cursor = match.end()
        pattern += _ecma_escape(node[cursor:]) + "$"
        return {"type": "string", "pattern": pattern, "description": f"follows {node!r}"}

    def value(self, name: str, filters: Sequence[str], view: _View) -> Json:
        """The schema of a view value after its filters (contracts.wire's filter set)."""
        schema = self.base_value(name, view)
        for flt in filters:
            enum = schema.get("enum")
            if flt.startswith("vocab:"):
                vocabulary = self.spec.vocabularies[flt.split(":", 1)[1]]
                states = view.states or CANONICAL_STATES
                words = _unique(w for s in states for w in vocabulary[s])
                schema = (
                    {"type": "string", "enum": words} if name == "state" else {"type": "string"}
                )
            elif flt == "utc8":
                schema = {"type": "string", "pattern": _UTC8_TIME}
            elif flt in ("epoch", "epoch_ms"):
                schema = {"type": "integer", "minimum": 0}
            elif flt == "int":
                schema = {"type": "integer", **({"enum": [int(v) for v in enum]} if enum else {})}
            elif flt == "str":
                if enum:
                    schema = {"type": "string", "enum": [str(v) for v in enum]}
                elif schema.get("type") == "integer":
                    schema = {"type": "string", "pattern": r"^-?\d+$"}
                else:
                    schema = {"type": "string"}
            elif flt == "percent":
                if enum:
                    schema = {"type": "string", "enum": [f"{int(v)}%" for v in enum]}
                else:
                    schema = {"type": "string", "pattern": r"^\d+%$"}
        return schema

    def base_value(self, name: str, view: _View) -> Json:
        """The schema of a view value as contracts.views builds it."""
        spec = self.spec
        states = view.states or CANONICAL_STATES
        if name == "task.id" and view.task_id_pattern is not None:
            return {"type": "string", "pattern": view.task_id_pattern}
        if name == "task.model":
            return {"type": "string", "enum": self.models}
        if name == "state":
            return {"type": "string", "enum": list(states)}
        if name == "region":
            return {"const": spec.region_name}
        if name.startswith("times."):
            return {"type": "number"}
        if name == "progress":
            steps = spec.progress or {}
            return {
                "type": "integer",
                "enum": sorted({v for s in states for v in steps.get(s, (0,))}),
            }
        if name == "result.url":
            return {"type": "string", "pattern": _HTTP_URL}
        if name == "error.code" and view.errors:
            return {"type": "string", "enum": _unique(e.code for e in view.errors)}
        if name == "error.type":
            errors = view.errors or tuple(spec.errors.values())
            types = _unique(e.type for e in errors if e.type is not None)
            return {"type": "string", "enum": types} if types else {"type": "null"}
        if name == "error.status":
            errors = view.errors or tuple(spec.errors.values())
            return {"type": "integer", "enum": _unique(e.status for e in errors)}
        if name.startswith("model."):
            key = name.split(".", 1)[1]
            values = _unique(m.attributes[key] for m in spec.models.values() if key in m.attributes)
            return {"enum": values} if values else {}
        if name == "items":
            return {"type": "array", "items": view.item}
        if name in ("usage.duration", "usage.sr", "upload.ttl", "upload.max_mb"):
            return {"type": "integer", "minimum": 0}
        if name.startswith("page."):
            return {"type": "integer", "minimum": 0}
        if name.startswith(("task.", "usage.", "upload.", "error.")) or name == "request_id":
            return {"type": "string"}
        return {}


class _ObjectTree:
    """Nested object schemas built from dotted paths (``input.media``)."""

    def __init__(self) -> None:
        self.properties: dict[str, Any] = {}
        self.children: dict[str, _ObjectTree] = {}
        self.required: list[str] = []

    def put(self, path: str, schema: Any, required: bool) -> None:
        head, _, rest = path.partition(".")
        if rest:
            self.children.setdefault(head, _ObjectTree()).put(rest, schema, required)
        else:
            self.properties[head] = schema
        if required and head not in self.required:
            self.required.append(head)

    def schema(self) -> Json:
        properties: Json = dict(self.properties)
        for name, child in self.children.items():
            shallow = properties.get(name)
            nested = child.schema()
            properties[name] = {**shallow, **nested} if isinstance(shallow, dict) else nested
        out: Json = {"type": "object", "properties": properties}
        if self.required:
            out["required"] = list(self.required)
        return out


# -- small helpers ------------------------------------------------------------------------------


def _query(name: str, schema: Json, description: str = "", *, required: bool = False) -> Json:
    out: Json = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        out["description"] = description
    return out


def _parameter_schema(param: Parameter) -> Json | bool:
    if not param.supported:
        return False  # refused by name, whatever the value
    schema: Json = {"type": param.type}
    if param.type == "integer":
        # JSON Schema's integer admits 5.0; the services' decoders refuse it.
        schema["description"] = "an integer literal: 5, not 5.0 (refused as the wrong type)"
    if param.enum is not None:
        schema["enum"] = list(param.enum)
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.max_length is not None:
        schema["maxLength"] = param.max_length
    if param.has_default:
        schema["default"] = param.default
    schema["x-paddock-source"] = param.source
    return schema


def _media_notes(rule: MediaRule) -> Json:
    """The rules on the bytes behind a media URL, which no schema of the URL can check."""
    notes: Json = {
        "kind": rule.kind,
        "count": [rule.min, rule.max],
        "formats": sorted(rule.formats),
    }
    for key in (
        "min_side",
        "aspect_min",
        "aspect_max",
        "max_bytes",
        "duration_min",
        "duration_max",
    ):
        value = getattr(rule, key)
        if value is not None:
            notes[key] = value
    notes["source"] = rule.source
    return notes


def _media_url(rule: MediaRule, media_type: str) -> Json:
    return {
        "type": "string",
        "pattern": _MEDIA_URL,
        "x-paddock-media": {media_type: _media_notes(rule)},
    }


def _typed_item(media_type: str) -> Json:
    return {"type": "object", "required": ["type"], "properties": {"type": {"const": media_type}}}


def _rules(op: Operation) -> list[Mapping[str, str]]:
    return [rule for rule in (op.unknown, op.expired) if rule]


def _by_status(errors: Iterable[ErrorDef]) -> dict[int, frozenset[str]]:
    out: dict[int, set[str]] = {}
    for error in errors:
        out.setdefault(error.status, set()).add(error.code)
    return {status: frozenset(codes) for status, codes in out.items()}


def _spelled(match: re.Match[str]) -> tuple[str, list[str]]:
    """(name, filters) of a placeholder, ``{status}`` expanded as contracts.wire does."""
    name = match.group(1)
    filters = [f for f in match.group(2).split("|") if f]
    if name == "status":
        return "state", ["vocab:status", *filters]
    return name, filters


def _always(node: Any, view: _View) -> bool:
    """Whether a template node is rendered for every view of this kind (so is required)."""
    if not isinstance(node, str):
        return True
    whole = _PLACEHOLDER.fullmatch(node)
    if whole is not None:
        return _spelled(whole)[0] in view.present
    names = [_spelled(m)[0] for m in _PLACEHOLDER.finditer(node)]
    return all(n in view.present and n not in view.nullable for n in names)


def _state_field(templates: Sequence[Template]) -> tuple[tuple[str, ...], str] | None:
    """A JSON path where every state's shape names the state in one vocabulary."""
    found: list[dict[tuple[str, ...], str]] = []
    for template in templates:
        paths: dict[tuple[str, ...], str] = {}
        _state_paths(template.source, (), paths)
        found.append(paths)
    for path, vocabulary in (found[0] if found else {}).items():
        if all(other.get(path) == vocabulary for other in found[1:]):
            return path, vocabulary
    return None


def _state_paths(node: Any, at: tuple[str, ...], out: dict[tuple[str, ...], str]) -> None:
    if isinstance(node, dict):
        for key, child in node.items():
            _state_paths(child, (*at, str(key)), out)
        return
    match = _PLACEHOLDER.fullmatch(node) if isinstance(node, str) else None
    if match is None:
        return
    name, filters = _spelled(match)
    if name == "state" and len(filters) == 1 and filters[0].startswith("vocab:"):
        out.setdefault(at, filters[0].split(":", 1)[1])


def _at_path(path: Sequence[str], leaf: Json) -> Json:
    schema = leaf
    for key in reversed(path):
        schema = {"type": "object", "required": [key], "properties": {key: schema}}
    return schema


def _nullable(schema: Json) -> Json:
    if schema.get("type") == "null":
        return schema
    if "const" in schema:
        return {"enum": [schema["const"], None]}
    if "enum" in schema:
        return {**schema, "type": [schema["type"], "null"], "enum": [*schema["enum"], None]}
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return schema


def _unique(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def _ecma_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}/" else c for c in text)


def _ecma_id_pattern(template: str) -> str:
    """contracts.views.id_pattern without anchors, in the ECMA-262 dialect of JSON Schema."""
    python = id_pattern(template).pattern.removesuffix(r"\Z")
    return re.sub(r"\\([-&~# ])", r"\1", python)  # re.escape escapes what ECMA must not


# -- the schemathesis run -----------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaProblem:
    """One way a server disagreed with the document, with the request that showed it.

    The auth header carries ``${API_KEY_ENV}`` instead of the key, so a report
    can be shared and its curl line still runs where the variable is set.
    """

    operation: str  # "GET /api/v1/tasks/{task_id}"
    check: str  # schemathesis' check name, e.g. "response_schema_conformance"
    message: str
    method: str
    path: str  # relative to the provider's base URL, with the query string
    headers: Mapping[str, str]
    body: bytes | None

    def curl(self, base_url: str) -> str:
        """A shell command that sends the same request to ``base_url`` again."""
        parts = ["curl", "-sS", "-X", self.method, _shell(base_url.rstrip("/") + self.path)]
        for name, value in self.headers.items():
            parts += ["-H", _shell(f"{name}: {value}")]
        if self.body is not None:
            parts += ["--data-binary", _shell(self.body.decode("utf-8", "replace"))]
        return " ".join(parts)


@dataclass(frozen=True)
class SchemaResult:
    """How many requests a run sent, and one problem per (operation, check) it found."""

    cases: int
    problems: tuple[SchemaProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


_BASE_URL = "http://paddock.invalid"
# What the requests library adds to every request: left out of what is sent and
# reported unless the case generated it, so a curl line shows what matters.
_TRANSPORT_DEFAULTS = frozenset(
    {"user-agent", "accept", "accept-encoding", "connection", "content-length"}
)
_EXCERPT = 240


def run_schema_checks(
    spec: Spec,
    send: Send,
    *,
    api_key: str,
    max_examples: int = 20,
    seed: int = 0,
    include_create: bool = True,
) -> SchemaResult:
    """Fuzz every operation of ``spec`` through ``send``; check each answer against the document.

    Per operation, up to ``max_examples`` positive and as many negative cases
    come from schemathesis (hypothesis seeded with ``seed``, no example
    database: the same cases every run), each sent with ``api_key`` in the
    spec's auth header. The tasks positive creates made are then queried,
    canceled where the provider can and queried again, and listed, so the
    per-state answers are checked and not only the unknown-task one.
    ``include_create=False`` leaves create out: against a live provider each
    one is a paid task.

    Checks (schemathesis' own): not_a_server_error, status_code_conformance,
    content_type_conformance, response_schema_conformance and
    positive_data_acceptance. Two answers the spec itself documents are not
    problems: a 5xx the spec gives to a malformed request (to a negative
    case), and a refusal for the task's state (cancel of a finished task, an
    unknown id) to a well-formed request. Problems are collected, not raised.
    """
    import schemathesis
    from schemathesis.core.result import Ok
    from schemathesis.generation import GenerationMode

    document = openapi_document(spec, server_url=_BASE_URL)
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config())
    kinds = {f"{op.method.upper()} {op.path}": kind for kind, op in spec.operations.items()}
    operations: dict[str, APIOperation[Any, Any, Any, Any]] = {}
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise ValueError(f"the {spec.provider} document is broken: {result.err()}")
        operation = result.ok()
        operations[kinds[operation.label]] = operation
    runner = _Runner(spec, send, api_key, document)
    order = [kind for kind in spec.operations if kind in operations]
    order.sort(key=lambda kind: kind != "create")
    for kind in order:
        if kind == "create" and not include_create:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for case in _generate(operations[kind], mode, max_examples, seed):
                runner.run(kind, case, negative=mode == GenerationMode.NEGATIVE)
    # The tasks the creates made, through every task operation: readers before
    # and after the writers (a cancel), so a changed state is read back too;
    # then the listings that need no parameters, which now hold those tasks.
    by_id = [k for k in order if "{task_id}" in spec.operations[k].path]
    readers = [k for k in by_id if spec.operations[k].method == "GET"]
    writers = [k for k in by_id if spec.operations[k].method != "GET"]
    for task_id in runner.created:
        for kind in readers + writers + (readers if writers else []):
            headers = {rule.name: rule.value for rule in spec.operations[kind].headers}
            case = operations[kind].Case(path_parameters={"task_id": task_id}, headers=headers)
            runner.run(kind, case, negative=False)
    if runner.created:
        for kind in order:
            op = spec.operations[kind]
            if op.method == "GET" and "{" not in op.path and not _required_inputs(document, op):
                runner.run(kind, operations[kind].Case(), negative=False)
    return SchemaResult(runner.cases, tuple(runner.problems.values()))


def _required_inputs(document: Json, op: Operation) -> bool:
    """Whether the document's operation has a required parameter or body."""
    described = document["paths"][op.path][op.method.lower()]
    required = [p for p in described.get("parameters", ()) if p.get("required")]
    return bool(required) or "requestBody" in described


def _generate(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    max_examples: int,
    seed: int,
) -> list[Case[Any]]:
    """Up to ``max_examples`` cases of one mode: the same ones for the same seed."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings

    try:
        strategy = operation.as_strategy(generation_mode=mode)
    except Exception:  # nothing to negate: no negative strategy for this operation
        return []
    cases: list[Case[Any]] = []

    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @hypothesis.seed(seed)
    @given(strategy)
    def collect(case: Case[Any]) -> None:
        cases.append(case)

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        collect()
    return cases


class _Runner:
    """Sends cases, runs the checks, keeps the first problem per (operation, check)."""

    def __init__(self, spec: Spec, send: Send, api_key: str, document: Json) -> None:
        from schemathesis.checks import not_a_server_error
        from schemathesis.specs.openapi.checks import (
            content_type_conformance,
            positive_data_acceptance,
            response_schema_conformance,
            status_code_conformance,
        )

        builder = _Builder(spec)
        self.spec = spec
        self.document = document
        self.send = send
        self.auth = {spec.auth_header: f"{spec.auth_scheme} {api_key}"}
        self.shown_auth = f"{spec.auth_scheme} ${{{spec.api_key_env}}}"
        self.checks = (
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            positive_data_acceptance,
        )
        self.request_failures = {
            kind: builder.request_failures(kind, op) for kind, op in spec.operations.items()
        }
        self.state_refusals = {
            kind: builder.state_refusals(kind, op) for kind, op in spec.operations.items()
        }
        self.cases = 0
        self.created: list[str] = []
        self.problems: dict[tuple[str, str], SchemaProblem] = {}

    def run(self, kind: str, case: Case[Any], *, negative: bool) -> None:
        from requests.structures import CaseInsensitiveDict
        from schemathesis import Response
        from schemathesis.config import SanitizationConfig
        from schemathesis.core.failures import FailureGroup
        from schemathesis.transport.prepare import prepare_request

        if isinstance(case.body, (dict, list)):
            # JSON Schema cannot tell 5 from 5.0 and schemathesis sends both on
            # purpose; the services refuse 5.0 for an integer, which the document
            # states in words, so whole numbers go as integer literals.
            fixed = _integral(case.body)
            if repr(fixed) != repr(case.body):  # only then: an edit re-labels the case
                case.body = fixed
        try:
            prepared = prepare_request(
                case, self.auth, config=SanitizationConfig(enabled=False), base_url=_BASE_URL
            )
        except Exception:  # a generated value no HTTP request can carry
            return
        generated = {name.lower() for name in case.headers or {}}
        headers: dict[str, str] = {}
        for name, raw_value in prepared.headers.items():
            value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else str(raw_value)
            lower = name.lower()
            if (lower in _TRANSPORT_DEFAULTS and lower not in generated) or lower.startswith(
                "x-schemathesis"
            ):
                continue
            if not _sendable(name, value):
                return  # a negative header value that cannot go on the wire at all
            headers[name] = value
        url = prepared.url or ""
        path = url.removeprefix(_BASE_URL)
        raw_body = prepared.body
        body = raw_body.encode() if isinstance(raw_body, str) else None
        if isinstance(raw_body, bytes):
            body = raw_body
        method = str(prepared.method)
        label = case.operation.label
        shown = {
            name: self.shown_auth if name in self.auth and value == self.auth[name] else value
            for name, value in headers.items()
        }
        self.cases += 1
        started = time.perf_counter()
        try:
            status, answer_headers, content = self.send(method, path, headers, body)
        except Exception as exc:
            problem = SchemaProblem(
                label, "transport", f"The request failed: {exc!r}.", method, path, shown, body
            )
            self.problems.setdefault((label, "transport"), problem)
            return
        prepared.headers = CaseInsensitiveDict(shown)
        response = Response(
            status_code=status,
            headers={name.lower(): [value] for name, value in answer_headers.items()},
            content=content,
            request=prepared,
            elapsed=time.perf_counter() - started,
            verify=True,
        )
        if kind == "create" and not negative and 200 <= status < 300:
            self.remember(content)
        for check in self.checks:
            name = check.__name__
            if (label, name) in self.problems:
                continue
            try:
                case.validate_response(response, checks=[check])
                continue
            except FailureGroup as group:
                if self.documented(name, kind, status, content, negative=negative):
                    continue
                schema = self.response_schema(label, status)
                message = _describe(group.exceptions[0], status, content, schema)
            except Exception as exc:  # a check that cannot run is a finding, not a crash
                message = f"The check could not run: {exc!r}."
            problem = SchemaProblem(label, name, message, method, path, shown, body)
            self.problems[(label, name)] = problem

    def response_schema(self, label: str, status: int) -> Json | None:
        """The document's schema for one operation's answer with ``status``, if it has one."""
        method, _, path = label.partition(" ")
        answers = self.document["paths"].get(path, {}).get(method.lower(), {}).get("responses", {})
        content = answers.get(str(status), {}).get("content", {}).get(JSON_MEDIA, {})
        schema = content.get("schema")
        return schema if isinstance(schema, dict) else None

    def documented(
        self, check: str, kind: str, status: int, content: bytes, *, negative: bool
    ) -> bool:
        """Whether a failing check met an answer the spec itself documents for the case."""
        if check == "not_a_server_error" and negative:
            return self.names_error(self.request_failures[kind], status, content)
        if check == "positive_data_acceptance":
            return self.names_error(self.state_refusals[kind], status, content)
        return False

    def names_error(self, table: Mapping[int, frozenset[str]], status: int, content: bytes) -> bool:
        """Whether the answer is one of ``table``'s catalogue errors, by status and code."""
        codes = table.get(status)
        if not codes:
            return False
        try:
            doc = json.loads(content)
        except ValueError:
            return False
        for envelope in self.spec.envelopes.values():
            try:
                if envelope.parse(doc, strict=False).get("error.code") in codes:
                    return True
            except ValueError:
                continue
        return False

    def remember(self, content: bytes) -> None:
        """Keep the id a create answered with, to query it once generation is done."""
        try:
            values = self.spec.create_response.parse(json.loads(content), strict=False)
        except ValueError:
            return
        task_id = values.get("task.id")
        if isinstance(task_id, str) and task_id not in self.created:
            self.created.append(task_id)


def _describe(failure: Exception, status: int, content: bytes, schema: Json | None) -> str:
    """One or two sentences a person reads: what broke, and what the server said."""
    said = _excerpt(content)
    kind = type(failure).__name__
    if kind == "JsonSchemaError":
        # schemathesis rewrites if/then into anyOf and then reports only "valid under
        # none" at the root; the document's own schema names the field that broke.
        where, detail = _schema_error(schema, content) or (
            "/" + "/".join(str(p) for p in getattr(failure, "instance_path", ())),
            str(getattr(failure, "validation_message", "")).strip(),
        )
        return f"The {status} answer does not fit the document at {where}: {detail}. It was: {said}"
    if kind == "UndefinedStatusCode":
        listed = ", ".join(str(s) for s in getattr(failure, "defined_status_codes", ()))
        return f"Answered {status}, which the document does not list here ({listed}): {said}"
    if kind == "RejectedPositiveData":
        return f"A request the document allows was refused with {status}: {said}"
    if kind in ("ServerError", "ContentTypeServerError"):
        return f"Answered {status}, a server error: {said}"
    title = str(getattr(failure, "title", kind))
    lines = str(getattr(failure, "message", "") or failure).strip().splitlines()
    return f"{title} (status {status}): {lines[0] if lines else said}"


def _schema_error(schema: Json | None, content: bytes) -> tuple[str, str] | None:
    """(JSON pointer, message) of the most telling error of ``content`` against ``schema``."""
    if schema is None:
        return None
    try:
        instance = json.loads(content)
    except ValueError:
        return None
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(instance)
    )
    if error is None:
        return None
    return "/" + "/".join(str(p) for p in error.absolute_path), error.message


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _excerpt(content: bytes) -> str:
    text = content.decode("utf-8", "replace").strip() or "(an empty body)"
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _sendable(name: str, value: str) -> bool:
    if not name or not name.isascii() or ":" in name:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any(c in value for c in "\r\n\x00")


def _shell(text: str) -> str:
    """Single-quoted for a POSIX shell, except ``${NAME}``, which the shell expands."""
    parts = re.split(r"(\$\{[A-Z_][A-Z0-9_]*\})", text)
    quoted = [
        f'"{part}"' if i % 2 else "'" + part.replace("'", "'\\''") + "'"
        for i, part in enumerate(parts)
        if part
    ]
    return "".join(quoted) or "''"
