"""The same model across the providers, side by side: ``paddock matrix``.

Someone choosing or switching a provider wants one page that says where the
providers agree and where they do not, for the model they use. Every cell is
read from the loaded specs (never written per provider), so a new provider
YAML becomes a new column and a changed rule a changed cell. The output is
deterministic, so CI can compare the committed copy byte for byte.

The matrix is built once as plain data (``matrix_tables``) and then written
twice, as GitHub Markdown and as a self-contained HTML page; both number the
rules' sources the same way.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.spec import (
    ErrorDef,
    MediaRule,
    ModelRules,
    Operation,
    Parameter,
    Spec,
    SpecSet,
)
from contracts.wire import CANONICAL_STATES

__all__ = ["Cell", "Row", "Section", "Table", "matrix_files", "matrix_tables"]

# The violations a client author meets first, in the order a request meets them.
KEY_VIOLATIONS = {
    "auth_missing": "auth missing",
    "model_unknown": "unknown model",
    "param_range": "parameter out of range",
    "throttled": "throttled",
}
# Rows of a single-provider model: nothing to compare the provider-wide rules with.
MODEL_SECTIONS = ("Prompt", "Media", "Parameters")


@dataclass(frozen=True, slots=True)
class Cell:
    """One provider's answer to one row: text (lines joined by newlines) and its source."""

    text: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    cells: tuple[Cell, ...]

    @property
    def differs(self) -> bool:
        """True when the providers in this table do not all say the same thing."""
        return len({cell.text for cell in self.cells}) > 1


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """One model, one column per provider that offers it."""

    model: str
    providers: tuple[str, ...]
    sections: tuple[Section, ...]

    def row(self, section: str, label: str) -> Row:
        """The row under a section title and label (for tests and other readers)."""
        for part in self.sections:
            if part.title == section:
                for row in part.rows:
                    if row.label == label:
                        return row
        raise KeyError(f"{self.model} has no row {section!r} / {label!r}")

    @property
    def differing(self) -> int:
        return sum(row.differs for part in self.sections for row in part.rows)


Column = tuple[Spec, ModelRules]
CellFn = Callable[[Spec, ModelRules], Cell]


# -- building the tables ------------------------------------------------------------------------


def matrix_tables(specs: SpecSet) -> tuple[list[Table], list[Table]]:
    """Tables for models offered by several providers, then for models only one offers."""
    offered: dict[str, list[Spec]] = {}
    for spec in (specs[name] for name in specs.names()):
        for model in spec.models:
            offered.setdefault(model, []).append(spec)
    shared, single = [], []
    for model in sorted(offered):
        columns = [(spec, spec.models[model]) for spec in offered[model]]
        providers = tuple(spec.provider for spec in offered[model])
        if len(columns) > 1:
            shared.append(Table(model, providers, tuple(_sections(columns))))
        else:
            sections = [s for s in _sections(columns) if s.title in MODEL_SECTIONS]
            single.append(Table(model, providers, tuple(sections)))
    return shared, single


def _sections(columns: Sequence[Column]) -> list[Section]:
    specs = [spec for spec, _ in columns]
    parts = [
        ("Endpoints", _endpoint_rows(specs)),
        ("Auth and headers", _auth_rows()),
        ("Request body", _body_rows()),
        ("Prompt", _prompt_rows()),
        ("Media", _media_rows(columns)),
        ("Parameters", _parameter_rows(columns)),
        ("Status vocabulary", _status_rows()),
        ("Lifecycle", _lifecycle_rows(specs)),
        ("Results", _result_rows()),
        ("Errors", _error_rows()),
    ]
    return [
        Section(title, tuple(Row(label, tuple(fn(s, m) for s, m in columns)) for label, fn in rows))
        for title, rows in parts
        if rows
    ]


def _source(spec: Spec, *path: str) -> str:
    """The ``source`` of a spec node the typed objects do not carry (auth, hosts, ...)."""
    node: Any = spec.raw
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    value = node.get("source") if isinstance(node, Mapping) else None
    return str(value) if value else ""


