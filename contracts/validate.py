"""Validate a raw create request against a spec: a canonical request or the first violation.

Checks run in the order the real services apply them (auth, required
headers, JSON, model, media, prompt, parameters) so the mock answers a
request with two problems the way the provider would: with the first one.
Each violation carries the rule's kind and the values a message needs; the
spec decides which catalogue error and which words answer it.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from contracts.bodies import path_parts
from contracts.cache import BoundedCache
from contracts.media import MediaInfo
from contracts.spec import ErrorDef, MediaRule, ModelRules, Parameter, Spec
from contracts.task import MediaItem, TaskRequest

__all__ = [
    "MediaResolver",
    "MediaUnavailable",
    "RemoteOnlyResolver",
    "Violation",
    "check_auth",
    "check_headers",
    "json_type",
    "media_bound",
    "media_urls",
    "parse_json_body",
    "validate_create",
]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: which kind, which field, and the values its message names."""

    kind: str
    field: str | None = None
    detail: str = ""
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def resolve(self, spec: Spec, **extra: Any) -> tuple[ErrorDef, str]:
        """The catalogue error and the message the provider answers this violation with."""
        rule = spec.violations[self.kind]
        template = rule.message or rule.error.message
        values = {"field": self.field or "", "detail": self.detail, **self.values, **extra}
        # What the client sent is quoted back, never at its own length.
        shown = {k: _clip(v, 200) if isinstance(v, str) else v for k, v in values.items()}
        return rule.error, _Formatter().vformat(template, (), _Defaulting(shown))

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        return f"{self.kind}{where}: {self.detail}" if self.detail else f"{self.kind}{where}"


