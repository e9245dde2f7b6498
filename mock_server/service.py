"""One provider's endpoints, built from its spec: create, query, cancel, list, upload policy.

Nothing here knows which provider it serves. Paths, headers, body layout,
response shapes, error envelopes and codes all come from the spec, so a new
provider or model is a YAML change.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from contracts.bodies import path_parts
from contracts.lifecycle import draw_plan, output_shape, progress_at, state_at, times_at
from contracts.spec import ErrorDef, Operation, Spec
from contracts.task import TaskRecord
from contracts.validate import (
    Violation,
    check_auth,
    check_headers,
    media_bound,
    media_urls,
    parse_json_body,
    validate_create,
)
from contracts.views import error_view, make_id, new_uuid, new_uuids, task_view
from mock_server.fetch import validate_fetching
from mock_server.reading import BodyTimeout, BodyTooLarge, ClientGone, read_body
from mock_server.scenarios import HEADER as SCENARIO_HEADER
from mock_server.scenarios import ScenarioError, parse_scenario
from mock_server.storage import MockMediaResolver, blob_key, issue_policy
from mock_server.store import Blob, StoreFull, StoreUnavailable

if TYPE_CHECKING:
    from mock_server.app import MockState

log = logging.getLogger("paddock.mock")

__all__ = ["ProviderService", "base_url", "json_response"]

_UTC8 = timezone(timedelta(hours=8))
Endpoint = Callable[[Request], Awaitable[Response]]
# Provider routes take every method and answer a wrong one in the provider's
# own envelope, instead of Starlette's plain-text 405.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    """Compact UTF-8 JSON; orjson, because encoding is a fifth of a poll's cost with the stdlib."""
    body = orjson.dumps(payload)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def base_url(request: Request) -> str:
    """``scheme://host[:port]`` as the client addressed us, without building URL objects."""
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"


class _Answer(Exception):
    """Raised inside a handler to answer at once (a violation found mid-way)."""

    def __init__(self, response: Response, task_id: str | None = None) -> None:
        self.response = response
        self.task_id = task_id