def _union(groups: Iterable[Iterable[str]]) -> list[str]:
    """Names in order of first appearance: the first spec's order, then what others add."""
    return list(dict.fromkeys(name for group in groups for name in group))


def _endpoint_rows(specs: Sequence[Spec]) -> list[tuple[str, CellFn]]:
    def host(spec: Spec, _: ModelRules) -> Cell:
        region = spec.default_region
        return Cell(f"{spec.base_url()} ({region})", _source(spec, "hosts", "regions", region))

    def operation(kind: str) -> CellFn:
        def cell(spec: Spec, _: ModelRules) -> Cell:
            op = spec.operations.get(kind)
            if op is None:
                return Cell("not available")
            lines = [f"{op.method} {op.path}"]
            if op.cancelable:
                lines.append("only when " + ", ".join(_by_state(op.cancelable)))
            return Cell("\n".join(lines), op.source)

        return cell

    kinds = _union(spec.operations for spec in specs)
    return [
        ("host", host),
        *((kind.replace("_", " "), operation(kind)) for kind in kinds),
        ("task id form", lambda spec, rules: Cell(rules.task_id, rules.source)),
    ]


def _auth_rows() -> list[tuple[str, CellFn]]:
    def auth(spec: Spec, _: ModelRules) -> Cell:
        return Cell(f"{spec.auth_header}: {spec.auth_scheme} <key>", _source(spec, "auth"))

    def headers(spec: Spec, _: ModelRules) -> Cell:
        create = spec.operations["create"]
        lines = [f"Content-Type: {create.content_type}"] if create.content_type else []
        lines += [f"{rule.name}: {rule.value}" for rule in create.headers]
        sources = [create.source] + [rule.source for rule in create.headers]
        return Cell("\n".join(lines) or "none", _join(sources))

    def uploads(spec: Spec, _: ModelRules) -> Cell:
        if spec.upload_scheme is None:
            return Cell("public URLs only (no upload flow)")
        lines = [f"upload policy flow, sent as {spec.upload_scheme}…"]
        if spec.upload_header is not None:
            lines.append("with {}: {}".format(*spec.upload_header))
        return Cell("\n".join(lines), _source(spec, "uploads"))

    return [("auth", auth), ("create headers", headers), ("local files", uploads)]


def _body_rows() -> list[tuple[str, CellFn]]:
    def media(spec: Spec, rules: ModelRules) -> Cell:
        source = _source(spec, "request", "media")
        if spec.media_form == "typed_list":
            return Cell(f"{spec.media_path or 'media'}: [{{type, url}}, …]", source)
        lines = [
            f"{slot}: " + " or ".join(_field(f.name, f.form, f.take) for f in rule.fields)
            for slot, rule in rules.media.items()
        ]
        return Cell("\n".join(lines) or f"named fields ({spec.media_form})", source)

    def containers(spec: Spec, _: ModelRules) -> Cell:
        return Cell(" or ".join(c or "top level" for c in spec.parameter_containers))

    def required(spec: Spec, _: ModelRules) -> Cell:
        names = ", ".join(spec.required_objects)
        return Cell(names or "none", _source(spec, "request", "required_objects"))

    return [
        ("model", lambda spec, _: Cell(spec.model_path)),
        ("prompt", lambda spec, _: Cell(spec.prompt_path)),
        ("media", media),
        ("parameters", containers),
        ("required objects", required),
        ("tolerated fields", lambda spec, _: Cell(", ".join(sorted(spec.tolerated)) or "none")),
        (
            "body size limit",
            lambda spec, _: Cell(_bytes(spec.body_limit), _source(spec, "limits", "body_bytes")),
        ),
    ]


