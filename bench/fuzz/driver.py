"""Run the fuzz session: start ``paddock serve``, make tasks, send the sources, judge, report.

Requests go one at a time, so each traceback in the log is charged to the
request that caused it and every exchange has its own deadline; a health
check runs every 200 cases and the whole run stops at ``--max-seconds``.
The raw families share what the schemathesis source leaves of
``--requests``; each family is a hypothesis strategy run with a fixed seed,
so the same flags send the same bytes.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from bench.fuzz import bodies, protocol, reserved
from bench.fuzz.cases import Context, RawCase, area_of, compact, http
from bench.fuzz.exchange import Answer, exchange
from bench.fuzz.oracles import Judge, LogWatch, excerpt, stable
from bench.fuzz.report import Tally
from bench.fuzz.tasks import TaskSet, make_tasks, sample_png
from bench.servers import Fleet, Server, answers
from contracts.openapi import run_schema_checks
from contracts.spec import SpecSet, load_specs

__all__ = ["FAMILIES", "compare", "main"]

FUZZ_KEY = "sk-fuzz-visitor"
FAMILIES: dict[str, Callable[[Context], st.SearchStrategy[RawCase]]] = {
    **bodies.FAMILIES,
    **protocol.FAMILIES,
    **reserved.FAMILIES,
}
HEALTH_EVERY = 200


class Abort(Exception):
    """The run cannot go on (the server stopped, or the time budget is spent)."""


class Runner:
    """Sends cases one at a time and runs every oracle on what came back."""

    def __init__(self, server: Server, ctx: Context, tally: Tally, deadline: float) -> None:
        self.server = server
        self.address = ("127.0.0.1", server.port)
        self.ctx = ctx
        self.tally = tally
        self.deadline = deadline
        self.judge = Judge(ctx.specs)
        self.watch = LogWatch(server.log_path)
        self.cases = 0

    def raw(self, case: RawCase) -> None:
        """One raw case: send it, judge each answer, and what the log and the count say."""
        self._pace()
        where = f"{case.family}, {case.provider or 'other'}"

        def example() -> str:
            return compact(case.data if len(case.data) <= 1 << 20 else case.data[: 1 << 20])

        outcome = exchange(
            self.address,
            case.data,
            [s.method for s in case.sent],
            required=case.owed,
            half_close=case.half_close,
            timeout=case.timeout,
        )
        self.tally.sent(f"raw: {case.family}", case.provider, len(case.sent))
        self.tally.endings[outcome.ending] += 1
        for sent, answer in zip(case.sent, outcome.answers, strict=False):
            area, provider = area_of(sent.target, self.ctx.providers)
            self._judge(where, area, provider, sent.method, answer, example, case.note)
            if case.refuse and 200 <= answer.status < 300:
                self.tally.fail(
                    "accepted hostile input",
                    where,
                    f"{answer.status} to {stable(case.note)}",
                    example,
                    case.note,
                )
        troubled = outcome.ending != "complete" or any(a.status >= 500 for a in outcome.answers)
        missing = case.owed - len(outcome.answers)
        if missing > 0:
            self.tally.statuses["(none)"] += missing
            detail = f": {outcome.detail[:60]}" if outcome.detail else ""
            oracle = "garbled answer" if outcome.ending == "garbled" else "no answer"
            self.tally.fail(
                oracle,
                where,
                f"{outcome.ending}{stable(detail)} ({case.note[:40]})",
                example,
                case.note,
            )
        self.log(where, example, case.note, troubled)

    def http(
        self, source: str, provider: str, request: httpx.Request, response: httpx.Response
    ) -> None:
        """One request of the schemathesis source, judged like a raw one."""
        self._pace()
        self.tally.sent(source, provider)
        answer = Answer(
            response.status_code,
            tuple((k.lower(), v) for k, v in response.headers.items()),
            response.content,
        )
        example = _curl(request)
        self._judge(
            f"{source}, {provider}", "provider", provider, request.method, answer, example, ""
        )
        self.log(f"{source}, {provider}", example, "", response.status_code >= 500)

    def _judge(
        self,
        where: str,
        area: str,
        provider: str | None,
        method: str,
        answer: Answer,
        example: str | Callable[[], str],
        note: str,
    ) -> None:
        self.tally.statuses[str(answer.status)] += 1
        for oracle, kind in self.judge.answer(area, provider, method, answer):
            self.tally.fail(
                oracle,
                where,
                kind,
                example,
                note or f"answered {answer.status}: {excerpt(answer.body, 120)}",
            )

    def log(
        self, where: str, example: str | Callable[[], str], note: str, troubled: bool = False
    ) -> None:
        """Count each traceback logged since the last look against ``where``."""
        if troubled:
            # Starlette sends its 500 before it re-raises for uvicorn to log:
            # give the log a moment, or the traceback lands on the next case.
            time.sleep(0.05)
        for summary in self.watch.problems():
            self.tally.fail(
                "traceback in the log", where, stable(summary), example, note or summary
            )

    def _pace(self) -> None:
        self.cases += 1
        if time.monotonic() > self.deadline:
            raise Abort("the time budget ran out")
        if self.cases % HEALTH_EVERY == 0:
            self.health()

    def health(self) -> None:
        """The server still serves: its process is alive and the health route answers 200."""
        if self.server.proc.poll() is not None:
            self.tally.fail(
                "server stopped",
                "server",
                f"exit {self.server.proc.returncode}",
                "(the process ended)",
                self.server.log_tail(5),
            )
            raise Abort("the server process ended")
        outcome = exchange(
            self.address, http("GET", "/_paddock/health", host=self.ctx.host), ["GET"], timeout=10.0
        )
        if not outcome.answers or outcome.answers[0].status != 200:
            self.tally.fail(
                "server stopped",
                "server",
                f"health check: {outcome.ending}",
                "GET /_paddock/health",
                self.server.log_tail(5),
            )
            raise Abort("the server stopped answering its health check")


def _curl(request: httpx.Request) -> str:
    parts = [f"curl -sS -X {request.method} '{request.url}'"]
    parts += [
        f"-H '{k}: {v}'"
        for k, v in request.headers.items()
        if k.lower()
        not in ("accept", "accept-encoding", "connection", "user-agent", "content-length", "host")
    ]
    body = request.content
    if body:
        shown = body.decode("utf-8", "replace")
        parts.append(
            f"--data-binary '{shown[:300]}'"
            + (f" (… {len(body)} bytes)" if len(body) > 300 else "")
        )
    return " ".join(parts)


def schemathesis_source(runner: Runner, examples: int, seed: int) -> None:
    """schemathesis against each provider's exported OpenAPI document, every answer judged."""
    base = runner.server.base
    for spec in runner.ctx.specs:
        provider = spec.provider
        with httpx.Client(base_url=f"{base}/{provider}", timeout=30.0) as client:

            def send(
                method: str,
                path: str,
                headers: Mapping[str, str],
                body: bytes | None,
                client: httpx.Client = client,
                provider: str = provider,
            ) -> tuple[int, Mapping[str, str], bytes]:
                request = client.build_request(method, path, headers=dict(headers), content=body)
                response = client.send(request)
                runner.http("schemathesis", provider, request, response)
                return response.status_code, response.headers, response.content

            result = run_schema_checks(
                spec, send, api_key=runner.ctx.key, max_examples=examples, seed=seed
            )
        for problem in result.problems:
            runner.tally.fail(
                "schema check",
                f"schemathesis, {provider}",
                f"{problem.operation} {problem.check}",
                problem.curl(f"{base}/{provider}"),
                problem.message[:300],
            )


