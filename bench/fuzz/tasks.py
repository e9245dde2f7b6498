"""The tasks made before fuzzing, and what "answers identically afterwards" means for them.

Per provider and model, one task in each state a client can observe for long:
SUCCEEDED, FAILED (a ``fail=`` scenario), stuck RUNNING, stuck PENDING, and
CANCELED where the provider can cancel. They belong to an owner key the
fuzzer never uses. After creating them the clock is moved a minute on through
the admin API (the documented way), so every task that can finish has; from
then on each answer is a pure function of the task, except for what the spec
itself says is fresh per request:

- every field filled from ``{request_id}`` (a new id per call), and
- the signed result link when the spec says it is reissued on each poll
  (``reissue_on_poll``: its expiry and signature move with the clock).

Those fields are blanked; status and every other byte of the JSON must match.
The snapshot is taken twice before fuzzing, so a field that moves on its own
shows up as a setup error rather than as a false finding.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from bench.fuzz.bodies import base_body
from contracts.bodies import create_headers
from contracts.spec import Spec, SpecSet
from contracts.wire import Template
from mock_server.scenarios import HEADER as SCENARIO_HEADER

__all__ = ["OWNER_KEY", "Snapshot", "TaskSet", "make_tasks", "sample_png"]

OWNER_KEY = "sk-fuzz-owner"
# The catalogue's first error is as good as any for a FAILED task.
_SCENARIOS = ("", "fail", "stuck=running", "stuck=pending")


class SetupError(RuntimeError):
    """The server did not take the requests the fuzz run depends on."""


@functools.cache
def sample_png(width: int = 640, height: int = 480) -> bytes:
    """A real PNG every provider's image rules accept (sides >= 300, aspect within 1:2.5)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Probe:
    """One read-only call to repeat after fuzzing: who made it and what to blank."""

    provider: str
    label: str
    path: str
    volatile: tuple[tuple[str, ...], ...]


Snapshot = dict[str, tuple[int, Any]]


@dataclass
class TaskSet:
    """The tasks and listings to compare, by provider."""

    probes: list[Probe]
    task_ids: dict[str, list[str]]
    result_links: list[str]

    def snapshot(self, client: httpx.Client, specs: SpecSet) -> Snapshot:
        """Each probe's status and body, with the spec's per-request fields blanked."""
        out: Snapshot = {}
        for probe in self.probes:
            spec = specs[probe.provider]
            response = client.get(probe.path, headers=_auth(spec, OWNER_KEY))
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            for path in probe.volatile:
                _blank(body, path)
            out[f"{probe.provider} {probe.label}"] = (response.status_code, body)
        return out


def _auth(spec: Spec, key: str) -> dict[str, str]:
    return {spec.auth_header: f"{spec.auth_scheme} {key}"}


def _blank(doc: Any, path: tuple[str, ...]) -> None:
    node = doc
    for part in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.get(part)
    if isinstance(node, dict) and path and path[-1] in node:
        node[path[-1]] = "(fresh per request)"


def volatile_paths(spec: Spec, templates: list[Template]) -> tuple[tuple[str, ...], ...]:
    """The JSON paths the spec fills afresh on each call (see the module docstring)."""
    fresh = ["{request_id}"] + (["{result.url}"] if spec.reissue_on_poll else [])
    found = {
        tuple(path.split("."))
        for template in templates
        for path, placeholder in template.placeholders().items()
        if any(name in placeholder for name in fresh)
    }
    return tuple(sorted(found))


def make_tasks(client: httpx.Client, specs: SpecSet, image_url: str) -> TaskSet:
    """Create the tasks (see the module docstring), cancel one each where possible, settle."""
    probes: list[Probe] = []
    task_ids: dict[str, list[str]] = {}
    for spec in specs:
        volatile = volatile_paths(spec, list(spec.query_response.states.values()))
        for model in spec.models:
            for scenario in _SCENARIOS:
                task_id = _create(client, spec, model, image_url, scenario)
                task_ids.setdefault(spec.provider, []).append(task_id)
                path = f"/{spec.provider}" + spec.operations["query"].path.replace(
                    "{task_id}", task_id
                )
                probes.append(
                    Probe(spec.provider, f"{model} {scenario or 'plain'}", path, volatile)
                )
        if "cancel" in spec.operations:
            _cancel(client, spec, task_ids[spec.provider][-1])  # the last is stuck PENDING
        if "list" in spec.operations and spec.list_response is not None:
            path = f"/{spec.provider}" + spec.operations["list"].path + "?page_size=100"
            probes.append(
                Probe(spec.provider, "list", path, volatile_paths(spec, [spec.list_response]))
            )
    answer = client.post("/_paddock/clock/advance", json={"seconds": 60})
    if answer.status_code != 200:
        raise SetupError(f"the clock did not move: {answer.status_code} {answer.text[:200]}")
    tasks = TaskSet(probes, task_ids, [])
    tasks.result_links = _result_links(client, specs, tasks)
    return tasks


def _create(client: httpx.Client, spec: Spec, model: str, image_url: str, scenario: str) -> str:
    headers = create_headers(spec, OWNER_KEY)
    if scenario:
        headers[SCENARIO_HEADER] = (
            f"fail={next(iter(spec.errors))}" if scenario == "fail" else scenario
        )
    path = f"/{spec.provider}" + spec.operations["create"].path
    response = client.post(path, json=base_body(spec, model, image_url), headers=headers)
    if not response.is_success:
        raise SetupError(
            f"{spec.provider} {model}: a valid create answered {response.status_code}: "
            f"{response.text[:300]}"
        )
    task_id = spec.create_response.parse(response.json(), strict=False).get("task.id")
    if not isinstance(task_id, str):
        raise SetupError(f"{spec.provider} {model}: no task id in {response.text[:300]}")
    return task_id


def _cancel(client: httpx.Client, spec: Spec, task_id: str) -> None:
    path = f"/{spec.provider}" + spec.operations["cancel"].path.replace("{task_id}", task_id)
    response = client.post(path, headers=_auth(spec, OWNER_KEY))
    if not response.is_success:
        raise SetupError(f"{spec.provider}: cancel answered {response.status_code}")


def _result_links(client: httpx.Client, specs: SpecSet, tasks: TaskSet) -> list[str]:
    """Each finished task's signed link (path and query), fetched once so its video is rendered."""
    links: list[str] = []
    for probe in tasks.probes:
        if probe.label == "list":
            continue
        spec = specs[probe.provider]
        answer = client.get(probe.path, headers=_auth(spec, OWNER_KEY))
        template = spec.query_response.states.get("SUCCEEDED")
        if template is None or not answer.is_success:
            continue
        try:
            url = template.parse(answer.json(), strict=False).get("result.url")
        except ValueError:
            continue
        if isinstance(url, str) and "/_storage/" in url:
            link = url[url.index("/_storage/") :]
            if client.get(link, timeout=120).is_success:
                links.append(link)
    return links