def _prompt_rows() -> list[tuple[str, CellFn]]:
    def prompt(text: Callable[[ModelRules], str]) -> CellFn:
        return lambda _, rules: Cell(text(rules), rules.prompt.source)

    return [
        ("required", prompt(lambda r: "yes" if r.prompt.required else "no")),
        ("max length", prompt(lambda r: _count(r.prompt.max_length, "characters"))),
        ("overflow", prompt(lambda r: r.prompt.overflow)),
    ]


def _media_rows(columns: Sequence[Column]) -> list[tuple[str, CellFn]]:
    def slot(name: str, text: Callable[[MediaRule], str], kind_source: bool) -> CellFn:
        def cell(spec: Spec, rules: ModelRules) -> Cell:
            rule = rules.media.get(name)
            if rule is None:
                return Cell("not accepted")
            source = _source(spec, "media_kinds", rule.uses) if kind_source else rule.source
            return Cell(text(rule), source or rule.source)

        return cell

    def one_of(_: Spec, rules: ModelRules) -> Cell:
        return Cell("\n".join(" or ".join(group) for group in rules.media_one_of) or "none")

    rows: list[tuple[str, CellFn]] = []
    for name in _union(rules.media for _, rules in columns):
        rows += [
            (name, slot(name, _media_count, kind_source=False)),
            (f"{name} formats", slot(name, lambda r: ", ".join(sorted(r.formats)), True)),
            (f"{name} limits", slot(name, _media_limits, kind_source=True)),
        ]
    if any(rules.media_one_of for _, rules in columns):
        rows.append(("one of", one_of))
    return rows


def _parameter_rows(columns: Sequence[Column]) -> list[tuple[str, CellFn]]:
    def parameter(name: str) -> CellFn:
        def cell(_: Spec, rules: ModelRules) -> Cell:
            param = rules.parameters.get(name)
            if param is None:
                return Cell("not in spec (ignored)")
            return Cell(_parameter(param), param.source)

        return cell

    return [(name, parameter(name)) for name in _union(r.parameters for _, r in columns)]


def _status_rows() -> list[tuple[str, CellFn]]:
    def word(state: str) -> CellFn:
        def cell(spec: Spec, _: ModelRules) -> Cell:
            return Cell(" or ".join(spec.vocabularies["status"][state]), _source(spec, "states"))

        return cell

    def field(spec: Spec, _: ModelRules) -> Cell:
        template = spec.query_response.states["PENDING"]
        return Cell(template.path_of("state") or "none", spec.query_response.source)

    return [("query field", field), ("create reply", _create_status)] + [
        (state, word(state)) for state in CANONICAL_STATES
    ]


def _create_status(spec: Spec, _: ModelRules) -> Cell:
    """Where the create reply says PENDING, and in which words: not always the query's."""
    for path, spelled in spec.create_response.placeholders().items():
        match = re.fullmatch(r"\{state((?:\|[^|}]+)*)\}", spelled)
        if match:
            vocab = re.search(r"\|vocab:(\w+)", match.group(1))
            word = spec.word("PENDING", vocab.group(1) if vocab else "status")
            return Cell(f"{path}: {word}", _source(spec, "responses", "create"))
    return Cell("no status", _source(spec, "responses", "create"))


