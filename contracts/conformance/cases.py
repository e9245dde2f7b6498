"""Create requests drawn from a spec: valid ones, and ones that break exactly one rule.

Nothing here names a provider or a model. A :class:`Draft` is drawn from a
model's rules (every parameter in range or left to its default, media
counts and image shapes within the rules); a :class:`Mutation` breaks one
rule of it. What the provider must answer is not written down per case: the
same validator the mock runs, reading the *checker's* spec, is the oracle,
so a case knows the violation the spec says it must produce (or the
accepted request, with its defaults applied, for the result checks).
"""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson
from hypothesis import strategies as st
from PIL import Image

from contracts.bodies import build_create_body, create_headers, set_path
from contracts.media import MediaInfo, probe
from contracts.spec import MediaRule, ModelRules, Parameter, Spec
from contracts.task import TaskRequest
from contracts.validate import (
    MediaUnavailable,
    Violation,
    check_headers,
    check_remote_url,
    parse_json_body,
    validate_create,
)

__all__ = [
    "Case",
    "Draft",
    "MediaSpec",
    "Mutation",
    "boundary_drafts",
    "cheapest_draft",
    "expectation",
    "invalid_drafts",
    "materialize",
    "valid_drafts",
]


@dataclass(frozen=True)
class MediaSpec:
    """A piece of test media, described; made into bytes (and hosted) only when sent."""

    kind: str  # image / audio / video
    width: int = 0
    height: int = 0
    format: str = "png"
    seconds: int = 0
    url: str | None = None  # a literal URL instead of hosted bytes (URL rules)

    def render(self) -> tuple[bytes, str]:
        return _render(self)


@dataclass(frozen=True)
class Draft:
    """A create request in canonical form, before media are hosted."""

    model: str
    prompt: str | None
    media: tuple[tuple[str, MediaSpec], ...]
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class Mutation:
    """One broken rule: a label for people and what it does to the wire request."""

    label: str
    kind: str  # the violation kind the breakage aims at
    doc: Callable[[dict[str, Any]], None] | None = None
    headers: Callable[[dict[str, str]], None] | None = None
    body: bytes | None = None  # replaces the serialised body
    edit: Callable[[Draft], Draft] | None = None  # media left out, added, reshaped

    def __repr__(self) -> str:  # hypothesis prints this in falsifying examples
        return f"Mutation({self.label!r})"


@dataclass(frozen=True)
class Case:
    """A wire request ready to send, and what the spec says must come back."""

    model: str
    label: str
    headers: Mapping[str, str]
    body: bytes
    expected: TaskRequest | Violation
    media: Mapping[str, MediaInfo] = field(default_factory=dict)


# -- media bytes --------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _render(media: MediaSpec) -> tuple[bytes, str]:
    if media.kind == "image":
        image = Image.new("RGB", (media.width, media.height), (40, 120, 200))
        out = io.BytesIO()
        fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(media.format, media.format.upper())
        image.save(out, format=fmt)
        mime = Image.MIME.get(fmt, "application/octet-stream")
        return out.getvalue(), mime
    if media.kind == "audio":
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(b"\x00\x00" * 8000 * media.seconds)
        return out.getvalue(), "audio/wav"
    from mock_server.videos import render_mp4

    return render_mp4(media.width, media.height, media.seconds, 24), "video/mp4"


def _image_specs(rule: MediaRule) -> st.SearchStrategy[MediaSpec]:
    side = max(rule.min_side or 64, 64)
    lo, hi = rule.aspect_min or 0.5, rule.aspect_max or 2.0
    aspects = sorted({lo, hi, 1.0, 16 / 9, 9 / 16} & _between(lo, hi))
    formats = sorted(f for f in rule.formats if f in ("png", "jpeg", "jpg", "webp", "bmp"))
    return st.builds(
        _shaped,
        st.sampled_from(aspects),
        st.sampled_from([side, side + 40]),
        st.sampled_from(formats or ["png"]),
    )


def _between(lo: float, hi: float) -> set[float]:
    return {a for a in (lo, hi, 1.0, 16 / 9, 9 / 16) if lo <= a <= hi}


def _shaped(aspect: float, short: int, fmt: str) -> MediaSpec:
    # Both sides at least ``short``; rounding may not leave the allowed aspect range.
    if aspect >= 1:
        width, height = math.floor(short * aspect), short
    else:
        width, height = short, math.floor(short / aspect)
    return MediaSpec("image", width, height, fmt)


