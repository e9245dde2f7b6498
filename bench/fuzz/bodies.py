"""Hostile create calls: a valid body from the spec with one field replaced by something nasty.

Every field comes from walking a body the provider accepts (built by
``contracts.bodies`` from the spec), so each model's prompt, parameters and
media entries are reached without naming any of them here. The hostile value
is spliced in as raw bytes, so it can be what no JSON encoder writes: 5,000
levels of nesting, a 400-digit number, invalid UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from bench.fuzz.cases import Context, RawCase, Sent, http, weighted
from contracts.bodies import build_create_body, set_path
from contracts.spec import ModelRules, Spec
from mock_server.scenarios import HEADER as SCENARIO_HEADER

__all__ = ["FAMILIES", "base_body"]

_SENTINEL = "\x01fuzz\x01"
_QUOTED = json.dumps(_SENTINEL).encode()
Step = str | int


@dataclass(frozen=True)
class Target:
    """Where in a body the hostile value goes; ``typed`` fields refuse any structure."""

    name: str
    steps: tuple[Step, ...]
    typed: bool


@dataclass(frozen=True)
class Value:
    """A hostile JSON value as raw bytes; ``refused`` when no typed field may accept it."""

    text: bytes
    label: str
    refused: bool


def _plain_value(param_type: str) -> Any:
    return {"string": "blurry", "integer": 0, "number": 0, "boolean": True}.get(param_type, "x")


def base_body(spec: Spec, model: str, image_url: str) -> dict[str, Any]:
    """A create body the provider accepts: the model's image media and every parameter set."""
    rules = spec.models[model]
    media = [
        (media_type, image_url)
        for media_type, rule in rules.media.items()
        if rule.kind == "image" and rule.max >= 1
        for _ in range(max(rule.min, 1))
    ]
    body = build_create_body(spec, model, prompt="a cat on the grass", media=media)
    container = spec.parameter_containers[0]
    for name, param in rules.parameters.items():
        if not param.supported:
            continue
        value = param.default if param.has_default else _plain_value(param.type)
        set_path(body, param.path or (f"{container}.{name}" if container else name), value)
    return body


def _walk(node: Any, steps: tuple[Step, ...]) -> list[Target]:
    name = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")
    found = [Target(name or "(root)", steps, not steps or not isinstance(node, dict))]
    if isinstance(node, dict):
        for key, child in node.items():
            found.extend(_walk(child, (*steps, key)))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.extend(_walk(child, (*steps, index)))
    return found


def targets(spec: Spec, rules: ModelRules, body: dict[str, Any]) -> list[Target]:
    """Every field of ``body``, the media fields it does not use, and an unknown field."""
    found = _walk(body, ())
    present = {t.steps[0] for t in found if t.steps}
    for rule in rules.media.values():
        for media_field in rule.fields:
            if media_field.name not in present:
                # An alternative to a field the body already fills (``images``
                # beside ``image``): which one counts is the provider's choice.
                filled = any(f.name in present for f in rule.fields)
                found.append(Target(media_field.name, (media_field.name,), not filled))
    found.append(Target("fuzz_unknown", ("fuzz_unknown",), False))
    return found


def _splice(body: dict[str, Any], steps: tuple[Step, ...], value: bytes) -> bytes:
    if not steps:
        return value
    doc = json.loads(json.dumps(body))
    node: Any = doc
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = _SENTINEL
    return json.dumps(doc).encode().replace(_QUOTED, value)


# -- hostile values -----------------------------------------------------------------------------


@st.composite
def deep_values(draw: st.DrawFn) -> Value:
    """Arrays, objects or both nested 900-5,000 deep; mostly near orjson's 1,024 limit."""
    depth = draw(weighted((3, st.integers(975, 1030)), (1, st.integers(900, 5000))))
    shape = draw(st.sampled_from(["array", "object", "mixed"]))
    leaf = draw(st.sampled_from([b"1", b'"x"', b"null", b"{}", b"[]"]))
    opener = {"array": b"[", "object": b'{"a":', "mixed": b'[{"a":'}[shape]
    closer = {"array": b"]", "object": b"}", "mixed": b"}]"}[shape]
    closed = draw(st.integers(0, 9)) > 0  # now and then left open: not JSON at all
    text = opener * depth + leaf + (closer * depth if closed else b"")
    return Value(text, f"{shape} nested {depth} deep{'' if closed else ', unclosed'}", True)