def _lifecycle_rows(specs: Sequence[Spec]) -> list[tuple[str, CellFn]]:
    def edges(spec: Spec, _: ModelRules) -> Cell:
        lines = [
            f"{state} → {', '.join(_by_state(spec.edges[state]))}"
            for state in _by_state(spec.edges)
        ]
        return Cell("\n".join(lines), _source(spec, "states"))

    def progress(spec: Spec, _: ModelRules) -> Cell:
        if spec.progress is None:
            return Cell("not reported")
        steps = spec.progress
        text = "\n".join(
            f"{state} {', '.join(f'{step}%' for step in steps[state])}"
            for state in _by_state(steps)
        )
        return Cell(text, _source(spec, "progress"))

    def timing(state: str) -> CellFn:
        def cell(spec: Spec, _: ModelRules) -> Cell:
            time = spec.timing.get(state)
            if time is None:
                return Cell("not modelled")
            return Cell(f"median {_num(time.median)} s, p95 {_num(time.p95)} s", time.source)

        return cell

    def poll(spec: Spec, _: ModelRules) -> Cell:
        text = f"{_num(spec.poll_initial)} s, backing off to {_num(spec.poll_max)} s"
        return Cell(text, _source(spec, "client", "poll_interval"))

    def retried(spec: Spec, _: ModelRules) -> Cell:
        statuses = ", ".join(map(str, sorted(spec.retry_query_statuses))) or "none"
        return Cell(statuses, _source(spec, "client", "retry_statuses"))

    def retention(what: str, seconds: Callable[[Spec], float]) -> CellFn:
        return lambda spec, _: Cell(_duration(seconds(spec)), _source(spec, "retention", what))

    states = [s for s in CANONICAL_STATES if any(s in spec.timing for spec in specs)]
    return [
        ("edges", edges),
        ("progress", progress),
        *((f"{state} time", timing(state)) for state in states),
        ("poll interval", poll),
        ("query retried on", retried),
        ("task kept", retention("task", lambda spec: spec.task_retention)),
        ("result URL valid", retention("result_url", lambda spec: spec.result_retention)),
    ]


def _result_rows() -> list[tuple[str, CellFn]]:
    def result(key: str, text: Callable[[Spec], str]) -> CellFn:
        return lambda spec, _: Cell(text(spec), _source(spec, "results", key))

    def url_field(spec: Spec, _: ModelRules) -> Cell:
        template = spec.query_response.states["SUCCEEDED"]
        return Cell(template.path_of("result.url") or "none", spec.query_response.source)

    return [
        ("result URL field", url_field),
        ("fps", result("fps", lambda spec: str(spec.result_fps))),
        ("codec", result("codec", lambda spec: spec.result_codec)),
        (
            "Authorization on download",
            result(
                "refuses_authorization",
                lambda spec: "refused (send none)" if spec.refuses_authorization else "tolerated",
            ),
        ),
        (
            "URL reissued on poll",
            result("reissue_on_poll", lambda spec: "yes" if spec.reissue_on_poll else "no"),
        ),
    ]


def _error_rows() -> list[tuple[str, CellFn]]:
    def envelopes(spec: Spec, _: ModelRules) -> Cell:
        lines = [f"{name}: {_shape(t.source)}" for name, t in spec.envelopes.items()]
        return Cell("\n".join(lines), _source(spec, "responses", "error"))

    def violation(kind: str) -> CellFn:
        def cell(spec: Spec, _: ModelRules) -> Cell:
            found = spec.violations.get(kind)
            if found is None:
                return Cell("not declared")
            return Cell(_answer(spec, found.error), found.source)

        return cell

    def task(rule: Callable[[Operation], Mapping[str, str] | None]) -> CellFn:
        def cell(spec: Spec, _: ModelRules) -> Cell:
            answer = rule(spec.operations["query"]) or {}
            source = str(answer.get("source", ""))
            if answer.get("error"):
                return Cell(_answer(spec, spec.error(answer["error"])), source)
            state = answer.get("state") or "UNKNOWN"
            return Cell(f"{spec.query_response.status}, status {spec.word(state)}", source)

        return cell

    return [
        ("envelopes", envelopes),
        *((label, violation(kind)) for kind, label in KEY_VIOLATIONS.items()),
        ("unknown task id", task(lambda query: query.unknown)),
        ("expired task", task(lambda query: query.expired)),
    ]


# -- cell text ----------------------------------------------------------------------------------


def _answer(spec: Spec, error: ErrorDef) -> str:
    """Status and code, plus the envelope and type when a client has to tell them apart."""
    text = f"{error.status} {error.code}"
    if len(spec.envelopes) > 1:
        text += f" ({error.envelope} envelope)"
    envelope = spec.envelopes[error.envelope]
    if error.type and "{error.type}" in envelope.placeholders().values():
        text += f", type {error.type}"
    return text