def _media_spec(rule: MediaRule) -> st.SearchStrategy[MediaSpec]:
    if rule.kind == "image":
        return _image_specs(rule)
    lo = math.ceil(rule.duration_min or 1)
    hi = max(lo, math.floor(rule.duration_max or lo + 2))
    if rule.kind == "audio":
        return st.builds(MediaSpec, st.just("audio"), seconds=st.integers(lo, min(hi, lo + 3)))
    return st.just(MediaSpec("video", 160, 96, "mp4", lo))


# -- valid drafts -------------------------------------------------------------------------------


def _parameter_value(param: Parameter) -> st.SearchStrategy[Any]:
    if param.enum is not None:
        return st.sampled_from(list(param.enum))
    if param.type == "boolean":
        return st.booleans()
    if param.type == "integer":
        lo = int(param.minimum) if param.minimum is not None else 0
        hi = int(param.maximum) if param.maximum is not None else lo + 100
        # Boundaries first: a moved range shows there.
        return st.one_of(st.sampled_from(sorted({lo, hi})), st.integers(lo, hi))
    if param.type == "number":
        low = param.minimum if param.minimum is not None else 0.0
        high = param.maximum if param.maximum is not None else low + 100.0
        return st.floats(low, high, allow_nan=False)
    limit = min(param.max_length or 40, 40)
    return st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=limit)


def _n_items(
    name: str, rule: MediaRule
) -> Callable[[int], st.SearchStrategy[tuple[tuple[str, MediaSpec], ...]]]:
    def items(n: int) -> st.SearchStrategy[tuple[tuple[str, MediaSpec], ...]]:
        return st.tuples(*[st.tuples(st.just(name), _media_spec(rule)) for _ in range(n)])

    return items


def _media_plan(rules: ModelRules) -> st.SearchStrategy[tuple[tuple[str, MediaSpec], ...]]:
    excluded: set[str] = set()
    choices: list[st.SearchStrategy[tuple[str, ...]]] = []
    for group in rules.media_one_of:
        excluded.update(group)
        choices.append(st.sampled_from([(member,) for member in group if member in rules.media]))
    parts: list[st.SearchStrategy[tuple[tuple[str, MediaSpec], ...]]] = []
    for name, rule in rules.media.items():
        if name in excluded:
            continue
        top = min(rule.max, rule.min + 2)
        parts.append(st.integers(rule.min, top).flatmap(_n_items(name, rule)))
    for choice in choices:
        parts.append(
            choice.flatmap(
                lambda names: st.tuples(
                    *[st.tuples(st.just(n), _media_spec(rules.media[n])) for n in names]
                )
            )
        )
    if not parts:
        return st.just(())
    return st.tuples(*parts).map(lambda groups: tuple(item for g in groups for item in g))


def valid_drafts(spec: Spec, model: str) -> st.SearchStrategy[Draft]:
    """Requests the spec accepts: each parameter drawn or left to its default."""
    rules = spec.models[model]
    params = {name: _parameter_value(p) for name, p in rules.parameters.items() if p.supported}
    prompt_limit = min(rules.prompt.max_length or 200, 200)
    prompt = st.text(
        st.characters(codec="ascii", categories=("L", "N", "Zs")), min_size=1, max_size=prompt_limit
    ).map(lambda t: t.strip() or "a calm sea")
    prompts = prompt if rules.prompt.required else st.one_of(st.none(), prompt)
    return st.builds(
        Draft,
        st.just(model),
        prompts,
        _media_plan(rules),
        st.fixed_dictionaries({}, optional=params),
    )


def cheapest_draft(spec: Spec, model: str) -> Draft:
    """The least a billable check can spend: shortest duration, smallest resolution."""
    rules = spec.models[model]
    params: dict[str, Any] = {}
    for name, param in rules.parameters.items():
        if not param.supported:
            continue
        if name == "duration" and param.minimum is not None:
            params[name] = int(param.minimum)
        elif name == "resolution" and param.enum:
            params[name] = min(
                param.enum, key=lambda r: math.prod(spec.resolutions.get(str(r), (1 << 30,))[:2])
            )
    media: list[tuple[str, MediaSpec]] = []
    later = {m for group in rules.media_one_of for m in group[1:]}
    for name, rule in rules.media.items():
        if name in later:
            continue
        first_of_group = any(name == group[0] for group in rules.media_one_of)
        media += [(name, _example(rule))] * (rule.min or (1 if first_of_group else 0))
    prompt = "a paper boat on a calm lake"
    return Draft(model, prompt, tuple(media), params)