@st.composite
def huge_values(draw: st.DrawFn) -> Value:
    """Long strings and arrays: mostly up to 1 MiB, a few at the 32 MiB body limit."""
    size = draw(
        weighted(
            (89, st.integers(2500, 1024 * 1024)),
            (10, st.integers(1024 * 1024, 4 * 1024 * 1024)),
            (1, st.integers(32 * 1024 * 1024 - 4096, 32 * 1024 * 1024 + 4096)),
        )
    )
    kind = draw(st.sampled_from(["ascii", "utf8", "emoji", "escapes", "array", "strings"]))
    if kind == "array":
        return Value(b"[" + b"1," * (size // 2) + b"1]", f"array of {size // 2 + 1} ones", True)
    if kind == "strings":
        return Value(b"[" + b'"x",' * (size // 4) + b'"x"]', f"{size // 4 + 1} strings", True)
    unit = {"ascii": b"a", "utf8": "é".encode(), "emoji": "😀".encode(), "escapes": b"\\u00e9"}
    chars = size // len(unit[kind])
    return Value(b'"' + unit[kind] * chars + b'"', f"{kind} string of {chars} chars", False)


_NUMBERS = [
    b"1" + b"0" * 400,
    b"-1" + b"0" * 400,
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"0.0",
    b"5.0",
    b"5e0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"9007199254740993",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"0x10",
    b"01",
    b"+5",
    b".5",
    b"1_000",
]


@st.composite
def odd_values(draw: st.DrawFn) -> Value:
    """Wrong types, numbers no parser agrees on, invalid UTF-8 and lone surrogates."""
    kind = draw(st.sampled_from(["number", "digits", "type", "utf8", "escape", "control"]))
    if kind == "number":
        return Value(draw(st.sampled_from(_NUMBERS)), "odd number", False)
    if kind == "digits":
        digits = draw(st.integers(20, 5000))
        return Value(b"9" * digits, f"{digits}-digit integer", False)
    if kind == "type":
        text = draw(st.sampled_from([b"true", b"null", b"{}", b"[]", b'""', b'"5"', b"-1"]))
        return Value(text, "wrong type", False)
    if kind == "utf8":
        bad = draw(
            st.sampled_from(
                [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"]
            )
        )
        return Value(b'"a' + bad + b'b"', f"string with invalid UTF-8 {bad!r}", True)
    if kind == "escape":
        text = draw(
            st.sampled_from([b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\u0000"', b'"\\uZZZZ"'])
        )
        return Value(text, "string with an odd escape", False)
    control = draw(st.sampled_from([b"\x00", b"\n", b"\x1f"]))
    return Value(b'"a' + control + b'b"', "raw control character in a string", True)


# -- the case families --------------------------------------------------------------------------


def _create_case(
    ctx: Context,
    provider: str,
    family: str,
    body: bytes,
    *,
    headers: list[tuple[str | bytes, str | bytes]] | None = None,
    refuse: bool = False,
    note: str = "",
    timeout: float = 5.0,
) -> RawCase:
    path = ctx.path(provider, "create")
    spec = ctx.specs[provider]
    data = http(
        "POST", path, ctx.create_headers(spec) if headers is None else headers, body, host=ctx.host
    )
    return RawCase(
        family, provider, data, (Sent("POST", path),), refuse=refuse, note=note, timeout=timeout
    )


def _field_family(family: str, values: st.SearchStrategy[Value]) -> Callable[[Context], Any]:
    def build(ctx: Context) -> st.SearchStrategy[RawCase]:
        @st.composite
        def case(draw: st.DrawFn) -> RawCase:
            provider = draw(st.sampled_from(ctx.providers))
            spec = ctx.specs[provider]
            model = draw(st.sampled_from(list(spec.models)))
            body = base_body(spec, model, ctx.image_url)
            target = draw(st.sampled_from(targets(spec, spec.models[model], body)))
            value = draw(values)
            note = f"{model}: {target.name} = {value.label}"
            timeout = 5.0 + len(value.text) / 2_000_000
            return _create_case(
                ctx,
                provider,
                family,
                _splice(body, target.steps, value.text),
                refuse=value.refused and target.typed,
                note=note,
                timeout=timeout,
            )

        return case()

    return build


def _duplicate_keys(ctx: Context) -> st.SearchStrategy[RawCase]:
    """The same key twice, the hostile copy first or last: parsers disagree on which wins."""

    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        provider = draw(st.sampled_from(ctx.providers))
        spec = ctx.specs[provider]
        model = draw(st.sampled_from(list(spec.models)))
        body = base_body(spec, model, ctx.image_url)
        key = draw(st.sampled_from([k for k in body if isinstance(k, str)]))
        value = draw(st.one_of(deep_values(), odd_values()))
        rest = json.dumps(body).encode()[1:]
        pair = json.dumps(key).encode() + b":" + value.text + b","
        hostile_last = draw(st.booleans())
        text = b"{" + rest[:-1] + b"," + pair[:-1] + b"}" if hostile_last else b"{" + pair + rest
        note = f"{model}: {key} twice, {'last' if hostile_last else 'first'} = {value.label}"
        return _create_case(ctx, provider, "duplicate keys", text, note=note)

    return case()


_CONTENT_TYPES: list[tuple[str | bytes | None, bool]] = [
    (None, True),
    ("", True),
    ("text/plain", True),
    ("application/x-www-form-urlencoded", True),
    ("multipart/form-data; boundary=x", True),
    ("application/json; charset=utf-16", False),
    ("application/json;;;", False),
    ("APPLICATION/JSON", False),
    ("application/jsonp", True),
    ("application/json" + "; a=b" * 5000, False),
    (b"application/json\xff", True),
    ("application/*", True),
]


def _content_types(ctx: Context) -> st.SearchStrategy[RawCase]:
    """Wrong, missing, duplicated and enormous Content-Types on a valid body."""

    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        provider = draw(st.sampled_from(ctx.providers))
        spec = ctx.specs[provider]
        model = draw(st.sampled_from(list(spec.models)))
        body = json.dumps(base_body(spec, model, ctx.image_url)).encode()
        headers: list[tuple[str | bytes, str | bytes]] = [
            h for h in ctx.create_headers(spec) if h[0].lower() != "content-type"
        ]
        value, wrong = draw(st.sampled_from(_CONTENT_TYPES))
        count = draw(st.sampled_from([1, 1, 1, 2]))
        if value is not None:
            headers += [("Content-Type", value)] * count
        if draw(st.booleans()):
            headers.append(("Content-Type", "text/plain"))  # a second, different one
            wrong = False  # which one counts is the server's choice
        shown = value if isinstance(value, str) and len(value) < 60 else "(long or binary)"
        note = f"{model}: Content-Type {shown!r} x{count}, {len(headers)} headers"
        return _create_case(
            ctx, provider, "content types", body, headers=headers, refuse=wrong, note=note
        )

    return case()


@st.composite
def _junk_text(draw: st.DrawFn) -> str:
    return "zz" + draw(
        st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=40)
    )


def _headers_on_create(ctx: Context) -> st.SearchStrategy[RawCase]:
    """Auth, the required headers and the scenario header: missing, doubled, junk, huge."""

    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        provider = draw(st.sampled_from(ctx.providers))
        spec = ctx.specs[provider]
        model = draw(st.sampled_from(list(spec.models)))
        body = json.dumps(base_body(spec, model, ctx.image_url)).encode()
        headers: list[tuple[str | bytes, str | bytes]] = list(ctx.create_headers(spec))
        names = [n for n, _ in ctx.create_headers(spec) if n.lower() != "content-type"]
        name = draw(st.sampled_from([*names, SCENARIO_HEADER]))
        kept = [h for h in headers if h[0] != name]
        how = draw(st.sampled_from(["missing", "empty", "junk", "doubled", "huge", "binary"]))
        refuse = how in ("missing", "empty") and name != SCENARIO_HEADER
        value: str | bytes = draw(_junk_text())
        if how == "missing":
            headers = kept
        elif how == "empty":
            headers = [*kept, (name, "")]
        elif how == "doubled":
            original = dict(ctx.create_headers(spec)).get(name, "x")
            headers = [*kept, (name, original), (name, value)]
        elif how == "huge":
            headers = [*kept, (name, "Bearer " + "k" * draw(st.integers(8_000, 1_000_000)))]
        elif how == "binary":
            headers = [*kept, (name, b"Bearer \xff\xfe\x80")]
        else:
            headers = [*kept, (name, value)]
            refuse = True
        if name == SCENARIO_HEADER and how in ("junk", "doubled", "binary"):
            refuse = True  # an unknown scenario item is refused in the provider's envelope
        note = f"{model}: {name} {how}"
        return _create_case(
            ctx, provider, "create headers", body, headers=headers, refuse=refuse, note=note
        )

    return case()


FAMILIES: dict[str, Callable[[Context], st.SearchStrategy[RawCase]]] = {
    "deep nesting": _field_family("deep nesting", deep_values()),
    "huge values": _field_family("huge values", huge_values()),
    "odd values": _field_family("odd values", odd_values()),
    "duplicate keys": _duplicate_keys,
    "content types": _content_types,
    "create headers": _headers_on_create,
}
