"""What a raw fuzz case is, what the strategies know about the server, and how bytes are shown.

A case is the exact bytes of one connection plus what a correct server does
with them: which requests it sees (so each answer is judged by the area its
path names), how many answers it owes before it may close, and whether the
input is one that must be refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import unquote_to_bytes, urlsplit

from hypothesis import strategies as st

from contracts.bodies import create_headers
from contracts.spec import Spec, SpecSet

__all__ = [
    "Context",
    "Header",
    "RawCase",
    "Sent",
    "area_of",
    "compact",
    "http",
    "weighted",
]

T = TypeVar("T")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``choices``, each picked about weight/total of the time.

    ``one_of`` picks branches evenly and ``integers`` leans on its bounds, so
    neither keeps 32 MiB bodies to the one case in a hundred they should be.
    """
    picks = [index for index, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(picks).flatmap(lambda index: choices[index][1])


@dataclass(frozen=True)
class Sent:
    """One request inside a case, as a correct parser reads it."""

    method: str
    target: str


@dataclass(frozen=True)
class RawCase:
    """One connection's bytes and what a correct server owes for them.

    ``required`` answers must come before the server may close: all of
    ``sent`` for well-framed requests, one for a request whose framing is
    broken (answer it, then close), none for one we leave incomplete. A
    ``refuse`` case carries input no provider accepts, so a 2xx is a finding.
    """

    family: str
    provider: str | None
    data: bytes
    sent: tuple[Sent, ...]
    required: int | None = None
    half_close: bool = False
    refuse: bool = False
    timeout: float = 5.0
    note: str = ""

    @property
    def owed(self) -> int:
        return len(self.sent) if self.required is None else self.required


@dataclass(frozen=True)
class Context:
    """What the strategies know about the server under test; built once the setup ran.

    ``key`` is the fuzzer's own API key: never the owner of the tasks made
    before fuzzing, so nothing sent can cancel or read them legitimately.
    """

    specs: SpecSet
    host: str
    key: str
    image_url: str
    task_ids: Mapping[str, tuple[str, ...]]
    result_links: tuple[str, ...] = ()
    policy: Mapping[str, str] = field(default_factory=dict)

    @property
    def providers(self) -> list[str]:
        return self.specs.names()

    def path(self, provider: str, kind: str, task_id: str = "") -> str:
        """A provider operation's path under the mock's prefix."""
        spec = self.specs[provider]
        return f"/{provider}" + spec.operations[kind].path.replace("{task_id}", task_id)

    def auth(self, spec: Spec, key: str | None = None) -> tuple[str, str]:
        return spec.auth_header, f"{spec.auth_scheme} {key or self.key}"

    def create_headers(self, spec: Spec) -> list[tuple[str, str]]:
        return list(create_headers(spec, self.key).items())


Header = tuple[str | bytes, str | bytes]


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def http(
    method: str | bytes,
    target: str | bytes,
    headers: Sequence[Header] = (),
    body: bytes = b"",
    *,
    host: str | None = None,
    length: bool = True,
    version: bytes = b"HTTP/1.1",
    eol: bytes = b"\r\n",
) -> bytes:
    """One request's bytes, exactly as given: nothing is validated or escaped.

    ``host`` adds a Host header first; ``length`` adds a Content-Length for a
    non-empty body unless the headers already frame it.
    """
    lines = [_b(method) + b" " + _b(target) + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    names = {_b(name).lower() for name, _ in headers}
    for name, value in headers:
        lines.append(_b(name) + b": " + _b(value))
    if length and body and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return eol.join(lines) + eol + eol + body


# -- which part of the server a path reaches ----------------------------------------------------


def area_of(target: str, providers: Sequence[str]) -> tuple[str, str | None]:
    """``(area, provider)`` the server routes ``target`` to: provider, admin, storage or other.

    The server routes on the percent-decoded path, so this decodes too; an
    absolute-form target is routed by its path.
    """
    raw = target
    if "://" in raw.split("?", 1)[0]:
        raw = urlsplit(raw).path or "/"
    path = unquote_to_bytes(raw.split("?", 1)[0].split("#", 1)[0]).decode("utf-8", "replace")
    first = path.split("/", 2)[1] if path.startswith("/") and len(path) > 1 else ""
    if first in providers:
        return "provider", first
    if first == "_paddock":
        return "admin", None
    if first == "_storage":
        return "storage", None
    return "other", None


# -- showing bytes ------------------------------------------------------------------------------

_RUN = re.compile(rb"(.{1,12}?)\1{7,}", re.DOTALL)


def compact(data: bytes, limit: int = 700) -> str:
    """A Python expression that evaluates to ``data``, with long repeats written as ``b'x'*N``.

    A 2 KB nesting case becomes ``b'{"model":' + b'['*1000 + ...``, which a
    person can read and paste; past ``limit`` characters it is cut with a note.
    """
    parts: list[str] = []
    cursor = 0
    for match in _RUN.finditer(data):
        unit = match.group(1)
        if match.start() > cursor:
            parts.append(repr(data[cursor : match.start()]))
        parts.append(f"{unit!r}*{(match.end() - match.start()) // len(unit)}")
        tail = (match.end() - match.start()) % len(unit)
        if tail:
            parts.append(repr(unit[:tail]))
        cursor = match.end()
    if cursor < len(data):
        parts.append(repr(data[cursor:]))
    text = " + ".join(parts) or "b''"
    if len(text) > limit:
        text = text[: limit - 40] + f" ... ({len(data)} bytes in all)"
    return text