def boundary_drafts(spec: Spec, model: str) -> list[Draft]:
    """The plainest valid request with each parameter at each edge: every enum value,
    each end of each range, each boolean. Ranges move at their ends, so these run
    first and always, whatever the random examples happen to draw."""
    base = cheapest_draft(spec, model)
    rules = spec.models[model]
    found = []
    for name, param in rules.parameters.items():
        if not param.supported:
            continue
        values: list[Any] = []
        if param.enum is not None:
            values = list(param.enum)
        elif param.type == "boolean":
            values = [True, False]
        elif param.type in ("integer", "number"):
            values = [v for v in (param.minimum, param.maximum) if v is not None]
            values = [int(v) if param.type == "integer" else v for v in values]
        for value in values:
            found.append(replace(base, parameters={**base.parameters, name: value}))
    return found


# -- one broken rule ----------------------------------------------------------------------------


def invalid_drafts(spec: Spec, model: str) -> list[st.SearchStrategy[tuple[Draft, Mutation]]]:
    """One strategy per rule that can be broken: a valid draft and that rule's breakage.

    A list, not one strategy, so a run covers every rule at least once rather
    than the ones chance picks; rules the spec has no violation for are left out.
    """
    rules = spec.models[model]
    drafts = valid_drafts(spec, model)
    return [st.tuples(drafts, mutation) for family in _FAMILIES for mutation in family(spec, rules)]


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = doc
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)

    return apply


def _put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: set_path(doc, path, value)


def _param_path(spec: Spec, param: Parameter) -> str:
    if param.path:
        return param.path
    container = spec.parameter_containers[0]
    return f"{container}.{param.name}" if container else param.name


def _out_of_range(name: str, path: str) -> Callable[[int], Mutation]:
    def mutation(value: int) -> Mutation:
        return Mutation(f"{name}={value} outside its range", "param_range", doc=_put(path, value))

    return mutation


def _pop_header(name: str) -> Callable[[dict[str, str]], None]:
    def edit(headers: dict[str, str]) -> None:
        headers.pop(name, None)

    return edit


def _set_header(name: str, value: str) -> Callable[[dict[str, str]], None]:
    return lambda headers: headers.__setitem__(name, value)


_Family = Callable[[Spec, ModelRules], list[st.SearchStrategy[Mutation]]]


def _model_family(spec: Spec, rules: ModelRules) -> list[st.SearchStrategy[Mutation]]:
    return [
        st.just(m)
        for m in (
            Mutation("unknown model", "model_unknown", doc=_put(spec.model_path, "no-such-model")),
            Mutation("model left out", "model_missing", doc=_drop(spec.model_path)),
        )
    ]


def _object_family(spec: Spec, rules: ModelRules) -> list[st.SearchStrategy[Mutation]]:
    found = [
        Mutation(f"{path} left out", kind, doc=_drop(path))
        for path, kind in spec.required_objects.items()
    ]
    return [st.just(m) for m in found]


def _prompt_family(spec: Spec, rules: ModelRules) -> list[st.SearchStrategy[Mutation]]:
    found = []
    if rules.prompt.required:
        found.append(Mutation("prompt left out", "prompt_missing", doc=_drop(spec.prompt_path)))
    if rules.prompt.max_length and rules.prompt.overflow == "reject":
        long = "x" * (rules.prompt.max_length + 1)
        found.append(
            Mutation(
                "prompt one over its limit", "prompt_too_long", doc=_put(spec.prompt_path, long)
            )
        )
    return [st.just(m) for m in found]


