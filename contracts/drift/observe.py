"""Recorded runs: the exchanges a conformance run wrote with ``--record``, read back.

A run is a directory holding ``PROVIDER.jsonl`` (one redacted exchange per
line) and ``PROVIDER.manifest.json`` (provider, target, spec digest, toolkit
version, time, budget used, how the target timed its tasks). ``paddock drift
run`` keeps them under ``reports/runs/<provider>/<UTC timestamp>/`` so runs
sort by time and an earlier one can serve as a baseline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Observation", "Run", "RunError", "latest_run", "load_run", "new_run_dir"]

RUNS = Path("reports") / "runs"


class RunError(Exception):
    """A run directory that cannot be read: missing, empty or not a recording."""


@dataclass(frozen=True)
class Observation:
    """One recorded exchange, as the drift analysis reads it."""

    index: int
    check: str
    model: str | None
    time: float
    method: str
    url: str
    path: str
    request_headers: Mapping[str, str]
    request_body: Any
    request_form: str
    note: Mapping[str, Any]
    status: int | None
    response_headers: Mapping[str, str]
    response_body: Any
    response_form: str
    video: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def expect(self) -> str | None:
        value = self.note.get("expect")
        return value if isinstance(value, str) else None

    def evidence(self, limit: int = 600) -> dict[str, Any]:
        """The exchange trimmed for a report: already redacted when it was recorded."""
        out: dict[str, Any] = {
            "check": self.check,
            "request": f"{self.method} {self.url}",
        }
        if self.request_body is not None:
            out["request_body"] = _trim(self.request_body, limit)
        if self.status is not None:
            out["status"] = self.status
        if self.response_body is not None:
            out["response_body"] = _trim(self.response_body, limit)
        if self.video is not None:
            out["video"] = dict(self.video)
        return out


def _trim(value: Any, limit: int) -> Any:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Run:
    directory: Path
    manifest: Mapping[str, Any]
    observations: tuple[Observation, ...]

    @property
    def provider(self) -> str:
        return str(self.manifest.get("provider", ""))

    @property
    def time(self) -> str:
        return str(self.manifest.get("time", "?"))

    @property
    def timing(self) -> str:
        return str(self.manifest.get("timing", "real"))


def load_run(directory: Path, provider: str) -> Run:
    """The run recorded in ``directory`` for ``provider``."""
    if not directory.is_dir():
        raise RunError(f"no run directory at {directory}")
    exchanges = directory / f"{provider}.jsonl"
    manifest_file = directory / f"{provider}.manifest.json"
    if not exchanges.is_file():
        raise RunError(
            f"{directory} holds no {provider}.jsonl; record one with "
            f"'paddock drift run --provider {provider}'"
        )
    manifest: dict[str, Any] = {"provider": provider}
    if manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunError(f"{manifest_file} is not JSON: {exc}") from None
    observations: list[Observation] = []
    with exchanges.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError as exc:
                raise RunError(f"{exchanges}:{number + 1} is not JSON: {exc}") from None
            observations.append(_observation(len(observations), doc))
    if not observations:
        raise RunError(f"{exchanges} holds no exchanges")
    return Run(directory, manifest, tuple(observations))


def _observation(index: int, doc: Mapping[str, Any]) -> Observation:
    request = doc.get("request") or {}
    response = doc.get("response") or {}
    url = str(request.get("url", ""))
    note = doc.get("note")
    return Observation(
        index=index,
        check=str(doc.get("check", "")),
        model=doc.get("model"),
        time=float(doc.get("time", 0.0)),
        method=str(request.get("method", "")),
        url=url,
        path=urlsplit(url).path,
        request_headers={str(k): str(v) for k, v in (request.get("headers") or {}).items()},
        request_body=request.get("body"),
        request_form=str(request.get("body_form", "json")),
        note=note if isinstance(note, dict) else {},
        status=response.get("status"),
        response_headers={
            str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()
        },
        response_body=response.get("body"),
        response_form=str(response.get("body_form", "json")),
        video=response.get("video"),
        raw=doc,
    )


def new_run_dir(root: Path, provider: str) -> Path:
    """``root/runs/<provider>/<UTC timestamp>/``, made (a second run that second: ``-2``)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = root / "runs" / provider
    directory = base / stamp
    suffix = 1
    while directory.exists():
        suffix += 1
        directory = base / f"{stamp}-{suffix}"
    directory.mkdir(parents=True)
    return directory


def latest_run(root: Path, provider: str, *, before: Path | None = None) -> Path | None:
    """The newest run of ``provider`` under ``root/runs`` (older than ``before`` if given)."""
    base = root / "runs" / provider
    if not base.is_dir():
        return None
    runs = sorted(p for p in base.iterdir() if (p / f"{provider}.jsonl").is_file())
    if before is not None:
        runs = [p for p in runs if p.name < before.name]
    return runs[-1] if runs else None
