"""The ``paddock`` command.

Every mistake a user can make on the command line ends in one line that says
what was wrong and how to fix it, with exit status 2; nothing prints a
traceback at a person.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from contracts import __version__
from contracts.spec import SpecSet

__all__ = ["main"]


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed takes a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--speed takes a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


_UNITS = {
    "": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


def _size(text: str) -> int:
    """A byte count: ``65536``, ``64KiB``, ``8M``, ``1GiB`` (binary units)."""
    number = text.strip().rstrip("BbIiKkMmGg ") or ""
    unit = text.strip()[len(number) :].strip().lower()
    if not number.isdigit() or unit not in _UNITS or int(number) == 0:
        raise argparse.ArgumentTypeError(
            f"expected a size above 0 such as 65536, 64KiB or 8MiB, got {text!r}"
        )
    return int(number) * _UNITS[unit]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400 * 365:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _store_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(
            f"--store takes redis://HOST:PORT/DB (or rediss://, unix://PATH), got {text!r}"
        )
    return text


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"--port takes 0 to 65535, got {text!r}")
    return int(text)


def _serve_flags(serve: argparse.ArgumentParser) -> None:
    """``paddock serve``'s flags, grouped the way its help reads."""
    from mock_server.store import Limits

    limits = Limits()
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8000, help="port to bind; 0 picks a free one (default 8000)"
    )
    serve.add_argument("--provider", help="also serve this provider's paths at the root")
    serve.add_argument(
        "--specs",
        type=Path,
        help="load the spec files from this directory instead of the built-in ones",
    )
    serve.add_argument(
        "--timing",
        choices=["fast", "realistic", "instant"],
        default="fast",
        help="fast: seconds; realistic: the spec's distributions; instant: done at the first poll",
    )
    serve.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="clock multiplier, e.g. 60 runs a minute per second",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only this key (repeatable); default: any non-empty key",
    )
    serve.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    shared = serve.add_argument_group("shared state")
    shared.add_argument(
        "--store",
        type=_store_url,
        metavar="redis://HOST:PORT/DB",
        help="keep tasks, journal, clock and media in Redis, shared by workers and hosts and "
        "kept across restarts (default: this process's memory)",
    )
    shared.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes (default 1); more than one needs --store",
    )
    bounds = serve.add_argument_group("bounds (sizes take 64KiB, 8MiB...)")
    bounds.add_argument(
        "--max-tasks",
        type=_positive_int,
        default=limits.max_tasks,
        help=f"tasks held in all; past it creates get the provider's 429 "
        f"(default {limits.max_tasks:,})",
    )
    bounds.add_argument(
        "--max-tasks-per-key",
        type=_positive_int,
        default=limits.max_tasks_per_key,
        help=f"tasks held per key; a key's oldest makes room (default "
        f"{limits.max_tasks_per_key:,})",
    )
    bounds.add_argument(
        "--journal-bytes",
        type=_size,
        default=limits.journal_bytes,
        help="request journal size; oldest entries go first (default 8MiB)",
    )
    bounds.add_argument(
        "--media-bytes",
        type=_size,
        default=limits.media_bytes,
        help="hosted and uploaded media in all, keys and metadata counted (default 512MiB)",
    )
    bounds.add_argument(
        "--media-files",
        type=_positive_int,
        default=limits.media_files,
        help=f"media files in all (default {limits.media_files:,})",
    )
    bounds.add_argument(
        "--media-bytes-per-key",
        type=_size,
        default=limits.media_bytes_per_key,
        help="media per key; a key's oldest file makes room (default 128MiB)",
    )
    bounds.add_argument(
        "--media-files-per-key",
        type=_positive_int,
        default=limits.media_files_per_key,
        help=f"media files per key (default {limits.media_files_per_key:,})",
    )
    bounds.add_argument(
        "--media-retention",
        type=_seconds,
        default=limits.media_retention,
        help="seconds a hosted or uploaded file stays usable (default 172800, 48 h)",
    )
    bounds.add_argument(
        "--max-file-bytes",
        type=_size,
        default=64 * 1024 * 1024,
        help="largest file POST /_paddock/media takes (default 64MiB)",
    )
    bounds.add_argument(
        "--admin-body-bytes",
        type=_size,
        default=64 * 1024,
        help="largest JSON body the admin API reads (default 64KiB)",
    )
    bounds.add_argument(
        "--body-timeout",
        type=_seconds,
        default=30.0,
        help="seconds a request body may stall before it is refused (default 30)",
    )
    bounds.add_argument(
        "--head-timeout",
        type=_seconds,
        default=10.0,
        help="seconds a connection has to send a whole request head (default 10)",
    )
    bounds.add_argument(
        "--keep-alive",
        type=_seconds,
        default=5.0,
        help="seconds an idle keep-alive connection is kept open (default 5)",
    )
    bounds.add_argument(
        "--max-head-bytes",
        type=_size,
        default=64 * 1024,
        help="largest request head (line and headers); larger ones get a 431 (default 64KiB)",
    )
    bounds.add_argument(
        "--max-connections",
        type=_positive_int,
        default=4096,
        help="open connections per worker; past it the longest idle ones close (default 4,096)",
    )
    bounds.add_argument(
        "--video-cache", type=Path, help="keep rendered result videos in this directory"
    )
    bounds.add_argument(
        "--video-cache-bytes",
        type=_size,
        default=1024**3,
        help="size of --video-cache; least recently used clips go first (default 1GiB)",
    )
    bounds.add_argument(
        "--video-memory-bytes",
        type=_size,
        default=64 * 1024 * 1024,
        help="rendered clips kept in memory per worker (default 64MiB)",
    )
    bounds.add_argument(
        "--renders",
        type=_positive_int,
        help="result videos rendered at once per worker; others wait (default: CPUs)",
    )
    fetch = serve.add_argument_group("remote media")
    fetch.add_argument(
        "--fetch-media",
        action="store_true",
        help="fetch http(s) media and judge its bytes like an upload; private, loopback, "
        "link-local and metadata addresses are refused (default: accept on syntax alone)",
    )
    fetch.add_argument(
        "--fetch-allow",
        action="append",
        default=[],
        metavar="HOST",
        help="with --fetch-media, also fetch from this host even if it is private (repeatable)",
    )
    fetch.add_argument(
        "--fetch-max-bytes",
        type=_size,
        default=16 * 1024 * 1024,
        help="largest remote file fetched (default 16MiB)",
    )
    fetch.add_argument(
        "--fetch-timeout",
        type=_seconds,
        default=10.0,
        help="seconds for a whole fetch, redirects included (default 10)",
    )
    admin = serve.add_argument_group("admin API (/_paddock)")
    admin.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on the admin API (or set "
        "PADDOCK_ADMIN_TOKEN, which ps does not show); without it the admin API answers "
        "only on a loopback bind",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="paddock", description="Contract tests and a mock upstream for video-generation APIs."
    )
    parser.add_argument("--version", action="version", version=f"paddock {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the mock upstream of every provider")
    _serve_flags(serve)

    def client_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--provider", required=True, help="dashscope, apiyi or anyfast")
        sub.add_argument(
            "--base-url",
            help="provider host root (default: the documented host); "
            "for a paddock mock: http://HOST:PORT/PROVIDER",
        )
        sub.add_argument(
            "--region", help="a region of the provider (DashScope: singapore, beijing)"
        )
        sub.add_argument("--specs", type=Path, help="read specs from this directory")
        sub.add_argument("--json", action="store_true", help="print the canonical task as JSON")

    generate = commands.add_parser("generate", help="create a video, follow it, download the MP4")
    client_flags(generate)
    generate.add_argument("--model", required=True)
    generate.add_argument("--prompt")
    generate.add_argument(
        "--image", action="append", default=[], metavar="PATH|URL", help="first frame"
    )
    generate.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="PATH|URL",
        help="reference image (repeatable)",
    )
    generate.add_argument("--audio", metavar="PATH|URL", help="driving audio")
    generate.add_argument("--resolution")
    generate.add_argument("--duration", type=_positive_int)
    generate.add_argument("--ratio")
    generate.add_argument("--seed", type=_non_negative_int)
    generate.add_argument("--out", required=True, type=Path, metavar="FILE.mp4")
    generate.add_argument(
        "--timeout",
        type=_speed,
        default=1800.0,
        help="give up waiting after S seconds (default 1800)",
    )
    generate.add_argument(
        "--poll-interval",
        type=_speed,
        help="seconds between polls (default: the provider's documented pace)",
    )

    status = commands.add_parser("status", help="show a task's state")
    client_flags(status)
    status.add_argument("task_id", metavar="TASK_ID")

    cancel = commands.add_parser("cancel", help="cancel a PENDING task")
    client_flags(cancel)
    cancel.add_argument("task_id", metavar="TASK_ID")

    check = commands.add_parser(
        "check", help="run the conformance checks against the mock, a URL or the live provider"
    )
    check.add_argument("--provider", required=True, help="dashscope, apiyi or anyfast")
    check.add_argument(
        "--target",
        default="mock",
        metavar="mock|URL|live",
        help="mock: in process (default); URL: a provider host root such as "
        "http://HOST:PORT/dashscope; live: the documented host with the key from the environment",
    )
    check.add_argument(
        "--base-url", help="with --target live: a staging host instead of the documented one"
    )
    check.add_argument("--model", action="append", default=[], help="only this model (repeatable)")
    check.add_argument(
        "--check",
        action="append",
        default=[],
        dest="only",
        metavar="NAME",
        help="only this check (repeatable): auth, unknown-id, rejected, accepted, lifecycle, "
        "cancel, result, auth-isolation, schema",
    )
    check.add_argument(
        "--examples", type=_positive_int, default=20, help="examples per check and model (20)"
    )
    check.add_argument(
        "--budget",
        type=_non_negative_int,
        help="billable tasks the run may create (live default 0: free checks only)",
    )
    check.add_argument("--seed", type=_non_negative_int, default=0, help="hypothesis seed (0)")
    check.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    check.add_argument(
        "--record", type=Path, metavar="DIR", help="write every exchange as redacted JSON Lines"
    )
    check.add_argument("--specs", type=Path, help="read specs from this directory")
    check.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    openapi = commands.add_parser("openapi", help="print the OpenAPI 3.1 document of a provider")
    openapi.add_argument("provider", metavar="PROVIDER")
    openapi.add_argument("--specs", type=Path, help="read specs from this directory")
    openapi.add_argument("--server", help="a server URL to put in the document")

    drift = commands.add_parser(
        "drift",
        help="what a provider now does differently from its spec ('drift run' records a run)",
        description="Analyse a recorded run (the latest under --reports by default) against the "
        "spec and, with --baseline, an earlier run. Exit 0: no breaking drift; 1: breaking "
        "drift; 2: the analysis could not be made.",
    )
    drift.add_argument("--provider", required=False, help="dashscope, apiyi or anyfast")
    drift.add_argument("--run", type=Path, metavar="DIR", help="the run to read (default: latest)")
    drift.add_argument("--baseline", type=Path, metavar="DIR", help="an earlier run to compare")
    drift.add_argument("--spec", type=Path, metavar="FILE", help="read against this spec file")
    drift.add_argument("--specs", type=Path, help="read specs from this directory")
    drift.add_argument(
        "--reports", type=Path, default=Path("reports"), help="where runs live (default reports)"
    )
    drift.add_argument(
        "--format",
        choices=["markdown", "html", "json", "junit", "github"],
        default="markdown",
        dest="fmt",
    )
    drift.add_argument("--out", type=Path, help="write the report here instead of stdout")
    drift_commands = drift.add_subparsers(dest="drift_command", metavar="run", parser_class=_Parser)
    record = drift_commands.add_parser(
        "run", help="record one conformance run under REPORTS/runs/PROVIDER/<UTC time>/"
    )
    record.add_argument("--provider", required=True, help="dashscope, apiyi or anyfast")
    record.add_argument(
        "--target",
        default="mock",
        metavar="mock|URL|live",
        help="mock: in process, timed as the spec says (default); URL: a provider host root; "
        "live: the documented host with the key from the environment",
    )
    record.add_argument("--base-url", help="with --target live: a staging host")
    record.add_argument("--model", action="append", default=[], help="only this model")
    record.add_argument("--examples", type=_positive_int, default=20)
    record.add_argument(
        "--budget",
        type=_non_negative_int,
        help="billable tasks the run may create (live default 0: free checks only)",
    )
    record.add_argument("--seed", type=_non_negative_int, default=0)
    record.add_argument("--specs", type=Path, help="read specs from this directory")
    record.add_argument(
        "--reports", type=Path, default=Path("reports"), help="where runs live (default reports)"
    )
    record.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    diff = commands.add_parser(
        "diff", help="what a client written against OLD.yaml breaks on NEW.yaml"
    )
    diff.add_argument("old", type=Path, metavar="OLD.yaml")
    diff.add_argument("new", type=Path, metavar="NEW.yaml")
    diff.add_argument("--format", choices=["text", "markdown", "json"], default="text", dest="fmt")
    diff.add_argument("--out", type=Path, help="write the report here instead of stdout")

    matrix = commands.add_parser(
        "matrix", help="the same model across providers, side by side (Markdown and HTML)"
    )
    matrix.add_argument("--specs", type=Path, help="read specs from this directory")
    matrix.add_argument(
        "--out-dir",
        type=Path,
        default=Path("reports"),
        help="write provider-matrix.md and .html here (default reports)",
    )
    matrix.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the files in --out-dir are out of date",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "serve":
            return _serve(args)
        if args.command == "check":
            return _check(args)
        if args.command == "openapi":
            return _openapi(args)
        if args.command == "drift":
            return _drift_run(args) if args.drift_command == "run" else _drift(args)
        if args.command == "diff":
            return _diff(args)
        if args.command == "matrix":
            return _matrix(args)
        from paddock import generate

        return generate.run(args)
    except UsageError as exc:
        print(f"paddock: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _load(directory: Path | None) -> SpecSet:
    from contracts.spec import SpecError, load_specs

    try:
        return load_specs(directory)
    except SpecError as exc:
        raise UsageError(f"the specs do not load: {exc}") from None


def _known(specs: SpecSet, provider: str) -> str:
    """``provider``, if the specs have it; else the usage error naming the ones they do."""
    if provider not in specs.names():
        raise UsageError(f"unknown provider {provider!r}; use one of {', '.join(specs.names())}")
    return provider


def _writable_dir(path: Path, flag: str) -> Path:
    """A directory the command can write into, made if need be; else the one-line mistake."""
    import os

    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{flag} {path} is a file, not a directory; pick a directory") from None
    except OSError as exc:
        raise UsageError(
            f"{flag} {path}: cannot create that directory ({exc.strerror}); pick another"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path} is not writable; pick another directory")
    return path


def _check(args: argparse.Namespace) -> int:
    from contracts.conformance import TargetError, run_checks

    specs = _load(args.specs)
    _known(specs, args.provider)
    if args.record is not None:
        _writable_dir(args.record, "--record")
    if args.base_url and args.target != "live":
        raise UsageError("--base-url goes with --target live; for a URL target pass --target URL")
    say = None if args.quiet else (lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    try:
        report = run_checks(
            args.provider,
            target=args.target,
            specs=specs,
            models=args.model,
            examples=args.examples,
            budget=args.budget,
            record=args.record,
            base_url=args.base_url,
            only=args.only,
            seed_value=args.seed,
            progress=say,
        )
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    print(report.text())
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(report.junit() + "\n")
    return 1 if report.failed else 0


def _openapi(args: argparse.Namespace) -> int:
    import json

    from contracts.openapi import openapi_document

    specs = _load(args.specs)
    _known(specs, args.provider)
    print(json.dumps(openapi_document(specs[args.provider], server_url=args.server), indent=2))
    return 0


def _drift_run(args: argparse.Namespace) -> int:
    from contracts.conformance import TargetError, run_checks
    from contracts.drift.observe import new_run_dir

    specs = _load(args.specs)
    _known(specs, args.provider)
    if args.base_url and args.target != "live":
        raise UsageError("--base-url goes with --target live; for a URL target pass --target URL")
    if args.target not in ("mock", "live") and not args.target.startswith(("http://", "https://")):
        raise UsageError(f"--target must be mock, live or an http(s) URL, not {args.target!r}")
    _writable_dir(args.reports, "--reports")
    directory = new_run_dir(args.reports, args.provider)
    say = None if args.quiet else (lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    try:
        report = run_checks(
            args.provider,
            target=args.target,
            specs=specs,
            models=args.model,
            examples=args.examples,
            budget=args.budget,
            record=directory,
            base_url=args.base_url,
            seed_value=args.seed,
            progress=say,
            timing="realistic",
        )
    except TargetError as exc:
        # Nothing was recorded: leave no empty run behind to be mistaken for one.
        for leftover in directory.iterdir():
            leftover.unlink()
        for empty in (directory, directory.parent, directory.parent.parent, args.reports):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
        raise UsageError(str(exc)) from None
    failed = sum(len(o.failures) for o in report.outcomes)
    print(
        f"recorded {args.provider} against {report.target} in {directory} "
        f"({report.examples} examples, {report.seconds:.1f} s, billable tasks "
        f"{report.budget_used}; {failed} check(s) failed: the analysis says what differs)"
    )
    print(f"next: paddock drift --provider {args.provider} --run {directory}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from contracts.drift.analyze import analyze
    from contracts.drift.observe import RunError, latest_run, load_run
    from contracts.drift.report import render
    from contracts.spec import SpecError, load_spec

    if not args.provider:
        raise UsageError(
            "drift needs --provider (or 'paddock drift run --provider P' to record a run)"
        )
    if args.spec is not None:
        if not args.spec.is_file():
            raise UsageError(f"no spec file at {str(args.spec)!r}")
        try:
            spec = load_spec(args.spec)
        except SpecError as exc:
            raise UsageError(f"{args.spec} does not load: {exc}") from None
        if spec.provider != args.provider:
            raise UsageError(f"{args.spec} is the spec of {spec.provider}, not {args.provider}")
    else:
        specs = _load(args.specs)
        spec = specs[_known(specs, args.provider)]
    run_dir = args.run or latest_run(args.reports, args.provider)
    if run_dir is None:
        raise UsageError(
            f"no recorded run of {args.provider} under {args.reports}/runs; record one with "
            f"'paddock drift run --provider {args.provider}' or pass --run DIR"
        )
    try:
        run = load_run(run_dir, args.provider)
        baseline = load_run(args.baseline, args.provider) if args.baseline else None
    except RunError as exc:
        raise UsageError(str(exc)) from None
    analysis = analyze(run, spec, baseline=baseline)
    _emit(render(analysis, args.fmt, spec_file=spec.file), args.out)
    return 1 if analysis.breaking else 0


def _diff(args: argparse.Namespace) -> int:
    from contracts.drift.specdiff import diff_specs, render_changes
    from contracts.spec import SpecError, load_spec

    loaded = []
    for path in (args.old, args.new):
        if not path.is_file():
            raise UsageError(f"no spec file at {str(path)!r}")
        try:
            loaded.append(load_spec(path))
        except SpecError as exc:
            raise UsageError(f"{path} does not load: {exc}") from None
    changes = diff_specs(loaded[0], loaded[1])
    _emit(render_changes(changes, args.fmt, old=str(args.old), new=str(args.new)), args.out)
    return 1 if any(change.breaking for change in changes) else 0


def _matrix(args: argparse.Namespace) -> int:
    from contracts.drift.matrix import matrix_files

    files = matrix_files(_load(args.specs))
    stale = [
        name
        for name, text in files.items()
        if not (args.out_dir / name).is_file()
        or (args.out_dir / name).read_text(encoding="utf-8") != text
    ]
    if args.check:
        if stale:
            print(
                f"paddock: {', '.join(str(args.out_dir / n) for n in stale)} out of date with "
                "the specs; run 'paddock matrix' and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out_dir}/provider-matrix.{{md,html}} match the specs")
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out_dir / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out_dir / name}")
    return 0


def _emit(text: str, out: Path | None) -> None:
    """A report to stdout, or to ``out`` (its folder made) with one line saying where."""
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    import ipaddress
    import os

    from contracts.spec import SpecError, load_specs
    from mock_server.admin import LOOPBACK_HOSTS
    from mock_server.serving import ServeConfig, serve

    try:
        specs = load_specs(args.specs)
    except SpecError as exc:
        raise UsageError(f"broken spec: {exc}") from None
    if args.provider is not None and args.provider not in specs.specs:
        raise UsageError(f"--provider {args.provider!r} is not one of {', '.join(specs.names())}")
    if args.workers > 1 and args.store is None:
        raise UsageError(
            "--workers needs a shared --store redis://HOST:PORT/DB, or each worker would be "
            "a separate mock"
        )
    if args.store is not None:
        _check_store(args.store)
    token = args.admin_token or os.environ.get("PADDOCK_ADMIN_TOKEN") or None
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    mode = "token" if token else ("open" if loopback else "off")
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    config = ServeConfig(
        host=host,
        port=port,
        specs=str(args.specs) if args.specs else None,
        timing=args.timing,
        speed=args.speed,
        api_keys=args.api_keys,
        root_provider=args.provider,
        store=args.store,
        workers=args.workers,
        log_level=args.log_level,
        limits={
            "max_tasks": args.max_tasks,
            "max_tasks_per_key": args.max_tasks_per_key,
            "journal_bytes": args.journal_bytes,
            "media_bytes": args.media_bytes,
            "media_files": args.media_files,
            "media_bytes_per_key": args.media_bytes_per_key,
            "media_files_per_key": args.media_files_per_key,
            "media_retention": args.media_retention,
        },
        body_timeout=args.body_timeout,
        admin_body_bytes=args.admin_body_bytes,
        max_file_bytes=args.max_file_bytes,
        admin_mode=mode,
        admin_token=token,
        admin_hosts=sorted(LOOPBACK_HOSTS) if loopback else None,
        video_cache=str(args.video_cache) if args.video_cache else None,
        video_cache_bytes=args.video_cache_bytes,
        video_memory_bytes=args.video_memory_bytes,
        renders=args.renders,
        head_timeout=args.head_timeout,
        keep_alive=args.keep_alive,
        max_head_bytes=args.max_head_bytes,
        max_connections=args.max_connections,
        fetch_media=args.fetch_media,
        fetch_allow=args.fetch_allow,
        fetch_max_bytes=args.fetch_max_bytes,
        fetch_timeout=args.fetch_timeout,
    )
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    store = "memory" if args.store is None else _safe_url(args.store)
    print(
        f"paddock {__version__} mock upstream on {base}  "
        f"(timing {args.timing}, speed {args.speed:g}x, "
        f"keys: {'any non-empty' if not args.api_keys else len(args.api_keys)}, "
        f"store {store}, workers {args.workers})"
    )
    for spec in specs:
        prefix = f"{base}/{spec.provider}"
        hint = spec.env_hint.format(base_url=prefix) if spec.env_hint else ""
        print(f"  {spec.provider:<10} {prefix:<36} {hint}")
        if spec.provider == args.provider:
            root_hint = spec.env_hint.format(base_url=base) if spec.env_hint else ""
            print(f"  {'(root)':<10} {base:<36} {root_hint}")
    if mode == "off":
        print(
            f"  {'admin':<10} disabled: {host} is not a loopback address and no --admin-token "
            "was given",
            flush=True,
        )
    else:
        lock = " (token required)" if mode == "token" else ""
        print(
            f"  {'admin':<10} {base}/_paddock{lock}   (requests, tasks, clock/advance, reset, "
            "media)",
            flush=True,
        )
    serve(config, sock)
    return 0


def _check_store(url: str) -> None:
    """A store that cannot work is one line now, not a traceback in every worker later."""
    import redis

    shown = _safe_url(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        version = str(client.info("server").get("redis_version", "0"))
        client.close()
    except Exception as exc:
        raise UsageError(
            f"cannot reach Redis at {shown} ({exc}); start it or fix --store"
        ) from None
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < (6, 2):
        raise UsageError(f"Redis at {shown} is {version}; paddock needs 6.2 or newer")


def _safe_url(url: str) -> str:
    """A store URL as it may be printed: no password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{netloc}"))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is already in use; pick another with --port"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


if __name__ == "__main__":
    sys.exit(main())