def _shape(node: Any) -> str:
    """An envelope's keys as ``{code, message, data: null}``: the shape, not the template."""
    if isinstance(node, Mapping):
        parts = []
        for key, value in node.items():
            if isinstance(value, Mapping):
                parts.append(f"{key}: {_shape(value)}")
            elif value is None:
                parts.append(f"{key}: null")
            else:
                parts.append(str(key))
        return "{" + ", ".join(parts) + "}"
    return "null" if node is None else str(node)


def _parameter(param: Parameter) -> str:
    if not param.supported:
        return "not supported (rejected)"
    parts = [param.type]
    if param.enum is not None:
        parts.append(", ".join(map(_value, param.enum)))
    if param.minimum is not None and param.maximum is not None:
        parts.append(f"{_num(param.minimum)} to {_num(param.maximum)}")
    elif param.minimum is not None:
        parts.append(f"≥ {_num(param.minimum)}")
    elif param.maximum is not None:
        parts.append(f"≤ {_num(param.maximum)}")
    if param.max_length is not None:
        parts.append(f"at most {param.max_length} characters")
    lines = [", ".join(parts)]
    if param.has_default:
        lines.append(f"default {_value(param.default)}")
    if param.path is not None:
        lines.append(f"at {param.path}")
    return "\n".join(lines)


def _media_count(rule: MediaRule) -> str:
    count = f"exactly {rule.min}" if rule.min == rule.max else f"{rule.min} to {rule.max}"
    # The media kind's name matters only when it is not simply the kind of file.
    kind = rule.kind if rule.uses == rule.kind else f"{rule.kind} (kind {rule.uses})"
    return f"{kind}, {count}"


def _media_limits(rule: MediaRule) -> str:
    lines = []
    if rule.min_side is not None:
        lines.append(f"sides ≥ {rule.min_side} px")
    if rule.aspect_min is not None or rule.aspect_max is not None:
        lines.append(f"aspect {_num(rule.aspect_min)} to {_num(rule.aspect_max)} (w/h)")
    if rule.max_bytes is not None:
        lines.append(f"≤ {_bytes(rule.max_bytes)}")
    if rule.duration_min is not None or rule.duration_max is not None:
        lines.append(f"{_num(rule.duration_min)} to {_num(rule.duration_max)} s")
    return "\n".join(lines) or "none"


def _field(name: str, form: str, take: int | None) -> str:
    kind = "URL list" if form == "url_list" else "URL" if form == "url" else form
    return f"{name} ({kind}{f', first {take} used' if take else ''})"


def _by_state(states: Iterable[str]) -> list[str]:
    """States in lifecycle order (then any the spec adds, by name): sets print stably."""
    order = {state: index for index, state in enumerate(CANONICAL_STATES)}
    return sorted(states, key=lambda s: (order.get(s, len(order)), s))


def _join(sources: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(s for s in sources if s))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else str(value)


def _count(value: int | None, unit: str) -> str:
    return "no limit" if value is None else f"{value:,} {unit}"


def _bytes(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size:,} bytes"


def _duration(seconds: float) -> str:
    # Hours, not days: the sources say "valid 24 hours".
    for unit, factor in (("h", 3600), ("min", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)} {unit}"
    return f"{_num(seconds)} s"


# -- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Document:
    """What both renderings share: the providers, the tables and the numbered sources."""

    specs: tuple[Spec, ...]
    shared: list[Table]
    single: list[Table]
    sources: Mapping[str, int]

    @property
    def digest(self) -> str:
        lines = "".join(f"{spec.provider} {spec.digest}\n" for spec in self.specs)
        return hashlib.sha256(lines.encode()).hexdigest()[:16]