def _parameter_family(spec: Spec, rules: ModelRules) -> list[st.SearchStrategy[Mutation]]:
    found: list[st.SearchStrategy[Mutation]] = []
    for param in rules.parameters.values():
        path = _param_path(spec, param)
        name = param.name
        if not param.supported:
            found.append(
                st.just(
                    Mutation(
                        f"{name} (unsupported) sent", "param_unsupported", doc=_put(path, "16:9")
                    )
                )
            )
            continue
        if param.type in ("integer", "number") and param.enum is None:
            outs = []
            if param.minimum is not None:
                outs.append(st.integers(int(param.minimum) - 5, int(param.minimum) - 1))
            if param.maximum is not None and param.maximum < 2**31:
                outs.append(st.integers(int(param.maximum) + 1, int(param.maximum) + 5))
            for out in outs:
                found.append(out.map(_out_of_range(name, path)))
            found.append(
                st.just(Mutation(f"{name} as a string", "field_type", doc=_put(path, "five")))
            )
        if param.enum is not None:
            found.append(
                st.just(
                    Mutation(
                        f"{name} not one of its values",
                        "param_enum",
                        doc=_put(path, "paddock-bogus"),
                    )
                )
            )
        if param.type == "string" and param.max_length:
            too_long = "y" * (param.max_length + 1)
            found.append(
                st.just(
                    Mutation(
                        f"{name} one over its length", "param_length", doc=_put(path, too_long)
                    )
                )
            )
        if param.type == "boolean":
            found.append(
                st.just(Mutation(f"{name} as a string", "field_type", doc=_put(path, "yes")))
            )
    return found


def _media_family(spec: Spec, rules: ModelRules) -> list[st.SearchStrategy[Mutation]]:
    found: list[st.SearchStrategy[Mutation]] = []
    for name, rule in rules.media.items():
        alternatives = any(name in g for g in rules.media_one_of)
        if rule.min >= 1 and not alternatives:
            found.append(
                st.just(Mutation(f"{name} left out", "media_missing", edit=_without(name)))
            )
        if rule.max < 10:
            found.append(
                st.just(
                    Mutation(
                        f"{rule.max + 1} {name} items",
                        "media_count",
                        edit=_counted(name, rule, rule.max + 1),
                    )
                )
            )
        found.append(
            st.just(
                Mutation(
                    f"{name} at a non-URL",
                    "media_url",
                    edit=_swapped(name, MediaSpec(rule.kind, url="ftp:/nowhere/x.png")),
                )
            )
        )
        if rule.kind == "image":
            if rule.min_side and rule.min_side > 16:
                small = MediaSpec("image", rule.min_side - 1, rule.min_side + 50, "png")
                found.append(
                    st.just(
                        Mutation(
                            f"{name} below its minimum side",
                            "media_dimensions",
                            edit=_swapped(name, small),
                        )
                    )
                )
            if rule.aspect_max:
                side = max(rule.min_side or 64, 64)
                wide = MediaSpec("image", math.ceil(side * rule.aspect_max * 1.3), side, "png")
                found.append(
                    st.just(
                        Mutation(
                            f"{name} wider than its aspect limit",
                            "media_aspect",
                            edit=_swapped(name, wide),
                        )
                    )
                )
            if rule.formats and "gif" not in rule.formats:
                side = max(rule.min_side or 64, 64)
                gif = MediaSpec("image", side, side, "gif")
                found.append(
                    st.just(Mutation(f"{name} as GIF", "media_format", edit=_swapped(name, gif)))
                )
    foreign = sorted({m for other in spec.models.values() for m in other.media} - set(rules.media))
    if foreign and spec.media_form == "typed_list":
        found.append(
            st.sampled_from(foreign).map(
                lambda m: Mutation(f"{m} (not this model's)", "media_type", edit=_added(m))
            )
        )
    return found


def _header_family(spec: Spec, rules: ModelRules) -> list[st.SearchStrategy[Mutation]]:
    found = []
    for rule in spec.operations["create"].headers:
        found.append(
            Mutation(
                f"{rule.name} left out",
                "header_missing",
                headers=_pop_header(rule.name),
            )
        )
        found.append(
            Mutation(
                f"{rule.name} wrong",
                "header_invalid",
                headers=_set_header(rule.name, "paddock-wrong"),
            )
        )
    if spec.operations["create"].content_type:
        found.append(
            Mutation(
                "text/plain body",
                "content_type",
                headers=_set_header("Content-Type", "text/plain"),
            )
        )
    found.append(Mutation("body is not JSON", "body_not_json", body=b'{"model": '))
    found.append(Mutation("body is a JSON list", "body_not_object", body=b"[]"))
    return [st.just(m) for m in found]


def _without(name: str) -> Callable[[Draft], Draft]:
    return lambda d: replace(d, media=tuple(m for m in d.media if m[0] != name))