def raw_source(runner: Runner, count: int, seed: int) -> None:
    """Every raw family in turn, ``count`` cases shared among them."""
    share = math.ceil(count / len(FAMILIES))
    for number, (name, family) in enumerate(FAMILIES.items()):
        started = time.monotonic()
        strategy = family(runner.ctx)
        done = 0
        for attempt in range(4):  # a family with a small space may run dry: reseed
            if done >= share:
                break
            before = runner.cases

            @settings(
                max_examples=share - done,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
            )
            @hypothesis.seed(seed * 1000 + number * 10 + attempt)
            @given(strategy)
            def each(case: RawCase) -> None:
                runner.raw(case)

            each()
            done += runner.cases - before
        print(
            f"  {name}: {done} cases in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )


def _setup(server: Server, specs: SpecSet) -> tuple[Context, TaskSet, httpx.Client]:
    client = httpx.Client(base_url=server.base, timeout=60.0)
    hosted = client.post(
        "/_paddock/media", content=sample_png(), headers={"Content-Type": "image/png"}
    )
    hosted.raise_for_status()
    image_url = hosted.json()["url"]
    tasks = make_tasks(client, specs, image_url)
    policy: dict[str, str] = {}
    for spec in specs:
        if "upload_policy" in spec.operations and spec.upload_response is not None:
            path = f"/{spec.provider}" + spec.operations["upload_policy"].path
            answer = client.get(
                path,
                params={"action": "getPolicy", "model": next(iter(spec.models))},
                headers={spec.auth_header: f"{spec.auth_scheme} {FUZZ_KEY}"},
            )
            view = spec.upload_response.parse(answer.json(), strict=False)
            # The field names of OSS's PostObject form, as the mock's storage reads them.
            policy = {
                "policy": str(view.get("upload.policy")),
                "Signature": str(view.get("upload.signature")),
                "OSSAccessKeyId": str(view.get("upload.access_key_id")),
                "key": str(view.get("upload.dir")),
            }
            break
    ctx = Context(
        specs,
        f"127.0.0.1:{server.port}",
        FUZZ_KEY,
        image_url,
        {p: tuple(ids) for p, ids in tasks.task_ids.items()},
        tuple(tasks.result_links),
        policy,
    )
    return ctx, tasks, client


def compare(tally: Tally, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """The ``task changed`` oracle: every answer snapshotted before fuzzing, the same after."""
    for label, answer in before.items():
        if after.get(label) != answer:
            tally.fail(
                "task changed",
                "pre-fuzz tasks",
                label,
                f"before: {str(answer)[:300]}",
                f"after: {str(after.get(label))[:300]}",
            )


def _rss(server: Server) -> str:
    try:
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    parser.add_argument(
        "--requests",
        type=int,
        default=10_000,
        help="at least this many requests in all (default 10,000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument(
        "--schema-examples",
        type=int,
        default=100,
        help="schemathesis examples per operation and mode (default 100)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="stop sending after this long (default 900)",
    )
    parser.add_argument("--workdir", type=Path, help="keep the server log here")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG on to paddock serve (repeatable; --serve-arg=--timing --serve-arg=instant)",
    )
    return parser.parse_args(argv)


def _fuzz(
    server: Server,
    ctx: Context,
    tasks: TaskSet,
    client: httpx.Client,
    tally: Tally,
    args: argparse.Namespace,
    started: float,
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, str]]:
    """Snapshot, both sources, snapshot again: (before, after, server RSS before and after)."""
    before = tasks.snapshot(client, ctx.specs)
    if tasks.snapshot(client, ctx.specs) != before:
        raise SystemExit("setup error: the pre-fuzz answers move on their own")
    rss_before = _rss(server)
    runner = Runner(server, ctx, tally, started + args.max_seconds)
    runner.log("setup", "(the setup's requests)", "")
    try:
        print("schemathesis ...", file=sys.stderr, flush=True)
        schemathesis_source(runner, args.schema_examples, args.seed)
        print("raw requests ...", file=sys.stderr, flush=True)
        raw_source(runner, max(args.requests - tally.total, 0), args.seed)
        runner.health()
        time.sleep(0.2)  # a traceback logged after the last answer
        runner.log("after the last case", "(the last cases)", "")
    except Abort as exc:
        tally.notes.append(f"stopped early: {exc}")
    after = tasks.snapshot(client, ctx.specs) if server.proc.poll() is None else {}
    return before, after, (rss_before, _rss(server))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="paddock-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    specs = load_specs()
    tally = Tally()
    started = time.monotonic()
    serve = [sys.executable, "-m", "paddock", "serve", "--log-level", "info", *args.serve_arg]
    with Fleet(workdir) as fleet:
        server = fleet.start(
            "paddock",
            lambda port: [*serve, "--host", "127.0.0.1", "--port", str(port)],
            answers("/_paddock/health"),
        )
        ctx, tasks, client = _setup(server, specs)
        try:
            before, after, rss = _fuzz(server, ctx, tasks, client, tally, args, started)
        finally:
            client.close()
    compare(tally, before, after)
    header = f"paddock fuzz (seed {args.seed})"
    made = sum(len(v) for v in ctx.task_ids.values())
    tally.notes.append(
        f"pre-fuzz answers compared: {len(before)} ({made} tasks, {len(before) - made} listings)"
    )
    tally.notes.append(f"server RSS: {rss[0]} before fuzzing, {rss[1]} after")
    tally.notes.append(f"server log: {server.log_path}")
    if tally.total < args.requests:
        tally.notes.append(f"only {tally.total:,} of {args.requests:,} requests were sent")
    print("\n".join(tally.lines(specs.names(), time.monotonic() - started, header)))
    return 1 if tally.violations or tally.total < args.requests else 0
