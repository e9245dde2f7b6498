"""The judges: each answer, the server log, and what a case owed, checked by small named functions.

Each oracle has one reason to fail and returns ``(oracle, kind)`` pairs: the
oracle is what was broken, the kind groups failures of one cause so the
report shows each once with a reproducer.

- ``undocumented 5xx``: a 5xx is documented only where the spec gives a
  catalogue error with that status to a kind of bad request (APIYI answers a
  missing image with 500 ``upstream_error``); the error for a bug of the
  mock's own (the ``server_error`` violation) is never documented.
- ``not in the envelope``: a provider route answers 4xx/5xx in one of the
  provider's error envelopes (strictly parsed through its template), with a
  code from its catalogue that belongs to that envelope. The admin API and
  unrouted paths answer JSON ``{"error": "..."}``; the object storage answers
  OSS's XML ``<Error><Code>..</Code>..``, or that JSON when no route matched.
- ``oversized error answer``: an error answer over 64 KiB; a message that
  echoes the input unbounded turns a 32 MiB request into a 32 MiB answer.
- ``traceback in the log``: the server logged a traceback or an ASGI error.
- ``no answer``: the server closed (or went quiet) before giving a request
  the answers the case owed (see ``RawCase.required``).
- ``accepted hostile input``: a 2xx to input no provider may accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fuzz.exchange import Answer
from contracts.spec import Spec, SpecSet

__all__ = ["Judge", "LogWatch"]

_XML_ERROR = re.compile(
    rb"<Error>\s*<Code>[^<]+</Code>\s*<Message>[^<]*</Message>.*</Error>", re.DOTALL
)
# An error message names a field and a clipped value: 64 KiB is far beyond any.
MAX_ERROR_BYTES = 64 * 1024
_VOLATILE = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+")
_REPEAT = re.compile(r"(.)\1{5,}")


def excerpt(body: bytes, limit: int = 70) -> str:
    """The start of a body on one line, for a failure's kind and message."""
    text = body.decode("utf-8", "replace").replace("\n", " ").strip() or "(empty body)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stable(text: str) -> str:
    """``text`` with ids and numbers blanked and cut at a long repeat, so one cause is one kind."""
    run = _REPEAT.search(text)
    return _VOLATILE.sub("N", text[: run.start()] + "…" if run else text)


def said(body: bytes) -> str:
    """What an answer said, for grouping: a JSON object's top-level keys, else its start."""
    doc = _json(body)
    if isinstance(doc, dict):
        return "JSON {" + ", ".join(sorted(map(str, doc))) + "}"
    return stable(excerpt(body))


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _plain_error(answer: Answer) -> bool:
    doc = _json(answer.body)
    return isinstance(doc, dict) and isinstance(doc.get("error"), str)


@dataclass(frozen=True)
class _Catalogue:
    """What one provider's error answers may be."""

    spec: Spec
    documented_5xx: frozenset[str]

    @classmethod
    def of(cls, spec: Spec) -> _Catalogue:
        codes = frozenset(
            rule.error.code
            for kind, rule in spec.violations.items()
            if kind != "server_error" and rule.error.status >= 500
        )
        return cls(spec, codes)

    def code(self, answer: Answer) -> str | None:
        """The catalogue code of an answer in one of the provider's envelopes, else None."""
        doc = _json(answer.body)
        for name, envelope in self.spec.envelopes.items():
            try:
                code = envelope.parse(doc, strict=True).get("error.code")
            except ValueError:
                continue
            if (
                isinstance(code, str)
                and self.spec.has_error(code)
                and self.spec.error(code).envelope == name
            ):
                return code
        return None


class Judge:
    """Every answer-level oracle, for the providers of one spec set."""

    def __init__(self, specs: SpecSet) -> None:
        self.catalogues = {spec.provider: _Catalogue.of(spec) for spec in specs}

    def answer(
        self, area: str, provider: str | None, method: str, answer: Answer
    ) -> Iterator[tuple[str, str]]:
        """The oracles one answer breaks, as ``(oracle, kind)``."""
        status = answer.status
        if status < 400:
            return
        place = provider or area
        if answer.length > MAX_ERROR_BYTES:
            start = stable(excerpt(answer.body, 140))
            yield (
                "oversized error answer",
                f"{place} {status} over {MAX_ERROR_BYTES} bytes: {start}",
            )
            return  # only its start was kept: the envelope cannot be read
        bodiless = method == "HEAD" and not answer.body
        if area == "provider" and provider in self.catalogues:
            catalogue = self.catalogues[provider]
            code = None if bodiless else catalogue.code(answer)
            if code is None and not bodiless:
                yield "not in the envelope", f"{place} {status} {said(answer.body)}"
            if status >= 500 and code not in catalogue.documented_5xx:
                yield "undocumented 5xx", f"{place} {status} {code or said(answer.body)}"
            return
        if status >= 500:
            yield "undocumented 5xx", f"{place} {status} {said(answer.body)}"
        if bodiless or self._shaped(area, answer):
            return
        yield "not in the envelope", f"{place} {status} {said(answer.body)}"

    @staticmethod
    def _shaped(area: str, answer: Answer) -> bool:
        if area != "storage":
            return _plain_error(answer)
        if answer.status == 416 and not answer.body and answer.header("content-range"):
            return True  # RFC 9110: an unsatisfiable range names the size, with no body
        return bool(_XML_ERROR.search(answer.body)) or _plain_error(answer)


_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Group)\w*)(:.*)?$")


class LogWatch:
    """Reads what the server logged since the last look and names each traceback in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def problems(self) -> list[str]:
        """One summary per traceback or ASGI error logged since the last call."""
        size = self.path.stat().st_size
        if size <= self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            text = handle.read(size - self.offset).decode("utf-8", "replace")
        self.offset = size
        return summarise(text)


def summarise(text: str) -> list[str]:
    """``ExceptionType: message`` for each traceback in ``text`` (the last of a chain).

    uvicorn logs ``ERROR: Exception in ASGI application`` and then the
    traceback: that pair is one problem, named by the traceback.
    """
    found: list[str] = []
    waiting: str | None = None  # an ERROR line whose traceback may follow
    blocks = re.split(r"(?=^Traceback \(most recent call last\))|(?=^ERROR:)", text, flags=re.M)
    for block in blocks:
        lines = block.splitlines()
        if not lines or not lines[0].startswith(("Traceback", "ERROR:")):
            continue
        names = [m.group(1) + (m.group(2) or "")[:100] for m in map(_EXCEPTION.match, lines) if m]
        if names:
            found.append(names[-1])
            waiting = None
        elif lines[0].startswith("ERROR:"):
            if waiting is not None:
                found.append(waiting)
            waiting = lines[0][:120]
    if waiting is not None:
        found.append(waiting)
    return found