def _counted(name: str, rule: MediaRule, count: int) -> Callable[[Draft], Draft]:
    def edit(d: Draft) -> Draft:
        example = next((m[1] for m in d.media if m[0] == name), None) or _example(rule)
        kept = tuple(m for m in d.media if m[0] != name)
        return replace(d, media=kept + ((name, example),) * count)

    return edit


def _swapped(name: str, media: MediaSpec) -> Callable[[Draft], Draft]:
    return lambda d: replace(d, media=(*tuple(m for m in d.media if m[0] != name), (name, media)))


def _added(name: str) -> Callable[[Draft], Draft]:
    return lambda d: replace(d, media=(*d.media, (name, MediaSpec("image", 512, 512))))


def _example(rule: MediaRule) -> MediaSpec:
    """The plainest media a rule accepts."""
    if rule.kind == "image":
        side = max(rule.min_side or 64, 64)
        return MediaSpec("image", side, side, "png")
    seconds = math.ceil(rule.duration_min or 1)
    if rule.kind == "audio":
        return MediaSpec("audio", seconds=seconds)
    return MediaSpec("video", 160, 96, "mp4", seconds)


_FAMILIES: tuple[_Family, ...] = (
    _model_family,
    _object_family,
    _prompt_family,
    _parameter_family,
    _media_family,
    _header_family,
)


# -- from draft to wire, with the oracle's answer -----------------------------------------------


class _KnownMedia:
    """The oracle's resolver: it knows what each hosted URL holds, because we made it."""

    def __init__(self, infos: Mapping[str, MediaInfo | None]) -> None:
        self._infos = infos

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        if url in self._infos:
            return "remote", self._infos[url]
        check_remote_url(url)
        return "remote", None


def materialize(
    spec: Spec,
    draft: Draft,
    key: str,
    host: Callable[[bytes, str], str | None],
    mutation: Mutation | None = None,
) -> Case | None:
    """The wire request and the spec's verdict on it; None when media cannot be hosted."""
    if mutation is not None and mutation.edit is not None:
        draft = mutation.edit(draft)
    urls: list[tuple[str, str]] = []
    infos: dict[str, MediaInfo | None] = {}
    for media_type, media in draft.media:
        if media.url is not None:
            urls.append((media_type, media.url))
            continue
        data, mime = media.render()
        url = host(data, mime)
        if url is None:
            return None
        infos[url] = probe(data)
        urls.append((media_type, url))
    plain = {k: v for k, v in draft.parameters.items() if not _routed(spec, draft.model, k)}
    doc = build_create_body(spec, draft.model, prompt=draft.prompt, media=urls, parameters=plain)
    rules = spec.models.get(draft.model)
    for name, value in draft.parameters.items():
        if rules is not None and name in rules.parameters and _routed(spec, draft.model, name):
            set_path(doc, _param_path(spec, rules.parameters[name]), value)
    headers = {**create_headers(spec, key)}
    headers.pop(spec.auth_header, None)
    headers = {k: v for k, v in headers.items() if k.lower() != spec.auth_header.lower()}
    body: bytes | None = None
    label = "valid request"
    if mutation is not None:
        label = mutation.label
        if mutation.doc is not None:
            mutation.doc(doc)
        if mutation.headers is not None:
            mutation.headers(headers)
        body = mutation.body
    raw = body if body is not None else orjson.dumps(doc)
    expected = expectation(spec, headers, raw, infos)
    return Case(draft.model, label, headers, raw, expected, {u: i for u, i in infos.items() if i})


def _routed(spec: Spec, model: str, name: str) -> bool:
    rules = spec.models.get(model)
    return bool(rules and name in rules.parameters and rules.parameters[name].path)


def expectation(
    spec: Spec, headers: Mapping[str, str], body: bytes, infos: Mapping[str, MediaInfo | None]
) -> TaskRequest | Violation:
    """What the spec says of this request, in the order a provider checks (after auth)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    violation = check_headers(spec, "create", lowered)
    if violation is not None:
        return violation
    doc, violation = parse_json_body(spec, "create", lowered, body)
    if violation is not None or doc is None:
        return violation or Violation("body_not_json")
    try:
        return validate_create(spec, lowered, doc, _KnownMedia(infos))
    except MediaUnavailable as exc:
        return Violation(exc.kind, None, exc.detail)