def _document(specs: SpecSet) -> _Document:
    shared, single = matrix_tables(specs)
    numbers: dict[str, int] = {}
    for table in (*shared, *single):
        for section in table.sections:
            for row in section.rows:
                for cell in row.cells:
                    if cell.source and cell.source not in numbers:
                        numbers[cell.source] = len(numbers) + 1
    ordered = tuple(specs[name] for name in specs.names())
    return _Document(ordered, shared, single, numbers)


def matrix_files(specs: SpecSet) -> dict[str, str]:
    """The report files by name, ready to write or to compare with a committed copy."""
    document = _document(specs)
    return {"provider-matrix.md": _markdown(document), "provider-matrix.html": _html(document)}


def _spec_facts(spec: Spec) -> list[str]:
    version = spec.raw.get("spec_version", "?")
    return [spec.provider, spec.title, Path(spec.file).name, str(version), spec.digest]


SPEC_HEADINGS = ["provider", "title", "file", "spec version", "digest"]
INTRO = (
    "The same model across the providers, generated by `paddock matrix` from the specs; "
    "do not edit by hand. Every value is read from a spec; the small numbers name the "
    "rule's source (listed at the end)."
)
MARK = "Cells that differ between the providers of a table are"


# -- Markdown -----------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _heading(table: Table) -> str:
    if len(table.providers) > 1:
        return table.model
    return f"{table.model} ({table.providers[0]} only)"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading, so the summary can link to each table."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_cell(cell: Cell, differs: bool, sources: Mapping[str, int]) -> str:
    lines = [_md(line) for line in cell.text.split("\n")]
    if differs:
        lines = [f"**{line}**" for line in lines]
    mark = f" <sup>{sources[cell.source]}</sup>" if cell.source else ""
    return "<br>".join(lines) + mark


def _md_table(table: Table, sources: Mapping[str, int]) -> list[str]:
    out = [_md_row(["", *table.providers]), _md_row(["---"] * (len(table.providers) + 1))]
    for section in table.sections:
        out.append(_md_row([f"**{section.title}**", *[""] * len(table.providers)]))
        for row in section.rows:
            cells = [_md_cell(cell, row.differs, sources) for cell in row.cells]
            out.append(_md_row([_md(row.label), *cells]))
    return out


def _markdown(doc: _Document) -> str:
    out = ["# Provider matrix", "", INTRO, ""]
    out += [_md_row(SPEC_HEADINGS), _md_row(["---"] * len(SPEC_HEADINGS))]
    out += [_md_row([_md(fact) for fact in _spec_facts(spec)]) for spec in doc.specs]
    out += ["", f"Specs digest: `{doc.digest}`. {MARK} **bold**.", ""]
    names = [spec.provider for spec in doc.specs]
    out += [_md_row(["model", *names, "rows that differ"]), _md_row(["---"] * (len(names) + 2))]
    for table in (*doc.shared, *doc.single):
        offered = ["✓" if name in table.providers else "" for name in names]
        differing = str(table.differing) if len(table.providers) > 1 else "(one provider)"
        link = f"[{_md(table.model)}](#{_slug(_heading(table))})"
        out.append(_md_row([link, *offered, differing]))
    out += ["", "## Models offered by more than one provider", ""]
    for table in doc.shared:
        out += [f"### {_md(_heading(table))}", "", *_md_table(table, doc.sources), ""]
    out += ["## Models only one provider offers", ""]
    if not doc.single:
        out += ["Every model is offered by more than one provider.", ""]
    for table in doc.single:
        out += [f"### {_md(_heading(table))}", "", *_md_table(table, doc.sources), ""]
    out += ["## Sources", ""]
    out += [f"{number}. {_md(source)}" for source, number in doc.sources.items()]
    return "\n".join(out) + "\n"


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em;
  color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; position: sticky; top: 0; }
