"""Wire mapping: one declaration of a provider's JSON, used in both directions.

A response shape in a spec is plain JSON with placeholders: ``"{task.id}"``
keeps the value's native type, ``"[{error.code}] {error.message}"``
interpolates into a string, and ``"{times.submitted|utc8}"`` passes the value
through a filter. The mock *renders* a canonical view through a template; the
client and the drift reports *parse* provider JSON back through the same
template, so the two directions cannot disagree.

Templates are compiled once when a spec loads; rendering is a walk over
prebuilt nodes with no parsing on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

__all__ = [
    "CANONICAL_STATES",
    "MISSING",
    "Template",
    "TemplateError",
    "WireMismatch",
    "compile_template",
]

CANONICAL_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")

_UTC8 = timezone(timedelta(hours=8))
_PLACEHOLDER = re.compile(
    r"\{([A-Za-z_][A-Za-z0-9_.]*)((?:\|[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z0-9_]+)?)*)\}"
)


class _Missing:
    """A view value that is absent: the field is left out of the rendered JSON."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class TemplateError(ValueError):
    """A template in a spec cannot be compiled (unknown filter, bad vocabulary)."""


class WireMismatch(ValueError):
    """Provider JSON does not fit the template it should follow.

    ``path`` is the dotted JSON path where the mismatch was found, so a person
    can see which field the provider changed.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path
        self.detail = message


# -- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filter:
    name: str
    forward: Callable[[Any], Any]
    inverse: Callable[[Any], Any]


@lru_cache(maxsize=65536)
def _utc8(value: Any) -> str:
    # A task's times never change and clients poll the same task many times.
    moment = datetime.fromtimestamp(float(value), _UTC8)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


_UTC8_TEXT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{1,6}")


@lru_cache(maxsize=65536)
def _from_utc8(text: Any) -> float:
    # The shape is checked strictly (a provider changing it is drift); the
    # parse itself is fromisoformat, ~15x cheaper than strptime per poll.
    raw = str(text)
    if not _UTC8_TEXT.fullmatch(raw):
        raise ValueError(f"{raw!r} is not a 'YYYY-MM-DD HH:MM:SS.fff' time")
    moment = datetime.fromisoformat(raw).replace(tzinfo=_UTC8)
    return moment.astimezone(UTC).timestamp()


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return int(value)


def _from_str(text: Any) -> Any:
    if isinstance(text, str) and text.lstrip("-").isdigit():
        return int(text)
    return text


def _percent(value: Any) -> str:
    return f"{int(value)}%"


def _from_percent(text: Any) -> int:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    stripped = str(text).strip()
    if not stripped.endswith("%"):
        raise ValueError(f"{text!r} is not a percentage")
    return int(float(stripped[:-1]))


_SIMPLE_FILTERS: dict[str, _Filter] = {
    "utc8": _Filter("utc8", _utc8, _from_utc8),
    "epoch": _Filter("epoch", lambda v: int(float(v)), lambda v: float(_to_int(v))),
    "epoch_ms": _Filter("epoch_ms", lambda v: int(float(v) * 1000), lambda v: _to_int(v) / 1000),
    "str": _Filter("str", str, _from_str),
    "int": _Filter("int", _to_int, _to_int),
    "percent": _Filter("percent", _percent, _from_percent),
}


def _vocab_filter(name: str, vocabularies: Mapping[str, Mapping[str, tuple[str, ...]]]) -> _Filter:
    if name not in vocabularies:
        raise TemplateError(f"unknown vocabulary {name!r}; declared: {sorted(vocabularies)}")
    words = vocabularies[name]
    forward_map = {state: names[0] for state, names in words.items()}
    inverse_map = {word: state for state, names in words.items() for word in names}

    def forward(state: Any) -> Any:
        try:
            return forward_map[state]
        except KeyError:
            raise TemplateError(f"vocabulary {name!r} has no word for state {state!r}") from None

    def inverse(word: Any) -> Any:
        try:
            return inverse_map[word]
        except (KeyError, TypeError):
            raise ValueError(
                f"{word!r} is not in the {name!r} vocabulary {sorted(inverse_map)}"
            ) from None

    return _Filter(f"vocab:{name}", forward, inverse)


# -- nodes --------------------------------------------------------------------------------------


class _Node:
    __slots__ = ()

    def render(self, view: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def parse(self, value: Any, path: str, into: dict[str, Any], strict: bool = True) -> None:
        raise NotImplementedError

    def walk(self, path: str) -> Iterator[tuple[str, _Node]]:
        yield path, self


class _Literal(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def render(self, view: Mapping[str, Any]) -> Any:
        return self.value

    def parse(self, value: Any, path: str, into: dict[str, Any], strict: bool = True) -> None:
        if value != self.value or type(value) is not type(self.value):
            raise WireMismatch(path, f"expected {self.value!r}, got {value!r}")


class _Var(_Node):
    __slots__ = ("filters", "name")

    def __init__(self, name: str, filters: tuple[_Filter, ...]) -> None:
        self.name = name
        self.filters = filters

    def render(self, view: Mapping[str, Any]) -> Any:
        value = view.get(self.name, MISSING)
        if value is MISSING or value is None:
            return value
        for flt in self.filters:
            value = flt.forward(value)
        return value

    def parse(self, value: Any, path: str, into: dict[str, Any], strict: bool = True) -> None:
        if value is not None:  # null renders from None and parses back to it, unfiltered
            for flt in reversed(self.filters):
                try:
                    value = flt.inverse(value)
                except (ValueError, TypeError) as exc:
                    raise WireMismatch(path, f"{flt.name}: {exc}") from None
        if self.name in into:
            # The same value in two places (AnyFast's status, outer and upstream):
            # strict readers require them to agree, lenient ones keep the first.
            if strict and not _agree(into[self.name], value):
                raise WireMismatch(
                    path, f"{self.name} is {value!r} here but {into[self.name]!r} earlier"
                )
            return
        into[self.name] = value

    @property
    def spelled(self) -> str:
        return "{" + self.name + "".join("|" + f.name for f in self.filters) + "}"


def _agree(first: Any, second: Any) -> bool:
    numbers = (int, float)
    if isinstance(first, numbers) and isinstance(second, numbers):
        # Times may be reported to the second in one place and the millisecond in another.
        return not isinstance(first, bool) and abs(first - second) < 1.0
    return bool(first == second)


class _Interpolation(_Node):
    __slots__ = ("parts", "pattern", "vars")

    def __init__(self, parts: list[str | _Var]) -> None:
        self.parts = parts
        self.vars = [p for p in parts if isinstance(p, _Var)]
        regex = "".join("(.*?)" if isinstance(p, _Var) else re.escape(p) for p in parts)
        self.pattern = re.compile(regex + r"\Z", re.DOTALL)

    def render(self, view: Mapping[str, Any]) -> Any:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.render(view)
            if value is MISSING or value is None:
                return MISSING
            out.append(str(value))
        return "".join(out)

    def parse(self, value: Any, path: str, into: dict[str, Any], strict: bool = True) -> None:
        if not isinstance(value, str):
            raise WireMismatch(path, f"expected a string, got {type(value).__name__}")
        match = self.pattern.match(value)
        if match is None:
            raise WireMismatch(path, f"{value!r} does not follow the pattern {self.describe()}")
        for var, text in zip(self.vars, match.groups(), strict=True):
            var.parse(text, path, into, strict)

    def describe(self) -> str:
        return "".join(p if isinstance(p, str) else p.spelled for p in self.parts)


class _Object(_Node):
    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, _Node]) -> None:
        self.fields = fields

    def render(self, view: Mapping[str, Any]) -> Any:
        out: dict[str, Any] = {}
        for key, node in self.fields.items():
            value = node.render(view)
            if value is not MISSING:
                out[key] = value
        return out

    def parse(self, value: Any, path: str, into: dict[str, Any], strict: bool = True) -> None:
        if not isinstance(value, dict):
            raise WireMismatch(path, f"expected an object, got {type(value).__name__}")
        for key, node in self.fields.items():
            child = f"{path}.{key}" if path else key
            if key not in value:
                if strict:
                    raise WireMismatch(child, "field is missing")
                continue
            try:
                node.parse(value[key], child, into, strict)
            except WireMismatch:
                # Lenient readers (a production client) take what they can.
                if strict:
                    raise

    def walk(self, path: str) -> Iterator[tuple[str, _Node]]:
        yield path, self
        for key, node in self.fields.items():
            yield from node.walk(f"{path}.{key}" if path else key)


class _Array(_Node):
    __slots__ = ("items",)

    def __init__(self, items: list[_Node]) -> None:
        self.items = items

    def render(self, view: Mapping[str, Any]) -> Any:
        return [item.render(view) for item in self.items]

    def parse(self, value: Any, path: str, into: dict[str, Any], strict: bool = True) -> None:
        if not isinstance(value, list):
            raise WireMismatch(path, f"expected an array, got {type(value).__name__}")
        for index, (node, item) in enumerate(zip(self.items, value, strict=False)):
            node.parse(item, f"{path}[{index}]", into, strict)


# -- public -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled response shape: ``render(view)`` builds JSON, ``parse(json)`` reads it back."""

    root: _Node
    source: Any

    def render(self, view: Mapping[str, Any]) -> Any:
        """Build the provider JSON for a canonical view (absent values drop their field)."""
        return self.root.render(view)

    def parse(self, value: Any, *, strict: bool = True) -> dict[str, Any]:
        """Read the canonical values out of provider JSON.

        Strict (conformance checks): raise WireMismatch at the first difference.
        Lenient: skip fields that differ and keep what fits; only a root of
        the wrong JSON type raises.
        """
        into: dict[str, Any] = {}
        self.root.parse(value, "", into, strict)
        return into

    def placeholders(self) -> dict[str, str]:
        """Map each JSON path that carries a value to the placeholder that fills it."""
        out: dict[str, str] = {}
        for path, node in self.root.walk(""):
            if isinstance(node, _Var):
                out[path] = node.spelled
            elif isinstance(node, _Interpolation):
                out[path] = node.describe()
        return out

    def literals(self) -> dict[str, Any]:
        """Map each JSON path with a fixed value to that value."""
        return {p: n.value for p, n in self.root.walk("") if isinstance(n, _Literal)}

    def path_of(self, name: str) -> str | None:
        """The JSON path where the named value appears alone (e.g. where ``state`` lives)."""
        for path, node in self.root.walk(""):
            if isinstance(node, _Var) and node.name == name:
                return path
        return None


