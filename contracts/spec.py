"""Load provider specs from YAML into frozen, typed objects.

A spec file may ``extends`` another provider's spec: mappings merge
recursively, lists and scalars replace, and ``null`` removes an inherited key.
The merged document is validated against ``specs/spec.schema.json`` and then
cross-checked (every violation names a catalogue error, every model's media
names a declared media kind, every template compiles), so a broken spec fails
at load time with the file, the path inside it and what is wrong, not at the
first request that touches the broken rule.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import jsonschema.exceptions
import yaml

from contracts.frames import FrameSizes, frame_sizes
from contracts.wire import CANONICAL_STATES, Template, TemplateError, compile_template

__all__ = [
    "ErrorDef",
    "HeaderRule",
    "MediaField",
    "MediaRule",
    "ModelRules",
    "Operation",
    "Parameter",
    "PromptRule",
    "Spec",
    "SpecError",
    "SpecSet",
    "UploadForm",
    "ViolationDef",
    "builtin_specs_dir",
    "load_spec",
    "load_specs",
]

Json = dict[str, Any]


class SpecError(ValueError):
    """A spec file is broken; the message names the file, the path inside it and the problem."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        super().__init__(f"{file}: at {path or '<root>'}: {problem}")
        self.file = file
        self.path = path
        self.problem = problem


# -- typed spec objects -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderRule:
    name: str
    value: str
    source: str


@dataclass(frozen=True, slots=True)
class Operation:
    kind: str
    method: str
    path: str
    content_type: str | None
    headers: tuple[HeaderRule, ...]
    unknown: Mapping[str, str] | None  # {"state": ...} or {"error": ...}
    expired: Mapping[str, str] | None
    cancelable: frozenset[str]
    source: str


@dataclass(frozen=True, slots=True)
class UploadForm:
    """How a client uploads one local file (``uploads.form``), so no form field lives in Python.

    ``policy_query`` renders from ``{model}``; ``url``, ``key`` and ``fields``
    from the policy answer's values plus ``{upload.key}``, ``{file.name}`` and
    ``{file.content_type}``.
    """

    policy_query: Template
    url: Template
    key: Template
    fields: Template
    file_field: str
    success_status: int
    source: str


@dataclass(frozen=True, slots=True)
class ErrorDef:
    key: str
    status: int
    code: str
    message: str
    type: str | None
    envelope: str
    source: str
    category: str = "validation"


def default_category(status: int) -> str:
    """The failure kind an HTTP status implies when the catalogue does not say."""
    if status >= 500:
        return "unavailable"
    return {401: "authentication", 403: "permission", 404: "not_found", 429: "rate_limit"}.get(
        status, "validation"
    )