tr.section th { background: #eef1f5; font-weight: 600; }
th[scope=row] { font-weight: normal; white-space: nowrap; }
td.differs { background: #fff5c2; font-weight: 600; }
tr.differs > th { box-shadow: inset 3px 0 #d4a72c; }
sup { color: #59636e; font-weight: normal; }
sup a { color: inherit; text-decoration: none; }
code { font-size: 90%; }
.legend span { background: #fff5c2; font-weight: 600; padding: 0 4px; }
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _anchor(model: str) -> str:
    return "model-" + re.sub(r"[^A-Za-z0-9.-]", "-", model)


def _html_cell(cell: Cell, differs: bool, sources: Mapping[str, int]) -> str:
    attrs = ' class="differs"' if differs else ""
    body = "<br />".join(_h(line) for line in cell.text.split("\n"))
    if cell.source:
        number = sources[cell.source]
        attrs += f' title="source: {_h(cell.source)}"'
        body += f' <sup><a href="#source-{number}">{number}</a></sup>'
    return f"<td{attrs}>{body}</td>"


def _html_table(table: Table, sources: Mapping[str, int]) -> list[str]:
    heads = "".join(f'<th scope="col">{_h(name)}</th>' for name in table.providers)
    out = ["<table>", f'<thead><tr><th scope="col"></th>{heads}</tr></thead>', "<tbody>"]
    span = len(table.providers) + 1
    for section in table.sections:
        out.append(f'<tr class="section"><th colspan="{span}">{_h(section.title)}</th></tr>')
        for row in section.rows:
            cells = "".join(_html_cell(cell, row.differs, sources) for cell in row.cells)
            kind = ' class="differs"' if row.differs else ""
            out.append(f'<tr{kind}><th scope="row">{_h(row.label)}</th>{cells}</tr>')
    return [*out, "</tbody>", "</table>"]


def _html(doc: _Document) -> str:
    intro = _h(INTRO).replace("`paddock matrix`", "<code>paddock matrix</code>")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        f"<title>Provider matrix ({doc.digest})</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>Provider matrix</h1>",
        f"<p>{intro}</p>",
        "<table>",
        "<thead><tr>"
        + "".join(f'<th scope="col">{h}</th>' for h in SPEC_HEADINGS)
        + "</tr></thead>",
        "<tbody>",
    ]
    for spec in doc.specs:
        out.append("<tr>" + "".join(f"<td>{_h(fact)}</td>" for fact in _spec_facts(spec)) + "</tr>")
    out += [
        "</tbody>",
        "</table>",
        f"<p>Specs digest: <code>{doc.digest}</code>.</p>",
        f'<p class="legend">{MARK} <span>highlighted</span>.</p>',
        "</header>",
        "<main>",
        "<table>",
    ]
    names = [spec.provider for spec in doc.specs]
    heads = "".join(f'<th scope="col">{_h(n)}</th>' for n in ["model", *names, "rows that differ"])
    out += [f"<thead><tr>{heads}</tr></thead>", "<tbody>"]
    for table in (*doc.shared, *doc.single):
        link = f'<a href="#{_anchor(table.model)}">{_h(table.model)}</a>'
        offered = "".join(f"<td>{'✓' if n in table.providers else ''}</td>" for n in names)
        differing = str(table.differing) if len(table.providers) > 1 else "(one provider)"
        out.append(f'<tr><th scope="row">{link}</th>{offered}<td>{differing}</td></tr>')
    out += ["</tbody>", "</table>", "<h2>Models offered by more than one provider</h2>"]
    for table in doc.shared:
        out.append(f'<h3 id="{_anchor(table.model)}">{_h(table.model)}</h3>')
        out += _html_table(table, doc.sources)
    out.append("<h2>Models only one provider offers</h2>")
    if not doc.single:
        out.append("<p>Every model is offered by more than one provider.</p>")
    for table in doc.single:
        out.append(f'<h3 id="{_anchor(table.model)}">{_h(_heading(table))}</h3>')
        out += _html_table(table, doc.sources)
    out += ["<h2>Sources</h2>", "<ol>"]
    out += [f'<li id="source-{n}">{_h(source)}</li>' for source, n in doc.sources.items()]
    out += ["</ol>", "</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