class ProviderService:
    """The endpoints of one provider, answering in its own wire format."""

    def __init__(self, spec: Spec, state: MockState) -> None:
        self.spec = spec
        self.state = state
        self._media_bound = media_bound(spec)
        self._handlers: dict[str, Callable[[Request, dict[str, Any]], Awaitable[Response]]] = {
            "create": self._create,
            "query": self._query,
            "cancel": self._cancel,
            "list": self._list,
            "upload_policy": self._upload_policy,
        }

    # -- routing --------------------------------------------------------------------------------

    def operation_routes(self, prefix: str) -> list[tuple[str, str, Endpoint]]:
        """``(path pattern, method, endpoint)`` for each operation, for the app's dispatch."""
        return [
            (prefix + op.path, op.method, self._endpoint(op))
            for op in self.spec.operations.values()
        ]

    def _endpoint(self, op: Operation) -> Endpoint:
        handler = self._handlers[op.kind]

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            marks: dict[str, Any] = {}
            task_id: str | None = request.path_params.get("task_id")
            try:
                response = await handler(request, marks)
                task_id = marks.get("task_id", task_id)
            except _Answer as answer:
                response = answer.response
                task_id = answer.task_id or task_id
            except StoreUnavailable as exc:
                # An outage, not a bug: one line in the log, the provider's 5xx on the wire.
                log.error("%s %s: %s", request.method, request.scope["path"], exc)
                response = self.violation(Violation("server_error"))
                marks["fault"] = "store unavailable"
            except Exception:
                # A bug of ours: still answer in the provider's envelope (what its
                # clients can read), and leave the traceback in the log, not the wire.
                log.exception("%s %s failed", request.method, request.scope["path"])
                response = self.violation(Violation("server_error"))
                marks["fault"] = "mock bug (see the server log)"
            body = marks.get("body", b"")
            await self.state.journal.record(
                at=self.state.clock.now(),
                method=request.method,
                path=request.scope["path"],
                provider=self.spec.provider,
                operation=op.kind,
                status=response.status_code,
                headers=request.scope["headers"],
                body=body,
                elapsed_ms=(time.perf_counter() - started) * 1000,
                marks={k: v for k, v in marks.items() if k not in ("body", "task_id")},
                task_id=task_id,
            )
            return response

        return endpoint

    async def not_found(self, request: Request) -> Response:
        """Any path under this provider that is no operation, or an operation's path with
        another method: the provider's own "not found", in its envelope."""
        path = request.scope["path"]
        response = self.violation(
            Violation("route_unknown", None, f"no route {request.method[:16]} {path[:200]}")
        )
        await self.state.journal.record(
            at=self.state.clock.now(),
            method=request.method,
            path=request.scope["path"],
            provider=self.spec.provider,
            operation=None,
            status=response.status_code,
            headers=request.scope["headers"],
            body=b"",
            elapsed_ms=0.0,
        )
        return response

    # -- shared steps ---------------------------------------------------------------------------

    def violation(
        self,
        violation: Violation,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        error, message = violation.resolve(self.spec)
        return self.error(error, message, status=status, headers=headers)

    def error(
        self,
        error: ErrorDef,
        message: str | None = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        view = error_view(error, message if message is not None else error.message, new_uuid())
        payload = self.spec.envelopes[error.envelope].render(view)
        return json_response(status or error.status, payload, headers)

    def _authenticate(self, request: Request, headers: Mapping[str, str] | None = None) -> str:
        key, broken = check_auth(self.spec, headers or request.headers, self.state.api_keys)
        if broken is not None:
            raise _Answer(self.violation(broken))
        assert key is not None
        return self.state.signer.owner(key)

    async def _read_body(self, request: Request, marks: dict[str, Any]) -> bytes:
        """The create body, its bound enforced as it arrives; a broken one ends the request."""
        limit = self.spec.body_limit
        try:
            return await read_body(
                request.receive, request.scope["headers"], limit, self.state.options.body_timeout
            )
        except BodyTooLarge:
            raise _Answer(
                self.violation(
                    Violation("body_too_large", None, "the body is too large", {"max": limit})
                )
            ) from None
        except BodyTimeout as exc:
            marks["fault"] = "body incomplete"
            raise _Answer(self.violation(Violation("body_incomplete", None, str(exc)))) from None
        except ClientGone:
            # Nobody is left to answer; what matters is that no task is made.
            marks["fault"] = "client went away mid-body"
            raise _Answer(Response(b"", 400)) from None

    def _result_url(self, request: Request, task: TaskRecord, now: float) -> str:
        if self.spec.reissue_on_poll:
            expires = int(now + self.spec.result_retention)
        else:
            _, _, ended = times_at(task, "SUCCEEDED")
            expires = int((ended or now) + self.spec.result_retention)
        return self.state.result_url(base_url(request), self.spec.provider, task.id, expires)

    async def _task(self, task_id: str, owner: str) -> TaskRecord | None:
        """The task if this key may see it; to anyone else it does not exist."""
        task = await self.state.store.get_task(self.spec.provider, task_id)
        return task if task is not None and task.owner == owner else None

    async def _media_resolver(self, doc: Mapping[str, Any], owner: str) -> MockMediaResolver:
        """Look up, before the synchronous validator runs, every stored file the body names."""
        blobs: dict[str, Blob | None] = {}
        for url in media_urls(self.spec, doc, self._media_bound):
            key = blob_key(url, self.spec.upload_scheme)
            if key is not None:
                blobs[url] = await self.state.store.get_blob(key)
        return MockMediaResolver(self.spec.upload_scheme, owner, blobs)

    # -- operations -----------------------------------------------------------------------------

    async def _create(self, request: Request, marks: dict[str, Any]) -> Response:
        spec = self.spec
        # One plain dict for the half-dozen lookups below (ASGI names are lower case).
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        owner = self._authenticate(request, headers)
        broken = check_headers(spec, "create", headers)
        if broken is not None:
            return self.violation(broken)
        marks["body"] = body = await self._read_body(request, marks)
        doc, broken = parse_json_body(spec, "create", headers, body)
        if broken is not None:
            return self.violation(broken)
        assert doc is not None
        prompt = _dig(doc, spec.prompt_path)
        try:
            scenario = parse_scenario(
                spec, headers.get(SCENARIO_HEADER), prompt if isinstance(prompt, str) else None
            )
        except ScenarioError as exc:
            # A mock-only header: the provider's envelope, but our own explanation.
            return self.error(spec.violations["header_invalid"].error, str(exc), status=400)
        if not scenario.empty:
            marks["scenario"] = scenario.describe()
        if scenario.throttle:
            return self.violation(Violation("throttled"), headers={"Retry-After": "1"})
        if scenario.reject is not None:
            return self.error(spec.error(scenario.reject))
        resolver = await self._media_resolver(doc, owner)
        result = await validate_fetching(
            lambda found: validate_create(spec, headers, doc, found), resolver, self.state.fetcher
        )
        if isinstance(result, Violation):
            marks["violation"] = str(result)
            return self.violation(result)
        marks["request"] = result  # summarised when the journal is read
        rules = spec.models[result.model]
        request_id, upstream_id, upstream_request_id = new_uuids(3)
        task_id = make_id(rules.task_id)
        now = self.state.clock.now()
        plan = scenario.apply(draw_plan(spec, self.state.timing, task_id), spec)
        task = TaskRecord(
            id=task_id,
            provider=spec.provider,
            owner=owner,
            request=result,
            plan=plan,
            output=output_shape(spec, rules, result),
            created_at=now,
            request_id=request_id,
            upstream_id=upstream_id,
            upstream_request_id=upstream_request_id,
            faults=("query_5xx",) if scenario.flaky else (),
        )
        try:
            task = await self.state.store.put_task(task)
        except StoreFull as exc:
            marks["fault"] = str(exc)
            return self.violation(Violation("throttled"), headers={"Retry-After": "60"})
        marks["task_id"] = task_id
        now = task.created_at
        view = {
            "request_id": task.request_id,
            "state": "PENDING",
            "task.id": task_id,
            "task.model": task.model,
            "times.submitted": now,
        }
        progress = progress_at(spec.progress, task, "PENDING", now)
        if progress is not None:
            view["progress"] = progress
        return json_response(spec.create_status, spec.create_response.render(view))

    async def _query(self, request: Request, marks: dict[str, Any]) -> Response:
        spec = self.spec
        owner = self._authenticate(request)
        task_id = request.path_params["task_id"]
        op = spec.operations["query"]
        task = await self._task(task_id, owner)
        now = self.state.clock.now()
        request_id = new_uuid()
        if task is None:
            gone = op.expired is not None and (
                await self.state.store.expired_owner(spec.provider, task_id) == owner
            )
            rule = op.expired if gone else op.unknown
            return self._unknown(rule or {"state": "UNKNOWN"}, task_id, request_id)
        if "query_5xx" in task.faults:
            await self.state.store.replace_task(
                task, replace(task, faults=tuple(f for f in task.faults if f != "query_5xx"))
            )
            marks["fault"] = "flaky"
            return self.violation(Violation("server_error"))
        if spec.poll_min_interval is not None:
            last = await self.state.store.previous_poll(spec.provider, task_id, now)
            if last is not None and now - last < spec.poll_min_interval:
                marks["fault"] = "poll_limit"
                wait = max(1, math.ceil(spec.poll_min_interval - (now - last)))
                return self.violation(Violation("throttled"), headers={"Retry-After": str(wait)})
        state = state_at(task, now, spec.task_retention)
        if state == "UNKNOWN" and op.expired is not None and "error" in op.expired:
            return self._unknown(op.expired, task_id, request_id)
        result_url = self._result_url(request, task, now) if state == "SUCCEEDED" else None
        view = task_view(spec, task, now, request_id=request_id, result_url=result_url, state=state)
        marks["state"] = state
        return json_response(
            spec.query_response.status, spec.query_response.states[state].render(view)
        )

    def _unknown(self, rule: Mapping[str, str], task_id: str, request_id: str) -> Response:
        if "error" in rule:
            return self.error(self.spec.error(rule["error"]))
        view: dict[str, Any] = {
            "request_id": request_id,
            "state": rule.get("state", "UNKNOWN"),
            "task.id": task_id,
        }
        if self.spec.progress is not None:
            view["progress"] = self.spec.progress.get("UNKNOWN", (0,))[0]
        return json_response(
            self.spec.query_response.status, self.spec.query_response.states["UNKNOWN"].render(view)
        )

    async def _cancel(self, request: Request, marks: dict[str, Any]) -> Response:
        spec = self.spec
        owner = self._authenticate(request)
        op = spec.operations["cancel"]
        task = await self._task(request.path_params["task_id"], owner)
        now = self.state.clock.now()
        if task is None:
            return self.violation(Violation("cancel_refused", None, "unknown task"))
        state = state_at(task, now, spec.task_retention)
        marks["state"] = state
        if state not in op.cancelable or not await self.state.store.replace_task(
            task, replace(task, canceled_at=now)
        ):
            return self.violation(Violation("cancel_refused", None, f"the task is {state}"))
        assert spec.cancel_response is not None
        return json_response(
            200, spec.cancel_response.render({"request_id": new_uuid(), "task.id": task.id})
        )

    async def _list(self, request: Request, marks: dict[str, Any]) -> Response:
        spec = self.spec
        owner = self._authenticate(request)
        query = request.query_params
        page_no = _int_param(query.get("page_no"), "page_no", 1, 1, 1_000_000)
        page_size = _int_param(query.get("page_size"), "page_size", 10, 1, 100)
        for broken in (page_no, page_size):
            if isinstance(broken, Violation):
                return self.violation(broken)
        assert isinstance(page_no, int) and isinstance(page_size, int)
        bounds: list[float | None] = []
        for name in ("start_time", "end_time"):
            raw = query.get(name)
            if raw is None:
                bounds.append(None)
                continue
            try:
                bounds.append(
                    datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=_UTC8).timestamp()
                )
            except ValueError:
                return self.violation(
                    Violation(
                        "field_type",
                        name,
                        "expected YYYYMMDDhhmmss",
                        {"expected": "YYYYMMDDhhmmss", "actual": raw, "value": raw},
                    )
                )
        status = query.get("status")
        listable = [s for s in spec.vocabularies["status"] if s != "UNKNOWN"]
        if status is not None and status not in listable:
            allowed = ", ".join(listable)
            return self.violation(
                Violation(
                    "param_enum",
                    "status",
                    f"{status} is not a status",
                    {"value": status, "allowed": allowed},
                )
            )
        model = query.get("model_name")
        now = self.state.clock.now()
        rows: list[tuple[TaskRecord, str]] = []
        for task in await self.state.store.owner_tasks(spec.provider, owner):
            state = state_at(task, now, spec.task_retention)
            if state == "UNKNOWN":
                continue
            if (status and state != status) or (model and task.model != model):
                continue
            if (bounds[0] is not None and task.created_at < bounds[0]) or (
                bounds[1] is not None and task.created_at > bounds[1]
            ):
                continue
            rows.append((task, state))
        rows.sort(key=lambda row: row[0].created_at, reverse=True)
        page = rows[(page_no - 1) * page_size : page_no * page_size]
        assert spec.list_item is not None and spec.list_response is not None
        items = [
            spec.list_item.render(task_view(spec, task, now, request_id="", state=state))
            for task, state in page
        ]
        view = {
            "request_id": new_uuid(),
            "items": items,
            "page.total": len(rows),
            "page.total_page": (len(rows) + page_size - 1) // page_size,
            "page.no": page_no,
            "page.size": page_size,
        }
        return json_response(200, spec.list_response.render(view))

    async def _upload_policy(self, request: Request, marks: dict[str, Any]) -> Response:
        spec = self.spec
        owner = self._authenticate(request)
        query = request.query_params
        action = query.get("action")
        if action != "getPolicy":
            return self.violation(
                Violation(
                    "param_enum",
                    "action",
                    "action must be getPolicy",
                    {"value": action or "(none)", "allowed": "getPolicy"},
                )
            )
        model = query.get("model")
        if not model:
            return self.violation(Violation("model_missing", "model", "no model was named"))
        if model not in spec.models:
            return self.violation(
                Violation(
                    "model_unknown",
                    "model",
                    f"{model!r} is unknown",
                    {"value": model, "allowed": ", ".join(spec.models)},
                )
            )
        now = self.state.clock.now()
        policy = issue_policy(
            self.state.signer, owner, model, now, spec.upload_policy_ttl, spec.upload_max_bytes
        )
        assert spec.upload_response is not None
        view = {
            "request_id": new_uuid(),
            "upload.policy": policy.policy,
            "upload.signature": policy.signature,
            "upload.dir": policy.directory,
            "upload.host": base_url(request) + "/_storage/oss",
            "upload.ttl": spec.upload_policy_ttl,
            "upload.max_mb": spec.upload_max_bytes // (1024 * 1024),
            "upload.access_key_id": self.state.signer.access_key_id,
        }
        return json_response(200, spec.upload_response.render(view))


def _dig(doc: Mapping[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in path_parts(dotted):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _int_param(raw: str | None, name: str, default: int, low: int, high: int) -> int | Violation:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return Violation(
            "field_type",
            name,
            "expected an integer",
            {"expected": "integer", "actual": "string", "value": raw},
        )
    if not low <= value <= high:
        return Violation(
            "param_range",
            name,
            f"{value} is outside {low}..{high}",
            {"value": value, "min": low, "max": high},
        )
    return value