@dataclass(frozen=True, slots=True)
class ViolationDef:
    kind: str
    error: ErrorDef
    message: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    type: str
    enum: tuple[Any, ...] | None
    minimum: float | None
    maximum: float | None
    default: Any
    has_default: bool
    supported: bool
    source: str
    path: str | None = None
    max_length: int | None = None

    def describe(self) -> str:
        """One line a person reads in an error or a matrix cell."""
        if not self.supported:
            return "not supported"
        parts = [self.type]
        if self.enum is not None:
            parts.append("one of " + ", ".join(map(str, self.enum)))
        if self.minimum is not None or self.maximum is not None:
            parts.append(f"{_num(self.minimum)}..{_num(self.maximum)}")
        if self.has_default:
            parts.append(f"default {self.default}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class MediaField:
    """A flat-body field that carries media (AnyFast's ``image`` / ``images``)."""

    name: str
    form: str  # "url" or "url_list"
    take: int | None


@dataclass(frozen=True, slots=True)
class MediaRule:
    type: str  # wire media type, e.g. first_frame
    uses: str  # media kind name in media_kinds
    kind: str  # image / audio / video
    min: int
    max: int
    formats: frozenset[str]
    min_side: int | None
    aspect_min: float | None
    aspect_max: float | None
    max_bytes: int | None
    duration_min: float | None
    duration_max: float | None
    fields: tuple[MediaField, ...]
    source: str


@dataclass(frozen=True, slots=True)
class PromptRule:
    required: bool
    max_length: int | None
    overflow: str
    source: str


@dataclass(frozen=True, slots=True)
class ModelRules:
    name: str
    source: str
    task_id: str
    attributes: Mapping[str, Any]
    prompt: PromptRule
    media: Mapping[str, MediaRule]
    parameters: Mapping[str, Parameter]
    aspect_sources: tuple[str, ...]
    media_one_of: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Timing:
    median: float
    p95: float
    source: str


@dataclass(frozen=True, slots=True)
class QueryResponse:
    status: int
    states: Mapping[str, Template]
    source: str


@dataclass(frozen=True, slots=True)
class Spec:
    """Everything one provider promises, resolved and compiled."""

    provider: str
    title: str
    file: str
    digest: str
    raw: Mapping[str, Any]
    regions: Mapping[str, str]
    default_region: str
    api_key_env: str
    env_hint: str | None
    poll_initial: float
    poll_max: float
    retry_query_statuses: frozenset[int]
    auth_header: str
    auth_scheme: str
    body_limit: int
    poll_min_interval: float | None
    operations: Mapping[str, Operation]
    model_path: str
    prompt_path: str
    required_objects: Mapping[str, str]
    media_form: str
    media_path: str | None
    parameter_containers: tuple[str, ...]
    tolerated: frozenset[str]
    # Precomputed for the validator's hot path: every body path the spec names,
    # and every flat-body media field of any model.
    body_fields: frozenset[str]
    body_prefixes: frozenset[str]
    media_fields: frozenset[str]
    upload_scheme: str | None
    upload_header: tuple[str, str] | None
    upload_policy_ttl: int
    upload_max_bytes: int
    vocabularies: Mapping[str, Mapping[str, tuple[str, ...]]]
    edges: Mapping[str, frozenset[str]]
    progress: Mapping[str, tuple[int, ...]] | None
    timing: Mapping[str, Timing]
    task_retention: float
    result_retention: float
    result_fps: int
    result_codec: str
    refuses_authorization: bool
    reissue_on_poll: bool
    expiry_param: str | None
    signature_params: tuple[str, ...]
    resolutions: Mapping[str, tuple[int, int, int]]
    ratios: Mapping[str, float]
    # The only frame sizes a result video can have, by resolution and named ratio.
    frames: FrameSizes
    create_response: Template
    create_status: int
    query_response: QueryResponse
    cancel_response: Template | None
    list_response: Template | None
    list_item: Template | None
    upload_response: Template | None
    upload_form: UploadForm | None
    envelopes: Mapping[str, Template]
    errors: Mapping[str, ErrorDef]
    violations: Mapping[str, ViolationDef]
    default_error_type: str | None
    region_name: str
    models: Mapping[str, ModelRules]
    _by_code: Mapping[str, ErrorDef] = field(default_factory=dict, repr=False)

    def error(self, key_or_code: str) -> ErrorDef:
        """The catalogue entry for a key (``Throttling``) or a wire code (``task_not_exist``)."""
        found = self.errors.get(key_or_code) or self._by_code.get(key_or_code)
        if found is None:
            raise KeyError(f"{self.provider} has no error {key_or_code!r}")
        return found

    def has_error(self, key_or_code: str) -> bool:
        return key_or_code in self.errors or key_or_code in self._by_code

    def word(self, state: str, vocabulary: str = "status") -> str:
        """The provider's word for a canonical state."""
        return self.vocabularies[vocabulary][state][0]

    def base_url(self, region: str | None = None) -> str:
        """The documented host for a region (the default region when None)."""
        name = region or self.default_region
        if name not in self.regions:
            raise KeyError(f"{self.provider} has no region {name!r}; known: {sorted(self.regions)}")
        return self.regions[name]


@dataclass(frozen=True, slots=True)
class SpecSet:
    """The specs one process serves, by provider name."""

    specs: Mapping[str, Spec]

    def __getitem__(self, provider: str) -> Spec:
        try:
            return self.specs[provider]
        except KeyError:
            raise KeyError(
                f"unknown provider {provider!r}; known: {', '.join(sorted(self.specs))}"
            ) from None

    def __iter__(self) -> Iterator[Spec]:
        return iter(self.specs.values())

    def __len__(self) -> int:
        return len(self.specs)

    def names(self) -> list[str]:
        return sorted(self.specs)


# -- loading ------------------------------------------------------------------------------------


def builtin_specs_dir() -> Path:
    """The spec directory shipped with paddock (a wheel's copy, or the checkout's ``specs/``)."""
    packaged = resources.files("contracts") / "_specs"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "specs"


@cache
def _schema(path: Path) -> Json:
    loaded: Json = json.loads(path.read_text())
    return loaded


def _schema_path(directory: Path) -> Path:
    local = directory / "spec.schema.json"
    return local if local.exists() else builtin_specs_dir() / "spec.schema.json"


_LOADED: dict[tuple[object, ...], SpecSet] = {}


def load_specs(directory: str | Path | None = None) -> SpecSet:
    """Load every ``*.yaml`` spec in a directory (the built-in specs when None).

    Loading (YAML, schema validation, template compilation) takes a tenth of a
    second and the result is immutable, so a directory whose files are
    unchanged (same names, sizes and modification times) is loaded once.
    """
    root = Path(directory) if directory is not None else builtin_specs_dir()
    if not root.is_dir():
        raise SpecError(str(root), "", "is not a directory of spec files")
    files = sorted((*root.glob("*.yaml"), *root.glob("spec.schema.json")))
    stamp = (
        str(root.resolve()),
        *((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files),
    )
    cached = _LOADED.get(stamp)
    if cached is None:
        cached = _LOADED[stamp] = _load_specs(root)
    return cached


def _load_specs(root: Path) -> SpecSet:
    raw_docs: dict[str, tuple[Path, Json]] = {}
    for path in sorted(root.glob("*.yaml")):
        doc = _read_yaml(path)
        name = doc.get("provider")
        if not isinstance(name, str):
            raise SpecError(str(path), "provider", "must name the provider (a string)")
        if name in raw_docs:
            raise SpecError(
                str(path), "provider", f"{name!r} is also defined in {raw_docs[name][0]}"
            )
        raw_docs[name] = (path, doc)
    if not raw_docs:
        raise SpecError(str(root), "", "holds no *.yaml spec files")
    schema = _schema(_schema_path(root))
    specs = {name: _build(name, raw_docs, schema) for name in sorted(raw_docs)}
    return SpecSet(MappingProxyType(specs))


def load_spec(path: str | Path, *, extends_from: str | Path | None = None) -> Spec:
    """Load one spec file; ``extends`` is looked up beside it, then in ``extends_from``."""
    file = Path(path)
    doc = _read_yaml(file)
    name = doc.get("provider")
    if not isinstance(name, str):
        raise SpecError(str(file), "provider", "must name the provider (a string)")
    raw_docs: dict[str, tuple[Path, Json]] = {name: (file, doc)}
    parent = doc.get("extends")
    search = [file.parent, Path(extends_from) if extends_from else builtin_specs_dir()]
    while isinstance(parent, str) and parent not in raw_docs:
        for folder in search:
            for candidate in sorted(folder.glob("*.yaml")):
                other = _read_yaml(candidate)
                if other.get("provider") == parent:
                    raw_docs[parent] = (candidate, other)
                    break
            if parent in raw_docs:
                break
        else:
            raise SpecError(str(file), "extends", f"no spec for provider {parent!r} was found")
        parent = raw_docs[parent][1].get("extends")
    return _build(name, raw_docs, _schema(_schema_path(file.parent)))


def _read_yaml(path: Path) -> Json:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(str(path), where, f"is not valid YAML: {exc}") from None
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot be read: {exc.strerror}") from None
    if not isinstance(doc, dict):
        raise SpecError(str(path), "", "must be a YAML mapping")
    return doc


def merge(base: Any, override: Any, *, null_deletes: bool = True) -> Any:
    """Deep-merge ``override`` onto ``base``: mappings merge, the rest replaces.

    Between spec files a null removes the inherited key; inside one response
    shape (``null_deletes=False``) null is a JSON value to render. A mapping
    with ``$replace: true`` replaces the inherited one whole: a wire shape that
    differs is a new shape, not a patch on the old one.
    """
    if isinstance(override, dict) and override.get("$replace") is True:
        return {k: v for k, v in override.items() if k != "$replace"}
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None and null_deletes:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, null_deletes=null_deletes)
            else:
                out[key] = merge({}, value, null_deletes=null_deletes)
        return out
    if isinstance(override, dict):
        return merge({}, override, null_deletes=null_deletes)
    return override


def _resolve(name: str, raw_docs: Mapping[str, tuple[Path, Json]], seen: tuple[str, ...]) -> Json:
    path, doc = raw_docs[name]
    parent = doc.get("extends")
    if parent is None:
        return doc
    if not isinstance(parent, str) or parent not in raw_docs:
        raise SpecError(str(path), "extends", f"names unknown provider {parent!r}")
    if parent in seen:
        raise SpecError(str(path), "extends", f"forms a cycle: {' -> '.join((*seen, parent))}")
    merged = merge(_resolve(parent, raw_docs, (*seen, parent)), doc)
    assert isinstance(merged, dict)
    return merged


def _build(name: str, raw_docs: Mapping[str, tuple[Path, Json]], schema: Json) -> Spec:
    path, _ = raw_docs[name]
    file = str(path)
    doc = _resolve(name, raw_docs, (name,))
    doc = _expand_models(doc, file)
    validator = jsonschema.Draft202012Validator(schema)
    worst = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if worst is not None:
        where = ".".join(str(p) for p in worst.absolute_path)
        note = f" (after extends {doc['extends']!r})" if "extends" in doc else ""
        raise SpecError(file + note, where, _schema_message(worst))
    try:
        return _typed(doc, file)
    except TemplateError as exc:
        raise SpecError(file, "responses", str(exc)) from None


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return f"unexpected key: {error.message.split('(')[-1].rstrip(')')}"
    return str(error.message)


def _expand_models(doc: Json, file: str) -> Json:
    """Resolve model-level ``extends: OTHER_MODEL`` inside one spec."""
    models = doc.get("models")
    if not isinstance(models, dict):
        return doc
    resolved: dict[str, Any] = {}

    def resolve(model: str, chain: tuple[str, ...]) -> Any:
        body = models[model]
        if not isinstance(body, dict) or "extends" not in body:
            return body
        parent = body["extends"]
        if parent not in models:
            raise SpecError(file, f"models.{model}.extends", f"names unknown model {parent!r}")
        if parent in chain:
            raise SpecError(file, f"models.{model}.extends", "forms a cycle")
        child = {k: v for k, v in body.items() if k != "extends"}
        return merge(resolve(parent, (*chain, parent)), child)

    for model in models:
        resolved[model] = resolve(model, (model,))
    return {**doc, "models": resolved}


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _words(raw: Any) -> tuple[str, ...]:
    return (raw,) if isinstance(raw, str) else tuple(raw)


def _typed(doc: Json, file: str) -> Spec:
    def fail(path: str, problem: str) -> SpecError:
        return SpecError(file, path, problem)

    vocabularies: dict[str, Mapping[str, tuple[str, ...]]] = {}
    for vname, vocab in doc["states"]["vocabularies"].items():
        words = {state: _words(raw) for state, raw in vocab.items()}
        missing = [s for s in CANONICAL_STATES if s not in words]
        if missing:
            raise fail(f"states.vocabularies.{vname}", f"has no word for {', '.join(missing)}")
        vocabularies[vname] = MappingProxyType(words)

    def tpl(node: Any, where: str) -> Template:
        try:
            return compile_template(node, vocabularies)
        except TemplateError as exc:
            raise fail(where, str(exc)) from None

    # Errors and violations.
    default_type = doc["defaults"].get("error_type")
    envelopes_raw = doc["responses"]["error"]["envelopes"]
    errors: dict[str, ErrorDef] = {}
    for key, body in doc["errors"].items():
        envelope = body.get("envelope", "default")
        if envelope not in envelopes_raw:
            raise fail(f"errors.{key}.envelope", f"names unknown envelope {envelope!r}")
        errors[key] = ErrorDef(
            key=key,
            status=body["status"],
            code=body.get("code", key),
            message=body["message"],
            type=body.get("type", default_type),
            envelope=envelope,
            source=body["source"],
            category=body.get("category") or default_category(body["status"]),
        )
    violations: dict[str, ViolationDef] = {}
    for kind, body in doc["violations"].items():
        if body["error"] not in errors:
            raise fail(f"violations.{kind}.error", f"names unknown error {body['error']!r}")
        violations[kind] = ViolationDef(
            kind, errors[body["error"]], body.get("message"), body["source"]
        )

    # Operations.
    operations: dict[str, Operation] = {}
    for kind, body in doc["operations"].items():
        for rule_name in ("unknown", "expired"):
            rule = body.get(rule_name)
            if rule and "error" in rule and rule["error"] not in errors:
                raise fail(
                    f"operations.{kind}.{rule_name}.error", f"names unknown error {rule['error']!r}"
                )
        operations[kind] = Operation(
            kind=kind,
            method=body["method"],
            path=body["path"],
            content_type=body.get("content_type"),
            headers=tuple(
                HeaderRule(h, r["value"], r.get("source", body["source"]))
                for h, r in body.get("headers", {}).items()
            ),
            unknown=MappingProxyType(body["unknown"]) if body.get("unknown") else None,
            expired=MappingProxyType(
                body.get("expired") or body.get("unknown") or {"state": "UNKNOWN"}
            ),
            cancelable=frozenset(body.get("cancelable", ())),
            source=body["source"],
        )
    for kind in operations:
        if kind not in ("create", "query") and kind not in doc["responses"]:
            raise fail(f"responses.{kind}", f"operation {kind!r} has no response shape")

    # Media kinds and models.
    kinds = doc["media_kinds"]
    models: dict[str, ModelRules] = {}
    for mname, body in doc["models"].items():
        media: dict[str, MediaRule] = {}
        for mtype, rule in body["media"].items():
            where = f"models.{mname}.media.{mtype}"
            if rule["uses"] not in kinds:
                raise fail(where + ".uses", f"names unknown media kind {rule['uses']!r}")
            if rule["min"] > rule["max"]:
                raise fail(where, f"min {rule['min']} is above max {rule['max']}")
            base = merge(kinds[rule["uses"]], rule.get("rules", {}))
            fields = tuple(
                MediaField(f["name"], f["form"], f.get("take")) for f in rule.get("fields", ())
            )
            if doc["request"]["media"]["form"] == "fields" and not fields:
                raise fail(where, "this provider's media are body fields: name them under `fields`")
            aspect = base.get("aspect") or {}
            duration = base.get("duration") or {}
            media[mtype] = MediaRule(
                type=mtype,
                uses=rule["uses"],
                kind=base["kind"],
                min=rule["min"],
                max=rule["max"],
                formats=frozenset(f.lower() for f in base["formats"]),
                min_side=base.get("min_side"),
                aspect_min=aspect.get("min"),
                aspect_max=aspect.get("max"),
                max_bytes=base.get("max_bytes"),
                duration_min=duration.get("min"),
                duration_max=duration.get("max"),
                fields=fields,
                source=rule["source"],
            )
        parameters: dict[str, Parameter] = {}
        for pname, p in body["parameters"].items():
            where = f"models.{mname}.parameters.{pname}"
            param = Parameter(
                name=pname,
                type=p.get("type", "string"),
                enum=tuple(p["enum"]) if "enum" in p else None,
                minimum=p.get("min"),
                maximum=p.get("max"),
                default=p.get("default"),
                has_default="default" in p,
                supported=p.get("supported", True),
                source=p["source"],
                path=p.get("path"),
                max_length=p.get("max_length"),
            )
            if param.has_default and param.enum is not None and param.default not in param.enum:
                raise fail(
                    where + ".default", f"{param.default!r} is not one of {list(param.enum)}"
                )
            if param.has_default and param.type in ("integer", "number"):
                lo = param.minimum if param.minimum is not None else -math.inf
                hi = param.maximum if param.maximum is not None else math.inf
                if not lo <= param.default <= hi:
                    raise fail(
                        where + ".default",
                        f"{param.default} is outside {_num(param.minimum)}..{_num(param.maximum)}",
                    )
            parameters[pname] = param
        for group in body.get("media_one_of", ()):
            unknown = [m for m in group if m not in media]
            if unknown:
                raise fail(f"models.{mname}.media_one_of", f"{unknown} are not media of this model")
        for source_name in body["output"]["aspect"]:
            if source_name not in media and source_name not in parameters:
                raise fail(
                    f"models.{mname}.output.aspect",
                    f"{source_name!r} is neither a media type nor a parameter of this model",
                )
        resolution = parameters.get("resolution")
        if resolution is not None and resolution.enum is not None:
            unknown = [r for r in resolution.enum if r not in doc["resolutions"]]
            if unknown:
                raise fail(f"models.{mname}.parameters.resolution", f"{unknown} not in resolutions")
        models[mname] = ModelRules(
            name=mname,
            source=body["source"],
            task_id=body.get("task_id", doc["defaults"]["task_id"]),
            attributes=MappingProxyType(dict(body.get("attributes", {}))),
            prompt=PromptRule(
                required=body["prompt"]["required"],
                max_length=body["prompt"].get("max_length"),
                overflow=body["prompt"].get("overflow", "truncate"),
                source=body["prompt"]["source"],
            ),
            media=MappingProxyType(media),
            parameters=MappingProxyType(parameters),
            aspect_sources=tuple(body["output"]["aspect"]),
            media_one_of=tuple(tuple(group) for group in body.get("media_one_of", ())),
        )

    # Lifecycle data.
    edges = {state: frozenset(nexts) for state, nexts in doc["states"]["edges"].items()}
    progress_raw = doc.get("progress")
    progress = None
    if progress_raw is not None:
        progress = MappingProxyType(
            {
                state: tuple(value) if isinstance(value, list) else (value,)
                for state, value in progress_raw.items()
                if state != "source"
            }
        )

    responses = doc["responses"]
    query = responses["query"]
    base = query.get("base", {})
    query_states = {
        state: tpl(merge(base, body or {}, null_deletes=False), f"responses.query.states.{state}")
        for state, body in query["states"].items()
    }
    uploads = doc.get("uploads")
    form = (uploads or {}).get("form")
    if form and not (responses.get("upload_policy") and "upload_policy" in operations):
        raise fail("uploads.form", "needs operations.upload_policy and responses.upload_policy")
    listing = responses.get("list")
    by_code = {e.code: e for e in errors.values()}
    media_fields = frozenset(
        f.name for model in models.values() for rule in model.media.values() for f in rule.fields
    )
    request_doc = doc["request"]
    body_fields = frozenset(
        {
            request_doc["model"],
            request_doc["prompt"],
            *request_doc.get("tolerated", ()),
            *request_doc.get("required_objects", {}),
            *([request_doc["media"]["path"]] if request_doc["media"].get("path") else []),
            *media_fields,
            *(c for c in request_doc["parameters"] if c),
            *(p.path for m in models.values() for p in m.parameters.values() if p.path),
        }
    )
    canonical = json.dumps(doc, sort_keys=True, default=str).encode()
    return Spec(
        provider=doc["provider"],
        title=doc["title"],
        file=file,
        digest=hashlib.sha256(canonical).hexdigest()[:16],
        raw=MappingProxyType(doc),
        regions=MappingProxyType(
            {k: v["url"].rstrip("/") for k, v in doc["hosts"]["regions"].items()}
        ),
        default_region=doc["hosts"]["default"],
        api_key_env=doc["client"]["api_key_env"],
        env_hint=doc["client"].get("env_hint"),
        poll_initial=float(doc["client"]["poll_interval"]["initial"]),
        poll_max=float(doc["client"]["poll_interval"]["max"]),
        retry_query_statuses=frozenset(doc["client"].get("retry_statuses", {}).get("query", ())),
        auth_header=doc["auth"]["header"],
        auth_scheme=doc["auth"]["scheme"],
        body_limit=doc["limits"]["body_bytes"]["value"],
        poll_min_interval=(doc["limits"].get("poll_min_interval") or {}).get("value"),
        operations=MappingProxyType(operations),
        model_path=doc["request"]["model"],
        prompt_path=doc["request"]["prompt"],
        required_objects=MappingProxyType(
            {k: v["violation"] for k, v in doc["request"].get("required_objects", {}).items()}
        ),
        media_form=doc["request"]["media"]["form"],
        media_path=doc["request"]["media"].get("path"),
        parameter_containers=tuple(doc["request"]["parameters"]),
        tolerated=frozenset(doc["request"].get("tolerated", ())),
        body_fields=body_fields,
        body_prefixes=frozenset(
            ".".join(path.split(".")[:i])
            for path in body_fields
            for i in range(1, path.count(".") + 1)
        ),
        media_fields=media_fields,
        upload_scheme=uploads["scheme"] if uploads else None,
        upload_header=(uploads["header"]["name"], uploads["header"]["value"])
        if uploads and "header" in uploads
        else None,
        upload_policy_ttl=uploads["policy_ttl"]["value"]
        if uploads and "policy_ttl" in uploads
        else 300,
        upload_max_bytes=uploads["max_file_bytes"]["value"]
        if uploads and "max_file_bytes" in uploads
        else 100 * 1024 * 1024,
        vocabularies=MappingProxyType(vocabularies),
        edges=MappingProxyType(edges),
        progress=progress,
        timing=MappingProxyType(
            {s: Timing(t["median"], t["p95"], t["source"]) for s, t in doc["timing"].items()}
        ),
        task_retention=float(doc["retention"]["task"]["seconds"]),
        result_retention=float(doc["retention"]["result_url"]["seconds"]),
        result_fps=doc["results"]["fps"]["value"],
        result_codec=doc["results"]["codec"]["value"],
        refuses_authorization=doc["results"]["refuses_authorization"]["value"],
        reissue_on_poll=doc["results"].get("reissue_on_poll", {}).get("value", False),
        expiry_param=doc["results"].get("expiry_param"),
        signature_params=tuple(doc["results"].get("signature_params", ())),
        resolutions=MappingProxyType(
            {k: (v["size"][0], v["size"][1], v["sr"]) for k, v in doc["resolutions"].items()}
        ),
        ratios=MappingProxyType(dict(doc["ratios"])),
        frames=frame_sizes(doc, fail),
        create_response=tpl(responses["create"]["body"], "responses.create.body"),
        create_status=responses["create"]["status"],
        query_response=QueryResponse(
            query["status"], MappingProxyType(query_states), query.get("source", "")
        ),
        cancel_response=tpl(responses["cancel"]["body"], "responses.cancel.body")
        if responses.get("cancel")
        else None,
        list_response=tpl(listing["body"], "responses.list.body") if listing else None,
        list_item=tpl(listing["item"], "responses.list.item") if listing else None,
        upload_response=tpl(responses["upload_policy"]["body"], "responses.upload_policy.body")
        if responses.get("upload_policy")
        else None,
        upload_form=UploadForm(
            policy_query=tpl(form["policy_query"], "uploads.form.policy_query"),
            url=tpl(form["url"], "uploads.form.url"),
            key=tpl(form["key"], "uploads.form.key"),
            fields=tpl(form["fields"], "uploads.form.fields"),
            file_field=form["file_field"],
            success_status=form["success_status"],
            source=form["source"],
        )
        if form
        else None,
        envelopes=MappingProxyType(
            {k: tpl(v, f"responses.error.envelopes.{k}") for k, v in envelopes_raw.items()}
        ),
        errors=MappingProxyType(errors),
        violations=MappingProxyType(violations),
        default_error_type=default_type,
        region_name=doc["defaults"].get("region", doc["hosts"]["default"]),
        models=MappingProxyType(models),
        _by_code=MappingProxyType(by_code),
    )