def compile_template(
    node: Any, vocabularies: Mapping[str, Mapping[str, tuple[str, ...]]]
) -> Template:
    """Compile a YAML response shape; ``{status}`` is shorthand for ``{state|vocab:status}``."""
    return Template(_compile(node, vocabularies), node)


def _compile(node: Any, vocabularies: Mapping[str, Mapping[str, tuple[str, ...]]]) -> _Node:
    if isinstance(node, dict):
        return _Object({str(k): _compile(v, vocabularies) for k, v in node.items()})
    if isinstance(node, list):
        return _Array([_compile(v, vocabularies) for v in node])
    if not isinstance(node, str):
        return _Literal(node)
    matches = list(_PLACEHOLDER.finditer(node))
    if not matches:
        return _Literal(node)
    if len(matches) == 1 and matches[0].span() == (0, len(node)):
        return _make_var(matches[0], vocabularies)
    parts: list[str | _Var] = []
    cursor = 0
    for match in matches:
        if match.start() > cursor:
            parts.append(node[cursor : match.start()])
        parts.append(_make_var(match, vocabularies))
        cursor = match.end()
    if cursor < len(node):
        parts.append(node[cursor:])
    return _Interpolation(parts)


def _make_var(
    match: re.Match[str], vocabularies: Mapping[str, Mapping[str, tuple[str, ...]]]
) -> _Var:
    name, raw_filters = match.group(1), match.group(2)
    names = [f for f in raw_filters.split("|") if f]
    if name == "status":
        name, names = "state", ["vocab:status", *names]
    filters: list[_Filter] = []
    for spelled in names:
        if spelled.startswith("vocab:"):
            filters.append(_vocab_filter(spelled.split(":", 1)[1], vocabularies))
        elif spelled in _SIMPLE_FILTERS:
            filters.append(_SIMPLE_FILTERS[spelled])
        else:
            raise TemplateError(
                f"unknown filter {spelled!r} in {match.group(0)!r}; "
                f"known: {sorted(_SIMPLE_FILTERS)} and vocab:NAME"
            )
    return _Var(name, tuple(filters))