class _Defaulting(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class _Formatter(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        return kwargs[key] if isinstance(key, str) else super().get_value(key, args, kwargs)


class MediaUnavailable(Exception):
    """A media URL could not be used: ``kind`` is ``media_url`` or ``media_unreadable``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class MediaResolver(Protocol):
    """Turns a media URL into what the service can learn about it.

    Returns ``(origin, info)``; ``info`` is None when the bytes are not looked
    at (a remote URL accepted on syntax). Raises MediaUnavailable otherwise.
    """

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]: ...


class RemoteOnlyResolver:
    """Accepts http(s) URLs on syntax alone; what a client can check without fetching."""

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        check_remote_url(url)
        return "remote", None


def check_remote_url(url: str) -> None:
    """Raise MediaUnavailable unless ``url`` is an absolute http(s) URL with a host."""
    if len(url) <= 2048:
        problem = _URL_VERDICTS.get(url)
        if problem is None:
            # Clients send the same media URLs over and over: judge each once.
            problem = _URL_VERDICTS.put(url, _url_problem(url))
    else:
        problem = _url_problem(url)
    if problem:
        raise MediaUnavailable("media_url", problem)


_URL_VERDICTS: BoundedCache[str, str] = BoundedCache(4096)


def _url_problem(url: str) -> str:
    """What is wrong with a media URL, or "" when it is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"{_clip(url)!r} is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"{_clip(url)!r} is not an http(s) URL"
    if not parts.hostname:
        return f"{_clip(url)!r} has no host"
    return ""


def check_auth(
    spec: Spec, headers: Mapping[str, str], accepted: frozenset[str] | None
) -> tuple[str | None, Violation | None]:
    """Return ``(key, None)`` for an accepted key, else ``(None, violation)``.

    ``headers`` must have lower-case names. With ``accepted`` None any
    non-empty key is taken, as a local mock should.
    """
    raw = headers.get(spec.auth_header.lower())
    if raw is None or not raw.strip():
        return None, Violation("auth_missing", spec.auth_header, "no API key was sent")
    scheme, _, key = raw.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != spec.auth_scheme.lower() or not key:
        return None, Violation(
            "auth_invalid", spec.auth_header, f"expected '{spec.auth_scheme} <key>'"
        )
    if accepted is not None and key not in accepted:
        return None, Violation("auth_invalid", spec.auth_header, "the key is not accepted")
    return key, None


def check_headers(spec: Spec, operation: str, headers: Mapping[str, str]) -> Violation | None:
    """The operation's required headers, by name and value."""
    for rule in spec.operations[operation].headers:
        value = headers.get(rule.name.lower())
        if value is None:
            return Violation(
                "header_missing",
                rule.name,
                f"header {rule.name} is required",
                {"allowed": rule.value},
            )
        if value.strip().lower() != rule.value.lower():
            return Violation(
                "header_invalid",
                rule.name,
                f"header {rule.name} must be {rule.value!r}",
                {"allowed": rule.value, "value": value},
            )
    return None


def parse_json_body(
    spec: Spec, operation: str, headers: Mapping[str, str], body: bytes
) -> tuple[dict[str, Any] | None, Violation | None]:
    """Content type, size and JSON syntax, in that order."""
    expected = spec.operations[operation].content_type
    if expected:
        got = headers.get("content-type", "")
        if got.split(";", 1)[0].strip().lower() != expected.lower():
            return None, Violation(
                "content_type",
                "Content-Type",
                f"expected {expected}",
                {"value": got or "(none)", "allowed": expected},
            )
    if len(body) > spec.body_limit:
        return None, Violation(
            "body_too_large",
            None,
            f"{len(body)} bytes is over {spec.body_limit}",
            {"value": len(body), "max": spec.body_limit},
        )
    try:
        # orjson: strict RFC 8259 (no NaN, 64-bit integers, bounded nesting) and
        # five times faster than the stdlib on the create hot path.
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return None, Violation("body_not_json", None, str(exc).split(":", 1)[0])
    if not isinstance(doc, dict):
        return None, Violation(
            "body_not_object",
            None,
            f"the body is a JSON {json_type(doc)}",
            {"actual": json_type(doc)},
        )
    return doc, None


def validate_create(
    spec: Spec,
    headers: Mapping[str, str],
    doc: Mapping[str, Any],
    resolver: MediaResolver,
    *,
    note_ignored: bool = True,
) -> TaskRequest | Violation:
    """Validate a parsed create body after auth, headers and JSON have passed.

    ``note_ignored=False`` skips listing the fields the service would ignore,
    which only the mock's journal shows (a client checking locally does not).
    """
    model_name = _get(doc, spec.model_path)
    if model_name is _ABSENT or model_name in ("", None):
        return Violation("model_missing", spec.model_path, "no model was named")
    if not isinstance(model_name, str):
        return _type_violation(spec.model_path, "string", model_name)
    rules = spec.models.get(model_name)
    if rules is None:
        return Violation(
            "model_unknown",
            spec.model_path,
            f"{model_name!r} is not a model of {spec.provider}",
            {"value": model_name, "allowed": ", ".join(spec.models)},
        )
    ctx = {"model": model_name}
    for path, kind in spec.required_objects.items():
        value = _get(doc, path)
        if value is _ABSENT or value is None:
            return Violation(kind, path, f"{path} is required", ctx)
        if not isinstance(value, dict):
            return _type_violation(path, "object", value)

    media = _collect_media(spec, rules, doc, headers, resolver)
    if isinstance(media, Violation):
        return media

    prompt = _get(doc, spec.prompt_path)
    truncated = False
    if prompt is _ABSENT or prompt is None or prompt == "":
        if rules.prompt.required:
            return Violation("prompt_missing", spec.prompt_path, "a prompt is required", ctx)
        prompt = None
    elif not isinstance(prompt, str):
        return _type_violation(spec.prompt_path, "string", prompt)
    elif rules.prompt.max_length is not None and len(prompt) > rules.prompt.max_length:
        if rules.prompt.overflow == "reject":
            return Violation(
                "prompt_too_long",
                spec.prompt_path,
                "the prompt is too long",
                {"value": len(prompt), "max": rules.prompt.max_length, **ctx},
            )
        prompt, truncated = prompt[: rules.prompt.max_length], True

    params = _collect_parameters(spec, rules, doc)
    if isinstance(params, Violation):
        return params
    resolved, explicit = params
    return TaskRequest(
        model=model_name,
        prompt=prompt,
        media=media,
        parameters=MappingProxyType(resolved),
        explicit=frozenset(explicit),
        ignored=_ignored_fields(spec, rules, doc) if note_ignored else (),
        prompt_truncated=truncated,
    )


# -- media --------------------------------------------------------------------------------------


def media_bound(spec: Spec) -> int:
    """The most media items any model of the spec accepts."""
    return max((sum(r.max for r in m.media.values()) for m in spec.models.values()), default=0)


def media_urls(spec: Spec, doc: Mapping[str, Any], bound: int | None = None) -> list[str]:
    """Every string a create body gives where the spec keeps media, in body order.

    A server looks these up before validating (its storage may be remote);
    at most ``bound`` (``media_bound(spec)``), so a body listing thousands
    costs no more than one listing the most a model takes.
    """
    bound = media_bound(spec) if bound is None else bound
    found: list[str] = []
    if spec.media_form == "typed_list":
        entries = _get(doc, spec.media_path or "media")
        for entry in entries if isinstance(entries, list) else ():
            url = entry.get("url") if isinstance(entry, dict) else None
            if isinstance(url, str):
                found.append(url)
    else:
        for name in sorted(spec.media_fields):
            value = _get(doc, name)
            values = value if isinstance(value, list) else [value]
            found.extend(v for v in values if isinstance(v, str))
    return list(dict.fromkeys(found))[:bound]


def _collect_media(
    spec: Spec,
    rules: ModelRules,
    doc: Mapping[str, Any],
    headers: Mapping[str, str],
    resolver: MediaResolver,
) -> tuple[MediaItem, ...] | Violation:
    found = (
        _typed_list_media(spec, rules, doc)
        if spec.media_form == "typed_list"
        else _field_media(spec, rules, doc)
    )
    if isinstance(found, Violation):
        return found
    by_type: dict[str, list[tuple[str, str]]] = {}
    for media_type, url, where in found:
        by_type.setdefault(media_type, []).append((url, where))
    for media_type, rule in rules.media.items():
        count = len(by_type.get(media_type, ()))
        values = {
            "model": rules.name,
            "media_type": media_type,
            "count": count,
            "min": rule.min,
            "max": rule.max,
        }
        if count == 0 and rule.min > 0:
            where = _media_field_name(spec, rule)
            return Violation("media_missing", where, f"{media_type} is required", values)
        if not rule.min <= count <= rule.max:
            return Violation(
                "media_count",
                _media_field_name(spec, rule),
                f"{count} {media_type} items; allowed {rule.min} to {rule.max}",
                values,
            )
    for group in rules.media_one_of:
        if not any(by_type.get(media_type) for media_type in group):
            names = " or ".join(group)
            return Violation(
                "media_missing",
                _media_field_name(spec, rules.media[group[0]]),
                f"{names} is required",
                {"model": rules.name, "media_type": names, "count": 0, "min": 1, "max": 1},
            )
    items: list[MediaItem] = []
    for media_type, url, where in found:
        rule = rules.media[media_type]
        item = _resolve_media(spec, rule, url, where, headers, resolver, rules.name)
        if isinstance(item, Violation):
            return item
        items.append(item)
    return tuple(items)


def _typed_list_media(
    spec: Spec, rules: ModelRules, doc: Mapping[str, Any]
) -> list[tuple[str, str, str]] | Violation:
    path = spec.media_path or "media"
    raw = _get(doc, path)
    if raw is _ABSENT or raw is None:
        return []
    if not isinstance(raw, list):
        return _type_violation(path, "array", raw)
    found: list[tuple[str, str, str]] = []
    for index, entry in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(entry, dict):
            return _type_violation(where, "object", entry)
        media_type, url = entry.get("type"), entry.get("url")
        if not isinstance(media_type, str):
            return _type_violation(where + ".type", "string", media_type)
        if media_type not in rules.media:
            return Violation(
                "media_type",
                where + ".type",
                f"{media_type!r} is not accepted by {rules.name}",
                {
                    "model": rules.name,
                    "media_type": media_type,
                    "value": media_type,
                    "allowed": ", ".join(rules.media) or "none",
                },
            )
        if not isinstance(url, str):
            return _type_violation(where + ".url", "string", url)
        found.append((media_type, url, where + ".url"))
    return found


def _field_media(
    spec: Spec, rules: ModelRules, doc: Mapping[str, Any]
) -> list[tuple[str, str, str]] | Violation:
    accepted = {f.name for rule in rules.media.values() for f in rule.fields}
    for name in sorted(spec.media_fields - accepted):
        if _get(doc, name) not in (_ABSENT, None):
            return Violation(
                "media_type",
                name,
                f"{name} is not accepted by {rules.name}",
                {"model": rules.name, "media_type": name, "value": name},
            )
    found: list[tuple[str, str, str]] = []
    for media_type, rule in rules.media.items():
        for media_field in rule.fields:
            raw = _get(doc, media_field.name)
            if raw is _ABSENT or raw is None:
                continue
            if media_field.form == "url":
                if not isinstance(raw, str):
                    return _type_violation(media_field.name, "string", raw)
                found.append((media_type, raw, media_field.name))
            else:
                if not isinstance(raw, list):
                    return _type_violation(media_field.name, "array", raw)
                urls = raw[: media_field.take] if media_field.take else raw
                for index, url in enumerate(urls):
                    if not isinstance(url, str):
                        return _type_violation(f"{media_field.name}[{index}]", "string", url)
                    found.append((media_type, url, f"{media_field.name}[{index}]"))
            break  # the first field present is the one used
    return found


def _media_field_name(spec: Spec, rule: MediaRule) -> str:
    if rule.fields:
        return rule.fields[0].name
    return spec.media_path or "media"


def _resolve_media(
    spec: Spec,
    rule: MediaRule,
    url: str,
    where: str,
    headers: Mapping[str, str],
    resolver: MediaResolver,
    model: str,
) -> MediaItem | Violation:
    ctx = {"model": model, "media_type": rule.type}
    if spec.upload_scheme and url.startswith(spec.upload_scheme) and spec.upload_header:
        name, value = spec.upload_header
        if headers.get(name.lower(), "").lower() != value.lower():
            return Violation(
                "media_url", where, f"{spec.upload_scheme} URLs need header {name}: {value}", ctx
            )
    try:
        origin, info = resolver.resolve(url)
    except MediaUnavailable as exc:
        return Violation(exc.kind, where, exc.detail, ctx)
    if info is not None:
        broken = _check_media(rule, info, where, ctx)
        if broken is not None:
            return broken
    return MediaItem(type=rule.type, url=url, origin=origin, info=info)


def _check_media(
    rule: MediaRule, info: MediaInfo, where: str, ctx: Mapping[str, Any]
) -> Violation | None:
    if info.kind != rule.kind or info.format.lower() not in rule.formats:
        return Violation(
            "media_format",
            where,
            f"{info.kind}/{info.format} is not accepted",
            {**ctx, "value": info.format, "allowed": ", ".join(sorted(rule.formats))},
        )
    if rule.max_bytes is not None and info.bytes > rule.max_bytes:
        return Violation(
            "media_bytes",
            where,
            f"{info.bytes} bytes is over {rule.max_bytes}",
            {**ctx, "value": info.bytes, "max": rule.max_bytes},
        )
    if (
        rule.min_side is not None
        and info.width is not None
        and info.height is not None
        and min(info.width, info.height) < rule.min_side
    ):
        return Violation(
            "media_dimensions",
            where,
            f"{info.width}x{info.height} has a side under {rule.min_side}",
            {**ctx, "value": f"{info.width}x{info.height}", "min": rule.min_side},
        )
    aspect = info.aspect
    if (
        aspect is not None
        and rule.aspect_min is not None
        and rule.aspect_max is not None
        and not rule.aspect_min <= aspect <= rule.aspect_max
    ):
        return Violation(
            "media_aspect",
            where,
            f"aspect {aspect:.3f} is outside {rule.aspect_min}..{rule.aspect_max}",
            {**ctx, "value": f"{aspect:.3f}", "min": rule.aspect_min, "max": rule.aspect_max},
        )
    if (
        info.duration is not None
        and rule.duration_min is not None
        and rule.duration_max is not None
        and not rule.duration_min <= info.duration <= rule.duration_max
    ):
        return Violation(
            "media_duration",
            where,
            f"{info.duration:.2f} s is outside {rule.duration_min}..{rule.duration_max} s",
            {
                **ctx,
                "value": f"{info.duration:.2f}",
                "min": rule.duration_min,
                "max": rule.duration_max,
            },
        )
    return None


# -- parameters ---------------------------------------------------------------------------------


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
}
_GO_TYPES = {"integer": "int", "number": "float64", "boolean": "bool", "string": "string"}


def _collect_parameters(
    spec: Spec, rules: ModelRules, doc: Mapping[str, Any]
) -> tuple[dict[str, Any], set[str]] | Violation:
    containers: list[tuple[str, Mapping[str, Any]]] = []
    for path in spec.parameter_containers:
        if path == "":
            containers.append(("", doc))
            continue
        raw = _get(doc, path)
        if raw is _ABSENT or raw is None:
            continue
        if not isinstance(raw, dict):
            return _type_violation(path, "object", raw)
        containers.append((path, raw))
    resolved: dict[str, Any] = {}
    explicit: set[str] = set()
    for name, param in rules.parameters.items():
        if param.path is not None:
            value = _get(doc, param.path)
            if value is _ABSENT or value is None:
                if param.supported and param.has_default:
                    resolved[name] = param.default
                continue
            broken = _check_parameter(param, value, param.path, rules.name)
            if broken is not None:
                return broken
            resolved[name] = value
            explicit.add(name)
            continue
        for prefix, container in containers:
            value = container.get(name)
            if value is not None:
                where = f"{prefix}.{name}" if prefix else name
                break
        else:
            if param.supported and param.has_default:
                resolved[name] = param.default
            continue
        broken = _check_parameter(param, value, where, rules.name)
        if broken is not None:
            return broken
        resolved[name] = value
        explicit.add(name)
    return resolved, explicit


def _check_parameter(param: Parameter, value: Any, where: str, model: str) -> Violation | None:
    if not param.supported:
        return Violation(
            "param_unsupported",
            where,
            f"{param.name} is not supported by {model}",
            {"model": model, "value": _show(value)},
        )
    if not _CHECKS[param.type](value):
        return _type_violation(where, param.type, value)
    if param.enum is not None and value not in param.enum:
        return Violation(
            "param_enum",
            where,
            f"{_show(value)} is not one of {list(param.enum)}",
            {"model": model, "value": _show(value), "allowed": ", ".join(map(str, param.enum))},
        )
    if param.max_length is not None and isinstance(value, str) and len(value) > param.max_length:
        return Violation(
            "param_length",
            where,
            f"{len(value)} characters is over {param.max_length}",
            {"model": model, "value": len(value), "max": param.max_length},
        )
    low, high = param.minimum, param.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        return Violation(
            "param_range",
            where,
            f"{value} is outside {_num(low)}..{_num(high)}",
            {"model": model, "value": _show(value), "min": _num(low), "max": _num(high)},
        )
    return None


def _ignored_fields(spec: Spec, rules: ModelRules, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """Body fields the service accepts without using: kept so the journal can show them."""
    known = spec.body_fields
    prefixes = spec.body_prefixes
    containers = spec.parameter_containers
    flat_parameters = "" in containers
    out: list[str] = []

    def visit(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            if path in containers and isinstance(value, dict):
                out.extend(f"{path}.{k}" for k in value if k not in rules.parameters)
            elif path in prefixes and isinstance(value, dict):
                visit(value, path)
            elif path in known or (flat_parameters and not prefix and key in rules.parameters):
                continue
            else:
                out.append(path)

    visit(doc, "")
    return tuple(out)


# -- small helpers ------------------------------------------------------------------------------


class _AbsentType:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _AbsentType()


def _get(doc: Mapping[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in path_parts(dotted):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def json_type(value: Any) -> str:
    """The JSON type's name, as error messages and drift reports say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_violation(where: str, expected: str, value: Any) -> Violation:
    actual = json_type(value)
    return Violation(
        "field_type",
        where,
        f"expected {expected}, got {actual}",
        {
            "expected": expected,
            "actual": actual,
            "json_type": actual,
            "go_type": _GO_TYPES.get(expected, expected),
            "value": _show(value),
        },
    )


def _show(value: Any) -> str:
    """A value as a message quotes it: JSON, clipped; nesting past any sane depth summarised.

    Bodies may nest a thousand levels deep (JSON parsers allow it), so this
    never recurses through the whole value.
    """
    if isinstance(value, str):
        return _clip(value)
    try:
        text = orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):  # deeper than orjson writes: say what it is
        text = "[…]" if isinstance(value, list) else "{…}"
    return _clip(text)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)
